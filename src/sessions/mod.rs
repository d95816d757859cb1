//! Remote sessions (会话管理): every web-terminal and jumpbox connection to
//! an instance is a session record, registered live (limits per user, kill
//! with a reason), watched for idleness and maximum duration, recorded as
//! asciicast, and audited when it opens and closes. The terminal and the
//! jumpbox only adapt their transport to [`bridge::run`].
//!
//! A session's processes carry its tag (`exec_tag`) and are swept from the
//! container when it ends; the record's end is written first (it never
//! waits on the node), the sweep after it. A sweep that could not run (the
//! node was gone, gpudock was killed) is retried by [`run`]'s sweeper at
//! start-up and whenever the node answers again, until the record says
//! `swept_at`.

pub mod api;
pub mod bridge;
pub mod model;
pub mod pages;
pub mod recording;
pub mod store;

use std::future::Future;
use std::time::{Duration, Instant};

use rusqlite::TransactionBehavior;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::audit::{self, Actor, Event, Outcome, Source};
use crate::auth::User;
use crate::docker::exec;
use crate::error::AppError;
use crate::ids::{InstanceId, NodeId, SessionId};
use crate::instances::Instance;
use crate::live::Registration;
pub use model::{EndReason, Protocol};
use recording::Recorder;
pub use store::{Filter, LiveOn, SessionRecord};

/// What a session connects to: an instance's container, or the transfer
/// container of a dataset (instance id 0, name `dataset:<name>`).
#[derive(Debug, Clone)]
pub struct Target {
    pub instance_id: InstanceId,
    pub name: String,
    pub node_id: NodeId,
    pub node_name: String,
    pub container: String,
}

impl Target {
    /// The instance's container.
    pub fn instance(i: &Instance, node_name: String) -> Self {
        Self {
            instance_id: i.id,
            name: i.name.clone(),
            node_id: i.node_id,
            node_name,
            container: i.container_id.clone().unwrap_or_default(),
        }
    }

    pub fn container(&self) -> &str {
        &self.container
    }
}

/// Everything known when a connection asks for a session.
pub struct Opening<'a> {
    pub user: &'a User,
    pub target: &'a Target,
    pub protocol: Protocol,
    pub source: Source,
    /// The command of a command session; empty for a shell.
    pub command: &'a str,
    /// Terminal size and type (for the recording's header).
    pub size: (u16, u16),
    pub term: &'a str,
    /// The port a tunnel reaches (protocol `port_forward`; its bytes are
    /// counted, not recorded).
    pub target_port: Option<u16>,
}

/// Why a session could not open.
#[derive(Debug)]
pub enum OpenError {
    /// The user holds `sessions.max_per_user` already; the text says so.
    TooMany(String),
    /// The user's account changed since they signed in (disabled, password,
    /// role or tenant changed): nothing opens.
    Revoked,
    /// The instance's lease has ended ([`crate::leases::refusal`]): the
    /// text says so and until when its data is kept.
    LeaseExpired(String),
    App(AppError),
}

impl OpenError {
    /// What the client is told (never internal details).
    pub fn message(&self) -> String {
        match self {
            OpenError::TooMany(m) | OpenError::LeaseExpired(m) => m.clone(),
            OpenError::Revoked => model::ACCESS_REVOKED_MESSAGE.into(),
            OpenError::App(e) => e.user_text(false),
        }
    }
}

impl From<AppError> for OpenError {
    fn from(e: AppError) -> Self {
        OpenError::App(e)
    }
}

/// An open session. The transport calls `input`/`output`/`resize` as bytes
/// pass, and `close` once, when it ends.
pub struct Session {
    pub id: SessionId,
    /// The value of `GPUDOCK_SESSION` its processes carry.
    tag: String,
    node_id: NodeId,
    app: App,
    reg: Registration,
    recorder: Option<Recorder>,
    started: Instant,
    actor: Actor,
    source: Source,
    /// The user may see nodes' details in what they are told.
    node_detail: bool,
}

