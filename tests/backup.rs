//! `gpudock backup` and `gpudock restore` with the real binary: a backup taken
//! while requests write, restored into a fresh data dir, passes
//! integrity_check and `audit verify`, and a server started on it opens the
//! sealed TLS key of a node (Test connection against the test dockerd). Restore
//! refuses a data dir a server holds, damaged archives and a swapped identity.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use common::{ADMIN_PASSWORD, Server, bin, dockerd, post};
use reqwest::StatusCode;
use serde_json::json;

fn gpudock(args: &[&str], data: &Path) -> Output {
    Command::new(bin())
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .env_remove("JOURNAL_STREAM")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A node on the shared test dockerd whose TLS client key is sealed.
async fn tls_node(srv: &Server, admin: &reqwest::Client) -> i64 {
    let d = dockerd::shared();
    let body = json!({
        "name": "tls-backup", "public_ip": "203.0.113.20", "private_ip": "10.0.0.20",
        "docker_endpoint": d.tcp_url, "tls_ca_cert": d.ca_pem,
        "tls_client_cert": d.client_cert_pem, "tls_client_key": d.client_key_pem,
    });
    let (s, b) = post(admin, &srv.url("/api/v1/nodes"), body).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    b["id"].as_i64().unwrap()
}

async fn test_connection(srv: &Server, c: &reqwest::Client, id: i64) -> serde_json::Value {
    let url = srv.url(&format!("/api/v1/nodes/{id}/test"));
    let (s, b) = post(c, &url, json!({})).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b
}

/// Creates tenants until `stop`, counting the ones created.
async fn writer(srv_url: String, c: reqwest::Client, stop: Arc<AtomicBool>, n: Arc<AtomicUsize>) {
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) && i < 5000 {
        let body = json!({"name": format!("Writer {i}"), "company_code": format!("W{i:05}")});
        let (s, b) = post(&c, &format!("{srv_url}/api/v1/tenants"), body).await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        n.fetch_add(1, Ordering::SeqCst);
        i += 1;
    }
}

/// Runs `gpudock backup` while the writer runs; retries (new file) until at
/// least one write completed during the backup, at most 5 times.
async fn backup_during_writes(srv: &Server, dir: &Path, n: &AtomicUsize) -> std::path::PathBuf {
    for attempt in 0..5 {
        let file = dir.join(format!("backup-{attempt}.tar.gz"));
        let before = n.load(Ordering::SeqCst);
        let (data, f) = (srv.data_dir(), file.clone());
        let out = tokio::task::spawn_blocking(move || {
            gpudock(&["backup", "--to", f.to_str().unwrap()], &data)
        })
        .await
        .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        let during = n.load(Ordering::SeqCst) - before;
        println!("backup {attempt}: {during} tenants created while it ran");
        let said = text(&out);
        assert!(said.contains("holds age.key, the key that opens every sealed secret"));
        if during > 0 {
            return file;
        }
    }
    panic!("no write overlapped any of 5 backups");
}

#[tokio::test]
async fn a_backup_taken_while_writing_restores_to_a_working_server() {
    let srv = Server::start();
    let admin = srv.admin().await;
    let node = tls_node(&srv, &admin).await;
    assert_eq!(test_connection(&srv, &admin, node).await["ok"], true);

    let (stop, n) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    let w = tokio::spawn(writer(
        srv.base.clone(),
        admin.clone(),
        stop.clone(),
        n.clone(),
    ));
    while n.load(Ordering::SeqCst) < 3 {
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let out_dir = tempfile::tempdir().unwrap();
    let file = backup_during_writes(&srv, out_dir.path(), &n).await;
    stop.store(true, Ordering::Relaxed);
    w.await.unwrap();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "archive readable by its owner only");

    let fresh = tempfile::tempdir().unwrap();
    let data = fresh.path().join("data");
    let out = gpudock(&["restore", "--from", file.to_str().unwrap()], &data);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("audit chain intact"), "{}", text(&out));

    let conn = rusqlite::Connection::open(data.join("gpudock.db")).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    // Every tenant row came with its audit record (same transaction): the
    // copy is one consistent snapshot.
    let q = |sql: &str| conn.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap();
    let tenants = q("SELECT COUNT(*) FROM tenants WHERE company_code LIKE 'W%'");
    let records = q("SELECT COUNT(*) FROM audit_log WHERE action = 'tenant.create'");
    assert_eq!(tenants, records);
    assert!(tenants >= 3 && (tenants as usize) < n.load(Ordering::SeqCst));
    drop(conn);
    let out = gpudock(&["audit", "verify"], &data);
    assert!(out.status.success(), "{}", text(&out));

    let restored = Server::start_in(fresh, "");
    let (c, s, _) = restored.login("admin", ADMIN_PASSWORD).await;
    assert_eq!(s, StatusCode::OK);
    let t = test_connection(&restored, &c, node).await;
    assert_eq!(
        t["ok"], true,
        "the sealed TLS key opened after restore: {t}"
    );
}

/// Rewrites the archive `from` into `to` with `key` as its age.key (and a
/// manifest that matches, so only the identity check can catch it).
fn swap_identity(from: &Path, to: &Path, key: &[u8]) {
    use sha2::Digest;
    let mut entries: Vec<(String, Vec<u8>)> = Vec::new();
    let gz = flate2::read::GzDecoder::new(std::fs::File::open(from).unwrap());
    for e in tar::Archive::new(gz).entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        entries.push((name, data));
    }
    let mut manifest: serde_json::Value = serde_json::from_slice(&entries[0].1).unwrap();
    manifest["files"]["age.key"] =
        json!({"sha256": hex::encode(sha2::Sha256::digest(key)), "size": key.len()});
    entries[0].1 = manifest.to_string().into_bytes();
    for (name, data) in entries.iter_mut() {
        if name == "age.key" {
            *data = key.to_vec();
        }
    }
    let out = flate2::write::GzEncoder::new(
        std::fs::File::create(to).unwrap(),
        flate2::Compression::fast(),
    );
    let mut tar = tar::Builder::new(out);
    for (name, data) in &entries {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o600);
        tar.append_data(&mut h, name, &data[..]).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap();
}

#[tokio::test]
async fn restore_refuses_a_running_server_damaged_archives_and_another_identity() {
    let srv = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("b.tar.gz");
    let out = srv.cli(&["backup", "--to", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));

    let out = srv.cli(&["restore", "--from", file.to_str().unwrap(), "--force"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("in use by a running gpudock server"),
        "{}",
        text(&out)
    );
    let out = srv.cli(&["backup", "--to", file.to_str().unwrap()]);
    assert!(text(&out).contains("already exists"), "never overwritten");

    let target = dir.path().join("target");
    let bytes = std::fs::read(&file).unwrap();
    let truncated = dir.path().join("truncated.tar.gz");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let out = gpudock(&["restore", "--from", truncated.to_str().unwrap()], &target);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("damaged"), "{}", text(&out));
    assert!(!target.exists());

    let other = Server::start();
    let key = std::fs::read(other.data_dir().join("age.key")).unwrap();
    let swapped = dir.path().join("swapped.tar.gz");
    swap_identity(&file, &swapped, &key);
    let out = gpudock(&["restore", "--from", swapped.to_str().unwrap()], &target);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("is not the one this database's secrets were sealed with"),
        "{}",
        text(&out)
    );
    assert!(!target.exists());
    // The unmodified archive restores into the same target.
    let out = gpudock(&["restore", "--from", file.to_str().unwrap()], &target);
    assert!(out.status.success(), "{}", text(&out));
}
