//! One actor per SSH connection owns its state: who signed in (password
//! with the web's lockout, or a registered key), the target named in the
//! login (`alice+myinst`), the pty, and then the menu or the session. It
//! ends when the session does; the connection goes with it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use russh::ChannelId;
use russh::keys::PublicKey;
use russh::server::Handle;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::forward::Link;
use super::handler::Event;
use super::menu::{self, Choice, Entry, LineEditor};
use crate::app::App;
use crate::audit::{self, Actor, Outcome, Source};
use crate::auth::{Access, Action};
use crate::auth::{AuthVia, CurrentUser, User};
use crate::docker::exec::{self, ExecSpec, Output};
use crate::error::AppError;
use crate::ids::InstanceId;
use crate::instances::{Instance, InstanceStatus, Names};
use crate::live::Registration;
use crate::sessions::bridge::{self, ClientEvent, ClientSink, Finish};
use crate::sessions::model::ACCESS_REVOKED_MESSAGE;
use crate::sessions::{EndReason, Opening, Protocol, Target};

/// A connection that opens no session within this long is closed (sooner
/// when the idle timeout is shorter).
const START_WITHIN: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
struct Pty {
    term: String,
    cols: u16,
    rows: u16,
}

struct Conn {
    app: App,
    peer: Option<SocketAddr>,
    cancel: CancellationToken,
    user: Option<User>,
    /// The signed-in user's access, held live from the sign-in on: a
    /// revocation ends the connection wherever it is (menu, before a shell).
    hold: Option<Registration>,
    target: Option<String>,
    channel: Option<(ChannelId, Handle)>,
    pty: Option<Pty>,
    /// The connection's port forwarding: told who signed in; while it has
    /// tunnels, a connection without a shell stays open.
    link: std::sync::Arc<Link>,
}

fn size(v: u32) -> u16 {
    u16::try_from(v).unwrap_or(u16::MAX).max(1)
}

/// Runs the connection's dialogue until it ends (the caller then closes
/// the connection).
pub async fn run(
    app: App,
    mut rx: mpsc::Receiver<Event>,
    peer: Option<SocketAddr>,
    cancel: CancellationToken,
    link: std::sync::Arc<Link>,
) {
    let within = START_WITHIN.min(idle_timeout(&app));
    let mut c = Conn {
        app,
        peer,
        cancel: cancel.clone(),
        user: None,
        hold: None,
        target: None,
        channel: None,
        pty: None,
        link,
    };
    let deadline = tokio::time::sleep(within);
    tokio::pin!(deadline);
    loop {
        let ev = tokio::select! {
            ev = rx.recv() => ev,
            () = &mut deadline => {
                // Without a session, a connection lives on while it has
                // tunnels, and for the idle timeout after the last one.
                let idle = idle_timeout(&c.app);
                match c.link.idle_until(idle) {
                    None => deadline.as_mut().reset(tokio::time::Instant::now() + idle),
                    Some(t) if t > std::time::Instant::now() => {
                        deadline.as_mut().reset(tokio::time::Instant::from_std(t));
                    }
                    Some(_) => return,
                }
                continue;
            }
            _ = cancel.cancelled() => return,
            _ = revoked(&c.hold) => return,
            () = c.link.closing() => return,
        };
        let Some(ev) = ev else { return };
        match ev {
            Event::Password {
                login,
                password,
                reply,
            } => {
                let _ = reply.send(c.password(&login, &password).await);
            }
            Event::KeyOffered { login, key, reply } => {
                let _ = reply.send(c.key_known(&login, &key).await);
            }
            Event::Key { login, key, reply } => {
                let _ = reply.send(c.key(&login, &key).await);
            }
            Event::ChannelOpen {
                channel,
                handle,
                reply,
            } => {
                let ok = c.user.is_some() && c.channel.is_none();
                if ok {
                    c.channel = Some((channel, handle));
                }
                let _ = reply.send(ok);
            }
            Event::Pty {
                term, cols, rows, ..
            } => {
                c.pty = Some(Pty {
                    term,
                    cols: size(cols),
                    rows: size(rows),
                });
            }
            Event::WindowChange { cols, rows, .. } => {
                if let Some(p) = c.pty.as_mut() {
                    (p.cols, p.rows) = (size(cols), size(rows));
                }
            }
            Event::Sftp { .. } => return c.sftp(rx).await,
            Event::Shell { .. } => return c.start(None, rx).await,
            Event::Exec { command, .. } => return c.start(Some(command), rx).await,
            Event::Data { .. } | Event::Eof { .. } | Event::Close { .. } => {}
        }
    }
}

