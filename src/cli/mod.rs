//! The command line and composition root: `serve`, `check`, `migrate`,
//! `admin reset-password`, `audit verify`, `backup`, `restore`, `agent`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};

use crate::app::App;
use crate::audit;
use crate::config::Config;
use crate::db::Db;

mod agent;
mod backup;

#[derive(Parser)]
#[command(name = "gpudock", version, about = "GPU lab appliance")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct Common {
    /// TOML config file (defaults are built in).
    #[arg(long, env = "GPUDOCK_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (database, identity, TLS pair).
    #[arg(long, env = "GPUDOCK_DATA_DIR")]
    data_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the web UI and API (HTTPS, 0.0.0.0:8443 by default).
    Serve {
        #[command(flatten)]
        common: Common,
        #[arg(long, env = "GPUDOCK_LISTEN")]
        listen: Option<SocketAddr>,
        #[arg(long, env = "GPUDOCK_SSH_LISTEN")]
        ssh_listen: Option<SocketAddr>,
        /// The HTTPS proxy's first port (see `[proxy]`).
        #[arg(long, env = "GPUDOCK_PROXY_LISTEN")]
        proxy_listen: Option<SocketAddr>,
    },
    /// Validate the configuration and print it.
    Check {
        #[command(flatten)]
        common: Common,
    },
    /// Create or upgrade the database schema, then exit.
    Migrate {
        #[command(flatten)]
        common: Common,
    },
    /// Operator commands run on the host.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Audit log commands.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Write a consistent copy of the database and the age identity (the key
    /// to every sealed secret) into one archive, mode 0600; safe while serving.
    Backup {
        /// The archive to create (it must not exist yet).
        #[arg(long, value_name = "FILE")]
        to: PathBuf,
        #[command(flatten)]
        common: Common,
    },
    /// Check a backup archive, then restore it into a stopped data directory.
    Restore {
        /// The archive written by `gpudock backup`.
        #[arg(long, value_name = "FILE")]
        from: PathBuf,
        /// Replace a non-empty data directory (it is moved aside, not deleted).
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Serve this host's GPU (dcgm-exporter names, via NVML) and host
    /// (node_exporter names) metrics over HTTPS for a gpudock appliance.
    Agent(agent::AgentArgs),
    /// The server's child process for a password's strength estimate
    /// (reads one question on standard input); not a command for people.
    #[command(name = crate::auth::strength::CHILD_COMMAND, hide = true)]
    PasswordEstimate,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Print a new temporary password for USER (to be changed at next sign-in).
    ResetPassword {
        user: String,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Exit 0 when the audit hash chain is intact, 1 naming the first broken record.
    Verify {
        #[command(flatten)]
        common: Common,
    },
}

/// Loads the config: defaults <- file <- flags/env; warns about unknown keys.
fn load_config(common: &Common) -> anyhow::Result<Config> {
    let loaded = Config::load(common.config.as_deref())?;
    for key in &loaded.unknown_keys {
        log::warn!("config: unknown key `{key}` ignored");
    }
    let mut config = loaded.config;
    if let Some(d) = &common.data_dir {
        config.data_dir = d.clone();
    }
    Ok(config)
}

pub fn main() -> ExitCode {
    crate::logging::init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            log::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("while starting the async runtime")
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve {
            common,
            listen,
            ssh_listen,
            proxy_listen,
        } => {
            let mut config = load_config(&common)?;
            if let Some(l) = listen {
                config.listen = l;
            }
            if let Some(l) = ssh_listen {
                config.ssh_listen = l;
            }
            if let Some(l) = proxy_listen {
                config.proxy_listen = l;
            }
            config.validate()?;
            match crate::fsutil::raise_open_files() {
                Ok(n) => log::debug!("open files: up to {n}"),
                Err(e) => log::warn!("could not raise the limit of open files: {e}"),
            }
            // The estimator's dictionaries stay in a child's memory, not ours.
            if let Ok(exe) = std::env::current_exe() {
                crate::auth::strength::in_child_process(exe);
            }
            runtime()?.block_on(serve(config))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { common } => {
            let config = load_config(&common)?;
            config.validate()?;
            if let (Some(c), Some(k)) = (&config.tls.cert, &config.tls.key) {
                crate::tls::server_config(c, k).context("while checking tls.cert/tls.key")?;
            }
            if let (Some(c), Some(k)) = (&config.proxy.cert, &config.proxy.key) {
                crate::tls::server_config(c, k).context("while checking proxy.cert/proxy.key")?;
            }
            println!(
                "config OK: listen {}, ssh_listen {}, data_dir {}, tls {}",
                config.listen,
                config.ssh_listen,
                config.data_dir.display(),
                if config.tls.enabled { "on" } else { "OFF" }
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate { common } => {
            let config = load_config(&common)?;
            crate::fsutil::ensure_private_dir(&config.data_dir)
                .context("while creating the data directory")?;
            Db::open(&config.db_path()).context("while migrating")?;
            println!("database at {} is up to date", config.db_path().display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Admin {
            command: AdminCommand::ResetPassword { user, common },
        } => reset_password(&load_config(&common)?, &user),
        Command::Audit {
            command: AuditCommand::Verify { common },
        } => verify_audit(&load_config(&common)?),
        Command::Backup { to, common } => backup::create(&load_config(&common)?, &to),
        Command::Restore {
            from,
            force,
            common,
        } => backup::restore(&load_config(&common)?, &from, force),
        Command::Agent(args) => agent::run(args),
        Command::PasswordEstimate => {
            crate::auth::strength::answer(std::io::stdin().lock(), std::io::stdout().lock())
                .context("while estimating a password")?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// How long shutdown waits for background jobs after the server stopped
/// taking requests (within systemd's 30 s stop timeout, with the 10 s
/// connection drain before it).
const JOBS_WITHIN: std::time::Duration = std::time::Duration::from_secs(12);

/// Serves until SIGTERM/SIGINT. Under systemd (`Type=notify`) it reports
/// READY=1 once the data dir is locked, the app is open, the listener is bound
/// and the TLS pair loads, and STOPPING=1 when a signal arrives. Running jobs
/// are cancelled and undo their work first; every task owned here takes `app.cancel` (live sessions will
/// too) and is joined before the database is closed; the data-dir lock is
/// released last.
async fn serve(mut config: Config) -> anyhow::Result<()> {
    let (listen, ssh_listen) = (config.listen, config.ssh_listen);
    crate::fsutil::ensure_private_dir(&config.data_dir)
        .with_context(|| format!("while creating {}", config.data_dir.display()))?;
    let lock = crate::datadir::lock(&config.data_dir)?;
    let listener =
        std::net::TcpListener::bind(listen).with_context(|| format!("while binding {listen}"))?;
    let bound = listener.local_addr().context("while binding")?;
    let ssh = tokio::net::TcpListener::bind(ssh_listen)
        .await
        .with_context(|| format!("while binding the jumpbox to {ssh_listen}"))?;
    // The addresses actually bound (a port 0 became a real one): what pages
    // tell users to connect to.
    config.listen = bound;
    config.ssh_listen = ssh.local_addr().context("jumpbox address")?;
    let app = App::open(config)
        .await
        .context("while opening the data directory")?;
    crate::auth::bootstrap_admin(&app)
        .await
        .context("while creating the first admin")?;
    if app.config.tls.enabled {
        let (cert, key) = crate::tls::ensure_pair(&app.config).context("while loading TLS")?;
        crate::tls::server_config(&cert, &key).context("while loading TLS")?;
    }
    let host_key = crate::jumpbox::hostkey::load_or_create(&app.config.data_dir)
        .context("while loading the jumpbox host key")?;
    let proxy_listeners =
        crate::proxy::bind(&app.config).context("while binding the HTTPS proxy")?;
    log::info!(
        "jumpbox: ssh on {}",
        ssh.local_addr().context("jumpbox address")?
    );
    let (cancel, db, hasher) = (app.cancel.clone(), app.db.clone(), app.hasher.clone());
    let jumpbox = tokio::spawn(crate::jumpbox::run(
        app.clone(),
        ssh,
        host_key,
        cancel.clone(),
    ));
    let purge = tokio::spawn(crate::auth::purge_sessions(
        app.db.clone(),
        std::time::Duration::from_secs(600),
        cancel.clone(),
    ));
    let health = tokio::spawn(crate::nodes::health::run(app.clone(), cancel.clone()));
    let sync = tokio::spawn(crate::instances::sync::run(app.clone(), cancel.clone()));
    let sessions = tokio::spawn(crate::sessions::run(app.clone(), cancel.clone()));
    let proxy = tokio::spawn(crate::proxy::run(
        app.clone(),
        proxy_listeners,
        cancel.clone(),
    ));
    let metrics = tokio::spawn(crate::monitor::run(app.clone(), cancel.clone()));
    let openings = tokio::spawn(crate::accounts::sweep::run(app.clone(), cancel.clone()));
    let alerts = tokio::spawn(crate::alerts::run(app.clone(), cancel.clone()));
    let datasets = tokio::spawn(crate::datasets::run(app.clone(), cancel.clone()));
    let leases = tokio::spawn(crate::leases::run(app.clone(), cancel.clone()));
    let signals = tokio::spawn(stop_on_signal(cancel.clone()));
    let stop = cancel.clone();
    let (jobs, live) = (app.jobs.clone(), app.live.clone());
    let served = crate::server::serve(app, listener, async move { stop.cancelled().await });
    notify_systemd(
        &[
            sd_notify::NotifyState::Ready,
            sd_notify::NotifyState::Status(&format!("serving on {bound}")),
        ],
        "READY",
    );
    let served = served.await;
    cancel.cancel();
    // Running jobs (a container being created) were told to stop by the
    // cancel: they undo what they made. One still running after this long
    // is left; the next start cleans up its reservation.
    if !jobs.shutdown(JOBS_WITHIN).await {
        log::warn!(
            "background jobs still running {JOBS_WITHIN:?} after the stop; left to the next start"
        );
    }
    for (name, task) in [
        ("session purge", purge),
        ("node health", health),
        ("instance sync", sync),
        ("dataset transfers", datasets),
        ("lease checker", leases),
        ("remote sessions", sessions),
        ("metrics", metrics),
        ("account openings", openings),
        ("alert evaluation", alerts),
        ("jumpbox", jumpbox),
        ("proxy", proxy),
        ("signal", signals),
    ] {
        if let Err(e) = task.await {
            log::error!("{name} task failed: {e}");
        }
    }
    // Web terminals (their WebSocket tasks) end their sessions: the client
    // told, the processes swept, the record closed, all before the
    // database closes.
    if !live.join(std::time::Duration::from_secs(10)).await {
        log::error!("some web-terminal sessions did not end within 10 s of shutdown");
    }
    tokio::task::spawn_blocking(move || hasher.shutdown())
        .await
        .context("while stopping the hashing pool")?;
    let last = db.close().await.context("while closing the database")?;
    log::info!(
        "stopped: database {}",
        if last {
            "checkpointed and closed"
        } else {
            "checkpointed (closed when the last request ends)"
        }
    );
    drop(lock);
    served.context("while serving")
}

/// Cancels `cancel` on SIGTERM or SIGINT (and tells systemd STOPPING=1);
/// returns when `cancel` is cancelled either way.
async fn stop_on_signal(cancel: tokio_util::sync::CancellationToken) {
    tokio::select! {
        name = shutdown_signal() => {
            log::info!("{name} received: shutting down (open connections get up to 10 s)");
            notify_systemd(&[sd_notify::NotifyState::Stopping], "STOPPING");
            cancel.cancel();
        }
        _ = cancel.cancelled() => {}
    }
}

/// Sends `state` to systemd when run as a `Type=notify` service (a no-op
/// without NOTIFY_SOCKET).
fn notify_systemd(state: &[sd_notify::NotifyState<'_>], what: &str) {
    if let Err(e) = sd_notify::notify(state) {
        log::warn!("could not send {what} to systemd: {e}");
    }
}

pub(crate) async fn shutdown_signal() -> &'static str {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! { _ = ctrl_c => "SIGINT", _ = term.recv() => "SIGTERM" }
            }
            Err(_) => {
                let _ = ctrl_c.await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
        "Ctrl-C"
    }
}

fn open_existing(config: &Config) -> anyhow::Result<Db> {
    let path = config.db_path();
    if !path.exists() {
        bail!("no database at {} (is --data-dir right?)", path.display());
    }
    Db::open(&path).with_context(|| format!("while opening {}", path.display()))
}

fn reset_password(config: &Config, username: &str) -> anyhow::Result<ExitCode> {
    let db = open_existing(config)?;
    let password = crate::hashing::random_password();
    let hash = crate::hashing::Hasher::new(&config.security)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .hash(&password)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let name = username.to_string();
    let found = runtime()?
        .block_on(db.write(move |c| crate::auth::reset_password_offline(c, &name, &hash)))?;
    if !found {
        eprintln!("error: no user named {username}");
        return Ok(ExitCode::from(1));
    }
    println!("{password}");
    eprintln!(
        "temporary password for {username} printed above; it must be changed at next sign-in"
    );
    Ok(ExitCode::SUCCESS)
}

fn verify_audit(config: &Config) -> anyhow::Result<ExitCode> {
    let db = open_existing(config)?;
    let report =
        runtime()?.block_on(db.read(|c| audit::verify(c).map_err(crate::db::DbError::from)))?;
    match report.first_broken {
        None => {
            println!("audit chain intact: {} records", report.checked);
            Ok(ExitCode::SUCCESS)
        }
        Some((id, why)) => {
            println!(
                "audit chain BROKEN at record {id}: {why} ({} records before it verified)",
                report.checked
            );
            Ok(ExitCode::from(1))
        }
    }
}
