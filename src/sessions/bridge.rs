//! The one loop behind every session: bytes from the client go to a
//! `docker exec` in the container and its output goes back, counted and
//! recorded, until the client leaves, the process exits, the node goes
//! away, or the session must end (admin, idle timeout, maximum duration,
//! shutdown). The end reason says which. The client hears first, the
//! record is closed next (never waiting on the node), and then nothing of
//! the session keeps running in the container (see `super::sweep`).

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::io::AsyncWriteExt;

use super::{EndReason, Session};
use crate::app::App;
use crate::docker::exec::{self, ExecSpec, Output};

/// What the client side of a session does. A stream that ends without
/// `Closed` is a client lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    Input(Bytes),
    Resize(u16, u16),
    /// No more input: the process's stdin closes, or on a TTY the terminal
    /// gets its end-of-file character, as sshd does.
    Eof,
    /// The client closed the session.
    Closed,
    /// The client went away without closing it (dropped, timed out).
    Lost,
}

/// The terminal's end-of-file character (^D), which is how a TTY session
/// passes the client's EOF on (sshd does the same): closing the input of a
/// TTY exec would hang up the shell before it ran what was typed.
const TTY_EOF: u8 = 0x04;

/// A ^D can reach the terminal while the shell is not reading it (before
/// the shell starts, or while a command it runs has the terminal): the
/// terminal keeps it as an end-of-file mark that the shell, once it reads
/// again, never sees. So after the client's EOF, each time the process's
/// output has gone quiet for this long (the shell showing its prompt
/// again), the ^D is written again, until the process ends.
const TTY_EOF_AGAIN_AFTER: Duration = Duration::from_millis(250);

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
    /// The process exited (its code, when dockerd said).
    Exited(Option<i64>),
    /// The node stopped answering; why.
    NodeLost(String),
    Failed(String),
}

/// Runs the session to its end and records the end. The exec gets the
/// session's tag (see [`exec::end_tagged`]).
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
    let node = unless_stopping(app, async {
        crate::nodes::client(app, session.node_id())
            .await
            .map_err(|e| format!("cannot reach the node: {}", session.tell(&e)))
    });
    let d = match node.await {
        Ok(d) => d,
        Err(why) => {
            // Nothing was started: nothing to sweep.
            fail(session, &mut sink, why, async { true }).await;
            return;
        }
    };
    // The exec's processes carry the session's tag, whatever the caller set.
    let spec = ExecSpec {
        tag: session.tag().to_string(),
        ..spec
    };
    let started = unless_stopping(app, async {
        exec::start(&d, &container, &spec).await.map_err(|e| {
            let e = crate::error::docker_error(e);
            format!(
                "cannot start a process in the container: {}",
                session.tell(&e)
            )
        })
    });
    let mut ex = match started.await {
        Ok(x) => x,
        Err(why) => {
            let sweep = super::sweep(&d, &container, &spec.tag, super::sweep_budget(app));
            fail(session, &mut sink, why, sweep).await;
            return;
        }
    };
    let stop = pump(app, &mut session, &d, &mut ex, spec.tty, events, &mut sink).await;
    let (reason, detail, exit_code) = match stop {
        Stop::Ended(r) => (r, String::new(), None),
        Stop::Exited(code) => (EndReason::UserClose, String::new(), code),
        Stop::NodeLost(why) => (EndReason::NodeLost, why, None),
        Stop::Failed(why) => (EndReason::Error, why, None),
    };
    // The client hears first (a terminated session is cut off at once),
    // then the record ends, then what the session started in the container
    // ends: dockerd keeps an exec's processes when its connection closes.
    let message = session
        .message(reason)
        .or_else(|| (reason == EndReason::Error).then(|| detail.clone()));
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
    let sweep = super::sweep(&d, &container, &spec.tag, super::sweep_budget(app));
    session.close(reason, &detail, sweep).await;
}

/// What the server says when it stops a session (also its record's detail).
const SHUTTING_DOWN: &str = "gpudock is shutting down";

/// `work`, unless the server stops first (then its error is that).
async fn unless_stopping<T>(
    app: &App,
    work: impl Future<Output = Result<T, String>>,
) -> Result<T, String> {
    tokio::select! {
        _ = app.cancel.cancelled() => Err(SHUTTING_DOWN.to_string()),
        r = work => r,
    }
}

