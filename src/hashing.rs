//! argon2id password hashing with the configured parameters, run on a small
//! dedicated pool of threads. Each hash costs tens of milliseconds and
//! `argon2_memory_kib` of memory by design; a fixed pool bounds both under a
//! sign-in flood (and keeps the allocator from parking a freed block on every
//! thread of tokio's large blocking pool), and a bounded queue sheds overload.
//! Also the random temporary passwords, and the random tokens (CSRF, API,
//! agent) with the SHA-256 under which a bearer token is kept.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{
    self, Decimal, Ident, Output, ParamsString, PasswordHash, PasswordHasher, PasswordVerifier,
    Salt, SaltString,
};
use argon2::{Algorithm, Argon2, Block, Params, Version};

use crate::config::SecurityConfig;

/// A fresh random token (CSRF, API, agent): 32 bytes, URL-safe base64.
pub fn random_token() -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut buf = [0u8; 32];
    rand::rng().fill_bytes(&mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

/// How a bearer token is kept and looked up: its SHA-256, in hex.
pub fn token_hash(token: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A random password of 20 characters from a 56-symbol alphabet without
/// look-alikes (~116 bits).
pub fn random_password() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz23456789";
    let mut rng = rand::rng();
    (0..20)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

/// The smallest work buffer handed to argon2. glibc serves an allocation
/// this large from a mapping of its own and unmaps it when it is freed: it
/// never raises its mmap threshold beyond 32 MiB, whereas a freed 19 MiB
/// block raises the threshold to 19 MiB and every later hash's buffer then
/// stays in the hashing thread's arena (one per thread, ~240 MB after a
/// sign-in flood). Only the blocks argon2 uses are ever written (resident);
/// the rest of the mapping is reserved address space, never touched.
const MAPPED_WORK_BYTES: usize = 33 << 20;

/// Work memory for `blocks` argon2 blocks, in a buffer that goes back to
/// the system when dropped (see [`MAPPED_WORK_BYTES`]).
fn work_memory(blocks: usize) -> Vec<Block> {
    let mapped = MAPPED_WORK_BYTES / std::mem::size_of::<Block>();
    let mut v = Vec::with_capacity(blocks.max(mapped));
    v.resize(blocks, Block::default());
    v
}

/// argon2 with its work memory from [`work_memory`]; the PHC strings are
/// those of `argon2::Argon2` (verification goes through the same trait).
struct Mapped {
    params: Params,
}

impl PasswordHasher for Mapped {
    type Params = Params;

    fn hash_password<'a>(
        &self,
        password: &[u8],
        salt: impl Into<Salt<'a>>,
    ) -> password_hash::Result<PasswordHash<'a>> {
        self.hash_password_customized(password, None, None, self.params.clone(), salt)
    }

    fn hash_password_customized<'a>(
        &self,
        password: &[u8],
        alg_id: Option<Ident<'a>>,
        version: Option<Decimal>,
        params: Params,
        salt: impl Into<Salt<'a>>,
    ) -> password_hash::Result<PasswordHash<'a>> {
        let algorithm = alg_id
            .map(Algorithm::try_from)
            .transpose()?
            .unwrap_or(Algorithm::Argon2id);
        let version = version
            .map(Version::try_from)
            .transpose()?
            .unwrap_or(Version::V0x13);
        let salt = salt.into();
        let mut salt_buf = [0u8; 64];
        let salt_bytes = salt.decode_b64(&mut salt_buf)?;
        let argon = Argon2::new(algorithm, version, params.clone());
        let len = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
        let output = Output::init_with(len, |out| {
            let memory = work_memory(params.block_count());
            Ok(argon.hash_password_into_with_memory(password, salt_bytes, out, memory)?)
        })?;
        Ok(PasswordHash {
            algorithm: algorithm.ident(),
            version: Some(version.into()),
            params: ParamsString::try_from(&params)?,
            salt: Some(salt),
            hash: Some(output),
        })
    }
}

pub struct Hasher {
    argon: Mapped,
}

impl Hasher {
    pub fn new(cfg: &SecurityConfig) -> Result<Self, argon2::password_hash::Error> {
        let params = Params::new(
            cfg.argon2_memory_kib,
            cfg.argon2_iterations,
            cfg.argon2_parallelism,
            None,
        )?;
        Ok(Self {
            argon: Mapped { params },
        })
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

    /// Spends the time of one verification (for an unknown username, so that
    /// unknown and known users take the same time); always false. It hashes
    /// `password` with a fresh salt and the configured parameters, which costs
    /// what verifying a hash made with them costs: nothing is computed at
    /// start-up and the very first unknown name takes no longer than later ones.
    pub fn verify_dummy(&self, password: &str) -> bool {
        let _ = self.hash(password);
        false
    }
}

type Job = Box<dyn FnOnce(&Hasher) + Send>;

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("too many password checks queued")]
    Busy,
    #[error("password hashing pool stopped")]
    Stopped,
}

