//! Application state shared by every handler and background task, and the
//! start-up sequence that builds it (data dir, database, identity). The first
//! admin is created by `auth::bootstrap_admin`, called by the composition root.

use std::path::PathBuf;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::db::{Db, DbError};
use crate::hashing::{HashPool, Hasher};
use crate::jobs::Jobs;
use crate::live::Live;
use crate::secrets::{Sealer, SecretError};

#[derive(Clone)]
pub struct App {
    pub config: Arc<Config>,
    pub db: Db,
    pub sealer: Arc<Sealer>,
    pub hasher: Arc<HashPool>,
    pub cancel: CancellationToken,
    /// Long work that outlives its request (owned; shutdown waits for it).
    pub jobs: Jobs,
    /// Live remote connections (terminals, SSH shells), to list and end.
    pub live: Live,
    /// This installation's identity on shared Docker daemons (names, labels).
    pub install_id: Arc<str>,
    /// This start's generation (one more than the previous start's): work
    /// recorded as in progress by an older generation belongs to a process
    /// that is gone. A counter, so a restart within the same second as a
    /// crash cannot tie with it.
    pub generation: i64,
    /// Failed sign-ins per source address (web, API and SSH share it).
    pub sign_ins: Arc<crate::ratelimit::SignInLimiter>,
    /// Connections to ports inside containers (see `docker::port`): what it
    /// learnt (relays placed, namespaces refused) is shared.
    pub ports: crate::docker::port::Connector,
    /// The ports the HTTPS proxy to instances' web apps listens on, once
    /// bound (unset: no proxy).
    pub proxy_ports: Arc<std::sync::OnceLock<Vec<u16>>>,
    /// Telemetry: collected series, live updates, this host's NVML.
    pub metrics: crate::metrics::Metrics,
    /// Woken when an event alert was written, so its announcement goes out
    /// now rather than at the alert engine's next cycle.
    pub alert_wake: Arc<tokio::sync::Notify>,
    /// When this process last wrote each API token's use (at most once a
    /// minute each).
    pub token_uses: Arc<crate::ratelimit::OnceAMinute>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("password hashing parameters: {0}")]
    Hasher(String),
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl From<rusqlite::Error> for StartError {
    fn from(e: rusqlite::Error) -> Self {
        StartError::Db(DbError::from(e))
    }
}

impl App {
    /// Opens everything under `config.data_dir`, creating it on first start.
    pub async fn open(config: Config) -> Result<Self, StartError> {
        let dir = config.data_dir.clone();
        crate::fsutil::ensure_private_dir(&dir).map_err(|source| StartError::DataDir {
            path: dir.clone(),
            source,
        })?;
        let db = Db::open(&config.db_path())?;
        let key_path = dir.join("age.key");
        let sealer = db
            .write(move |conn| Sealer::open_for(&key_path, conn).map_err(StartError::from))
            .await?;
        // Cheap: nothing is hashed at start (see `Hasher::verify_dummy`).
        let hasher =
            Hasher::new(&config.security).map_err(|e| StartError::Hasher(e.to_string()))?;
        // One hashing thread per core, at most 4: bounds CPU and memory
        // (threads x argon2_memory_kib) under a sign-in flood.
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
        let pool = HashPool::new(hasher, threads).map_err(|e| StartError::Hasher(e.to_string()))?;
        let install_id: String = db
            .read(|c| {
                c.query_row("SELECT value FROM meta WHERE key = 'install_id'", [], |r| {
                    r.get(0)
                })
                .map_err(StartError::from)
            })
            .await?;
        let generation = db
            .write(|c| {
                c.query_row(
                    "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation' RETURNING value",
                    [],
                    |r| r.get(0),
                )
                .map_err(StartError::from)
            })
            .await?;
        let cancel = CancellationToken::new();
        let sign_ins = Arc::new(crate::ratelimit::SignInLimiter::new(&config.security));
        let metrics = crate::metrics::Metrics::new(db.clone(), &config.metrics);
        let app = App {
            metrics,
            config: Arc::new(config),
            db,
            sealer: Arc::new(sealer),
            hasher: Arc::new(pool),
            jobs: Jobs::new(cancel.child_token()),
            cancel,
            live: Live::default(),
            install_id: install_id.into(),
            generation,
            sign_ins,
            ports: crate::docker::port::Connector::default(),
            proxy_ports: Arc::default(),
            alert_wake: Arc::default(),
            token_uses: Arc::default(),
        };
        Ok(app)
    }

    /// Runs password hashing work on the hashing pool, off the async threads.
    pub async fn blocking<T, F>(&self, f: F) -> Result<T, crate::error::AppError>
    where
        T: Send + 'static,
        F: FnOnce(&Hasher) -> T + Send + 'static,
    {
        self.hasher.run(f).await.map_err(|e| match e {
            crate::hashing::PoolError::Busy => crate::error::AppError::Busy,
            crate::hashing::PoolError::Stopped => crate::error::AppError::internal(e),
        })
    }
}
