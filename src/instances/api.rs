//! JSON API of instances. `POST` answers once the container runs (or with
//! why it could not); the work itself runs as a job, so a client that hangs
//! up does not leave a half-made container behind.

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::{Action, CandidateQuery, CreateInput};
use crate::app::App;
use crate::audit::Source;
use crate::auth::CurrentUser;
use crate::error::AppError;
use crate::i18n::{Lang, Tr};
use crate::ids::InstanceId;
use crate::paging::Paging;
use crate::web::extract::{ApiJson, ApiPath, ApiQuery};
use crate::web::render::is_htmx;

pub fn routes() -> Router<App> {
    Router::new()
        .route("/api/v1/instances", get(list).post(create))
        .route("/api/v1/instances/candidate-nodes", get(candidates))
        .route("/api/v1/instances/orphans", get(orphans))
        .route("/api/v1/instances/allocate", post(allocate))
        .route("/api/v1/instances/{id}", get(show).delete(remove))
        .route(
            "/api/v1/instances/{id}/start",
            post(async |s, m, src, p| act(Action::Start, s, m, src, p).await),
        )
        .route(
            "/api/v1/instances/{id}/stop",
            post(async |s, m, src, p| act(Action::Stop, s, m, src, p).await),
        )
        .route(
            "/api/v1/instances/{id}/restart",
            post(async |s, m, src, p| act(Action::Restart, s, m, src, p).await),
        )
        .route("/api/v1/instances/{id}/logs", get(logs))
}

async fn list(
    State(app): State<App>,
    me: CurrentUser,
    paging: Paging,
) -> Result<Response, AppError> {
    let kept = super::listed_json(&app, &me, paging.search(), paging.window).await?;
    Ok(paging.json_body(kept.body.clone(), kept.total))
}

async fn show(
    State(app): State<App>,
    me: CurrentUser,
    ApiPath(id): ApiPath<InstanceId>,
) -> Result<impl IntoResponse, AppError> {
    let mut inst = super::get(&app, &me, id).await?;
    super::shield(&app, &me, [&mut inst]).await?;
    Ok(Json(inst))
}

async fn create(
    State(app): State<App>,
    me: CurrentUser,
    src: Source,
    ApiJson(input): ApiJson<CreateInput>,
) -> Result<impl IntoResponse, AppError> {
    let (_job, task) = super::create(&app, &me, input, &src).await?;
    let mut inst = task.await.map_err(AppError::internal)??;
    super::shield(&app, &me, [&mut inst]).await?;
    Ok((StatusCode::CREATED, Json(inst)))
}

async fn remove(
    State(app): State<App>,
    me: CurrentUser,
    src: Source,
    ApiPath(id): ApiPath<InstanceId>,
) -> Result<StatusCode, AppError> {
    super::delete(&app, &me, id, &src).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn act(
    action: Action,
    State(app): State<App>,
    me: CurrentUser,
    src: Source,
    ApiPath(id): ApiPath<InstanceId>,
) -> Result<impl IntoResponse, AppError> {
    let mut inst = super::act(&app, &me, id, action, &src).await?;
    super::shield(&app, &me, [&mut inst]).await?;
    Ok(Json(inst))
}

/// JSON for API clients; for the wizard (an htmx request) the same
/// candidates as `<option>`s.
async fn candidates(
    State(app): State<App>,
    me: CurrentUser,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<CandidateQuery>,
) -> Result<Response, AppError> {
    let htmx = is_htmx(&headers);
    let (found, refused) = match q.spec()? {
        Some(spec_id) => super::placement_of(&app, &me, spec_id).await?,
        // The wizard's spec was unselected again: no nodes to offer.
        None if htmx => Default::default(),
        None => return Err(AppError::field("spec_id", "err.required")),
    };
    if htmx {
        let tr = Tr::new(Lang::from_headers(&headers));
        return super::pages::node_options(tr, &found, &refused);
    }
    Ok(Json(found).into_response())
}

async fn orphans(State(app): State<App>, me: CurrentUser) -> Result<impl IntoResponse, AppError> {
    Ok(Json(super::orphans(&app, &me).await?))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct LogsQuery {
    /// `1`/`true`: keep the answer open and stream new output.
    follow: Option<String>,
    /// Lines of history (default 200, at most 10,000).
    tail: Option<u32>,
}

/// Plain text; with `?follow=1` a stream that stays open.
async fn logs(
    State(app): State<App>,
    me: CurrentUser,
    ApiPath(id): ApiPath<InstanceId>,
    ApiQuery(q): ApiQuery<LogsQuery>,
) -> Result<Response, AppError> {
    let mut e = crate::error::FieldErrors::new();
    let follow = q.follow.map(serde_json::Value::String);
    let follow = crate::validate::bool_field(&mut e, "follow", follow.as_ref(), false);
    if !e.is_empty() {
        return Err(AppError::Validation(e));
    }
    let stream = super::logs(&app, &me, id, follow, q.tail.unwrap_or(200)).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// `POST /api/v1/instances/allocate`: the create fields plus `user_id` (the
/// owner, a user of a tenant) and `count` (1..20).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct AllocateInput {
    user_id: Option<serde_json::Value>,
    count: Option<serde_json::Value>,
    image_id: Option<serde_json::Value>,
    spec_id: Option<serde_json::Value>,
    node_id: Option<serde_json::Value>,
    name: Option<String>,
    remark: Option<String>,
    dataset_ids: Option<serde_json::Value>,
    lease_end: Option<serde_json::Value>,
}

async fn allocate(
    State(app): State<App>,
    me: CurrentUser,
    src: Source,
    ApiJson(a): ApiJson<AllocateInput>,
) -> Result<impl IntoResponse, AppError> {
    let input = CreateInput {
        image_id: a.image_id,
        spec_id: a.spec_id,
        node_id: a.node_id,
        name: a.name,
        remark: a.remark,
        dataset_ids: a.dataset_ids,
        lease_end: a.lease_end,
    };
    let (made, failed) =
        super::allocate(&app, &me, a.user_id.as_ref(), a.count.as_ref(), input, &src).await?;
    let status = if made.is_empty() {
        StatusCode::CONFLICT
    } else {
        StatusCode::CREATED
    };
    Ok((
        status,
        Json(serde_json::json!({"instances": made, "failed": failed})),
    ))
}
