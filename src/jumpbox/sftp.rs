//! The `sftp` subsystem: `sftp -P 2026 alice+inst@host` and `scp -P 2026
//! f alice+inst@host:/data/` (OpenSSH 9's scp speaks SFTP) on an instance's
//! files, `alice+dataset-NAME@host` on a dataset's. The connection is a
//! session (protocol `sftp`: limits, idle timeout, terminate, revocation,
//! shutdown); its packets go to [`crate::files::sftp::Server`] one at a
//! time, and every process it started in the container is swept when it
//! ends.

use bytes::{Buf, Bytes, BytesMut};
use tokio::sync::mpsc;

use super::actor::SshSink;
use super::handler::Event;
use crate::app::App;
use crate::audit::Source;
use crate::auth::{AuthVia, CurrentUser, FileOp, FileTarget, User};
use crate::docker::exec::Output;
use crate::error::AppError;
use crate::files::{self, Doer, Place, Via};
use crate::sessions::bridge::{self, ClientSink, Finish};
use crate::sessions::{EndReason, Opening, Protocol, Session, Target};

/// What a login names for files: `dataset-NAME` (or `dataset-ID`) for a
/// dataset, an instance's name or id otherwise.
pub const DATASET_PREFIX: &str = "dataset-";

/// The most of the client's input kept unread while an answer waits for
/// the client's window (a few packets' worth).
const READ_AHEAD: usize = 4 * files::sftp::MAX_PACKET as usize;

/// How often a dataset's transfer container is marked in use.
const TOUCH_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Serves SFTP for `user` on the login's `target` until the client, the
/// session's limits, a revocation or shutdown end it.
pub(super) async fn run(
    app: &App,
    user: User,
    target: Option<&str>,
    source: Source,
    mut out: SshSink,
    rx: mpsc::Receiver<Event>,
) {
    if user.must_change_password {
        return out
            .fail("your password must be changed first: sign in on the web page (请先在网页上修改密码)")
            .await;
    }
    let Some(target) = target else {
        return out
            .fail("name what to reach: sftp -P PORT user+instance@host, or user+dataset-NAME@host (请指定实例或数据集)")
            .await;
    };
    let me = CurrentUser {
        user: user.clone(),
        via: AuthVia::Ssh,
    };
    let place = match find(app, &me, target).await {
        Ok(p) => p,
        Err(why) => return out.fail(&why).await,
    };
    let node_detail = crate::auth::sees_node_details(app, &user)
        .await
        .unwrap_or(false);
    // The connection needs at least the listing's record.
    if let Err(e) = files::authorize(app, &user, &place, FileOp::List).await {
        let why = match e {
            AppError::Forbidden => {
                "permission denied: your role may not transfer files here (您的角色无权传输文件)"
                    .to_string()
            }
            AppError::Unauthenticated => crate::sessions::model::ACCESS_REVOKED_MESSAGE.to_string(),
            other => other.user_text(node_detail),
        };
        return out.fail(&why).await;
    }
    let session_target = Target {
        instance_id: match place.target {
            FileTarget::Instance => crate::ids::InstanceId(place.id),
            FileTarget::Dataset => crate::ids::InstanceId(0),
        },
        name: match place.target {
            FileTarget::Instance => place.name.clone(),
            FileTarget::Dataset => format!("dataset:{}", place.name),
        },
        node_id: place.node_id,
        node_name: place.node_name.clone(),
        container: place.container.clone(),
    };
    let opening = Opening {
        user: &user,
        target: &session_target,
        protocol: Protocol::Sftp,
        source: source.clone(),
        command: "",
        size: (80, 24),
        term: "",
        target_port: None,
    };
    let session = match crate::sessions::open(app, opening).await {
        Ok(s) => s,
        Err(e) => return out.fail(&e.message()).await,
    };
    let fs = match files::open_fs(app, &place, session.tag().to_string()).await {
        Ok(fs) => fs,
        Err(e) => {
            let why = format!("cannot reach the node: {}", session.tell(&e));
            bridge::finish(&mut out, &end(EndReason::Error, Some(why.clone()))).await;
            session.close(EndReason::Error, &why, async { true }).await;
            return;
        }
    };
    let doer = Doer {
        user,
        ip: source.ip,
        via: Via::Sftp,
        session: Some(session.id),
    };
    let server =
        files::sftp::Server::new(app.clone(), doer, place.clone(), fs.clone(), node_detail);
    let mut session = session;
    let (reason, detail) = serve(app, &mut session, server, &place, &mut out, rx).await;
    let message = session
        .message(reason)
        .or_else(|| (reason == EndReason::Error).then(|| detail.clone()));
    bridge::finish(&mut out, &end(reason, message)).await;
    drop(out);
    let tag = session.tag().to_string();
    let sweep = crate::sessions::sweep(
        fs.docker(),
        fs.container(),
        &tag,
        crate::sessions::sweep_budget(app),
    );
    session.close(reason, &detail, sweep).await;
}

fn end(reason: EndReason, message: Option<String>) -> Finish {
    Finish {
        reason,
        exit_code: Some(if reason == EndReason::UserClose { 0 } else { 1 }),
        message,
    }
}

