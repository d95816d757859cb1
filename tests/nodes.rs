//! Compute nodes against a real dockerd (see common/dockerd.rs): CRUD and
//! validation, secrets sealed at rest and absent from every answer, Test
//! connection over the unix socket and over TLS with in-memory certificates,
//! the health loop, Sync hardware, registering this host, and customers
//! kept out.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::dockerd::{self, TestDaemon};
use common::{Server, code, get, make_tenant, make_user, patch, post, send};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

const NODE_PASSWORD: &str = "Node-SSH-Pass-7f3c9a";

fn field<'a>(b: &'a Value, name: &str) -> &'a str {
    b["error"]["fields"][name].as_str().unwrap_or("")
}

fn tls_node(name: &str, d: &TestDaemon) -> Value {
    json!({
        "name": name, "public_ip": "203.0.113.10", "private_ip": "10.0.0.10", "docker_endpoint": d.tcp_url,
        "tls_ca_cert": d.ca_pem, "tls_client_cert": d.client_cert_pem, "tls_client_key": d.client_key_pem,
        "password": NODE_PASSWORD, "username": "root", "gpu_name": "RTX 4090", "gpu_count": 2
    })
}

fn unix_node(name: &str, d: &TestDaemon) -> Value {
    json!({"name": name, "public_ip": "127.0.0.1", "private_ip": "127.0.0.1", "docker_endpoint": d.unix_url, "tls_enabled": false})
}

/// A distinctive line from the middle of a PEM body.
fn pem_body_line(pem: &str) -> String {
    pem.lines()
        .find(|l| l.len() > 40 && !l.starts_with("-----"))
        .unwrap()
        .to_string()
}

/// Sync hardware on node `id`, answered 200.
async fn sync(srv: &Server, c: &Client, id: i64) -> Value {
    let (s, b) = post(c, &srv.url(&format!("/api/v1/nodes/{id}/sync")), json!({})).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b
}

/// A node's (system, data) disk sizes.
fn disks(n: &Value) -> (Option<i64>, Option<i64>) {
    (n["system_disk_gb"].as_i64(), n["data_disk_gb"].as_i64())
}

async fn create(srv: &Server, c: &Client, body: Value) -> i64 {
    let (s, b) = post(c, &srv.url("/api/v1/nodes"), body).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    b["id"].as_i64().unwrap()
}

