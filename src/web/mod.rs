//! HTTP infrastructure: the routes and layers every router has, the server
//! (TLS or explicit plain HTTP) on a bound listener with graceful shutdown,
//! static assets, rendering, page and form plumbing. The router itself is
//! assembled by the composition root (`crate::server`).

pub mod assets;
pub mod extract;
pub mod form;
pub mod page;
pub mod plain_http;
pub mod public;
pub mod redirect;
pub mod render;

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::middleware;
use axum::routing::get;

use crate::app::App;
use crate::config::Config;

/// What every router starts from: the health probe and the static assets
/// (they go through the guard like every route, which lets them through).
pub fn base_routes() -> Router<App> {
    Router::new()
        .route("/healthz", get(healthz))
        .merge(assets::routes())
}

/// Not-found and error pages around `routes` (inside the session layer).
pub fn with_pages(routes: Router<App>) -> Router<App> {
    routes
        .fallback(render::not_found)
        .layer(middleware::from_fn(render::error_pages))
}

async fn healthz() -> &'static str {
    "ok"
}

/// The content security policies pages use. Every page gets `Strict`
/// unless its handler chose a looser one with [`with_csp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Csp {
    /// Scripts, styles and everything else from this server only.
    Strict,
    /// Also inline styles (xterm.js and the recording player size their
    /// rows with them).
    InlineStyles,
    /// Also compiling WebAssembly (the recording player's terminal).
    InlineStylesWasm,
}

impl Csp {
    pub fn policy(self) -> &'static str {
        match self {
            Csp::Strict => {
                "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'"
            }
            Csp::InlineStyles => {
                "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; \
                 frame-ancestors 'none'"
            }
            Csp::InlineStylesWasm => {
                "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; \
                 script-src 'self' 'wasm-unsafe-eval'; frame-ancestors 'none'"
            }
        }
    }
}

/// Gives `resp` a looser policy than the default one.
pub fn with_csp(mut resp: axum::response::Response, csp: Csp) -> axum::response::Response {
    resp.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(csp.policy()),
    );
    resp
}

/// The security headers every response gets (outermost layer).
pub async fn security_headers(mut resp: axum::response::Response) -> axum::response::Response {
    let h = resp.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, k: &'static str, v: &'static str| {
        h.entry(k).or_insert(HeaderValue::from_static(v));
    };
    set(h, "x-content-type-options", "nosniff");
    set(h, "x-frame-options", "DENY");
    set(h, "referrer-policy", "same-origin");
    set(h, "content-security-policy", Csp::Strict.policy());
    set(h, "strict-transport-security", "max-age=31536000");
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("listener: {0}")]
    Io(#[from] std::io::Error),
}

/// HTTP/2 flow-control windows of the appliance's listener. With hyper's
/// 1 MiB stream window, an upload's sender stalls whenever the server is
/// busy writing a gathered block into the container and has not read the
/// next frames yet (an HTTP/2 upload ran at 0.3x the HTTP/1.1 one, whose
/// window is the kernel's socket buffer). The connection window bounds
/// what one connection can make the server hold.
const STREAM_WINDOW: u32 = 4 << 20;
const CONNECTION_WINDOW: u32 = 8 << 20;

fn http2_windows(b: &mut hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>) {
    b.http2()
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW);
}

/// Serves `router` on `listener` until `shutdown` completes, then drains
/// connections for up to 10 s. TLS unless the config turns it off explicitly.
pub async fn serve_router(
    router: Router,
    config: &Config,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let handle = axum_server::Handle::new();
    let h = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        h.graceful_shutdown(Some(Duration::from_secs(10)));
    });
    let service = router.into_make_service_with_connect_info::<SocketAddr>();
    if config.tls.enabled {
        let (cert, key) = crate::tls::ensure_pair(config)?;
        let tls = axum_server::tls_rustls::RustlsConfig::from_config(crate::tls::server_config(
            &cert, &key,
        )?);
        log::info!("listening on https://{addr}");
        let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(tls)
            .acceptor(plain_http::RedirectPlainHttp);
        let mut server = axum_server::from_tcp(listener)
            .acceptor(acceptor)
            .handle(handle);
        http2_windows(server.http_builder());
        server.serve(service).await?;
    } else {
        log::warn!("TLS is off (tls.enabled = false); listening on http://{addr}");
        axum_server::from_tcp(listener)
            .acceptor(axum_server::accept::NoDelayAcceptor::new())
            .handle(handle)
            .serve(service)
            .await?;
    }
    Ok(())
}
