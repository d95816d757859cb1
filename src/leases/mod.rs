//! Leases (租期, issue 14): an instance's lease end and buffer period
//! (缓冲期), the reminders 7, 3 and 1 days before the end (a web banner and
//! a notice at jumpbox sign-in, each sent once), the stop at the end (its
//! sessions end with `lease_expired`, new ones are refused by
//! [`refusal`]), and the reclaim (回收) after the buffer: visible steps that
//! check processes and sessions, end them, remove the container, then the
//! data volume, release the GPUs and keep the record as `reclaimed`. An
//! admin extends a lease (续期) or reclaims by hand; every change audited.

pub mod api;
mod early_return;
pub mod model;
pub mod pages;
mod store;

pub use early_return::{return_by, return_preview};

use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::audit::{self, Actor, Event, Outcome, Source};
use crate::auth::CurrentUser;
use crate::docker::containers;
use crate::error::{AppError, FieldError, FieldErrors, docker_error};
use crate::ids::{InstanceId, UserId};
use crate::instances::{Instance, InstanceStatus};
use crate::sessions::EndReason;
pub use model::{DAY, LeaseState};
pub use store::{Notice, Request, Step};

/// The one rule of an instance's lease state (see [`model::state`]).
pub fn state(end: Option<i64>, reclaimed_at: Option<i64>, now: i64) -> LeaseState {
    model::state(end, reclaimed_at, now)
}

/// The buffer period in seconds (`[leases] buffer_days`).
pub fn buffer_secs(app: &App) -> i64 {
    i64::from(app.config.leases.buffer_days) * DAY
}

/// Until when the data of a lease ending at `end` is kept.
pub fn keep_until(app: &App, end: i64) -> i64 {
    model::keep_until(end, buffer_secs(app))
}

/// Why a new session (shell, command, SFTP, tunnel) to instance `id` is
/// refused at `now`: its lease ended (or it was reclaimed). The one lease
/// decision every way in asks, inside the transaction that opens the
/// session.
pub fn refusal(
    conn: &rusqlite::Connection,
    id: InstanceId,
    now: i64,
    buffer_secs: i64,
) -> rusqlite::Result<Option<String>> {
    Ok(store::ended(conn, id, now)?.map(|end| expired_message(end, buffer_secs)))
}

/// What a terminal is told about an ended lease (our own dates only).
pub fn expired_message(end: i64, buffer_secs: i64) -> String {
    let (end, keep) = (
        crate::web::render::fmt_ts(end),
        crate::web::render::fmt_ts(model::keep_until(end, buffer_secs)),
    );
    format!(
        "refused: the instance's lease ended at {end} UTC; back up your data by {keep} UTC \
         (实例租期已于 {end} UTC 到期，请在 {keep} UTC 前备份数据)"
    )
}

/// Latest lease end accepted (9999-12-31).
const MAX_LEASE_END: i64 = 253_402_300_799;

/// A `lease_end` field: absent (`None`), cleared (`Some(None)`: null or
/// empty) or Unix seconds.
pub fn lease_field(e: &mut FieldErrors, v: Option<&Value>) -> Option<Option<i64>> {
    match v {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::String(s)) if s.trim().is_empty() => Some(None),
        Some(v) => {
            let n = crate::validate::int_field(e, "lease_end", Some(v), 0, MAX_LEASE_END);
            match n {
                0 if !e.contains_key("lease_end") => {
                    e.insert(
                        "lease_end",
                        FieldError::with_detail("err.out_of_range", "1.."),
                    );
                    None
                }
                n => Some(Some(n)),
            }
        }
    }
}

/// The lease end of a new instance of `spec` for `me`: the one asked for
/// (in the future; beyond the spec's default length only for those who may
/// set lease ends), else the spec's default, else open-ended.
pub async fn at_creation(
    app: &App,
    me: &CurrentUser,
    spec_days: Option<i64>,
    asked: Option<&Value>,
) -> Result<Option<i64>, AppError> {
    let now = crate::db::now();
    let default = spec_days.map(|d| now + d * DAY);
    let mut e = FieldErrors::new();
    let asked = lease_field(&mut e, asked).flatten();
    if !e.is_empty() {
        return Err(AppError::Validation(e));
    }
    let Some(end) = asked else { return Ok(default) };
    if end <= now {
        return Err(AppError::field("lease_end", "err.leases.in_past"));
    }
    if let Some(limit) = default.filter(|l| end > *l) {
        let user = me.user.clone();
        let may = app
            .db
            .read(move |c| {
                let set = crate::auth::Action::Route {
                    method: "PATCH",
                    pattern: "/api/v1/instances/{id}",
                };
                crate::auth::holds(c, &user, set).map_err(AppError::from)
            })
            .await?;
        if !may {
            return Err(AppError::Validation(FieldErrors::from([(
                "lease_end",
                FieldError::with_detail(
                    "err.leases.beyond_default",
                    crate::web::render::fmt_ts(limit),
                ),
            )])));
        }
    }
    Ok(Some(end))
}

