//! JSON API of account opening and cloud users (`/api/v1/account-openings`,
//! `/api/v1/cloud-users`). Thin: parse, call the service, shape the answer.
//! A password appears only in the one answer that shows it.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use super::model::{CloudAction, CloudUserStatus, RequestInput, RequestStatus, ReviewInput};
use super::store::CloudFilter;
use crate::app::App;
use crate::audit::Source;
use crate::auth::CurrentUser;
use crate::error::{AppError, FieldErrors};
use crate::ids::{CloudUserId, NodeId, OpeningId};
use crate::paging::Paging;
use crate::web::extract::{ApiJson, ApiPath, ApiQuery};

pub fn routes() -> Router<App> {
    Router::new()
        .route("/api/v1/account-openings", get(list).post(create))
        .route("/api/v1/account-openings/batch", post(batch))
        .route("/api/v1/account-openings/{id}", get(show))
        .route(
            "/api/v1/account-openings/{id}/approve",
            post(async |s, me, src, id, b| review(true, s, me, src, id, b).await),
        )
        .route(
            "/api/v1/account-openings/{id}/reject",
            post(async |s, me, src, id, b| review(false, s, me, src, id, b).await),
        )
        .route("/api/v1/account-openings/{id}/process", post(process))
        .route(
            "/api/v1/account-openings/{id}/reveal-password",
            post(reveal),
        )
        .route("/api/v1/cloud-users", get(cloud_list))
        .route("/api/v1/cloud-users/batch", post(cloud_batch))
        .route(
            "/api/v1/cloud-users/{id}",
            get(cloud_show).delete(cloud_delete),
        )
        .route(
            "/api/v1/cloud-users/{id}/disable",
            post(async |s, me, src, id| cloud_act(CloudAction::Disable, s, me, src, id).await),
        )
        .route(
            "/api/v1/cloud-users/{id}/enable",
            post(async |s, me, src, id| cloud_act(CloudAction::Enable, s, me, src, id).await),
        )
        .route("/api/v1/cloud-users/{id}/reset-password", post(cloud_reset))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ListQuery {
    status: Option<String>,
    node: Option<String>,
}

fn parse_opt<T>(
    v: &Option<String>,
    field: &'static str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Option<T>, AppError> {
    match v.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) => parse(s)
            .map(Some)
            .ok_or_else(|| AppError::field(field, "err.bad_query")),
    }
}

async fn list(
    State(app): State<App>,
    me: CurrentUser,
    ApiQuery(q): ApiQuery<ListQuery>,
    paging: Paging,
) -> Result<Response, AppError> {
    let status = parse_opt(&q.status, "status", RequestStatus::parse)?;
    Ok(paging.json(&super::list(&app, &me, status, paging.window).await?))
}

async fn create(
    State(app): State<App>,
    me: CurrentUser,
    src: Source,
    ApiJson(input): ApiJson<RequestInput>,
) -> Result<impl IntoResponse, AppError> {
    Ok((
        StatusCode::CREATED,
        Json(super::submit(&app, &me, input, &src).await?),
    ))
}

async fn show(
    State(app): State<App>,
    me: CurrentUser,
    ApiPath(id): ApiPath<OpeningId>,
) -> Result<impl IntoResponse, AppError> {
    Ok(Json(super::get(&app, &me, id).await?))
}

