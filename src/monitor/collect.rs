//! Collection: one owned task per node (through the nodes supervisor) reads,
//! every `metrics.interval_secs`, the node's host and GPUs (in-process for
//! this host, else its gpudock agent or the exporters it names) and its
//! instances' containers (Docker stats over the node's own connection). Each
//! source is bounded in time and size, so a slow node delays nobody else;
//! each source's last success or error is kept for the node page.

use std::collections::HashMap;
use std::time::Duration;

use bollard::Docker;
use futures_util::future::join_all;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::store;
use crate::app::App;
use crate::audit::{self, Actor, Event, Source};
use crate::error::AppError;
use crate::ids::{InstanceId, NodeId};
use crate::instances::InstanceStatus;
use crate::metrics::docker_stats::{self, StatsReading};
use crate::metrics::model::{GpuReading, HostReading, Sample, Target};
use crate::metrics::scrape::{self, Limits};
use crate::metrics::{Hub, host, prom};

/// What a node's task remembers between two rounds.
#[derive(Default)]
struct NodeState {
    host: Option<HostReading>,
    stats: HashMap<String, StatsReading>,
    docker: Option<Docker>,
    docker_root: Option<String>,
    gpu_inventory: Vec<(i64, String, String)>,
    /// The last XID each GPU reported (an alert when it changes).
    xids: HashMap<i64, f64>,
}

pub async fn run(app: App, cancel: CancellationToken) {
    crate::nodes::per_node(app, cancel, "metrics", node_loop).await;
}

async fn node_loop(app: App, node: NodeId, cancel: CancellationToken) {
    let every = Duration::from_secs(app.config.metrics.interval_secs);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut st = NodeState::default();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let round = tokio::select! {
            _ = cancel.cancelled() => return,
            r = round(&app, node, &mut st) => r,
        };
        match round {
            Ok(()) => {}
            Err(AppError::NotFound) => {
                app.metrics.hub.forget_node(node);
                return;
            }
            Err(e) => log::warn!("metrics: node {node}: {e}"),
        }
    }
}

pub fn limits(app: &App) -> Limits {
    Limits {
        timeout: Duration::from_secs(app.config.metrics.scrape_timeout_secs),
        max_bytes: usize::try_from(app.config.metrics.scrape_max_bytes).unwrap_or(usize::MAX),
    }
}

/// Host and GPU readings of a node from wherever they come from.
struct Readings {
    host: Option<HostReading>,
    gpus: Option<Result<Vec<GpuReading>, String>>,
}

async fn round(app: &App, node: NodeId, st: &mut NodeState) -> Result<(), AppError> {
    let n = crate::nodes::get(app, node).await?;
    let sources = app
        .db
        .read(move |c| store::sources(c, node).map_err(AppError::from))
        .await?;
    let now = crate::db::now();
    let hub = &app.metrics.hub;
    let local = n.docker_endpoint.starts_with("unix://");
    let docker = instances_round(app, node, st, now).await;
    let r = host_and_gpus(app, node, &sources, local, st).await;
    let mut samples: Vec<Sample> = docker;
    if let Some(h) = &r.host {
        let data_dir = app.config.data_dir.to_string_lossy().into_owned();
        let root = st
            .docker_root
            .clone()
            .unwrap_or_else(|| "/var/lib/docker".into());
        samples.extend(h.samples(
            st.host.as_ref(),
            node,
            now,
            Some(&root),
            local.then_some(data_dir.as_str()),
        ));
        st.host = r.host;
    }
    disk_alert(app, node, &samples).await;
    if let Some(gpus) = r.gpus {
        if let Ok(list) = &gpus {
            for g in list {
                samples.extend(g.samples(node, now));
            }
            xid_alerts(app, node, list, &mut st.xids).await;
            let inv: Vec<(i64, String, String)> = list
                .iter()
                .map(|g| (g.index, g.uuid.clone(), g.name.clone()))
                .collect();
            if inv != st.gpu_inventory {
                let i2 = inv.clone();
                app.db
                    .write(move |c| store::set_gpus(c, node, &i2, now).map_err(AppError::from))
                    .await?;
                st.gpu_inventory = inv;
            }
        }
        hub.set_gpus(node, now, gpus);
    }
    hub.record(samples).await.map_err(AppError::from)
}

