//! argon2id password hashing with the configured parameters. Callers run these
//! on blocking threads (each call costs tens of milliseconds by design).

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::config::SecurityConfig;

pub struct Hasher {
    argon: Argon2<'static>,
    /// A hash of a random password, verified against when the username is
    /// unknown so that unknown and known users take the same time.
    dummy: String,
}

impl Hasher {
    pub fn new(cfg: &SecurityConfig) -> Result<Self, argon2::password_hash::Error> {
        let params = Params::new(
            cfg.argon2_memory_kib,
            cfg.argon2_iterations,
            cfg.argon2_parallelism,
            None,
        )?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let salt = SaltString::generate(&mut OsRng);
        let dummy = argon
            .hash_password(super::model::random_password().as_bytes(), &salt)?
            .to_string();
        Ok(Self { argon, dummy })
    }

    pub fn hash(&self, password: &str) -> Result<String, argon2::password_hash::Error> {
        let salt = SaltString::generate(&mut OsRng);
        Ok(self
            .argon
            .hash_password(password.as_bytes(), &salt)?
            .to_string())
    }

    /// Verifies against a stored PHC string (its own parameters apply); a
    /// malformed stored hash never verifies.
    pub fn verify(&self, password: &str, stored: &str) -> bool {
        PasswordHash::new(stored)
            .is_ok_and(|h| self.argon.verify_password(password.as_bytes(), &h).is_ok())
    }

    /// Spends the time of one verification; always false.
    pub fn verify_dummy(&self, password: &str) -> bool {
        let _ = self.verify(password, &self.dummy);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_verify() {
        let h = Hasher::new(&SecurityConfig::default()).unwrap();
        let stored = h.hash("s3cret-Passphrase!").unwrap();
        assert!(stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(h.verify("s3cret-Passphrase!", &stored));
        assert!(!h.verify("s3cret-passphrase!", &stored));
        assert!(!h.verify("x", "not a hash"));
        assert!(!h.verify_dummy("anything"));
    }
}
