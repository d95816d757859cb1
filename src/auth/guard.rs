//! The one middleware every route passes: who is calling (session cookie or
//! bearer token), whether they must change their password first, the CSRF
//! check for cookie-authenticated changes, and the permission record of the
//! matched route. Fails closed: a route without a record is denied.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, Request, State};
use axum::http::{HeaderMap, Method, header, request::Parts};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use subtle::ConstantTimeEq;
use tower_sessions::Session;

use super::keys;
use super::model::{Scope, User, UserId};
use super::permissions::{self, Decision};
use super::store;
use crate::app::App;
use crate::audit::{self, Actor, Event, Outcome, Source};
use crate::error::AppError;
pub use crate::hashing::{random_token, token_hash};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthVia {
    Session,
    Token(i64),
    /// Signed in on the SSH jumpbox (password or key); never on HTTP.
    Ssh,
}

/// The signed-in caller, put in the request by `guard`.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub user: User,
    pub via: AuthVia,
}

impl CurrentUser {
    pub fn scope(&self) -> Scope {
        Scope::of(&self.user)
    }
    pub fn actor(&self) -> Actor {
        Actor::user(&self.user)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for CurrentUser {
    type Rejection = AppError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<CurrentUser>()
            .cloned()
            .ok_or(AppError::Unauthenticated)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Source {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(source_of(
            &parts.headers,
            parts.extensions.get::<ConnectInfo<SocketAddr>>(),
        ))
    }
}

pub fn source_of(headers: &HeaderMap, peer: Option<&ConnectInfo<SocketAddr>>) -> Source {
    Source {
        ip: peer
            .map(|c| c.0.ip().to_string())
            .unwrap_or_else(|| "unknown".into()),
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string(),
    }
}

fn is_api(path: &str) -> bool {
    path.starts_with("/api/")
}

/// The session's CSRF token, created on first use.
pub async fn csrf_token(session: &Session) -> Result<String, AppError> {
    if let Some(t) = session
        .get::<String>(keys::CSRF)
        .await
        .map_err(AppError::internal)?
    {
        return Ok(t);
    }
    let t = random_token();
    session
        .insert(keys::CSRF, &t)
        .await
        .map_err(AppError::internal)?;
    Ok(t)
}

#[derive(Clone)]
struct Caller {
    user: User,
    via: AuthVia,
    decision: Decision,
    /// May see nodes' details in error messages.
    node_detail: bool,
}

/// Resolves the caller and the route decision in one database read, kept
/// (`Db::cached`) for the next requests of the same caller to the same
/// route until anything is committed or the second changes (a lock's end).
async fn resolve(
    app: &App,
    bearer: Option<String>,
    session_uid: Option<(i64, i64)>,
    method: String,
    pattern: String,
) -> Result<Option<Caller>, AppError> {
    let bearer = bearer.map(|t| token_hash(&t));
    let who = match (&bearer, session_uid) {
        (Some(hash), _) => format!("token {hash}"),
        (None, Some((uid, epoch))) => format!("session {uid} {epoch}"),
        (None, None) => return Ok(None),
    };
    let key = format!("{who} {method} {pattern}");
    let found = app
        .db
        .cached(key, move |c| {
            // Read here, not before the lookup: the answer is kept for the
            // second of its stamp, which this is not earlier than.
            let now = crate::db::now();
            let (uid, via, epoch) = match (bearer, session_uid) {
                // A token serves only the routes of its scope (a `metrics`
                // token is no caller anywhere else).
                (Some(hash), _) => match store::find_token(c, &hash)? {
                    Some((tid, uid, scope)) if scope.admits(&method, &pattern) => {
                        (uid, AuthVia::Token(tid), None)
                    }
                    _ => return Ok::<_, AppError>(None),
                },
                (None, Some((uid, epoch))) => (UserId(uid), AuthVia::Session, Some(epoch)),
                (None, None) => return Ok(None),
            };
            let Some(user) = store::get_user(c, Scope::All, uid)? else {
                return Ok(None);
            };
            let stale = epoch.is_some_and(|e| e != user.session_epoch);
            if stale || !super::usable(c, &user, now)? {
                return Ok(None);
            }
            let action = super::Action::Route {
                method: &method,
                pattern: &pattern,
            };
            let decision = super::allowed(c, &user, action)?;
            let node_detail = permissions::sees_node_details(c, user.role)?;
            Ok(Some(Caller {
                user,
                via,
                decision,
                node_detail,
            }))
        })
        .await?;
    let found = Option::clone(&found);
    if let Some(Caller {
        via: AuthVia::Token(id),
        ..
    }) = &found
    {
        token_used(app, *id, crate::db::now()).await?;
    }
    Ok(found)
}

/// Notes that token `id` was used at `now` (at most once a minute). A use
/// within the minute after one this process noted costs no database write
/// (`App::token_uses`): each took the single writer's turn, and a client
/// sending its token with every request got half the requests per second
/// of a signed-in browser (issue 11).
pub(super) async fn token_used(app: &App, id: i64, now: i64) -> Result<(), AppError> {
    if !app.token_uses.due(id, now) {
        return Ok(());
    }
    app.db
        .write(move |c| {
            c.execute(
                "UPDATE api_tokens SET last_used_at = ?2 WHERE id = ?1 \
                 AND (last_used_at IS NULL OR last_used_at < ?2 - 60)",
                rusqlite::params![id, now],
            )
            .map(drop)
            .map_err(AppError::from)
        })
        .await
}

fn bearer(headers: &HeaderMap) -> Option<Result<String, ()>> {
    let v = headers.get(header::AUTHORIZATION)?;
    Some(
        v.to_str()
            .ok()
            .and_then(|s| s.strip_prefix("Bearer "))
            .map(|t| t.trim().to_string())
            .ok_or(()),
    )
}

/// For a WebSocket upgrade (a GET the CSRF check does not cover): the
/// browser's Origin must be sent and be this host.
pub fn same_origin(headers: &HeaderMap) -> bool {
    headers.contains_key(header::ORIGIN) && origin_matches(headers, None)
}

/// Origin (when sent) must be this host.
fn origin_ok(req: &Request) -> bool {
    origin_matches(req.headers(), req.uri().authority().map(|a| a.to_string()))
}

fn origin_matches(headers: &HeaderMap, authority: Option<String>) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or(authority);
    let origin_host = origin.to_str().ok().and_then(|o| {
        o.split_once("://")
            .map(|(_, h)| h.trim_end_matches('/').to_string())
    });
    matches!((host, origin_host), (Some(h), Some(o)) if h.eq_ignore_ascii_case(&o))
}

pub(super) fn tokens_match(a: &str, b: &str) -> bool {
    !a.is_empty() && a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// Where the expected CSRF token is: the signed-in session's record, or
/// (before sign-in, when there is no session) the signed sign-in cookie.
enum Expected<'a> {
    Session(&'a Session),
    LoginCookie(&'a App),
}

impl Expected<'_> {
    async fn matches(&self, headers: &HeaderMap, sent: &str) -> Result<bool, AppError> {
        match self {
            Expected::Session(session) => {
                let expected = session
                    .get::<String>(keys::CSRF)
                    .await
                    .map_err(AppError::internal)?
                    .unwrap_or_default();
                Ok(tokens_match(&expected, sent))
            }
            Expected::LoginCookie(app) => Ok(super::login_csrf::check(app, headers, sent)),
        }
    }
}

/// Checks the CSRF token of a state-changing request authenticated by the
/// session cookie (or of the sign-in form): the `X-CSRF-Token` header, or the
/// `csrf_token` form field. JSON API calls are exempt from the token (a
/// cross-site JSON request cannot be sent without a CORS preflight, which
/// gpudock never grants) but not from the Origin check. Returns the request
/// with its body intact.
async fn check_csrf(expected: Expected<'_>, req: Request) -> Result<Request, AppError> {
    if !origin_ok(&req) {
        return Err(AppError::Csrf);
    }
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if is_api(req.uri().path()) && content_type.starts_with("application/json") {
        return Ok(req);
    }
    if let Some(h) = req
        .headers()
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
    {
        return if expected.matches(req.headers(), h).await? {
            Ok(req)
        } else {
            Err(AppError::Csrf)
        };
    }
    if !content_type.starts_with("application/x-www-form-urlencoded") {
        return Err(AppError::Csrf);
    }
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .map_err(|_| AppError::BadRequest("err.body_too_large"))?;
    let sent = form_urlencoded::parse(&bytes)
        .find(|(k, _)| k == "csrf_token")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    if !expected.matches(&parts.headers, &sent).await? {
        return Err(AppError::Csrf);
    }
    Ok(Request::from_parts(parts, axum::body::Body::from(bytes)))
}

fn unauthenticated(path: &str, method: &Method) -> Response {
    if is_api(path) || method != Method::GET {
        return AppError::Unauthenticated.into_response();
    }
    let next: String = form_urlencoded::byte_serialize(path.as_bytes()).collect();
    Redirect::to(&format!("/login?next={next}")).into_response()
}

/// What the guard decided for a request.
enum Step {
    /// Answer without calling the handler.
    Answer(Response),
    /// Call the handler; `node_detail`: whether its answer may show a
    /// node's detail (see [`crate::error::hide_node_detail`]).
    Pass { node_detail: bool },
}

pub async fn guard(
    State(app): State<App>,
    session: Session,
    matched: Option<MatchedPath>,
    mut req: Request,
    next: Next,
) -> Response {
    match guard_inner(&app, &session, matched, &mut req).await {
        Ok(Step::Answer(early)) => early,
        Ok(Step::Pass { node_detail: true }) => next.run(req).await,
        Ok(Step::Pass { node_detail: false }) => {
            crate::error::hide_node_detail(next.run(req).await)
        }
        Err(e) => crate::error::hide_node_detail(e.into_response()),
    }
}

/// A request with a method its route does not have: 405 naming the methods
/// it has (records or public). None when the route has the method, or has
/// none at all (a gap in the matrix, denied elsewhere).
async fn wrong_method(
    app: &App,
    method: &Method,
    pattern: &str,
) -> Result<Option<AppError>, AppError> {
    let p = pattern.to_string();
    let methods = app
        .db
        .read(move |c| permissions::methods_of(c, &p).map_err(AppError::from))
        .await?;
    let has = methods.iter().any(|m| m == method.as_str());
    Ok((!has && !methods.is_empty()).then_some(AppError::MethodNotAllowed(methods)))
}

async fn guard_inner(
    app: &App,
    session: &Session,
    matched: Option<MatchedPath>,
    req: &mut Request,
) -> Result<Step, AppError> {
    let pattern = matched.map(|m| m.as_str().to_string()).unwrap_or_default();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let mutating = !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
    let public_method = if method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    if permissions::is_public(public_method, &pattern) {
        if mutating && !is_api(&path) {
            let taken = std::mem::take(req);
            *req = check_csrf(Expected::LoginCookie(app), taken).await?;
        }
        return Ok(Step::Pass { node_detail: false });
    }
    let session_uid = match (
        session
            .get::<i64>(keys::USER_ID)
            .await
            .map_err(AppError::internal)?,
        session
            .get::<i64>(keys::EPOCH)
            .await
            .map_err(AppError::internal)?,
    ) {
        (Some(u), Some(e)) => Some((u, e)),
        _ => None,
    };
    let bearer = match bearer(req.headers()) {
        Some(Ok(t)) => Some(t),
        Some(Err(())) => return Err(AppError::Unauthenticated),
        None => None,
    };
    // HEAD is served by GET handlers and carries GET's permission.
    let perm_method = if method == Method::HEAD {
        "GET".to_string()
    } else {
        method.to_string()
    };
    let Some(caller) = resolve(app, bearer, session_uid, perm_method, pattern.clone()).await?
    else {
        if let Some(e) = wrong_method(app, &method, &pattern).await? {
            return Err(e);
        }
        return Ok(Step::Answer(unauthenticated(&path, &method)));
    };
    if caller.decision == Decision::NoRecord
        && let Some(e) = wrong_method(app, &method, &pattern).await?
    {
        return Err(e);
    }
    if caller.user.must_change_password
        && !permissions::allowed_before_password_change(method.as_str(), &pattern)
    {
        return Err(AppError::PasswordChangeRequired);
    }
    if mutating && caller.via == AuthVia::Session {
        let taken = std::mem::take(req);
        *req = check_csrf(Expected::Session(session), taken).await?;
    }
    match caller.decision {
        Decision::Allow => {}
        Decision::NoRecord => {
            log::error!("route {method} {pattern} has no permission record; denied");
            return Err(AppError::Forbidden);
        }
        Decision::Deny => {
            if mutating {
                let src = source_of(req.headers(), req.extensions().get());
                let actor = Actor::user(&caller.user);
                let (m, p) = (method.to_string(), pattern.clone());
                app.db
                    .write(move |c| {
                        audit::append(
                            c,
                            &Event::new(&actor, &src, "permission.denied", "route")
                                .id(format!("{m} {p}"))
                                .outcome(Outcome::Denied),
                        )
                        .map_err(AppError::from)
                    })
                    .await?;
            }
            return Err(AppError::Forbidden);
        }
    }
    req.extensions_mut().insert(CurrentUser {
        user: caller.user,
        via: caller.via,
    });
    Ok(Step::Pass {
        node_detail: caller.node_detail,
    })
}
