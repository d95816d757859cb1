//! What every signed-in page handler extracts: the user and the page layout.
//! The user type and how it is found are the signing-in capability's
//! business ([`PageUser`]); `auth` names the page context of its user
//! `auth::PageCtx`.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::render::Layout;
use crate::app::App;
use crate::error::AppError;
use crate::i18n::{Lang, Tr};

/// What the layout shows of the signed-in user.
pub struct Viewer {
    pub username: String,
    /// The i18n key of the role's name.
    pub role_key: &'static str,
    /// The CSRF token forms send back.
    pub csrf: String,
    /// Page routes the user may use (see [`Layout::allowed`]).
    pub allowed: std::sync::Arc<Vec<String>>,
    /// Banners shown on every page (see [`Layout::notices`]).
    pub notices: Vec<String>,
}

/// A signed-in user as pages see it.
pub trait PageUser: Sized + Send {
    /// The caller (a rejection when nobody is signed in) and its [`Viewer`].
    fn from_page_request(
        parts: &mut Parts,
        app: &App,
    ) -> impl Future<Output = Result<(Self, Viewer), AppError>> + Send;
}

/// The signed-in user and the page layout, for every page handler.
pub struct PageCtx<M> {
    pub me: M,
    pub l: Layout,
}

impl<M> PageCtx<M> {
    pub fn tr(&self) -> Tr {
        self.l.tr
    }
    pub fn nav(mut self, nav: &'static str) -> Self {
        self.l.nav = nav;
        self
    }
}

impl<M: PageUser> FromRequestParts<App> for PageCtx<M> {
    type Rejection = AppError;
    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, AppError> {
        let (me, v) = M::from_page_request(parts, app).await?;
        let l = Layout {
            tr: Tr::new(Lang::from_headers(&parts.headers)),
            username: v.username,
            role_key: v.role_key,
            csrf: v.csrf,
            nav: "",
            allowed: v.allowed,
            notices: v.notices,
            path: parts
                .uri
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_string(),
        };
        Ok(PageCtx { me, l })
    }
}
