//! SSH port forwarding through the jumpbox: `ssh -L 8888:localhost:8888
//! alice+inst@host` (and `-W`, `-J`, the `-L` of VS Code Remote-SSH) opens
//! `direct-tcpip` channels that reach a port of the instance itself, never
//! the node, another container or any other address. Reverse (`-R`) and
//! agent forwarding are refused; dynamic forwarding (`-D`) reaches nothing
//! but the instance either.
//!
//! A *tunnel* is one port of one instance on one connection: a session
//! record (protocol `port_forward`, its target port) opened by the first
//! channel to it and carrying every later one (a browser opens many),
//! counted in bytes, under the idle and maximum-duration limits and the
//! per-user limit, terminable, audited; its bytes are not recorded. The
//! decision for each channel is the one of every way in:
//! `auth::check(Action::PortForward)`, the instance in the user's scope,
//! the port in the instance's rule, `[forwarding] enabled`.
//!
//! Every channel and tunnel is a task tracked by its connection's [`Link`]:
//! the connection ending, shutdown, an admin's terminate or the user's
//! access revoked ends them, and the connection waits for them.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use russh::server::{ChannelOpenHandle, Msg};
use russh::{Channel, ChannelOpenFailure};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::menu;
use crate::app::App;
use crate::audit::{Actor, Source};
use crate::auth::{Access, Action, AuthVia, CurrentUser, User};
use crate::ids::InstanceId;
use crate::instances::{Instance, InstanceStatus};
use crate::live::Activity;
use crate::sessions::{EndReason, Opening, Protocol, Session, Target};

/// How long the connection waits for its tunnels to close their records.
const FINISH_WITHIN: Duration = Duration::from_secs(10);
/// Copy buffers of a channel (each way).
const BUF: usize = 64 * 1024;

/// A tunnel: one port of one instance on this connection.
type Key = (InstanceId, u16);

