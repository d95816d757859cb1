//! Alerts (告警中心): metric rules evaluated against the latest samples of
//! the metrics hub every collection interval, event rules fed by whatever
//! raises an event ([`raise_event`], see [`events`]), and the alerts they
//! raise, repeat and resolve (one open alert per rule and target). The
//! decision is pure ([`eval`], [`storm`]); this module owns the task that
//! feeds it, writes what it decided and sends the announcements (a storm
//! of one rule grouped into one message).

pub mod api;
mod channel_pages;
mod channels;
pub mod direct;
pub mod eval;
pub mod events;
mod facts;
mod list;
mod manage;
pub mod model;
pub mod notify;
pub mod pages;
mod recipients;
mod sealed;
mod send;
pub mod shipped;
mod store;
pub mod storm;
mod windows;

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::db::Db;
use crate::error::AppError;
use crate::ids::{InstanceId, NodeId};
use crate::metrics::Hub;
use crate::metrics::model::Target;
use eval::{Pending, Transition};
use model::{Rule, RuleId};

pub use events::{EventKind, Raised, Recorded, Subject};
pub use store::{AlertRow, DeliveryRow};

/// What one cycle did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Cycle {
    pub rules: usize,
    pub fired: usize,
    pub repeated: usize,
    pub resolved: usize,
}

/// The engine between cycles: what has held but not yet for long enough,
/// and where announcements go (none: alerts are only recorded).
#[derive(Default)]
pub struct Engine {
    pending: Pending,
    notifier: Option<notify::Notifier>,
    storm: storm::Storm,
}

impl Engine {
    pub fn with_notifier(notifier: notify::Notifier) -> Self {
        Engine {
            notifier: Some(notifier),
            ..Engine::default()
        }
    }

    /// Sends announcements through the storm grouping (recorded only
    /// without a notifier).
    fn send(&mut self, notices: Vec<notify::Notice>, now: i64) {
        let out = self.storm.admit(notices, now);
        if let Some(n) = &self.notifier {
            out.into_iter().for_each(|x| n.send(x));
        }
    }

    /// At shutdown: sends what storm windows still hold (a grouped message
    /// per rule) instead of losing it; returns how many messages.
    pub fn flush(&mut self) -> usize {
        let held = self.storm.flush();
        let n = held.len();
        if let Some(q) = &self.notifier {
            held.into_iter().for_each(|x| q.send(x));
        }
        n
    }

    /// Sends what event alerts owe their channels, alerts suppressed while
    /// their node was down that still fire now it is back, and what storm
    /// windows that ended by `now` held; returns how many alerts were
    /// announced.
    pub async fn announce(&mut self, db: &Db, now: i64) -> Result<usize, AppError> {
        let notices = db
            .write(move |c| {
                let tx = c.transaction()?;
                let mut out = Vec::new();
                for (record, event) in events::take_pending(&tx)? {
                    out.extend(store::notice(&tx, record, event)?);
                }
                // Alerts kept quiet while their node was down, still
                // firing now that it is back: announced now.
                for record in store::unsuppress_returned(&tx, now)? {
                    out.extend(store::notice(&tx, record, notify::Event::Fired)?);
                }
                tx.commit()?;
                Ok::<_, AppError>(out)
            })
            .await?;
        let n = notices.len();
        if n > 0 {
            self.send(notices, now);
        }
        let due = self.storm.due(now);
        if let Some(n) = &self.notifier {
            due.into_iter().for_each(|x| n.send(x));
        }
        Ok(n)
    }

