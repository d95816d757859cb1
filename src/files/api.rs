//! File routes of the JSON API, the same for an instance's files and a
//! dataset's: list, download (a folder as a tar), upload (the raw body),
//! new folder, delete, rename; and the file operations log.

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Doer, FileTarget, Filter, Place};
use crate::app::App;
use crate::audit::Source;
use crate::auth::CurrentUser;
use crate::error::AppError;
use crate::ids::InstanceId;
use crate::validate::bool_field;
use crate::web::extract::{ApiJson, ApiPath, ApiQuery};

pub fn routes() -> Router<App> {
    let mut r = Router::new().route("/api/v1/file-operations", get(operations));
    for (target, base) in [
        (FileTarget::Instance, "/api/v1/instances/{id}/files"),
        (FileTarget::Dataset, "/api/v1/datasets/{id}/files"),
    ] {
        r = r
            .route(
                base,
                get(async move |s, me, id, q| list(target, s, me, id, q).await),
            )
            .route(
                &format!("{base}/download"),
                get(async move |s, me, src, id, q| download(target, s, me, src, id, q).await),
            )
            .route(
                &format!("{base}/upload"),
                put(async move |s, me, src, id, q, h, b| {
                    upload(target, s, me, src, id, q, h, b).await
                }),
            )
            .route(
                &format!("{base}/mkdir"),
                post(async move |s, me, src, id, b| mkdir(target, s, me, src, id, b).await),
            )
            .route(
                &format!("{base}/delete"),
                post(async move |s, me, src, id, b| delete(target, s, me, src, id, b).await),
            )
            .route(
                &format!("{base}/rename"),
                post(async move |s, me, src, id, b| rename(target, s, me, src, id, b).await),
            );
    }
    r
}

/// The place an id names for `target`.
pub async fn place(
    app: &App,
    me: &CurrentUser,
    target: FileTarget,
    id: i64,
) -> Result<Place, AppError> {
    match target {
        FileTarget::Instance => super::instance(app, me, InstanceId(id)).await,
        FileTarget::Dataset => super::dataset(app, me, id).await,
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct PathQuery {
    pub path: Option<String>,
}

async fn list(
    target: FileTarget,
    State(app): State<App>,
    me: CurrentUser,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(q): ApiQuery<PathQuery>,
) -> Result<Response, AppError> {
    let p = place(&app, &me, target, id).await?;
    let path = q.path.unwrap_or_else(|| p.home.clone());
    Ok(axum::Json(super::list(&app, &me, &p, &path).await?).into_response())
}

async fn download(
    target: FileTarget,
    State(app): State<App>,
    me: CurrentUser,
    src: Source,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(q): ApiQuery<PathQuery>,
) -> Result<Response, AppError> {
    let p = place(&app, &me, target, id).await?;
    let path = q
        .path
        .ok_or_else(|| AppError::field("path", "err.required"))?;
    super::transfer::download(&app, &Doer::web(&me, &src), &p, &path).await
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct UploadQuery {
    pub path: Option<String>,
    pub overwrite: Option<String>,
}

#[allow(clippy::too_many_arguments)]
async fn upload(
    target: FileTarget,
    State(app): State<App>,
    me: CurrentUser,
    src: Source,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(q): ApiQuery<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, AppError> {
    let mut e = crate::error::FieldErrors::new();
    let overwrite = bool_field(
        &mut e,
        "overwrite",
        q.overwrite.map(Value::String).as_ref(),
        false,
    );
    if !e.is_empty() {
        return Err(AppError::Validation(e));
    }
    let path = q
        .path
        .ok_or_else(|| AppError::field("path", "err.required"))?;
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let p = place(&app, &me, target, id).await?;
    let done = super::transfer::upload(
        &app,
        &Doer::web(&me, &src),
        &p,
        &path,
        overwrite,
        length,
        body,
    )
    .await?;
    Ok((StatusCode::CREATED, axum::Json(done)).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct MkdirBody {
    /// The folder to make it in.
    pub path: Option<String>,
    pub name: Option<String>,
}

async fn mkdir(
    target: FileTarget,
    State(app): State<App>,
    me: CurrentUser,
    src: Source,
    ApiPath(id): ApiPath<i64>,
    ApiJson(b): ApiJson<MkdirBody>,
) -> Result<Response, AppError> {
    let dir = b
        .path
        .ok_or_else(|| AppError::field("path", "err.required"))?;
    let name = b.name.unwrap_or_default();
    let p = place(&app, &me, target, id).await?;
    let made = super::mkdir(&app, &Doer::web(&me, &src), &p, &dir, &name).await?;
    Ok((StatusCode::CREATED, axum::Json(json!({"path": made}))).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct DeleteBody {
    pub path: Option<String>,
    /// Also everything in a folder.
    pub recursive: Option<Value>,
}

async fn delete(
    target: FileTarget,
    State(app): State<App>,
    me: CurrentUser,
    src: Source,
    ApiPath(id): ApiPath<i64>,
    ApiJson(b): ApiJson<DeleteBody>,
) -> Result<Response, AppError> {
    let mut e = crate::error::FieldErrors::new();
    let recursive = bool_field(&mut e, "recursive", b.recursive.as_ref(), false);
    if !e.is_empty() {
        return Err(AppError::Validation(e));
    }
    let path = b
        .path
        .ok_or_else(|| AppError::field("path", "err.required"))?;
    let p = place(&app, &me, target, id).await?;
    super::delete(&app, &Doer::web(&me, &src), &p, &path, recursive).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RenameBody {
    pub from: Option<String>,
    pub to: Option<String>,
}

async fn rename(
    target: FileTarget,
    State(app): State<App>,
    me: CurrentUser,
    src: Source,
    ApiPath(id): ApiPath<i64>,
    ApiJson(b): ApiJson<RenameBody>,
) -> Result<Response, AppError> {
    let from = b
        .from
        .ok_or_else(|| AppError::field("from", "err.required"))?;
    let to = b.to.ok_or_else(|| AppError::field("to", "err.required"))?;
    let p = place(&app, &me, target, id).await?;
    super::rename(&app, &Doer::web(&me, &src), &p, &from, &to).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn operations(
    State(app): State<App>,
    me: CurrentUser,
    ApiQuery(f): ApiQuery<Filter>,
) -> Result<Response, AppError> {
    Ok(axum::Json(super::operations(&app, &me, f).await?).into_response())
}
