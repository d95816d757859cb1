//! Infrastructure: a thin typed wrapper over bollard. It connects to a
//! dockerd (unix socket, plain TCP, or TCP with TLS built from in-memory PEM),
//! probes what the engine offers, and turns failures into messages an admin
//! can act on. It knows nothing of gpudock features.
//!
//! Use: [`connect`] (cheap, no I/O), then [`probe`] (or [`negotiate`]) before
//! other calls: bollard starts at its newest API version, which an older
//! daemon (Debian 12's 20.10 speaks 1.41) rejects; negotiation lowers the
//! version for the client and all its clones.

pub mod containers;
mod endpoint;
pub mod exec;
mod pem;
pub mod port;
mod pull;
mod transport;
pub mod watch;

use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::{SystemInfo, SystemVersion};

use crate::secrets::Secret;

pub use endpoint::{EndpointKind, parse_endpoint};
pub use pem::{check_cert_pem, check_key_pem};

/// The PEM texts for a TLS endpoint (`dockerd --tlsverify`): the CA that
/// signed the daemon's certificate, and the client certificate and key that
/// the daemon's `--tlscacert` accepts.
#[derive(Debug, Clone)]
pub struct TlsMaterial {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: Secret<String>,
}

/// A daemon to connect to. `url` is `unix:///path` or `tcp://host:port`;
/// `tls` applies to `tcp://` only (without it, plain HTTP: allowed, the UI
/// warns that anyone who reaches the port controls the host).
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub url: String,
    pub tls: Option<TlsMaterial>,
}

/// What went wrong talking to a daemon; the text is meant for an admin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DockerError {
    #[error("invalid Docker endpoint: {0}")]
    BadEndpoint(String),
    #[error("{what}: {detail}")]
    BadPem { what: &'static str, detail: String },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("{0}")]
    Unreachable(String),
    #[error("no answer from dockerd within {0} s")]
    Timeout(u64),
    #[error("dockerd refused the request: {0}")]
    Api(String),
}

impl DockerError {
    /// Whether the daemon could not be talked to (down, restarting, no
    /// answer), as opposed to answering with a refusal.
    pub fn is_unreachable(&self) -> bool {
        match self {
            DockerError::Unreachable(_) | DockerError::Timeout(_) => true,
            DockerError::BadEndpoint(_)
            | DockerError::BadPem { .. }
            | DockerError::Tls(_)
            | DockerError::Api(_) => false,
        }
    }

    /// Maps an error of a bollard call made on a client from [`connect`];
    /// `timeout_secs` is the client's request timeout
    /// (`docker.timeout().as_secs()`).
    pub fn from_bollard(err: bollard::errors::Error, timeout_secs: u64) -> Self {
        use bollard::errors::Error as B;
        match err {
            B::IOError { err } => match err.get_ref().and_then(|e| e.downcast_ref::<Self>()) {
                Some(ours) => ours.clone(),
                None => Self::Unreachable(err.to_string()),
            },
            B::RequestTimeoutError => Self::Timeout(timeout_secs),
            B::DockerResponseServerError {
                status_code,
                message,
            } if message.contains("HTTP request to an HTTPS server") => Self::Tls(format!(
                "the daemon expects TLS on this port (answered {status_code}: {}); \
                 give its CA, a client certificate and key",
                message.trim()
            )),
            B::DockerResponseServerError {
                status_code,
                message,
            } => Self::Api(format!("{status_code}: {}", message.trim())),
            B::HyperResponseError { err } => {
                Self::Unreachable(format!("the connection failed during the answer: {err}"))
            }
            other => Self::Api(other.to_string()),
        }
    }
}

