//! End-to-end browser test: headless Chromium (driven through chromedriver by
//! fantoccini) signs in on the real login page, is forced to change the
//! initial password, is refused a weak one, sets a strong one, and switches
//! the language. The server side of the change is then checked over the API.
//!
//! Needs `/usr/bin/chromedriver` and `/usr/bin/chromium`
//! (Debian: `apt-get install chromium chromium-driver`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::future::Future;
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use reqwest::StatusCode;
use serde_json::{Value, json};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
const INSTALL_HINT: &str =
    "install chromium chromium-driver (apt-get install chromium chromium-driver)";
const STRONG_PASSWORD: &str = "Velvet-Harbor-Compass-58!";
const WEAK_PASSWORD: &str = "password1";
/// The longest any single wait in this test may take.
const WAIT: Duration = Duration::from_secs(20);

/// A chromedriver process in its own process group (so that the Chromium it
/// launches goes with it), plus a fresh browser profile directory. Dropping it
/// ends the whole group.
struct ChromeDriver {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl ChromeDriver {
    fn start() -> Self {
        assert!(
            std::path::Path::new(CHROMEDRIVER).exists(),
            "{CHROMEDRIVER} not found: {INSTALL_HINT}"
        );
        assert!(
            std::path::Path::new(CHROMIUM).exists(),
            "{CHROMIUM} not found: {INSTALL_HINT}"
        );
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("profile")).unwrap();
        std::fs::create_dir(dir.path().join("downloads")).unwrap();
        let log = std::fs::File::create(dir.path().join("chromedriver.log")).unwrap();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {CHROMEDRIVER} ({e}): {INSTALL_HINT}"));
        let mut driver = ChromeDriver { child, port, dir };
        driver.wait_ready();
        driver
    }

    /// Polls until chromedriver accepts TCP connections (bounded).
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + WAIT;
        loop {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "chromedriver exited early ({status}); {INSTALL_HINT}\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen on port {} within {WAIT:?}\n{}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn profile_dir(&self) -> PathBuf {
        self.dir.path().join("profile")
    }

    /// Where the browser saves downloads.
    fn downloads(&self) -> PathBuf {
        self.dir.path().join("downloads")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("chromedriver.log")).unwrap_or_default()
    }

    async fn connect(&self) -> Client {
        let caps = json!({
            "acceptInsecureCerts": true,
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--no-first-run",
                    "--disable-dev-shm-usage",
                    // A name for this host other than localhost (what a lab's
                    // browsers use): the connection lines must name it.
                    "--host-resolver-rules=MAP gpudock.test 127.0.0.1",
                    format!("--user-data-dir={}", self.profile_dir().display()),
                ],
                "prefs": {
                    "download.default_directory": self.downloads().to_string_lossy(),
                    "download.prompt_for_download": false,
                },
            },
        });
        // fantoccini's hyper-rustls turns on rustls' aws-lc-rs feature next to
        // the crate's ring, so rustls cannot pick a provider by itself.
        let _ = rustls::crypto::ring::default_provider().install_default();
        ClientBuilder::rustls()
            .expect("rustls connector")
            .capabilities(caps.as_object().unwrap().clone())
            .connect(&self.url())
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "cannot open a Chromium session ({e}); {INSTALL_HINT}\n{}",
                    self.log()
                )
            })
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        // The group id is chromedriver's pid (process_group(0)); this ends
        // chromedriver and any Chromium it left behind, and nothing else.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` until it yields `Ok` or `WAIT` passes; `what` names the
/// awaited condition in the failure message, and the last `Err` says what was
/// seen instead.
async fn poll<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        match check().await {
            Ok(v) => return v,
            Err(state) => assert!(
                Instant::now() < deadline,
                "timed out after {WAIT:?} waiting for {what}; last seen: {state}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the browser's URL has this path and query.
async fn wait_for_path(c: &Client, path_and_query: &str) {
    poll(&format!("URL {path_and_query}"), || async {
        let u = c.current_url().await.map_err(|e| e.to_string())?;
        let got = match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_string(),
        };
        if got == path_and_query {
            Ok(())
        } else {
            Err(u.to_string())
        }
    })
    .await;
}

async fn path_and_query(c: &Client) -> String {
    let u = c.current_url().await.unwrap();
    match u.query() {
        Some(q) => format!("{}?{q}", u.path()),
        None => u.path().to_string(),
    }
}

/// The `lang` attribute of the current document's `<html>`.
async fn html_lang(c: &Client) -> Result<String, String> {
    let v = c
        .execute("return document.documentElement.lang;", vec![])
        .await
        .map_err(|e| e.to_string())?;
    v.as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("lang is {v}"))
}

async fn fill(c: &Client, css: &str, value: &str) {
    let el = c
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("field {css} not found: {e}"));
    el.clear().await.unwrap();
    el.send_keys(value).await.unwrap();
}

async fn find(c: &Client, css: &str) -> fantoccini::elements::Element {
    match c.wait().at_most(WAIT).for_element(Locator::Css(css)).await {
        Ok(el) => el,
        Err(e) => {
            let url = c.current_url().await.map(|u| u.to_string());
            let src = c.source().await.unwrap_or_default();
            panic!("{css} not found ({e}) at {url:?}; page:\n{src}")
        }
    }
}

async fn click(c: &Client, css: &str) {
    find(c, css).await.click().await.unwrap();
}

/// Clicks `a.lang` and waits until the document's language differs from
/// `before`; returns the new language.
async fn switch_lang(c: &Client, before: &str) -> String {
    click(c, "a.lang").await;
    poll("<html lang> to change after a.lang", || async {
        let now = html_lang(c).await?;
        if now != before { Ok(now) } else { Err(now) }
    })
    .await
}

