//! The HTTP transports handed to bollard (`connect_with_custom_transport`):
//! a unix socket, plain TCP, or TCP with rustls configured from memory. Each
//! transport knows its target, so that a failure comes back as a
//! [`DockerError`] naming the address and the cause an admin can act on.

use std::error::Error as StdError;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bollard::{API_DEFAULT_VERSION, BollardRequest, Docker};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connect, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::{AlertDescription, CertificateError};

use super::DockerError;

/// Where a transport connects, for messages.
#[derive(Debug)]
pub(super) struct Target {
    /// `/run/docker.sock` or `host:port`.
    pub addr: String,
    pub kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Unix,
    Tcp,
    Tls,
}

pub(super) fn unix(path: &std::path::Path, timeout_secs: u64) -> Result<Docker, DockerError> {
    let path = path.to_string_lossy().into_owned();
    // The host part of the URL carries the hex-encoded socket path, which is
    // how hyperlocal's connector finds the socket.
    let client_addr = format!("unix://{}", hex::encode(path.as_bytes()));
    let target = Target {
        addr: path,
        kind: Kind::Unix,
    };
    // No pooling on a local socket (as bollard's own unix transport).
    over(
        hyperlocal::UnixConnector,
        false,
        client_addr,
        target,
        timeout_secs,
    )
}

pub(super) fn tcp(
    host: &str,
    port: u16,
    tls: Option<rustls::ClientConfig>,
    timeout_secs: u64,
) -> Result<Docker, DockerError> {
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    let addr = format!("{host}:{port}");
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(Duration::from_secs(timeout_secs.max(1))));
    http.set_nodelay(true);
    match tls {
        None => {
            let target = Target {
                addr: addr.clone(),
                kind: Kind::Tcp,
            };
            over(http, true, format!("http://{addr}"), target, timeout_secs)
        }
        Some(config) => {
            http.enforce_http(false);
            let https = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(config)
                .https_only()
                .enable_http1()
                .wrap_connector(http);
            let target = Target {
                addr: addr.clone(),
                kind: Kind::Tls,
            };
            over(https, true, format!("https://{addr}"), target, timeout_secs)
        }
    }
}

/// A bollard client over `connector`, whose failures carry a [`DockerError`].
fn over<C>(
    connector: C,
    pool: bool,
    client_addr: String,
    target: Target,
    timeout_secs: u64,
) -> Result<Docker, DockerError>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    let mut builder = Client::builder(TokioExecutor::new());
    if pool {
        // Reuse TLS connections for a while; a timer reaps idle ones.
        builder
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30));
    } else {
        builder.pool_max_idle_per_host(0);
    }
    let client = builder.build(connector);
    let target = Arc::new(target);
    let transport = move |mut req: BollardRequest| {
        if let Some(uri) = unversioned_version_uri(&req.uri().to_string())
            && let Ok(uri) = uri.parse()
        {
            *req.uri_mut() = uri;
        }
        let client = client.clone();
        let target = Arc::clone(&target);
        async move {
            client
                .request(req)
                .await
                .map_err(|e| bollard::errors::Error::IOError {
                    err: io::Error::other(classify(&target, &e)),
                })
        }
    };
    Docker::connect_with_custom_transport(
        transport,
        Some(client_addr),
        timeout_secs,
        API_DEFAULT_VERSION,
    )
    .map_err(|e| DockerError::BadEndpoint(e.to_string()))
}

/// `GET /vX.Y/version` becomes `GET /version`: every daemon answers the
/// unversioned form, while a daemon older than bollard's API version (20.10
/// speaks 1.41) rejects `/v1.53/...` outright. This is how version
/// negotiation can start (the docker CLI does the same with `/_ping`).
pub(super) fn unversioned_version_uri(uri: &str) -> Option<String> {
    let scheme_end = uri.find("://")? + 3;
    let path_start = scheme_end + uri[scheme_end..].find('/')?;
    let (base, path) = uri.split_at(path_start);
    let (version, rest) = path.strip_prefix("/v")?.split_once('/')?;
    let (major, minor) = version.split_once('.')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits(major) && digits(minor) && rest == "version").then(|| format!("{base}/version"))
}

