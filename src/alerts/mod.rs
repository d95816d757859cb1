//! Alerts (告警中心): metric rules evaluated against the latest samples of
//! the metrics hub every collection interval, event rules fed by whatever
//! raises an event ([`raise_event`], see [`events`]), and the alerts they
//! raise, repeat and resolve (one open alert per rule and target). The
//! decision is pure ([`eval`], [`storm`]); this module owns the task that
//! feeds it, writes what it decided and sends the announcements (a storm
//! of one rule grouped into one message).

pub mod api;
mod channels;
pub mod eval;
pub mod events;
mod facts;
mod manage;
pub mod model;
pub mod notify;
pub mod pages;
mod recipients;
mod sealed;
mod send;
mod store;
pub mod storm;

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
mod tests {
    use super::*;
    use crate::metrics::model::Sample;

    /// The engine reads the hub's latest samples and writes alerts that name
    /// the node; it fires after the duration and resolves when cooled.
    #[tokio::test]
    async fn the_engine_raises_and_resolves_alerts_from_the_hub() {
        let db = Db::open_memory().unwrap();
        db.write(|c| {
            c.execute_batch(
                "INSERT INTO nodes (id, name, public_ip, private_ip, created_at, updated_at)
                 VALUES (4, 'gpu-a', '10.0.0.4', '10.0.0.4', 0, 0)",
            )
            .map_err(AppError::from)
        })
        .await
        .unwrap();
        let hub = Hub::new(db.clone(), 5.0);
        let gpu = Target::Gpu {
            node: NodeId(4),
            gpu: 1,
        };
        let sample = |ts, value| Sample {
            target: gpu,
            metric: "temp_c",
            ts,
            value,
        };
        let mut engine = Engine::default();
        let t0 = 1_800_000_000;
        hub.record(vec![sample(t0, 95.0)]).await.unwrap();
        let c = engine.cycle(&db, &hub, t0, 45).await.unwrap();
        assert_eq!(
            (c.rules, c.fired),
            (2, 0),
            "the built-in rule waits a minute"
        );
        hub.record(vec![sample(t0 + 60, 96.0)]).await.unwrap();
        let c = engine.cycle(&db, &hub, t0 + 60, 45).await.unwrap();
        assert_eq!(c.fired, 1);
        let rows = recent(&db, 10).await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(
            rows[0].message,
            "GPU temperature: GPU 1 of node gpu-a: temp_c = 96.0 (>= 90)"
        );
        assert_eq!(
            (rows[0].status.as_str(), rows[0].target.as_str()),
            ("firing", "gpu:4:1")
        );
        // A second engine (a restart) does not fire it again: one alert per
        // (rule, target) while it is open.
        let mut restarted = Engine::default();
        hub.record(vec![sample(t0 + 75, 97.0)]).await.unwrap();
        let c = restarted.cycle(&db, &hub, t0 + 75, 45).await.unwrap();
        assert_eq!((c.fired, c.resolved), (0, 0));
        hub.record(vec![sample(t0 + 90, 60.0)]).await.unwrap();
        let c = restarted.cycle(&db, &hub, t0 + 90, 45).await.unwrap();
        assert_eq!(c.resolved, 1);
        let rows = recent(&db, 10).await.unwrap();
        assert_eq!(rows[0].status, "resolved");
        assert_eq!(rows[0].resolved_at, Some(t0 + 90));
        assert_eq!(rows[0].resolved_reason.as_deref(), Some("cleared"));
    }