/// Runs the lease checker every `[leases] check_interval_secs` (at once on
/// start: a reclaim cut short by a stop resumes) until `cancel`.
pub async fn run(app: App, cancel: CancellationToken) {
    let period = Duration::from_secs(app.config.leases.check_interval_secs.max(1));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            r = cycle(&app, crate::db::now()) => {
                if let Err(e) = r {
                    log::error!("lease checker: {e}");
                }
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
        }
    }
}

/// One pass of the checker at `now`: reminders, stops at lease end,
/// reclaims after the buffer. One instance's failure (its node is
/// unreachable) is logged and retried next pass; the others go on.
pub async fn cycle(app: &App, now: i64) -> Result<(), AppError> {
    let buffer = buffer_secs(app);
    let leased = app
        .db
        .read(|c| store::leased(c).map_err(AppError::from))
        .await?;
    for l in leased {
        let Some(end) = l.lease_end else { continue };
        let done = match model::due(end, l.stopped, buffer, now) {
            model::Due::Nothing => Ok(()),
            model::Due::Remind(days) => remind(app, &l, end, days, now).await,
            model::Due::Stop => expire(app, &l, end, now).await,
            model::Due::Reclaim => reclaim(
                app,
                l.id,
                Actor::system(),
                Source::local(),
                EndReason::LeaseExpired,
            )
            .await
            .map(|_| ()),
        };
        if let Err(e) = done {
            log::warn!("lease checker: instance {} ({}): {e}", l.id, l.name);
        }
    }
    Ok(())
}

async fn remind(
    app: &App,
    l: &store::Leased,
    end: i64,
    days: i64,
    now: i64,
) -> Result<(), AppError> {
    let (id, user) = (l.id, l.user_id);
    let detail = json!({"days": days, "lease_end": end, "user_id": user, "name": l.name});
    // The alert rules' hook (事件告警 lease_expiring): raised with the
    // reminder, in its transaction, so each reminder raises it once.
    let event = crate::alerts::Raised {
        kind: crate::alerts::EventKind::LeaseExpiring,
        subject: crate::alerts::Subject::Lease(id.0),
        value: Some((end - now).max(0) as f64),
        detail: format!("the lease of instance {} ends in {days} day(s)", l.name),
    };
    let sent = app
        .db
        .write(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let sent = store::remind(&tx, id, end, days, now)?;
            if sent {
                let (a, s) = (Actor::system(), Source::local());
                let e = Event::new(&a, &s, "lease.reminder", "instance")
                    .id(id)
                    .detail(detail);
                audit::append(&tx, &e)?;
                crate::alerts::record_event(&tx, &event)?;
            }
            tx.commit()?;
            Ok::<_, AppError>(sent)
        })
        .await?;
    if sent {
        crate::alerts::wake(app);
        mail_reminder(app, l, end, days).await;
    }
    Ok(())
}

/// The reminder by e-mail to the instance's user, in their language, when
/// the lab has an e-mail channel (bounded: the checker goes on after it).
async fn mail_reminder(app: &App, l: &store::Leased, end: i64, days: i64) {
    let (name, id) = (l.name.clone(), l.id.0);
    let keep = keep_until(app, end);
    let say = move |lang| {
        let tr = crate::i18n::Tr::new(lang);
        crate::alerts::direct::Message {
            level: crate::alerts::model::Level::P3,
            text: tr
                .t("leases.mail_reminder")
                .replace("{name}", &name)
                .replace("{end}", &crate::web::render::fmt_ts(end))
                .replace("{days}", &days.to_string())
                .replace("{keep}", &crate::web::render::fmt_ts(keep)),
            target: tr.t("leases.mail_target").replace("{name}", &name),
            instance_id: Some(id),
        }
    };
    let mailed = crate::alerts::direct::mail_user(app, UserId(l.user_id), say);
    match tokio::time::timeout(std::time::Duration::from_secs(60), mailed).await {
        Ok(Ok(true)) => {}
        Ok(Ok(false)) => log::info!(
            "lease reminder for instance {id}: not e-mailed (no address, no e-mail channel, or not delivered)"
        ),
        Ok(Err(e)) => log::warn!("lease reminder for instance {id}: {e}"),
        Err(_) => {
            log::warn!("lease reminder for instance {id}: e-mail still sending after 60 s, left")
        }
    }
}

