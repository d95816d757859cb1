//! gpudock-relay: the small static program gpudock copies into a container
//! to reach one of its ports through the Docker API (see
//! `src/docker/port.rs`). `gpudock-relay PORT` connects to 127.0.0.1:PORT
//! (then [::1]:PORT) inside the container's own network namespace, says so
//! with one byte 0x00 on stdout, and then copies stdin to the connection and
//! the connection to stdout. On failure it writes one line to stderr and
//! exits with status 2 (nothing on stdout).
//!
//! `gpudock-relay PORT serve` is a warm relay that serves one connection
//! after another: started ahead of need, it waits for one byte on stdin (any
//! value), connects (0x00 on stdout, or as above on failure), and then
//! carries the bytes in frames, each a 4-byte big-endian length and that
//! many bytes, both ways: an empty frame ends a direction (from gpudock:
//! the connection's write side is closed; to gpudock: the app closed).
//! Once both directions ended it closes the connection and waits for the
//! next byte. At end of input (gpudock let it go) it exits (status 0).
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
            eprintln!("usage: gpudock-relay PORT [serve]");
            std::process::exit(64);
        }
    };
    if std::env::args().nth(2).as_deref() == Some("serve") {
        serve(port);
    }
    let sock = connected(port);
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

/// Connects to the port and says so (0x00 on stdout), or exits with status
/// 2 and why on stderr.
fn connected(port: u16) -> TcpStream {
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
    sock
}

/// Fills `buf` from stdin; at end of input gpudock let the relay go: exit.
fn stdin_exact(buf: &mut [u8]) {
    match std::io::stdin().read_exact(buf) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => std::process::exit(0),
        Err(_) => std::process::exit(1),
    }
}

/// The serve mode (see the top): connections one after another, framed.
fn serve(port: u16) -> ! {
    let mut up = vec![0u8; BUF];
    let mut down = vec![0u8; 4 + BUF];
    loop {
        let mut go = [0u8; 1];
        stdin_exact(&mut go);
        let sock = connected(port);
        let (reader, writer) = match (sock.try_clone(), sock.try_clone()) {
            (Ok(r), Ok(w)) => (r, w),
            _ => std::process::exit(1),
        };
        // gpudock's frames to the connection, until its empty frame; what
        // comes after the app closed is read and dropped.
        let input = std::thread::spawn(move || {
            let mut writer = writer;
            let mut open = true;
            loop {
                let mut len = [0u8; 4];
                stdin_exact(&mut len);
                let mut left = u32::from_be_bytes(len) as usize;
                if left == 0 {
                    break;
                }
                while left > 0 {
                    let n = left.min(up.len());
                    stdin_exact(&mut up[..n]);
                    open = open && writer.write_all(&up[..n]).is_ok();
                    left -= n;
                }
            }
            let _ = writer.shutdown(Shutdown::Write);
            up
        });
        // The connection to gpudock in frames, then the empty frame.
        let mut reader = reader;
        let mut out = std::io::stdout();
        loop {
            let n = match reader.read(&mut down[4..]) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => 0,
            };
            down[..4].copy_from_slice(&(n as u32).to_be_bytes());
            if out.write_all(&down[..4 + n]).and_then(|()| out.flush()).is_err() {
                std::process::exit(1);
            }
            if n == 0 {
                break;
            }
        }
        up = match input.join() {
            Ok(up) => up,
            Err(_) => std::process::exit(1),
        };
        let _ = sock.shutdown(Shutdown::Both);
    }
}
