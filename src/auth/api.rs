//! JSON API of accounts: sign-in, me, password, tokens, users, tenants and the
//! permission matrix. Thin: parse, call `service`/`accounts`, shape the answer.

use axum::Json;
use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use serde::Deserialize;
use serde_json::json;
use tower_sessions::Session;

use super::accounts::{self, TenantInput, TenantPatch, UserInput, UserPatch};
use super::guard::{AuthVia, CurrentUser, csrf_token};
use super::model::{Scope, TenantId, UserId};
use super::{permissions, service, store};
use crate::app::App;
use crate::audit::Source;
use crate::error::AppError;
use crate::paging::Paging;
use crate::web::extract::{ApiJson, ApiPath};
use axum::extract::State;

pub fn routes() -> Router<App> {
    Router::new()
        .route("/api/v1/auth/login", post(login))
        .route("/api/v1/auth/logout", post(logout))
        .route("/api/v1/auth/password", post(password))
        .route("/api/v1/me", get(me))
        .route("/api/v1/tokens", get(list_tokens).post(create_token))
        .route("/api/v1/tokens/{id}", delete(revoke_token))
        .route("/api/v1/users", get(list_users).post(create_user))
        .route("/api/v1/users/{id}", get(get_user).patch(update_user))
        .route("/api/v1/users/{id}/reset-password", post(reset_password))
        .route("/api/v1/users/{id}/unlock", post(unlock))
        .route("/api/v1/tenants", get(list_tenants).post(create_tenant))
        .route("/api/v1/tenants/{id}", get(get_tenant).patch(update_tenant))
        .route("/api/v1/permissions", get(list_permissions))
        .route("/api/v1/permissions/{role}/{id}", put(grant).delete(revoke))
}

#[derive(Deserialize)]
struct LoginBody {
    username: String,
    password: String,
}

async fn login(
    State(app): State<App>,
    session: Session,
    src: Source,
    ApiJson(body): ApiJson<LoginBody>,
) -> Result<impl IntoResponse, AppError> {
    let user = service::login(&app, &body.username, &body.password, &src).await?;
    service::start_session(&session, &user, user.session_epoch).await?;
    Ok(Json(
        json!({ "user": user, "must_change_password": user.must_change_password }),
    ))
}

async fn logout(
    State(app): State<App>,
    session: Session,
    me: CurrentUser,
    src: Source,
) -> Result<StatusCode, AppError> {
    service::logout(&app, &session, me.actor(), &src).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct PasswordBody {
    current_password: String,
    new_password: String,
    /// Also revoke every API token of mine (default: keep them).
    #[serde(default)]
    revoke_tokens: bool,
}

async fn password(
    State(app): State<App>,
    session: Session,
    me: CurrentUser,
    src: Source,
    ApiJson(body): ApiJson<PasswordBody>,
) -> Result<StatusCode, AppError> {
    let epoch = service::change_password(
        &app,
        &me.user,
        &body.current_password,
        &body.new_password,
        body.revoke_tokens,
        &src,
    )
    .await?;
    if me.via == AuthVia::Session {
        service::start_session(&session, &me.user, epoch).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn me(session: Session, me: CurrentUser) -> Result<impl IntoResponse, AppError> {
    let csrf = match me.via {
        AuthVia::Session => Some(csrf_token(&session).await?),
        AuthVia::Token(_) | AuthVia::Ssh => None,
    };
    Ok(Json(json!({
        "user": me.user,
        "must_change_password": me.user.must_change_password,
        "csrf_token": csrf,
    })))
}

async fn list_tokens(
    State(app): State<App>,
    me: CurrentUser,
    paging: Paging,
) -> Result<Response, AppError> {
    let (uid, w) = (me.user.id, paging.window);
    let tokens = app
        .db
        .read(move |c| store::tokens_page(c, uid, w).map_err(AppError::from))
        .await?;
    Ok(paging.json(&tokens))
}

#[derive(Deserialize)]
struct TokenBody {
    #[serde(default)]
    name: String,
    /// `api` (the default) or `metrics`.
    scope: Option<String>,
}

async fn create_token(
    State(app): State<App>,
    me: CurrentUser,
    src: Source,
    ApiJson(body): ApiJson<TokenBody>,
) -> Result<impl IntoResponse, AppError> {
    let (tok, secret) =
        service::create_token(&app, &me.user, &body.name, body.scope.as_deref(), &src).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "token": secret, "api_token": tok })),
    ))
}

