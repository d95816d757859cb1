//! Dataset routes of the JSON API (their files are under
//! `/api/v1/datasets/{id}/files`, see the files capability).

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;

use super::{CreateInput, UpdateInput};
use crate::app::App;
use crate::audit::Source;
use crate::auth::CurrentUser;
use crate::error::AppError;
use crate::ids::NodeId;
use crate::web::extract::{ApiJson, ApiPath, ApiQuery};

pub fn routes() -> Router<App> {
    Router::new()
        .route("/api/v1/datasets", get(list).post(create))
        .route(
            "/api/v1/datasets/{id}",
            get(show).patch(update).delete(remove),
        )
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ListQuery {
    node_id: Option<i64>,
}

async fn list(
    State(app): State<App>,
    me: CurrentUser,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Response, AppError> {
    Ok(axum::Json(super::list(&app, &me, q.node_id.map(NodeId)).await?).into_response())
}

async fn show(
    State(app): State<App>,
    me: CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> Result<Response, AppError> {
    let (d, manages, used_by) = super::get(&app, &me, id).await?;
    let mut v = serde_json::to_value(d).map_err(AppError::internal)?;
    v["manageable"] = json!(manages);
    v["used_by"] = json!(used_by);
    Ok(axum::Json(v).into_response())
}

async fn create(
    State(app): State<App>,
    me: CurrentUser,
    src: Source,
    ApiJson(input): ApiJson<CreateInput>,
) -> Result<Response, AppError> {
    let d = super::create(&app, &me, input, &src).await?;
    Ok((StatusCode::CREATED, axum::Json(d)).into_response())
}

async fn update(
    State(app): State<App>,
    me: CurrentUser,
    src: Source,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<UpdateInput>,
) -> Result<Response, AppError> {
    Ok(axum::Json(super::update(&app, &me, id, input, &src).await?).into_response())
}

async fn remove(
    State(app): State<App>,
    me: CurrentUser,
    src: Source,
    ApiPath(id): ApiPath<i64>,
) -> Result<Response, AppError> {
    super::delete(&app, &me, id, &src).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
