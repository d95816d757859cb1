//! Figures for the alert engine (printed, not asserted; `cargo bench --bench
//! alerts`, no root or GPU needed):
//! 1. one evaluation cycle of 500 metric rules against 2,000 series
//!    (20 nodes × 8 GPUs × 12 GPU metrics + 20 hosts × 4 host metrics):
//!    the pure decision alone, and the whole cycle (rules and open alerts
//!    read from SQLite, transitions written), against the 50 ms goal
//!    and against a baseline in the same process: copying the hub's latest
//!    values (what every cycle starts with);
//! 2. the delay from the cycle that sees a condition held (its duration
//!    already passed) to a local webhook receiver holding the signed body.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use gpudock::alerts::{Engine, notify};
use gpudock::db::Db;
use gpudock::ids::NodeId;
use gpudock::metrics::hub::Hub;
use gpudock::metrics::model::{Sample, Target};
use tokio_util::sync::CancellationToken;

const NODES: i64 = 20;
const GPUS: i64 = 8;
const GPU_METRICS: [&str; 12] = [
    "util_pct",
    "mem_util_pct",
    "mem_used_bytes",
    "mem_total_bytes",
    "temp_c",
    "power_w",
    "power_limit_w",
    "sm_clock_mhz",
    "fan_pct",
    "ecc_volatile",
    "xid",
    "processes",
];
const HOST_METRICS: [&str; 4] = ["cpu_pct", "load1", "mem_used_bytes", "mem_total_bytes"];
const RULES: i64 = 500;
const T0: i64 = 1_800_000_000;

fn samples(ts: i64, round: i64) -> Vec<Sample> {
    let mut out = Vec::new();
    for n in 1..=NODES {
        let node = NodeId(n);
        for gpu in 0..GPUS {
            for (i, m) in GPU_METRICS.iter().enumerate() {
                let value = ((n * 31 + gpu * 7 + i as i64 * 3 + round) % 100) as f64;
                let target = Target::Gpu { node, gpu };
                out.push(Sample {
                    target,
                    metric: m,
                    ts,
                    value,
                });
            }
        }
        for (i, m) in HOST_METRICS.iter().enumerate() {
            let value = ((n * 13 + i as i64 + round) % 100) as f64;
            out.push(Sample {
                target: Target::Node { node },
                metric: m,
                ts,
                value,
            });
        }
    }
    out
}