async fn fail<S: ClientSink>(
    session: Session,
    sink: &mut S,
    why: String,
    sweep: impl Future<Output = bool>,
) {
    finish(
        sink,
        &Finish {
            reason: EndReason::Error,
            exit_code: None,
            message: Some(why.clone()),
        },
    )
    .await;
    session.close(EndReason::Error, &why, sweep).await;
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

/// [`after_output`], unless the server stops first.
async fn ended(
    app: &App,
    session: &Session,
    d: &bollard::Docker,
    id: &str,
    broken: Option<crate::docker::DockerError>,
) -> Stop {
    tokio::select! {
        _ = app.cancel.cancelled() => Stop::Failed(SHUTTING_DOWN.into()),
        stop = after_output(session, d, id, broken) => stop,
    }
}

/// What became of the process once its output ended (`broken`: with an
/// error): it exited (dockerd may need a moment to say with which code),
/// or its node is gone, or something else broke the connection. Texts are
/// as its user may read them (`Session::tell`).
async fn after_output(
    session: &Session,
    d: &bollard::Docker,
    id: &str,
    broken: Option<crate::docker::DockerError>,
) -> Stop {
    let tell = |e: crate::docker::DockerError| session.tell(&crate::error::docker_error(e));
    let broken = broken.map(|e| format!("the connection to the process failed: {}", tell(e)));
    for _ in 0..20 {
        match exec::exit_code(d, id).await {
            Ok(Some(c)) => return Stop::Exited(Some(c)),
            Ok(None) => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) if e.is_unreachable() => return Stop::NodeLost(tell(e)),
            Err(e) => {
                return Stop::Failed(broken.unwrap_or_else(|| {
                    format!("the process ended and dockerd cannot say how: {}", tell(e))
                }));
            }
        }
    }
    // dockerd says it still runs: the connection to it broke.
    Stop::Failed(
        broken.unwrap_or_else(|| "the connection to the process closed while it ran".into()),
    )
}

/// The loop's stop for the watchdog's reason.
fn stopped(r: EndReason) -> Stop {
    match r {
        // The watchdog's only error is the server stopping.
        EndReason::Error => Stop::Failed(SHUTTING_DOWN.into()),
        other => Stop::Ended(other),
    }
}

async fn pump<E, S>(
    app: &App,
    session: &mut Session,
    d: &bollard::Docker,
    ex: &mut exec::Exec,
    tty: bool,
    mut events: E,
    sink: &mut S,
) -> Stop
where
    E: Stream<Item = ClientEvent> + Unpin + Send,
    S: ClientSink,
{
    let mut output = Coalesced::new(&mut ex.output);
    // One watchdog for the whole session (recreating it each turn would
    // restart its clock).
    let watchdog = session.watchdog(app.cancel.clone());
    tokio::pin!(watchdog);
    // Whether the client's input ended on a TTY, and when to write its ^D
    // again (see TTY_EOF_AGAIN_AFTER).
    let mut tty_eof = false;
    let mut eof_again: Option<tokio::time::Instant> = None;
    loop {
        let again = async {
            match eof_again {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = &mut watchdog => return stopped(r),
            () = again => {
                eof_again = None;
                tokio::select! {
                    w = ex.input.write_all(&[TTY_EOF]) => if let Err(e) = w {
                        return Stop::Failed(format!("writing to the process failed: {e}"));
                    },
                    r = &mut watchdog => return stopped(r),
                }
            }
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
                // The output keeps flowing until the process ends.
                Some(ClientEvent::Eof) if tty => {
                    tty_eof = true;
                    if let Err(e) = ex.input.write_all(&[TTY_EOF]).await {
                        return Stop::Failed(format!("writing to the process failed: {e}"));
                    }
                }
                Some(ClientEvent::Eof) => {
                    let _ = ex.input.shutdown().await;
                }
                Some(ClientEvent::Closed) => return Stop::Ended(EndReason::UserClose),
                Some(ClientEvent::Lost) | None => return Stop::Ended(EndReason::ClientLost),
            },
            out = output.next() => match out {
                Some(Ok(o)) => {
                    session.output(o.bytes());
                    if tty_eof {
                        eof_again = Some(tokio::time::Instant::now() + TTY_EOF_AGAIN_AFTER);
                    }
                    // A client that stops reading blocks this send: the
                    // session's end (admin, revocation, shutdown) still wins.
                    tokio::select! {
                        sent = sink.output(o) => if sent.is_err() {
                            return Stop::Ended(EndReason::ClientLost);
                        },
                        r = &mut watchdog => return stopped(r),
                    }
                }
                Some(Err(e)) => return ended(app, session, d, &ex.id, Some(e)).await,
                None => return ended(app, session, d, &ex.id, None).await,
            },
        }
    }
}

/// Output is passed on in pieces of up to this much: chunks that are ready
/// at the same time go to the client (and the recording) as one, so a bulk
/// transfer costs one hand-over per piece rather than per chunk of dockerd's.
const COALESCE: usize = 256 * 1024;

/// An exec's output with the chunks that are ready together joined (of the
/// same stream, up to [`COALESCE`] bytes). Cancel-safe: it waits only for
/// the first chunk, and takes the others without waiting.
struct Coalesced<'a> {
    inner: &'a mut exec::OutputStream,
    /// An item taken while joining that did not join (another stream, an
    /// error, the end): the next item.
    held: Option<Option<Result<Output, crate::docker::DockerError>>>,
    /// Where pieces are joined: each joined piece is split off it, and
    /// its memory is taken again once every earlier piece was dropped
    /// (sent and recorded), rather than a new buffer per piece.
    pool: bytes::BytesMut,
}

