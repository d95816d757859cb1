//! Sealed secrets: the appliance's age x25519 identity (a 0600 file in the data
//! dir), sealing and opening with it, and `Secret<T>`, whose Debug prints
//! `<sealed>`. A canary sealed at first start detects a lost or swapped identity.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use age::secrecy::ExposeSecret;
use hmac::Mac;
use rusqlite::{Connection, OptionalExtension, params};

const CANARY_KEY: &str = "age_canary";
const CANARY_TEXT: &[u8] = b"gpudock sealed-secret canary v1";

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read or write the age identity {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the age identity file {0} is not a valid age X25519 identity")]
    BadIdentity(PathBuf),
    #[error(
        "the age identity {0} is missing but the database holds secrets sealed with it; \
         restore the identity file from a backup (gpudock never creates a new one over sealed data)"
    )]
    Missing(PathBuf),
    #[error(
        "the age identity {0} is not the one this database's secrets were sealed with; \
         restore the original identity file"
    )]
    WrongIdentity(PathBuf),
    #[error("the database has no sealed canary: it was never opened by `gpudock serve`")]
    NoCanary,
    #[error("sealed value cannot be opened with this identity (it was sealed with another one)")]
    NoMatchingKey,
    #[error("sealed value is corrupt: {0}")]
    Corrupt(String),
    #[error("sealing failed: {0}")]
    Seal(String),
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
}

/// A value that must never be printed; `expose` is the one way to read it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<sealed>")
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<sealed>")
    }
}

/// Seals and opens with the appliance identity.
#[derive(Clone)]
pub struct Sealer {
    identity: age::x25519::Identity,
    path: PathBuf,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer").field("path", &self.path).finish()
    }
}

impl Sealer {
    /// Loads the identity at `path`, creating it (0600) only when the database has
    /// no sealed data yet, and checks it against the canary in `conn`.
    pub fn open_for(path: &Path, conn: &Connection) -> Result<Self, SecretError> {
        let canary = canary(conn)?;
        let sealer = if path.exists() {
            Self::load(path)?
        } else if canary.is_some() {
            return Err(SecretError::Missing(path.to_owned()));
        } else {
            Self::create(path)?
        };
        match canary {
            Some(sealed) => sealer.check_canary(&sealed)?,
            None => {
                let sealed = sealer.seal(CANARY_TEXT)?;
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES (?1, ?2)",
                    params![CANARY_KEY, sealed],
                )?;
            }
        }
        Ok(sealer)
    }

    /// Loads the identity at `path` and checks that it opens the canary in
    /// `conn`, writing nothing (backup and restore use this).
    pub fn check(path: &Path, conn: &Connection) -> Result<Self, SecretError> {
        let sealed = canary(conn)?.ok_or(SecretError::NoCanary)?;
        let sealer = Self::load(path)?;
        sealer.check_canary(&sealed)?;
        Ok(sealer)
    }

    fn check_canary(&self, sealed: &[u8]) -> Result<(), SecretError> {
        match self.unseal(sealed) {
            Ok(plain) if plain.expose() == CANARY_TEXT => Ok(()),
            _ => Err(SecretError::WrongIdentity(self.path.clone())),
        }
    }

    fn load(path: &Path) -> Result<Self, SecretError> {
        let text = std::fs::read_to_string(path).map_err(|source| SecretError::Io {
            path: path.to_owned(),
            source,
        })?;
        let line = text
            .lines()
            .find(|l| l.starts_with("AGE-SECRET-KEY-"))
            .ok_or_else(|| SecretError::BadIdentity(path.to_owned()))?;
        let identity = age::x25519::Identity::from_str(line.trim())
            .map_err(|_| SecretError::BadIdentity(path.to_owned()))?;
        Ok(Self {
            identity,
            path: path.to_owned(),
        })
    }

    fn create(path: &Path) -> Result<Self, SecretError> {
        let identity = age::x25519::Identity::generate();
        let io = |source| SecretError::Io {
            path: path.to_owned(),
            source,
        };
        let mut f = crate::fsutil::create_private(path).map_err(io)?;
        writeln!(
            f,
            "# gpudock appliance identity: seals node passwords and keys. Back it up."
        )
        .map_err(io)?;
        writeln!(f, "{}", identity.to_string().expose_secret()).map_err(io)?;
        f.sync_all().map_err(io)?;
        Ok(Self {
            identity,
            path: path.to_owned(),
        })
    }

    /// A sealer with a fresh in-memory identity (tests).
    pub fn ephemeral() -> Self {
        Self {
            identity: age::x25519::Identity::generate(),
            path: PathBuf::from("<memory>"),
        }
    }

    pub fn seal(&self, plain: &[u8]) -> Result<Vec<u8>, SecretError> {
        age::encrypt(&self.identity.to_public(), plain)
            .map_err(|e| SecretError::Seal(e.to_string()))
    }

    /// An HMAC-SHA256 of `message` under a key derived from the identity
    /// for `purpose` alone: tokens the server hands out and must recognise
    /// later (across restarts) without storing them.
    pub fn sign(&self, purpose: &str, message: &[u8]) -> Vec<u8> {
        self.mac(purpose, message).finalize().into_bytes().to_vec()
    }

    /// Whether `tag` is [`Sealer::sign`]'s for `purpose` and `message`
    /// (compared in constant time).
    pub fn verify(&self, purpose: &str, message: &[u8], tag: &[u8]) -> bool {
        self.mac(purpose, message).verify_slice(tag).is_ok()
    }

    fn mac(&self, purpose: &str, message: &[u8]) -> hmac::Hmac<sha2::Sha256> {
        use sha2::Digest;
        // SHA-512's 64 bytes are exactly HMAC-SHA256's key block.
        let key = sha2::Sha512::new()
            .chain_update(b"gpudock derived key\0")
            .chain_update(purpose.as_bytes())
            .chain_update(b"\0")
            .chain_update(self.identity.to_string().expose_secret().as_bytes())
            .finalize();
        let mut mac = hmac::Hmac::<sha2::Sha256>::new(&key);
        mac.update(message);
        mac
    }

    pub fn unseal(&self, sealed: &[u8]) -> Result<Secret<Vec<u8>>, SecretError> {
        match age::decrypt(&self.identity, sealed) {
            Ok(plain) => Ok(Secret::new(plain)),
            Err(age::DecryptError::NoMatchingKeys) => Err(SecretError::NoMatchingKey),
            Err(e) => Err(SecretError::Corrupt(e.to_string())),
        }
    }
}