/// The instance (running) or dataset the login names.
async fn find(app: &App, me: &CurrentUser, target: &str) -> Result<Place, String> {
    let shown = crate::escape::for_terminal(target);
    if let Some(name) = target.strip_prefix(DATASET_PREFIX) {
        return crate::datasets::login_place(app, me, name)
            .await
            .map_err(|e| match e {
                AppError::NotFound => format!(
                    "no dataset named \"{}\" that you can reach (没有可访问的数据集)",
                    crate::escape::for_terminal(name)
                ),
                other => other.user_text(false),
            });
    }
    let all = crate::instances::named(app, me, None)
        .await
        .map_err(|e| e.user_text(false))?;
    let items: Vec<(crate::ids::InstanceId, &str)> =
        all.iter().map(|(i, _)| (i.id, i.name.as_str())).collect();
    let picked = super::menu::find(&items, target).map_err(|_| {
        format!("no instance named \"{shown}\" that you can reach (没有可访问的实例 \"{shown}\")")
    })?;
    let id = all[picked].0.id;
    files::instance(app, me, id).await.map_err(|e| match e {
        AppError::Conflict(_) => format!(
            "the instance \"{shown}\" is not running; start it first (实例未运行，请先启动)"
        ),
        other => other.user_text(false),
    })
}

/// The packets of the channel, answered in order, until the session must
/// end; why it ended, and the detail for its record.
async fn serve(
    app: &App,
    session: &mut Session,
    mut server: files::sftp::Server,
    place: &Place,
    out: &mut SshSink,
    mut rx: mpsc::Receiver<Event>,
) -> (EndReason, String) {
    let watchdog = session.watchdog(app.cancel.clone());
    tokio::pin!(watchdog);
    let mut buf = BytesMut::new();
    let mut touch = tokio::time::interval(TOUCH_EVERY);
    let stop = loop {
        // Every whole packet received is answered before reading more.
        while let Some(raw) = next_packet(&mut buf) {
            let answer = tokio::select! {
                r = &mut watchdog => { server.finish().await; return stopped(r); }
                a = server.answer(raw) => a,
            };
            let bytes = match answer {
                Ok(b) => b,
                Err(e) => {
                    server.finish().await;
                    return (EndReason::Error, format!("sftp: {e}"));
                }
            };
            session.output(&bytes);
            // While the answer waits for the client's window, the
            // client's messages (its window adjustments among them) must
            // still be taken, or russh, waiting on the events channel,
            // never reads the adjustment: up to READ_AHEAD of them are
            // kept for later.
            let sending = out.output(Output::Stdout(bytes));
            tokio::pin!(sending);
            let sent = loop {
                tokio::select! {
                    r = &mut watchdog => { server.finish().await; return stopped(r); }
                    s = &mut sending => break s,
                    ev = rx.recv(), if buf.len() < READ_AHEAD => {
                        if let Some(end) = take(ev, session, &mut buf) {
                            server.finish().await;
                            return end;
                        }
                    }
                }
            };
            if sent.is_err() {
                server.finish().await;
                return (EndReason::ClientLost, String::new());
            }
        }
        if buf.len() > 4 && frame_len(&buf) > files::sftp::MAX_PACKET as usize + 4 {
            break (
                EndReason::Error,
                "sftp: a packet over the size limit".to_string(),
            );
        }
        let ev = tokio::select! {
            r = &mut watchdog => break stopped(r),
            _ = touch.tick() => {
                if place.target == FileTarget::Dataset {
                    crate::datasets::touch(app, place.id).await;
                }
                continue;
            }
            ev = rx.recv() => ev,
        };
        if let Some(end) = take(ev, session, &mut buf) {
            break end;
        }
    };
    server.finish().await;
    stop
}

/// Takes one event of the client: its data into `buf`; why the session
/// ends when the client closed the channel or left.
fn take(
    ev: Option<Event>,
    session: &mut Session,
    buf: &mut BytesMut,
) -> Option<(EndReason, String)> {
    match ev {
        Some(Event::Data { data, .. }) => {
            session.input(&data);
            buf.extend_from_slice(&data);
            None
        }
        Some(Event::Eof { .. } | Event::Close { .. }) => {
            Some((EndReason::UserClose, String::new()))
        }
        Some(_) => None,
        None => Some((EndReason::ClientLost, String::new())),
    }
}

/// The length a frame announces (its first four bytes).
fn frame_len(buf: &[u8]) -> usize {
    match buf.get(..4) {
        Some(b) => u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize,
        None => 0,
    }
}

/// Takes one whole packet (its type and body, without the length) off
/// `buf`; `None` until one has arrived (or when it announces more than a
/// packet may hold, which `serve` refuses).
fn next_packet(buf: &mut BytesMut) -> Option<Bytes> {
    if buf.len() < 4 {
        return None;
    }
    let len = frame_len(buf);
    if len > files::sftp::MAX_PACKET as usize || buf.len() < 4 + len {
        return None;
    }
    buf.advance(4);
    Some(buf.split_to(len).freeze())
}

fn stopped(r: EndReason) -> (EndReason, String) {
    match r {
        EndReason::Error => (EndReason::Error, "gpudock is shutting down".into()),
        other => (other, String::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_are_taken_whole() {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&[0, 0, 0, 5, 1, 0, 0]);
        assert!(next_packet(&mut buf).is_none());
        buf.extend_from_slice(&[0, 3, 9]);
        let p = next_packet(&mut buf).unwrap();
        assert_eq!(&p[..], &[1u8, 0, 0, 0, 3][..]);
        assert_eq!(&buf[..], &[9]);
        let mut huge = BytesMut::from(&[0xff, 0xff, 0xff, 0xff, 1][..]);
        assert!(next_packet(&mut huge).is_none());
        assert!(frame_len(&huge) > files::sftp::MAX_PACKET as usize);
    }
}