/// At lease end: its live sessions end (`lease_expired`), the container
/// stops, the stop is recorded and audited.
async fn expire(app: &App, l: &store::Leased, end: i64, now: i64) -> Result<(), AppError> {
    let ended = crate::sessions::end_all_to(app, l.id, EndReason::LeaseExpired).await?;
    if let Some(cid) = &l.container_id {
        let d = crate::nodes::client(app, l.node_id).await?;
        let grace = i32::try_from(app.config.instances.stop_timeout_secs).unwrap_or(10);
        containers::stop(&d, cid, grace)
            .await
            .map_err(docker_error)?;
        let state = containers::state(&d, cid).await.map_err(docker_error)?;
        crate::instances::record_status(
            app,
            l.id,
            cid.clone(),
            InstanceStatus::of_container(state.as_deref()),
        )
        .await?;
    }
    let id = l.id;
    let detail = json!({"lease_end": end, "keep_until": keep_until(app, end),
                        "sessions_ended": ended, "name": l.name});
    app.db
        .write(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            if store::mark_stopped(&tx, id, end, now)? {
                let (a, s) = (Actor::system(), Source::local());
                let e = Event::new(&a, &s, "lease.expire", "instance")
                    .id(id)
                    .detail(detail);
                audit::append(&tx, &e)?;
            }
            tx.commit().map_err(AppError::from)
        })
        .await
}

/// What a reclaim would end: the processes running in the container
/// (`docker top`) and the live sessions to it.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub processes: Vec<String>,
    pub sessions: Vec<crate::sessions::LiveOn>,
}

async fn check(app: &App, l: &store::Leased) -> Result<Check, AppError> {
    let processes = match &l.container_id {
        Some(cid) => {
            let d = crate::nodes::client(app, l.node_id).await?;
            containers::top(&d, cid).await.map_err(docker_error)?
        }
        None => Vec::new(),
    };
    let sessions = crate::sessions::live_on(app, l.id).await?;
    Ok(Check {
        processes,
        sessions,
    })
}

/// The reclaim's steps, each recorded as it finishes (清理进度). A step
/// that fails (the node is unreachable) stops the reclaim with its error:
/// the next pass of the checker (or the admin) runs it again, and what the
/// instance holds is released only once its container is gone.
pub async fn reclaim(
    app: &App,
    id: InstanceId,
    actor: Actor,
    src: Source,
    reason: EndReason,
) -> Result<Vec<Step>, AppError> {
    let l = app
        .db
        .read(move |c| store::one(c, id).map_err(AppError::from))
        .await?
        .ok_or(AppError::NotFound)?;
    let mut steps = Vec::new();
    let checked = check(app, &l).await;
    let found = match &checked {
        Ok(c) => format!(
            "{} processes, {} live sessions",
            c.processes.len(),
            c.sessions.len()
        ),
        Err(e) => e.to_string(),
    };
    step(
        app,
        id,
        &mut steps,
        "check",
        checked.as_ref().map(|_| ()),
        found,
    )
    .await?;
    let checked = checked?;
    let ended = crate::sessions::end_all_to(app, id, reason).await;
    let n = ended.as_ref().map_or(0, |n| *n);
    step(
        app,
        id,
        &mut steps,
        "end_sessions",
        ended.map(|_| ()),
        format!("{n} ended"),
    )
    .await?;
    let target = l
        .container_id
        .clone()
        .unwrap_or_else(|| l.container_name.clone());
    let d = crate::nodes::client(app, l.node_id).await;
    let removed = match &d {
        Ok(d) => containers::remove(d, &target, None)
            .await
            .map_err(docker_error),
        Err(e) => Err(AppError::Upstream(e.to_string())),
    };
    step(
        app,
        id,
        &mut steps,
        "remove_container",
        removed,
        target.clone(),
    )
    .await?;
    let volume = match &d {
        Ok(d) => containers::remove_volume(d, &l.volume_name)
            .await
            .map_err(docker_error),
        Err(e) => Err(AppError::Upstream(e.to_string())),
    };
    step(
        app,
        id,
        &mut steps,
        "remove_volume",
        volume,
        l.volume_name.clone(),
    )
    .await?;
    let released = format!("GPUs {}", l.gpu_indices);
    steps.push(done_step("release", released));
    steps.push(done_step("record", "reclaimed".into()));
    let detail = json!({"name": l.name, "node_id": l.node_id, "container": target,
                        "volume": l.volume_name, "gpu_indices": l.gpu_indices,
                        "processes": checked.processes.len(), "sessions_ended": n,
                        "reason": reason.as_str()});
    let kept = steps.clone();
    app.db
        .write(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            store::set_steps(&tx, id, &kept)?;
            if store::finish_reclaim(&tx, id, crate::db::now())? {
                let e = Event::new(&actor, &src, "instance.reclaim", "instance")
                    .id(id)
                    .detail(detail);
                audit::append(&tx, &e)?;
            }
            tx.commit().map_err(AppError::from)
        })
        .await?;
    Ok(steps)
}