/// Opens a session: checks the per-user limit, records it (and audits the
/// opening) and starts its recording. The user must still be the account
/// that signed in ([`crate::auth::current`]), checked with the record's
/// insert after the live registration: a revocation either finds the
/// registration and ends it, or comes first and refuses the opening.
pub async fn open(app: &App, o: Opening<'_>) -> Result<Session, OpenError> {
    let max = app.config.sessions.max_per_user;
    let user_id = o.user.id.0;
    // Registered first under a provisional key, so that the limit check and
    // taking the place are one step; the record's id replaces the key.
    let mut reg = match app.live.register(crate::auth::holder(o.user), max) {
        Ok(r) => r,
        Err(_) => {
            let msg = model::too_many_message(max);
            refused(app, o.user, &o.source, o.target, &msg).await?;
            return Err(OpenError::TooMany(msg));
        }
    };
    let (actor, src) = (Actor::user(o.user), o.source.clone());
    let node_detail = crate::auth::sees_node_details(app, o.user).await?;
    let t = o.target;
    let new = NewOwned {
        user_id,
        username: o.user.username.clone(),
        tenant_id: o.user.tenant_id.map(|t| t.0),
        instance_id: t.instance_id,
        instance_name: t.name.clone(),
        node_id: t.node_id,
        node_name: t.node_name.clone(),
        container_id: t.container().to_string(),
        protocol: o.protocol,
        command: o.command.to_string(),
        source_ip: o.source.ip.clone(),
        target_port: o.target_port,
    };
    let (a2, s2, user, install) = (
        actor.clone(),
        src.clone(),
        o.user.clone(),
        app.install_id.clone(),
    );
    let buffer = crate::leases::buffer_secs(app);
    let (id, tag) = app
        .db
        .write(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let now = crate::db::now();
            if !crate::auth::current(&tx, &user, now)? {
                return Ok(Err(OpenError::Revoked));
            }
            // The one decision on an instance's lease, for every kind of
            // session (shell, command, SFTP, tunnel) and every way in.
            if let Some(why) = crate::leases::refusal(&tx, new.instance_id, now, buffer)? {
                return Ok(Err(OpenError::LeaseExpired(why)));
            }
            let (id, tag) = store::insert(&tx, &new.borrowed(), |id| exec_tag(&install, id), now)?;
            let detail = json!({"instance_id": new.instance_id, "instance": new.instance_name, "node": new.node_name,
                                "protocol": new.protocol, "command": new.command, "target_port": new.target_port});
            audit::append(&tx, &Event::new(&a2, &s2, "session.open", "session").id(id).detail(detail))?;
            tx.commit()?;
            Ok::<_, AppError>(Ok((id, tag)))
        })
        .await??;
    reg.rekey(id.0);
    let title = format!("{} · {} · {}", o.user.username, t.name, o.protocol.as_str());
    let dir = app.config.recordings_dir();
    let file = recording::file_name(id);
    let recorder = if !o.protocol.recorded() {
        None
    } else {
        match Recorder::create(
            &dir,
            &file,
            o.size,
            o.term,
            &title,
            app.config.sessions.record_input,
        )
        .await
        {
            Ok(r) => {
                app.db
                    .write(move |c| store::set_recording(c, id, &file).map_err(AppError::from))
                    .await?;
                Some(r)
            }
            Err(e) => {
                log::error!(
                    "session {id}: cannot start its recording in {}: {e}",
                    dir.display()
                );
                None
            }
        }
    };
    Ok(Session {
        id,
        tag,
        node_id: t.node_id,
        app: app.clone(),
        reg,
        recorder,
        started: Instant::now(),
        actor,
        source: src,
        node_detail,
    })
}

/// The tag of session `id`'s processes: `<install>-s<id>-<random>`, unique
/// even should an id come back after a restore (a sweep ends exactly the
/// processes of its own session).
fn exec_tag(install: &str, id: SessionId) -> String {
    let nonce: u32 = rand::random();
    format!("{install}-s{id}-{nonce:08x}")
}

/// How long one sweep may take (it waits a second between SIGHUP and
/// SIGKILL); once the server is stopping, [`SWEEP_AT_SHUTDOWN`].
const SWEEP_WITHIN: Duration = Duration::from_secs(20);
/// How long a sweep may hold up a shutdown (the next start does the rest).
const SWEEP_AT_SHUTDOWN: Duration = Duration::from_secs(5);

