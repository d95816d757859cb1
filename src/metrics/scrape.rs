//! Fetching an exporter's or an agent's text: one GET bounded in time and
//! size, so a node whose exporter hangs, floods or answers garbage delays
//! nobody else. Agents are reached over HTTPS with their certificate pinned
//! by SHA-256 (taken at enrolment, when the agent proves it holds the node's
//! token without sending it: an HMAC over its own certificate).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};

/// Bounds of one scrape.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub timeout: Duration,
    pub max_bytes: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScrapeError {
    #[error("no answer within {0} s")]
    Timeout(u64),
    #[error("the answer is larger than {0} bytes")]
    TooLarge(usize),
    #[error("answered HTTP {0}")]
    Status(u16),
    #[error(
        "the agent's certificate changed (pinned SHA-256 {pinned}, now {seen}): refused; enroll the agent again to trust a new certificate"
    )]
    CertificateChanged { pinned: String, seen: String },
    #[error("{0}")]
    Connect(String),
    #[error("bad URL: {0}")]
    BadUrl(String),
    #[error("the answer is not UTF-8 text")]
    NotText,
}

/// SHA-256 of a DER certificate, lowercase hex.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// What the agent must answer to `/enroll?nonce=N`: HMAC-SHA256 keyed by
/// the hex SHA-256 of the node's token, over `<own cert fingerprint>:<N>`.
pub fn enrol_proof(token_hash_hex: &str, fingerprint: &str, nonce: &str) -> String {
    #[allow(clippy::expect_used)] // HMAC takes keys of any length
    let mut mac =
        Hmac::<Sha256>::new_from_slice(token_hash_hex.as_bytes()).expect("any key length");
    mac.update(format!("{fingerprint}:{nonce}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Checks a proof in constant time.
pub fn proof_ok(token_hash_hex: &str, fingerprint: &str, nonce: &str, proof_hex: &str) -> bool {
    let Ok(proof) = hex::decode(proof_hex) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(token_hash_hex.as_bytes()) else {
        return false;
    };
    mac.update(format!("{fingerprint}:{nonce}").as_bytes());
    mac.verify_slice(&proof).is_ok()
}

/// Accepts exactly one certificate (by fingerprint), or — when none is
/// pinned yet — any, remembering what it saw. Signatures are still checked.
#[derive(Debug)]
struct Pin {
    expected: Option<String>,
    seen: Mutex<Option<String>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Pin {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let fp = fingerprint(end_entity);
        *self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(fp.clone());
        match &self.expected {
            Some(want) if *want != fp => Err(rustls::Error::General(
                "certificate fingerprint mismatch".into(),
            )),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The answer of a GET, and the server certificate's fingerprint (HTTPS).
pub struct Fetched {
    pub body: String,
    pub fingerprint: Option<String>,
}

/// GETs `url` (`http://` or `https://`); for HTTPS, `pin` is the only
/// certificate accepted (`None`: any, reported back in `Fetched`).
pub async fn get(
    url: &str,
    bearer: Option<&str>,
    pin: Option<&str>,
    limits: Limits,
) -> Result<Fetched, ScrapeError> {
    let uri: axum::http::Uri = url
        .parse()
        .map_err(|e| ScrapeError::BadUrl(format!("{url}: {e}")))?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => {
            return Err(ScrapeError::BadUrl(format!(
                "{url}: use http:// or https://"
            )));
        }
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(Pin {
        expected: pin.map(str::to_string),
        seen: Mutex::new(None),
        provider: provider.clone(),
    });
    let mut req =
        axum::http::Request::get(uri).header("accept", "text/plain;version=0.0.4, */*;q=0.1");
    if let Some(t) = bearer {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let req = req
        .body(Empty::<Bytes>::new())
        .map_err(|e| ScrapeError::BadUrl(e.to_string()))?;
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(limits.timeout));
    let work = async {
        let resp = if https {
            let tls = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| ScrapeError::Connect(e.to_string()))?
                .dangerous()
                .with_custom_certificate_verifier(verifier.clone())
                .with_no_client_auth();
            let conn = hyper_rustls::HttpsConnector::from((http, tls));
            Client::builder(TokioExecutor::new())
                .build(conn)
                .request(req)
                .await
        } else {
            Client::builder(TokioExecutor::new())
                .build(http)
                .request(req)
                .await
        };
        let resp = resp.map_err(|e| connect_error(&e, pin, &verifier))?;
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(ScrapeError::Status(status));
        }
        let body = Limited::new(resp.into_body(), limits.max_bytes)
            .collect()
            .await
            .map_err(|e| {
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some()
                {
                    ScrapeError::TooLarge(limits.max_bytes)
                } else {
                    ScrapeError::Connect(format!("the answer broke off: {e}"))
                }
            })?
            .to_bytes();
        String::from_utf8(body.to_vec()).map_err(|_| ScrapeError::NotText)
    };
    let body = tokio::time::timeout(limits.timeout, work)
        .await
        .map_err(|_| ScrapeError::Timeout(limits.timeout.as_secs()))??;
    let fingerprint = verifier
        .seen
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    Ok(Fetched { body, fingerprint })
}

fn connect_error(e: &hyper_util::client::legacy::Error, pin: Option<&str>, v: &Pin) -> ScrapeError {
    let seen = v
        .seen
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    if let (Some(pinned), Some(seen)) = (pin, seen)
        && pinned != seen
    {
        return ScrapeError::CertificateChanged {
            pinned: pinned.to_string(),
            seen,
        };
    }
    let mut text = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        text = format!("{text}: {s}");
        src = s.source();
    }
    ScrapeError::Connect(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_bind_the_token_the_certificate_and_the_nonce() {
        let p = enrol_proof("aa", "fp1", "n1");
        assert!(proof_ok("aa", "fp1", "n1", &p));
        assert!(!proof_ok("ab", "fp1", "n1", &p), "another token");
        assert!(
            !proof_ok("aa", "fp2", "n1", &p),
            "another certificate (a relay)"
        );
        assert!(!proof_ok("aa", "fp1", "n2", &p), "a replayed answer");
        assert!(!proof_ok("aa", "fp1", "n1", "zz"));
    }
}