    /// One evaluation at `now` (the clock is the caller's). Samples older
    /// than `stale_after` seconds count as missing.
    pub async fn cycle(
        &mut self,
        db: &Db,
        hub: &Hub,
        now: i64,
        stale_after: i64,
    ) -> Result<Cycle, AppError> {
        let (rules, open) = db
            .read(|c| {
                let (rules, broken) = store::enabled_rules(c)?;
                for name in broken {
                    log::warn!("alert rule {name:?} has conditions that no longer apply; skipped");
                }
                Ok::<_, AppError>((rules, store::open_alerts(c)?))
            })
            .await?;
        let latest = hub.latest();
        let out = eval::evaluate(
            &rules,
            &latest,
            &open,
            &mut self.pending,
            now,
            now - stale_after,
        );
        let mut done = Cycle {
            rules: rules.len(),
            ..Cycle::default()
        };
        if out.is_empty() {
            return Ok(done);
        }
        for t in &out {
            match t {
                Transition::Fire { .. } => done.fired += 1,
                Transition::Repeat { .. } => done.repeated += 1,
                Transition::Resolve { .. } => done.resolved += 1,
            }
        }
        let notices = db.write(move |c| apply(c, &rules, &out, now)).await?;
        self.send(notices, now);
        Ok(done)
    }
}

/// Writes a cycle's transitions in one transaction; returns what to
/// announce.
fn apply(
    c: &mut rusqlite::Connection,
    rules: &[Rule],
    out: &[Transition],
    now: i64,
) -> Result<Vec<notify::Notice>, AppError> {
    use notify::Event;
    let (nodes, instances) = store::names(c)?;
    let quiet = store::nodes_in_maintenance(c, now)?;
    let rule = |id: RuleId| rules.iter().find(|r| r.id == id);
    let tx = c.transaction()?;
    let mut announce = Vec::new();
    for t in out {
        match *t {
            Transition::Fire {
                rule: id,
                target,
                metric,
                value,
            } => {
                let Some(r) = rule(id) else { continue };
                if quiet.contains(&target.node()) {
                    continue;
                }
                let (message, facts) = message(r, &target, metric, value, &nodes, &instances);
                let facts = facts.json();
                // A GPU or an instance of a node that is down: recorded
                // as suppressed, not announced.
                let suppressed = !matches!(target, Target::Node { .. })
                    && events::node_down(&tx, target.node())?;
                let a = store::NewAlert {
                    rule: id,
                    target,
                    metric,
                    value,
                    level: r.level,
                    message: &message,
                    facts: &facts,
                    now,
                };
                if let Some(record) = store::insert_alert(&tx, &a)? {
                    log::warn!("alert {record} ({}): {message}", r.level);
                    if suppressed {
                        store::suppress(&tx, record)?;
                    } else {
                        announce.push((record, Event::Fired));
                    }
                }
            }
            Transition::Repeat { target, .. } if quiet.contains(&target.node()) => {}
            Transition::Repeat { record, .. } if store::is_suppressed(&tx, record)? => {}
            Transition::Repeat { record, value, .. } => {
                store::renotify(&tx, record, value, now)?;
                announce.push((record, Event::Repeated));
            }
            Transition::Resolve { record, reason, .. } => {
                let quiet = store::is_suppressed(&tx, record)?;
                if store::resolve(&tx, record, reason, now)? && !quiet {
                    log::info!("alert {record} resolved ({reason})");
                    announce.push((record, Event::Resolved));
                }
            }
        }
    }
    let mut notices = Vec::with_capacity(announce.len());
    for (record, event) in announce {
        notices.extend(store::notice(&tx, record, event)?);
    }
    tx.commit()?;
    Ok(notices)
}

