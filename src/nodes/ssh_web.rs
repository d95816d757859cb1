//! Routes of a node's SSH: the node page's SSH section (pinned host key,
//! Test SSH, Forget host key; an htmx fragment) and the JSON equivalents.

use askama::Template;
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde_json::json;

use super::ssh::{self, PinnedKey, SshTestResult};
use crate::app::App;
use crate::audit::Source;
use crate::auth::{CurrentUser, PageCtx};
use crate::error::AppError;
use crate::ids::NodeId;
use crate::web::extract::ApiPath;
use crate::web::render::{Layout, html, is_htmx};

pub fn routes() -> Router<App> {
    Router::new()
        .route("/nodes/{id}/ssh", get(section))
        .route("/nodes/{id}/ssh-test", post(test_page))
        .route("/nodes/{id}/ssh-host-key/forget", post(forget_page))
        .route(
            "/api/v1/nodes/{id}/ssh-host-key",
            get(key_api).delete(forget_api),
        )
        .route("/api/v1/nodes/{id}/ssh-test", post(test_api))
}

#[derive(Template)]
#[template(path = "nodes/ssh.html")]
struct Section {
    l: Layout,
    id: NodeId,
    key: Option<PinnedKey>,
    result: Option<SshTestResult>,
    forgotten: bool,
}

async fn render(
    app: &App,
    ctx: PageCtx,
    id: NodeId,
    result: Option<SshTestResult>,
    forgotten: bool,
) -> Result<Response, AppError> {
    let key = ssh::host_key(app, id).await?;
    html(&Section {
        l: ctx.l,
        id,
        key,
        result,
        forgotten,
    })
}

async fn section(
    State(app): State<App>,
    ctx: PageCtx,
    ApiPath(id): ApiPath<NodeId>,
) -> Result<Response, AppError> {
    render(&app, ctx, id, None, false).await
}

async fn test_page(
    State(app): State<App>,
    headers: HeaderMap,
    ctx: PageCtx,
    src: Source,
    ApiPath(id): ApiPath<NodeId>,
) -> Result<Response, AppError> {
    let result = ssh::test(&app, &ctx.me, id, &src).await?;
    if !is_htmx(&headers) {
        return Ok(Redirect::to(&format!("/nodes/{id}")).into_response());
    }
    render(&app, ctx, id, Some(result), false).await
}

async fn forget_page(
    State(app): State<App>,
    headers: HeaderMap,
    ctx: PageCtx,
    src: Source,
    ApiPath(id): ApiPath<NodeId>,
) -> Result<Response, AppError> {
    let forgotten = ssh::forget(&app, &ctx.me, id, &src).await?;
    if !is_htmx(&headers) {
        return Ok(Redirect::to(&format!("/nodes/{id}")).into_response());
    }
    render(&app, ctx, id, None, forgotten).await
}

async fn key_api(
    State(app): State<App>,
    ApiPath(id): ApiPath<NodeId>,
) -> Result<impl IntoResponse, AppError> {
    Ok(Json(json!({ "host_key": ssh::host_key(&app, id).await? })))
}

async fn forget_api(
    State(app): State<App>,
    me: CurrentUser,
    src: Source,
    ApiPath(id): ApiPath<NodeId>,
) -> Result<StatusCode, AppError> {
    if ssh::forget(&app, &me, id, &src).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(AppError::NotFound)
    }
}

async fn test_api(
    State(app): State<App>,
    me: CurrentUser,
    src: Source,
    ApiPath(id): ApiPath<NodeId>,
) -> Result<impl IntoResponse, AppError> {
    Ok(Json(ssh::test(&app, &me, id, &src).await?))
}
