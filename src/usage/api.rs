//! JSON and CSV of usage: `GET /api/v1/usage` (per instance and month:
//! `gpu_hours`, `cpu_core_hours`, `cost`; filters `user`, `tenant`,
//! `month`), `GET /api/v1/usage.csv` (the same rows as a download).

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use super::Filter;
use crate::app::App;
use crate::auth::CurrentUser;
use crate::error::AppError;
use crate::web::extract::ApiQuery;

pub fn routes() -> Router<App> {
    Router::new()
        .route("/api/v1/usage", get(usage))
        .route("/api/v1/usage.csv", get(usage_csv))
}

async fn usage(
    State(app): State<App>,
    me: CurrentUser,
    ApiQuery(f): ApiQuery<Filter>,
) -> Result<Response, AppError> {
    if f.format.as_deref() == Some("csv") {
        return csv(&app, &me, &f).await;
    }
    let rows = super::list(&app, &me, &f).await?;
    Ok(Json(json!({"currency": app.config.server.currency, "usage": rows})).into_response())
}

async fn usage_csv(
    State(app): State<App>,
    me: CurrentUser,
    ApiQuery(f): ApiQuery<Filter>,
) -> Result<Response, AppError> {
    csv(&app, &me, &f).await
}

async fn csv(app: &App, me: &CurrentUser, f: &Filter) -> Result<Response, AppError> {
    let rows = super::list(app, me, f).await?;
    let body = super::to_csv(&rows, &app.config.server.currency)?;
    let name = format!(
        "usage-{}.csv",
        f.month
            .as_deref()
            .filter(|m| !m.is_empty())
            .unwrap_or("all")
    );
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(r)
}
