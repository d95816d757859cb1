//! `gpudock agent`: serves this host's figures (node_exporter names) and
//! GPUs (dcgm-exporter names, through NVML) over HTTPS for the appliance.
//!
//! Enrolment (`gpudock agent enroll --token T`, the one-time command from
//! the node page) stores only the SHA-256 of the node's token and makes a
//! self-signed certificate. Every scrape must carry the token (`Bearer`),
//! else 401. `/enroll?nonce=N` answers an HMAC keyed by the token's hash
//! over this agent's certificate fingerprint and N: the appliance pins the
//! certificate only when the proof matches the certificate it sees, so a
//! relay in between (another certificate) is never accepted, and the token
//! itself never travels before the certificate is pinned.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rustls::pki_types::pem::PemObject;
use subtle::ConstantTimeEq;

use super::{expose, host, nvml, scrape};
use crate::config::Config;

pub const DEFAULT_PORT: u16 = 9401;
const TOKEN_FILE: &str = "token.sha256";

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "this agent is not enrolled ({0} missing): run the command from the node page, `gpudock agent enroll --token ...`"
    )]
    NotEnrolled(PathBuf),
    #[error("the token is empty or malformed")]
    BadToken,
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("listener: {0}")]
    Listen(std::io::Error),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> AgentError + '_ {
    move |source| AgentError::Io {
        path: path.to_owned(),
        source,
    }
}

fn tls_paths(data_dir: &Path) -> Result<(PathBuf, PathBuf), AgentError> {
    let cfg = Config {
        data_dir: data_dir.to_owned(),
        ..Config::default()
    };
    Ok(crate::tls::ensure_pair(&cfg)?)
}

/// The SHA-256 fingerprint of the agent's certificate (made when absent).
pub fn certificate_fingerprint(data_dir: &Path) -> Result<String, AgentError> {
    let (cert, _) = tls_paths(data_dir)?;
    let pem = std::fs::read(&cert).map_err(io_err(&cert))?;
    let der = rustls::pki_types::CertificateDer::pem_slice_iter(&pem)
        .next()
        .and_then(Result::ok)
        .ok_or_else(|| AgentError::Io {
            path: cert.clone(),
            source: std::io::Error::other("no certificate in the file"),
        })?;
    Ok(scrape::fingerprint(&der))
}

/// Stores the token's hash (0600) and makes the certificate; returns the
/// certificate's fingerprint.
pub fn enroll(data_dir: &Path, token: &str) -> Result<String, AgentError> {
    let token = token.trim();
    if token.len() < 16 || !token.chars().all(|c| c.is_ascii_graphic()) {
        return Err(AgentError::BadToken);
    }
    crate::fsutil::ensure_private_dir(data_dir).map_err(io_err(data_dir))?;
    let path = data_dir.join(TOKEN_FILE);
    let hash = crate::hashing::token_hash(token);
    crate::fsutil::write_private(&path, format!("{hash}\n").as_bytes()).map_err(io_err(&path))?;
    certificate_fingerprint(data_dir)
}

#[derive(Clone)]
struct AgentState {
    token_hash: String,
    fingerprint: String,
    hostname: String,
    docker_root: String,
    gpus: nvml::Gpus,
}

pub struct Options {
    pub data_dir: PathBuf,
    pub docker_root: String,
}

/// Serves until `shutdown`; refuses to start when not enrolled.
pub async fn serve(
    opts: Options,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), AgentError> {
    let path = opts.data_dir.join(TOKEN_FILE);
    let token_hash = match std::fs::read_to_string(&path) {
        Ok(s) => s.trim().to_string(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(AgentError::NotEnrolled(path));
        }
        Err(e) => return Err(io_err(&path)(e)),
    };
    let (cert, key) = tls_paths(&opts.data_dir)?;
    let tls = crate::tls::server_config(&cert, &key)?;
    let state = AgentState {
        token_hash,
        fingerprint: certificate_fingerprint(&opts.data_dir)?,
        hostname: std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default(),
        docker_root: opts.docker_root,
        gpus: nvml::Gpus::new(),
    };
    let gpus = state.gpus.clone();
    // Not the appliance's router: no permission records. Every scrape
    // needs the node's token; /enroll only answers a proof.
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/enroll", get(enrol_proof))
        .with_state(state);
    listener.set_nonblocking(true).map_err(AgentError::Listen)?;
    let addr = listener.local_addr().map_err(AgentError::Listen)?;
    let handle = axum_server::Handle::new();
    let h = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        h.graceful_shutdown(Some(Duration::from_secs(5)));
    });
    log::info!("agent listening on https://{addr}");
    let served = axum_server::from_tcp_rustls(
        listener,
        axum_server::tls_rustls::RustlsConfig::from_config(tls),
    )
    .handle(handle)
    .serve(app.into_make_service_with_connect_info::<SocketAddr>())
    .await;
    let _ = tokio::task::spawn_blocking(move || gpus.stop()).await;
    served.map_err(AgentError::Listen)
}

fn authorized(headers: &HeaderMap, want_hash: &str) -> bool {
    let Some(tok) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    let got = crate::hashing::token_hash(tok.trim());
    !want_hash.is_empty() && bool::from(got.as_bytes().ct_eq(want_hash.as_bytes()))
}

async fn metrics(State(s): State<AgentState>, headers: HeaderMap) -> Response {
    if !authorized(&headers, &s.token_hash) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "401 unauthorized: a valid token is required\n",
        )
            .into_response();
    }
    let s2 = s.clone();
    let read = tokio::task::spawn_blocking(move || {
        let host = host::read(&[&s2.docker_root]);
        (host, s2.gpus.read())
    })
    .await;
    let Ok((host, gpus)) = read else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "collector failed\n").into_response();
    };
    let mut x = expose::Exposition::default();
    expose::write_host(&mut x, &host);
    if let Ok(g) = &gpus {
        expose::write_gpus(&mut x, g, &s.hostname);
    }
    expose::write_gpu_state(&mut x, &gpus);
    let mut resp = x.finish().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(expose::CONTENT_TYPE),
    );
    resp
}

#[derive(serde::Deserialize)]
struct Nonce {
    nonce: String,
}

async fn enrol_proof(State(s): State<AgentState>, Query(q): Query<Nonce>) -> Response {
    if q.nonce.len() < 16 || q.nonce.len() > 128 {
        return (StatusCode::BAD_REQUEST, "nonce: 16 to 128 characters\n").into_response();
    }
    let proof = scrape::enrol_proof(&s.token_hash, &s.fingerprint, &q.nonce);
    axum::Json(serde_json::json!({ "fingerprint": s.fingerprint, "proof": proof })).into_response()
}
