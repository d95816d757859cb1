//! Test harness: starts the real `gpudock` binary on 127.0.0.1 (port 0) with a
//! temporary data dir, waits for /healthz by polling, and gives HTTPS clients
//! that trust the server's generated certificate (TLS is verified, not skipped).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

pub mod app;
pub mod dockerd;
pub mod exporters;
pub mod lab;
pub mod sshd;
pub mod ws;

pub const ADMIN_PASSWORD: &str = "Lantern-Orbit-Quartz-93!";

pub struct Server {
    pub base: String,
    /// The certificate clients trust: the generated one unless a test sets it.
    pub cert: PathBuf,
    pub dir: tempfile::TempDir,
    child: Child,
    logs: Arc<Mutex<String>>,
}

/// The gpudock binary the servers run: this build's, or `GPUDOCK_BIN`
/// (benches compare an older binary in the same run).
pub fn bin() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        std::env::var("GPUDOCK_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_gpudock").to_string())
    })
}

impl Server {
    pub fn start() -> Self {
        Self::start_with("")
    }

    /// Starts with `config` (TOML) written to `<dir>/config.toml`.
    pub fn start_with(config: &str) -> Self {
        Self::start_in(tempfile::tempdir().unwrap(), config)
    }

    pub fn start_in(dir: tempfile::TempDir, config: &str) -> Self {
        let cert = dir.path().join("data/tls/cert.pem");
        Self::start_trusting(dir, config, cert)
    }

