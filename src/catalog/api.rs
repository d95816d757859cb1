//! JSON API of the catalog: `/api/v1/images` and `/api/v1/specs`.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::model::{ImageInput, SpecInput};
use super::store::Table;
use crate::app::App;
use crate::audit::Source;
use crate::auth::CurrentUser;
use crate::error::AppError;
use crate::paging::Paging;
use crate::web::extract::{ApiJson, ApiPath};

pub fn routes() -> Router<App> {
    Router::new()
        .route("/api/v1/images", get(list_images).post(create_image))
        .route(
            "/api/v1/images/{id}",
            get(get_image).patch(update_image).delete(delete_image),
        )
        .route("/api/v1/specs", get(list_specs).post(create_spec))
        .route(
            "/api/v1/specs/{id}",
            get(get_spec).patch(update_spec).delete(delete_spec),
        )
}

async fn list_images(
    State(app): State<App>,
    me: CurrentUser,
    paging: Paging,
) -> Result<Response, AppError> {
    Ok(paging.json(&super::list_images(&app, &me, paging.window).await?))
}

async fn get_image(
    State(app): State<App>,
    me: CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> Result<impl IntoResponse, AppError> {
    Ok(Json(super::get_image(&app, &me, id).await?))
}

async fn create_image(
    State(app): State<App>,
    me: CurrentUser,
    src: Source,
    ApiJson(i): ApiJson<ImageInput>,
) -> Result<impl IntoResponse, AppError> {
    Ok((
        StatusCode::CREATED,
        Json(super::save_image(&app, &me, None, i, &src).await?),
    ))
}

async fn update_image(
    State(app): State<App>,
    me: CurrentUser,
    src: Source,
    ApiPath(id): ApiPath<i64>,
    ApiJson(i): ApiJson<ImageInput>,
) -> Result<impl IntoResponse, AppError> {
    Ok(Json(super::save_image(&app, &me, Some(id), i, &src).await?))
}

async fn delete_image(
    State(app): State<App>,
    me: CurrentUser,
    src: Source,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, AppError> {
    super::delete(&app, &me, Table::Images, id, &src).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_specs(
    State(app): State<App>,
    me: CurrentUser,
    paging: Paging,
) -> Result<Response, AppError> {
    Ok(paging.json(&super::list_specs(&app, &me, paging.window).await?))
}

async fn get_spec(
    State(app): State<App>,
    me: CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> Result<impl IntoResponse, AppError> {
    Ok(Json(super::get_spec(&app, &me, id).await?))
}

async fn create_spec(
    State(app): State<App>,
    me: CurrentUser,
    src: Source,
    ApiJson(i): ApiJson<SpecInput>,
) -> Result<impl IntoResponse, AppError> {
    Ok((
        StatusCode::CREATED,
        Json(super::save_spec(&app, &me, None, i, &src).await?),
    ))
}

async fn update_spec(
    State(app): State<App>,
    me: CurrentUser,
    src: Source,
    ApiPath(id): ApiPath<i64>,
    ApiJson(i): ApiJson<SpecInput>,
) -> Result<impl IntoResponse, AppError> {
    Ok(Json(super::save_spec(&app, &me, Some(id), i, &src).await?))
}

async fn delete_spec(
    State(app): State<App>,
    me: CurrentUser,
    src: Source,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, AppError> {
    super::delete(&app, &me, Table::Specs, id, &src).await?;
    Ok(StatusCode::NO_CONTENT)
}
