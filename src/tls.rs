//! The HTTPS server configuration: the configured PEM pair, or a self-signed
//! certificate generated with rcgen into the data dir on first start.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("TLS file {path}: not a valid PEM {what}")]
    Pem { path: PathBuf, what: &'static str },
    #[error("generating the self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Paths of the pair in use: configured, or `<data>/tls/{cert,key}.pem`,
/// generated when absent.
pub fn ensure_pair(config: &Config) -> Result<(PathBuf, PathBuf), TlsError> {
    if let (Some(c), Some(k)) = (&config.tls.cert, &config.tls.key) {
        return Ok((c.clone(), k.clone()));
    }
    let dir = config.data_dir.join("tls");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| TlsError::Io { path, source }
    };
    crate::fsutil::ensure_private_dir(&dir).map_err(io(&dir))?;
    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    if let Ok(host) = std::fs::read_to_string("/etc/hostname") {
        let host = host.trim();
        if !host.is_empty() {
            names.push(host.to_string());
        }
    }
    let generated = rcgen::generate_simple_self_signed(names)?;
    crate::fsutil::write_private(&key, generated.signing_key.serialize_pem().as_bytes())
        .map_err(io(&key))?;
    std::fs::write(&cert, generated.cert.pem()).map_err(io(&cert))?;
    log::info!(
        "generated a self-signed TLS certificate at {}",
        cert.display()
    );
    Ok((cert, key))
}

/// Builds the rustls server config (ring provider, h2 + http/1.1) from a PEM pair.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Io {
            path: path.to_owned(),
            source,
        })
    };
    let cert_pem = read(cert)?;
    let key_pem = read(key)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .ok()
        .filter(|c: &Vec<_>| !c.is_empty())
        .ok_or_else(|| TlsError::Pem {
            path: cert.to_owned(),
            what: "certificate",
        })?;
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| TlsError::Pem {
        path: key.to_owned(),
        what: "private key",
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}
