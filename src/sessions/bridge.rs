//! The one loop behind every session: bytes from the client go to a
//! `docker exec` in the container and its output goes back, counted and
//! recorded, until the client leaves, the process exits, or the session
//! must end (admin, idle timeout, maximum duration, shutdown). Afterwards
//! nothing of the session keeps running in the container.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::io::AsyncWriteExt;

use super::{EndReason, Session};
use crate::app::App;
use crate::docker::exec::{self, ExecSpec, Output};

/// What the client side of a session does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    Input(Bytes),
    Resize(u16, u16),
    /// No more input (the process's stdin closes).
    Eof,
    /// The client went away.
    Closed,
}

/// How the session ended, for the client.
#[derive(Debug, Clone)]
pub struct Finish {
    pub reason: EndReason,
    /// The process's exit code when it exited by itself.
    pub exit_code: Option<i64>,
    /// A line for the user when gpudock ended the session.
    pub message: Option<String>,
}

/// The client side's transport (a WebSocket, an SSH channel).
pub trait ClientSink: Send {
    /// Sends output; `Err` when the client is gone.
    fn output(&mut self, out: Output) -> impl Future<Output = Result<(), ()>> + Send;
    /// Tells the client how it ended and closes its side.
    fn finish(&mut self, end: &Finish) -> impl Future<Output = ()> + Send;
}

/// How the loop left off.
enum Stop {
    Ended(EndReason),
    Exited,
    Failed(String),
}

/// Runs the session to its end and records the end. `spec.tag` must be
/// unique to this session (see [`exec::end_tagged`]).
pub async fn run<E, S>(
    app: &App,
    mut session: Session,
    container: String,
    spec: ExecSpec,
    events: E,
    mut sink: S,
) where
    E: Stream<Item = ClientEvent> + Unpin + Send,
    S: ClientSink,
{
    let d = match crate::nodes::client(app, session.node_id()).await {
        Ok(d) => d,
        Err(e) => {
            let why = format!("cannot reach the node: {}", session.tell(&e));
            fail(session, &mut sink, why).await;
            return;
        }
    };
    let mut ex = match exec::start(&d, &container, &spec).await {
        Ok(x) => x,
        Err(e) => {
            let e = crate::error::docker_error(e);
            let why = format!(
                "cannot start a process in the container: {}",
                session.tell(&e)
            );
            fail(session, &mut sink, why).await;
            return;
        }
    };
    let stop = pump(app, &mut session, &d, &mut ex, events, &mut sink).await;
    let (reason, detail) = match &stop {
        Stop::Ended(r) => (*r, String::new()),
        Stop::Exited => (EndReason::UserClose, String::new()),
        Stop::Failed(why) => (EndReason::Error, why.clone()),
    };
    let exit_code = match stop {
        Stop::Exited => exit_code(&d, &ex.id).await,
        Stop::Ended(_) | Stop::Failed(_) => None,
    };
    // The client hears first (a terminated session is cut off at once),
    // then what the session started in the container ends: dockerd keeps
    // an exec's processes when its connection closes.
    let message = session
        .message(reason)
        .or_else(|| (!detail.is_empty()).then(|| detail.clone()));
    finish(
        &mut sink,
        &Finish {
            reason,
            exit_code,
            message,
        },
    )
    .await;
    drop(sink);
    if let Err(e) = exec::end_tagged(&d, &container, &spec.tag).await {
        log::warn!("session {}: ending its processes failed: {e}", session.id);
    }
    session.close(reason, &detail).await;
}

async fn fail<S: ClientSink>(session: Session, sink: &mut S, why: String) {
    finish(
        sink,
        &Finish {
            reason: EndReason::Error,
            exit_code: None,
            message: Some(why.clone()),
        },
    )
    .await;
    session.close(EndReason::Error, &why).await;
}

/// How long telling a client the end may take: one that does not read
/// (its window full) is left behind rather than holding the session's
/// clean-up, or shutdown.
pub const FINISH_WITHIN: Duration = Duration::from_secs(2);

/// Tells the client how the session ended, within [`FINISH_WITHIN`].
pub async fn finish<S: ClientSink>(sink: &mut S, end: &Finish) {
    if tokio::time::timeout(FINISH_WITHIN, sink.finish(end))
        .await
        .is_err()
    {
        log::debug!("a client did not take the end of its session in time");
    }
}

/// The exit code once the process is gone (dockerd may need a moment after
/// the output stream ends).
async fn exit_code(d: &bollard::Docker, id: &str) -> Option<i64> {
    for _ in 0..20 {
        match exec::exit_code(d, id).await {
            Ok(Some(c)) => return Some(c),
            Ok(None) => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(_) => return None,
        }
    }
    None
}

/// The loop's stop for the watchdog's reason.
fn stopped(r: EndReason) -> Stop {
    match r {
        // The watchdog's only error is the server stopping.
        EndReason::Error => Stop::Failed("gpudock is shutting down".into()),
        other => Stop::Ended(other),
    }
}

async fn pump<E, S>(
    app: &App,
    session: &mut Session,
    d: &bollard::Docker,
    ex: &mut exec::Exec,
    mut events: E,
    sink: &mut S,
) -> Stop
where
    E: Stream<Item = ClientEvent> + Unpin + Send,
    S: ClientSink,
{
    let mut flush = tokio::time::interval(Duration::from_secs(1));
    // One watchdog for the whole session (recreating it each turn would
    // restart its clock).
    let watchdog = session.watchdog(app.cancel.clone());
    tokio::pin!(watchdog);
    loop {
        tokio::select! {
            r = &mut watchdog => return stopped(r),
            ev = events.next() => match ev {
                Some(ClientEvent::Input(b)) => {
                    session.input(&b);
                    // A process that does not read its input blocks this.
                    tokio::select! {
                        w = ex.input.write_all(&b) => if let Err(e) = w {
                            return Stop::Failed(format!("writing to the process failed: {e}"));
                        },
                        r = &mut watchdog => return stopped(r),
                    }
                }
                Some(ClientEvent::Resize(cols, rows)) => {
                    session.resize(cols, rows);
                    if let Err(e) = exec::resize(d, &ex.id, cols, rows).await {
                        log::debug!("session {}: resize failed: {e}", session.id);
                    }
                }
                Some(ClientEvent::Eof) => {
                    let _ = ex.input.shutdown().await;
                }
                Some(ClientEvent::Closed) | None => return Stop::Ended(EndReason::UserClose),
            },
            out = ex.output.next() => match out {
                Some(Ok(o)) => {
                    session.output(o.bytes());
                    session.flush(false).await;
                    // A client that stops reading blocks this send: the
                    // session's end (admin, revocation, shutdown) still wins.
                    tokio::select! {
                        sent = sink.output(o) => if sent.is_err() {
                            return Stop::Ended(EndReason::UserClose);
                        },
                        r = &mut watchdog => return stopped(r),
                    }
                }
                Some(Err(e)) => return Stop::Failed(format!("the connection to the process failed: {e}")),
                None => return Stop::Exited,
            },
            _ = flush.tick() => session.flush(true).await,
        }
    }
}
