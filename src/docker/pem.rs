//! PEM checks for the TLS material an admin pastes, and the rustls client
//! configuration built from it in memory (the key never touches the disk).

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

use super::{DockerError, TlsMaterial};

/// Checks that `text` holds at least one PEM `CERTIFICATE` and that every one
/// of them parses as X.509; the error says what is wrong.
pub fn check_cert_pem(text: &str) -> Result<(), String> {
    parse_certs(text).map(|_| ())
}

/// Checks that `text` holds a PEM private key (PKCS#8 `PRIVATE KEY`, PKCS#1
/// `RSA PRIVATE KEY` or SEC1 `EC PRIVATE KEY`) that can be loaded for signing.
pub fn check_key_pem(text: &str) -> Result<(), String> {
    parse_key(text).map(|_| ())
}

fn parse_certs(text: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let mut out = Vec::new();
    for (i, item) in CertificateDer::pem_slice_iter(text.as_bytes()).enumerate() {
        let der = item.map_err(|e| format!("malformed PEM: {e}"))?;
        if let Err(e) = rustls::server::ParsedCertificate::try_from(&der) {
            return Err(format!(
                "certificate {} is not a valid X.509 certificate ({e})",
                i + 1
            ));
        }
        out.push(der);
    }
    if out.is_empty() {
        return Err(missing("CERTIFICATE", text));
    }
    Ok(out)
}

fn parse_key(text: &str) -> Result<PrivateKeyDer<'static>, String> {
    let key = match PrivateKeyDer::from_pem_slice(text.as_bytes()) {
        Ok(k) => k,
        Err(rustls::pki_types::pem::Error::NoItemsFound) => {
            return Err(if text.contains("ENCRYPTED PRIVATE KEY") {
                "the private key is encrypted; give it unencrypted \
                 (openssl pkey -in key.pem -out plain-key.pem)"
                    .to_string()
            } else {
                missing("PRIVATE KEY", text)
            });
        }
        Err(e) => return Err(format!("malformed PEM: {e}")),
    };
    rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| format!("the private key cannot be used ({e})"))?;
    Ok(key)
}

/// Says why no block of the wanted kind was found.
fn missing(wanted: &str, text: &str) -> String {
    let t = text.trim();
    if t.is_empty() {
        return "empty: paste the PEM text".to_string();
    }
    let found = t
        .lines()
        .find_map(|l| l.trim().strip_prefix("-----BEGIN "))
        .and_then(|l| l.strip_suffix("-----"));
    match found {
        Some(label) if label.contains("PRIVATE KEY") => {
            format!("this is a private key ({label}), not a {wanted}")
        }
        Some(label) => format!("no {wanted} block found (the text holds a {label})"),
        None => format!("not PEM: expected a block starting with -----BEGIN {wanted}-----"),
    }
}

/// The rustls client configuration for one endpoint: trusts only the given CA
/// and presents the given client certificate. Uses the ring provider.
pub(super) fn client_config(tls: &TlsMaterial) -> Result<ClientConfig, DockerError> {
    let bad = |what: &'static str| move |detail: String| DockerError::BadPem { what, detail };
    let mut roots = RootCertStore::empty();
    for ca in parse_certs(&tls.ca_pem).map_err(bad("CA certificate"))? {
        roots.add(ca).map_err(|e| DockerError::BadPem {
            what: "CA certificate",
            detail: format!("cannot be used as a trust anchor ({e})"),
        })?;
    }
    let chain = parse_certs(&tls.cert_pem).map_err(bad("client certificate"))?;
    let key = parse_key(tls.key_pem.expose()).map_err(bad("client key"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| DockerError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => DockerError::BadPem {
                what: "client key",
                detail: "does not belong to the client certificate".into(),
            },
            other => DockerError::BadPem {
                what: "client certificate",
                detail: other.to_string(),
            },
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::secrets::Secret;

    fn pair() -> (String, String) {
        let k = rcgen::KeyPair::generate().unwrap();
        let c = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .self_signed(&k)
            .unwrap();
        (c.pem(), k.serialize_pem())
    }

    #[test]
    fn good_cert_and_key_pass() {
        let (cert, key) = pair();
        check_cert_pem(&cert).unwrap();
        check_cert_pem(&format!("{cert}\n{cert}")).unwrap();
        check_key_pem(&key).unwrap();
        // A bundle with the key first still has a certificate in it.
        check_cert_pem(&format!("{key}{cert}")).unwrap();
    }

    #[test]
    fn cert_mistakes_say_what_is_wrong() {
        let (cert, key) = pair();
        assert!(check_cert_pem("").unwrap_err().contains("empty"));
        assert!(check_cert_pem("hello").unwrap_err().contains("not PEM"));
        assert!(
            check_cert_pem(&key)
                .unwrap_err()
                .contains("this is a private key")
        );
        let truncated = cert.replace("-----END CERTIFICATE-----", "");
        assert!(
            check_cert_pem(&truncated)
                .unwrap_err()
                .contains("malformed PEM")
        );
        let garbage = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(
            check_cert_pem(garbage)
                .unwrap_err()
                .contains("not a valid X.509")
        );
    }

    #[test]
    fn key_mistakes_say_what_is_wrong() {
        let (cert, _) = pair();
        assert!(check_key_pem("").unwrap_err().contains("empty"));
        assert!(
            check_key_pem(&cert)
                .unwrap_err()
                .contains("no PRIVATE KEY block found (the text holds a CERTIFICATE)")
        );
        let enc =
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";
        assert!(check_key_pem(enc).unwrap_err().contains("encrypted"));
        let junk = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert!(check_key_pem(junk).unwrap_err().contains("cannot be used"));
    }

    #[test]
    fn config_rejects_a_key_of_another_certificate() {
        let (ca, _) = pair();
        let (cert, _) = pair();
        let (_, other_key) = pair();
        let tls = TlsMaterial {
            ca_pem: ca,
            cert_pem: cert,
            key_pem: Secret::new(other_key),
        };
        match client_config(&tls) {
            Err(DockerError::BadPem { what, detail }) => {
                assert_eq!(what, "client key");
                assert!(detail.contains("does not belong"), "{detail}");
            }
            other => panic!("{:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn config_names_the_bad_field() {
        let (cert, key) = pair();
        let tls = TlsMaterial {
            ca_pem: "nope".into(),
            cert_pem: cert,
            key_pem: Secret::new(key),
        };
        match client_config(&tls) {
            Err(e @ DockerError::BadPem { .. }) => {
                assert!(e.to_string().starts_with("CA certificate:"), "{e}")
            }
            other => panic!("{:?}", other.map(|_| ())),
        }
    }
}
