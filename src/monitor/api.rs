//! JSON API of metrics: history (`/api/v1/metrics/series`, CSV too), live
//! updates (server-sent events with a heartbeat), the overview, and for
//! admins a node's sources, GPUs and agent enrolment.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use super::{Format, SeriesQuery, store};
use crate::app::App;
use crate::audit::{self, Event as AuditEvent, Source};
use crate::auth::{CurrentUser, Scope};
use crate::error::{AppError, FieldError, FieldErrors};
use crate::ids::{InstanceId, NodeId};
use crate::metrics::hub::{Latest, NodeView};
use crate::metrics::model::{Sample, Target, TargetRef};
use crate::web::extract::{ApiJson, ApiPath, ApiQuery};

pub fn routes() -> Router<App> {
    Router::new()
        .route("/api/v1/metrics/series", get(series))
        .route("/api/v1/metrics/live", get(live))
        .route("/api/v1/metrics/overview", get(overview_json))
        .route("/api/v1/nodes/{id}/metrics", get(node_json))
        .route("/api/v1/nodes/{id}/metrics/sources", put(set_sources))
        .route("/api/v1/nodes/{id}/metrics/enroll", post(enroll))
}

async fn series(
    State(app): State<App>,
    me: CurrentUser,
    ApiQuery(q): ApiQuery<SeriesQuery>,
) -> Result<Response, AppError> {
    let format = q.format()?;
    let a = super::series(&app, &me, &q).await?;
    if format == Format::Json {
        return Ok(Json(a).into_response());
    }
    let mut w = csv::Writer::from_writer(Vec::new());
    let cell = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
    w.write_record(["timestamp", "value", "min", "max"])
        .map_err(AppError::internal)?;
    for i in 0..a.points.timestamps.len() {
        w.write_record([
            a.points.timestamps[i].to_string(),
            cell(a.points.values[i]),
            cell(a.points.min[i]),
            cell(a.points.max[i]),
        ])
        .map_err(AppError::internal)?;
    }
    let body = w.into_inner().map_err(AppError::internal)?;
    let name = format!("{}-{}.csv", a.target.replace(':', "_"), a.metric);
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(r)
}

#[derive(Debug, Default, Deserialize)]
struct LiveQuery {
    /// One target or several, comma-separated (at most 64).
    target: Option<String>,
}

#[derive(Serialize)]
struct LivePoint {
    target: String,
    metric: &'static str,
    ts: i64,
    value: f64,
}

struct LiveState {
    app: App,
    me: CurrentUser,
    refs: Vec<TargetRef>,
    targets: Vec<(Target, i64, String)>,
    rx: tokio::sync::broadcast::Receiver<std::sync::Arc<Vec<Sample>>>,
    rescope: tokio::time::Instant,
    /// The stream's registration with the live registry: revoking the
    /// user's access (or shutdown of the registry's holder) ends it at once.
    hold: crate::live::Registration,
    ended: bool,
}

/// How often the targets are looked up again: what a customer reaches
/// changes (an instance deleted, its GPUs given to another tenant) without
/// their access being revoked.
const RESCOPE: Duration = Duration::from_secs(30);

async fn resolve_all(
    app: &App,
    me: &CurrentUser,
    refs: &[TargetRef],
) -> Result<Vec<(Target, i64, String)>, AppError> {
    let mut out = Vec::with_capacity(refs.len());
    for r in refs {
        let (t, since) = super::resolve(app, me, *r).await?;
        out.push((t, since, r.to_string()));
    }
    Ok(out)
}

