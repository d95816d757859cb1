//! JSON API of alerts: `/api/v1/alert-rules`, `/api/v1/alerts` (with
//! acknowledge and close), `/api/v1/notification-channels` (test message,
//! delivery log) and `/api/v1/maintenance-windows`, each `[/{id}]`. Admins
//! manage everything; everyone reads the alerts their scope reaches.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::channels::{self, ChannelIn};
use super::manage::{self, AlertFilter, By, Handle, RuleIn, WindowIn};
use super::model::RuleId;
use crate::app::App;
use crate::audit::Source;
use crate::auth::CurrentUser;
use crate::error::AppError;
use crate::web::extract::{ApiJson, ApiPath, ApiQuery};

pub fn routes() -> Router<App> {
    Router::new()
        .route("/api/v1/alert-rules", get(list_rules).post(create_rule))
        .route(
            "/api/v1/alert-rules/{id}",
            get(show_rule).put(update_rule).delete(delete_rule),
        )
        .route("/api/v1/alerts", get(list_alerts))
        .route("/api/v1/alerts/{id}", get(show_alert))
        .route("/api/v1/alerts/{id}/ack", post(ack))
        .route("/api/v1/alerts/{id}/close", post(close))
        .route(
            "/api/v1/notification-channels",
            get(list_channels).post(create_channel),
        )
        .route(
            "/api/v1/notification-channels/{id}",
            get(show_channel).put(update_channel).delete(delete_channel),
        )
        .route(
            "/api/v1/notification-channels/{id}/test",
            post(test_channel),
        )
        .route(
            "/api/v1/notification-channels/{id}/deliveries",
            get(channel_deliveries),
        )
        .route(
            "/api/v1/maintenance-windows",
            get(list_windows).post(create_window),
        )
        .route(
            "/api/v1/maintenance-windows/{id}",
            get(show_window).put(update_window).delete(delete_window),
        )
}

fn by(me: &CurrentUser, source: Source) -> By {
    By {
        actor: me.actor(),
        source,
    }
}

async fn list_rules(State(app): State<App>) -> Result<impl IntoResponse, AppError> {
    Ok(Json(manage::rules(&app.db).await?))
}

async fn create_rule(
    State(app): State<App>,
    me: CurrentUser,
    src: Source,
    ApiJson(input): ApiJson<RuleIn>,
) -> Result<impl IntoResponse, AppError> {
    let r = manage::create_rule(&app.db, by(&me, src), input).await?;
    Ok((StatusCode::CREATED, Json(r)))
}

async fn show_rule(
    State(app): State<App>,
    ApiPath(id): ApiPath<i64>,
) -> Result<impl IntoResponse, AppError> {
    Ok(Json(manage::rule(&app.db, RuleId(id)).await?))
}

async fn update_rule(
    State(app): State<App>,
    me: CurrentUser,
    src: Source,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<RuleIn>,
) -> Result<impl IntoResponse, AppError> {
    let r = manage::update_rule(&app.db, by(&me, src), RuleId(id), input).await?;
    Ok(Json(r))
}