fn done_step(name: &str, detail: String) -> Step {
    Step {
        step: name.into(),
        status: "done".into(),
        detail,
        at: crate::db::now(),
    }
}

/// Records one step (done, or failed with the error) and gives back the
/// error of a failed one.
async fn step(
    app: &App,
    id: InstanceId,
    steps: &mut Vec<Step>,
    name: &str,
    r: Result<(), impl std::fmt::Display>,
    detail: String,
) -> Result<(), AppError> {
    let (status, detail, err) = match r {
        Ok(()) => ("done", detail, None),
        Err(e) => ("failed", format!("{detail}: {e}"), Some(e.to_string())),
    };
    steps.push(Step {
        step: name.into(),
        status: status.into(),
        detail,
        at: crate::db::now(),
    });
    let kept = steps.clone();
    app.db
        .write(move |c| store::set_steps(c, id, &kept).map_err(AppError::from))
        .await?;
    match err {
        None => Ok(()),
        Some(e) => Err(AppError::Upstream(e)),
    }
}

/// The steps of instance `id`'s last reclaim, if `me` reaches it.
pub async fn steps(app: &App, me: &CurrentUser, id: InstanceId) -> Result<Vec<Step>, AppError> {
    crate::instances::get(app, me, id).await?;
    app.db
        .read(move |c| store::steps(c, id).map_err(AppError::from))
        .await
}

/// What an admin's reclaim of instance `id` would end (shown before it
/// asks for confirmation).
pub async fn preview(app: &App, me: &CurrentUser, id: InstanceId) -> Result<Check, AppError> {
    let inst = reclaimable(app, me, id).await?;
    let l = app
        .db
        .read(move |c| store::one(c, inst.id).map_err(AppError::from))
        .await?
        .ok_or(AppError::NotFound)?;
    check(app, &l).await
}

async fn reclaimable(app: &App, me: &CurrentUser, id: InstanceId) -> Result<Instance, AppError> {
    let inst = crate::instances::get(app, me, id).await?;
    let refuse = |key| AppError::Conflict(FieldErrors::from([("status", FieldError::new(key))]));
    match inst.status {
        InstanceStatus::Creating => Err(refuse("err.still_creating")),
        InstanceStatus::Reclaimed => Err(refuse("err.leases.reclaimed")),
        InstanceStatus::Deleting => Err(refuse("err.leases.deleting")),
        _ => Ok(inst),
    }
}

/// An admin's reclaim (回收), confirmed after the preview: the same steps
/// as the checker's; sessions end as `admin_force`.
pub async fn reclaim_by(
    app: &App,
    me: &CurrentUser,
    id: InstanceId,
    confirm: bool,
    src: &Source,
) -> Result<Vec<Step>, AppError> {
    reclaimable(app, me, id).await?;
    confirmed(
        app,
        me,
        id,
        confirm,
        src,
        EndReason::AdminForce,
        "instance.reclaim",
    )
    .await
}