/// The forwarding side of one SSH connection, shared by its russh adapter
/// (which opens channels), its actor (which signs the user in and keeps an
/// idle connection open while tunnels are in use) and the accept loop.
pub struct Link {
    app: App,
    peer: Option<SocketAddr>,
    /// Cancelled when the connection ends: every tunnel ends.
    cancel: CancellationToken,
    /// Cancelled when nothing is left on a connection without a shell after
    /// an admin terminated its tunnel: the connection is closed.
    closing: CancellationToken,
    tasks: TaskTracker,
    state: Mutex<State>,
    /// Serializes opening tunnels (the first channels of a browser come
    /// together and must share one record).
    opening: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct State {
    user: Option<User>,
    /// The instance the login names (`alice+inst`).
    target: Option<String>,
    tunnels: HashMap<Key, Arc<Tunnel>>,
    /// Tunnels an admin terminated: not opened again on this connection.
    blocked: HashSet<Key>,
    /// When the last tunnel ended, or else the user signed in (the
    /// connection's idle clock).
    last_end: Option<Instant>,
    /// How the connection ended, for its tunnels' records.
    ended: Option<EndReason>,
    /// What the client is told when the connection is closed for it.
    farewell: Option<String>,
}

/// A live tunnel, as its channels see it.
struct Tunnel {
    tag: String,
    activity: Arc<Activity>,
    /// Ends its channels.
    stop: CancellationToken,
    channels: TaskTracker,
    relayed: AtomicBool,
    node_detail: bool,
}

/// Why a channel is refused: the SSH reason, and the text the client shows
/// (`channel 2: open failed: administratively prohibited: <text>`).
struct Refusal {
    code: u32,
    text: String,
}

fn prohibited(text: impl Into<String>) -> Refusal {
    Refusal {
        code: 1,
        text: text.into(),
    }
}

fn connect_failed(text: impl Into<String>) -> Refusal {
    Refusal {
        code: 2,
        text: text.into(),
    }
}

impl Link {
    pub fn new(app: App, peer: Option<SocketAddr>, cancel: CancellationToken) -> Arc<Link> {
        Arc::new(Link {
            app,
            peer,
            cancel,
            closing: CancellationToken::new(),
            tasks: TaskTracker::new(),
            state: Mutex::new(State::default()),
            opening: tokio::sync::Mutex::new(()),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The actor signed `user` in, naming `target` in the login.
    pub fn signed_in(&self, user: &User, target: Option<&str>) {
        let mut s = self.state();
        s.user = Some(user.clone());
        s.target = target.map(str::to_string);
        // `ssh -N -L` may wait a while before its first tunnel.
        if self.app.config.forwarding.enabled {
            s.last_end = Some(Instant::now());
        }
    }

    /// Resolves when the connection should close for the forwarding side
    /// (an admin ended its last tunnel and it has no shell).
    pub async fn closing(&self) {
        self.closing.cancelled().await;
    }

    /// What the client is told when it is disconnected, if anything.
    pub fn farewell(&self) -> Option<String> {
        self.state().farewell.clone()
    }

    /// When a connection without a shell may be closed for idleness, given
    /// the idle timeout: `None` when tunnels are open (ask again later),
    /// else the instant its last tunnel ended (or its user signed in, when
    /// forwarding is on) plus `idle`; `Some(now)` otherwise.
    pub fn idle_until(&self, idle: Duration) -> Option<Instant> {
        let s = self.state();
        if !s.tunnels.is_empty() {
            return None;
        }
        Some(s.last_end.map_or_else(Instant::now, |t| t + idle))
    }

    /// The connection ended (`reason` for its tunnels' records): ends every
    /// tunnel and waits, a bounded time, for their records to close.
    pub async fn finish(&self, reason: EndReason) {
        self.state().ended.get_or_insert(reason);
        self.cancel.cancel();
        self.tasks.close();
        if tokio::time::timeout(FINISH_WITHIN, self.tasks.wait())
            .await
            .is_err()
        {
            log::warn!(
                "jumpbox: tunnels of a closed connection still ending after {FINISH_WITHIN:?}"
            );
        }
    }

    fn source(&self) -> Source {
        Source {
            ip: self
                .peer
                .map_or_else(|| "unknown".into(), |p| p.ip().to_string()),
            user_agent: "ssh".into(),
        }
    }

    /// A `direct-tcpip` channel asks for `host:port`: decided, connected
    /// and carried on a task of its own (the connection's other channels go
    /// on meanwhile); the answer goes through `reply`.
    pub fn open(
        self: &Arc<Self>,
        channel: Channel<Msg>,
        host: String,
        port: u32,
        reply: ChannelOpenHandle,
    ) {
        let link = self.clone();
        self.tasks.spawn(async move {
            match link.admit(&host, port).await {
                Ok((tunnel, stream)) => {
                    reply.accept().await;
                    link.carry(tunnel, channel, stream);
                }
                Err(r) => {
                    let reason = ChannelOpenFailure::Other {
                        code: r.code,
                        reason: format!("gpudock: {}", crate::escape::for_terminal(&r.text)),
                    };
                    reply.reject(reason).await;
                }
            }
        });
    }

    /// A reverse forward (`-R`) asked for: refused, and audited.
    pub fn refuse_remote(self: &Arc<Self>, address: &str, port: u32) {
        let user = self.state().user.clone();
        let (app, src) = (self.app.clone(), self.source());
        let detail = json!({"kind": "remote", "address": address, "port": port});
        self.tasks.spawn(async move {
            let actor = user
                .as_ref()
                .map_or_else(|| Actor::anonymous(""), Actor::user);
            crate::reach::audit_denied(&app, actor, &src, "ssh -R", detail).await;
        });
    }

    /// The decisions for one channel, then the connection to the port.
    async fn admit(
        self: &Arc<Self>,
        host: &str,
        port: u32,
    ) -> Result<(Arc<Tunnel>, crate::docker::port::PortStream), Refusal> {
        let (user, target) = {
            let s = self.state();
            (s.user.clone(), s.target.clone())
        };
        let Some(user) = user else {
            return Err(prohibited("sign in first"));
        };
        if !self.app.config.forwarding.enabled {
            return Err(prohibited(
                "port forwarding is turned off on this gpudock ([forwarding] enabled = false)",
            ));
        }
        let port = u16::try_from(port)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| prohibited(format!("{port} is not a port")))?;
        self.allowed(&user).await?;
        let me = CurrentUser {
            user: user.clone(),
            via: AuthVia::Ssh,
        };
        let (inst, node_name) = self.instance(&me, target.as_deref(), host, port).await?;
        if inst.last_known != InstanceStatus::Running || inst.container_id.is_none() {
            return Err(prohibited(format!(
                "instance \"{}\" is not running (实例未运行)",
                inst.name
            )));
        }
        self.rule(&user, &inst, port).await?;
        let key = (inst.id, port);
        let tunnel = self.tunnel(&me, key, &inst, node_name).await?;
        match crate::reach::connect(&self.app, &inst, port, &tunnel.tag).await {
            Ok(stream) => {
                if stream.route() == crate::docker::port::Route::Relay {
                    tunnel.relayed.store(true, Ordering::Relaxed);
                }
                Ok((tunnel, stream))
            }
            Err(e) => {
                if !e.is_users() {
                    log::warn!(
                        "jumpbox: forwarding to port {port} of instance {}: {e:?}",
                        inst.id
                    );
                }
                Err(connect_failed(e.message(tunnel.node_detail)))
            }
        }
    }

    /// The user's role may forward ports, and the account is still the one
    /// that signed in.
    async fn allowed(&self, user: &User) -> Result<(), Refusal> {
        match crate::auth::check(&self.app, user, Action::PortForward).await {
            Ok(Access::Allowed) => Ok(()),
            Ok(Access::Revoked) => Err(prohibited(crate::sessions::model::ACCESS_REVOKED_MESSAGE)),
            Ok(Access::Denied) => {
                let detail = json!({"reason": "permission"});
                crate::reach::audit_denied(
                    &self.app,
                    Actor::user(user),
                    &self.source(),
                    "ssh -L",
                    detail,
                )
                .await;
                Err(prohibited(
                    "permission denied: your role may not forward ports (您的角色无权转发端口)",
                ))
            }
            Err(e) => {
                log::error!("jumpbox: access check for {}: {e}", user.username);
                Err(prohibited(
                    "internal error; the details are in the server log",
                ))
            }
        }
    }

    /// The instance the channel reaches: the login's (`alice+inst`), which
    /// `host` must name as itself; or, without one, the instance `host`
    /// names. Anything else is refused and audited.
    async fn instance(
        &self,
        me: &CurrentUser,
        target: Option<&str>,
        host: &str,
        port: u16,
    ) -> Result<(Instance, String), Refusal> {
        let reachable = crate::instances::named(&self.app, me, None)
            .await
            .map_err(|e| prohibited(e.user_text(false)))?;
        let items: Vec<(InstanceId, &str)> = reachable
            .iter()
            .map(|(i, _)| (i.id, i.name.as_str()))
            .collect();
        let (named, why) = match target {
            Some(t) => (t, None),
            None => (
                host,
                Some(
                    "forward to the instance itself: ssh -L 8888:localhost:8888 user+instance@host \
                     (or name the instance as the target: -L 8888:instance:8888)",
                ),
            ),
        };
        let found = menu::find(&items, named).map(|n| reachable[n].clone());
        let deny = async |text: String| {
            let detail = json!({"target": host, "port": port, "login_target": target});
            crate::reach::audit_denied(&self.app, me.actor(), &self.source(), "ssh -L", detail)
                .await;
            prohibited(text)
        };
        let (inst, names) = match found {
            Ok(f) => f,
            Err(not_found) => {
                return Err(deny(why.map_or(not_found, |w| {
                    format!("\"{host}\" is not an instance you can reach; {w}")
                }))
                .await);
            }
        };
        if target.is_some() && !crate::reach::names_the_instance(host, &inst.name, inst.id.0) {
            return Err(deny(format!(
                "only the instance itself can be reached: use localhost or 127.0.0.1 as the target, \
                 not \"{host}\" (只能转发到实例本身)"
            ))
            .await);
        }
        Ok((inst, names.node))
    }

    /// The instance's rule allows the port.
    async fn rule(&self, user: &User, inst: &Instance, port: u16) -> Result<(), Refusal> {
        let rule = crate::reach::forward_rule(&self.app, inst.id)
            .await
            .map_err(|e| prohibited(e.user_text(false)))?;
        if rule.allows(port) {
            return Ok(());
        }
        let detail = json!({"instance": inst.name, "port": port, "allowed": rule.to_string()});
        crate::reach::audit_denied(
            &self.app,
            Actor::user(user),
            &self.source(),
            "ssh -L",
            detail,
        )
        .await;
        Err(prohibited(format!(
            "port {port} of instance \"{}\" may not be forwarded (allowed: {}) (该端口不允许转发)",
            inst.name, rule
        )))
    }

    /// The live tunnel for `key`, opened (a session record) by the first
    /// channel to it.
    async fn tunnel(
        self: &Arc<Self>,
        me: &CurrentUser,
        key: Key,
        inst: &Instance,
        node_name: String,
    ) -> Result<Arc<Tunnel>, Refusal> {
        let _one_at_a_time = self.opening.lock().await;
        {
            let s = self.state();
            if s.blocked.contains(&key) {
                return Err(prohibited(
                    "this tunnel was terminated by an administrator; reconnect to open it again",
                ));
            }
            if let Some(t) = s.tunnels.get(&key) {
                return Ok(t.clone());
            }
        }
        if self.cancel.is_cancelled() {
            return Err(prohibited("the connection is closing"));
        }
        let target = Target::instance(inst, node_name);
        let opening = Opening {
            user: &me.user,
            target: &target,
            protocol: Protocol::PortForward,
            source: self.source(),
            command: "",
            size: (0, 0),
            term: "",
            target_port: Some(key.1),
        };
        let session = crate::sessions::open(&self.app, opening)
            .await
            .map_err(|e| prohibited(e.message()))?;
        let node_detail = crate::auth::sees_node_details(&self.app, &me.user)
            .await
            .unwrap_or(false);
        let tunnel = Arc::new(Tunnel {
            tag: session.tag().to_string(),
            activity: session.activity(),
            stop: self.cancel.child_token(),
            channels: TaskTracker::new(),
            relayed: AtomicBool::new(false),
            node_detail,
        });
        self.state().tunnels.insert(key, tunnel.clone());
        let link = self.clone();
        let t = tunnel.clone();
        self.tasks
            .spawn(async move { link.watch(key, t, session, target).await });
        Ok(tunnel)
    }

    /// A tunnel's life: until its session must end (idle, maximum duration,
    /// terminated, access revoked, shutdown) or the connection ends; then
    /// its channels end, its record closes, and a relay it used is swept.
    async fn watch(
        self: Arc<Self>,
        key: Key,
        tunnel: Arc<Tunnel>,
        session: Session,
        target: Target,
    ) {
        let watchdog = session.watchdog(self.app.cancel.clone());
        let reason = tokio::select! {
            r = watchdog => r,
            _ = self.cancel.cancelled() => self.state().ended.unwrap_or(EndReason::UserClose),
        };
        tunnel.stop.cancel();
        tunnel.channels.close();
        tunnel.channels.wait().await;
        let last = {
            let mut s = self.state();
            s.tunnels.remove(&key);
            s.last_end = Some(Instant::now());
            if reason == EndReason::AdminForce {
                s.blocked.insert(key);
            }
            s.tunnels.is_empty()
        };
        if reason == EndReason::AdminForce && last {
            let mut s = self.state();
            s.farewell = session.message(reason);
            drop(s);
            self.closing.cancel();
        }
        let detail = format!("port {}", key.1);
        let (app, container) = (self.app.clone(), target.container().to_string());
        let relayed = tunnel.relayed.load(Ordering::Relaxed);
        let node = session.node_id();
        let tag = tunnel.tag.clone();
        session
            .close(reason, &detail, async move {
                if !relayed {
                    return true;
                }
                match crate::nodes::client(&app, node).await {
                    Ok(d) => {
                        crate::sessions::sweep(
                            &d,
                            &container,
                            &tag,
                            crate::sessions::sweep_budget(&app),
                        )
                        .await
                    }
                    Err(_) => false,
                }
            })
            .await;
    }

    /// Carries one accepted channel to the port until either side closes or
    /// the tunnel ends.
    fn carry(
        &self,
        tunnel: Arc<Tunnel>,
        channel: Channel<Msg>,
        stream: crate::docker::port::PortStream,
    ) {
        let stop = tunnel.stop.clone();
        let activity = tunnel.activity.clone();
        tunnel.channels.spawn(async move {
            let mut ssh = channel.into_stream();
            let mut port = Counted {
                inner: stream,
                activity,
            };
            tokio::select! {
                r = tokio::io::copy_bidirectional_with_sizes(&mut ssh, &mut port, BUF, BUF) => {
                    if let Err(e) = r {
                        log::debug!("jumpbox: a forwarded channel ended: {e}");
                    }
                }
                _ = stop.cancelled() => {}
            }
        });
    }
}

/// The port's side of a channel, counting into the tunnel's session: what
/// goes to the instance is input, what comes back output.
struct Counted {
    inner: crate::docker::port::PortStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.activity.output(n);
        }
        r
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r
            && n > 0
        {
            self.activity.input(n);
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