/// Reports how full the data directory's disk is (this host's node only:
/// the others do not hold it) to the alerts (event `disk_full`: a rule's
/// N decides, and its alert resolves when the disk is below it again).
async fn disk_alert(app: &App, node: NodeId, samples: &[Sample]) {
    use crate::alerts::{EventKind, Raised, Subject};
    let of = |m: &str| {
        samples
            .iter()
            .find(|s| s.metric == m && s.target == Target::Node { node })
            .map(|s| s.value)
    };
    let (Some(used), Some(total)) = (of("disk_data_used_bytes"), of("disk_data_total_bytes"))
    else {
        return;
    };
    if total <= 0.0 {
        return;
    }
    let pct = (used / total * 1000.0).round() / 10.0;
    let ev = Raised {
        kind: EventKind::DiskFull,
        subject: Subject::Node(node),
        value: Some(pct),
        detail: format!("the data directory's disk is {pct} % used"),
    };
    if let Err(e) = crate::alerts::raise_event(app, ev).await {
        log::warn!("node {node}: disk alert: {e}");
    }
}

/// Raises a GPU XID alert for each GPU whose last XID is new (a GPU that
/// reports one at the first round too: an open alert keeps it from
/// repeating before its silence), all of a round at once.
async fn xid_alerts(app: &App, node: NodeId, gpus: &[GpuReading], seen: &mut HashMap<i64, f64>) {
    use crate::alerts::{EventKind, Raised, Subject};
    let mut raised = Vec::new();
    for g in gpus {
        let Some(xid) = g.xid.filter(|x| *x > 0.0) else {
            continue;
        };
        if seen.insert(g.index, xid) == Some(xid) {
            continue;
        }
        raised.push(Raised {
            kind: EventKind::GpuXid,
            subject: Subject::Gpu(node, g.index),
            value: Some(xid),
            detail: format!("XID {xid} ({})", g.name),
        });
    }
    if let Err(e) = crate::alerts::raise_events(app, raised).await {
        log::warn!("node {node}: GPU XID alerts: {e}");
    }
}

fn outcome<T, E: std::fmt::Display>(
    hub: &Hub,
    node: NodeId,
    source: &'static str,
    r: Result<T, E>,
) -> Option<T> {
    let now = crate::db::now();
    match r {
        Ok(v) => {
            hub.source_result(node, source, now, Ok(()));
            Some(v)
        }
        Err(e) => {
            hub.source_result(node, source, now, Err(e.to_string()));
            None
        }
    }
}

