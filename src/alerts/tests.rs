//! The engine end to end on an in-memory database: the hub's samples,
//! suppression while a node is down, delivery with retries and signatures.

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
