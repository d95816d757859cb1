//! Monitoring (监控): what the metrics engine collects from each node (this
//! host's /proc and NVML, a `gpudock agent`, dcgm-exporter and
//! node_exporter, Docker stats of its instances), who may see which
//! series, the pages and API (history, live updates, the overview), agent
//! enrolment and the Prometheus scrape. Queries are scoped like everything
//! else: customers see their instances and the GPUs assigned to them,
//! never a node's totals (404 as elsewhere).

pub mod api;
mod collect;
pub mod exporter;
pub mod pages;
pub mod store;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::auth::{CurrentUser, Scope};
use crate::error::AppError;
use crate::ids::NodeId;
use crate::metrics::model::{self, Kind, Target, TargetRef};
use crate::metrics::rollup::{self, HOUR, Points, Retention, Tier};
use crate::metrics::{prom, scrape};

/// Collection and maintenance until `cancel`; the open hour is written at
/// the end.
pub async fn run(app: App, cancel: CancellationToken) {
    match app.metrics.hub.reopen(crate::db::now()).await {
        Ok(n) if n > 0 => log::info!("metrics: continuing {n} series of the current hour"),
        Ok(_) => {}
        Err(e) => log::warn!("metrics: reopening the current hour failed: {e}"),
    }
    let collectors = tokio::spawn(collect::run(app.clone(), cancel.clone()));
    maintain(&app, &cancel).await;
    if let Err(e) = collectors.await {
        log::error!("metrics collectors failed: {e}");
    }
    if let Err(e) = app.metrics.hub.flush().await {
        log::error!("metrics: the last flush failed: {e}");
    }
    let gpus = app.metrics.gpus.clone();
    if let Err(e) = tokio::task::spawn_blocking(move || gpus.stop()).await {
        log::error!("metrics: stopping NVML failed: {e}");
    }
}

/// Every `flush_interval_secs`: flush, roll up finished hours and days,
/// apply retention.
async fn maintain(app: &App, cancel: &CancellationToken) {
    let every = Duration::from_secs(app.config.metrics.flush_interval_secs);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = maintain_once(app, crate::db::now()).await {
            log::warn!("metrics maintenance: {e}");
        }
    }
}

/// One maintenance pass at `now` (the clock is the caller's).
pub async fn maintain_once(app: &App, now: i64) -> Result<(), AppError> {
    let r = Retention::of(&app.config.metrics);
    app.metrics.maintain(now, r).await
}

/// The window in which a customer may see GPU `gpu` of `node`: from the
/// creation of the newest instance in their scope that holds it. `None`:
/// not theirs.
pub fn gpu_window(held: &[(NodeId, Vec<i64>, i64)], node: NodeId, gpu: i64) -> Option<i64> {
    held.iter()
        .filter(|(n, gpus, _)| *n == node && gpus.contains(&gpu))
        .map(|(_, _, created)| *created)
        .max()
}