async fn delete_rule(
    State(app): State<App>,
    me: CurrentUser,
    src: Source,
    ApiPath(id): ApiPath<i64>,
) -> Result<impl IntoResponse, AppError> {
    manage::delete_rule(&app.db, by(&me, src), RuleId(id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_alerts(
    State(app): State<App>,
    me: CurrentUser,
    ApiQuery(f): ApiQuery<AlertFilter>,
) -> Result<impl IntoResponse, AppError> {
    Ok(Json(manage::alerts(&app.db, me.scope(), f).await?))
}

async fn show_alert(
    State(app): State<App>,
    me: CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> Result<impl IntoResponse, AppError> {
    Ok(Json(manage::alert(&app.db, me.scope(), id).await?))
}

/// The body of acknowledge and close.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct NoteIn {
    note: String,
}

async fn ack(
    State(app): State<App>,
    me: CurrentUser,
    src: Source,
    ApiPath(id): ApiPath<i64>,
    ApiJson(n): ApiJson<NoteIn>,
) -> Result<impl IntoResponse, AppError> {
    let a = manage::handle(&app.db, by(&me, src), id, Handle::Ack, &n.note).await?;
    Ok(Json(a))
}

async fn close(
    State(app): State<App>,
    me: CurrentUser,
    src: Source,
    ApiPath(id): ApiPath<i64>,
    ApiJson(n): ApiJson<NoteIn>,
) -> Result<impl IntoResponse, AppError> {
    let a = manage::handle(&app.db, by(&me, src), id, Handle::Close, &n.note).await?;
    Ok(Json(a))
}

async fn list_channels(
    State(app): State<App>,
    me: CurrentUser,
) -> Result<impl IntoResponse, AppError> {
    Ok(Json(channels::list(&app.db, me.scope()).await?))
}

async fn create_channel(
    State(app): State<App>,
    me: CurrentUser,
    src: Source,
    ApiJson(input): ApiJson<ChannelIn>,
) -> Result<impl IntoResponse, AppError> {
    let c = channels::create(&app.db, &app.sealer, by(&me, src), me.scope(), input).await?;
    Ok((StatusCode::CREATED, Json(c)))
}

async fn show_channel(
    State(app): State<App>,
    me: CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> Result<impl IntoResponse, AppError> {
    Ok(Json(channels::get(&app.db, me.scope(), id).await?))
}

async fn update_channel(
    State(app): State<App>,
    me: CurrentUser,
    src: Source,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<ChannelIn>,
) -> Result<impl IntoResponse, AppError> {
    let c = channels::update(&app.db, &app.sealer, by(&me, src), me.scope(), id, input).await?;
    Ok(Json(c))
}

async fn delete_channel(
    State(app): State<App>,
    me: CurrentUser,
    src: Source,
    ApiPath(id): ApiPath<i64>,
) -> Result<impl IntoResponse, AppError> {
    channels::delete(&app.db, by(&me, src), me.scope(), id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn test_channel(
    State(app): State<App>,
    me: CurrentUser,
    src: Source,
    ApiPath(id): ApiPath<i64>,
) -> Result<impl IntoResponse, AppError> {
    let sealer = app.sealer.clone();
    let r = channels::test(
        &app.db,
        sealer,
        by(&me, src),
        me.scope(),
        id,
        super::BACKOFF,
    )
    .await?;
    Ok(Json(r))
}

async fn channel_deliveries(
    State(app): State<App>,
    me: CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> Result<impl IntoResponse, AppError> {
    Ok(Json(channels::deliveries(&app.db, me.scope(), id).await?))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WindowQuery {
    node: Option<i64>,
}

async fn list_windows(
    State(app): State<App>,
    ApiQuery(q): ApiQuery<WindowQuery>,
) -> Result<impl IntoResponse, AppError> {
    let node = q.node.map(crate::ids::NodeId);
    Ok(Json(manage::windows(&app.db, node).await?))
}

async fn create_window(
    State(app): State<App>,
    me: CurrentUser,
    src: Source,
    ApiJson(input): ApiJson<WindowIn>,
) -> Result<impl IntoResponse, AppError> {
    let w = manage::save_window(&app.db, by(&me, src), None, input).await?;
    Ok((StatusCode::CREATED, Json(w)))
}

async fn show_window(
    State(app): State<App>,
    ApiPath(id): ApiPath<i64>,
) -> Result<impl IntoResponse, AppError> {
    Ok(Json(manage::window(&app.db, id).await?))
}

async fn update_window(
    State(app): State<App>,
    me: CurrentUser,
    src: Source,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<WindowIn>,
) -> Result<impl IntoResponse, AppError> {
    let w = manage::save_window(&app.db, by(&me, src), Some(id), input).await?;
    Ok(Json(w))
}

async fn delete_window(
    State(app): State<App>,
    me: CurrentUser,
    src: Source,
    ApiPath(id): ApiPath<i64>,
) -> Result<impl IntoResponse, AppError> {
    manage::delete_window(&app.db, by(&me, src), id).await?;
    Ok(StatusCode::NO_CONTENT)
}
