//! The HTTP side of the composition root: every capability's routes behind
//! the auth guard and the web-session layer, inside `web`'s infrastructure
//! (assets, error pages, security headers, the TLS server).

use std::net::TcpListener;

use axum::Router;
use axum::middleware;

use crate::app::App;
use crate::web::{self, ServeError};

/// The whole application as a router. Pure: no sockets, no tasks.
pub fn router(app: App) -> Router {
    let routes = web::base_routes()
        .merge(crate::auth::api::routes())
        .merge(crate::audit::web::routes())
        .merge(crate::auth::pages::routes())
        .merge(crate::audit::web::page_routes())
        .merge(crate::catalog::api::routes())
        .merge(crate::catalog::pages::routes())
        .merge(crate::nodes::api::routes())
        .merge(crate::nodes::pages::routes())
        .merge(crate::instances::api::routes())
        .merge(crate::instances::pages::routes())
        .merge(crate::sshkeys::api::routes())
        .merge(crate::sshkeys::pages::routes())
        .merge(crate::sessions::api::routes())
        .merge(crate::sessions::pages::routes())
        .merge(crate::terminal::routes())
        .merge(crate::reach::api::routes())
        .merge(crate::reach::pages::routes())
        .merge(crate::proxy::web::routes())
        .merge(crate::monitor::api::routes())
        .merge(crate::alerts::api::routes())
        .merge(crate::alerts::pages::routes())
        .merge(crate::monitor::pages::routes())
        .merge(crate::nodes::ssh_web::routes())
        .merge(crate::accounts::api::routes())
        .merge(crate::accounts::pages::routes())
        .merge(crate::delivery::routes())
        .merge(crate::files::api::routes())
        .merge(crate::files::pages::routes())
        .merge(crate::datasets::api::routes())
        .merge(crate::datasets::pages::routes())
        .merge(crate::leases::api::routes())
        .merge(crate::leases::pages::routes())
        .merge(crate::usage::api::routes())
        .merge(crate::usage::pages::routes())
        .route_layer(middleware::from_fn_with_state(
            app.clone(),
            crate::auth::guard::guard,
        ))
        // Outside the session guard: the Prometheus scrape takes tokens of
        // the `metrics` scope only (auth::scrape_allowed), no cookies.
        .merge(crate::monitor::exporter::routes());
    web::with_pages(routes)
        .layer(crate::auth::session_layer(&app))
        .layer(middleware::map_response(web::security_headers))
        // Outermost: the request's kept answers go by one reading of the
        // database's version (see `db::per_request`).
        .layer(middleware::from_fn(
            async |req: axum::extract::Request, next: middleware::Next| {
                crate::db::per_request(next.run(req)).await
            },
        ))
        .with_state(app)
}

/// Serves the application on `listener` until `shutdown` completes (see
/// [`web::serve_router`]).
pub async fn serve(
    app: App,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let config = app.config.clone();
    web::serve_router(router(app), &config, listener, shutdown).await
}