async fn host_and_gpus(
    app: &App,
    node: NodeId,
    s: &store::Sources,
    local: bool,
    st: &NodeState,
) -> Readings {
    let hub = &app.metrics.hub;
    let lim = limits(app);
    if s.has_agent() {
        for gone in ["host", "nvml", "node_exporter", "dcgm"] {
            hub.drop_source(node, gone);
        }
        let r = agent_round(app, node, s, lim).await;
        return match outcome(hub, node, "agent", r) {
            Some(r) => r,
            None => Readings {
                host: None,
                gpus: None,
            },
        };
    }
    hub.drop_source(node, "agent");
    let mut out = Readings {
        host: None,
        gpus: None,
    };
    if !s.node_exporter_url.is_empty() {
        hub.drop_source(node, "host");
        let r = text(&s.node_exporter_url, None, None, lim)
            .await
            .and_then(|samples| {
                prom::host_from_node_exporter(&samples, now_f64())
                    .ok_or_else(|| "no node_exporter metrics (node_*) in the answer".to_string())
            });
        out.host = outcome(hub, node, "node_exporter", r);
    } else if local {
        hub.drop_source(node, "node_exporter");
        let root = st
            .docker_root
            .clone()
            .unwrap_or_else(|| "/var/lib/docker".into());
        let data = app.config.data_dir.to_string_lossy().into_owned();
        let r = tokio::task::spawn_blocking(move || host::read(&[&root, &data])).await;
        out.host = outcome(hub, node, "host", r);
    }
    if !s.dcgm_url.is_empty() {
        hub.drop_source(node, "nvml");
        let r = text(&s.dcgm_url, None, None, lim)
            .await
            .map(|samples| prom::gpus_from_dcgm(&samples));
        out.gpus = outcome(hub, node, "dcgm", r).map(Ok);
    } else if local {
        hub.drop_source(node, "dcgm");
        let gpus = app.metrics.gpus.clone();
        let r = tokio::task::spawn_blocking(move || gpus.read())
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r);
        // No driver is a normal state: the source is fine, the GPUs absent.
        hub.source_result(node, "nvml", crate::db::now(), Ok(()));
        out.gpus = Some(r);
    }
    out
}

fn now_f64() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

async fn text(
    url: &str,
    bearer: Option<&str>,
    pin: Option<&str>,
    lim: Limits,
) -> Result<Vec<prom::PromSample>, String> {
    let f = scrape::get(
        &format!(
            "{}/metrics",
            url.trim_end_matches("/metrics").trim_end_matches('/')
        ),
        bearer,
        pin,
        lim,
    )
    .await
    .map_err(|e| e.to_string())?;
    prom::parse(&f.body).map_err(|e| e.to_string())
}

/// The node's host figures read once from its enrolled agent or its
/// node_exporter (None without either, or when it does not answer).
pub(super) async fn host_once(app: &App, s: &store::Sources) -> Option<HostReading> {
    let lim = limits(app);
    let samples = if s.has_agent() && !s.agent_fingerprint.is_empty() {
        let token = agent_token(app, s).ok()?;
        text(&s.agent_url, Some(&token), Some(&s.agent_fingerprint), lim)
            .await
            .ok()?
    } else if !s.node_exporter_url.is_empty() {
        text(&s.node_exporter_url, None, None, lim).await.ok()?
    } else {
        return None;
    };
    prom::host_from_node_exporter(&samples, now_f64())
}

/// The node's agent token, opened from its seal.
fn agent_token(app: &App, s: &store::Sources) -> Result<String, String> {
    let sealed = s.agent_token_sealed.as_ref().ok_or("no agent token")?;
    let plain = app.sealer.unseal(sealed).map_err(|e| e.to_string())?;
    String::from_utf8(plain.expose().clone())
        .map_err(|_| "the sealed agent token is not text".to_string())
}

async fn agent_round(
    app: &App,
    node: NodeId,
    s: &store::Sources,
    lim: Limits,
) -> Result<Readings, String> {
    let token = agent_token(app, s)?;
    if s.agent_fingerprint.is_empty() {
        enrol(app, node, s, &token, lim).await?;
        return Ok(Readings {
            host: None,
            gpus: None,
        });
    }
    let samples = text(&s.agent_url, Some(&token), Some(&s.agent_fingerprint), lim).await?;
    let host = prom::host_from_node_exporter(&samples, now_f64());
    let gpus = match prom::agent_gpu_state(&samples) {
        Some(Err(why)) => Err(why),
        _ => Ok(prom::gpus_from_dcgm(&samples)),
    };
    Ok(Readings {
        host,
        gpus: Some(gpus),
    })
}