async fn review(
    approve: bool,
    State(app): State<App>,
    me: CurrentUser,
    src: Source,
    ApiPath(id): ApiPath<OpeningId>,
    ApiJson(input): ApiJson<ReviewInput>,
) -> Result<impl IntoResponse, AppError> {
    Ok(Json(
        super::review(&app, &me, id, approve, input, &src).await?,
    ))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct BatchReview {
    ids: Vec<OpeningId>,
    /// `approve` or `reject`
    action: String,
    approval_notes: String,
    is_admin: Option<serde_json::Value>,
    groups: Option<String>,
}

async fn batch(
    State(app): State<App>,
    me: CurrentUser,
    src: Source,
    ApiJson(b): ApiJson<BatchReview>,
) -> Result<impl IntoResponse, AppError> {
    let approve = match b.action.as_str() {
        "approve" => true,
        "reject" => false,
        _ => return Err(AppError::field("action", "err.accounts.batch_action")),
    };
    let review = ReviewInput {
        approval_notes: b.approval_notes,
        is_admin: b.is_admin,
        groups: b.groups,
    };
    let items = super::batch_review(&app, &me, &b.ids, approve, review, &src).await?;
    Ok(Json(json!({ "results": items })))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ProcessQuery {
    /// false (`0`): answer at once (202) instead of waiting for the job.
    wait: Option<String>,
}

/// A boolean query parameter (`validate::bool_field`'s words), `default`
/// when absent.
fn query_bool(field: &'static str, v: Option<String>, default: bool) -> Result<bool, AppError> {
    let mut e = FieldErrors::new();
    let v = v.map(serde_json::Value::String);
    let b = crate::validate::bool_field(&mut e, field, v.as_ref(), default);
    if e.is_empty() {
        Ok(b)
    } else {
        Err(AppError::Validation(e))
    }
}

/// Opens the account. By default waits for the job: the completed request
/// with the new password (the one time this admin sees it), or the
/// classified error (the request is failed with the same message).
async fn process(
    State(app): State<App>,
    me: CurrentUser,
    src: Source,
    ApiPath(id): ApiPath<OpeningId>,
    ApiQuery(q): ApiQuery<ProcessQuery>,
) -> Result<axum::response::Response, AppError> {
    let wait = query_bool("wait", q.wait, true)?;
    let (job, task) = super::process(&app, &me, id, &src).await?;
    if !wait {
        let r = super::get(&app, &me, id).await?;
        return Ok((
            StatusCode::ACCEPTED,
            Json(json!({"request": r, "job": job})),
        )
            .into_response());
    }
    task.await.map_err(AppError::internal)??;
    let password = super::reveal(&app, &me, id, &src).await?;
    let r = super::get(&app, &me, id).await?;
    Ok(Json(json!({"request": r, "password": password.expose()})).into_response())
}

async fn reveal(
    State(app): State<App>,
    me: CurrentUser,
    src: Source,
    ApiPath(id): ApiPath<OpeningId>,
) -> Result<impl IntoResponse, AppError> {
    let password = super::reveal(&app, &me, id, &src).await?;
    Ok(Json(json!({ "password": password.expose() })))
}

async fn cloud_list(
    State(app): State<App>,
    me: CurrentUser,
    ApiQuery(q): ApiQuery<ListQuery>,
    paging: Paging,
) -> Result<Response, AppError> {
    let f = CloudFilter {
        node: parse_opt(&q.node, "node", |s| s.parse().ok().map(NodeId))?,
        status: parse_opt(&q.status, "status", CloudUserStatus::parse)?,
    };
    Ok(paging.json(&super::cloud::list(&app, &me, f, paging.window).await?))
}

async fn cloud_show(
    State(app): State<App>,
    me: CurrentUser,
    ApiPath(id): ApiPath<CloudUserId>,
) -> Result<impl IntoResponse, AppError> {
    Ok(Json(super::cloud::get(&app, &me, id).await?))
}

async fn cloud_act(
    action: CloudAction,
    State(app): State<App>,
    me: CurrentUser,
    src: Source,
    ApiPath(id): ApiPath<CloudUserId>,
) -> Result<impl IntoResponse, AppError> {
    Ok(Json(super::cloud::act(&app, &me, id, action, &src).await?))
}

async fn cloud_reset(
    State(app): State<App>,
    me: CurrentUser,
    src: Source,
    ApiPath(id): ApiPath<CloudUserId>,
) -> Result<impl IntoResponse, AppError> {
    let (u, password) = super::cloud::reset_password(&app, &me, id, &src).await?;
    Ok(Json(
        json!({ "cloud_user": u, "password": password.expose() }),
    ))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct DeleteQuery {
    /// true (`1`): remove the home directory too (`userdel -r`).
    remove_home: Option<String>,
}

async fn cloud_delete(
    State(app): State<App>,
    me: CurrentUser,
    src: Source,
    ApiPath(id): ApiPath<CloudUserId>,
    ApiQuery(q): ApiQuery<DeleteQuery>,
) -> Result<impl IntoResponse, AppError> {
    let remove_home = query_bool("remove_home", q.remove_home, false)?;
    Ok(Json(
        super::cloud::delete(&app, &me, id, remove_home, &src).await?,
    ))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CloudBatch {
    ids: Vec<CloudUserId>,
    /// `disable` or `enable`
    action: String,
}

async fn cloud_batch(
    State(app): State<App>,
    me: CurrentUser,
    src: Source,
    ApiJson(b): ApiJson<CloudBatch>,
) -> Result<impl IntoResponse, AppError> {
    let action = CloudAction::parse(&b.action)
        .ok_or_else(|| AppError::field("action", "err.accounts.batch_action"))?;
    let items = super::cloud::batch(&app, &me, &b.ids, action, &src).await?;
    Ok(Json(json!({ "results": items })))
}
