//! Alerts (告警中心): metric rules evaluated against the latest samples of
//! the metrics hub every collection interval, and the alerts they raise,
//! repeat and resolve (one open alert per rule and target). The decision is
//! pure ([`eval`]); this module owns the task that feeds it and writes what
//! it decided.

pub mod eval;
pub mod model;
mod store;

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

pub use store::AlertRow;

/// What one cycle did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Cycle {
    pub rules: usize,
    pub fired: usize,
    pub repeated: usize,
    pub resolved: usize,
}

/// The engine between cycles: what has held but not yet for long enough.
#[derive(Debug, Default)]
pub struct Engine {
    pending: Pending,
}

impl Engine {
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
        db.write(move |c| apply(c, &rules, &out, now)).await?;
        Ok(done)
    }
}

/// Writes a cycle's transitions in one transaction.
fn apply(
    c: &mut rusqlite::Connection,
    rules: &[Rule],
    out: &[Transition],
    now: i64,
) -> Result<(), AppError> {
    let (nodes, instances) = store::names(c)?;
    let rule = |id: RuleId| rules.iter().find(|r| r.id == id);
    let tx = c.transaction()?;
    for t in out {
        match *t {
            Transition::Fire {
                rule: id,
                target,
                metric,
                value,
            } => {
                let Some(r) = rule(id) else { continue };
                let message = message(r, &target, metric, value, &nodes, &instances);
                let a = store::NewAlert {
                    rule: id,
                    target,
                    metric,
                    value,
                    level: r.level,
                    message: &message,
                    now,
                };
                if let Some(record) = store::insert_alert(&tx, &a)? {
                    log::warn!("alert {record} ({}): {message}", r.level);
                }
            }
            Transition::Repeat { record, value, .. } => store::renotify(&tx, record, value, now)?,
            Transition::Resolve { record, reason, .. } => {
                if store::resolve(&tx, record, reason, now)? {
                    log::info!("alert {record} resolved ({reason})");
                }
            }
        }
    }
    tx.commit()?;
    Ok(())
}

/// What a new alert says: the rule, what it is about by name, and the
/// value against the condition that held.
fn message(
    rule: &Rule,
    target: &Target,
    metric: &str,
    value: f64,
    nodes: &std::collections::HashMap<NodeId, String>,
    instances: &std::collections::HashMap<InstanceId, String>,
) -> String {
    let node = |n: NodeId| {
        nodes
            .get(&n)
            .map_or_else(|| format!("node {n}"), |name| format!("node {name}"))
    };
    let what = match *target {
        Target::Node { node: n } => node(n),
        Target::Gpu { node: n, gpu } => format!("GPU {gpu} of {}", node(n)),
        Target::Instance { node: n, instance } => {
            let name = instances
                .get(&instance)
                .map_or_else(|| format!("#{instance}"), |s| s.clone());
            format!("instance {name} on {}", node(n))
        }
    };
    let cond = rule
        .conditions
        .iter()
        .find(|c| c.metric == metric)
        .map(|c| format!(" ({} {})", c.op, c.threshold))
        .unwrap_or_default();
    format!("{}: {what}: {metric} = {value:.1}{cond}", rule.name)
}

/// The newest `limit` alerts, newest first.
pub async fn recent(db: &Db, limit: i64) -> Result<Vec<AlertRow>, AppError> {
    db.read(move |c| store::recent(c, limit).map_err(AppError::from))
        .await
}

/// Evaluates the rules every metrics collection interval until `cancel`.
/// Owned by `serve` and joined at shutdown.
pub async fn run(app: App, cancel: CancellationToken) {
    let secs = app.config.metrics.interval_secs.max(1);
    let mut tick = tokio::time::interval(Duration::from_secs(secs));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    // A sample missed by two collections is no longer current.
    let stale_after = i64::try_from(secs.saturating_mul(3)).unwrap_or(i64::MAX);
    let mut engine = Engine::default();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = crate::db::now();
        if let Err(e) = engine
            .cycle(&app.db, &app.metrics.hub, now, stale_after)
            .await
        {
            log::warn!("alert evaluation: {e}");
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
}