    /// A metric alert about a GPU of a node that is down is recorded as
    /// suppressed and owes no announcement; the node's own alert is sent.
    #[tokio::test]
    async fn metric_alerts_of_a_node_that_is_down_are_suppressed() {
        let db = Db::open_memory().unwrap();
        db.write(|c| {
            c.execute_batch(
                "INSERT INTO nodes (id, name, public_ip, private_ip, created_at, updated_at)
                 VALUES (4, 'gpu-a', '10.0.0.4', '10.0.0.4', 0, 0);
                 UPDATE alert_rules SET duration_s = 0 WHERE name = 'GPU temperature';",
            )?;
            let down = Raised {
                kind: EventKind::NodeUnreachable,
                subject: Subject::Node(NodeId(4)),
                value: Some(120.0),
                detail: "gone".into(),
            };
            assert_eq!(events::record(c, &down, 100)?.fired, 1);
            Ok::<_, AppError>(())
        })
        .await
        .unwrap();
        let hub = Hub::new(db.clone(), 5.0);
        let s = Sample {
            target: Target::Gpu {
                node: NodeId(4),
                gpu: 0,
            },
            metric: "temp_c",
            ts: 100,
            value: 95.0,
        };
        hub.record(vec![s]).await.unwrap();
        let mut engine = Engine::default();
        assert_eq!(engine.cycle(&db, &hub, 100, 45).await.unwrap().fired, 1);
        let rows: Vec<(String, Option<String>, Option<String>)> = db
            .read(|c| {
                c.prepare("SELECT target, suppressed, pending FROM alert_records ORDER BY id")?
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect::<rusqlite::Result<_>>()
                    .map_err(AppError::from)
            })
            .await
            .unwrap();
        assert_eq!(
            rows,
            [
                ("node:4".into(), None, Some("fired".into())),
                ("gpu:4:0".into(), Some("node_down".into()), None),
            ]
        );
        assert_eq!(engine.announce(&db, 101).await.unwrap(), 1);

        // The node answers again while the GPU is still hot: the alert kept
        // quiet is announced then (once), no longer suppressed.
        let (q, mut sent) = notify::queue();
        let mut engine = Engine::with_notifier(q);
        let back = |c: &mut rusqlite::Connection| {
            events::clear(
                c,
                EventKind::NodeUnreachable,
                &Subject::Node(NodeId(4)),
                200,
            )
            .map_err(AppError::from)
        };
        assert_eq!(db.write(back).await.unwrap(), 1);
        assert_eq!(engine.announce(&db, 200).await.unwrap(), 2);
        let mut got = Vec::new();
        while let Ok(n) = sent.try_recv() {
            got.push((n.target, n.event));
        }
        assert_eq!(
            got,
            [
                ("node:4".to_string(), notify::Event::Resolved),
                ("gpu:4:0".to_string(), notify::Event::Fired),
            ]
        );
        assert_eq!(engine.announce(&db, 300).await.unwrap(), 0);
        let suppressed: Option<String> = db
            .read(|c| {
                c.query_row(
                    "SELECT suppressed FROM alert_records WHERE target = 'gpu:4:0'",
                    [],
                    |r| r.get(0),
                )
                .map_err(AppError::from)
            })
            .await
            .unwrap();
        assert_eq!(suppressed, None);
    }

    /// What the local receiver saw: timestamp, signature, body.
    type Seen = std::sync::Arc<std::sync::Mutex<Vec<(String, String, Vec<u8>)>>>;