/// 500 rules on GPU and host metrics: one to three conditions, AND and
/// OR, every node or one node, no duration (each cycle decides).
fn rules_sql() -> String {
    let mut sql = String::from("DELETE FROM alert_rules;");
    for r in 0..RULES {
        let host = r % 5 == 0;
        let (kind, metrics): (&str, &[&str]) = if host {
            ("node", &HOST_METRICS)
        } else {
            ("gpu", &GPU_METRICS)
        };
        let scope = if r % 2 == 0 {
            "'all', '[]'".to_string()
        } else {
            format!("'nodes', '[{}]'", r % NODES + 1)
        };
        let combine = if r % 3 == 0 { "or" } else { "and" };
        sql += &format!(
            "INSERT INTO alert_rules (id, name, scope, scope_ids, combine, duration_s, level, silence_s, created_at, updated_at)
             VALUES ({id}, 'r{id}', {scope}, '{combine}', 0, 'P2', 600, 0, 0);",
            id = r + 1
        );
        for c in 0..=(r % 3) {
            let metric = metrics[((r + c * 5) as usize) % metrics.len()];
            let threshold = 50 + (r * 7 + c * 11) % 50;
            sql += &format!(
                "INSERT INTO alert_conditions (rule_id, position, kind, metric, op, threshold)
                 VALUES ({}, {c}, '{kind}', '{metric}', '>', {threshold});",
                r + 1
            );
        }
    }
    sql
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(&dir.path().join("bench.db")).unwrap();
    let sql = rules_sql();
    db.write(move |c| c.execute_batch(&sql).map_err(gpudock::db::DbError::from))
        .await
        .unwrap();
    let hub = Hub::new(db.clone(), 5.0);
    let series: usize = samples(T0, 0).len();

    let (mut copy, mut cycle) = (Vec::new(), Vec::new());
    let mut engine = Engine::default();
    let (mut fired, mut resolved) = (0, 0);
    for round in 0..30 {
        let ts = T0 + round * 15;
        hub.record(samples(ts, round)).await.unwrap();
        let t = Instant::now();
        std::hint::black_box(hub.latest());
        copy.push(t.elapsed());
        let t = Instant::now();
        let c = engine.cycle(&db, &hub, ts, 45).await.unwrap();
        cycle.push(t.elapsed());
        fired += c.fired;
        resolved += c.resolved;
    }
    let (copy, cycle) = (median(copy), median(cycle));
    println!(
        "1. {RULES} rules × {series} series, median of 30 cycles ({fired} alerts fired, {resolved} resolved):"
    );
    println!(
        "   whole cycle {:.2} ms = {:.3} × the 50 ms goal = {:.1} × copying the latest values ({:.3} ms)",
        ms(cycle),
        ms(cycle) / 50.0,
        cycle.as_secs_f64() / copy.as_secs_f64(),
        ms(copy)
    );

    // 2. condition → webhook.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Instant>(16);
    let app = axum::Router::new().fallback(axum::routing::post(move || {
        let tx = tx.clone();
        async move {
            tx.send(Instant::now()).await.ok();
            "ok"
        }
    }));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", l.local_addr().unwrap());
    let cancel = CancellationToken::new();
    let stop = cancel.clone();
    tokio::spawn(async move {
        axum::serve(l, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
            .unwrap()
    });
    let sealer = Arc::new(gpudock::secrets::Sealer::ephemeral());
    let hook = gpudock::alerts::create_webhook(&db, &sealer, "bench", &url, "0123456789abcdef")
        .await
        .unwrap();
    db.write(move |c| {
        c.execute_batch(&format!(
            "DELETE FROM alert_records;
             INSERT INTO alert_rules (id, name, level, duration_s, created_at, updated_at)
                 VALUES (9999, 'hot', 'P1', 0, 0, 0);
             INSERT INTO alert_conditions (rule_id, position, kind, metric, op, threshold)
                 VALUES (9999, 0, 'node', 'cpu_pct', '>', 1000);
             INSERT INTO alert_rule_channels (rule_id, channel_id) VALUES (9999, {hook});"
        ))
        .map_err(gpudock::db::DbError::from)
    })
    .await
    .unwrap();
    let sender = notify::Sender {
        db: db.clone(),
        sealer,
        backoff: Duration::from_secs(2),
    };
    let (notifier, sending) = notify::start(sender, cancel.clone());
    let mut engine = Engine::with_notifier(notifier);
    let mut delays = Vec::new();
    for round in 0..10 {
        let ts = T0 + 3600 + round * 30;
        // Calm, then node 1's CPU over 1000 % (the rule's condition).
        hub.record(samples(ts, round)).await.unwrap();
        engine.cycle(&db, &hub, ts, 45).await.unwrap();
        let hot = Sample {
            target: Target::Node { node: NodeId(1) },
            metric: "cpu_pct",
            ts: ts + 15,
            value: 2000.0,
        };
        hub.record(vec![hot]).await.unwrap();
        let t = Instant::now();
        engine.cycle(&db, &hub, ts + 15, 45).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("the webhook got the message")
            .unwrap();
        delays.push(got - t);
        // The resolve message of the next calm cycle.
        hub.record(samples(ts + 20, round)).await.unwrap();
        engine.cycle(&db, &hub, ts + 20, 45).await.unwrap();
        rx.recv().await.unwrap();
    }
    let d = median(delays);
    println!(
        "2. condition seen → webhook received (median of 10, cycle of {RULES} rules included): {:.2} ms = {:.4} × the 2 s allowance",
        ms(d),
        d.as_secs_f64() / 2.0
    );
    cancel.cancel();
    sending.await.unwrap();
}