/// The configured idle timeout of sessions, which idle connections obey too.
fn idle_timeout(app: &App) -> Duration {
    Duration::from_secs(app.config.sessions.idle_timeout_secs.max(1))
}

/// Resolves when the held access is revoked (never without a hold).
async fn revoked(hold: &Option<Registration>) {
    match hold {
        Some(h) => h.watcher().stopped().await,
        None => std::future::pending().await,
    }
}

impl Conn {
    /// Records who signed in and holds their access live.
    fn signed_in(&mut self, user: User, target: Option<&str>) {
        self.hold = Some(self.app.live.hold(crate::auth::holder(&user)));
        self.link.signed_in(&user, target);
        self.user = Some(user);
        self.target = target.map(str::to_string);
    }

    fn source(&self) -> Source {
        Source {
            ip: self
                .peer
                .map_or_else(|| "unknown".into(), |p| p.ip().to_string()),
            user_agent: "ssh".into(),
        }
    }

    /// The gpudock password, with the same check and lockout as the web.
    async fn password(&mut self, login: &str, password: &str) -> bool {
        let (name, target) = menu::split_login(login);
        match crate::auth::login(&self.app, name, password, &self.source()).await {
            Ok(user) => {
                self.signed_in(user, target);
                true
            }
            Err(_) => false,
        }
    }

    /// Whether the user named in the login registered `key` (an offer, not
    /// yet proven). A failed lookup refuses, and is logged.
    async fn key_known(&self, login: &str, key: &PublicKey) -> bool {
        let (name, _) = menu::split_login(login);
        match crate::sshkeys::find(&self.app, name, key).await {
            Ok(found) => found.is_some(),
            Err(e) => {
                log::error!("jumpbox: looking up an offered key: {e}");
                false
            }
        }
    }

    /// A registered key, proven by the client, of the user named in the
    /// login; the account must be usable (enabled, not locked), and the
    /// address within its sign-in limit (a failure counts toward it).
    async fn key(&mut self, login: &str, key: &PublicKey) -> bool {
        let (name, target) = menu::split_login(login);
        let ip = self.source().ip;
        if self.app.sign_ins.check(&ip).is_err() {
            return false;
        }
        let found = async {
            let Some((key_id, owner)) = crate::sshkeys::find(&self.app, name, key).await? else {
                return Ok::<_, AppError>(None);
            };
            let user = crate::auth::usable_user_named(&self.app, name).await?;
            Ok::<_, AppError>(user.filter(|u| u.id == owner).map(|u| (key_id, u)))
        }
        .await;
        let fingerprint = key.fingerprint(russh::keys::HashAlg::Sha256).to_string();
        let (actor, outcome) = match &found {
            Ok(Some((_, u))) => (Actor::user(u), Outcome::Success),
            Ok(None) | Err(_) => (Actor::anonymous(name), Outcome::Failure),
        };
        let detail = json!({"method": "publickey", "fingerprint": fingerprint});
        if let Err(e) = audit_login(&self.app, actor, &self.source(), outcome, detail).await {
            log::error!("jumpbox: auditing a key login: {e}");
        }
        match found {
            Ok(Some((key_id, user))) => {
                if let Err(e) = crate::sshkeys::touch(&self.app, key_id).await {
                    log::warn!("jumpbox: key {key_id} last use: {e}");
                }
                self.signed_in(user, target);
                true
            }
            Ok(None) => {
                self.app.sign_ins.failed(&ip);
                false
            }
            Err(e) => {
                log::error!("jumpbox: key login: {e}");
                false
            }
        }
    }

    /// The SFTP subsystem on the login's target, run to its end.
    async fn sftp(self, rx: mpsc::Receiver<Event>) {
        let (Some(user), Some((channel, handle))) = (self.user.clone(), self.channel.clone())
        else {
            return;
        };
        let out = SshSink {
            handle,
            channel,
            tty: false,
            menu: None,
        };
        let source = self.source();
        super::sftp::run(&self.app, user, self.target.as_deref(), source, out, rx).await;
    }