/// How long a sweep may take now.
pub fn sweep_budget(app: &App) -> Duration {
    if app.cancel.is_cancelled() {
        SWEEP_AT_SHUTDOWN
    } else {
        SWEEP_WITHIN
    }
}

/// Ends the processes tagged `tag` in `container` within `within`; whether
/// that is done (also when nothing was left: the container gone or stopped).
pub async fn sweep(d: &bollard::Docker, container: &str, tag: &str, within: Duration) -> bool {
    match tokio::time::timeout(within, exec::end_tagged(d, container, tag)).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            log::warn!("ending the processes tagged {tag} in {container} failed: {e}");
            false
        }
        Err(_) => {
            log::warn!("ending the processes tagged {tag} in {container} took over {within:?}");
            false
        }
    }
}

/// The owned columns of a new record (moved to the database thread).
struct NewOwned {
    user_id: i64,
    username: String,
    tenant_id: Option<i64>,
    instance_id: InstanceId,
    instance_name: String,
    node_id: NodeId,
    node_name: String,
    container_id: String,
    protocol: Protocol,
    command: String,
    source_ip: String,
    target_port: Option<u16>,
}

impl NewOwned {
    fn borrowed(&self) -> store::NewSession<'_> {
        store::NewSession {
            user_id: self.user_id,
            username: &self.username,
            tenant_id: self.tenant_id,
            instance_id: self.instance_id,
            instance_name: &self.instance_name,
            node_id: self.node_id,
            node_name: &self.node_name,
            container_id: &self.container_id,
            protocol: self.protocol,
            command: &self.command,
            source_ip: &self.source_ip,
            target_port: self.target_port,
        }
    }
}

/// Audits a session refused by a limit.
async fn refused(
    app: &App,
    user: &User,
    src: &Source,
    t: &Target,
    why: &str,
) -> Result<(), AppError> {
    let detail = json!({"instance_id": t.instance_id, "instance": t.name, "reason": "max_per_user", "message": why});
    audit::record(&app.db, Actor::user(user), src.clone(), move |a, s| {
        Event::new(a, s, "session.open", "session")
            .outcome(Outcome::Denied)
            .detail(detail)
    })
    .await
    .map_err(AppError::from)
}

impl Session {
    /// Counts and records input (the recorder takes a reference, never a
    /// copy, and never makes the session wait).
    pub fn input(&mut self, bytes: &bytes::Bytes) {
        self.reg.activity().input(bytes.len());
        if let Some(r) = self.recorder.as_mut() {
            r.input(bytes);
        }
    }

    /// Counts and records output (as [`Session::input`]).
    pub fn output(&mut self, bytes: &bytes::Bytes) {
        self.reg.activity().output(bytes.len());
        if let Some(r) = self.recorder.as_mut() {
            r.output(bytes);
        }
    }

    pub fn resize(&mut self, cols: u16, rows: u16) {
        if let Some(r) = self.recorder.as_mut() {
            r.resize(cols, rows);
        }
    }