/// The HTTP status of a daemon's error answer (e.g. 404 for "no such
/// container"), for callers that branch on it before mapping the error.
pub fn api_status(err: &bollard::errors::Error) -> Option<u16> {
    match err {
        bollard::errors::Error::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// A client for `ep`. Does no I/O: a daemon that is down shows at the first
/// call. `timeout_secs` bounds connecting and each request's wait for the
/// answer's headers; for calls that legitimately take longer (stopping a
/// container, waiting on it, importing an image) use
/// `docker.clone().with_timeout(..)`. TLS is built from memory: the key is
/// never written to disk.
pub fn connect(ep: &Endpoint, timeout_secs: u64) -> Result<Docker, DockerError> {
    match (parse_endpoint(&ep.url)?, &ep.tls) {
        (EndpointKind::Unix(path), None) => transport::unix(&path, timeout_secs),
        (EndpointKind::Unix(_), Some(_)) => Err(DockerError::BadEndpoint(
            "TLS certificates apply to tcp:// endpoints only; remove them for a unix socket".into(),
        )),
        (EndpointKind::Tcp { host, port }, None) => transport::tcp(&host, port, None, timeout_secs),
        (EndpointKind::Tcp { host, port }, Some(tls)) => {
            let config = pem::client_config(tls)?;
            transport::tcp(&host, port, Some(config), timeout_secs)
        }
    }
}

/// What an engine offers, as gpudock needs to know it.
#[derive(Debug, Clone, serde::Serialize, PartialEq)]
pub struct EngineReport {
    /// e.g. `20.10.24+dfsg1`.
    pub docker_version: String,
    /// The daemon's API version, e.g. `1.41`; the client now speaks it.
    pub api_version: String,
    /// e.g. `Debian GNU/Linux 12 (bookworm)`.
    pub os: String,
    pub kernel_version: String,
    pub cpus: i64,
    pub memory_bytes: i64,
    /// e.g. `overlay2`.
    pub storage_driver: String,
    /// e.g. `xfs`, `extfs`; empty when the driver does not say.
    pub backing_filesystem: String,
    /// Whether a per-container disk quota (`StorageOpt size=`) can work:
    /// overlay2 on xfs. dockerd also needs the `pquota` mount option, which
    /// `/info` does not show, so this is "may work": instance creation tries
    /// with the quota and retries without it when dockerd answers
    /// `--storage-opt is supported only for overlay over xfs with 'pquota'
    /// mount option`.
    pub storage_opt_size: bool,
    /// Whether a runtime named `nvidia` is registered (`/info` Runtimes).
    /// GPU requests (`DeviceRequests` driver `nvidia`) may also work through
    /// the NVIDIA container toolkit's hook without it; starting a container
    /// is the final word.
    pub nvidia_runtime: bool,
    /// The daemon's root directory (`/info` DockerRootDir), e.g.
    /// `/var/lib/docker`: containers' writable layers live on its
    /// filesystem, and local volumes under `volumes/` in it.
    pub docker_root: String,
}

/// Negotiates the API version (see the module doc): afterwards the client
/// and all its clones speak `min(bollard's, the daemon's)`.
pub async fn negotiate(docker: &Docker, timeout_secs: u64) -> Result<(), DockerError> {
    let call = docker.clone().negotiate_version();
    match tokio::time::timeout(Duration::from_secs(timeout_secs), call).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(DockerError::from_bollard(e, docker.timeout().as_secs())),
        Err(_) => Err(DockerError::Timeout(timeout_secs)),
    }
}

/// Negotiates the API version, then reads `/version` and `/info`, all under
/// one overall timeout of `timeout_secs`.
pub async fn probe(docker: &Docker, timeout_secs: u64) -> Result<EngineReport, DockerError> {
    let started = Instant::now();
    let work = async {
        let (_, version) = tokio::try_join!(docker.clone().negotiate_version(), docker.version())?;
        let info = docker.info().await?;
        Ok::<_, bollard::errors::Error>(report(version, info))
    };
    let result = match tokio::time::timeout(Duration::from_secs(timeout_secs), work).await {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => Err(DockerError::from_bollard(e, docker.timeout().as_secs())),
        Err(_) => Err(DockerError::Timeout(timeout_secs)),
    };
    log::debug!("docker probe took {:?}", started.elapsed());
    result
}

fn report(version: SystemVersion, info: SystemInfo) -> EngineReport {
    let storage_driver = info.driver.unwrap_or_default();
    let backing_filesystem = info
        .driver_status
        .unwrap_or_default()
        .into_iter()
        .find_map(|kv| match kv.as_slice() {
            [k, v] if k == "Backing Filesystem" => Some(v.clone()),
            _ => None,
        })
        .unwrap_or_default();
    EngineReport {
        docker_version: version.version.or(info.server_version).unwrap_or_default(),
        api_version: version.api_version.unwrap_or_default(),
        os: info.operating_system.or(version.os).unwrap_or_default(),
        kernel_version: info
            .kernel_version
            .or(version.kernel_version)
            .unwrap_or_default(),
        cpus: info.ncpu.unwrap_or_default(),
        memory_bytes: info.mem_total.unwrap_or_default(),
        storage_opt_size: storage_driver == "overlay2" && backing_filesystem == "xfs",
        storage_driver,
        backing_filesystem,
        nvidia_runtime: info.runtimes.is_some_and(|r| r.contains_key("nvidia")),
        docker_root: info.docker_root_dir.unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn report_reads_storage_and_runtimes() {
        let info = SystemInfo {
            driver: Some("overlay2".into()),
            driver_status: Some(vec![
                vec!["Backing Filesystem".into(), "xfs".into()],
                vec!["Supports d_type".into(), "true".into()],
            ]),
            runtimes: Some(
                [("nvidia".to_string(), Default::default())]
                    .into_iter()
                    .collect(),
            ),
            ncpu: Some(8),
            mem_total: Some(1 << 30),
            ..Default::default()
        };
        let version = SystemVersion {
            version: Some("20.10.24".into()),
            api_version: Some("1.41".into()),
            ..Default::default()
        };
        let r = report(version, info);
        assert!(r.storage_opt_size && r.nvidia_runtime);
        assert_eq!(r.backing_filesystem, "xfs");
        assert_eq!((r.cpus, r.memory_bytes), (8, 1 << 30));

        let ext = SystemInfo {
            driver: Some("overlay2".into()),
            driver_status: Some(vec![vec!["Backing Filesystem".into(), "extfs".into()]]),
            ..Default::default()
        };
        let r = report(SystemVersion::default(), ext);
        assert!(!r.storage_opt_size && !r.nvidia_runtime);
    }

    #[test]
    fn tls_on_a_unix_socket_is_refused() {
        let ep = Endpoint {
            url: "unix:///run/docker.sock".into(),
            tls: Some(TlsMaterial {
                ca_pem: String::new(),
                cert_pem: String::new(),
                key_pem: Secret::new(String::new()),
            }),
        };
        assert!(matches!(
            connect(&ep, 5),
            Err(DockerError::BadEndpoint(m)) if m.contains("tcp:// endpoints only")
        ));
    }

    #[test]
    fn https_answer_from_plain_http_means_tls_is_needed() {
        let e = bollard::errors::Error::DockerResponseServerError {
            status_code: 400,
            message: "Client sent an HTTP request to an HTTPS server.".into(),
        };
        assert!(matches!(
            DockerError::from_bollard(e, 5),
            DockerError::Tls(_)
        ));
        let e = bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            message: "No such container: x".into(),
        };
        assert_eq!(api_status(&e), Some(404));
        assert_eq!(
            DockerError::from_bollard(e, 5).to_string(),
            "dockerd refused the request: 404: No such container: x"
        );
    }
}