    /// The shell (menu or direct target) or the command, run to its end.
    async fn start(self, command: Option<String>, mut rx: mpsc::Receiver<Event>) {
        let (Some(user), Some((channel, handle))) = (self.user.clone(), self.channel.clone())
        else {
            return;
        };
        let mut out = SshSink {
            handle,
            channel,
            tty: self.pty.is_some(),
            menu: None,
        };
        if user.must_change_password {
            out.fail("your password must be changed first: sign in on the web page (请先在网页上修改密码)").await;
            return;
        }
        // The same decision as the web terminal's: the permission records.
        match crate::auth::check(&self.app, &user, Action::Shell).await {
            Ok(Access::Allowed) => {}
            Ok(Access::Revoked) => return out.fail(ACCESS_REVOKED_MESSAGE).await,
            Ok(Access::Denied) => {
                let what = (
                    "permission.denied",
                    "action",
                    Action::Shell.label().to_string(),
                );
                self.audit_denied(&user, what, json!({"via": "ssh"})).await;
                return out
                    .fail("permission denied: your role may not open shells in instances (您的角色无权在实例中打开终端)")
                    .await;
            }
            Err(e) => {
                log::error!("jumpbox: access check for {}: {e}", user.username);
                return out
                    .fail("gpudock: internal error; the details are in the server log")
                    .await;
            }
        }
        let me = CurrentUser {
            user: user.clone(),
            via: AuthVia::Ssh,
        };
        // At sign-in to a shell (not before a command's output): leases
        // ending or ended, names escaped for the terminal.
        if command.is_none() {
            match crate::leases::ssh_notice(&self.app, &me).await {
                Ok(Some(notice)) => out.say(&notice).await,
                Ok(None) => {}
                Err(e) => log::warn!("jumpbox: lease notice for {}: {e}", user.username),
            }
        }
        let reachable = match running_instances(&self.app, &me).await {
            Ok(r) => r,
            Err(e) => {
                out.fail(&e.user_text(false)).await;
                return;
            }
        };
        let (picked, typed_ahead) = match (&self.target, &command) {
            (Some(t), _) => match menu::find(&ids_and_names(&reachable), t) {
                Ok(i) => (i, Vec::new()),
                Err(why) => {
                    // A target naming no instance the user reaches
                    // (someone else's, unknown, not running).
                    let detail = json!({"via": "ssh", "target": t, "reason": why});
                    self.audit_denied(&user, ("session.open", "instance", t.clone()), detail)
                        .await;
                    out.fail(&why).await;
                    return;
                }
            },
            (None, Some(_)) => {
                out.fail("name the instance to run a command in: ssh -p PORT user+instance@host 'command'").await;
                return;
            }
            (None, None) => return self.menu_loop(&me, reachable, out, rx).await,
        };
        let (inst, names) = reachable[picked].clone();
        let events = events(typed_ahead, &mut rx, None);
        self.session(&me, inst, names, command, out, events).await;
    }

    /// The menu, a shell in the instance picked, and the menu again when
    /// that shell exits by itself (not when the client's input ended in
    /// it, the client left, or gpudock ended the session).
    async fn menu_loop(
        &self,
        me: &CurrentUser,
        mut reachable: Vec<(Instance, Names)>,
        mut out: SshSink,
        mut rx: mpsc::Receiver<Event>,
    ) {
        loop {
            let Some((picked, typed_ahead)) = self.menu(&reachable, &mut out, &mut rx).await else {
                return;
            };
            let (inst, names) = reachable[picked].clone();
            let state = Arc::new(MenuReturn::default());
            let sink = SshSink {
                handle: out.handle.clone(),
                channel: out.channel,
                tty: out.tty,
                menu: Some(state.clone()),
            };
            let events = events(typed_ahead, &mut rx, Some(state.clone()));
            self.session(me, inst, names, None, sink, events).await;
            if !state.back.load(Ordering::SeqCst) {
                return;
            }
            reachable = match running_instances(&self.app, me).await {
                Ok(r) => r,
                Err(e) => return out.fail(&e.user_text(false)).await,
            };
        }
    }

    /// Audits a refusal as denied: `action` on `kind` `id`, with what
    /// the jumpbox was asked (`detail`).
    async fn audit_denied(
        &self,
        user: &User,
        (action, kind, id): (&'static str, &'static str, String),
        detail: serde_json::Value,
    ) {
        let r = audit::record(
            &self.app.db,
            Actor::user(user),
            self.source(),
            move |a, s| {
                audit::Event::new(a, s, action, kind)
                    .id(id)
                    .outcome(Outcome::Denied)
                    .detail(detail)
            },
        )
        .await;
        if let Err(e) = r {
            log::error!("jumpbox: auditing a refused {action}: {e}");
        }
    }