/// Asks the agent to prove it holds the token (an HMAC over its own
/// certificate and a fresh nonce); pins that certificate when it does.
async fn enrol(
    app: &App,
    node: NodeId,
    s: &store::Sources,
    token: &str,
    lim: Limits,
) -> Result<(), String> {
    let nonce = crate::auth::guard::random_token();
    let url = format!("{}/enroll?nonce={nonce}", s.agent_url.trim_end_matches('/'));
    let f = scrape::get(&url, None, None, lim)
        .await
        .map_err(|e| format!("enrolment: {e}"))?;
    let fp = f
        .fingerprint
        .ok_or("enrolment: the agent URL must be https://")?;
    let v: serde_json::Value = serde_json::from_str(&f.body)
        .map_err(|_| "enrolment: the answer is not an agent's".to_string())?;
    let proof = v["proof"].as_str().unwrap_or("");
    let hash = crate::auth::guard::token_hash(token);
    if !scrape::proof_ok(&hash, &fp, &nonce, proof) {
        return Err(
            "enrolment refused: the agent did not prove it holds this node's token \
                    (run the one-time command from the node page on the GPU host)"
                .into(),
        );
    }
    let sealed = s.agent_token_sealed.clone().unwrap_or_default();
    let url = s.agent_url.clone();
    let pinned = app
        .db
        .write(move |c| {
            let tx = c.transaction()?;
            let ok = store::pin_agent(&tx, node, &sealed, &fp, crate::db::now())?;
            if ok {
                let detail = json!({"url": url, "certificate_sha256": fp});
                audit::append(
                    &tx,
                    &Event::new(
                        &Actor::system(),
                        &Source::local(),
                        "node.agent_enrolled",
                        "node",
                    )
                    .id(node)
                    .detail(detail),
                )?;
            }
            tx.commit()?;
            Ok::<_, AppError>(ok)
        })
        .await
        .map_err(|e| e.to_string())?;
    if pinned {
        log::info!("metrics: node {node}: agent enrolled, certificate pinned");
    }
    Ok(())
}

/// Docker stats of the node's running instances (all at once, each bounded).
async fn instances_round(app: &App, node: NodeId, st: &mut NodeState, now: i64) -> Vec<Sample> {
    let hub = &app.metrics.hub;
    if st.docker.is_none() {
        match crate::nodes::client(app, node).await {
            Ok(d) => {
                if st.docker_root.is_none() {
                    st.docker_root = d.info().await.ok().and_then(|i| i.docker_root_dir);
                }
                st.docker = Some(d);
            }
            Err(e) => {
                hub.source_result(node, "docker", now, Err(e.to_string()));
                return Vec::new();
            }
        }
    }
    let Some(d) = st.docker.clone() else {
        return Vec::new();
    };
    let list = match crate::instances::on_node(app, node).await {
        Ok(l) => l,
        Err(e) => {
            log::warn!("metrics: node {node}: listing instances: {e}");
            return Vec::new();
        }
    };
    let running: Vec<(InstanceId, String)> = list
        .into_iter()
        .filter(|i| i.status == InstanceStatus::Running)
        .filter_map(|i| Some((i.id, i.container_id?)))
        .collect();
    let timeout = limits(app).timeout;
    let reads = join_all(
        running
            .iter()
            .map(|(_, c)| docker_stats::read(&d, c, timeout)),
    )
    .await;
    let mut out = Vec::new();
    let mut failed = None;
    let mut seen = HashMap::new();
    for ((instance, container), r) in running.into_iter().zip(reads) {
        match r {
            Ok((reading, facts)) => {
                let t = Target::Instance { node, instance };
                out.extend(docker_stats::samples(
                    st.stats.get(&container),
                    &reading,
                    &facts,
                    t,
                    now,
                ));
                seen.insert(container, reading);
            }
            Err(e) => failed = Some(e.to_string()),
        }
    }
    st.stats = seen;
    match failed {
        Some(e) if out.is_empty() => {
            st.docker = None;
            hub.source_result(node, "docker", now, Err(e));
        }
        Some(e) => hub.source_result(node, "docker", now, Err(format!("some containers: {e}"))),
        None => hub.source_result(node, "docker", now, Ok(())),
    }
    out
}
