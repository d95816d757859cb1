//! The jumpbox's host key: ed25519, generated once into the data dir (0600)
//! and read back on every start, so clients' known_hosts stay valid.

use std::path::Path;

use rand::RngCore;
use russh::keys::PrivateKey;
use russh::keys::ssh_key::LineEnding;
use russh::keys::ssh_key::private::Ed25519Keypair;

pub const FILE: &str = "ssh_host_ed25519_key";

#[derive(Debug, thiserror::Error)]
pub enum HostKeyError {
    #[error("host key {path}: {detail}")]
    Read { path: String, detail: String },
    #[error("writing the host key {path}: {detail}")]
    Write { path: String, detail: String },
}

/// Loads `<dir>/ssh_host_ed25519_key`, creating it on first use.
pub fn load_or_create(dir: &Path) -> Result<PrivateKey, HostKeyError> {
    let path = dir.join(FILE);
    let shown = path.display().to_string();
    if path.exists() {
        return russh::keys::load_secret_key(&path, None).map_err(|e| HostKeyError::Read {
            path: shown,
            detail: e.to_string(),
        });
    }
    let mut seed = [0u8; 32];
    rand::rng().fill_bytes(&mut seed);
    let key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
    let text = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| HostKeyError::Write {
            path: shown.clone(),
            detail: e.to_string(),
        })?;
    crate::fsutil::write_private(&path, text.as_bytes()).map_err(|e| HostKeyError::Write {
        path: shown.clone(),
        detail: e.to_string(),
    })?;
    log::info!("generated the jumpbox host key {shown}");
    Ok(key)
}

/// The jumpbox's public host key as (algorithm, SHA-256 fingerprint), for
/// what users are told to expect; `None` before the key exists.
pub fn fingerprint(dir: &Path) -> Option<(String, String)> {
    let path = dir.join(FILE);
    if !path.exists() {
        return None;
    }
    match russh::keys::load_secret_key(&path, None) {
        Ok(k) => {
            let public = k.public_key();
            Some((
                public.algorithm().as_str().to_string(),
                crate::sshclient::fingerprint(public),
            ))
        }
        Err(e) => {
            log::warn!("reading the jumpbox host key {}: {e}", path.display());
            None
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn generated_once_then_stable_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create(dir.path()).unwrap();
        let b = load_or_create(dir.path()).unwrap();
        assert_eq!(a.public_key(), b.public_key());
        assert_eq!(a.algorithm(), russh::keys::Algorithm::Ed25519);
        let (alg, fp) = fingerprint(dir.path()).unwrap();
        assert_eq!(
            (alg.as_str(), fp.starts_with("SHA256:")),
            ("ssh-ed25519", true)
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
