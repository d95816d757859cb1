//! SSH client infrastructure (russh): connect to a host with its host key
//! checked against a pinned one (or accepted on first use and reported),
//! sign in with a password (keyboard-interactive as a fallback), and run
//! commands with data on stdin. Knows nothing of nodes or accounts; errors
//! say what went wrong in words an admin can act on, never with a secret.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, Handle, KeyboardInteractiveAuthResponse};
use russh::keys::{HashAlg, PublicKey, PublicKeyOrCertificate};
use russh::{ChannelMsg, Disconnect, MethodKind};

use crate::secrets::Secret;

/// Where to connect and as whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub username: String,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}:{}", self.username, self.host, self.port)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SshError {
    /// The TCP connection failed (refused, no route, name not resolved).
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("{what} took longer than {secs} s")]
    Timeout { what: &'static str, secs: u64 },
    /// The host presented another key than the pinned one.
    #[error("the host key of {addr} changed: pinned {pinned}, presented {presented}")]
    HostKeyChanged {
        addr: String,
        pinned: String,
        presented: String,
    },
    /// The server refused the username/password.
    #[error("the server refused the password of {user}")]
    AuthRejected { user: String },
    /// The connection broke or the server spoke nonsense.
    #[error("SSH protocol: {0}")]
    Protocol(String),
}

/// The output of one remote command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    /// `None` when the command ended without an exit status (a signal).
    pub status: Option<u32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }
    /// stdout as text, trimmed.
    pub fn out(&self) -> String {
        String::from_utf8_lossy(&self.stdout).trim().to_string()
    }
    /// stderr as text, trimmed and bounded (for messages).
    pub fn err(&self) -> String {
        let text = String::from_utf8_lossy(&self.stderr);
        let text = text.trim();
        match text.char_indices().nth(500) {
            Some((i, _)) => format!("{}…", &text[..i]),
            None => text.to_string(),
        }
    }
}

/// `SHA256:<base64>` as `ssh-keygen -l` prints it.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// A string as one single-quoted POSIX shell word.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Records the key the server presents and accepts it only when it is the
/// pinned one (or when nothing is pinned yet).
struct KeyCheck {
    pinned: Option<PublicKey>,
    seen: Arc<Mutex<Option<PublicKey>>>,
}

impl client::Handler for KeyCheck {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let presented = match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key.clone(),
            // A certificate is judged by the key it certifies.
            PublicKeyOrCertificate::Certificate(c) => PublicKey::from(c.public_key().clone()),
        };
        let ok = self
            .pinned
            .as_ref()
            .is_none_or(|p| p.key_data() == presented.key_data());
        if let Ok(mut s) = self.seen.lock() {
            *s = Some(presented);
        }
        Ok(ok)
    }
}

/// An authenticated SSH connection.
pub struct Session {
    handle: Handle<KeyCheck>,
    /// The key the host presented (the pinned one, or the one to pin).
    pub host_key: PublicKey,
    timeout: Duration,
}

fn protocol(e: russh::Error) -> SshError {
    SshError::Protocol(e.to_string())
}

/// Connects to `target`, checks the host key against `pinned` (any key when
/// `None`: the caller pins [`Session::host_key`] once it trusts the result)
/// and signs in with `password`. Every step is bounded by `timeout`.
pub async fn connect(
    target: &Target,
    password: &Secret<String>,
    pinned: Option<&PublicKey>,
    timeout: Duration,
) -> Result<Session, SshError> {
    let addr = format!("{}:{}", target.host, target.port);
    let secs = timeout.as_secs().max(1);
    let socket = tokio::time::timeout(
        timeout,
        tokio::net::TcpStream::connect((target.host.as_str(), target.port)),
    )
    .await
    .map_err(|_| SshError::Timeout {
        what: "connecting",
        secs,
    })?
    .map_err(|e| SshError::Connect {
        addr: addr.clone(),
        reason: e.to_string(),
    })?;
    let _ = socket.set_nodelay(true);
    let seen = Arc::new(Mutex::new(None));
    let check = KeyCheck {
        pinned: pinned.cloned(),
        seen: seen.clone(),
    };
    let config = Arc::new(client::Config {
        inactivity_timeout: Some(timeout * 4),
        ..Default::default()
    });
    let started = tokio::time::timeout(timeout, client::connect_stream(config, socket, check))
        .await
        .map_err(|_| SshError::Timeout {
            what: "the SSH handshake",
            secs,
        })?;
    let presented = seen.lock().ok().and_then(|s| s.clone());
    let mut handle = match (started, presented) {
        (Ok(h), Some(_)) => h,
        (Err(russh::Error::UnknownKey), Some(p)) => {
            return Err(SshError::HostKeyChanged {
                addr,
                pinned: pinned.map(fingerprint).unwrap_or_default(),
                presented: fingerprint(&p),
            });
        }
        (Ok(_), None) => return Err(SshError::Protocol("no host key presented".into())),
        (Err(e), _) => return Err(handshake_error(e, &addr)),
    };
    let host_key = seen
        .lock()
        .ok()
        .and_then(|s| s.clone())
        .ok_or_else(|| SshError::Protocol("no host key presented".into()))?;
    let ok = tokio::time::timeout(timeout, sign_in(&mut handle, target, password))
        .await
        .map_err(|_| SshError::Timeout {
            what: "signing in",
            secs,
        })??;
    if !ok {
        let _ = handle.disconnect(Disconnect::ByApplication, "", "en").await;
        return Err(SshError::AuthRejected {
            user: target.username.clone(),
        });
    }
    Ok(Session {
        handle,
        host_key,
        timeout,
    })
}