/// What a new alert says: the rule, what it is about by name, and the
/// value against the condition that held (in English, and as facts for
/// other languages).
fn message(
    rule: &Rule,
    target: &Target,
    metric: &str,
    value: f64,
    nodes: &std::collections::HashMap<NodeId, String>,
    instances: &std::collections::HashMap<InstanceId, String>,
) -> (String, facts::Facts) {
    let node = |n: NodeId| nodes.get(&n).cloned().unwrap_or_else(|| n.to_string());
    let about = match *target {
        Target::Node { node: n } => facts::About::Node { node: node(n) },
        Target::Gpu { node: n, gpu } => facts::About::Gpu { gpu, node: node(n) },
        Target::Instance { node: n, instance } => facts::About::Instance {
            instance: instances
                .get(&instance)
                .cloned()
                .unwrap_or_else(|| format!("#{instance}")),
            node: node(n),
        },
    };
    let condition = rule
        .conditions
        .iter()
        .find(|c| c.metric == metric)
        .map(|c| (c.op.to_string(), c.threshold));
    let f = facts::Facts {
        about,
        measured: Some(facts::Measured {
            metric: metric.to_string(),
            value,
            condition,
        }),
        event: None,
    };
    (facts::line(&f, &rule.name, crate::i18n::Tr::english()), f)
}

/// Raises an event (see [`events`]): the one way every feature reports
/// something an event rule may alert on: the node health loop (a node
/// unreachable), the instance sync (a container exited, OOM-killed or
/// restarting in a loop), the sign-in lockout (an account locked), the GPU
/// collectors (an XID error), backups and leases. Returns what it recorded;
/// the engine announces it at once.
pub async fn raise_event(app: &App, ev: Raised) -> Result<Recorded, AppError> {
    raise_events(app, vec![ev]).await
}

/// Raises several events at once (one transaction: a storm of them is
/// announced as one message).
pub async fn raise_events(app: &App, evs: Vec<Raised>) -> Result<Recorded, AppError> {
    if evs.is_empty() {
        return Ok(Recorded::default());
    }
    let now = crate::db::now();
    let done = app
        .db
        .write(move |c| {
            let tx = c.transaction()?;
            let mut r = Recorded::default();
            for ev in &evs {
                let one = events::record(&tx, ev, now)?;
                r.fired += one.fired;
                r.repeated += one.repeated;
                r.suppressed += one.suppressed;
            }
            tx.commit()?;
            Ok::<_, AppError>(r)
        })
        .await?;
    if done.announces() {
        wake(app);
    }
    Ok(done)
}

/// Records an event in the caller's transaction (written with what caused
/// it); call [`wake`] after the commit so it is announced at once.
pub fn record_event(c: &rusqlite::Connection, ev: &Raised) -> rusqlite::Result<Recorded> {
    events::record(c, ev, crate::db::now())
}

/// Tells the engine that event alerts wait to be announced.
pub fn wake(app: &App) {
    app.alert_wake.notify_one();
}

/// The condition behind an event cleared (the node answers again): its
/// open alerts about `subject` resolve, announced as such.
pub async fn clear_event(app: &App, kind: EventKind, subject: Subject) -> Result<usize, AppError> {
    let now = crate::db::now();
    let n = app
        .db
        .write(move |c| events::clear(c, kind, &subject, now).map_err(AppError::from))
        .await?;
    if n > 0 {
        log::info!("{n} {kind} alert(s) of {} resolved", subject.text());
        wake(app);
    }
    Ok(n)
}

/// [`clear_event`] in the caller's transaction (written with what cleared
/// it); call [`wake`] after the commit when it resolved something.
pub fn clear_event_in(
    c: &rusqlite::Connection,
    kind: EventKind,
    subject: &Subject,
) -> rusqlite::Result<usize> {
    events::clear(c, kind, subject, crate::db::now())
}

/// The newest `limit` alerts, newest first.
pub async fn recent(db: &Db, limit: i64) -> Result<Vec<AlertRow>, AppError> {
    db.read(move |c| store::recent(c, limit).map_err(AppError::from))
        .await
}

