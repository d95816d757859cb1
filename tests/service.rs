//! `serve` as a systemd `Type=notify` service: READY=1 on the notify socket
//! once it serves, the data dir locked against a second server, STOPPING=1 and
//! a clean exit (database checkpointed and closed) on SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Read;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::bin;

fn serve(data: &Path) -> Command {
    let mut c = Command::new(bin());
    c.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--ssh-listen",
        "127.0.0.1:0",
        "--proxy-listen",
        "127.0.0.1:0",
    ])
    .arg("--data-dir")
    .arg(data)
    .env_remove("JOURNAL_STREAM")
    .env_remove("NOTIFY_SOCKET");
    c
}

fn next_message(sock: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).expect("a notification within 60 s");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn ready_then_stopping_and_a_clean_exit_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut child = serve(&data)
        .env("NOTIFY_SOCKET", &sock_path)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let ready = next_message(&sock);
    assert!(ready.contains("READY=1"), "{ready}");
    assert!(ready.contains("STATUS=serving on 127.0.0.1:"), "{ready}");

    let second = serve(&data).output().unwrap();
    assert_eq!(second.status.code(), Some(2));
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("in use by a running gpudock server"), "{err}");

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let stopping = next_message(&sock);
    assert!(stopping.contains("STOPPING=1"), "{stopping}");
    let status = child.wait().unwrap();
    let mut logs = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    assert!(status.success(), "{status}: {logs}");
    assert!(logs.contains("SIGTERM received: shutting down"), "{logs}");
    assert!(
        logs.contains("stopped: database checkpointed and closed"),
        "{logs}"
    );
    assert!(
        !data.join("gpudock.db-wal").exists(),
        "WAL folded in at exit"
    );
    assert!(data.join("gpudock.lock").exists());
}