/// I/O errors during the handshake are the network's; the rest protocol.
fn handshake_error(e: russh::Error, addr: &str) -> SshError {
    match e {
        russh::Error::IO(io) => SshError::Connect {
            addr: addr.to_string(),
            reason: io.to_string(),
        },
        russh::Error::Disconnect | russh::Error::HUP => SshError::Connect {
            addr: addr.to_string(),
            reason: "the server closed the connection during the handshake".into(),
        },
        other => protocol(other),
    }
}

/// Password, then keyboard-interactive (servers that ask for the password
/// through PAM prompts) when the server offers it.
async fn sign_in(
    handle: &mut Handle<KeyCheck>,
    target: &Target,
    password: &Secret<String>,
) -> Result<bool, SshError> {
    let r = handle
        .authenticate_password(target.username.clone(), password.expose().clone())
        .await
        .map_err(protocol)?;
    let remaining = match r {
        client::AuthResult::Success => return Ok(true),
        client::AuthResult::Failure {
            remaining_methods, ..
        } => remaining_methods,
    };
    if !remaining.contains(&MethodKind::KeyboardInteractive) {
        return Ok(false);
    }
    let mut reply = handle
        .authenticate_keyboard_interactive_start(target.username.clone(), None)
        .await
        .map_err(protocol)?;
    // A PAM conversation asks a few questions at most; one with more is not
    // asking for a password.
    for _ in 0..4 {
        match reply {
            KeyboardInteractiveAuthResponse::Success => return Ok(true),
            KeyboardInteractiveAuthResponse::Failure { .. } => return Ok(false),
            KeyboardInteractiveAuthResponse::InfoRequest { prompts, .. } => {
                let answers = prompts.iter().map(|_| password.expose().clone()).collect();
                reply = handle
                    .authenticate_keyboard_interactive_respond(answers)
                    .await
                    .map_err(protocol)?;
            }
        }
    }
    Ok(false)
}

impl Session {
    /// Runs `command` (through the remote user's shell), writes `stdin` to it
    /// then closes its input, and collects its output and exit status.
    /// Secrets go on stdin, never into `command`.
    pub async fn exec(&self, command: &str, stdin: Option<&[u8]>) -> Result<Output, SshError> {
        let secs = self.timeout.as_secs().max(1);
        tokio::time::timeout(self.timeout, self.exec_inner(command, stdin))
            .await
            .map_err(|_| SshError::Timeout {
                what: "a remote command",
                secs,
            })?
    }

    async fn exec_inner(&self, command: &str, stdin: Option<&[u8]>) -> Result<Output, SshError> {
        let mut channel = self.handle.channel_open_session().await.map_err(protocol)?;
        channel.exec(true, command).await.map_err(protocol)?;
        if let Some(data) = stdin {
            channel.data(data).await.map_err(protocol)?;
        }
        channel.eof().await.map_err(protocol)?;
        let mut out = Output::default();
        while let Some(msg) = channel.wait().await {
            match msg {
                ChannelMsg::Data { data } => out.stdout.extend_from_slice(&data),
                ChannelMsg::ExtendedData { data, .. } => out.stderr.extend_from_slice(&data),
                ChannelMsg::ExitStatus { exit_status } => out.status = Some(exit_status),
                ChannelMsg::Close => break,
                _ => {}
            }
        }
        Ok(out)
    }

    /// Says goodbye (best effort).
    pub async fn close(self) {
        let _ = self
            .handle
            .disconnect(Disconnect::ByApplication, "", "en")
            .await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn quoting_makes_one_inert_word() {
        assert_eq!(sh_quote("alice"), "'alice'");
        assert_eq!(sh_quote("a'b"), r"'a'\''b'");
        assert_eq!(sh_quote("$(reboot); `x` \"y\""), "'$(reboot); `x` \"y\"'");
    }

    #[tokio::test]
    async fn a_closed_port_is_a_connect_error_and_a_silent_one_times_out() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let t = Target {
            host: "127.0.0.1".into(),
            port,
            username: "root".into(),
        };
        let pw = Secret::new("x".to_string());
        let e = connect(&t, &pw, None, Duration::from_secs(2))
            .await
            .err()
            .unwrap();
        assert!(matches!(e, SshError::Connect { .. }), "{e:?}");
        // A listener that never speaks SSH: the handshake times out.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let t = Target {
            port: silent.local_addr().unwrap().port(),
            ..t
        };
        let e = connect(&t, &pw, None, Duration::from_secs(1))
            .await
            .err()
            .unwrap();
        assert!(matches!(e, SshError::Timeout { .. }), "{e:?}");
    }
}
