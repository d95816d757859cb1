//! JSON API of SSH keys: `/api/v1/ssh-keys`, the caller's own keys only.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};

use super::model::KeyInput;
use crate::app::App;
use crate::audit::Source;
use crate::auth::CurrentUser;
use crate::error::AppError;
use crate::paging::Paging;
use crate::web::extract::{ApiJson, ApiPath};

pub fn routes() -> Router<App> {
    Router::new()
        .route("/api/v1/ssh-keys", get(list_keys).post(add_key))
        .route("/api/v1/ssh-keys/{id}", delete(delete_key))
}

async fn list_keys(
    State(app): State<App>,
    me: CurrentUser,
    paging: Paging,
) -> Result<Response, AppError> {
    Ok(paging.json(&super::list(&app, &me, paging.window).await?))
}

async fn add_key(
    State(app): State<App>,
    me: CurrentUser,
    src: Source,
    ApiJson(input): ApiJson<KeyInput>,
) -> Result<impl IntoResponse, AppError> {
    Ok((
        StatusCode::CREATED,
        Json(super::add(&app, &me, &input, &src).await?),
    ))
}

async fn delete_key(
    State(app): State<App>,
    me: CurrentUser,
    src: Source,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, AppError> {
    super::delete(&app, &me, id, &src).await?;
    Ok(StatusCode::NO_CONTENT)
}