/// A fixed set of threads that own the `Hasher`; jobs queue up to `QUEUE`.
pub struct HashPool {
    tx: Mutex<Option<SyncSender<Job>>>,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

const QUEUE: usize = 256;

fn work(rx: Arc<Mutex<Receiver<Job>>>, hasher: Arc<Hasher>) {
    loop {
        let job = match rx.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        match job {
            Ok(job) => job(&hasher),
            Err(_) => return,
        }
    }
}

impl HashPool {
    pub fn new(hasher: Hasher, threads: usize) -> std::io::Result<Self> {
        let (tx, rx) = sync_channel::<Job>(QUEUE);
        let (rx, hasher) = (Arc::new(Mutex::new(rx)), Arc::new(hasher));
        let workers = (0..threads.max(1))
            .map(|i| {
                let (rx, hasher) = (rx.clone(), hasher.clone());
                std::thread::Builder::new()
                    .name(format!("argon2-{i}"))
                    .spawn(move || work(rx, hasher))
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Self {
            tx: Mutex::new(Some(tx)),
            workers: Mutex::new(workers),
        })
    }

    /// Runs `f` on a pool thread; `Busy` when the queue is full.
    pub async fn run<T, F>(&self, f: F) -> Result<T, PoolError>
    where
        T: Send + 'static,
        F: FnOnce(&Hasher) -> T + Send + 'static,
    {
        let (otx, orx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |h| {
            let _ = otx.send(f(h));
        });
        {
            let guard = self.tx.lock().map_err(|_| PoolError::Stopped)?;
            let tx = guard.as_ref().ok_or(PoolError::Stopped)?;
            tx.try_send(job).map_err(|e| match e {
                TrySendError::Full(_) => PoolError::Busy,
                TrySendError::Disconnected(_) => PoolError::Stopped,
            })?;
        }
        orx.await.map_err(|_| PoolError::Stopped)
    }

    /// Closes the queue and joins the threads (after queued jobs finish).
    pub fn shutdown(&self) {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        let workers = self
            .workers
            .lock()
            .map(|mut w| std::mem::take(&mut *w))
            .unwrap_or_default();
        for w in workers {
            if w.join().is_err() {
                log::error!("a password hashing thread panicked");
            }
        }
    }
}

impl Drop for HashPool {
    fn drop(&mut self) {
        self.shutdown();
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

    #[test]
    fn hashes_are_argon2s_own() {
        // Hashes stored by argon2's own hasher (earlier releases) verify,
        // and ours verify with it: the same PHC strings.
        let cfg = SecurityConfig {
            argon2_memory_kib: 1024,
            argon2_iterations: 1,
            ..SecurityConfig::default()
        };
        let ours = Hasher::new(&cfg).unwrap();
        let params = Params::new(1024, 1, 1, None).unwrap();
        let theirs = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let salt = SaltString::generate(&mut OsRng);
        let stored = theirs.hash_password(b"pw-1", &salt).unwrap().to_string();
        assert!(ours.verify("pw-1", &stored));
        assert!(!ours.verify("pw-2", &stored));
        let mine = ours.hash("pw-3").unwrap();
        assert!(mine.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"), "{mine}");
        let parsed = PasswordHash::new(&mine).unwrap();
        assert!(theirs.verify_password(b"pw-3", &parsed).is_ok());
        // A stored hash keeps its own parameters (here argon2i, other costs).
        let other = Argon2::new(
            Algorithm::Argon2i,
            Version::V0x13,
            Params::new(2048, 2, 2, None).unwrap(),
        );
        let stored = other.hash_password(b"pw-4", &salt).unwrap().to_string();
        assert!(ours.verify("pw-4", &stored) && !ours.verify("pw-5", &stored));
    }

    #[test]
    fn work_memory_is_a_mapping_sized_buffer() {
        let m = work_memory(19 * 1024);
        assert_eq!(m.len(), 19 * 1024);
        assert!(m.capacity() * std::mem::size_of::<Block>() >= MAPPED_WORK_BYTES);
        assert_eq!(work_memory(40 * 1024).len(), 40 * 1024);
    }

    #[tokio::test]
    async fn pool_runs_jobs_and_stops_cleanly() {
        let pool = HashPool::new(Hasher::new(&SecurityConfig::default()).unwrap(), 2).unwrap();
        let stored = pool.run(|h| h.hash("pw-one-two").unwrap()).await.unwrap();
        let jobs = (0..4).map(|_| {
            let s = stored.clone();
            pool.run(move |h| h.verify("pw-one-two", &s))
        });
        for ok in futures_join(jobs).await {
            assert!(ok.unwrap());
        }
        pool.shutdown();
        assert!(matches!(pool.run(|_| ()).await, Err(PoolError::Stopped)));
    }

    async fn futures_join<F: std::future::Future>(fs: impl Iterator<Item = F>) -> Vec<F::Output> {
        let mut out = Vec::new();
        for f in fs.collect::<Vec<_>>() {
            out.push(f.await);
        }
        out
    }
}