#[tokio::test]
async fn browser_login_forced_password_change_and_language_switch() {
    let started = Instant::now();
    let driver = ChromeDriver::start();
    let server = common::Server::start();
    let initial = server.initial_password();
    let c = driver.connect().await;

    // Anonymous: / sends the browser to the login page, remembering where it was.
    c.goto(&server.url("/")).await.unwrap();
    wait_for_path(&c, "/login?next=%2F").await;

    // Sign in with the initial password: the change is forced.
    fill(&c, "#username", "admin").await;
    fill(&c, "#password", &initial).await;
    click(&c, "#login-submit").await;
    wait_for_path(&c, "/account/password").await;
    let notice = find(&c, "#forced-notice").await;
    assert!(
        notice.is_displayed().await.unwrap(),
        "#forced-notice hidden"
    );
    // Until the password is changed the navigation is hidden (every link
    // would answer 403); signing out stays offered.
    let nav_links = c.find_all(Locator::Css("header nav a")).await.unwrap();
    assert!(nav_links.is_empty(), "{} nav links shown", nav_links.len());
    find(&c, "#logout").await;
    assert!(!notice.text().await.unwrap().trim().is_empty());

    // A weak password is refused on the page itself.
    fill(&c, "#current_password", &initial).await;
    fill(&c, "#new_password", WEAK_PASSWORD).await;
    fill(&c, "#confirm_password", WEAK_PASSWORD).await;
    click(&c, "#password-submit").await;
    let err = find(&c, "#new-password-error").await;
    let err_text = err.text().await.unwrap();
    assert!(
        !err_text.trim().is_empty(),
        "#new-password-error is empty:\n{}",
        c.source().await.unwrap()
    );
    assert_eq!(path_and_query(&c).await, "/account/password");
    // Still forced: the weak attempt changed nothing.
    find(&c, "#forced-notice").await;

    // A strong password goes through and lands on the dashboard.
    fill(&c, "#current_password", &initial).await;
    fill(&c, "#new_password", STRONG_PASSWORD).await;
    fill(&c, "#confirm_password", STRONG_PASSWORD).await;
    click(&c, "#password-submit").await;
    wait_for_path(&c, "/?changed=1").await;
    let changed = find(&c, "#password-changed").await;
    assert!(
        changed.is_displayed().await.unwrap(),
        "#password-changed hidden"
    );
    assert_eq!(
        find(&c, "#count-users").await.text().await.unwrap().trim(),
        "1"
    );

    // The language switch flips <html lang> between zh-CN and en, and back.
    let first = html_lang(&c).await.unwrap();
    assert!(
        first == "zh-CN" || first == "en",
        "unexpected lang {first:?}"
    );
    let second = switch_lang(&c, &first).await;
    let expected = if first == "en" { "zh-CN" } else { "en" };
    assert_eq!(second, expected);
    // Back on the same page, query included.
    wait_for_path(&c, "/?changed=1").await;
    // Still signed in after the switch: the dashboard, not the login page.
    find(&c, "#count-users").await;
    let third = switch_lang(&c, &second).await;
    assert_eq!(third, first);

    c.close().await.unwrap();

    // Server side: the old password is gone, the new one works and is final.
    let api = server.client();
    let login = server.url("/api/v1/auth/login");
    let (s, b) = common::post(
        &api,
        &login,
        json!({"username": "admin", "password": initial}),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    let (s, b) = common::post(
        &api,
        &login,
        json!({"username": "admin", "password": STRONG_PASSWORD}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["must_change_password"], false, "{b}");

    eprintln!("browser test took {:?}", started.elapsed());
    drop(driver);
}

/// Waits until the element `css` has `data-status` = `want` (a badge that
/// refreshes itself, or the page after an action).
async fn wait_status(c: &Client, css: &str, want: &str) {
    poll(&format!("{css} to say {want}"), || async {
        let el = c.find(Locator::Css(css)).await.map_err(|e| e.to_string())?;
        let st = el.attr("data-status").await.map_err(|e| e.to_string())?;
        if st.as_deref() == Some(want) {
            Ok(())
        } else {
            Err(format!("{st:?}"))
        }
    })
    .await;
}

/// Waits until the instance page's status badge says `want`.
async fn wait_instance_status(c: &Client, want: &str) {
    wait_status(c, "#instance-status", want).await;
}

/// Picks node `node_id` and names the instance in the wizard (image and
/// spec chosen already), creates it, and waits on its page until it runs.
async fn create_in_wizard(c: &Client, node_id: i64, name: &str) -> i64 {
    find(c, "#node_id")
        .await
        .select_by_value(&node_id.to_string())
        .await
        .unwrap();
    fill(c, "#instance-name", name).await;
    shot(c, "wizard").await;
    click(c, "#instance-create").await;
    let id = poll("the instance page", || async {
        let p = path_and_query(c).await;
        p.strip_prefix("/instances/")
            .and_then(|s| s.parse::<i64>().ok())
            .ok_or(p)
    })
    .await;
    wait_instance_status(c, "running").await;
    id
}

/// Signs in on the real login page and waits to be let in.
async fn sign_in(c: &Client, server: &common::Server, user: &str, password: &str) {
    sign_in_at(c, &server.url(""), user, password).await;
}

/// [`sign_in`] at `base` (the server under another name).
async fn sign_in_at(c: &Client, base: &str, user: &str, password: &str) {
    c.goto(&format!("{base}/login")).await.unwrap();
    fill(c, "#username", user).await;
    fill(c, "#password", password).await;
    click(c, "#login-submit").await;
    poll("sign-in", || async {
        let p = path_and_query(c).await;
        if p.starts_with("/login") {
            Err(p)
        } else {
            Ok(())
        }
    })
    .await;
}

/// Saves a screenshot when GPUDOCK_SCREENSHOTS names a folder (for looking
/// at the pages; no assertion depends on it).
async fn shot(c: &Client, name: &str) {
    if let Some(dir) = std::env::var_os("GPUDOCK_SCREENSHOTS") {
        let png = c.screenshot().await.unwrap();
        std::fs::write(PathBuf::from(dir).join(format!("{name}.png")), png).unwrap();
    }
}

/// A customer walks the create wizard in Chromium: image, then spec (the
/// node list fills from the candidate-nodes API), node, name; the progress
/// shows, the browser lands on the running instance with its logs followed;
/// stop, then delete (confirmed in the browser's dialog).
#[tokio::test]
async fn browser_walks_the_instance_wizard() {
    let d = common::dockerd::shared();
    let driver = ChromeDriver::start();
    let server = common::Server::start_with("[instances]\nstop_timeout_secs = 1\n");
    let admin = server.admin().await;
    let api = |path: &str| server.url(path);
    let (s, img) = common::post(
        &admin,
        &api("/api/v1/images"),
        json!({"name": "busybox", "address": common::dockerd::TEST_IMAGE}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{img}");
    let (s, spec) = common::post(
        &admin,
        &api("/api/v1/specs"),
        json!({"name": "small", "gpu_model": "RTX 4090", "gpu_count": 0, "cpu_cores": 1, "memory_gb": 1,
               "price_per_hour": 12.5}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{spec}");
    let (s, node) = common::post(
        &admin,
        &api("/api/v1/nodes"),
        json!({"name": "lab-node", "public_ip": "127.0.0.1", "private_ip": "127.0.0.1",
               "docker_endpoint": d.unix_url, "tls_enabled": false, "gpu_name": "RTX 4090",
               "gpu_count": 2, "cpu_cores": 8, "memory_gb": 16}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{node}");
    let node_id = node["id"].as_i64().unwrap();
    common::post(
        &admin,
        &api(&format!("/api/v1/nodes/{node_id}/test")),
        json!({}),
    )
    .await;
    let t = common::make_tenant(&server, &admin, "WIZ").await;
    common::make_user(
        &server,
        &admin,
        "wiz",
        "customer_member",
        Some(t),
        STRONG_PASSWORD,
    )
    .await;

    let c = driver.connect().await;
    sign_in(&c, &server, "wiz", STRONG_PASSWORD).await;
    c.goto(&server.url("/instances")).await.unwrap();
    click(&c, "#new-instance").await;
    wait_for_path(&c, "/instances/new").await;

    // Step 3 stays empty until a spec is chosen.
    let nodes = find(&c, "#node_id").await;
    assert_eq!(
        nodes
            .find_all(Locator::Css("option[value]:not([value=''])"))
            .await
            .unwrap()
            .len(),
        0
    );
    find(&c, "#image_id")
        .await
        .select_by_value(&img["id"].to_string())
        .await
        .unwrap();
    // Each spec shows its price per hour in the configured currency.
    let spec_option = format!("#spec_id option[value='{}']", spec["id"]);
    let priced = find(&c, &spec_option).await.text().await.unwrap();
    assert!(priced.ends_with("· ¥12.50/h"), "{priced}");
    find(&c, "#spec_id")
        .await
        .select_by_value(&spec["id"].to_string())
        .await
        .unwrap();
    let option = format!("#node_id option[value='{node_id}']");
    let label = find(&c, &option).await.text().await.unwrap();
    assert!(
        label.contains("lab-node") && label.contains("CPU 8"),
        "{label}"
    );
    // The job's progress, then the instance page (htmx redirect).
    let id = create_in_wizard(&c, node_id, "from-the-wizard").await;
    poll("the logs to stream in", || async {
        let t = find(&c, "#logs")
            .await
            .text()
            .await
            .map_err(|e| e.to_string())?;
        if t.contains("BusyBox") {
            Ok(())
        } else {
            Err(t)
        }
    })
    .await;
    shot(&c, "instance").await;

    // The member's dashboard lists their own instances, not tenant counts.
    c.goto(&server.url("/")).await.unwrap();
    poll("the member's instances on the dashboard", || async {
        let t = text_of(&c, "#my-instances").await;
        if t.contains("from-the-wizard") {
            Ok(())
        } else {
            Err(t)
        }
    })
    .await;
    find(&c, "#my-sessions").await;
    assert!(
        c.find_all(Locator::Css("#count-tenants"))
            .await
            .unwrap()
            .is_empty(),
        "no tenant count for a member"
    );
    c.goto(&server.url(&format!("/instances/{id}")))
        .await
        .unwrap();

    // The API agrees: the owner is the member, not whatever the form said.
    let (s, i) = common::get(&admin, &api(&format!("/api/v1/instances/{id}"))).await;
    assert_eq!(
        (s, i["name"].as_str(), i["status"].as_str()),
        (StatusCode::OK, Some("from-the-wizard"), Some("running"))
    );

    click(&c, "#instance-stop").await;
    wait_instance_status(&c, "exited").await;
    click(&c, "#instance-delete").await;
    poll("the confirm dialog", || async {
        c.accept_alert().await.map_err(|e| e.to_string())
    })
    .await;
    wait_for_path(&c, "/instances").await;
    shot(&c, "instances").await;
    let (s, _) = common::get(&admin, &api(&format!("/api/v1/instances/{id}"))).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    c.close().await.unwrap();
    drop(driver);
}

/// The web terminal in Chromium: a member opens it on their instance,
/// types `echo hello-$RANDOM` and sees the output; the session is recorded
/// (protocol web_terminal) and its recording holds what was shown. The
/// WebSocket refuses a foreign or missing Origin and another user's
/// instance.
#[tokio::test]
async fn browser_web_terminal_runs_commands_in_the_container() {
    use common::lab::{FAST_STOP, Lab, small_spec};
    let lab = Lab::new(FAST_STOP, 16).await;
    let spec = lab.spec(small_spec("s")).await;
    let t = common::make_tenant(&lab.srv, &lab.admin, "TRM").await;
    let (_, member) = common::make_user(
        &lab.srv,
        &lab.admin,
        "term",
        "customer_member",
        Some(t),
        STRONG_PASSWORD,
    )
    .await;
    let (s, i) = common::post(
        &member,
        &lab.srv.url("/api/v1/instances"),
        lab.create_body(spec, "shell"),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{i}");
    let id = i["id"].as_i64().unwrap();
    let (s, other) = lab
        .post("/api/v1/instances", lab.create_body(spec, "admins"))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{other}");

    // The WebSocket's own checks, before any browser.
    let ws = |c: &reqwest::Client, inst: i64, origin: Option<String>| {
        let mut r = c
            .get(lab.srv.url(&format!("/instances/{inst}/terminal/ws")))
            .header("connection", "Upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
        if let Some(o) = origin {
            r = r.header("origin", o);
        }
        async move { r.send().await.unwrap().status() }
    };
    let own_origin = lab.srv.base.clone();
    assert_eq!(
        ws(&member, id, Some("https://evil.example".into())).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(ws(&member, id, None).await, StatusCode::FORBIDDEN);
    assert_eq!(
        ws(
            &member,
            other["id"].as_i64().unwrap(),
            Some(own_origin.clone())
        )
        .await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        ws(&lab.srv.client(), id, Some(own_origin.clone())).await,
        StatusCode::SEE_OTHER
    );

    let driver = ChromeDriver::start();
    let c = driver.connect().await;
    sign_in(&c, &lab.srv, "term", STRONG_PASSWORD).await;
    c.goto(&lab.srv.url(&format!("/instances/{id}")))
        .await
        .unwrap();
    click(&c, "#open-terminal").await;
    wait_for_path(&c, &format!("/instances/{id}/terminal")).await;
    let rows = |c: &Client| {
        let c = c.clone();
        async move {
            let v = c
                .execute(
                    "const r = document.querySelector('.xterm-rows'); return r ? r.innerText : '';",
                    vec![],
                )
                .await
                .map_err(|e| e.to_string())?;
            Ok::<String, String>(v.as_str().unwrap_or("").to_string())
        }
    };
    poll("the shell prompt", || async {
        let t = rows(&c).await?;
        if t.contains('#') { Ok(()) } else { Err(t) }
    })
    .await;
    let input = find(&c, ".xterm-helper-textarea").await;
    input.send_keys("echo hello-$RANDOM\n").await.unwrap();
    let seen = poll("hello-<number> printed by the shell", || async {
        let t = rows(&c).await?;
        t.lines()
            .map(str::trim)
            .find(|l| {
                l.strip_prefix("hello-")
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            })
            .map(str::to_string)
            .ok_or(t)
    })
    .await;
    shot(&c, "terminal").await;

    // Resizing the browser resizes the container's TTY: `stty size`, asked
    // with a numbered marker, before and after.
    let stty = |c: &Client, n: u32| {
        let c = c.clone();
        async move {
            let cmd = format!("echo SZ{n}-$(stty size)-END\n");
            find(&c, ".xterm-helper-textarea")
                .await
                .send_keys(&cmd)
                .await
                .unwrap();
            let tag = format!("SZ{n}-");
            poll("stty's answer", || async {
                let t = rows(&c).await?;
                t.lines()
                    .filter_map(|l| l.trim().strip_prefix(tag.as_str())?.strip_suffix("-END"))
                    .find(|v| {
                        v.split(' ').count() == 2
                            && v.bytes().all(|b| b.is_ascii_digit() || b == b' ')
                    })
                    .map(str::to_string)
                    .ok_or(t)
            })
            .await
        }
    };
    let before = stty(&c, 0).await;
    c.set_window_size(700, 500).await.unwrap();
    let mut after = before.clone();
    for n in 1..20 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        after = stty(&c, n).await;
        if after != before {
            break;
        }
    }
    let cols = |s: &str| s.split(' ').nth(1).unwrap().parse::<u32>().unwrap();
    assert!(cols(&after) < cols(&before), "{before} -> {after}");

    // A dropped connection (an admin ends the session) offers Reconnect,
    // which opens a new session in the same terminal.
    let (_, list) = lab.get("/api/v1/sessions?protocol=web_terminal").await;
    let first = list[0]["id"].as_i64().unwrap();
    let (s, b) = lab
        .post(&format!("/api/v1/sessions/{first}/terminate"), json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let shown = |c: &Client, css: &'static str| {
        let c = c.clone();
        async move {
            let v = c
                .execute(
                    "const e = document.querySelector(arguments[0]); \
                     return e ? [!e.hidden, e.className] : null;",
                    vec![json!(css)],
                )
                .await
                .map_err(|e| e.to_string())?;
            Ok::<Value, String>(v)
        }
    };
    poll("the Reconnect button after the drop", || async {
        let v = shown(&c, "#terminal-reconnect").await?;
        if v[0] == json!(true) {
            Ok(())
        } else {
            Err(v.to_string())
        }
    })
    .await;
    click(&c, "#terminal-reconnect").await;
    poll("the terminal connected again", || async {
        let v = shown(&c, "#terminal-state").await?;
        let hidden = shown(&c, "#terminal-reconnect").await?;
        if v[1] == json!("badge on") && hidden[0] == json!(false) {
            Ok(())
        } else {
            Err(format!("{v} {hidden}"))
        }
    })
    .await;
    let again = stty(&c, 50).await;
    assert_eq!(again.split(' ').count(), 2, "{again}");
    // Colours written to the container's output are not shown raw in the
    // followed logs.
    find(&c, ".xterm-helper-textarea")
        .await
        .send_keys("printf 'col\\033[31mour-\\033[1;32mLOG\\033[0m-end\\n' > /proc/1/fd/1\n")
        .await
        .unwrap();
    c.goto(&lab.srv.url(&format!("/instances/{id}")))
        .await
        .unwrap();
    let logs = poll("the coloured line in the logs", || async {
        let t = find(&c, "#logs")
            .await
            .text()
            .await
            .map_err(|e| e.to_string())?;
        if t.contains("-end") { Ok(t) } else { Err(t) }
    })
    .await;
    assert!(
        logs.contains("colour-LOG-end") && !logs.contains('\u{1b}') && !logs.contains("[31m"),
        "{logs:?}"
    );
    c.close().await.unwrap();
    drop(driver);

    // The sessions: recorded as web_terminal, the first ended by the admin,
    // the second when the page went away.
    let deadline = Instant::now() + WAIT;
    let rec = loop {
        let (_, list) = lab.get("/api/v1/sessions?protocol=web_terminal").await;
        let all = list.as_array().cloned().unwrap_or_default();
        if all.len() >= 2 && all.iter().all(|s| s["ended_at"].is_i64()) {
            break all.into_iter().find(|s| s["id"] == first).unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "not two ended web_terminal sessions: {list}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        (rec["username"].as_str(), rec["instance_name"].as_str()),
        (Some("term"), Some("shell"))
    );
    let r = lab
        .admin
        .get(
            lab.srv
                .url(&format!("/api/v1/sessions/{}/recording", rec["id"])),
        )
        .send()
        .await
        .unwrap();
    let cast = r.text().await.unwrap();
    assert!(cast.contains(&seen), "the recording lacks {seen}");
}

/// Waits until the request page's status badge says `want`.
async fn wait_request_status(c: &Client, want: &str) {
    wait_status(c, "#request-status", want).await;
}

async fn text_of(c: &Client, css: &str) -> String {
    find(c, css).await.text().await.unwrap().trim().to_string()
}

/// Signs out with the nav's button.
async fn sign_out(c: &Client) {
    click(c, "#logout").await;
    wait_for_path(c, "/login").await;
}

/// Clicks a button whose form asks `hx-confirm`, and accepts the dialog.
async fn click_confirmed(c: &Client, css: &str) {
    click(c, css).await;
    poll("the confirm dialog", || async {
        c.accept_alert().await.map_err(|e| e.to_string())
    })
    .await;
}

/// Waits until the cloud users page's row of `username` has status `want`
/// (each action answers with the page again).
async fn wait_cloud_status(c: &Client, username: &str, want: &str) {
    let css = format!("tr[data-username='{username}'] span[data-status]");
    wait_status(c, &css, want).await;
}

/// Account opening in Chromium: a customer applies; an admin approves and
/// runs the opening, watches the steps, sees the password once with the
/// connection summary (copied with one click); the customer sees it once
/// too, and the new OS user signs in over SSH with it. Then on the cloud
/// users page: disable (sign-in refused), reset (the new password works),
/// delete (gone from the node). The dashboard counts follow.
#[tokio::test]
async fn browser_opens_an_account_on_a_node() {
    use common::sshd::{SshNode, ssh};
    let node = SshNode::start();
    let driver = ChromeDriver::start();
    let server = common::Server::start();
    let admin = server.admin().await;
    let (s, n) = common::post(
        &admin,
        &server.url("/api/v1/nodes"),
        json!({"name": "gpu-a", "public_ip": "127.0.0.1", "private_ip": "127.0.0.1",
               "ssh_port": node.port, "username": "root", "password": node.root_password,
               "tls_enabled": false}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{n}");
    let t = common::make_tenant(&server, &admin, "ACC").await;
    common::make_user(
        &server,
        &admin,
        "cust",
        "customer_member",
        Some(t),
        STRONG_PASSWORD,
    )
    .await;
    let whoami = |user: &str, pw: &str| {
        let out = ssh(node.port, user, pw, "id -un");
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };

    // The customer applies.
    let c = driver.connect().await;
    sign_in(&c, &server, "cust", STRONG_PASSWORD).await;
    click(&c, "#nav-accounts").await;
    click(&c, "#apply").await;
    wait_for_path(&c, "/operations/account-openings/create/").await;
    find(&c, "#req-node")
        .await
        .select_by_value(&n["id"].to_string())
        .await
        .unwrap();
    fill(&c, "#req-username", "Bad Name").await;
    click(&c, "#req-submit").await;
    find(&c, "#err-username").await;
    fill(&c, "#req-username", "webuser").await;
    fill(&c, "#req-user_fullname", "Web User").await;
    click(&c, "#req-submit").await;
    let id = poll("the request page", || async {
        let p = path_and_query(&c).await;
        p.strip_prefix("/operations/account-openings/")
            .and_then(|s| s.strip_suffix('/'))
            .and_then(|s| s.parse::<i64>().ok())
            .ok_or(p)
    })
    .await;
    wait_request_status(&c, "pending").await;
    assert!(
        c.find(Locator::Css("#approve")).await.is_err(),
        "a customer cannot approve"
    );
    shot(&c, "opening-applied").await;
    sign_out(&c).await;

    // The admin approves and opens the account.
    sign_in(&c, &server, "admin", common::ADMIN_PASSWORD).await;
    let page = server.url(&format!("/operations/account-openings/{id}/"));
    c.goto(&page).await.unwrap();
    fill(&c, "#approve-notes", "for the training run").await;
    click(&c, "#approve").await;
    wait_request_status(&c, "approved").await;
    click(&c, "#process").await;
    wait_request_status(&c, "completed").await;
    let states: Vec<String> = {
        let mut v = Vec::new();
        for li in c.find_all(Locator::Css("#steps li")).await.unwrap() {
            v.push(li.attr("data-state").await.unwrap().unwrap_or_default());
        }
        v
    };
    assert_eq!(states, ["done"; 6], "steps");
    click(&c, "#reveal-password").await;
    let password = text_of(&c, "#revealed-password").await;
    let summary = text_of(&c, "#summary-text").await;
    assert!(
        summary.contains(&format!("ssh -p {} webuser@127.0.0.1", node.port))
            && summary.contains(&password),
        "{summary}"
    );
    // No public host configured: the address the browser used (HTTP/2's
    // :authority here).
    let link = format!("{}/operations/account-openings/{id}/", server.base);
    assert!(summary.contains(&link), "{summary}");
    click(&c, "#copy-summary").await;
    let copied = poll("the copy button's answer", || async {
        find(&c, "#copy-summary")
            .await
            .attr("data-copied")
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "no answer yet".to_string())
    })
    .await;
    // Copied with the Clipboard API, or (where the browser refuses it)
    // selected for Ctrl+C: either way exactly the summary.
    let got = if copied == "1" {
        c.execute("return await navigator.clipboard.readText();", vec![])
            .await
            .map(|v| v.as_str().unwrap_or("").to_string())
            .unwrap_or_else(|_| summary.clone())
    } else {
        c.execute("return window.getSelection().toString();", vec![])
            .await
            .unwrap()
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(got.trim(), summary, "copied={copied}");
    shot(&c, "opening-completed").await;
    // Shown once: the page no longer offers it.
    c.goto(&page).await.unwrap();
    wait_request_status(&c, "completed").await;
    assert!(c.find(Locator::Css("#reveal-password")).await.is_err());
    assert_eq!(whoami("webuser", &password).as_deref(), Some("webuser"));
    sign_out(&c).await;

    // The customer sees the same password once.
    sign_in(&c, &server, "cust", STRONG_PASSWORD).await;
    c.goto(&page).await.unwrap();
    click(&c, "#reveal-password").await;
    assert_eq!(text_of(&c, "#revealed-password").await, password);
    sign_out(&c).await;

    // The cloud users page: disable, reset, delete.
    sign_in(&c, &server, "admin", common::ADMIN_PASSWORD).await;
    c.goto(&server.url("/")).await.unwrap();
    assert_eq!(text_of(&c, "#count-requests-completed").await, "1");
    assert_eq!(text_of(&c, "#count-cloudusers-active").await, "1");
    click(&c, "#nav-cloudusers").await;
    wait_for_path(&c, "/operations/cloud-users/").await;
    click(&c, "tr[data-username='webuser'] button.disable").await;
    wait_cloud_status(&c, "webuser", "disabled").await;
    assert_eq!(
        whoami("webuser", &password),
        None,
        "a disabled account signs in"
    );
    click(&c, "tr[data-username='webuser'] button.enable").await;
    wait_cloud_status(&c, "webuser", "active").await;
    click_confirmed(&c, "tr[data-username='webuser'] button.reset").await;
    let fresh = text_of(&c, "#new-password").await;
    assert_ne!(fresh, password);
    assert_eq!(whoami("webuser", &fresh).as_deref(), Some("webuser"));
    assert_eq!(whoami("webuser", &password), None);
    click(&c, "tr[data-username='webuser'] input.remove-home").await;
    click_confirmed(&c, "tr[data-username='webuser'] button.delete").await;
    wait_cloud_status(&c, "webuser", "deleted").await;
    shot(&c, "cloud-users").await;
    assert!(!node.has_user("webuser"), "still on the node");
    assert_eq!(whoami("webuser", &fresh), None);
    c.goto(&server.url("/")).await.unwrap();
    assert_eq!(text_of(&c, "#count-cloudusers-deleted").await, "1");
    c.close().await.unwrap();
    drop(driver);
}

/// The instance page's file browser in Chromium: an upload by the file
/// picker shows its progress to 100 %, the file lands in the container
/// with the same bytes, its download link saves the same bytes, a new
/// folder appears, and deleting it asks first.
#[tokio::test]
async fn browser_uploads_and_downloads_files_of_an_instance() {
    use common::lab::{FAST_STOP, Lab, small_spec};
    use sha2::{Digest, Sha256};
    let lab = Lab::new(FAST_STOP, 16).await;
    let spec = lab.spec(small_spec("s")).await;
    let t = common::make_tenant(&lab.srv, &lab.admin, "FIL").await;
    let (_, member) = common::make_user(
        &lab.srv,
        &lab.admin,
        "filer",
        "customer_member",
        Some(t),
        STRONG_PASSWORD,
    )
    .await;
    let (s, i) = common::post(
        &member,
        &lab.srv.url("/api/v1/instances"),
        lab.create_body(spec, "files"),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{i}");
    let (id, cid) = (
        i["id"].as_i64().unwrap(),
        i["container_id"].as_str().unwrap().to_string(),
    );
    // 6 MiB that are not text.
    let data: Vec<u8> = (0..6 * 1024 * 1024u32)
        .map(|n| (n.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let want = hex::encode(Sha256::digest(&data));
    let local = tempfile::tempdir().unwrap();
    let file = local.path().join("weights.bin");
    std::fs::write(&file, &data).unwrap();

    let driver = ChromeDriver::start();
    let c = driver.connect().await;
    sign_in(&c, &lab.srv, "filer", STRONG_PASSWORD).await;
    c.goto(&lab.srv.url(&format!("/instances/{id}")))
        .await
        .unwrap();
    find(&c, "#files-table").await;
    assert_eq!(
        find(&c, "#files-path")
            .await
            .prop("value")
            .await
            .unwrap()
            .as_deref(),
        Some("/data"),
        "the browser starts in /data"
    );

    // Upload with the file picker: the progress reaches 100 %.
    find(&c, "#files-input")
        .await
        .send_keys(&file.to_string_lossy())
        .await
        .unwrap();
    let done = find(&c, "#files-progress li.done").await;
    let bar = c
        .execute(
            "const p = document.querySelector('#files-progress li.done progress'); return [p.value, p.max];",
            vec![],
        )
        .await
        .unwrap();
    let (value, max) = (bar[0].as_f64(), bar[1].as_f64());
    assert_eq!(
        max,
        Some(data.len() as f64),
        "the bar counts the file's bytes"
    );
    assert_eq!(value, max, "the progress bar is full");
    assert!(done.text().await.unwrap().contains("100%"));
    find(&c, "tr[data-name=\"weights.bin\"]").await;
    let out = lab.docker(&["exec", &cid, "sha256sum", "/data/weights.bin"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with(&want),
        "{out:?}"
    );
    shot(&c, "files-uploaded").await;

    // Download through its link: the same bytes.
    click(&c, "tr[data-name=\"weights.bin\"] a.button").await;
    let saved = driver.downloads().join("weights.bin");
    poll("the download to finish", || async {
        match std::fs::read(&saved) {
            Ok(b) if b.len() == data.len() => Ok(b),
            Ok(b) => Err(format!("{} bytes so far", b.len())),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
    assert_eq!(
        hex::encode(Sha256::digest(std::fs::read(&saved).unwrap())),
        want
    );

    // A new folder, then its deletion after the browser's confirmation.
    fill(&c, "#files-folder-name", "checkpoints").await;
    click(&c, "#files-mkdir").await;
    find(&c, "tr[data-name=\"checkpoints\"] a.dir").await;
    click(&c, "tr[data-name=\"checkpoints\"] .files-delete").await;
    let asked = poll("the confirmation", || async {
        c.get_alert_text().await.map_err(|e| e.to_string())
    })
    .await;
    assert!(asked.contains("/data/checkpoints"), "{asked}");
    c.accept_alert().await.unwrap();
    poll("the folder to go", || async {
        let src = c.source().await.map_err(|e| e.to_string())?;
        if src.contains("data-name=\"checkpoints\"") {
            Err("still listed".into())
        } else {
            Ok(())
        }
    })
    .await;
    let ls = lab.docker(&["exec", &cid, "ls", "-A", "/data"]);
    assert_eq!(String::from_utf8_lossy(&ls.stdout).trim(), "weights.bin");

    // The log has the upload and the download with the file's hash.
    let (s, ops) = lab.get("/api/v1/file-operations?username=filer").await;
    assert_eq!(s, StatusCode::OK);
    for op in ["upload", "download"] {
        assert!(
            ops.as_array()
                .unwrap()
                .iter()
                .any(|o| o["operation"] == op && o["via"] == "web" && o["sha256"] == want.as_str()),
            "{op}: {ops:#}"
        );
    }
    c.close().await.unwrap();
    drop(driver);
}

/// Issue 15: a web app inside an instance through the HTTPS proxy, in
/// Chromium. Alice opens it from the instance page (sign-in through
/// gpudock's one-time hand-off), the app's page loads on its own origin,
/// its WebSocket echoes, and its JavaScript cannot read gpudock's cookie;
/// carol (another tenant), in a browser of her own, is refused.
#[tokio::test]
async fn browser_opens_a_web_app_through_the_proxy() {
    use common::lab::{FAST_STOP, Lab, small_spec};
    let lab = Lab::new(FAST_STOP, 16).await;
    let image = common::app::register(&lab).await;
    let spec = lab.spec(small_spec("s")).await;
    let ta = common::make_tenant(&lab.srv, &lab.admin, "PXA").await;
    let tb = common::make_tenant(&lab.srv, &lab.admin, "PXB").await;
    let (_, alice) = common::make_user(
        &lab.srv,
        &lab.admin,
        "alice",
        "customer_member",
        Some(ta),
        STRONG_PASSWORD,
    )
    .await;
    common::make_user(
        &lab.srv,
        &lab.admin,
        "carol",
        "customer_member",
        Some(tb),
        STRONG_PASSWORD,
    )
    .await;
    let body = json!({"image_id": image, "spec_id": spec, "node_id": lab.node, "name": "nb"});
    let (s, i) = common::post(&alice, &lab.srv.url("/api/v1/instances"), body).await;
    assert_eq!(s, StatusCode::CREATED, "{i}");
    let id = i["id"].as_i64().unwrap();

    let driver = ChromeDriver::start();
    let c = driver.connect().await;
    sign_in(&c, &lab.srv, "alice", STRONG_PASSWORD).await;
    // Turned on from the instance page's section (a form loaded by htmx).
    c.goto(&lab.srv.url(&format!("/instances/{id}")))
        .await
        .unwrap();
    fill(&c, "#web-port", "8000").await;
    fill(&c, "#web-name", "Notebook").await;
    click(&c, "#web-on").await;
    let url = poll("the service's address", || async {
        match c.find(Locator::Css("#web-url-8000")).await {
            Ok(e) => e.text().await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
    assert!(!url.starts_with(&lab.srv.base), "a separate origin: {url}");
    let open = find(&c, "#web-open-8000")
        .await
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(open, format!("/instances/{id}/web/8000/open"));
    // The app's address itself: not signed in to the app yet, the browser
    // goes through gpudock's hand-off and comes back, signed in.
    c.goto(&url).await.unwrap();
    let echo = poll("the app's WebSocket echo", || async {
        let t = text_of(&c, "#ws").await;
        if t.starts_with("echo:") {
            Ok(t)
        } else {
            Err(t)
        }
    })
    .await;
    assert_eq!(echo, "echo:ping from the browser");
    let here = c.current_url().await.unwrap().to_string();
    assert!(here.starts_with(&url), "{here} on {url}");
    let cookies = text_of(&c, "#cookies").await;
    assert!(
        !cookies.contains("gpudock"),
        "the app's JavaScript reads no gpudock cookie: {cookies}"
    );
    shot(&c, "proxy-app").await;
    c.close().await.unwrap();
    drop(driver);

    // Carol, in a browser of her own: the app sends her to gpudock, which
    // does not hand her in.
    let driver = ChromeDriver::start();
    let c = driver.connect().await;
    sign_in(&c, &lab.srv, "carol", STRONG_PASSWORD).await;
    c.goto(&url).await.unwrap();
    poll("carol sent to gpudock", || async {
        let u = c.current_url().await.map_err(|e| e.to_string())?;
        if u.as_str().starts_with(&lab.srv.base) {
            Ok(())
        } else {
            Err(u.to_string())
        }
    })
    .await;
    let src = c.source().await.unwrap();
    assert!(!src.contains("test app"), "{src}");
    assert!(
        c.find(Locator::Css("#title")).await.is_err(),
        "carol never sees the app"
    );
    c.close().await.unwrap();
}

/// The node page draws its charts with uPlot from the stored series of a
/// real node_exporter, and live updates add points while it is open.
#[tokio::test]
async fn browser_draws_a_node_chart_with_data_points() {
    let ne = common::exporters::node_exporter();
    let driver = ChromeDriver::start();
    let server = common::Server::start_with(
        "[metrics]\ninterval_secs = 1\nflush_interval_secs = 1\n[nodes]\nhealth_interval_secs = 1\n",
    );
    let admin = server.admin().await;
    let (s, n) = common::post(
        &admin,
        &server.url("/api/v1/nodes"),
        json!({"name": "gpu-a", "public_ip": "127.0.0.1", "private_ip": "127.0.0.1", "tls_enabled": false}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{n}");
    let id = n["id"].as_i64().unwrap();
    let url = server.url(&format!("/api/v1/nodes/{id}/metrics/sources"));
    let (s, b) = common::send(
        &admin,
        "PUT",
        &url,
        Some(json!({"node_exporter_url": ne.url()})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let series = server.url(&format!(
        "/api/v1/metrics/series?target=node:{id}&metric=mem_used_bytes"
    ));
    poll("stored node_exporter samples", || async {
        let (_, b) = common::get(&admin, &series).await;
        let n = b["values"]
            .as_array()
            .map_or(0, |v| v.iter().filter(|x| x.is_number()).count());
        if n >= 2 { Ok(()) } else { Err(b.to_string()) }
    })
    .await;

    let c = driver.connect().await;
    sign_in(&c, &server, "admin", common::ADMIN_PASSWORD).await;
    c.goto(&server.url(&format!("/nodes/{id}/metrics")))
        .await
        .unwrap();
    let points = |css: &'static str| {
        let c = c.clone();
        async move {
            let el = find(&c, css).await;
            let canvas = c
                .execute(
                    &format!("return document.querySelectorAll('{css} canvas').length;"),
                    vec![],
                )
                .await
                .map_err(|e| e.to_string())?;
            let n: usize = el
                .attr("data-points")
                .await
                .map_err(|e| e.to_string())?
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            if canvas.as_u64().unwrap_or(0) > 0 && n > 0 {
                Ok(n)
            } else {
                Err(format!("{n} points, {canvas} canvas"))
            }
        }
    };
    let first = poll("the memory chart drawn with data points", || {
        points("#chart-host-mem")
    })
    .await;
    poll("the CPU chart drawn with data points", || {
        points("#chart-host-cpu")
    })
    .await;
    shot(&c, "node-metrics").await;
    // Live updates (server-sent events) add points while the page is open.
    poll("a live point", || async {
        let n = points("#chart-host-mem").await?;
        if n > first {
            Ok(())
        } else {
            Err(format!("still {n}"))
        }
    })
    .await;
    // The range buttons reload from the hourly tier (7 d): no error, a chart.
    click(&c, "button.range-btn[data-range='7d']").await;
    poll("the 7 d chart", || points("#chart-host-mem")).await;
    drop(driver);
}

/// The value of the form field `css`.
async fn value_of(c: &Client, css: &str) -> String {
    find(c, css)
        .await
        .attr("value")
        .await
        .unwrap()
        .unwrap_or_default()
}

/// Waits until the table `css` shows `text` (the page after a form's post).
async fn table_has(c: &Client, css: &str, text: &str) {
    poll(&format!("{css} to show {text}"), || async {
        let el = c.find(Locator::Css(css)).await.map_err(|e| e.to_string())?;
        let t = el.text().await.map_err(|e| e.to_string())?;
        if t.contains(text) { Ok(()) } else { Err(t) }
    })
    .await;
}

/// Chooses spec `spec` in the wizard and returns the first line saying why
/// a node cannot take it.
async fn refusal_for(c: &Client, spec: &str) -> String {
    find(c, "#spec_id")
        .await
        .select_by_value(spec)
        .await
        .unwrap();
    poll("why the node cannot take the spec", || async {
        let el = c
            .find(Locator::Css("#node_id option.refused"))
            .await
            .map_err(|e| e.to_string())?;
        el.text().await.map_err(|e| e.to_string())
    })
    .await
}

/// The classes of the first-run checklist's steps, in order.
async fn checklist(c: &Client) -> Vec<String> {
    let mut out = Vec::new();
    for step in ["node", "image", "spec", "instance"] {
        let class = find(c, &format!("#setup-{step}"))
            .await
            .attr("class")
            .await
            .unwrap();
        out.push(class.unwrap_or_default());
    }
    out
}

/// The first run on a fresh data directory, in Chromium, typing no node
/// figure: the dashboard's checklist links each step and ticks it when done;
/// Register this host, then Sync hardware, fill CPU, memory and both disks;
/// an image and a spec from their pages; the wizard offers the node and says
/// why it cannot take a spec that does not fit (in both languages); the
/// instance runs and the checklist is gone. Then the instance's actions fit
/// its state, and deleting asks first, naming what will be lost.
#[tokio::test]
async fn browser_first_run_from_a_fresh_data_directory() {
    let d = common::dockerd::shared();
    let socket = d.unix_url.trim_start_matches("unix://");
    let driver = ChromeDriver::start();
    let server = common::Server::start_with(&format!(
        "[nodes]\nlocal_socket = {socket:?}\n[instances]\nstop_timeout_secs = 1\n[leases]\ncheck_interval_secs = 1\n"
    ));
    let admin = server.admin().await;
    let c = driver.connect().await;
    sign_in(&c, &server, "admin", common::ADMIN_PASSWORD).await;
    c.goto(&server.url("/lang/en?next=/")).await.unwrap();
    wait_for_path(&c, "/").await;
    assert_eq!(checklist(&c).await, ["todo", "todo", "todo", "todo"]);
    shot(&c, "first-run-dashboard").await;

    // Step 1: register this host, then sync its hardware.
    click(&c, "#setup-node a").await;
    wait_for_path(&c, "/nodes").await;
    click(&c, "#register-local").await;
    let node_id = poll("the new node's page", || async {
        let p = path_and_query(&c).await;
        p.strip_prefix("/nodes/")
            .and_then(|s| s.parse::<i64>().ok())
            .ok_or(p)
    })
    .await;
    click(&c, "#node-sync").await;
    wait_for_path(&c, &format!("/nodes/{node_id}?done=sync")).await;
    assert!(
        text_of(&c, "#action-done")
            .await
            .starts_with("Hardware synced")
    );
    for key in ["cpu_cores", "memory_gb", "system_disk_gb", "data_disk_gb"] {
        poll(&format!("{key} filled by Sync hardware"), || async {
            let el = c
                .find(Locator::Css(&format!("#node-{key}")))
                .await
                .map_err(|e| e.to_string())?;
            let v = el.attr("value").await.map_err(|e| e.to_string())?;
            match v.as_deref().map(str::parse::<i64>) {
                Some(Ok(n)) if n > 0 => Ok(()),
                _ => Err(format!("{v:?}")),
            }
        })
        .await;
    }
    let data_disk: i64 = value_of(&c, "#node-data_disk_gb").await.parse().unwrap();
    shot(&c, "first-run-node").await;
    // The registered host's unix:// endpoint: "Use TLS" is neither checked
    // nor shown, and the SSH fields say what they are for.
    let tls_state = |c: &Client| {
        let c = c.clone();
        async move {
            c.execute(
                "const t = document.getElementById('node-tls'); \
                 return [t.checked, t.closest('label').hidden];",
                vec![],
            )
            .await
            .unwrap()
        }
    };
    assert_eq!(tls_state(&c).await, json!([false, true]));
    assert!(
        text_of(&c, "#node-ssh-hint").await.contains("cloud-user"),
        "the SSH hint"
    );
    // Deleting the node asks first, naming it; dismissed, nothing goes.
    click(&c, "#node-delete").await;
    let text = poll("the node's confirmation", || async {
        c.get_alert_text().await.map_err(|e| e.to_string())
    })
    .await;
    assert!(
        text.contains("local") && text.contains("credentials"),
        "{text}"
    );
    c.dismiss_alert().await.unwrap();
    assert_eq!(
        path_and_query(&c).await,
        format!("/nodes/{node_id}?done=sync")
    );

    // On the new-node form, typing a tcp:// endpoint checks it and shows
    // the certificates; a unix:// one unchecks and hides them.
    c.goto(&server.url("/nodes")).await.unwrap();
    fill(&c, "#node-endpoint", "tcp://10.0.0.5:2376").await;
    assert_eq!(tls_state(&c).await, json!([true, false]));
    fill(&c, "#node-endpoint", "unix:///var/run/docker.sock").await;
    assert_eq!(tls_state(&c).await, json!([false, true]));

    // At 420 px the header wraps: no link of it reaches past the window.
    c.set_window_size(420, 800).await.unwrap();
    for lang in ["en", "zh-CN"] {
        c.goto(&server.url(&format!("/lang/{lang}?next=/")))
            .await
            .unwrap();
        wait_for_path(&c, "/").await;
        let spill = c
            .execute(
                "const w = document.documentElement.clientWidth; \
                 return [...document.querySelectorAll('header.top a, header.top button')] \
                   .filter(e => e.getBoundingClientRect().right > w + 1) \
                   .map(e => e.textContent + ' ' + e.getBoundingClientRect().right + '>' + w);",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(spill, json!([]), "{lang}: header links past the window");
        shot(&c, &format!("narrow-{lang}")).await;
    }
    c.goto(&server.url("/lang/en?next=/")).await.unwrap();
    c.set_window_size(1280, 900).await.unwrap();

    // Steps 2 and 3: an image and a spec from their pages.
    c.goto(&server.url("/")).await.unwrap();
    assert_eq!(checklist(&c).await, ["done", "todo", "todo", "todo"]);
    click(&c, "#setup-image a").await;
    wait_for_path(&c, "/images").await;
    fill(&c, "#image-name", "busybox").await;
    fill(&c, "#image-address", common::dockerd::TEST_IMAGE).await;
    click(&c, "#image-save").await;
    table_has(&c, "#images", "busybox").await;
    c.goto(&server.url("/")).await.unwrap();
    click(&c, "#setup-spec a").await;
    wait_for_path(&c, "/specs").await;
    for (css, v) in [
        ("#spec-name", "small"),
        ("#spec-gpu-model", "any"),
        ("#spec-gpu_count", "0"),
        ("#spec-cpu_cores", "1"),
        ("#spec-memory_gb", "1"),
        ("#spec-system_disk_gb", "1"),
        ("#spec-data_disk_gb", "1"),
    ] {
        fill(&c, css, v).await;
    }
    click(&c, "#spec-save").await;
    table_has(&c, "#specs", "small").await;
    c.goto(&server.url("/")).await.unwrap();
    assert_eq!(checklist(&c).await, ["done", "done", "done", "todo"]);

    // A spec that cannot fit: the wizard says which resource is short.
    let admin = &admin;
    let (s, big) = common::post(
        admin,
        &server.url("/api/v1/specs"),
        json!({"name": "huge", "gpu_model": "any", "gpu_count": 0, "cpu_cores": 1, "memory_gb": 1,
               "data_disk_gb": data_disk + 1}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{big}");

    // Step 4: the wizard.
    click(&c, "#setup-instance a").await;
    wait_for_path(&c, "/instances/new").await;
    let refused = refusal_for(&c, &big["id"].to_string()).await;
    assert!(
        refused.starts_with("local:")
            && refused.contains("data disk")
            && refused.contains(&format!("needs {}", data_disk + 1)),
        "{refused}"
    );
    shot(&c, "first-run-refused").await;
    c.goto(&server.url("/lang/zh-CN?next=/instances/new"))
        .await
        .unwrap();
    wait_for_path(&c, "/instances/new").await;
    let refused = refusal_for(&c, &big["id"].to_string()).await;
    assert!(
        refused.contains("数据盘") && refused.contains("资源不足"),
        "{refused}"
    );
    c.goto(&server.url("/lang/en?next=/instances/new"))
        .await
        .unwrap();
    wait_for_path(&c, "/instances/new").await;

    let image_id = find(&c, "#image_id option:not([value=''])")
        .await
        .attr("value")
        .await
        .unwrap()
        .unwrap();
    find(&c, "#image_id")
        .await
        .select_by_value(&image_id)
        .await
        .unwrap();
    let small = c
        .find(Locator::XPath(
            "//select[@id='spec_id']/option[starts-with(normalize-space(.), 'small')]",
        ))
        .await
        .unwrap()
        .attr("value")
        .await
        .unwrap()
        .unwrap();
    find(&c, "#spec_id")
        .await
        .select_by_value(&small)
        .await
        .unwrap();
    let option = format!("#node_id option[value='{node_id}']");
    find(&c, &option).await;
    let id = create_in_wizard(&c, node_id, "first").await;
    shot(&c, "first-run-instance").await;

    // Actions fit the state: running offers Stop and Restart, not Start.
    let has = |css: &'static str| {
        let c = &c;
        async move { !c.find_all(Locator::Css(css)).await.unwrap().is_empty() }
    };
    assert!(has("#instance-stop").await && has("#instance-restart").await);
    assert!(!has("#instance-start").await, "no Start while running");
    // Every connection line has its copy button.
    for line in ["web", "terminal", "ssh"] {
        find(&c, &format!("#copy-conn-{line}")).await;
    }
    // Opened under another name, over HTTP/2 (no Host header, only
    // `:authority`), every connection line names that host, not localhost.
    let other = server.url("").replace("127.0.0.1", "gpudock.test");
    sign_in_at(&c, &other, "admin", common::ADMIN_PASSWORD).await;
    c.goto(&format!("{other}/instances/{id}")).await.unwrap();
    let ssh = text_of(&c, "#conn-ssh").await;
    let protocol = c
        .execute(
            "return performance.getEntriesByType('navigation')[0].nextHopProtocol",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(protocol, json!("h2"), "the page came over HTTP/2");
    assert!(ssh.ends_with("@gpudock.test"), "{ssh}");
    for line in ["web", "terminal"] {
        let t = text_of(&c, &format!("#conn-{line}")).await;
        assert!(
            t.contains("gpudock.test") && !t.contains("127.0.0.1"),
            "{t}"
        );
    }
    c.goto(&server.url(&format!("/instances/{id}")))
        .await
        .unwrap();
    // A lease ending in two days: the banner on every page (issue 14).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let (st, b) = common::patch(
        admin,
        &server.url(&format!("/api/v1/instances/{id}")),
        json!({"lease_end": now + 2 * 86_400}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let banner = poll("the lease banner", || async {
        c.refresh().await.map_err(|e| e.to_string())?;
        match c.find(Locator::Css("#lease-banner-1")).await {
            Ok(el) => el.text().await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
    assert!(banner.contains("first"), "{banner}");
    click(&c, "#instance-stop").await;
    wait_instance_status(&c, "exited").await;
    // The page says what the action did.
    assert_eq!(text_of(&c, "#action-done").await, "Stopped.");
    assert!(has("#instance-start").await, "Start once stopped");
    assert!(!has("#instance-stop").await && !has("#instance-restart").await);

    // The checklist is done, so gone.
    c.goto(&server.url("/")).await.unwrap();
    find(&c, "#count-users").await;
    assert!(
        !has("#setup-checklist").await,
        "the checklist goes once done"
    );

    // Deleting the instance names it and what goes with it.
    c.goto(&server.url(&format!("/instances/{id}")))
        .await
        .unwrap();
    click(&c, "#instance-delete").await;
    let text = poll("the instance's confirmation", || async {
        c.get_alert_text().await.map_err(|e| e.to_string())
    })
    .await;
    assert!(text.contains("first") && text.contains("/data"), "{text}");
    c.accept_alert().await.unwrap();
    wait_for_path(&c, "/instances").await;

    // The usage page: the admin's running time of "first", per user and
    // per tenant, and its CSV (issue 14).
    c.goto(&server.url("/usage")).await.unwrap();
    let users = text_of(&c, "#usage-users tbody").await;
    assert!(users.contains("admin"), "{users}");
    find(&c, "#usage-csv").await;

    // The permission matrix in words: one switch grants an action's page
    // and API at once, in place; the audit log says so in words.
    c.goto(&server.url("/permissions")).await.unwrap();
    let cell = "#acell-customer_member-users-view button";
    assert_eq!(
        find(&c, cell)
            .await
            .attr("data-held")
            .await
            .unwrap()
            .as_deref(),
        Some("none")
    );
    let feature = text_of(&c, "#action-users-view").await;
    assert!(
        feature.starts_with("Users") && feature.contains("view"),
        "{feature}"
    );
    click(&c, cell).await;
    poll("the switch on", || async {
        let held = find(&c, cell)
            .await
            .attr("data-held")
            .await
            .map_err(|e| e.to_string())?;
        (held.as_deref() == Some("all"))
            .then_some(())
            .ok_or(format!("{held:?}"))
    })
    .await;
    c.goto(&server.url("/audit?action=permission."))
        .await
        .unwrap();
    let first = text_of(&c, "#audit-table tbody td.audit-action").await;
    assert_eq!(first, "Permission: grant");
    let detail = text_of(&c, "#audit-table tbody dl.audit-detail").await;
    assert!(
        detail.contains("Routes") && detail.contains("GET /users"),
        "{detail}"
    );
    c.close().await.unwrap();
    drop(driver);
}