    /// Resolves when the session must end: an admin ended it, it was idle
    /// too long, it reached the maximum duration, or the server stops.
    /// Owned, so the session's loop can keep using the session meanwhile.
    pub fn watchdog(
        &self,
        shutdown: CancellationToken,
    ) -> impl std::future::Future<Output = EndReason> + Send + 'static {
        let cfg = &self.app.config.sessions;
        let idle = Duration::from_secs(cfg.idle_timeout_secs).as_millis() as i64;
        let max = (cfg.max_duration_secs > 0).then(|| Duration::from_secs(cfg.max_duration_secs));
        let (w, started) = (self.reg.watcher(), self.started);
        async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tokio::select! {
                    _ = w.stopped() => {
                        return w.reason().and_then(EndReason::parse).unwrap_or(EndReason::AdminForce);
                    }
                    _ = shutdown.cancelled() => return EndReason::Error,
                    _ = tick.tick() => {
                        if w.activity().idle_ms() >= idle {
                            return EndReason::IdleTimeout;
                        }
                        if max.is_some_and(|m| started.elapsed() >= m) {
                            return EndReason::MaxDuration;
                        }
                    }
                }
            }
        }
    }

    /// The session's counters, shared with whatever carries its bytes
    /// (a tunnel's channels count into them without the session).
    pub fn activity(&self) -> std::sync::Arc<crate::live::Activity> {
        self.reg.activity().clone()
    }

    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// The value of `GPUDOCK_SESSION` the session's processes must carry.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// `e` as the line the session's user is told (a node's detail only for
    /// who may see nodes; what is held back is logged under a reference).
    pub fn tell(&self, e: &AppError) -> String {
        e.user_text(self.node_detail)
    }

    /// What the user is told for `reason`, if anything.
    pub fn message(&self, reason: EndReason) -> Option<String> {
        let c = &self.app.config.sessions;
        reason.message(c.idle_timeout_secs, c.max_duration_secs)
    }

    /// Ends the session: the record gets its end, reason and figures and
    /// the close is audited (without waiting on the node), the recording is
    /// flushed; then `sweep` ends its processes in the container, and the
    /// record says so when it did (otherwise the sweeper retries).
    pub async fn close(
        mut self,
        reason: EndReason,
        detail: &str,
        sweep: impl Future<Output = bool>,
    ) {
        self.reg.ending();
        // The recording is complete before the record says the session ended.
        let left_out = match self.recorder.take() {
            Some(r) => r.finish().await,
            None => 0,
        };
        if left_out > 0 {
            log::warn!(
                "session {}: {left_out} bytes of output were left out of its recording (the recorder fell behind)",
                self.id
            );
        }
        let a = self.reg.activity().clone();
        let (id, actor, src) = (self.id, self.actor.clone(), self.source.clone());
        let detail = detail.to_string();
        let secs = self.started.elapsed().as_secs();
        let done = self
            .app
            .db
            .write(move |c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let ending = store::Ending {
                    status: reason.final_status(),
                    reason,
                    detail: &detail,
                    last: a.last_secs(),
                    bytes_in: a.bytes_in(),
                    bytes_out: a.bytes_out(),
                };
                store::end(&tx, id, &ending, crate::db::now())?;
                let mut d = json!({"reason": reason.as_str(), "detail": detail, "seconds": secs,
                               "bytes_in": a.bytes_in(), "bytes_out": a.bytes_out()});
                if left_out > 0 {
                    d["recording_left_out"] = json!(left_out);
                }
                audit::append(
                    &tx,
                    &Event::new(&actor, &src, "session.close", "session")
                        .id(id)
                        .detail(d),
                )?;
                tx.commit().map_err(AppError::from)
            })
            .await;
        if let Err(e) = done {
            log::error!("session {id}: recording its end failed: {e}");
        }
        log::info!("session {id} ended: {}", reason.as_str());
        if sweep.await {
            mark_swept(&self.app, id).await;
        }
    }
}

async fn mark_swept(app: &App, id: SessionId) {
    let r = app
        .db
        .write(move |c| store::set_swept(c, id, crate::db::now()).map_err(AppError::from))
        .await;
    if let Err(e) = r {
        log::error!("session {id}: recording its sweep failed: {e}");
    }
}

/// How often each node's sweeper looks for sessions left unswept.
const SWEEP_EVERY: Duration = Duration::from_secs(2);

