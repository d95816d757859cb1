//! JSON API of instances.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;

use super::CandidateQuery;
use crate::app::App;
use crate::auth::CurrentUser;
use crate::error::AppError;
use crate::web::extract::ApiQuery;

pub fn routes() -> Router<App> {
    Router::new().route("/api/v1/instances/candidate-nodes", get(candidates))
}

async fn candidates(
    State(app): State<App>,
    me: CurrentUser,
    ApiQuery(q): ApiQuery<CandidateQuery>,
) -> Result<impl IntoResponse, AppError> {
    let spec_id = q
        .spec_id
        .ok_or_else(|| AppError::field("spec_id", "err.required"))?;
    Ok(Json(super::candidate_nodes(&app, &me, spec_id).await?))
}
