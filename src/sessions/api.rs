//! JSON API of sessions: scoped list with filters, one session, force
//! terminate (admins), the recording (asciicast v2).

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::Filter;
use crate::app::App;
use crate::audit::Source;
use crate::auth::CurrentUser;
use crate::error::AppError;
use crate::ids::SessionId;
use crate::web::extract::{ApiPath, ApiQuery};

pub fn routes() -> Router<App> {
    Router::new()
        .route("/api/v1/sessions", get(list))
        .route("/api/v1/sessions/{id}", get(show))
        .route("/api/v1/sessions/{id}/terminate", post(terminate))
        .route("/api/v1/sessions/{id}/recording", get(recording))
}

async fn list(
    State(app): State<App>,
    me: CurrentUser,
    ApiQuery(f): ApiQuery<Filter>,
) -> Result<impl IntoResponse, AppError> {
    Ok(Json(super::list(&app, &me, f).await?))
}

async fn show(
    State(app): State<App>,
    me: CurrentUser,
    ApiPath(id): ApiPath<SessionId>,
) -> Result<impl IntoResponse, AppError> {
    Ok(Json(super::get(&app, &me, id).await?))
}

async fn terminate(
    State(app): State<App>,
    me: CurrentUser,
    src: Source,
    ApiPath(id): ApiPath<SessionId>,
) -> Result<impl IntoResponse, AppError> {
    Ok(Json(super::terminate(&app, &me, id, &src).await?))
}

/// The recording as `application/x-asciicast` (what asciinema players read),
/// streamed from its file: a long session's recording is never held in
/// memory whole.
pub async fn recording(
    State(app): State<App>,
    me: CurrentUser,
    ApiPath(id): ApiPath<SessionId>,
) -> Result<Response, AppError> {
    let path = super::recording_path(&app, &me, id).await?;
    let file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(AppError::NotFound),
        Err(e) => {
            return Err(AppError::internal(format!(
                "reading {}: {e}",
                path.display()
            )));
        }
    };
    let stream = tokio_util::io::ReaderStream::new(file);
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-asciicast"),
            (header::CONTENT_DISPOSITION, "inline"),
        ],
        axum::body::Body::from_stream(stream),
    )
        .into_response())
}
