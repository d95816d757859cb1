//! The SSH jumpbox (default 0.0.0.0:2026): `ssh -p 2026 alice@host` gives a
//! menu of alice's running instances, `alice+myinst@host` a shell in one,
//! `alice+myinst@host 'cmd'` runs a command, and `sftp -P 2026
//! alice+myinst@host` (or scp) moves files ([`sftp`]). russh does the protocol; a
//! thin [`handler::Adapter`] turns its callbacks into events for one
//! [`actor`] per connection. Every connection is an owned task: shutdown
//! disconnects them and waits.

mod actor;
mod forward;
pub mod handler;
pub mod hostkey;
pub mod menu;
mod sftp;

use std::sync::Arc;
use std::time::Duration;

use russh::keys::PrivateKey;
use russh::{MethodKind, MethodSet};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::app::App;
use crate::sessions;

/// Events a connection may queue before its actor catches up.
const EVENTS: usize = 32;
/// How long a client may take to close after its session ended.
const LINGER: Duration = Duration::from_secs(1);

fn config(key: PrivateKey) -> russh::server::Config {
    russh::server::Config {
        server_id: russh::SshId::Standard("SSH-2.0-gpudock".into()),
        methods: MethodSet::from(&[MethodKind::Password, MethodKind::PublicKey][..]),
        // Failed logins take as long as a wrong password (argon2 already
        // takes time); the client's first "none" probe is answered at once.
        auth_rejection_time: Duration::from_secs(1),
        auth_rejection_time_initial: Some(Duration::ZERO),
        keys: vec![key],
        // Idleness is the session's business (sessions.idle_timeout_secs);
        // a connection without a session is closed by its actor.
        inactivity_timeout: None,
        keepalive_interval: Some(Duration::from_secs(30)),
        keepalive_max: 3,
        max_auth_attempts: 6,
        nodelay: true,
        // Bigger packets and window than russh's defaults (32 KiB, 2 MiB):
        // fewer round trips for bulk output such as `cat` of a big file.
        maximum_packet_size: 65_535,
        window_size: 8 * 1024 * 1024,
        ..Default::default()
    }
}

/// Serves the jumpbox on `listener` until `cancel`.
pub async fn run(app: App, listener: TcpListener, key: PrivateKey, cancel: CancellationToken) {
    let config = Arc::new(config(key));
    let tracker = TaskTracker::new();
    loop {
        let (socket, peer) = tokio::select! {
            _ = cancel.cancelled() => break,
            r = listener.accept() => match r {
                Ok(a) => a,
                Err(e) => {
                    log::warn!("jumpbox: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (app, config, cancel) = (app.clone(), config.clone(), cancel.clone());
        tracker.spawn(async move {
            let (tx, rx) = mpsc::channel(EVENTS);
            let link = forward::Link::new(app.clone(), Some(peer), cancel.child_token());
            let adapter = handler::Adapter::new(tx, Some(peer), link.clone());
            let running = match russh::server::run_stream(config, socket, adapter).await {
                Ok(r) => r,
                Err(e) => {
                    log::debug!("jumpbox: connection from {peer} failed to start: {e}");
                    return;
                }
            };
            let handle = running.handle();
            let actor = actor::run(app, rx, Some(peer), cancel.clone(), link.clone());
            tokio::pin!(running);
            tokio::pin!(actor);
            tokio::select! {
                // The dialogue is over (session ended, quit, refused): the
                // client closes the connection once it has read the channel's
                // end; one that does not is disconnected after a second (a
                // disconnect at once could overtake the last queued data).
                () = &mut actor => {
                    if tokio::time::timeout(LINGER, &mut running).await.is_err() {
                        let why = link.farewell().unwrap_or_else(|| "session ended".into());
                        let _ = handle
                            .disconnect(russh::Disconnect::ByApplication, why, "en".into())
                            .await;
                    }
                    link.finish(sessions::EndReason::UserClose).await;
                }
                // The client left: the actor sees its events end and still
                // cleans up (the session's processes, its record).
                r = &mut running => {
                    let reason = match r {
                        Ok(()) => sessions::EndReason::UserClose,
                        Err(e) => {
                            log::debug!("jumpbox: connection from {peer} ended: {e}");
                            sessions::EndReason::ClientLost
                        }
                    };
                    link.finish(reason).await;
                    actor.await;
                }
            }
        });
    }
    tracker.close();
    tracker.wait().await;
}