async fn revoke_token(
    State(app): State<App>,
    me: CurrentUser,
    src: Source,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, AppError> {
    service::revoke_token(&app, &me.user, id, &src).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_users(
    State(app): State<App>,
    me: CurrentUser,
    paging: Paging,
) -> Result<Response, AppError> {
    let (scope, w, search) = (me.scope(), paging.window, paging.search());
    search.status_of(&store::USER_STATUSES)?;
    let users = app
        .db
        .read(move |c| store::users_page(c, scope, &search, w).map_err(AppError::from))
        .await?;
    Ok(paging.json(&users))
}

async fn get_user(
    State(app): State<App>,
    me: CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> Result<impl IntoResponse, AppError> {
    let scope = me.scope();
    let user = app
        .db
        .read(move |c| store::get_user(c, scope, UserId(id)).map_err(AppError::from))
        .await?
        .ok_or(AppError::NotFound)?;
    Ok(Json(user))
}

async fn create_user(
    State(app): State<App>,
    me: CurrentUser,
    src: Source,
    ApiJson(input): ApiJson<UserInput>,
) -> Result<impl IntoResponse, AppError> {
    let (user, generated) = accounts::create_user(&app, &me, input, &src).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "user": user, "initial_password": generated })),
    ))
}

async fn update_user(
    State(app): State<App>,
    me: CurrentUser,
    src: Source,
    ApiPath(id): ApiPath<i64>,
    ApiJson(patch): ApiJson<UserPatch>,
) -> Result<impl IntoResponse, AppError> {
    Ok(Json(
        accounts::update_user(&app, &me, UserId(id), patch, &src).await?,
    ))
}

/// A temporary password for the user (shown once); their sessions end and
/// their API tokens are revoked.
async fn reset_password(
    State(app): State<App>,
    me: CurrentUser,
    src: Source,
    ApiPath(id): ApiPath<i64>,
) -> Result<impl IntoResponse, AppError> {
    let (user, password) = accounts::reset_password(&app, &me, UserId(id), &src).await?;
    Ok(Json(
        json!({ "user": user, "temporary_password": password }),
    ))
}

async fn unlock(
    State(app): State<App>,
    me: CurrentUser,
    src: Source,
    ApiPath(id): ApiPath<i64>,
) -> Result<impl IntoResponse, AppError> {
    Ok(Json(accounts::unlock(&app, &me, UserId(id), &src).await?))
}

async fn list_tenants(
    State(app): State<App>,
    me: CurrentUser,
    paging: Paging,
) -> Result<Response, AppError> {
    let (scope, w) = (me.scope(), paging.window);
    let tenants = app
        .db
        .read(move |c| store::tenants_page(c, scope, w).map_err(AppError::from))
        .await?;
    Ok(paging.json(&tenants))
}

async fn get_tenant(
    State(app): State<App>,
    me: CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> Result<impl IntoResponse, AppError> {
    let scope = me.scope();
    let t = app
        .db
        .read(move |c| store::get_tenant(c, scope, TenantId(id)).map_err(AppError::from))
        .await?
        .ok_or(AppError::NotFound)?;
    Ok(Json(t))
}

async fn create_tenant(
    State(app): State<App>,
    me: CurrentUser,
    src: Source,
    ApiJson(input): ApiJson<TenantInput>,
) -> Result<impl IntoResponse, AppError> {
    Ok((
        StatusCode::CREATED,
        Json(accounts::create_tenant(&app, &me, input, &src).await?),
    ))
}

async fn update_tenant(
    State(app): State<App>,
    me: CurrentUser,
    src: Source,
    ApiPath(id): ApiPath<i64>,
    ApiJson(patch): ApiJson<TenantPatch>,
) -> Result<impl IntoResponse, AppError> {
    Ok(Json(
        accounts::update_tenant(&app, &me, TenantId(id), patch, &src).await?,
    ))
}

async fn list_permissions(State(app): State<App>) -> Result<impl IntoResponse, AppError> {
    let perms = app
        .db
        .read(|c| permissions::list(c).map_err(AppError::from))
        .await?;
    Ok(Json(perms))
}

async fn grant(
    State(app): State<App>,
    me: CurrentUser,
    src: Source,
    ApiPath((role, id)): ApiPath<(String, i64)>,
) -> Result<impl IntoResponse, AppError> {
    Ok(Json(
        accounts::set_grant(&app, &me, &role, id, true, &src).await?,
    ))
}

async fn revoke(
    State(app): State<App>,
    me: CurrentUser,
    src: Source,
    ApiPath((role, id)): ApiPath<(String, i64)>,
) -> Result<impl IntoResponse, AppError> {
    Ok(Json(
        accounts::set_grant(&app, &me, &role, id, false, &src).await?,
    ))
}

/// Scope helper for other capabilities' handlers.
pub fn scope_of(me: &CurrentUser) -> Scope {
    me.scope()
}
