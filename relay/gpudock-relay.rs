//! gpudock-relay: the small static program gpudock copies into a container
//! to reach one of its ports through the Docker API (see
//! `src/docker/port.rs`). `gpudock-relay PORT` connects to 127.0.0.1:PORT
//! (then [::1]:PORT) inside the container's own network namespace, says so
//! with one byte 0x00 on stdout, and then copies stdin to the connection and
//! the connection to stdout. On failure it writes one line to stderr and
//! exits with status 2 (nothing on stdout).
//!
//! `gpudock-relay PORT wait` is a warm relay: started ahead of need, it
//! waits for one byte on stdin (any value) before it connects, then goes on
//! as above; at end of input before that byte it exits quietly (status 0).
//!
//! Built by `build.rs` with rustc alone (std only, statically linked, no
//! allocation beyond two buffers), so it runs in any x86_64 Linux image,
//! with or without a libc of its own.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpStream};

/// Big reads: every write to stdout becomes one frame through dockerd.
const BUF: usize = 256 * 1024;

fn pump(mut from: impl Read, mut to: impl Write) {
    let mut buf = vec![0u8; BUF];
    loop {
        match from.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if to.write_all(&buf[..n]).and_then(|()| to.flush()).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

fn connect(port: u16) -> std::io::Result<TcpStream> {
    let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    match TcpStream::connect(v4) {
        Ok(s) => Ok(s),
        // An app that listens on IPv6 loopback only.
        Err(e) => TcpStream::connect(SocketAddr::from((Ipv6Addr::LOCALHOST, port))).map_err(|_| e),
    }
}

fn main() {
    let port = match std::env::args().nth(1).map(|p| p.parse::<u16>()) {
        Some(Ok(p)) if p > 0 => p,
        _ => {
            eprintln!("usage: gpudock-relay PORT [wait]");
            std::process::exit(64);
        }
    };
    if std::env::args().nth(2).as_deref() == Some("wait") {
        // stdin is buffered: what follows the byte stays for the pump below.
        let mut go = [0u8; 1];
        loop {
            match std::io::stdin().read(&mut go) {
                Ok(0) => std::process::exit(0),
                Ok(_) => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => std::process::exit(1),
            }
        }
    }
    let sock = match connect(port) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("connect to port {port}: {e}");
            std::process::exit(2);
        }
    };
    let _ = sock.set_nodelay(true);
    let mut out = std::io::stdout();
    if out.write_all(&[0]).and_then(|()| out.flush()).is_err() {
        std::process::exit(1);
    }
    let (reader, writer) = match (sock.try_clone(), sock.try_clone()) {
        (Ok(r), Ok(w)) => (r, w),
        _ => std::process::exit(1),
    };
    // Input to the connection; at the end of input, the connection's write
    // side is closed (the app sees end of file) and its answer still comes.
    std::thread::spawn(move || {
        pump(std::io::stdin(), &writer);
        let _ = writer.shutdown(Shutdown::Write);
    });
    // The connection to output; when the app closes, the relay is done.
    pump(reader, std::io::stdout());
    let _ = sock.shutdown(Shutdown::Both);
}
