//! Real and fake metric sources for tests: Debian's prometheus-node-exporter
//! on a loopback port, and small local HTTP servers that serve a fixture,
//! hang, answer garbage or answer without end.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const NODE_EXPORTER: &str = "/usr/bin/prometheus-node-exporter";
pub const PROMETHEUS: &str = "/usr/bin/prometheus";
const INSTALL: &str = "install prometheus-node-exporter and prometheus (see .ci/run)";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something accepts TCP connections on `port`.
pub fn wait_port(port: u16, what: &str, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(s)) = child.try_wait() {
            panic!("{what} exited early ({s})");
        }
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A child process killed on drop.
pub struct Proc {
    pub child: Child,
    pub port: u16,
}

impl Proc {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Debian's node_exporter on 127.0.0.1.
pub fn node_exporter() -> Proc {
    assert!(
        std::path::Path::new(NODE_EXPORTER).exists(),
        "{NODE_EXPORTER} missing: {INSTALL}"
    );
    let port = free_port();
    let mut child = Command::new(NODE_EXPORTER)
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {NODE_EXPORTER} ({e}): {INSTALL}"));
    wait_port(port, "node_exporter", &mut child);
    Proc { child, port }
}

/// How a fake exporter answers.
#[derive(Clone)]
pub enum Answer {
    /// 200 with this body on every request.
    Text(String),
    /// Accepts, reads the request, never answers.
    Hang,
    /// 200 and bytes without end.
    Endless,
}

/// Serves `answer` on 127.0.0.1 until the test process ends; returns the URL.
pub async fn fake_exporter(answer: Answer) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                match answer {
                    Answer::Text(body) => {
                        let head = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                            body.len()
                        );
                        let _ = s.write_all(head.as_bytes()).await;
                        let _ = s.write_all(body.as_bytes()).await;
                    }
                    Answer::Hang => tokio::time::sleep(Duration::from_secs(3600)).await,
                    Answer::Endless => {
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\n")
                            .await;
                        let chunk = "x_total 1\n".repeat(6554);
                        // Bounded: 500 MB at most, then the connection closes.
                        for _ in 0..8000 {
                            if s.write_all(chunk.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    url
}

/// An SMTP sink on Debian's python3-aiosmtpd: every message it receives is
/// written, decoded (subject, body, envelope), as one JSON line to `out`.
pub fn smtp_sink(port: u16, out: &std::path::Path) -> Proc {
    const SINK: &str = r#"
import sys, json, email, threading
from email import policy
from aiosmtpd.controller import Controller
class Sink:
    async def handle_DATA(self, server, session, envelope):
        m = email.message_from_bytes(envelope.content, policy=policy.default)
        rec = {"mail_from": envelope.mail_from, "rcpt_tos": envelope.rcpt_tos,
               "from": str(m["from"]), "to": str(m["to"]), "subject": str(m["subject"]),
               "body": m.get_content()}
        with open(sys.argv[2], "a") as f:
            f.write(json.dumps(rec) + "\n")
        return "250 OK"
c = Controller(Sink(), hostname="127.0.0.1", port=int(sys.argv[1]))
c.start()
threading.Event().wait()
"#;
    // Debian's python3 (where python3-aiosmtpd is), not one earlier on PATH.
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", SINK, &port.to_string(), out.to_str().unwrap()])
        .stdout(Stdio::null())
        .spawn()
        .expect("python3-aiosmtpd (apt-get install python3-aiosmtpd)");
    wait_port(port, "aiosmtpd", &mut child);
    Proc { child, port }
}

pub fn mails(out: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