/// A target `me` may see, and since when.
pub async fn resolve(app: &App, me: &CurrentUser, t: TargetRef) -> Result<(Target, i64), AppError> {
    let admin = matches!(me.scope(), Scope::All);
    match t {
        TargetRef::Node(n) if admin => {
            crate::nodes::get(app, n).await?;
            Ok((Target::Node { node: n }, i64::MIN))
        }
        TargetRef::Gpu(n, g) if admin => {
            crate::nodes::get(app, n).await?;
            Ok((Target::Gpu { node: n, gpu: g }, i64::MIN))
        }
        TargetRef::Node(_) => Err(AppError::NotFound),
        TargetRef::Gpu(n, g) => {
            let held: Vec<(NodeId, Vec<i64>, i64)> =
                crate::instances::list(app, me, Default::default(), crate::paging::Window::all())
                    .await?
                    .items
                    .into_iter()
                    .map(|i| (i.node_id, i.gpu_indices, i.created_at))
                    .collect();
            let since = gpu_window(&held, n, g).ok_or(AppError::NotFound)?;
            Ok((Target::Gpu { node: n, gpu: g }, since))
        }
        TargetRef::Instance(i) => {
            let inst = crate::instances::get(app, me, i).await?;
            Ok((
                Target::Instance {
                    node: inst.node_id,
                    instance: i,
                },
                i64::MIN,
            ))
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct SeriesQuery {
    pub target: Option<String>,
    pub metric: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub step: Option<String>,
    /// `json` (the default) or `csv`.
    pub format: Option<String>,
}

/// The answer's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
}

impl SeriesQuery {
    pub fn format(&self) -> Result<Format, AppError> {
        match self.format.as_deref().map(str::trim) {
            None | Some("") | Some("json") => Ok(Format::Json),
            Some("csv") => Ok(Format::Csv),
            Some(_) => Err(AppError::field("format", "err.metrics_format")),
        }
    }
}

fn int_param(v: &Option<String>, field: &'static str) -> Result<Option<i64>, AppError> {
    match v.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) => s
            .parse()
            .map(Some)
            .map_err(|_| AppError::field(field, "err.not_integer")),
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SeriesAnswer {
    pub target: String,
    pub metric: String,
    pub unit: &'static str,
    pub tier: Tier,
    pub step: i64,
    pub since: i64,
    pub until: i64,
    #[serde(flatten)]
    pub points: Points,
}

/// The history of one metric of one target, from the tier the range calls for.
pub async fn series(
    app: &App,
    me: &CurrentUser,
    q: &SeriesQuery,
) -> Result<SeriesAnswer, AppError> {
    let tref = q
        .target
        .as_deref()
        .and_then(TargetRef::parse)
        .ok_or_else(|| AppError::field("target", "err.metrics_target"))?;
    let kind = match tref {
        TargetRef::Node(_) => Kind::Node,
        TargetRef::Gpu(..) => Kind::Gpu,
        TargetRef::Instance(_) => Kind::Instance,
    };
    let metric = q
        .metric
        .as_deref()
        .and_then(|m| model::metric(kind, m))
        .ok_or_else(|| AppError::field("metric", "err.metrics_metric"))?;
    let now = crate::db::now();
    let until = int_param(&q.until, "until")?.unwrap_or(now);
    let since = int_param(&q.since, "since")?.unwrap_or(until - HOUR);
    if since >= until {
        return Err(AppError::field("since", "err.since_after_until"));
    }
    if until - since > 800 * rollup::DAY {
        return Err(AppError::field("since", "err.range_too_long"));
    }
    let asked = int_param(&q.step, "step")?.filter(|s| *s > 0);
    let (target, not_before) = resolve(app, me, tref).await?;
    let r = Retention::of(&app.config.metrics);
    let tier = rollup::choose_tier(now, since, until, &r);
    let step = rollup::choose_step(tier, asked, since, until, r.interval);
    let from = since.max(not_before);
    let points = app
        .metrics
        .points(target, metric.name, tier, since, from, until, step)
        .await?;
    Ok(SeriesAnswer {
        target: tref.to_string(),
        metric: metric.name.to_string(),
        unit: metric.unit,
        tier,
        step,
        since,
        until,
        points,
    })
}

/// A remote node's disk sizes in whole GiB (rounded down), read from its
/// agent or node_exporter: the system disk is the filesystem of the node's
/// Docker root (`docker_root`, from the daemon), the data disk that of the
/// volumes under it. None without either source, or when the root's
/// filesystem is not among those the source lists.
pub async fn remote_disks(app: &App, node: NodeId, docker_root: &str) -> Option<(i64, i64)> {
    if docker_root.is_empty() {
        return None;
    }
    let sources = app
        .db
        .read(move |c| store::sources(c, node).map_err(AppError::from))
        .await
        .ok()?;
    let host = collect::host_once(app, &sources).await?;
    let size = |p: &str| model::filesystem_of(&host.filesystems, p).map(|f| f.size_bytes);
    let system = size(docker_root)?;
    let volumes = format!("{}/volumes", docker_root.trim_end_matches('/'));
    let data = size(&volumes).unwrap_or(system);
    let gb = |b: f64| (b / f64::from(1u32 << 30)).floor() as i64;
    Some((gb(system), gb(data)))
}

/// GPU model, count and UUIDs of a node for Sync hardware: from NVML for
/// this host, else from its agent or dcgm-exporter (scraped now). The UUIDs
/// are recorded for `node`; `None` when no source reports GPUs.
pub async fn gpu_inventory(
    app: &App,
    node: Option<NodeId>,
    local: bool,
) -> Option<(String, i64, Vec<String>)> {
    let sources = match node {
        Some(n) => app
            .db
            .read(move |c| store::sources(c, n).map_err(AppError::from))
            .await
            .ok()?,
        None => store::Sources::default(),
    };
    let lim = collect::limits(app);
    let gpus: Vec<model::GpuReading> =
        if sources.has_agent() && !sources.agent_fingerprint.is_empty() {
            let sealed = sources.agent_token_sealed.as_ref()?;
            let token = String::from_utf8(app.sealer.unseal(sealed).ok()?.expose().clone()).ok()?;
            let url = format!("{}/metrics", sources.agent_url.trim_end_matches('/'));
            let f = scrape::get(&url, Some(&token), Some(&sources.agent_fingerprint), lim)
                .await
                .ok()?;
            prom::gpus_from_dcgm(&prom::parse(&f.body).ok()?)
        } else if !sources.dcgm_url.is_empty() {
            let url = format!(
                "{}/metrics",
                sources
                    .dcgm_url
                    .trim_end_matches("/metrics")
                    .trim_end_matches('/')
            );
            let f = scrape::get(&url, None, None, lim).await.ok()?;
            prom::gpus_from_dcgm(&prom::parse(&f.body).ok()?)
        } else if local {
            let g = app.metrics.gpus.clone();
            tokio::task::spawn_blocking(move || g.read())
                .await
                .ok()?
                .ok()?
        } else {
            return None;
        };
    let first = gpus.first()?;
    let name = first.name.clone();
    let inv: Vec<(i64, String, String)> = gpus
        .iter()
        .map(|g| (g.index, g.uuid.clone(), g.name.clone()))
        .collect();
    let uuids = gpus.iter().map(|g| g.uuid.clone()).collect();
    let now = crate::db::now();
    if let Some(node) = node {
        let written = app
            .db
            .write(move |c| store::set_gpus(c, node, &inv, now).map_err(AppError::from))
            .await;
        if let Err(e) = written {
            log::warn!("metrics: recording the GPUs of node {node}: {e}");
        }
    }
    Some((name, gpus.len() as i64, uuids))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn customers_see_a_gpu_only_while_their_instance_holds_it() {
        let (n1, n2) = (NodeId(1), NodeId(2));
        let held = vec![(n1, vec![0, 1], 100), (n1, vec![3], 50), (n2, vec![0], 10)];
        assert_eq!(gpu_window(&held, n1, 1), Some(100));
        assert_eq!(gpu_window(&held, n1, 3), Some(50));
        assert_eq!(gpu_window(&held, n2, 0), Some(10));
        assert_eq!(gpu_window(&held, n1, 2), None, "another tenant's GPU");
        assert_eq!(gpu_window(&held, NodeId(3), 0), None);
    }
}