/// Adds a generic webhook channel: a name, an http(s) URL and the secret
/// that signs its messages (sealed before it is stored). Returns its id;
/// bad input is a validation error naming the field, a taken name a
/// conflict.
pub async fn create_webhook(
    db: &Db,
    sealer: &crate::secrets::Sealer,
    name: &str,
    url: &str,
    secret: &str,
) -> Result<i64, AppError> {
    use crate::error::{FieldError, FieldErrors};
    let mut errors = FieldErrors::new();
    let name = crate::validate::required_text(&mut errors, "name", name, 100);
    let url = crate::validate::required_text(&mut errors, "url", url, 2000);
    if !url.is_empty() && notify::valid_url(&url).is_err() {
        errors.insert("url", FieldError::new("err.alert_url"));
    }
    if secret.chars().count() < 16 {
        errors.insert("secret", FieldError::new("err.alert_secret"));
    }
    if !errors.is_empty() {
        return Err(AppError::Validation(errors));
    }
    let sealed = sealer.seal(secret.as_bytes())?;
    db.write(move |c| {
        store::insert_webhook(c, &name, &url, &sealed, crate::db::now())
            .map_err(crate::error::on_unique("name"))
    })
    .await
}

/// Sends the alerts of `rule` to `channel` as well.
pub async fn route(db: &Db, rule: RuleId, channel: i64) -> Result<(), AppError> {
    db.write(move |c| store::route(c, rule, channel).map_err(AppError::from))
        .await
}

/// The delivery log of a channel, oldest first.
pub async fn deliveries(db: &Db, channel: i64) -> Result<Vec<DeliveryRow>, AppError> {
    db.read(move |c| store::deliveries(c, channel).map_err(AppError::from))
        .await
}

/// The pause before a failed delivery's second try (doubled for the third).
const BACKOFF: Duration = Duration::from_secs(2);

/// Evaluates the rules every metrics collection interval until `cancel`,
/// and sends what fires to the rules' channels. Owned by `serve` and
/// joined at shutdown (with its sender).
pub async fn run(app: App, cancel: CancellationToken) {
    let sealer = app.sealer.clone();
    match app
        .db
        .write(move |c| sealed::seal_plain_proxies(c, &sealer))
        .await
    {
        Ok(0) => {}
        Ok(n) => log::info!("alerts: {n} channel proxy setting(s) stored plain are now sealed"),
        Err(e) => log::error!("alerts: sealing channel proxies stored plain: {e}"),
    }
    let sender = notify::Sender {
        db: app.db.clone(),
        sealer: app.sealer.clone(),
        backoff: BACKOFF,
    };
    // The sender stops after the engine's last messages (what storm
    // windows held at shutdown), not with the engine.
    let stop_sending = CancellationToken::new();
    let (notifier, sending) = notify::start(sender, stop_sending.clone());
    let mut engine = Engine::with_notifier(notifier);
    evaluate_until(&app, &mut engine, &cancel).await;
    let held = engine.flush();
    if held > 0 {
        log::info!("alerts: {held} grouped message(s) held by storm windows sent at shutdown");
    }
    drop(engine);
    stop_sending.cancel();
    if let Err(e) = sending.await {
        log::error!("alert notifications failed: {e}");
    }
}

async fn evaluate_until(app: &App, engine: &mut Engine, cancel: &CancellationToken) {
    let secs = app.config.metrics.interval_secs.max(1);
    let mut tick = tokio::time::interval(Duration::from_secs(secs));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    // A sample missed by two collections is no longer current.
    let stale_after = i64::try_from(secs.saturating_mul(3)).unwrap_or(i64::MAX);
    // Storm windows end on time even when the metrics interval is long.
    let mut flush = tokio::time::interval(Duration::from_secs(secs.min(5)));
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        let evaluate = tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => true,
            _ = flush.tick() => false,
            _ = app.alert_wake.notified() => false,
        };
        let now = crate::db::now();
        if evaluate
            && let Err(e) = engine
                .cycle(&app.db, &app.metrics.hub, now, stale_after)
                .await
        {
            log::warn!("alert evaluation: {e}");
        }
        if let Err(e) = engine.announce(&app.db, now).await {
            log::warn!("alert announcements: {e}");
        }
    }
}

#[cfg(test)]
mod tests;
