//! JSON API of leases: `PATCH /api/v1/instances/{id}` sets the lease end
//! (`lease_end`, Unix seconds or null; an admin's), and an admin's reclaim:
//! `GET` shows what it would end, `POST` with `{"confirm": true}` runs it.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::{get, patch, post};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::App;
use crate::audit::Source;
use crate::auth::CurrentUser;
use crate::error::{AppError, FieldErrors};
use crate::ids::InstanceId;
use crate::web::extract::{ApiJson, ApiPath};

pub fn routes() -> Router<App> {
    Router::new()
        .route("/api/v1/instances/{id}", patch(set_lease))
        .route("/api/v1/instances/{id}/reclaim", get(preview).post(reclaim))
        .route(
            "/api/v1/instances/{id}/return",
            get(return_preview).post(give_back),
        )
        .route("/api/v1/instances/{id}/lease-requests", post(request))
        .route("/api/v1/lease-requests", get(requests))
        .route(
            "/api/v1/lease-requests/{id}/approve",
            post(async |s, m, src, p| decide(true, s, m, src, p).await),
        )
        .route(
            "/api/v1/lease-requests/{id}/reject",
            post(async |s, m, src, p| decide(false, s, m, src, p).await),
        )
}

/// Keeps `null` apart from an absent key.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

#[derive(Debug, Default, Deserialize)]
struct Patch {
    #[serde(default, deserialize_with = "present")]
    lease_end: Option<Value>,
}

async fn set_lease(
    State(app): State<App>,
    me: CurrentUser,
    src: Source,
    ApiPath(id): ApiPath<InstanceId>,
    ApiJson(p): ApiJson<Patch>,
) -> Result<impl IntoResponse, AppError> {
    let mut e = FieldErrors::new();
    let end = super::lease_field(&mut e, p.lease_end.as_ref());
    if !e.is_empty() {
        return Err(AppError::Validation(e));
    }
    Ok(Json(match end {
        Some(end) => super::set_lease(&app, &me, id, end, &src).await?,
        None => crate::instances::get(&app, &me, id).await?,
    }))
}

async fn preview(
    State(app): State<App>,
    me: CurrentUser,
    ApiPath(id): ApiPath<InstanceId>,
) -> Result<impl IntoResponse, AppError> {
    Ok(Json(super::preview(&app, &me, id).await?))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Confirm {
    confirm: Option<Value>,
}

impl Confirm {
    /// `confirm` as a strict boolean (absent: false).
    fn strict(&self) -> Result<bool, AppError> {
        let mut e = FieldErrors::new();
        let confirm = crate::validate::bool_field(&mut e, "confirm", self.confirm.as_ref(), false);
        if !e.is_empty() {
            return Err(AppError::Validation(e));
        }
        Ok(confirm)
    }
}

async fn reclaim(
    State(app): State<App>,
    me: CurrentUser,
    src: Source,
    ApiPath(id): ApiPath<InstanceId>,
    ApiJson(c): ApiJson<Confirm>,
) -> Result<impl IntoResponse, AppError> {
    let confirm = c.strict()?;
    let steps = super::reclaim_by(&app, &me, id, confirm, &src).await?;
    Ok(Json(json!({"steps": steps})))
}

async fn return_preview(
    State(app): State<App>,
    me: CurrentUser,
    ApiPath(id): ApiPath<InstanceId>,
) -> Result<impl IntoResponse, AppError> {
    Ok(Json(super::return_preview(&app, &me, id).await?))
}

/// The owner's early return (退还): `{"confirm": true}` after the preview.
async fn give_back(
    State(app): State<App>,
    me: CurrentUser,
    src: Source,
    ApiPath(id): ApiPath<InstanceId>,
    ApiJson(c): ApiJson<Confirm>,
) -> Result<impl IntoResponse, AppError> {
    let confirm = c.strict()?;
    let steps = super::return_by(&app, &me, id, confirm, &src).await?;
    Ok(Json(json!({"steps": steps})))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RequestBody {
    lease_end: Option<Value>,
    reason: Option<String>,
}

async fn request(
    State(app): State<App>,
    me: CurrentUser,
    src: Source,
    ApiPath(id): ApiPath<InstanceId>,
    ApiJson(b): ApiJson<RequestBody>,
) -> Result<impl IntoResponse, AppError> {
    let reason = b.reason.unwrap_or_default();
    let r = super::request(&app, &me, id, b.lease_end.as_ref(), &reason, &src).await?;
    Ok((axum::http::StatusCode::CREATED, Json(r)))
}

async fn requests(State(app): State<App>, me: CurrentUser) -> Result<impl IntoResponse, AppError> {
    Ok(Json(super::requests(&app, &me, None).await?))
}

async fn decide(
    approve: bool,
    State(app): State<App>,
    me: CurrentUser,
    src: Source,
    ApiPath(id): ApiPath<i64>,
) -> Result<impl IntoResponse, AppError> {
    Ok(Json(super::decide(&app, &me, id, approve, &src).await?))
}