/// Turns a transport failure into what an admin needs to read.
pub(super) fn classify(target: &Target, err: &(dyn StdError + 'static)) -> DockerError {
    let chain = causes(err);
    if let Some(tls) = chain.iter().find_map(|e| e.downcast_ref::<rustls::Error>()) {
        return DockerError::Tls(describe_tls(target, tls));
    }
    let addr = &target.addr;
    for e in &chain {
        let Some(io) = e.downcast_ref::<io::Error>() else {
            continue;
        };
        let msg = match (io.kind(), target.kind) {
            (io::ErrorKind::ConnectionRefused, Kind::Unix) => {
                format!("connection refused on {addr} (no dockerd listens on this socket)")
            }
            (io::ErrorKind::ConnectionRefused, _) => format!("connection refused to {addr}"),
            (io::ErrorKind::NotFound, Kind::Unix) => {
                format!("no socket at {addr} (is dockerd running?)")
            }
            (io::ErrorKind::PermissionDenied, _) => format!("permission denied on {addr}"),
            (io::ErrorKind::TimedOut, _) => format!("connection to {addr} timed out"),
            (io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable, _) => {
                format!("no route to {addr}")
            }
            (
                io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe
                | io::ErrorKind::UnexpectedEof,
                _,
            ) => closed_early(target),
            _ => continue,
        };
        return DockerError::Unreachable(msg);
    }
    let text = chain_text(&chain);
    if text.contains("dns error") {
        let host = addr.rsplit_once(':').map_or(addr.as_str(), |(h, _)| h);
        return DockerError::Unreachable(format!("cannot resolve host {host}: {text}"));
    }
    // With TLS 1.3 the daemon checks the client certificate after the
    // client's handshake is done, so its refusal reaches the pool either
    // while the request is sent or before the connection was ready.
    if text.contains("connection closed before message completed")
        || text.contains("connection was not ready")
    {
        return DockerError::Unreachable(closed_early(target));
    }
    DockerError::Unreachable(format!("{addr}: {text}"))
}

fn closed_early(target: &Target) -> String {
    let hint = match target.kind {
        Kind::Tls => " (the daemon may have rejected the client certificate)",
        Kind::Tcp => " (does this port expect TLS?)",
        Kind::Unix => "",
    };
    format!(
        "{} closed the connection before answering{hint}",
        target.addr
    )
}

fn describe_tls(target: &Target, err: &rustls::Error) -> String {
    let addr = &target.addr;
    match err {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer => {
                format!("server certificate of {addr} not trusted by the given CA")
            }
            // The CA's name matches but its key does not: typically a CA
            // regenerated with the same subject.
            CertificateError::BadSignature => format!(
                "server certificate of {addr} not trusted by the given CA (a CA of the same \
                 name but another key signed it)"
            ),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                format!(
                    "server certificate of {addr} is not valid for this host name \
                     (connect with a name or IP that the certificate lists)"
                )
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                format!("server certificate of {addr} has expired")
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                format!("server certificate of {addr} is not valid yet (check the clocks)")
            }
            other => format!("server certificate of {addr} rejected: {other:?}"),
        },
        rustls::Error::AlertReceived(alert) => match alert {
            AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateRequired
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateRevoked
            | AlertDescription::AccessDenied => format!(
                "TLS handshake rejected by {addr}: the daemon did not accept the client \
                 certificate (alert {alert:?}; is it signed by the CA given to dockerd \
                 --tlscacert?)"
            ),
            other => format!("TLS handshake rejected by {addr} (alert {other:?})"),
        },
        rustls::Error::InvalidMessage(_)
        | rustls::Error::InappropriateMessage { .. }
        | rustls::Error::InappropriateHandshakeMessage { .. } => format!(
            "{addr} does not speak TLS (is it a plain tcp:// endpoint? then give no certificates)"
        ),
        other => format!("TLS handshake with {addr} failed: {other}"),
    }
}

/// The error and its causes, looking inside `io::Error`s (whose `source()`
/// skips the error they wrap).
fn causes<'a>(err: &'a (dyn StdError + 'static)) -> Vec<&'a (dyn StdError + 'static)> {
    let mut out = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        out.push(e);
        if out.len() > 16 {
            break;
        }
        let inner = e
            .downcast_ref::<io::Error>()
            .and_then(|io| io.get_ref())
            .map(|i| i as &(dyn StdError + 'static));
        next = inner.or_else(|| e.source());
    }
    out
}

fn chain_text(chain: &[&(dyn StdError + 'static)]) -> String {
    let mut parts: Vec<String> = Vec::new();
    for e in chain {
        let s = e.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn only_the_version_call_loses_its_version() {
        assert_eq!(
            unversioned_version_uri("unix://2f72756e/v1.53/version").as_deref(),
            Some("unix://2f72756e/version")
        );
        assert_eq!(
            unversioned_version_uri("https://127.0.0.1:2376/v1.41/version").as_deref(),
            Some("https://127.0.0.1:2376/version")
        );
        assert_eq!(unversioned_version_uri("http://h:1/v1.53/info"), None);
        assert_eq!(
            unversioned_version_uri("http://h:1/v1.53/version?x=1"),
            None
        );
        assert_eq!(unversioned_version_uri("http://h:1/version"), None);
        assert_eq!(
            unversioned_version_uri("http://h:1/v1.53/containers/version"),
            None
        );
    }

    /// Either way a TLS 1.3 daemon's refusal of the client certificate
    /// reaches the pool, the message names the certificate (CI once saw
    /// "connection was not ready" where the test expected it).
    #[test]
    fn a_connection_closed_early_over_tls_names_the_client_certificate() {
        let tls = Target {
            addr: "127.0.0.1:9".into(),
            kind: Kind::Tls,
        };
        for text in [
            "client error (Canceled): operation was canceled: connection was not ready",
            "client error (SendRequest): connection closed before message completed",
        ] {
            let e = io::Error::other(text);
            let said = classify(&tls, &e).to_string();
            assert!(said.contains("client certificate"), "{text}: {said}");
        }
    }

    #[test]
    fn io_errors_name_the_address() {
        let t = Target {
            addr: "127.0.0.1:9".into(),
            kind: Kind::Tcp,
        };
        let e = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(
            classify(&t, &e).to_string(),
            "connection refused to 127.0.0.1:9"
        );
        let wrapped = io::Error::other(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer,
        ));
        let tls = Target {
            addr: "127.0.0.1:9".into(),
            kind: Kind::Tls,
        };
        assert!(
            classify(&tls, &wrapped)
                .to_string()
                .contains("server certificate of 127.0.0.1:9 not trusted by the given CA")
        );
    }
}
