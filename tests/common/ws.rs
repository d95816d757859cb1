//! A WebSocket client for the web terminal, as a browser talks to it: TLS
//! trusting the server's certificate, a session cookie and this host's
//! Origin; terminal queries answered as a terminal would.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::Server;

type Stream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The session cookie (`gpudock_session=…`) of a fresh sign-in.
pub async fn session_cookie(srv: &Server, username: &str, password: &str) -> String {
    let r = srv
        .client()
        .post(srv.url("/api/v1/auth/login"))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap();
    assert!(
        r.status().is_success(),
        "sign-in of {username}: {}",
        r.status()
    );
    let cookie = r.headers()["set-cookie"].to_str().unwrap();
    cookie.split(';').next().unwrap().to_string()
}

/// TLS for `wss://` that trusts only the server's certificate.
pub fn tls_to(srv: &Server) -> tokio_tungstenite::Connector {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&std::fs::read(&srv.cert).unwrap()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_tungstenite::Connector::Rustls(Arc::new(config))
}

/// An open web terminal.
pub struct Term {
    ws: Stream,
    /// Every terminal byte received so far.
    pub out: Vec<u8>,
    /// The server's `{"type":"end",…}` message, once received.
    pub end: Option<Value>,
    answered: usize,
}

impl Term {
    /// Opens the terminal of instance `id` with `cookie`.
    pub async fn open(srv: &Server, cookie: &str, id: i64, cols: u16, rows: u16) -> Term {
        let url = srv
            .url(&format!(
                "/instances/{id}/terminal/ws?cols={cols}&rows={rows}"
            ))
            .replacen("https://", "wss://", 1);
        let mut req = url.into_client_request().unwrap();
        req.headers_mut().insert("cookie", cookie.parse().unwrap());
        req.headers_mut()
            .insert("origin", srv.base.parse().unwrap());
        let (ws, _) =
            tokio_tungstenite::connect_async_tls_with_config(req, None, false, Some(tls_to(srv)))
                .await
                .unwrap();
        Term {
            ws,
            out: Vec::new(),
            end: None,
            answered: 0,
        }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.out).into_owned()
    }

    pub async fn send(&mut self, text: &str) {
        self.ws
            .send(Message::Binary(text.as_bytes().to_vec().into()))
            .await
            .unwrap();
    }

    /// Reads one frame (None: the connection ended); false at the deadline.
    async fn read(&mut self, deadline: Instant) -> Option<bool> {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, self.ws.next()).await {
            Err(_) => Some(false),
            Ok(Some(Ok(Message::Binary(b)))) => {
                self.out.extend_from_slice(&b);
                Some(true)
            }
            Ok(Some(Ok(Message::Text(t)))) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                if v["type"] == "end" {
                    self.end = Some(v);
                }
                Some(true)
            }
            Ok(Some(Ok(_))) => Some(true),
            Ok(Some(Err(_)) | None) => None,
        }
    }

    /// Waits until the output holds `needle`, answering the shell's cursor
    /// queries (busybox asks at each prompt).
    pub async fn expect(&mut self, needle: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let text = self.text();
            let queries = text.matches("\x1b[6n").count();
            while self.answered < queries {
                self.send("\x1b[1;1R").await;
                self.answered += 1;
            }
            if text.contains(needle) {
                return;
            }
            match self.read(deadline).await {
                Some(true) => {}
                Some(false) => panic!("no {needle:?} within {within:?} in:\n{text}"),
                None => panic!("the terminal ended before {needle:?}:\n{text}"),
            }
        }
    }

    /// Waits for the server's end message (and the connection's end); it.
    pub async fn ended(&mut self, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        while self.end.is_none() {
            match self.read(deadline).await {
                Some(true) => {}
                Some(false) => panic!("no end within {within:?}:\n{}", self.text()),
                None => break,
            }
        }
        self.end
            .clone()
            .unwrap_or_else(|| panic!("closed without an end message:\n{}", self.text()))
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}