#[tokio::test]
async fn validation_and_secrets_sealed_everywhere() {
    let d = dockerd::shared();
    let srv = Server::start();
    let admin = srv.admin().await;
    let url = srv.url("/api/v1/nodes");

    let (s, b) = post(&admin, &url, json!({})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    for f in ["name", "public_ip", "private_ip"] {
        assert_eq!(field(&b, f), "required", "{f}: {b}");
    }
    let (_, b) = post(&admin, &url, json!({"name": "n", "public_ip": "300.1.1.1", "private_ip": "x", "ssh_port": 0, "docker_endpoint": "http://h:1"})).await;
    for f in ["public_ip", "private_ip", "ssh_port", "docker_endpoint"] {
        assert!(!field(&b, f).is_empty(), "{f} not reported: {b}");
    }
    let (_, b) = post(&admin, &url, json!({"name": "n", "public_ip": "1.1.1.1", "private_ip": "10.0.0.1", "docker_endpoint": d.tcp_url})).await;
    for f in ["tls_ca_cert", "tls_client_cert", "tls_client_key"] {
        assert!(
            field(&b, f).starts_with("required when TLS is on"),
            "{f}: {b}"
        );
    }
    let mut bad = tls_node("n", d);
    bad["tls_ca_cert"] = json!("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----");
    bad["tls_client_key"] = json!("not a key");
    let (_, b) = post(&admin, &url, bad).await;
    assert!(field(&b, "tls_ca_cert").starts_with("not valid PEM"), "{b}");
    assert!(
        field(&b, "tls_client_key").starts_with("not valid PEM"),
        "{b}"
    );

    // TLS off on tcp is allowed (the UI warns).
    let exposed = create(&srv, &admin, json!({"name": "exposed", "public_ip": "1.1.1.1", "private_ip": "10.0.0.1", "docker_endpoint": "tcp://10.0.0.1:2375", "tls_enabled": false})).await;
    let html = admin
        .get(srv.url(&format!("/nodes/{exposed}")))
        .header("accept-language", "en")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("id=\"exposed-warning\""));

    let id = create(&srv, &admin, tls_node("gpu-01", d)).await;
    let (_, node) = get(&admin, &format!("{url}/{id}")).await;
    assert_eq!(
        (
            node["has_password"].as_bool(),
            node["has_client_key"].as_bool()
        ),
        (Some(true), Some(true))
    );
    assert!(node.get("password").is_none() && node.get("tls_client_key").is_none());
    assert_eq!(node["ssh_port"], 22, "default port");
    assert_eq!(node["tls_enabled"], true);
    let key_line = pem_body_line(&d.client_key_pem);
    let (dup_s, dup) = post(&admin, &url, tls_node("gpu-01", d)).await;
    assert_eq!(
        (dup_s, field(&dup, "name")),
        (StatusCode::CONFLICT, "already taken")
    );

    // Updating without the secrets keeps them; null clears.
    let (s, b) = patch(&admin, &format!("{url}/{id}"), json!({"region": "cn-east"})).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        (b["has_password"].as_bool(), b["has_client_key"].as_bool()),
        (Some(true), Some(true))
    );
    let (s, b) = patch(
        &admin,
        &format!("{url}/{id}"),
        json!({"tls_client_key": null}),
    )
    .await;
    assert_eq!(
        s,
        StatusCode::UNPROCESSABLE_ENTITY,
        "TLS still needs a key: {b}"
    );
    let (_, b) = patch(&admin, &format!("{url}/{id}"), json!({"password": null})).await;
    assert_eq!(b["has_password"], false);
    patch(
        &admin,
        &format!("{url}/{id}"),
        json!({"password": NODE_PASSWORD}),
    )
    .await;

    // Nowhere in clear: answers, the edit page, the audit log, the database, the log.
    let (_, list) = get(&admin, &url).await;
    let (_, audit) = get(&admin, &srv.url("/api/v1/audit?resource_type=node")).await;
    let page = admin
        .get(srv.url(&format!("/nodes/{id}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["detail"]["password"] == "changed")
    );
    for text in [list.to_string(), audit.to_string(), page, srv.logs()] {
        assert!(!text.contains(NODE_PASSWORD) && !text.contains(&key_line));
    }
    let mut dump = Vec::new();
    for f in ["gpudock.db", "gpudock.db-wal"] {
        dump.extend(std::fs::read(srv.data_dir().join(f)).unwrap_or_default());
    }
    for secret in [NODE_PASSWORD, key_line.as_str()] {
        assert!(
            !dump.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{secret} in clear on disk"
        );
    }
    // The sealed key still works: Test connection opens it in memory.
    let (_, t) = post(&admin, &format!("{url}/{id}/test"), json!({})).await;
    assert_eq!(t["ok"], true, "{t}");
    let (s, _) = send(&admin, "DELETE", &format!("{url}/{id}"), Some(json!({}))).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = get(&admin, &format!("{url}/{id}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn test_connection_over_unix_and_tls_and_clear_failures() {
    let d = dockerd::shared();
    let srv = Server::start();
    let admin = srv.admin().await;
    let unix = create(&srv, &admin, unix_node("unix-node", d)).await;
    let tls = create(&srv, &admin, tls_node("tls-node", d)).await;
    let (foreign_cert, foreign_key) = dockerd::foreign_client_pem();
    let mut wrong = tls_node("wrong-cert", d);
    wrong["tls_client_cert"] = json!(foreign_cert);
    wrong["tls_client_key"] = json!(foreign_key);
    let wrong = create(&srv, &admin, wrong).await;

    let (s, u) = post(
        &admin,
        &srv.url(&format!("/api/v1/nodes/{unix}/test")),
        json!({}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(u["ok"], true, "{u}");
    let r = &u["report"];
    assert!(!r["api_version"].as_str().unwrap().is_empty());
    assert!(r["cpus"].as_i64().unwrap() >= 1 && r["memory_bytes"].as_i64().unwrap() > 0);
    assert_eq!(
        (
            r["storage_opt_size"].as_bool(),
            r["nvidia_runtime"].as_bool()
        ),
        (Some(false), Some(false))
    );
    eprintln!("Test connection (unix, {} ms): {r}", u["elapsed_ms"]);

    let (_, t) = post(
        &admin,
        &srv.url(&format!("/api/v1/nodes/{tls}/test")),
        json!({}),
    )
    .await;
    assert_eq!(t["ok"], true, "{t}");
    assert_eq!(t["report"]["docker_version"], r["docker_version"]);
    eprintln!(
        "Test connection (TLS, in-memory certs, {} ms)",
        t["elapsed_ms"]
    );

    let (_, w) = post(
        &admin,
        &srv.url(&format!("/api/v1/nodes/{wrong}/test")),
        json!({}),
    )
    .await;
    assert_eq!(w["ok"], false);
    let why = w["error"].as_str().unwrap();
    assert!(
        why.to_lowercase().contains("certificate"),
        "unclear error: {why}"
    );
    eprintln!("wrong client certificate: {why}");

    let (_, n) = get(&admin, &srv.url(&format!("/api/v1/nodes/{wrong}"))).await;
    assert_eq!(
        (n["status"].as_str(), n["last_error"].as_str()),
        (Some("unreachable"), Some(why))
    );
    let (_, n) = get(&admin, &srv.url(&format!("/api/v1/nodes/{unix}"))).await;
    assert_eq!(n["status"], "online");
    assert!(n["last_seen_at"].is_number());
    let (_, audit) = get(&admin, &srv.url("/api/v1/audit?action=node.test")).await;
    let outcomes: Vec<_> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["outcome"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(outcomes, ["failure", "success", "success"]);

    // The page shows the report as an htmx fragment.
    let (_, me) = get(&admin, &srv.url("/api/v1/me")).await;
    let frag = admin
        .post(srv.url(&format!("/nodes/{unix}/test")))
        .header("hx-request", "true")
        .header("x-csrf-token", me["csrf_token"].as_str().unwrap())
        .header("accept-language", "en")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        frag.contains("id=\"test-ok\"")
            && frag.contains("Storage driver")
            && !frag.contains("<html")
    );
}

/// A TCP listener that accepts and never answers: a hung daemon.
fn black_hole() -> (std::net::TcpListener, String) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("tcp://{}", l.local_addr().unwrap());
    (l, addr)
}

async fn status(srv: &Server, c: &Client, id: i64) -> Value {
    get(c, &srv.url(&format!("/api/v1/nodes/{id}"))).await.1
}

async fn wait_status(srv: &Server, c: &Client, id: i64, want: &str, limit: Duration) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let n = status(srv, c, id).await;
        if n["status"] == want {
            return n;
        }
        assert!(
            Instant::now() < deadline,
            "node {id} never became {want}: {n}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn health_loop_marks_unreachable_nodes_without_slowing_the_rest() {
    let d = dockerd::shared();
    let srv = Server::start_with("[nodes]\nhealth_interval_secs = 1\nprobe_timeout_secs = 3\n");
    let admin = srv.admin().await;
    let (_hole, hole_url) = black_hole();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("tcp://{}", l.local_addr().unwrap())
    };
    let plain = |name: &str, ep: &str| json!({"name": name, "public_ip": "127.0.0.1", "private_ip": "127.0.0.1", "docker_endpoint": ep, "tls_enabled": false});
    let hung = create(&srv, &admin, plain("hung", &hole_url)).await;
    let refused = create(&srv, &admin, plain("refused", &closed)).await;
    let good = create(&srv, &admin, unix_node("good", d)).await;

    // The good node turns online while the hung one is still waiting out its timeout.
    wait_status(&srv, &admin, good, "online", Duration::from_secs(20)).await;
    assert_eq!(
        status(&srv, &admin, hung).await["status"],
        "unknown",
        "the hung node's probe is still pending"
    );
    let r = wait_status(
        &srv,
        &admin,
        refused,
        "unreachable",
        Duration::from_secs(20),
    )
    .await;
    assert!(r["last_error"].as_str().unwrap().contains("refused"), "{r}");
    let h = wait_status(&srv, &admin, hung, "unreachable", Duration::from_secs(20)).await;
    assert!(h["last_error"].as_str().unwrap().contains("3 s"), "{h}");
    // Pages stay fast while a node hangs: the list answers from the database.
    let t0 = Instant::now();
    let (s, _) = get(&admin, &srv.url("/api/v1/nodes")).await;
    assert_eq!(s, StatusCode::OK);
    eprintln!("GET /api/v1/nodes with a hung node: {:?}", t0.elapsed());

    // A daemon that stops is noticed.
    let mut private = dockerd::start_private();
    let p = create(&srv, &admin, unix_node("private", &private)).await;
    wait_status(&srv, &admin, p, "online", Duration::from_secs(20)).await;
    let t0 = Instant::now();
    private.stop();
    let stopped = t0.elapsed();
    let n = wait_status(&srv, &admin, p, "unreachable", Duration::from_secs(30)).await;
    eprintln!(
        "health loop: node unreachable {:?} after the stop began (the stop itself took {stopped:?}; interval 1 s): {}",
        t0.elapsed(),
        n["last_error"]
    );
}

#[tokio::test]
async fn register_this_host_and_sync_hardware() {
    let d = dockerd::shared();
    let socket = d.unix_url.trim_start_matches("unix://");
    let srv = Server::start_with(&format!("[nodes]\nlocal_socket = {socket:?}\n"));
    let admin = srv.admin().await;
    let html = admin
        .get(srv.url("/nodes"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("id=\"local-offer\""),
        "the page offers to register this host"
    );
    let (s, n) = post(&admin, &srv.url("/api/v1/nodes/register-local"), json!({})).await;
    assert_eq!(s, StatusCode::CREATED, "{n}");
    assert_eq!(
        (n["name"].as_str(), n["status"].as_str()),
        (Some("local"), Some("online"))
    );
    assert!(
        n["cpu_cores"].as_i64().unwrap() >= 1 && n["memory_gb"].as_i64().unwrap() >= 1,
        "{n}"
    );
    // Both disks are filled from this host: the Docker root's filesystem
    // and the volume location's (here the same filesystem).
    let (sys, data) = disks(&n);
    let (sys, data) = (sys.unwrap(), data.unwrap());
    assert!(sys >= 1 && data >= 1, "disk sizes filled: {n}");
    let local_id = n["id"].as_i64().unwrap();
    let (s, b) = patch(
        &admin,
        &srv.url(&format!("/api/v1/nodes/{local_id}")),
        json!({"system_disk_gb": 0, "data_disk_gb": 0}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let synced = sync(&srv, &admin, local_id).await;
    assert_eq!(
        disks(&synced),
        (Some(sys), Some(data)),
        "Sync hardware fills both disks again"
    );
    let html = admin
        .get(srv.url("/nodes"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !html.contains("id=\"local-offer\""),
        "no offer once registered"
    );
    let (s, b) = post(&admin, &srv.url("/api/v1/nodes/register-local"), json!({})).await;
    assert_eq!(
        (s, field(&b, "name")),
        (StatusCode::CONFLICT, "a node named local exists already")
    );

    let id = create(&srv, &admin, tls_node("sync-me", d)).await;
    let synced = sync(&srv, &admin, id).await;
    assert_eq!(synced["cpu_cores"], n["cpu_cores"]);
    assert_eq!(synced["memory_gb"], n["memory_gb"]);
    assert_eq!(
        (synced["gpu_name"].as_str(), synced["gpu_count"].as_i64()),
        (Some("RTX 4090"), Some(2)),
        "no NVML: GPU fields left to the admin"
    );
    // A remote node without an agent or node_exporter: its disk sizes stay
    // unknown, and its page asks for them.
    assert_eq!(disks(&synced), (Some(0), Some(0)), "{synced}");
    let page = common::text(&admin, &srv.url(&format!("/nodes/{id}"))).await;
    assert!(page.contains("id=\"disks-unknown\""), "{page}");
    // With a node_exporter as its source (Debian's, real), Sync hardware
    // reads both from the filesystems it lists: the Docker root's, which is
    // the filesystem this host's sync measured above.
    let ne = common::exporters::node_exporter();
    let (s, b) = send(
        &admin,
        "PUT",
        &srv.url(&format!("/api/v1/nodes/{id}/metrics/sources")),
        Some(json!({"node_exporter_url": ne.url()})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let synced = sync(&srv, &admin, id).await;
    assert_eq!(
        disks(&synced),
        (Some(sys), Some(data)),
        "disk sizes from node_exporter: {synced}"
    );
    let page = common::text(&admin, &srv.url(&format!("/nodes/{id}"))).await;
    assert!(!page.contains("id=\"disks-unknown\""));
    let (s, b) = post(&admin, &srv.url("/api/v1/nodes"), json!({"name": "dead", "public_ip": "1.1.1.1", "private_ip": "1.1.1.1", "docker_endpoint": "tcp://127.0.0.1:1", "tls_enabled": false})).await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, e) = post(
        &admin,
        &srv.url(&format!("/api/v1/nodes/{}/sync", b["id"])),
        json!({}),
    )
    .await;
    assert_eq!((s, code(&e)), (StatusCode::BAD_GATEWAY, "node_unreachable"));
    assert!(
        e["error"]["message"].as_str().unwrap().contains("refused"),
        "{e}"
    );
}

#[tokio::test]
async fn customers_cannot_see_or_change_nodes() {
    let d = dockerd::shared();
    let srv = Server::start();
    let admin = srv.admin().await;
    let id = create(&srv, &admin, unix_node("n", d)).await;
    let t = make_tenant(&srv, &admin, "NOD").await;
    let (_, owner) = make_user(
        &srv,
        &admin,
        "nodo",
        "customer_owner",
        Some(t),
        "Saffron-Glacier-Pivot-81",
    )
    .await;
    let (_, member) = make_user(
        &srv,
        &admin,
        "nodm",
        "customer_member",
        Some(t),
        "Cobalt-Meadow-Lyric-36",
    )
    .await;
    for c in [&owner, &member] {
        for (m, path) in [
            ("GET", "/api/v1/nodes".to_string()),
            ("GET", format!("/api/v1/nodes/{id}")),
            ("POST", "/api/v1/nodes".to_string()),
            ("PATCH", format!("/api/v1/nodes/{id}")),
            ("DELETE", format!("/api/v1/nodes/{id}")),
            ("POST", format!("/api/v1/nodes/{id}/test")),
            ("POST", format!("/api/v1/nodes/{id}/sync")),
            ("POST", "/api/v1/nodes/register-local".to_string()),
        ] {
            let (s, b) = send(c, m, &srv.url(&path), Some(json!({}))).await;
            assert_eq!(
                (s, code(&b)),
                (StatusCode::FORBIDDEN, "forbidden"),
                "{m} {path}"
            );
        }
        let r = c.get(srv.url("/nodes")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
    }
    let (_, n) = get(&admin, &srv.url(&format!("/api/v1/nodes/{id}"))).await;
    assert_eq!(n["name"], "n", "unchanged");
}
