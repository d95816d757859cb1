//! `http://` on the HTTPS port: a browser (or a person typing the address
//! without `https://`) that speaks plain HTTP to the TLS listener gets a
//! redirect to the same address over `https://` instead of a broken
//! connection. The first byte decides: every TLS connection starts with a
//! handshake record (0x16); anything else is read as an HTTP/1 request head.

use std::io;
use std::time::Duration;

use axum::http::uri::{Authority, PathAndQuery};
use axum_server::accept::Accept;
use futures_util::future::BoxFuture;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A TLS record of type handshake.
const TLS_HANDSHAKE: u8 = 0x16;
/// The most of a plain request head that is read.
const MAX_HEAD: usize = 8 * 1024;
/// How long a client may take to send its first byte, or its request head.
const WAIT: Duration = Duration::from_secs(10);

/// Passes TLS connections on (to the TLS acceptor it sits under) and answers
/// plain HTTP ones with a redirect, then closes them.
#[derive(Debug, Clone, Copy, Default)]
pub struct RedirectPlainHttp;

impl<S: Send + 'static> Accept<TcpStream, S> for RedirectPlainHttp {
    type Stream = TcpStream;
    type Service = S;
    type Future = BoxFuture<'static, io::Result<(TcpStream, S)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        Box::pin(async move {
            // TCP_NODELAY, as nginx does: a response's bytes must not wait
            // for the client to acknowledge what was sent before (Nagle's
            // rule against a delayed ACK holds them up to 40 ms).
            stream.set_nodelay(true)?;
            let mut first = [0u8; 1];
            let n = tokio::time::timeout(WAIT, stream.peek(&mut first))
                .await
                .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
            if n == 0 || first[0] == TLS_HANDSHAKE {
                return Ok((stream, service));
            }
            let mut stream = stream;
            if let Err(e) = tokio::time::timeout(WAIT, redirect(&mut stream)).await {
                log::debug!("plain HTTP on the HTTPS port: {e}");
            }
            Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "plain HTTP on the HTTPS port (redirected)",
            ))
        })
    }
}

/// Reads the request head and answers it: 301 to `https://<Host><target>`,
/// or 400 when the request names no usable host.
async fn redirect(stream: &mut TcpStream) -> io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let answer = match location(&head) {
        Some(to) => format!(
            "HTTP/1.1 301 Moved Permanently\r\nLocation: {to}\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{to}\n",
            to.len() + 1
        ),
        None => "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 30\r\n\
                 Connection: close\r\n\r\nThis port speaks HTTPS only.\r\n"
            .to_string(),
    };
    stream.write_all(answer.as_bytes()).await?;
    stream.shutdown().await
}

/// The `https://` address of a plain request head: its `Host` (a valid
/// authority, so nothing can be injected into the answer) and its target
/// (an origin-form path, else `/`).
pub fn location(head: &[u8]) -> Option<String> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    req.parse(head).ok()?;
    let host = req
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("host"))
        .and_then(|h| std::str::from_utf8(h.value).ok())?;
    let auth: Authority = host.trim().parse().ok()?;
    let path = req
        .path
        .filter(|p| p.starts_with('/') && !p.starts_with("//"))
        .and_then(|p| p.parse::<PathAndQuery>().ok())
        .map_or_else(|| "/".to_string(), |p| p.to_string());
    Some(format!("https://{auth}{path}"))
}

#[cfg(test)]
mod tests {
    use super::location;

    #[test]
    fn a_plain_request_is_sent_to_the_same_address_over_https() {
        let head = b"GET /instances/7?x=1 HTTP/1.1\r\nHost: gpu.lab:8443\r\nUser-Agent: t\r\n\r\n";
        assert_eq!(
            location(head).as_deref(),
            Some("https://gpu.lab:8443/instances/7?x=1")
        );
        let v6 = b"GET / HTTP/1.1\r\nhost: [fd00::7]:8443\r\n\r\n";
        assert_eq!(location(v6).as_deref(), Some("https://[fd00::7]:8443/"));
    }

    #[test]
    fn nothing_odd_reaches_the_answer() {
        assert_eq!(location(b"GET / HTTP/1.1\r\n\r\n"), None, "no Host");
        let inject = b"GET / HTTP/1.1\r\nHost: a.b\r\nevil: x/y\r\n\r\n";
        assert_eq!(location(inject).as_deref(), Some("https://a.b/"));
        let bad_host = b"GET / HTTP/1.1\r\nHost: a b@c\r\n\r\n";
        assert_eq!(location(bad_host), None);
        let other_host = b"GET //evil.example/x HTTP/1.1\r\nHost: a.b\r\n\r\n";
        assert_eq!(location(other_host).as_deref(), Some("https://a.b/"));
        let absolute = b"GET http://evil.example/ HTTP/1.1\r\nHost: a.b\r\n\r\n";
        assert_eq!(location(absolute).as_deref(), Some("https://a.b/"));
    }
}
