//! Account pages: sign-in, sign-out, password change, my account and API
//! tokens, the dashboard, and the language switch; plus how pages find the
//! signed-in user (`PageCtx`, the web's page context with our user).

use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::http::{HeaderMap, HeaderValue, header, request::Parts};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use tower_sessions::Session;

use super::guard::{AuthVia, CurrentUser, csrf_token};
use super::model::User;
use super::store::{self, ApiToken, Counts};
use super::{keys, permissions, service};
use crate::app::App;
use crate::audit::{self, AuditFilter, AuditRecord, Source};
use crate::error::AppError;
use crate::i18n::{Lang, Tr};
use crate::paging::{Pager, Paging, Window};
use crate::web::extract::{ApiPath, ApiQuery};
use crate::web::page::{PageUser, Viewer};
use crate::web::render::{FormErrs, Layout, form_error, html};

pub fn routes() -> Router<App> {
    Router::new()
        .route("/", get(dashboard))
        .route("/login", get(login_page).post(login_submit))
        .route("/logout", post(logout))
        .route("/lang/{code}", get(set_lang))
        .route("/account", get(account))
        .route(
            "/account/password",
            get(password_page).post(password_submit),
        )
        .route("/account/tokens", post(token_create))
        .route("/account/tokens/{id}/revoke", post(token_revoke))
        .merge(super::admin_pages::routes())
}

/// Page handlers' context with this capability's user.
pub type PageCtx = crate::web::page::PageCtx<CurrentUser>;

impl PageUser for CurrentUser {
    async fn from_page_request(parts: &mut Parts, app: &App) -> Result<(Self, Viewer), AppError> {
        let me = CurrentUser::from_request_parts(parts, app).await?;
        let session = Session::from_request_parts(parts, app)
            .await
            .map_err(|_| AppError::internal("session layer missing"))?;
        let role = me.user.role;
        let kept = app
            .db
            .cached(format!("allowed pages {}", role.as_str()), move |c| {
                permissions::allowed_pages(c, role).map_err(AppError::from)
            })
            .await?;
        // Shared by every page of the role (not copied per request).
        let mut allowed = kept;
        if me.user.must_change_password {
            // Until the password is changed, the navigation offers only what
            // the guard lets through (instead of links that all answer 403).
            let mut only = Vec::clone(&allowed);
            only.retain(|p| {
                let (method, path) = p.split_once(' ').unwrap_or(("GET", p));
                permissions::allowed_before_password_change(method, path)
            });
            allowed = std::sync::Arc::new(only);
        }
        let tr = Tr::new(Lang::from_headers(&parts.headers));
        let notices = crate::leases::banners(app, &me, tr).await?;
        let viewer = Viewer {
            username: me.user.username.clone(),
            role_key: me.user.role.label_key(),
            csrf: csrf_token(&session).await?,
            allowed,
            notices,
        };
        Ok((me, viewer))
    }
}

/// The sign-in page (with `error` after a failed attempt). Its CSRF token
/// comes with a signed cookie, not a session: nothing is stored for
/// visitors who have not signed in.
fn login_form(
    app: &App,
    headers: &HeaderMap,
    error_key: Option<&'static str>,
    username: String,
    next: String,
) -> Result<Response, AppError> {
    let (csrf, cookie) = super::login_csrf::issue(app);
    let tr = Tr::new(Lang::from_headers(headers));
    let l = Layout {
        tr,
        username: String::new(),
        role_key: "",
        csrf,
        nav: "",
        allowed: Default::default(),
        path: login_path(&next),
        notices: Vec::new(),
    };
    let mut resp = html(&LoginPage {
        l,
        error: error_key.map(|k| tr.t(k).to_string()).unwrap_or_default(),
        username,
        next,
    })?;
    resp.headers_mut().append(header::SET_COOKIE, cookie);
    Ok(resp)
}

/// Where `next` may send the browser after sign-in: a path of this site.
fn safe_next(next: &str) -> String {
    crate::web::redirect::local_path(next)
}

fn login_path(next: &str) -> String {
    if next.is_empty() {
        return "/login".into();
    }
    let q: String = form_urlencoded::byte_serialize(next.as_bytes()).collect();
    format!("/login?next={q}")
}

