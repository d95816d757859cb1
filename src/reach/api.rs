//! JSON API of an instance's forwarded ports and web services.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post, put};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::App;
use crate::audit::Source;
use crate::auth::CurrentUser;
use crate::error::AppError;
use crate::ids::InstanceId;
use crate::web::extract::{ApiJson, ApiPath};
use crate::web::public::PublicOrigin;

pub fn routes() -> Router<App> {
    Router::new()
        .route("/api/v1/instances/{id}/reach", get(show))
        .route("/api/v1/instances/{id}/reach/ports", put(set_ports))
        .route("/api/v1/instances/{id}/web", post(enable))
        .route("/api/v1/instances/{id}/web/{port}", delete(disable))
}

async fn show(
    State(app): State<App>,
    origin: PublicOrigin,
    me: CurrentUser,
    ApiPath(id): ApiPath<InstanceId>,
) -> Result<impl IntoResponse, AppError> {
    let host = super::browser_host(&origin);
    Ok(Json(super::overview(&app, &me, id, &host).await?))
}

#[derive(Deserialize)]
struct Ports {
    /// `""` (every port) or a list such as `22,8888,9000-9100`.
    ports: String,
}

async fn set_ports(
    State(app): State<App>,
    me: CurrentUser,
    src: Source,
    ApiPath(id): ApiPath<InstanceId>,
    ApiJson(body): ApiJson<Ports>,
) -> Result<impl IntoResponse, AppError> {
    let ports = super::set_forward_ports(&app, &me, id, &body.ports, &src).await?;
    Ok(Json(json!({"instance_id": id, "forward_ports": ports})))
}

#[derive(Deserialize)]
struct Enable {
    port: Option<Value>,
    #[serde(default)]
    name: String,
}

async fn enable(
    State(app): State<App>,
    origin: PublicOrigin,
    me: CurrentUser,
    src: Source,
    ApiPath(id): ApiPath<InstanceId>,
    ApiJson(body): ApiJson<Enable>,
) -> Result<impl IntoResponse, AppError> {
    let new = super::new_service(body.port.as_ref(), &body.name)?;
    let s = super::enable_web(&app, &me, id, new, &src).await?;
    let host = super::browser_host(&origin);
    let url = super::url_of(&app, &s, &host);
    let open = format!("/instances/{id}/web/{}/open", s.target_port);
    Ok((
        StatusCode::CREATED,
        Json(json!({"service": s, "url": url, "open": open})),
    ))
}

async fn disable(
    State(app): State<App>,
    me: CurrentUser,
    src: Source,
    ApiPath((id, port)): ApiPath<(InstanceId, u16)>,
) -> Result<StatusCode, AppError> {
    super::disable_web(&app, &me, id, port, &src).await?;
    Ok(StatusCode::NO_CONTENT)
}
