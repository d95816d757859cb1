//! `GET /metrics` on the appliance, for a Prometheus server: gpudock's own
//! gauges and the latest value of every collected series, labelled `node`,
//! `gpu`, `uuid`, `instance`, `tenant`. It answers a bearer token with the
//! `metrics` scope whose owner's role holds the route's permission record,
//! or a source address in `metrics.prometheus_allow`; anyone else gets 401.
//! The route sits outside the session guard (no cookies, no CSRF) and
//! decides with the same permission records.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;

use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rusqlite::Connection;

use crate::app::App;
use crate::error::AppError;
use crate::ids::{InstanceId, NodeId};
use crate::metrics::expose::{self, Exposition, labels, set};
use crate::metrics::model::{METRICS, Target};

pub fn routes() -> Router<App> {
    Router::new().route("/metrics", get(scrape))
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        "401 unauthorized: send a token with the metrics scope\n",
    )
        .into_response()
}

async fn scrape(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let allowed = app
        .config
        .metrics
        .allowed_networks()
        .unwrap_or_default()
        .iter()
        .any(|n| n.contains(&peer.ip()));
    if !allowed {
        let Some(token) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return unauthorized();
        };
        match crate::auth::scrape_allowed(&app, token.trim()).await {
            Ok(true) => {}
            Ok(false) => return unauthorized(),
            Err(e) => return e.into_response(),
        }
    }
    match exposition(&app).await {
        Ok(text) => {
            let mut r = text.into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(expose::CONTENT_TYPE),
            );
            r
        }
        Err(e) => e.into_response(),
    }
}

/// Names for labels, read in one go.
#[derive(Default)]
struct Names {
    nodes: HashMap<NodeId, (String, String)>,
    /// instance id -> (name, status, tenant code, node, gpus)
    instances: HashMap<InstanceId, (String, String, String, NodeId, Vec<i64>)>,
    uuids: HashMap<(NodeId, i64), String>,
}

fn names(c: &Connection) -> rusqlite::Result<Names> {
    let mut n = Names::default();
    let mut st = c.prepare("SELECT id, name, status FROM nodes")?;
    for r in st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))? {
        let (id, name, status): (NodeId, String, String) = r?;
        n.nodes.insert(id, (name, status));
    }
    let mut st = c.prepare(
        "SELECT i.id, i.name, i.status, COALESCE(t.company_code, ''), i.node_id, i.gpu_indices \
         FROM instances i LEFT JOIN tenants t ON t.id = i.tenant_id",
    )?;
    for r in st.query_map([], |r| {
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get::<_, String>(5)?,
        ))
    })? {
        let (id, name, status, tenant, node, gpus): (
            InstanceId,
            String,
            String,
            String,
            NodeId,
            String,
        ) = r?;
        let gpus = serde_json::from_str(&gpus).unwrap_or_default();
        n.instances.insert(id, (name, status, tenant, node, gpus));
    }
    for g in super::store::gpus(c, None)? {
        n.uuids.insert((g.node_id, g.gpu), g.uuid);
    }
    Ok(n)
}

fn dir_size(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

async fn exposition(app: &App) -> Result<String, AppError> {
    let n = app.db.read(|c| names(c).map_err(AppError::from)).await?;
    let mut x = Exposition::default();
    let nodes = x.gauge("gpudock_nodes", "Compute nodes by status");
    for s in ["online", "unreachable", "unknown"] {
        let count = n.nodes.values().filter(|(_, st)| st == s).count();
        set(&nodes, labels(&[("status", s)]), count as f64);
    }
    let inst = x.gauge("gpudock_instances", "Instances by status");
    let mut by_status: HashMap<&str, usize> = HashMap::new();
    for (_, st, ..) in n.instances.values() {
        *by_status.entry(st.as_str()).or_default() += 1;
    }
    for (s, c) in by_status {
        set(&inst, labels(&[("status", s)]), c as f64);
    }
    set(
        &x.gauge(
            "gpudock_sessions_live",
            "Live remote sessions (web terminal and SSH)",
        ),
        Vec::new(),
        app.live.snapshot().len() as f64,
    );
    set(
        &x.gauge("gpudock_jobs_running", "Background jobs running"),
        Vec::new(),
        app.jobs.running() as f64,
    );
    let db = app.config.db_path();
    let wal = db.with_extension("db-wal");
    let db_size: u64 = [db, wal]
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    set(
        &x.gauge(
            "gpudock_database_size_bytes",
            "Size of the database files (with the WAL)",
        ),
        Vec::new(),
        db_size as f64,
    );
    let rec = dir_size(&app.config.recordings_dir());
    set(
        &x.gauge(
            "gpudock_recordings_size_bytes",
            "Size of the session recordings",
        ),
        Vec::new(),
        rec as f64,
    );
    series(&mut x, app, &n);
    Ok(x.finish())
}

/// The latest value of every series (fresh within three intervals).
fn series(x: &mut Exposition, app: &App, n: &Names) {
    let fresh = crate::db::now() - 3 * app.config.metrics.interval_secs as i64;
    let latest = app.metrics.hub.latest();
    let mut fams = HashMap::new();
    for m in METRICS {
        fams.insert((m.kind, m.name), x.gauge(m.prom, m.help));
    }
    let node_name = |id: NodeId| {
        n.nodes
            .get(&id)
            .map_or_else(|| id.to_string(), |(name, _)| name.clone())
    };
    for ((target, metric), l) in latest.iter().filter(|(_, l)| l.ts >= fresh) {
        let Some(fam) = fams.get(&(target.kind(), *metric)) else {
            continue;
        };
        let lbl = match *target {
            Target::Node { node } => labels(&[("node", &node_name(node))]),
            Target::Gpu { node, gpu } => {
                let holder = n
                    .instances
                    .values()
                    .find(|(_, _, _, nd, gpus)| *nd == node && gpus.contains(&gpu));
                let (iname, tenant) = holder.map_or((String::new(), String::new()), |h| {
                    (h.0.clone(), h.2.clone())
                });
                let uuid = n.uuids.get(&(node, gpu)).cloned().unwrap_or_default();
                labels(&[
                    ("node", &node_name(node)),
                    ("gpu", &gpu.to_string()),
                    ("uuid", &uuid),
                    ("instance", &iname),
                    ("tenant", &tenant),
                ])
            }
            Target::Instance { node, instance } => {
                let Some((iname, _, tenant, ..)) = n.instances.get(&instance) else {
                    continue;
                };
                labels(&[
                    ("node", &node_name(node)),
                    ("instance", iname),
                    ("tenant", tenant),
                ])
            }
        };
        set(fam, lbl, l.value);
    }
}