/// The sealed canary, when the database has one.
fn canary(conn: &Connection) -> Result<Option<Vec<u8>>, SecretError> {
    Ok(conn
        .query_row("SELECT value FROM meta WHERE key = ?1", [CANARY_KEY], |r| {
            r.get(0)
        })
        .optional()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_per_purpose_and_identity() {
        let (a, b) = (Sealer::ephemeral(), Sealer::ephemeral());
        let tag = a.sign("csrf", b"m");
        assert!(a.verify("csrf", b"m", &tag));
        assert!(!a.verify("csrf", b"n", &tag));
        assert!(!a.verify("other", b"m", &tag));
        assert!(!b.verify("csrf", b"m", &tag));
        assert!(!a.verify("csrf", b"m", &tag[..16]));
    }

    #[test]
    fn secret_debug_and_display_hide_the_value() {
        let s = Secret::new("hunter2".to_string());
        assert_eq!(format!("{s:?}"), "<sealed>");
        assert_eq!(format!("{s}"), "<sealed>");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn seal_round_trips_and_ciphertext_has_no_plaintext() {
        let s = Sealer::ephemeral();
        let sealed = s.seal(b"node-password-123").unwrap();
        assert!(!sealed.windows(8).any(|w| w == b"password"));
        assert_eq!(s.unseal(&sealed).unwrap().expose(), b"node-password-123");
    }

    #[test]
    fn another_identity_gives_a_clear_error_not_garbage() {
        let sealed = Sealer::ephemeral().seal(b"x").unwrap();
        let err = Sealer::ephemeral().unseal(&sealed).unwrap_err();
        assert!(matches!(err, SecretError::NoMatchingKey), "{err}");
        let err = Sealer::ephemeral().unseal(b"not age at all").unwrap_err();
        assert!(matches!(err, SecretError::Corrupt(_)), "{err}");
    }

    #[test]
    fn identity_is_created_private_checked_and_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("age.key");
        let conn = crate::db::memory().unwrap();
        Sealer::open_for(&key, &conn).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // Same identity opens again, and `check` agrees without writing.
        Sealer::open_for(&key, &conn).unwrap();
        Sealer::check(&key, &conn).unwrap();
        assert!(matches!(
            Sealer::check(&key, &crate::db::memory().unwrap()),
            Err(SecretError::NoCanary)
        ));
        // Lost identity: a clear error, no new key written.
        std::fs::remove_file(&key).unwrap();
        assert!(matches!(
            Sealer::open_for(&key, &conn),
            Err(SecretError::Missing(_))
        ));
        assert!(!key.exists());
        // Swapped identity: a clear error.
        Sealer::create(&key).unwrap();
        assert!(matches!(
            Sealer::open_for(&key, &conn),
            Err(SecretError::WrongIdentity(_))
        ));
        assert!(matches!(
            Sealer::check(&key, &conn),
            Err(SecretError::WrongIdentity(_))
        ));
    }
}
