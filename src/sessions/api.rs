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
use crate::paging::Paging;
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
    paging: Paging,
) -> Result<Response, AppError> {
    Ok(paging.json(&super::list(&app, &me, f, paging.window).await?))
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
/// decompressed as it streams (recordings are stored gzip-compressed; those
/// from before compression are read as they are): a long session's
/// recording is never held in memory whole.
pub async fn recording(
    State(app): State<App>,
    me: CurrentUser,
    ApiPath(id): ApiPath<SessionId>,
) -> Result<Response, AppError> {
    let path = super::recording_path(&app, &me, id).await?;
    let p = path.clone();
    let reader = match tokio::task::spawn_blocking(move || super::recording::open(&p))
        .await
        .map_err(AppError::internal)?
    {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(AppError::NotFound),
        Err(e) => {
            return Err(AppError::internal(format!(
                "reading {}: {e}",
                path.display()
            )));
        }
    };
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-asciicast"),
            (header::CONTENT_DISPOSITION, "inline"),
        ],
        axum::body::Body::from_stream(read_stream(reader)),
    )
        .into_response())
}

/// The bytes of `reader`, read on a blocking thread as the client takes
/// them (a few chunks ahead; the reading stops when the client goes).
fn read_stream(
    mut reader: Box<dyn std::io::Read + Send>,
) -> impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> {
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    tokio::task::spawn_blocking(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let item = match reader.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => Ok(bytes::Bytes::copy_from_slice(&buf[..n])),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => Err(e),
            };
            let failed = item.is_err();
            if tx.blocking_send(item).is_err() || failed {
                return;
            }
        }
    });
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
