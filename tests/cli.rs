//! The command line: `check`, `migrate`, `audit verify` on an intact and a
//! tampered chain, and start-up refusing a swapped age identity.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::{Server, bin, make_tenant};

fn run(args: &[&str]) -> std::process::Output {
    Command::new(bin())
        .args(args)
        .env_remove("JOURNAL_STREAM")
        .output()
        .unwrap()
}

#[test]
fn check_validates_and_names_the_bad_field() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "listen = \"127.0.0.1:9443\"\n[security]\nlockout_minutes = 10\n",
    )
    .unwrap();
    let out = run(&["check", "--config", good.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("127.0.0.1:9443"));

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[security]\nlockout_threshold = 0\n").unwrap();
    let out = run(&["check", "--config", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("security.lockout_threshold"));

    let unknown = dir.path().join("unknown.toml");
    std::fs::write(&unknown, "listne = \"x\"\n").unwrap();
    let out = run(&["check", "--config", unknown.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown key `listne`"));
}

#[test]
fn migrate_creates_the_schema() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let out = run(&["migrate", "--data-dir", data.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let conn = rusqlite::Connection::open(data.join("gpudock.db")).unwrap();
    let n: i64 = conn
        .query_row("SELECT COUNT(*) FROM permissions", [], |r| r.get(0))
        .unwrap();
    assert!(n > 30);
}

#[tokio::test]
async fn audit_verify_detects_tampering() {
    let mut srv = Server::start();
    let admin = srv.admin().await;
    make_tenant(&srv, &admin, "AUD").await;
    let out = srv.cli(&["audit", "verify"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("intact"));
    srv.stop();

    // Someone with the database file edits record 3 (after dropping the trigger).
    let conn = rusqlite::Connection::open(srv.data_dir().join("gpudock.db")).unwrap();
    assert!(
        conn.execute(
            "UPDATE audit_log SET actor_name = 'mallory' WHERE id = 3",
            []
        )
        .is_err(),
        "triggers refuse edits"
    );
    conn.execute_batch("DROP TRIGGER audit_log_no_update")
        .unwrap();
    conn.execute(
        "UPDATE audit_log SET actor_name = 'mallory' WHERE id = 3",
        [],
    )
    .unwrap();
    drop(conn);
    let out = srv.cli(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("record 3"), "{text}");
}

#[tokio::test]
async fn a_swapped_identity_stops_start_up_with_a_clear_error() {
    let mut srv = Server::start();
    srv.stop();
    let key = srv.data_dir().join("age.key");
    let original = std::fs::read(&key).unwrap();
    std::fs::remove_file(&key).unwrap();
    let out = srv.cli(&["migrate"]);
    assert!(out.status.success(), "migrate does not need the identity");
    let serve = |data: &std::path::Path| {
        Command::new(bin())
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
                data.to_str().unwrap(),
            ])
            .env_remove("JOURNAL_STREAM")
            .output()
            .unwrap()
    };
    let out = serve(&srv.data_dir());
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is missing but the database holds secrets sealed with it"),
        "{err}"
    );
    assert!(!key.exists(), "no new identity is created over sealed data");

    // Another identity: refused too.
    let other = tempfile::tempdir().unwrap();
    let o = Server::start_in(other, "");
    std::fs::copy(o.data_dir().join("age.key"), &key).unwrap();
    let out = serve(&srv.data_dir());
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("is not the one this database's secrets were sealed with")
    );
    std::fs::write(&key, original).unwrap();
}

#[tokio::test]
async fn a_configured_certificate_is_served_instead_of_the_generated_one() {
    let dir = tempfile::tempdir().unwrap();
    let pair = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let (cert, key) = (
        dir.path().join("my-cert.pem"),
        dir.path().join("my-key.pem"),
    );
    std::fs::write(&cert, pair.cert.pem()).unwrap();
    std::fs::write(&key, pair.signing_key.serialize_pem()).unwrap();
    let config = format!("[tls]\ncert = {:?}\nkey = {:?}\n", cert, key);
    let srv = Server::start_trusting(dir, &config, cert);
    assert!(srv.base.starts_with("https://"));
    let (s, _) = common::get(&srv.client(), &srv.url("/healthz")).await;
    assert_eq!(
        s,
        reqwest::StatusCode::OK,
        "TLS verified against the configured certificate"
    );
    assert!(
        !srv.data_dir().join("tls").exists(),
        "no self-signed pair generated"
    );
}

#[tokio::test]
async fn plain_http_only_when_the_config_says_so() {
    let srv = Server::start_with("[tls]\nenabled = false\n");
    assert!(srv.base.starts_with("http://"), "{}", srv.base);
    assert!(srv.logs().contains("TLS is off"));
    let (s, _) = common::get(&srv.client(), &srv.url("/healthz")).await;
    assert_eq!(s, reqwest::StatusCode::OK);

    let tls = Server::start();
    assert!(tls.base.starts_with("https://"));
    let plain = tls.base.replace("https://", "http://");
    let r = reqwest::Client::new()
        .get(format!("{plain}/healthz"))
        .send()
        .await;
    assert!(
        r.is_err() || r.unwrap().status() != reqwest::StatusCode::OK,
        "no plain HTTP on the TLS port"
    );
}