#[derive(Template)]
#[template(path = "auth/login.html")]
struct LoginPage {
    l: Layout,
    error: String,
    username: String,
    next: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct LoginQuery {
    next: String,
}

async fn login_page(
    State(app): State<App>,
    headers: HeaderMap,
    session: Session,
    ApiQuery(q): ApiQuery<LoginQuery>,
) -> Result<Response, AppError> {
    if session
        .get::<i64>(keys::USER_ID)
        .await
        .map_err(AppError::internal)?
        .is_some()
    {
        return Ok(Redirect::to("/").into_response());
    }
    login_form(&app, &headers, None, String::new(), q.next)
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct LoginForm {
    username: String,
    password: String,
    next: String,
}

async fn login_submit(
    State(app): State<App>,
    headers: HeaderMap,
    session: Session,
    src: Source,
    Form(f): Form<LoginForm>,
) -> Result<Response, AppError> {
    match service::login(&app, &f.username, &f.password, &src).await {
        Ok(user) => {
            service::start_session(&session, &user, user.session_epoch).await?;
            let to = if user.must_change_password {
                "/account/password".to_string()
            } else {
                safe_next(&f.next)
            };
            Ok(Redirect::to(&to).into_response())
        }
        Err(
            e @ (AppError::InvalidCredentials
            | AppError::TooManyAttempts(_)
            | AppError::AccountDisabled { .. }),
        ) => {
            let mut resp = login_form(&app, &headers, Some(e.message_key()), f.username, f.next)?;
            *resp.status_mut() = e.status();
            if let AppError::TooManyAttempts(secs) = e {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            Ok(resp)
        }
        Err(e) => Err(e),
    }
}

async fn logout(
    State(app): State<App>,
    session: Session,
    me: CurrentUser,
    src: Source,
) -> Result<Response, AppError> {
    service::logout(&app, &session, me.actor(), &src).await?;
    Ok(Redirect::to("/login").into_response())
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct LangQuery {
    next: String,
}

/// Stores the language choice in a cookie (a browser preference, not server data).
async fn set_lang(
    ApiPath(code): ApiPath<String>,
    ApiQuery(q): ApiQuery<LangQuery>,
) -> Result<Response, AppError> {
    let lang = Lang::parse(&code).ok_or(AppError::NotFound)?;
    let cookie = format!(
        "lang={}; Path=/; Max-Age=31536000; SameSite=Lax; Secure",
        lang.code()
    );
    let mut resp = Redirect::to(&safe_next(&q.next)).into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        cookie.parse().map_err(AppError::internal)?,
    );
    Ok(resp)
}

#[derive(Template)]
#[template(path = "auth/dashboard.html")]
struct DashboardPage {
    l: Layout,
    counts: Counts,
    audit_24h: i64,
    recent: Vec<AuditRecord>,
    show_sessions: bool,
    /// A member sees their own instances and live sessions instead of counts.
    member: bool,
    my_sessions: Vec<crate::sessions::LiveLine>,
    changed: bool,
    /// Account-opening requests and cloud users per status (仪表盘).
    accounts: crate::accounts::Counts,
    /// The first-run checklist, for admins until every step is done.
    setup: Option<store::Setup>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct DashQuery {
    changed: Option<String>,
}

async fn dashboard(
    State(app): State<App>,
    ctx: PageCtx,
    axum::extract::Query(q): axum::extract::Query<DashQuery>,
) -> Result<Response, AppError> {
    let ctx = ctx.nav("dashboard");
    let scope = ctx.me.scope();
    let show_audit = ctx.l.can("/audit");
    let show_setup = ctx.l.can("/nodes") && scope == super::Scope::All;
    let (counts, audit_24h, recent, setup) = app
        .db
        .read(move |c| {
            let now = crate::db::now();
            let setup = match show_setup {
                true => Some(store::setup(c)?).filter(|s| !s.done()),
                false => None,
            };
            let counts = store::counts(c, scope, now)?;
            let audit_24h = audit::count_since(c, scope, now - 86_400)?;
            let recent = if show_audit {
                audit::records(c, scope, &AuditFilter::default(), Window::first(10))?
            } else {
                Vec::new()
            };
            Ok::<_, AppError>((counts, audit_24h, recent, setup))
        })
        .await?;
    let accounts = crate::accounts::counts(&app, &ctx.me).await?;
    let member = matches!(scope, super::Scope::User(..));
    let my_sessions = match member {
        true => crate::sessions::live_lines(&app, &ctx.me).await?,
        false => Vec::new(),
    };
    html(&DashboardPage {
        accounts,
        show_sessions: scope == super::Scope::All,
        member,
        my_sessions,
        l: ctx.l,
        counts,
        audit_24h,
        recent,
        changed: q.changed.is_some(),
        setup,
    })
}

#[derive(Template)]
#[template(path = "auth/password.html")]
struct PasswordPage {
    l: Layout,
    forced: bool,
    errs: FormErrs,
}

async fn password_page(ctx: PageCtx) -> Result<Response, AppError> {
    let forced = ctx.me.user.must_change_password;
    html(&PasswordPage {
        l: ctx.nav("account").l,
        forced,
        errs: FormErrs::default(),
    })
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PasswordForm {
    current_password: String,
    new_password: String,
    confirm_password: String,
    /// The checkbox "also revoke my API tokens".
    revoke_tokens: Option<String>,
}

async fn password_submit(
    State(app): State<App>,
    session: Session,
    ctx: PageCtx,
    src: Source,
    Form(f): Form<PasswordForm>,
) -> Result<Response, AppError> {
    let ctx = ctx.nav("account");
    let result = if f.new_password != f.confirm_password {
        Err(AppError::field("confirm_password", "err.password_mismatch"))
    } else {
        service::change_password(
            &app,
            &ctx.me.user,
            &f.current_password,
            &f.new_password,
            f.revoke_tokens.is_some(),
            &src,
        )
        .await
    };
    match result {
        Ok(epoch) => {
            if ctx.me.via == AuthVia::Session {
                service::start_session(&session, &ctx.me.user, epoch).await?;
            }
            Ok(Redirect::to("/?changed=1").into_response())
        }
        Err(e) => {
            let (tr, forced) = (ctx.tr(), ctx.me.user.must_change_password);
            form_error(
                e,
                |errs| {
                    html(&PasswordPage {
                        l: ctx.l,
                        forced,
                        errs,
                    })
                },
                tr,
            )
        }
    }
}

#[derive(Template)]
#[template(path = "auth/account.html")]
struct AccountPage {
    l: Layout,
    tokens: Vec<ApiToken>,
    pager: Pager,
    new_token: String,
    token_name: String,
    errs: FormErrs,
}

/// The user's tokens on the page `paging` asks for, and its pager.
async fn tokens_of(
    app: &App,
    user: &User,
    paging: &Paging,
) -> Result<(Vec<ApiToken>, Pager), AppError> {
    let (uid, w) = (user.id, paging.window);
    let page = app
        .db
        .read(move |c| store::tokens_page(c, uid, w).map_err(AppError::from))
        .await?;
    let pager = paging.pager(page.total, page.items.len());
    Ok((page.items, pager))
}

async fn account(
    State(app): State<App>,
    ctx: PageCtx,
    paging: Paging,
) -> Result<Response, AppError> {
    let (tokens, pager) = tokens_of(&app, &ctx.me.user, &paging).await?;
    html(&AccountPage {
        l: ctx.nav("account").l,
        tokens,
        pager,
        new_token: String::new(),
        token_name: String::new(),
        errs: FormErrs::default(),
    })
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct TokenForm {
    name: String,
    scope: Option<String>,
}

async fn token_create(
    State(app): State<App>,
    ctx: PageCtx,
    src: Source,
    Form(f): Form<TokenForm>,
) -> Result<Response, AppError> {
    let ctx = ctx.nav("account");
    match service::create_token(&app, &ctx.me.user, &f.name, f.scope.as_deref(), &src).await {
        Ok((_, secret)) => {
            let (tokens, pager) = tokens_of(&app, &ctx.me.user, &Paging::first("/account")).await?;
            html(&AccountPage {
                l: ctx.l,
                tokens,
                pager,
                new_token: secret,
                token_name: String::new(),
                errs: FormErrs::default(),
            })
        }
        Err(e) => {
            let (tokens, pager) = tokens_of(&app, &ctx.me.user, &Paging::first("/account")).await?;
            let tr = ctx.tr();
            form_error(
                e,
                |errs| {
                    html(&AccountPage {
                        l: ctx.l,
                        tokens,
                        pager,
                        new_token: String::new(),
                        token_name: f.name,
                        errs,
                    })
                },
                tr,
            )
        }
    }
}

async fn token_revoke(
    State(app): State<App>,
    me: CurrentUser,
    src: Source,
    ApiPath(id): ApiPath<i64>,
) -> Result<Response, AppError> {
    service::revoke_token(&app, &me.user, id, &src).await?;
    Ok(Redirect::to("/account").into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_language_switch_returns_to_the_login_target() {
        assert_eq!(login_path(""), "/login");
        assert_eq!(login_path("/users?a=1"), "/login?next=%2Fusers%3Fa%3D1");
    }
}
