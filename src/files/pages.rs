//! The web file browser: a folder's listing with sizes and times, links
//! into folders and to downloads, a new-folder form, deletion with
//! confirmation and drag-and-drop uploads with progress (`files.js` calls
//! the JSON API for the changes). The same fragment serves an instance's
//! files (on its page, default `/data`) and a dataset's (default `/`).

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;

use super::api::PathQuery;
use super::model::{self, Entry, Kind};
use super::{FileTarget, Place};
use crate::app::App;
use crate::auth::PageCtx;
use crate::error::AppError;
use crate::web::extract::{ApiPath, ApiQuery};
use crate::web::render::{Layout, html, is_htmx};

pub fn routes() -> Router<App> {
    Router::new()
        .route(
            "/instances/{id}/files",
            get(async |s, h, c, id, q| browse(FileTarget::Instance, s, h, c, id, q).await),
        )
        .route(
            "/datasets/{id}/files",
            get(async |s, h, c, id, q| browse(FileTarget::Dataset, s, h, c, id, q).await),
        )
}

/// The browser's fragment.
#[derive(Template)]
#[template(path = "files/browser.html")]
pub struct Browser {
    pub l: Layout,
    /// `/instances/7/files` (this fragment's own address).
    pub base: String,
    /// `/api/v1/instances/7/files`.
    pub api: String,
    pub path: String,
    /// (label, path) of each folder above and of this one.
    pub crumbs: Vec<(String, String)>,
    pub entries: Vec<Entry>,
    pub writable: bool,
    pub max_upload: u64,
    /// Why nothing is listed (not running, no such folder, ...).
    pub error: Option<String>,
}

impl Browser {
    pub fn child(&self, e: &Entry) -> String {
        model::join(&self.path, &e.name)
    }
    pub fn is_dir(&self, e: &Entry) -> bool {
        e.kind == Kind::Dir
    }
    pub fn size(&self, e: &Entry) -> String {
        match e.kind {
            Kind::Dir => String::new(),
            _ => model::human_size(e.size),
        }
    }
    pub fn when(&self, e: &Entry) -> String {
        crate::web::render::fmt_ts(e.mtime)
    }
    pub fn kind_key(&self, e: &Entry) -> &'static str {
        match e.kind {
            Kind::Dir => "files.k_dir",
            Kind::File => "files.k_file",
            Kind::Symlink => "files.k_link",
            Kind::Other => "files.k_other",
        }
    }
    pub fn up(&self) -> Option<String> {
        (self.path != "/").then(|| model::parent(&self.path).to_string())
    }
}

#[derive(Template)]
#[template(path = "files/page.html")]
struct Page {
    l: Layout,
    /// The rendered [`Browser`] (askama escaped it).
    browser: String,
    title: String,
    back: String,
}

fn crumbs(path: &str) -> Vec<(String, String)> {
    let mut out = vec![("/".to_string(), "/".to_string())];
    let mut at = String::new();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        at.push('/');
        at.push_str(part);
        out.push((part.to_string(), at.clone()));
    }
    out
}

/// The browser at `path` (the place's home by default); on a place that
/// cannot be listed (a stopped instance, a missing folder) the fragment
/// says why.
async fn browse(
    target: FileTarget,
    State(app): State<App>,
    headers: HeaderMap,
    ctx: PageCtx,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(q): ApiQuery<PathQuery>,
) -> Result<Response, AppError> {
    let (kind, nav) = match target {
        FileTarget::Instance => ("instances", "instances"),
        FileTarget::Dataset => ("datasets", "datasets"),
    };
    let me = ctx.me.clone();
    let l = ctx.nav(nav).l;
    let tr = l.tr;
    let node_detail = l.can("/nodes");
    let place: Result<Place, AppError> = super::api::place(&app, &me, target, id).await;
    let home = match (&place, target) {
        (Ok(p), _) => p.home.clone(),
        (Err(_), FileTarget::Instance) => "/data".into(),
        (Err(_), FileTarget::Dataset) => "/".into(),
    };
    let path = model::web_path(q.path.as_deref().unwrap_or(&home)).unwrap_or(home);
    let mut b = Browser {
        l: l.clone(),
        base: format!("/{kind}/{id}/files"),
        api: format!("/api/v1/{kind}/{id}/files"),
        crumbs: crumbs(&path),
        path: path.clone(),
        entries: Vec::new(),
        writable: false,
        max_upload: app.config.files.max_upload_bytes,
        error: None,
    };
    let name = match &place {
        Ok(p) => p.name.clone(),
        Err(_) => id.to_string(),
    };
    match place {
        Err(AppError::NotFound) => return Err(AppError::NotFound),
        Err(e) => b.error = Some(e.text(tr, node_detail)),
        Ok(p) => {
            b.writable = p.writable
                && super::authorize(&app, &me.user, &p, super::FileOp::Upload)
                    .await
                    .is_ok();
            match super::list(&app, &me, &p, &path).await {
                Ok(listing) => b.entries = listing.entries,
                Err(e) => b.error = Some(e.text(tr, node_detail)),
            }
        }
    }
    if is_htmx(&headers) {
        return html(&b);
    }
    let browser = b.render().map_err(AppError::internal)?;
    html(&Page {
        l,
        browser,
        title: name,
        back: format!("/{kind}/{id}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crumbs_lead_to_each_folder() {
        assert_eq!(
            crumbs("/data/a"),
            [
                ("/".to_string(), "/".to_string()),
                ("data".to_string(), "/data".to_string()),
                ("a".to_string(), "/data/a".to_string())
            ]
        );
        assert_eq!(crumbs("/").len(), 1);
    }
}