    /// A local webhook receiver that answers 500 to the first message and
    /// 200 after; returns its URL.
    async fn receiver(seen: Seen, cancel: CancellationToken) -> String {
        use axum::http::{HeaderMap, StatusCode};
        // Every request reaches the one handler (a fallback, not an
        // appliance route).
        let app = axum::Router::new().fallback(axum::routing::post(
            move |h: HeaderMap, body: bytes::Bytes| async move {
                let get = |k: &str| {
                    h.get(k)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string()
                };
                let mut seen = seen.lock().unwrap();
                seen.push((
                    get("x-gpudock-timestamp"),
                    get("x-gpudock-signature"),
                    body.to_vec(),
                ));
                if seen.len() == 1 {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::OK
                }
            },
        ));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(l, app)
                .with_graceful_shutdown(cancel.cancelled_owned())
                .await
                .unwrap();
        });
        format!("http://{addr}/hook")
    }

    /// Polls the delivery log until it has `n` rows (10 s at most).
    async fn log_of(db: &Db, channel: i64, n: usize) -> Vec<DeliveryRow> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let rows = deliveries(db, channel).await.unwrap();
            if rows.len() >= n || tokio::time::Instant::now() > deadline {
                return rows;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// A fired alert reaches the rule's webhook signed with the channel's
    /// secret, after a retry of the 500 answer; every try is logged. A
    /// channel that refuses connections gets three logged tries.
    #[tokio::test]
    async fn alerts_reach_the_webhook_signed_retried_and_logged() {
        let db = Db::open_memory().unwrap();
        let sealer = std::sync::Arc::new(crate::secrets::Sealer::ephemeral());
        let cancel = CancellationToken::new();
        let seen = Seen::default();
        let url = receiver(seen.clone(), cancel.clone()).await;
        let secret = "0123456789abcdef-secret";
        // Bad input names the field.
        let bad = create_webhook(&db, &sealer, "x", "ftp://h/", "short").await;
        let Err(AppError::Validation(f)) = bad else {
            panic!("{bad:?}")
        };
        assert_eq!(f.keys().copied().collect::<Vec<_>>(), ["secret", "url"]);
        let hook = create_webhook(&db, &sealer, "ops", &url, secret)
            .await
            .unwrap();
        assert!(matches!(
            create_webhook(&db, &sealer, "ops", &url, secret).await,
            Err(AppError::Conflict(_))
        ));
        // Nothing listens on the closed port.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let closed_url = format!("http://{}/", closed.local_addr().unwrap());
        drop(closed);
        let dead = create_webhook(&db, &sealer, "dead", &closed_url, secret)
            .await
            .unwrap();
        let (rules, _) = db
            .read(|c| store::enabled_rules(c).map_err(AppError::from))
            .await
            .unwrap();
        let hot = rules[0].id;
        route(&db, hot, hook).await.unwrap();
        route(&db, hot, dead).await.unwrap();

        let sender = notify::Sender {
            db: db.clone(),
            sealer: sealer.clone(),
            backoff: std::time::Duration::from_millis(10),
        };
        let (notifier, sending) = notify::start(sender, cancel.clone());
        let mut engine = Engine::with_notifier(notifier);
        let hub = Hub::new(db.clone(), 5.0);
        let gpu = Target::Gpu {
            node: NodeId(2),
            gpu: 0,
        };
        let t0 = 1_800_000_000;
        for ts in [t0, t0 + 60] {
            let s = Sample {
                target: gpu,
                metric: "temp_c",
                ts,
                value: 93.0,
            };
            hub.record(vec![s]).await.unwrap();
            engine.cycle(&db, &hub, ts, 45).await.unwrap();
        }
        let log = log_of(&db, hook, 2).await;
        let tries: Vec<_> = log
            .iter()
            .map(|d| (d.attempt, d.status.as_str(), d.http_status))
            .collect();
        assert_eq!(tries, [(1, "failed", Some(500)), (2, "sent", Some(200))]);
        assert_eq!(log[0].error, "answered HTTP 500");
        let got = seen.lock().unwrap().clone();
        assert_eq!(got.len(), 2);
        let (ts, sig, body) = &got[1];
        let ts: i64 = ts.parse().unwrap();
        assert_eq!(sig, &notify::signature(secret.as_bytes(), ts, body));
        let json: serde_json::Value = serde_json::from_slice(body).unwrap();
        assert_eq!(json["event"], "fired");
        assert_eq!(json["level"], "P1");
        assert_eq!(json["target"], "gpu:2:0");
        assert_eq!(json["node_id"], 2);
        assert!(
            json["message"]
                .as_str()
                .unwrap()
                .contains("GPU 0 of node 2")
        );

        let log = log_of(&db, dead, 3).await;
        assert_eq!(log.len(), 3, "{log:?}");
        assert!(
            log.iter()
                .all(|d| d.status == "failed" && d.http_status.is_none())
        );
        assert!(!log[2].error.is_empty());
        cancel.cancel();
        sending.await.unwrap();
    }
}