    /// Starts with `config`, trusting `cert` (a configured pair).
    pub fn start_trusting(dir: tempfile::TempDir, config: &str, cert: PathBuf) -> Self {
        let cfg = dir.path().join("config.toml");
        std::fs::write(&cfg, config).unwrap();
        let data = dir.path().join("data");
        let mut child = Command::new(bin())
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--ssh-listen",
                "127.0.0.1:0",
                "--proxy-listen",
                "127.0.0.1:0",
            ])
            .arg("--config")
            .arg(&cfg)
            .arg("--data-dir")
            .arg(&data)
            .env("RUST_LOG", "info")
            .env_remove("JOURNAL_STREAM")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let logs = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line.split("listening on ").nth(1) {
                    let _ = tx.send(addr.trim().to_string());
                }
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let base = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(b) => b,
            Err(_) => {
                let _ = child.kill();
                panic!("server did not start:\n{}", logs.lock().unwrap());
            }
        };
        let server = Server {
            base,
            cert,
            dir,
            child,
            logs,
        };
        server.wait_healthy();
        server
    }

    /// Polls /healthz (on its own thread and runtime, so that async tests can
    /// call `start`).
    fn wait_healthy(&self) {
        let (url, cert) = (self.url("/healthz"), self.cert.clone());
        let ok = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let c = client_trusting(&cert);
                while Instant::now() < deadline {
                    if let Ok(r) = c.get(&url).send().await
                        && r.status() == StatusCode::OK
                    {
                        return true;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                false
            })
        })
        .join()
        .unwrap();
        assert!(ok, "/healthz never answered:\n{}", self.logs());
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// The server process's id (for memory figures).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The jumpbox's port (from the server's log line `jumpbox: ssh on ADDR`).
    pub fn ssh_port(&self) -> u16 {
        let logs = self.logs();
        logs.lines()
            .find_map(|l| l.split("jumpbox: ssh on ").nth(1))
            .and_then(|a| a.trim().rsplit(':').next()?.parse().ok())
            .unwrap_or_else(|| panic!("no jumpbox address in the log:\n{logs}"))
    }

    /// The HTTPS proxy's ports, as its log line names them (it starts
    /// with the server; waits a few seconds for the line).
    pub fn proxy_ports(&self) -> Vec<u16> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let logs = self.logs();
            if let Some(list) = logs
                .lines()
                .find_map(|l| l.split("proxy: web apps on ").nth(1))
            {
                return list
                    .split_whitespace()
                    .filter_map(|a| a.rsplit(':').next()?.parse().ok())
                    .collect();
            }
            assert!(
                Instant::now() < deadline,
                "no proxy address in the log:\n{logs}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    pub fn initial_password(&self) -> String {
        std::fs::read_to_string(self.data_dir().join("initial-admin-password"))
            .unwrap()
            .trim()
            .to_string()
    }

    /// A client with its own cookie jar that trusts the server's certificate.
    pub fn client(&self) -> reqwest::Client {
        client_trusting(&self.cert)
    }

    /// Runs a `gpudock` subcommand against this server's data dir.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(bin())
            .args(args)
            .arg("--data-dir")
            .arg(self.data_dir())
            .env_remove("JOURNAL_STREAM")
            .output()
            .unwrap()
    }

    /// Signs in as `admin` and replaces the initial password with
    /// `ADMIN_PASSWORD`; returns the signed-in client.
    pub async fn admin(&self) -> reqwest::Client {
        let c = self.client();
        let initial = self.initial_password();
        let (s, _) = post(
            &c,
            &self.url("/api/v1/auth/login"),
            json!({"username": "admin", "password": initial}),
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        let (s, b) = post(
            &c,
            &self.url("/api/v1/auth/password"),
            json!({"current_password": initial, "new_password": ADMIN_PASSWORD}),
        )
        .await;
        assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
        c
    }

    /// Signs in `username` with `password` on a fresh client.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
    ) -> (reqwest::Client, StatusCode, Value) {
        let c = self.client();
        let (s, b) = post(
            &c,
            &self.url("/api/v1/auth/login"),
            json!({"username": username, "password": password}),
        )
        .await;
        (c, s, b)
    }

    /// Stops the server and starts a new one on the same data dir with
    /// `config` (as an operator restarting the service would).
    pub fn restart(mut self, config: &str) -> Server {
        self.stop();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        Server::start_in(dir, config)
    }

    /// Kills the server outright (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether the server process has exited.
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    pub fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client trusting only `cert` (or no TLS roots at all when the file does
/// not exist, for plain-HTTP servers).
pub fn client_trusting(cert: &Path) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false);
    if let Ok(pem) = std::fs::read(cert) {
        b = b.add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap());
    }
    b.cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn body(r: reqwest::Response) -> (StatusCode, Value) {
    let s = r.status();
    let text = r.text().await.unwrap();
    (
        s,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

pub async fn get(c: &reqwest::Client, url: &str) -> (StatusCode, Value) {
    body(c.get(url).send().await.unwrap()).await
}

/// The body of a page (any status).
pub async fn text(c: &reqwest::Client, url: &str) -> String {
    c.get(url).send().await.unwrap().text().await.unwrap()
}

pub async fn post(c: &reqwest::Client, url: &str, v: Value) -> (StatusCode, Value) {
    body(c.post(url).json(&v).send().await.unwrap()).await
}

pub async fn patch(c: &reqwest::Client, url: &str, v: Value) -> (StatusCode, Value) {
    body(c.patch(url).json(&v).send().await.unwrap()).await
}

pub async fn send(
    c: &reqwest::Client,
    method: &str,
    url: &str,
    v: Option<Value>,
) -> (StatusCode, Value) {
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut rb = c.request(m, url);
    if let Some(v) = v {
        rb = rb.json(&v);
    }
    body(rb.send().await.unwrap()).await
}

/// The error code of an API error body.
pub fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

/// Creates a user as `admin_client`, then signs them in and sets `password`
/// (users created by someone else must change their password first).
pub async fn make_user(
    srv: &Server,
    admin_client: &reqwest::Client,
    username: &str,
    role: &str,
    tenant_id: Option<i64>,
    password: &str,
) -> (i64, reqwest::Client) {
    let (s, b) = post(
        admin_client,
        &srv.url("/api/v1/users"),
        json!({"username": username, "role": role, "tenant_id": tenant_id}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let id = b["user"]["id"].as_i64().unwrap();
    let temp = b["initial_password"].as_str().unwrap().to_string();
    let (c, s, _) = srv.login(username, &temp).await;
    assert_eq!(s, StatusCode::OK);
    let (s, b) = post(
        &c,
        &srv.url("/api/v1/auth/password"),
        json!({"current_password": temp, "new_password": password}),
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    (id, c)
}

pub async fn make_tenant(srv: &Server, admin_client: &reqwest::Client, code: &str) -> i64 {
    let (s, b) = post(
        admin_client,
        &srv.url("/api/v1/tenants"),
        json!({"name": format!("Tenant {code}"), "company_code": code}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    b["id"].as_i64().unwrap()
}

/// The application opened in this process on `dir/data` (no server), and its
/// bootstrap `admin` as the caller: for tests of library calls that no HTTP
/// route reaches (the jumpbox's lookups, concurrency).
pub async fn in_process_admin(dir: &Path) -> (gpudock::App, gpudock::auth::CurrentUser) {
    let config = gpudock::Config {
        data_dir: dir.join("data"),
        ..gpudock::Config::default()
    };
    let app = gpudock::App::open(config).await.unwrap();
    gpudock::auth::bootstrap_admin(&app).await.unwrap();
    let user = app
        .db
        .read(|c| {
            gpudock::auth::store::user_by_name(c, "admin").map_err(gpudock::db::DbError::from)
        })
        .await
        .unwrap()
        .unwrap();
    let me = gpudock::auth::CurrentUser {
        user,
        via: gpudock::auth::AuthVia::Session,
    };
    (app, me)
}

/// A registry that accepts connections and never answers: a pull from it
/// takes as long as dockerd waits. Its port, and whether a pull came.
pub fn silent_registry() -> (u16, std::sync::Arc<std::sync::atomic::AtomicBool>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let asked = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = asked.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().flatten() {
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
            held.push(conn);
        }
    });
    (port, asked)
}
