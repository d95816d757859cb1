//! The proxy's side toward apps: an HTTP/1.1 client (hyper's, with its pool
//! of kept-alive connections) whose connections are ports inside
//! containers (`reach::connect_container`), and the body of a response
//! that ends when the user's access does.
//!
//! A pooled connection is named by where it goes: the URI authority
//! `<container>.n<node>.p<port>.gpudock.invalid`, so a container replaced
//! by a restart never gets another's kept-alive connections. Who may use
//! one is decided per request before it is sent.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::app::App;
use crate::docker::port::PortStream;
use crate::ids::NodeId;

/// How long an unused connection to an app stays open.
const IDLE: std::time::Duration = std::time::Duration::from_secs(60);
const HOST_SUFFIX: &str = ".gpudock.invalid";

pub type Upstream = Client<Connector, Body>;

/// The client the proxy sends every request with.
pub fn client(app: &App) -> Upstream {
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(IDLE)
        .pool_max_idle_per_host(16)
        .set_host(false)
        .build(Connector { app: app.clone() })
}

/// The authority of a container's port (see the module's text).
pub fn authority(node: NodeId, container: &str, port: u16) -> String {
    let c: String = container
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(60)
        .collect();
    format!("c{c}.n{node}.p{port}{HOST_SUFFIX}")
}

fn parse_authority(host: &str) -> Option<(NodeId, String, u16)> {
    let rest = host.strip_suffix(HOST_SUFFIX)?;
    let mut parts = rest.split('.');
    let container = parts.next()?.strip_prefix('c')?.to_string();
    let node = parts.next()?.strip_prefix('n')?.parse().ok()?;
    let port = parts.next()?.strip_prefix('p')?.parse().ok()?;
    if parts.next().is_some() || container.is_empty() {
        return None;
    }
    Some((NodeId(node), container, port))
}

/// Opens connections to ports inside containers for hyper's client.
#[derive(Clone)]
pub struct Connector {
    app: App,
}

impl tower_service::Service<hyper::Uri> for Connector {
    type Response = TokioIo<PortStream>;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: hyper::Uri) -> Self::Future {
        let app = self.app.clone();
        Box::pin(async move {
            let host = uri.host().unwrap_or_default();
            let (node, container, port) =
                parse_authority(host).ok_or_else(|| format!("not an app address: {host}"))?;
            let tag = format!("{}-proxy", app.install_id);
            let s = crate::reach::connect_container(&app, node, &container, port, &tag)
                .await
                .map_err(|e| UpstreamError(e.message(false)))?;
            Ok(TokioIo::new(s))
        })
    }
}

/// Why the app could not be reached (the text is for the user).
#[derive(Debug)]
pub struct UpstreamError(pub String);

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UpstreamError {}

impl Connection for PortStream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

/// What the user is told when a request could not reach the app.
pub fn explain(e: &hyper_util::client::legacy::Error) -> String {
    let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = src {
        if let Some(u) = s.downcast_ref::<UpstreamError>() {
            return u.0.clone();
        }
        src = s.source();
    }
    format!("the app closed the connection ({e})")
}

/// A response body that ends when `stop` resolves (the user's access
/// revoked, shutdown), holding `held` (the user's live registration)
/// until then.
pub struct Ending<B> {
    inner: B,
    stop: Pin<Box<dyn Future<Output = ()> + Send>>,
    _held: crate::live::Registration,
    stopped: bool,
}

impl<B> Ending<B> {
    pub fn new(
        inner: B,
        stop: impl Future<Output = ()> + Send + 'static,
        held: crate::live::Registration,
    ) -> Self {
        Self {
            inner,
            stop: Box::pin(stop),
            _held: held,
            stopped: false,
        }
    }
}

impl<B> hyper::body::Body for Ending<B>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.stopped {
            return Poll::Ready(None);
        }
        if self.stop.as_mut().poll(cx).is_ready() {
            self.stopped = true;
            return Poll::Ready(Some(Err("access to the app ended".into())));
        }
        Pin::new(&mut self.inner)
            .poll_frame(cx)
            .map(|f| f.map(|r| r.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.stopped || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// `body` as an axum body.
pub fn body<B>(body: B) -> Body
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    Body::new(body)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn authorities_name_node_container_and_port() {
        let id = "3f".repeat(32);
        let a = authority(NodeId(4), &id, 8888);
        assert!(a.len() < 100 && a.split('.').all(|l| l.len() <= 63), "{a}");
        let (n, c, p) = parse_authority(&a).unwrap();
        assert_eq!((n, p), (NodeId(4), 8888));
        assert!(id.starts_with(&c) && c.len() == 60);
        assert!(parse_authority("c1.n2.p3.example.com").is_none());
        assert!(parse_authority("c.n2.p3.gpudock.invalid").is_none());
    }
}