impl<'a> Coalesced<'a> {
    fn new(inner: &'a mut exec::OutputStream) -> Self {
        Self {
            inner,
            held: None,
            pool: bytes::BytesMut::new(),
        }
    }

    async fn next(&mut self) -> Option<Result<Output, crate::docker::DockerError>> {
        use futures_util::FutureExt;
        let first = match self.held.take() {
            Some(item) => item,
            None => self.inner.next().await,
        };
        let Some(Ok(first)) = first else {
            return first;
        };
        let mut joined = false;
        loop {
            let have = if joined {
                self.pool.len()
            } else {
                first.bytes().len()
            };
            if have >= COALESCE {
                break;
            }
            match self.inner.next().now_or_never() {
                None => break,
                Some(Some(Ok(o))) if same_stream(&first, &o) => {
                    if !joined {
                        joined = true;
                        self.pool
                            .reserve(COALESCE.max(first.bytes().len() + o.bytes().len()));
                        self.pool.extend_from_slice(first.bytes());
                    }
                    self.pool.extend_from_slice(o.bytes());
                }
                Some(other) => {
                    self.held = Some(other);
                    break;
                }
            }
        }
        if !joined {
            return Some(Ok(first));
        }
        let j = self.pool.split().freeze();
        Some(Ok(match first {
            Output::Stdout(_) => Output::Stdout(j),
            Output::Stderr(_) => Output::Stderr(j),
        }))
    }
}

fn same_stream(a: &Output, b: &Output) -> bool {
    matches!(
        (a, b),
        (Output::Stdout(_), Output::Stdout(_)) | (Output::Stderr(_), Output::Stderr(_))
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn out(s: &'static str) -> Result<Output, crate::docker::DockerError> {
        Ok(Output::Stdout(Bytes::from_static(s.as_bytes())))
    }

    fn err(s: &'static str) -> Result<Output, crate::docker::DockerError> {
        Ok(Output::Stderr(Bytes::from_static(s.as_bytes())))
    }

    /// Ready chunks of one stream are joined, in order; another stream,
    /// an error and the end are passed on as they come.
    #[tokio::test]
    async fn ready_chunks_are_joined_per_stream() {
        let items = vec![
            out("a"),
            out("b"),
            out("c"),
            err("E"),
            err("F"),
            out("d"),
            Err(crate::docker::DockerError::Api("broken".into())),
            out("late"),
        ];
        let mut s: exec::OutputStream = Box::pin(futures_util::stream::iter(items));
        let mut c = Coalesced::new(&mut s);
        assert_eq!(
            c.next().await.unwrap().unwrap(),
            Output::Stdout("abc".into())
        );
        assert_eq!(
            c.next().await.unwrap().unwrap(),
            Output::Stderr("EF".into())
        );
        assert_eq!(c.next().await.unwrap().unwrap(), Output::Stdout("d".into()));
        assert!(c.next().await.unwrap().is_err());
        assert_eq!(
            c.next().await.unwrap().unwrap(),
            Output::Stdout("late".into())
        );
        assert!(c.next().await.is_none());
    }

    /// A joined piece's memory is taken again for the next one once the
    /// piece was dropped, and never while it is still held.
    #[tokio::test]
    async fn joined_pieces_reuse_memory_only_once_dropped() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut s: exec::OutputStream =
            Box::pin(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)));
        let mut c = Coalesced::new(&mut s);
        let mut joined = async |a: &'static str, b: &'static str| {
            tx.send(out(a)).unwrap();
            tx.send(out(b)).unwrap();
            c.next().await.unwrap().unwrap().bytes().clone()
        };
        let first = joined("ab", "cd").await;
        let at = first.as_ptr();
        drop(first);
        let second = joined("ef", "gh").await;
        assert_eq!(second.as_ptr(), at, "the dropped piece's memory is reused");
        let third = joined("ij", "kl").await;
        assert_eq!((&second[..], &third[..]), (&b"efgh"[..], &b"ijkl"[..]));
    }

    /// Chunks that are not ready yet are not waited for; joins stop at
    /// `COALESCE` bytes.
    #[tokio::test]
    async fn only_what_is_ready_is_joined_up_to_a_limit() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut s: exec::OutputStream =
            Box::pin(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)));
        let big = Bytes::from(vec![b'x'; COALESCE / 2 + 1]);
        for _ in 0..3 {
            tx.send(Ok(Output::Stdout(big.clone()))).unwrap();
        }
        let mut c = Coalesced::new(&mut s);
        assert_eq!(
            c.next().await.unwrap().unwrap().bytes().len(),
            2 * big.len()
        );
        assert_eq!(c.next().await.unwrap().unwrap().bytes().len(), big.len());
        let pending = tokio::time::timeout(Duration::from_millis(20), c.next()).await;
        assert!(pending.is_err(), "nothing is ready: it waits");
        tx.send(out("z")).unwrap();
        drop(tx);
        assert_eq!(c.next().await.unwrap().unwrap(), Output::Stdout("z".into()));
        assert!(c.next().await.is_none());
    }
}
