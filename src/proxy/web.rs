//! The proxy's one route on gpudock's own origin: `GET
//! /instances/{id}/web/{port}/open` signs the browser in to a web app (a
//! one-time hand-off to the app's origin) and opens it. Its permission
//! record is the one every proxied request asks (`Action::WebProxy`).

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::Deserialize;

use crate::app::App;
use crate::audit::Source;
use crate::auth::CurrentUser;
use crate::error::AppError;
use crate::ids::InstanceId;
use crate::web::extract::{ApiPath, ApiQuery};
use crate::web::public::PublicOrigin;

pub fn routes() -> Router<App> {
    Router::new().route("/instances/{id}/web/{port}/open", get(open))
}

#[derive(Debug, Default, Deserialize)]
struct Next {
    /// The app's path to land on (the proxy sends it for a browser that
    /// came to the app not signed in).
    next: Option<String>,
}

async fn open(
    State(app): State<App>,
    origin: PublicOrigin,
    me: CurrentUser,
    src: Source,
    ApiPath((id, port)): ApiPath<(InstanceId, u16)>,
    ApiQuery(q): ApiQuery<Next>,
) -> Result<Response, AppError> {
    let host = crate::reach::browser_host(&origin);
    let next = q.next.unwrap_or_else(|| "/".into());
    let to = super::handoff(&app, &me, id, port, &next, &host, &src).await?;
    Ok(Redirect::to(&to).into_response())
}
