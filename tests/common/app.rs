//! A test image that runs a small web app, as Jupyter or TensorBoard would
//! run in an instance: Debian's `websocketd` (a dynamically linked Go
//! program, copied in with the shared libraries it needs) serves static
//! files, CGI scripts (busybox `sh`) and a WebSocket echo (`cat`) on
//! 127.0.0.1:8000 only, inside the container: nothing outside the
//! container's own loopback can reach it, except through gpudock.
//!
//! * `/` — a page whose script opens a WebSocket to `/ws` on its own
//!   origin, sends `ping`, and shows the echo and `document.cookie`;
//! * `/headers` — the request's headers as the app saw them (`HTTP_*`);
//! * `/stream` — 256 KiB at once, then after 2 s the line `end`;
//! * `/ws` (any path, WebSocket) — echoes each line.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

use super::dockerd::{TestDaemon, docker_cli};

pub const APP_IMAGE: &str = "gpudock-test/app:latest";
/// The port the app listens on inside the container (loopback only).
pub const APP_PORT: u16 = 8000;

const INSTALL: &str = "install websocketd and busybox-static (see .ci/run)";

const INDEX: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>test app</title></head>
<body><h1 id="title">test app</h1>
<p id="ws">connecting</p>
<p id="cookies"></p>
<script src="/app.js"></script>
</body></html>
"#;

const APP_JS: &str = r#"document.getElementById("cookies").textContent = "cookies:" + document.cookie;
const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws");
ws.onopen = () => ws.send("ping from the browser");
ws.onmessage = (e) => { document.getElementById("ws").textContent = "echo:" + e.data; };
ws.onerror = () => { document.getElementById("ws").textContent = "websocket error"; };
"#;

const HEADERS_CGI: &str =
    "#!/bin/sh\necho 'Content-Type: text/plain'\necho\nenv | grep '^HTTP_' | sort\n";

const STREAM_CGI: &str = "#!/bin/sh\necho 'Content-Type: application/octet-stream'\necho\nhead -c 262144 /dev/zero\nsleep 2\necho end\n";

const START: &str = "#!/bin/sh\n\
websocketd --address=127.0.0.1 --port=8000 --staticdir=/www --cgidir=/cgi --loglevel=error /bin/cat &\n\
exec sleep 2147483647\n";

/// Imports the app image into `d` once (per test process and daemon).
pub fn app_image(d: &TestDaemon) {
    static DONE: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut done = DONE.lock().unwrap();
    if done.contains(&d.unix_url) {
        return;
    }
    import(d);
    done.push(d.unix_url.clone());
}

fn copy(from: &Path, root: &Path) {
    let to = root.join(from.strip_prefix("/").unwrap());
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(from, &to).unwrap_or_else(|e| panic!("copying {}: {e}", from.display()));
}

/// The shared libraries `ldd` names for `bin` (and its interpreter).
fn libraries(bin: &Path) -> Vec<String> {
    let out = Command::new("ldd").arg(bin).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            l.split_whitespace()
                .find(|w| w.starts_with('/'))
                .map(str::to_string)
        })
        .collect()
}

fn write(root: &Path, path: &str, text: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let p = root.join(path);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn import(d: &TestDaemon) {
    let wsd = Path::new("/usr/bin/websocketd");
    assert!(wsd.exists(), "{} is missing: {INSTALL}", wsd.display());
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("rootfs");
    for sub in ["bin", "tmp", "proc", "sys", "dev", "etc"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    let list = Command::new("/bin/busybox").arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let applet = applet.trim();
        if applet.is_empty() || applet == "busybox" {
            continue;
        }
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    copy(wsd, &root);
    for lib in libraries(wsd) {
        copy(Path::new(&lib), &root);
    }
    write(
        &root,
        "etc/passwd",
        "root:x:0:0:root:/root:/bin/sh\n",
        0o644,
    );
    write(&root, "www/index.html", INDEX, 0o644);
    write(&root, "www/app.js", APP_JS, 0o644);
    write(&root, "cgi/headers", HEADERS_CGI, 0o755);
    write(&root, "cgi/stream", STREAM_CGI, 0o755);
    write(&root, "start.sh", START, 0o755);
    let tar = tmp.path().join("app.tar");
    let st = Command::new("tar")
        .args(["--numeric-owner", "--owner=0", "--group=0", "-C"])
        .arg(&root)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success(), "tar failed");
    let out = docker_cli(
        d,
        &[
            "import",
            "--change",
            r#"CMD ["/bin/sh", "/start.sh"]"#,
            "--change",
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            &tar.to_string_lossy(),
            APP_IMAGE,
        ],
    );
    assert!(
        out.status.success(),
        "docker import of the app image failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Imports the app image into `lab`'s daemon and registers it in gpudock:
/// the image's id.
pub async fn register(lab: &super::lab::Lab) -> serde_json::Value {
    app_image(lab.d);
    let (s, img) = lab
        .post(
            "/api/v1/images",
            serde_json::json!({"name": "app", "address": APP_IMAGE}),
        )
        .await;
    assert_eq!(s, reqwest::StatusCode::CREATED, "{img}");
    img["id"].clone()
}

/// A second node on `lab`'s daemon, reached over TLS (so its instances'
/// ports are reached through the relay): its id.
pub async fn tls_node(lab: &super::lab::Lab, cpu: i64) -> serde_json::Value {
    let d = lab.d;
    let (s, n) = lab
        .post(
            "/api/v1/nodes",
            serde_json::json!({"name": "n2", "public_ip": "127.0.0.2", "private_ip": "127.0.0.2",
                   "docker_endpoint": d.tcp_url, "tls_ca_cert": d.ca_pem,
                   "tls_client_cert": d.client_cert_pem, "tls_client_key": d.client_key_pem,
                   "gpu_name": "NVIDIA GeForce RTX 4090", "gpu_count": 8, "cpu_cores": cpu,
                   "memory_gb": 64, "system_disk_gb": 1000, "data_disk_gb": 1000}),
        )
        .await;
    assert_eq!(s, reqwest::StatusCode::CREATED, "{n}");
    let (s, t) = lab
        .post(
            &format!("/api/v1/nodes/{}/test", n["id"]),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(s, reqwest::StatusCode::OK, "{t}");
    assert_eq!(t["ok"], serde_json::json!(true), "{t}");
    n["id"].clone()
}
