//! JSON API of compute nodes (admin only by default): CRUD, Test connection,
//! Sync hardware, register this host. Responses never carry the password or
//! the client key, only `has_password` / `has_client_key`.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::model::NodeInput;
use crate::app::App;
use crate::audit::Source;
use crate::auth::CurrentUser;
use crate::error::AppError;
use crate::ids::NodeId;
use crate::paging::Paging;
use crate::web::extract::{ApiJson, ApiPath};

pub fn routes() -> Router<App> {
    Router::new()
        .route("/api/v1/nodes", get(list).post(create))
        .route("/api/v1/nodes/register-local", post(register_local))
        .route("/api/v1/nodes/{id}", get(show).patch(update).delete(remove))
        .route("/api/v1/nodes/{id}/test", post(test))
        .route("/api/v1/nodes/{id}/sync", post(sync))
}

async fn list(State(app): State<App>, paging: Paging) -> Result<Response, AppError> {
    Ok(paging.json(&super::list(&app, paging.search(), paging.window).await?))
}

async fn show(
    State(app): State<App>,
    ApiPath(id): ApiPath<NodeId>,
) -> Result<impl IntoResponse, AppError> {
    Ok(Json(super::get(&app, id).await?))
}

async fn create(
    State(app): State<App>,
    me: CurrentUser,
    src: Source,
    ApiJson(i): ApiJson<NodeInput>,
) -> Result<impl IntoResponse, AppError> {
    Ok((
        StatusCode::CREATED,
        Json(super::save(&app, &me, None, i, &src).await?),
    ))
}

async fn update(
    State(app): State<App>,
    me: CurrentUser,
    src: Source,
    ApiPath(id): ApiPath<NodeId>,
    ApiJson(i): ApiJson<NodeInput>,
) -> Result<impl IntoResponse, AppError> {
    Ok(Json(super::save(&app, &me, Some(id), i, &src).await?))
}

async fn remove(
    State(app): State<App>,
    me: CurrentUser,
    src: Source,
    ApiPath(id): ApiPath<NodeId>,
) -> Result<StatusCode, AppError> {
    super::delete(&app, &me, id, &src).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn test(
    State(app): State<App>,
    me: CurrentUser,
    src: Source,
    ApiPath(id): ApiPath<NodeId>,
) -> Result<impl IntoResponse, AppError> {
    Ok(Json(super::test(&app, &me, id, &src).await?))
}

async fn sync(
    State(app): State<App>,
    me: CurrentUser,
    src: Source,
    ApiPath(id): ApiPath<NodeId>,
) -> Result<impl IntoResponse, AppError> {
    Ok(Json(super::sync(&app, &me, id, &src).await?))
}

async fn register_local(
    State(app): State<App>,
    me: CurrentUser,
    src: Source,
) -> Result<impl IntoResponse, AppError> {
    Ok((
        StatusCode::CREATED,
        Json(super::register_local(&app, &me, &src).await?),
    ))
}