/// New samples of the asked targets as they are collected (event
/// `samples`), a comment every 15 s as heartbeat. The stream ends at
/// shutdown, when a target is no longer the caller's (looked up every
/// 30 s), and at once when the caller's access is revoked (held in the
/// live registry like a followed log), then with a last event `end` whose
/// data says why (`{"reason":"access_revoked"}`).
async fn live(
    State(app): State<App>,
    me: CurrentUser,
    ApiQuery(q): ApiQuery<LiveQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, AppError> {
    // Held from before the lookups: a revocation from now on ends the stream.
    let hold = app.live.hold(crate::auth::holder(&me.user));
    let refs: Option<Vec<TargetRef>> = q
        .target
        .as_deref()
        .map(|t| t.split(',').map(TargetRef::parse).collect())
        .unwrap_or(None);
    let refs = refs
        .filter(|r| !r.is_empty() && r.len() <= 64)
        .ok_or_else(|| AppError::field("target", "err.metrics_target"))?;
    let targets = resolve_all(&app, &me, &refs).await?;
    let st = LiveState {
        rx: app.metrics.hub.subscribe(),
        app,
        me,
        refs,
        targets,
        rescope: tokio::time::Instant::now() + RESCOPE,
        hold,
        ended: false,
    };
    let stream = futures_util::stream::unfold(st, next_event);
    Ok(Sse::new(stream).keep_alive(
        KeepAlive::new()
            .interval(Duration::from_secs(15))
            .text("ping"),
    ))
}

async fn next_event(mut st: LiveState) -> Option<(Result<Event, Infallible>, LiveState)> {
    if st.ended {
        return None;
    }
    let watcher = st.hold.watcher();
    loop {
        tokio::select! {
            biased;
            _ = st.app.cancel.cancelled() => return None,
            _ = watcher.stopped() => {
                st.ended = true;
                let reason = watcher.reason().unwrap_or(crate::live::ACCESS_REVOKED);
                let ev = Event::default().event("end").json_data(json!({ "reason": reason })).ok()?;
                return Some((Ok(ev), st));
            }
            _ = tokio::time::sleep_until(st.rescope) => {
                st.targets = resolve_all(&st.app, &st.me, &st.refs).await.ok()?;
                st.rescope = tokio::time::Instant::now() + RESCOPE;
            }
            r = st.rx.recv() => match r {
                Ok(batch) => {
                    let pts: Vec<LivePoint> = batch
                        .iter()
                        .filter_map(|s| {
                            let (_, since, name) = st.targets.iter().find(|(t, ..)| *t == s.target)?;
                            (s.ts >= *since).then(|| LivePoint { target: name.clone(), metric: s.metric, ts: s.ts, value: s.value })
                        })
                        .collect();
                    if !pts.is_empty() {
                        let ev = Event::default().event("samples").json_data(&pts).ok()?;
                        return Some((Ok(ev), st));
                    }
                }
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return None,
            },
        }
    }
}

/// The monitoring overview (全局概览), scoped: admins see every node and
/// GPU; customers only the GPUs of their instances and their instances.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Overview {
    /// None for customers (node totals are not theirs to see).
    pub nodes_online: Option<usize>,
    pub nodes_unreachable: Option<usize>,
    pub gpus_total: usize,
    pub gpus_in_use: usize,
    pub gpus_idle: usize,
    pub gpus_hot: usize,
    pub busiest: Vec<Busy>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Busy {
    pub instance_id: InstanceId,
    pub name: String,
    pub gpu_util_pct: Option<f64>,
    pub cpu_pct: Option<f64>,
}

pub async fn overview(app: &App, me: &CurrentUser) -> Result<Overview, AppError> {
    let admin = matches!(me.scope(), Scope::All);
    let instances =
        crate::instances::list(app, me, Default::default(), crate::paging::Window::all())
            .await?
            .items;
    let latest = app.metrics.hub.latest();
    let c = &app.config.metrics;
    let now = crate::db::now();
    let fresh = |l: &Latest| l.ts >= now - 3 * c.interval_secs as i64;
    let value = |t: Target, m: &'static str| latest.get(&(t, m)).filter(|l| fresh(l)).copied();
    let held: Vec<(NodeId, i64)> = instances
        .iter()
        .flat_map(|i| i.gpu_indices.iter().map(move |g| (i.node_id, *g)))
        .collect();
    let mut o = Overview::default();
    let gpus: Vec<(NodeId, i64)> = if admin {
        let nodes = crate::nodes::all(app).await?;
        o.nodes_online = Some(
            nodes
                .iter()
                .filter(|n| n.status.as_str() == "online")
                .count(),
        );
        o.nodes_unreachable = Some(
            nodes
                .iter()
                .filter(|n| n.status.as_str() == "unreachable")
                .count(),
        );
        let mut all = std::collections::BTreeSet::new();
        for n in &nodes {
            for g in 0..n.gpu_count {
                all.insert((n.id, g));
            }
            for g in app.metrics.hub.node(n.id).gpus {
                all.insert((n.id, g.index));
            }
        }
        all.into_iter().collect()
    } else {
        held.clone()
    };
    o.gpus_total = gpus.len();
    o.gpus_in_use = gpus.iter().filter(|g| held.contains(g)).count();
    let idle_for = c.idle_minutes as i64 * 60;
    for &(node, gpu) in &gpus {
        let t = Target::Gpu { node, gpu };
        if value(t, "util_pct")
            .and_then(|l| l.low_since)
            .is_some_and(|s| s <= now - idle_for)
        {
            o.gpus_idle += 1;
        }
        if value(t, "temp_c").is_some_and(|l| l.value >= c.hot_temp_c) {
            o.gpus_hot += 1;
        }
    }
    let mut busy: Vec<Busy> = instances
        .iter()
        .map(|i| {
            let utils: Vec<f64> = i
                .gpu_indices
                .iter()
                .filter_map(|g| {
                    value(
                        Target::Gpu {
                            node: i.node_id,
                            gpu: *g,
                        },
                        "util_pct",
                    )
                    .map(|l| l.value)
                })
                .collect();
            Busy {
                instance_id: i.id,
                name: i.name.clone(),
                gpu_util_pct: (!utils.is_empty())
                    .then(|| utils.iter().sum::<f64>() / utils.len() as f64),
                cpu_pct: value(
                    Target::Instance {
                        node: i.node_id,
                        instance: i.id,
                    },
                    "cpu_pct",
                )
                .map(|l| l.value),
            }
        })
        .filter(|b| b.gpu_util_pct.is_some() || b.cpu_pct.is_some())
        .collect();
    busy.sort_by(|a, b| {
        let k = |x: &Busy| (x.gpu_util_pct.unwrap_or(-1.0), x.cpu_pct.unwrap_or(-1.0));
        k(b).partial_cmp(&k(a)).unwrap_or(std::cmp::Ordering::Equal)
    });
    busy.truncate(5);
    o.busiest = busy;
    Ok(o)
}

async fn overview_json(
    State(app): State<App>,
    me: CurrentUser,
) -> Result<impl IntoResponse, AppError> {
    Ok(Json(overview(&app, &me).await?))
}

/// One GPU of a node for the node page and API.
#[derive(Debug, Clone, Serialize)]
pub struct GpuRow {
    pub index: i64,
    pub uuid: String,
    pub name: String,
    pub util_pct: Option<f64>,
    pub mem_used_bytes: Option<f64>,
    pub mem_total_bytes: Option<f64>,
    pub temp_c: Option<f64>,
    pub power_w: Option<f64>,
    /// The instance holding it (by placement), if any.
    pub instance_id: Option<InstanceId>,
    pub instance_name: Option<String>,
    pub processes: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeMetrics {
    pub node_id: NodeId,
    /// Where the figures come from (URLs, the pinned agent certificate).
    pub config: store::Sources,
    #[serde(flatten)]
    pub view: NodeView,
    pub gpu_rows: Vec<GpuRow>,
    /// Latest host figures by metric name.
    pub host: BTreeMap<&'static str, f64>,
}

pub async fn node_metrics(app: &App, id: NodeId) -> Result<NodeMetrics, AppError> {
    crate::nodes::get(app, id).await?;
    let sources = app
        .db
        .read(move |c| store::sources(c, id).map_err(AppError::from))
        .await?;
    let known = app
        .db
        .read(move |c| store::gpus(c, Some(id)).map_err(AppError::from))
        .await?;
    let view = app.metrics.hub.node(id);
    let on_node = crate::instances::on_node(app, id).await?;
    let latest = app.metrics.hub.latest();
    let get = |t: Target, m: &'static str| latest.get(&(t, m)).map(|l| l.value);
    let mut indices: Vec<i64> = known
        .iter()
        .map(|g| g.gpu)
        .chain(view.gpus.iter().map(|g| g.index))
        .collect();
    indices.sort_unstable();
    indices.dedup();
    let gpu_rows = indices
        .into_iter()
        .map(|idx| {
            let t = Target::Gpu { node: id, gpu: idx };
            let reading = view.gpus.iter().find(|g| g.index == idx);
            let k = known.iter().find(|g| g.gpu == idx);
            let holder = on_node.iter().find(|i| i.gpu_indices.contains(&idx));
            GpuRow {
                index: idx,
                uuid: reading
                    .map(|r| r.uuid.clone())
                    .or_else(|| k.map(|k| k.uuid.clone()))
                    .unwrap_or_default(),
                name: reading
                    .map(|r| r.name.clone())
                    .or_else(|| k.map(|k| k.name.clone()))
                    .unwrap_or_default(),
                util_pct: get(t, "util_pct"),
                mem_used_bytes: get(t, "mem_used_bytes"),
                mem_total_bytes: get(t, "mem_total_bytes"),
                temp_c: get(t, "temp_c"),
                power_w: get(t, "power_w"),
                instance_id: holder.map(|i| i.id),
                instance_name: holder.map(|i| i.name.clone()),
                processes: reading.map_or(0, |r| r.processes.len()),
            }
        })
        .collect();
    let host = latest
        .iter()
        .filter(|((t, _), _)| *t == Target::Node { node: id })
        .map(|((_, m), l)| (*m, l.value))
        .collect();
    Ok(NodeMetrics {
        node_id: id,
        config: sources,
        view,
        gpu_rows,
        host,
    })
}

async fn node_json(
    State(app): State<App>,
    ApiPath(id): ApiPath<NodeId>,
) -> Result<impl IntoResponse, AppError> {
    Ok(Json(node_metrics(&app, id).await?))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SourcesInput {
    pub agent_url: Option<String>,
    pub dcgm_url: Option<String>,
    pub node_exporter_url: Option<String>,
}

/// `""` or a `scheme://host[:port][/path]` URL: `https://` for agents (their
/// certificate is pinned), `http://` for exporters (gpudock sends them no
/// credential; an exporter behind TLS is not verified, so not offered).
fn check_url(errs: &mut FieldErrors, field: &'static str, v: &str, https_only: bool) -> String {
    let v = crate::validate::optional_text(errs, field, v, 2048);
    if v.is_empty() || errs.contains_key(field) {
        return v;
    }
    let ok = v
        .parse::<axum::http::Uri>()
        .ok()
        .filter(|u| u.host().is_some_and(|h| !h.is_empty()))
        .is_some_and(|u| match u.scheme_str() {
            Some("https") => https_only,
            Some("http") => !https_only,
            _ => false,
        });
    if !ok {
        let key = if https_only {
            "err.agent_url"
        } else {
            "err.exporter_url"
        };
        errs.insert(field, FieldError::new(key));
    }
    v.trim_end_matches('/').to_string()
}

pub async fn save_sources(
    app: &App,
    me: &CurrentUser,
    id: NodeId,
    input: SourcesInput,
    src: &Source,
) -> Result<store::Sources, AppError> {
    crate::nodes::get(app, id).await?;
    let mut cur = app
        .db
        .read(move |c| store::sources(c, id).map_err(AppError::from))
        .await?;
    let mut errs = FieldErrors::new();
    if let Some(v) = &input.agent_url {
        cur.agent_url = check_url(&mut errs, "agent_url", v, true);
    }
    if let Some(v) = &input.dcgm_url {
        cur.dcgm_url = check_url(&mut errs, "dcgm_url", v, false);
    }
    if let Some(v) = &input.node_exporter_url {
        cur.node_exporter_url = check_url(&mut errs, "node_exporter_url", v, false);
    }
    if !errs.is_empty() {
        return Err(AppError::Validation(errs));
    }
    let (actor, src, s) = (me.actor(), src.clone(), cur.clone());
    app.db
        .write(move |c| {
            let tx = c.transaction()?;
            store::set_urls(&tx, id, &s, crate::db::now())?;
            let detail = json!({"agent_url": s.agent_url, "dcgm_url": s.dcgm_url, "node_exporter_url": s.node_exporter_url});
            audit::append(&tx, &AuditEvent::new(&actor, &src, "node.metrics_sources", "node").id(id).detail(detail))?;
            tx.commit().map_err(AppError::from)
        })
        .await?;
    Ok(cur)
}

async fn set_sources(
    State(app): State<App>,
    me: CurrentUser,
    src: Source,
    ApiPath(id): ApiPath<NodeId>,
    ApiJson(input): ApiJson<SourcesInput>,
) -> Result<impl IntoResponse, AppError> {
    Ok(Json(save_sources(&app, &me, id, input, &src).await?))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct EnrollInput {
    pub agent_url: Option<String>,
}

/// A fresh enrolment: the token (shown once) and the command to run.
#[derive(Debug, Clone, Serialize)]
pub struct Enrolment {
    pub agent_url: String,
    pub token: String,
    pub command: String,
}

/// Issues a new agent token for node `id` (sealed; any earlier one and the
/// pinned certificate are dropped). The agent is trusted once it proves it
/// holds the token (see `collect::enrol`).
pub async fn start_enrolment(
    app: &App,
    me: &CurrentUser,
    id: NodeId,
    input: EnrollInput,
    src: &Source,
) -> Result<Enrolment, AppError> {
    let node = crate::nodes::get(app, id).await?;
    let mut errs = FieldErrors::new();
    let default = format!(
        "https://{}:{}",
        bracket(&node.private_ip),
        crate::metrics::agent::DEFAULT_PORT
    );
    let url = match input
        .agent_url
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        Some(u) => check_url(&mut errs, "agent_url", u, true),
        None => default,
    };
    if !errs.is_empty() {
        return Err(AppError::Validation(errs));
    }
    let token = format!("gda_{}", crate::auth::guard::random_token());
    let sealed = app.sealer.seal(token.as_bytes())?;
    let (actor, src, u) = (me.actor(), src.clone(), url.clone());
    app.db
        .write(move |c| {
            let tx = c.transaction()?;
            store::start_enrolment(&tx, id, &u, &sealed, crate::db::now())?;
            let detail = json!({"agent_url": u});
            audit::append(
                &tx,
                &AuditEvent::new(&actor, &src, "node.agent_enroll", "node")
                    .id(id)
                    .detail(detail),
            )?;
            tx.commit().map_err(AppError::from)
        })
        .await?;
    let command = format!(
        "sudo gpudock agent enroll --token {token} && sudo systemctl enable --now gpudock-agent"
    );
    Ok(Enrolment {
        agent_url: url,
        token,
        command,
    })
}

fn bracket(ip: &str) -> String {
    if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_string()
    }
}

async fn enroll(
    State(app): State<App>,
    me: CurrentUser,
    src: Source,
    ApiPath(id): ApiPath<NodeId>,
    ApiJson(input): ApiJson<EnrollInput>,
) -> Result<impl IntoResponse, AppError> {
    Ok((
        axum::http::StatusCode::CREATED,
        Json(start_enrolment(&app, &me, id, input, &src).await?),
    ))
}