/// One node's sweeper: ends the processes of its sessions that ended
/// unswept (gpudock killed, the node gone meanwhile) as soon as the node
/// answers: at start-up, and when it comes back. A session still finishing
/// (registered live) sweeps itself.
async fn sweeper(app: App, node: NodeId, cancel: CancellationToken) {
    loop {
        let pending = app
            .db
            .read(move |c| store::unswept(c, node).map_err(AppError::from))
            .await;
        match pending {
            // A sweep cut short by the stop is done at the next start.
            Ok(list) => tokio::select! {
                _ = cancel.cancelled() => return,
                () = sweep_node(&app, node, &list) => {}
            },
            Err(e) => log::warn!("session sweeper: node {node}: {e}"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(SWEEP_EVERY) => {}
        }
    }
}

async fn sweep_node(app: &App, node: NodeId, list: &[store::Unswept]) {
    let list: Vec<_> = list.iter().filter(|s| !app.live.is_live(s.id.0)).collect();
    if list.is_empty() {
        return;
    }
    let Ok(d) = crate::nodes::client(app, node).await else {
        return; // still down: next time
    };
    for s in list {
        if sweep(&d, &s.container_id, &s.exec_tag, SWEEP_WITHIN).await {
            log::info!(
                "session {}: processes left in {} ended",
                s.id,
                s.container_id
            );
            mark_swept(app, s.id).await;
        }
    }
}

/// Keeps the live figures of open sessions in their records (every 2 s),
/// ends what users hold under an access generation gone stale, at start
/// closes the records a previous process left open, and runs the per-node
/// sweepers (see [`sweeper`]).
pub async fn run(app: App, cancel: CancellationToken) {
    match app
        .db
        .write(|c| store::close_orphans(c, crate::db::now()).map_err(AppError::from))
        .await
    {
        Ok(0) => {}
        Ok(n) => {
            log::warn!("{n} session record(s) left open by a previous run closed (reason error)")
        }
        Err(e) => log::error!("closing session records left open: {e}"),
    }
    let sweepers = tokio::spawn(crate::nodes::per_node(
        app.clone(),
        cancel.clone(),
        "session sweep",
        sweeper,
    ));
    figures(&app, &cancel).await;
    if let Err(e) = sweepers.await {
        log::error!("session sweepers failed: {e}");
    }
}

/// Writes the live figures of open sessions every 2 s until `cancel`, and
/// ends what users hold under an access generation gone stale.
async fn figures(app: &App, cancel: &CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        // Backstop of the revocations made here (which end at once): an
        // account changed by another process (`gpudock admin
        // reset-password`) loses what it holds live within a tick.
        if let Err(e) = crate::auth::end_stale_access(app).await {
            log::warn!("checking live access: {e}");
        }
        let snap = app.live.snapshot();
        if snap.is_empty() {
            continue;
        }
        let now = crate::db::now();
        let r = app
            .db
            .write(move |c| {
                let tx = c.transaction()?;
                let mut announce = false;
                for s in snap.iter().filter(|s| s.id > 0) {
                    let status = model::live_status(now - s.last_secs);
                    store::touch(
                        &tx,
                        SessionId(s.id),
                        status,
                        s.last_secs,
                        s.bytes_in,
                        s.bytes_out,
                    )?;
                    announce |= big_session_alert(&tx, s)?;
                }
                tx.commit()?;
                Ok::<_, AppError>(announce)
            })
            .await;
        match r {
            Ok(true) => crate::alerts::wake(app),
            Ok(false) => {}
            Err(e) => log::warn!("updating live session figures: {e}"),
        }
    }
}

/// Reports a live session's bytes to the alerts (event `session_bytes`:
/// a rule's N decides); whether something is to be announced.
fn big_session_alert(
    tx: &rusqlite::Connection,
    s: &crate::live::Snapshot,
) -> rusqlite::Result<bool> {
    let total = s.bytes_in.saturating_add(s.bytes_out);
    let ev = crate::alerts::Raised {
        kind: crate::alerts::EventKind::SessionBytes,
        subject: crate::alerts::Subject::Session(SessionId(s.id)),
        value: Some(total as f64),
        detail: format!("{total} bytes moved so far"),
    };
    Ok(crate::alerts::record_event(tx, &ev)?.announces())
}

/// Scoped list with filters: the rows of `window`, newest first, and how
/// many match.
pub async fn list(
    app: &App,
    me: &crate::auth::CurrentUser,
    f: Filter,
    window: crate::paging::Window,
) -> Result<crate::paging::Page<SessionRecord>, AppError> {
    let scope = me.scope();
    app.db
        .read(move |c| store::list(c, scope, &f, window).map_err(AppError::from))
        .await
}

/// One live session as a dashboard line: what it reaches and since when.
pub struct LiveLine {
    pub id: SessionId,
    pub instance_name: String,
    /// i18n keys of its protocol and status.
    pub protocol: &'static str,
    pub status: &'static str,
    pub started_at: i64,
}