/// Runs a confirmed reclaim and audits it as `action` (its failure too).
async fn confirmed(
    app: &App,
    me: &CurrentUser,
    id: InstanceId,
    confirm: bool,
    src: &Source,
    reason: EndReason,
    action: &'static str,
) -> Result<Vec<Step>, AppError> {
    if !confirm {
        return Err(AppError::field("confirm", "err.leases.confirm"));
    }
    let r = reclaim(app, id, me.actor(), src.clone(), reason).await;
    let reclaim_failed = r.is_err();
    if reclaim_failed || action != "instance.reclaim" {
        let (outcome, detail) = match &r {
            Ok(steps) => (Outcome::Success, json!({"steps": steps.len()})),
            Err(e) => (Outcome::Failure, json!({"error": e.to_string()})),
        };
        audit::record(&app.db, me.actor(), src.clone(), move |a, s| {
            Event::new(a, s, action, "instance")
                .id(id)
                .outcome(outcome)
                .detail(detail)
        })
        .await?;
    }
    r
}

/// Sets (extends, 续期) or clears instance `id`'s lease end: an admin's
/// (the route's permission record is admin-only), audited. A lease end in
/// the past is allowed (the checker then ends it at its next pass).
pub async fn set_lease(
    app: &App,
    me: &CurrentUser,
    id: InstanceId,
    end: Option<i64>,
    src: &Source,
) -> Result<Instance, AppError> {
    let inst = reclaimable(app, me, id).await?;
    let (actor, src) = (me.actor(), src.clone());
    let detail = json!({"name": inst.name, "old": inst.lease_end, "new": end});
    app.db
        .write(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            if !store::set_lease(&tx, id, end, crate::db::now())? {
                return Err(AppError::NotFound);
            }
            let e = Event::new(&actor, &src, "instance.lease", "instance")
                .id(id)
                .detail(detail);
            audit::append(&tx, &e)?;
            tx.commit().map_err(AppError::from)
        })
        .await?;
    crate::instances::get(app, me, id).await
}

/// The lease notices of what `me` reaches: reminders sent and leases ended.
pub async fn notices(app: &App, me: &CurrentUser) -> Result<Vec<Notice>, AppError> {
    let scope = me.scope();
    let kept = app
        .db
        .cached(format!("lease notices {scope:?}"), move |c| {
            store::notices(c, scope, crate::db::now()).map_err(AppError::from)
        })
        .await?;
    Ok(Vec::clone(&kept))
}

/// The banners of what `me` reaches, in `tr`'s language: a lease ending
/// soon (a reminder was sent) or ended ("back up your data by <date>").
pub async fn banners(
    app: &App,
    me: &CurrentUser,
    tr: crate::i18n::Tr,
) -> Result<Vec<String>, AppError> {
    let (now, buffer) = (crate::db::now(), buffer_secs(app));
    Ok(notices(app, me)
        .await?
        .into_iter()
        .map(|n| {
            let key = if n.lease_end <= now {
                "leases.banner_ended"
            } else {
                "leases.banner_ending"
            };
            let keep = crate::web::render::fmt_ts(model::keep_until(n.lease_end, buffer));
            tr.t(key)
                .replace("{name}", &n.name)
                .replace("{end}", &crate::web::render::fmt_ts(n.lease_end))
                .replace("{date}", &keep)
        })
        .collect())
}

/// The notice printed at jumpbox sign-in (names escaped for the terminal),
/// or none.
pub async fn ssh_notice(app: &App, me: &CurrentUser) -> Result<Option<String>, AppError> {
    let list = notices(app, me).await?;
    if list.is_empty() {
        return Ok(None);
    }
    let (now, buffer) = (crate::db::now(), buffer_secs(app));
    let mut text = String::new();
    for n in list {
        let name = crate::escape::for_terminal(&n.name);
        let end = crate::web::render::fmt_ts(n.lease_end);
        let keep = crate::web::render::fmt_ts(model::keep_until(n.lease_end, buffer));
        let line = if n.lease_end <= now {
            format!(
                "[gpudock] the lease of instance \"{name}\" ended at {end} UTC: back up your data by {keep} UTC \
                 (实例 \"{name}\" 租期已到期，请在 {keep} UTC 前备份数据)"
            )
        } else {
            format!(
                "[gpudock] the lease of instance \"{name}\" ends at {end} UTC; ask for an extension or back up \
                 your data by {keep} UTC (实例 \"{name}\" 租期将于 {end} UTC 到期，请续期或在 {keep} UTC 前备份数据)"
            )
        };
        text.push_str(&line);
        text.push_str("\r\n");
    }
    Ok(Some(text))
}