    /// The menu of the user's running instances; the index picked and what
    /// was typed after the choice, or None (quit, nothing to pick, the
    /// client left, no input within the idle timeout, access revoked,
    /// shutdown).
    async fn menu(
        &self,
        reachable: &[(Instance, Names)],
        out: &mut SshSink,
        rx: &mut mpsc::Receiver<Event>,
    ) -> Option<(usize, Vec<u8>)> {
        if reachable.is_empty() {
            out.fail("you have no running instances (您没有运行中的实例)")
                .await;
            return None;
        }
        let entries: Vec<Entry> = reachable
            .iter()
            .map(|(i, n)| Entry {
                name: i.name.clone(),
                container_id: i.container_id.clone().unwrap_or_default(),
                node: n.node.clone(),
            })
            .collect();
        let mut text = String::from("序号 实例名称-容器ID-算力节点\r\n");
        for line in menu::menu_lines(&entries) {
            text.push_str(&line);
            text.push_str("\r\n");
        }
        const PROMPT: &str = "请输入序号，q 退出 (number, q to quit): ";
        out.say(&format!("{text}{PROMPT}")).await;
        let mut editor = LineEditor::default();
        let idle = idle_timeout(&self.app);
        loop {
            let ev = tokio::select! {
                ev = rx.recv() => ev,
                _ = tokio::time::sleep(idle) => {
                    let c = &self.app.config.sessions;
                    let message = EndReason::IdleTimeout.message(c.idle_timeout_secs, c.max_duration_secs);
                    let end = Finish { reason: EndReason::IdleTimeout, exit_code: None, message };
                    bridge::finish(out, &end).await;
                    return None;
                }
                _ = self.cancel.cancelled() => {
                    out.fail("gpudock is shutting down").await;
                    return None;
                }
                _ = revoked(&self.hold) => {
                    out.fail(ACCESS_REVOKED_MESSAGE).await;
                    return None;
                }
            };
            let ev = ev?;
            let data = match ev {
                Event::Data { data, .. } => data,
                Event::Eof { .. } | Event::Close { .. } => return None,
                _ => continue,
            };
            let fed = editor.feed(&data);
            if out.tty && !fed.echo.is_empty() {
                out.raw(&fed.echo).await;
            }
            let Some(line) = fed.line else { continue };
            match menu::choice(&line, entries.len()) {
                Choice::Pick(i) => return Some((i, fed.rest)),
                Choice::Quit => {
                    let end = Finish {
                        reason: EndReason::UserClose,
                        exit_code: Some(0),
                        message: None,
                    };
                    bridge::finish(out, &end).await;
                    return None;
                }
                Choice::Invalid => {
                    out.say(&format!("无效的序号 (no such number)\r\n{PROMPT}"))
                        .await
                }
            }
        }
    }

    async fn session(
        &self,
        me: &CurrentUser,
        inst: Instance,
        names: Names,
        command: Option<String>,
        mut out: SshSink,
        events: impl Stream<Item = ClientEvent> + Unpin + Send,
    ) {
        let target = Target::instance(&inst, names.node);
        let pty = self.pty.clone();
        let (size, term) = pty.as_ref().map_or(((80, 24), "dumb".to_string()), |p| {
            ((p.cols, p.rows), p.term.clone())
        });
        let opening = Opening {
            user: &me.user,
            target: &target,
            protocol: Protocol::Ssh,
            source: self.source(),
            command: command.as_deref().unwrap_or(""),
            size,
            term: &term,
            target_port: None,
        };
        let session = match crate::sessions::open(&self.app, opening).await {
            Ok(s) => s,
            Err(e) => return out.fail(&e.message()).await,
        };
        let spec = ExecSpec {
            argv: command
                .as_deref()
                .map_or_else(exec::shell_argv, exec::command_argv),
            tty: pty.is_some(),
            term: pty.map(|p| p.term),
            size: Some(size),
            tag: session.tag().to_string(),
        };
        let container = target.container().to_string();
        bridge::run(&self.app, session, container, spec, events, out).await;
    }
}