/// The live sessions `me` may see (a member: their own), newest first.
pub async fn live_lines(
    app: &App,
    me: &crate::auth::CurrentUser,
) -> Result<Vec<LiveLine>, AppError> {
    let f = Filter {
        status: Some("live".into()),
        ..Filter::default()
    };
    let page = list(app, me, f, crate::paging::Window::first(20)).await?;
    Ok(page
        .items
        .into_iter()
        .map(|s| LiveLine {
            id: s.id,
            protocol: pages::protocol_key(s.protocol.as_str()),
            status: pages::status_key(s.status.as_str()),
            instance_name: s.instance_name,
            started_at: s.started_at,
        })
        .collect())
}

pub async fn get(
    app: &App,
    me: &crate::auth::CurrentUser,
    id: SessionId,
) -> Result<SessionRecord, AppError> {
    let scope = me.scope();
    app.db
        .read(move |c| store::get(c, scope, id).map_err(AppError::from))
        .await?
        .ok_or(AppError::NotFound)
}

/// Ends the live tunnels to instance `id`, and the proxied requests and
/// WebSockets to it, at once (it stopped or was deleted): what they
/// carried is gone, and a tunnel must not outlive the instance it names.
/// Terminals end by themselves with the container.
pub async fn end_tunnels_to(
    app: &App,
    id: InstanceId,
    reason: EndReason,
) -> Result<usize, AppError> {
    let live = app
        .db
        .read(move |c| store::live_tunnels(c, id).map_err(AppError::from))
        .await?;
    // Proxied requests and WebSockets to it end with them.
    let held = app.live.stop_instance(id.0, reason.as_str());
    Ok(held
        + live
            .iter()
            .filter(|s| app.live.stop(s.0, reason.as_str()))
            .count())
}

/// The live sessions (every protocol) to instance `id`.
pub async fn live_on(app: &App, id: InstanceId) -> Result<Vec<store::LiveOn>, AppError> {
    app.db
        .read(move |c| store::live_on(c, id).map_err(AppError::from))
        .await
}

/// Ends every live session to instance `id` with `reason` (its lease
/// ended, it is reclaimed); how many were live. Each session's own loop
/// records the end; this waits (briefly) for them to do so.
pub async fn end_all_to(app: &App, id: InstanceId, reason: EndReason) -> Result<usize, AppError> {
    let live = live_on(app, id).await?;
    app.live.stop_instance(id.0, reason.as_str());
    let ended = live
        .iter()
        .filter(|s| app.live.stop(s.id.0, reason.as_str()))
        .count();
    for _ in 0..100 {
        if !live.iter().any(|s| app.live.is_live(s.id.0)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(ended)
}

/// Force-terminates a live session in the caller's scope (whoever holds
/// the terminate permission: admins by default): its client is disconnected
/// within a second; the session's own loop records the end.
pub async fn terminate(
    app: &App,
    me: &crate::auth::CurrentUser,
    id: SessionId,
    src: &Source,
) -> Result<SessionRecord, AppError> {
    let rec = get(app, me, id).await?;
    let was_live = app.live.stop(id.0, EndReason::AdminForce.as_str());
    let detail = json!({"user": rec.username, "instance": rec.instance_name, "was_live": was_live});
    let outcome = if was_live {
        Outcome::Success
    } else {
        Outcome::Failure
    };
    audit::record(&app.db, me.actor(), src.clone(), move |a, s| {
        Event::new(a, s, "session.terminate", "session")
            .id(id)
            .outcome(outcome)
            .detail(detail)
    })
    .await?;
    if !was_live {
        return Err(AppError::Conflict(crate::error::FieldErrors::from([(
            "id",
            crate::error::FieldError::new("err.session_not_live"),
        )])));
    }
    // Wait (briefly) for the session's loop to record its end.
    for _ in 0..40 {
        if !app.live.is_live(id.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    get(app, me, id).await
}

/// The recording of a session in scope: its file path.
pub async fn recording_path(
    app: &App,
    me: &crate::auth::CurrentUser,
    id: SessionId,
) -> Result<std::path::PathBuf, AppError> {
    let scope = me.scope();
    let file = app
        .db
        .read(move |c| store::recording(c, scope, id).map_err(AppError::from))
        .await?
        .ok_or(AppError::NotFound)?;
    // Names are ours (`<id>.cast.gz`, `<id>.cast` before compression);
    // refuse anything else.
    if file.contains('/') || file.contains("..") {
        return Err(AppError::NotFound);
    }
    Ok(app.config.recordings_dir().join(file))
}