/// The reminders sent for instance `id` (lease end, days), newest first.
pub async fn reminders(app: &App, id: InstanceId) -> Result<Vec<(i64, i64)>, AppError> {
    app.db
        .read(move |c| store::reminders(c, id).map_err(AppError::from))
        .await
}

/// An owner's (or member's) request to extend the lease of instance `id`
/// to `lease_end` (续期申请), for an admin to approve; audited. One request
/// per instance is pending at a time.
pub async fn request(
    app: &App,
    me: &CurrentUser,
    id: InstanceId,
    lease_end: Option<&Value>,
    reason: &str,
    src: &Source,
) -> Result<Request, AppError> {
    let mut e = FieldErrors::new();
    let end = lease_field(&mut e, lease_end).flatten();
    let reason = crate::validate::multiline_text(&mut e, "reason", reason, 500);
    if end.is_none() && !e.contains_key("lease_end") {
        e.insert("lease_end", FieldError::new("err.required"));
    }
    if !e.is_empty() {
        return Err(AppError::Validation(e));
    }
    let end = end.unwrap_or_default();
    let inst = reclaimable(app, me, id).await?;
    if end <= crate::db::now().max(inst.lease_end.unwrap_or(0)) {
        return Err(AppError::field("lease_end", "err.leases.not_later"));
    }
    let new = store::NewRequest {
        instance_id: id,
        user_id: me.user.id.0,
        tenant_id: inst.tenant_id,
        lease_end: end,
        reason,
    };
    let (actor, src, scope) = (me.actor(), src.clone(), me.scope());
    app.db
        .write(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let Some(rid) = store::insert_request(&tx, &new, crate::db::now())? else {
                return Err(AppError::Conflict(FieldErrors::from([(
                    "lease_end",
                    FieldError::new("err.leases.pending"),
                )])));
            };
            let detail = json!({"instance_id": id, "lease_end": end, "reason": new.reason});
            let e = Event::new(&actor, &src, "lease.request", "lease_request")
                .id(rid)
                .detail(detail);
            audit::append(&tx, &e)?;
            let made = store::requests(&tx, scope, Some(id))?
                .into_iter()
                .find(|r| r.id == rid)
                .ok_or(AppError::NotFound)?;
            tx.commit()?;
            Ok(made)
        })
        .await
}

/// The extension requests `me` reaches (of one instance, or all).
pub async fn requests(
    app: &App,
    me: &CurrentUser,
    instance: Option<InstanceId>,
) -> Result<Vec<Request>, AppError> {
    let scope = me.scope();
    app.db
        .read(move |c| store::requests(c, scope, instance).map_err(AppError::from))
        .await
}

/// Approves (the lease end becomes the one asked for) or rejects a pending
/// request: an admin's (the routes' records are admin-only), audited.
pub async fn decide(
    app: &App,
    me: &CurrentUser,
    rid: i64,
    approve: bool,
    src: &Source,
) -> Result<Request, AppError> {
    let (actor, src, scope, by) = (me.actor(), src.clone(), me.scope(), me.user.id.0);
    app.db
        .write(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            if !store::requests(&tx, scope, None)?
                .iter()
                .any(|r| r.id == rid)
            {
                return Err(AppError::NotFound);
            }
            let now = crate::db::now();
            let Some((id, end)) = store::decide(&tx, rid, approve, by, now)? else {
                return Err(AppError::Conflict(FieldErrors::from([(
                    "status",
                    FieldError::new("err.leases.decided"),
                )])));
            };
            if approve && !store::set_lease(&tx, id, Some(end), now)? {
                return Err(AppError::Conflict(FieldErrors::from([(
                    "status",
                    FieldError::new("err.leases.reclaimed"),
                )])));
            }
            let action = if approve {
                "lease.request.approve"
            } else {
                "lease.request.reject"
            };
            let detail = json!({"instance_id": id, "lease_end": end});
            let e = Event::new(&actor, &src, action, "lease_request")
                .id(rid)
                .detail(detail);
            audit::append(&tx, &e)?;
            let r = store::requests(&tx, scope, Some(id))?
                .into_iter()
                .find(|r| r.id == rid)
                .ok_or(AppError::NotFound)?;
            tx.commit()?;
            Ok(r)
        })
        .await
}