/// The events of the session's channel as the bridge wants them, after
/// what was typed ahead at the menu (`menu`: noting the client's EOF).
fn events(
    typed_ahead: Vec<u8>,
    rx: &mut mpsc::Receiver<Event>,
    menu: Option<Arc<MenuReturn>>,
) -> impl Stream<Item = ClientEvent> + Unpin + Send + '_ {
    let first = (!typed_ahead.is_empty()).then(|| ClientEvent::Input(typed_ahead.into()));
    let rest = futures_util::stream::poll_fn(move |cx| {
        loop {
            return match rx.poll_recv(cx) {
                std::task::Poll::Ready(Some(ev)) => match ev {
                    Event::Data { data, .. } => {
                        std::task::Poll::Ready(Some(ClientEvent::Input(data)))
                    }
                    Event::WindowChange { cols, rows, .. } => {
                        std::task::Poll::Ready(Some(ClientEvent::Resize(size(cols), size(rows))))
                    }
                    Event::Eof { .. } => {
                        if let Some(m) = &menu {
                            m.eof.store(true, Ordering::SeqCst);
                        }
                        std::task::Poll::Ready(Some(ClientEvent::Eof))
                    }
                    Event::Close { .. } => std::task::Poll::Ready(Some(ClientEvent::Closed)),
                    _ => continue,
                },
                std::task::Poll::Ready(None) => std::task::Poll::Ready(None),
                std::task::Poll::Pending => std::task::Poll::Pending,
            };
        }
    });
    Box::pin(futures_util::stream::iter(first).chain(rest))
}

fn ids_and_names(reachable: &[(Instance, Names)]) -> Vec<(InstanceId, &str)> {
    reachable
        .iter()
        .map(|(i, _)| (i.id, i.name.as_str()))
        .collect()
}

/// Running instances `me` reaches, by id.
async fn running_instances(
    app: &App,
    me: &CurrentUser,
) -> Result<Vec<(Instance, Names)>, AppError> {
    Ok(crate::instances::named(app, me, None)
        .await?
        .into_iter()
        .filter(|(i, _)| i.last_known == InstanceStatus::Running && i.container_id.is_some())
        .collect())
}

async fn audit_login(
    app: &App,
    actor: Actor,
    src: &Source,
    outcome: Outcome,
    detail: serde_json::Value,
) -> Result<(), AppError> {
    audit::record(&app.db, actor, src.clone(), move |a, s| {
        audit::Event::new(a, s, "auth.login", "session")
            .outcome(outcome)
            .detail(detail)
    })
    .await
    .map_err(AppError::from)
}

/// The session's SSH channel.
pub(super) struct SshSink {
    pub(super) handle: Handle,
    pub(super) channel: ChannelId,
    tty: bool,
    /// A shell picked from the menu: its exit returns to the menu.
    menu: Option<Arc<MenuReturn>>,
}

/// Whether a shell picked from the menu went back to it (`back`), and
/// whether the client's input ended while it ran (`eof`: then it does not).
#[derive(Debug, Default)]
struct MenuReturn {
    back: AtomicBool,
    eof: AtomicBool,
}

impl SshSink {
    async fn raw(&self, bytes: &[u8]) {
        let _ = self.handle.data(self.channel, bytes.to_vec()).await;
    }

    /// A line for the user (on a TTY lines need `\r\n`).
    async fn say(&self, text: &str) {
        self.raw(text.as_bytes()).await;
    }

    /// Says why nothing happens, and ends the channel with status 1.
    pub(super) async fn fail(&mut self, why: &str) {
        let end = Finish {
            reason: EndReason::Error,
            exit_code: Some(1),
            message: Some(why.to_string()),
        };
        bridge::finish(self, &end).await;
    }
}

impl ClientSink for SshSink {
    async fn output(&mut self, out: Output) -> Result<(), ()> {
        let r = match out {
            Output::Stdout(b) => self.handle.data(self.channel, b).await,
            Output::Stderr(b) => self.handle.extended_data(self.channel, 1, b).await,
        };
        r.map_err(|_| ())
    }

    async fn finish(&mut self, end: &Finish) {
        if let (Some(menu), EndReason::UserClose, Some(code)) =
            (&self.menu, end.reason, end.exit_code)
            && !menu.eof.load(Ordering::SeqCst)
        {
            menu.back.store(true, Ordering::SeqCst);
            let text = format!("\r\n[gpudock] exit {code}; 返回菜单 (back to the menu)\r\n");
            let _ = self.handle.data(self.channel, text.into_bytes()).await;
            return;
        }
        if let Some(m) = &end.message {
            // Messages quote names and daemons: shown, never run.
            let m = crate::escape::for_terminal(m);
            let text = if self.tty {
                format!("\r\n[gpudock] {m}\r\n")
            } else {
                format!("gpudock: {m}\n")
            };
            let _ = self
                .handle
                .extended_data(self.channel, 1, text.into_bytes())
                .await;
        }
        let code = end.exit_code.unwrap_or(255).clamp(0, 255) as u32;
        let _ = self.handle.exit_status_request(self.channel, code).await;
        let _ = self.handle.eof(self.channel).await;
        let _ = self.handle.close(self.channel).await;
    }
}
