//! Monitoring pages: a node's GPUs, host and sources (with agent
//! enrolment), an instance's charts (a part of its page), and the overview
//! on the dashboard. Charts are drawn by uPlot from `/api/v1/metrics/series`
//! and follow `/api/v1/metrics/live` while the page is open.

use std::collections::HashMap;

use askama::Template;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};

use super::api::{EnrollInput, Enrolment, NodeMetrics, Overview, SourcesInput};
use crate::app::App;
use crate::audit::Source;
use crate::auth::PageCtx;
use crate::error::AppError;
use crate::ids::{InstanceId, NodeId};
use crate::nodes::model::Node;
use crate::web::extract::ApiPath;
use crate::web::form::FormValues;
use crate::web::render::{FormErrs, Layout, html, page_or_fragment};

pub fn routes() -> Router<App> {
    Router::new()
        .route("/metrics/overview", get(overview))
        .route("/nodes/{id}/metrics", get(node_page))
        .route("/nodes/{id}/metrics/sources", post(sources))
        .route("/nodes/{id}/metrics/enroll", post(enroll))
        .route("/instances/{id}/metrics", get(instance))
}

/// A chart: one metric of one or more targets.
#[derive(Clone)]
pub struct Chart {
    pub id: String,
    pub title: String,
    pub metric: &'static str,
    pub unit: &'static str,
    pub targets: String,
    pub labels: String,
}

fn chart(
    id: &str,
    title: &str,
    metric: &'static str,
    unit: &'static str,
    targets: &[(String, String)],
) -> Chart {
    Chart {
        id: id.to_string(),
        title: title.to_string(),
        metric,
        unit,
        targets: targets
            .iter()
            .map(|(t, _)| t.as_str())
            .collect::<Vec<_>>()
            .join(","),
        labels: targets
            .iter()
            .map(|(_, l)| l.as_str())
            .collect::<Vec<_>>()
            .join(","),
    }
}

/// Formats bytes as GiB / MiB for tables.
pub fn bytes(v: &Option<f64>) -> String {
    match v {
        Some(b) if *b >= 1_073_741_824.0 => format!("{:.1} GiB", b / 1_073_741_824.0),
        Some(b) => format!("{:.0} MiB", b / 1_048_576.0),
        None => "–".into(),
    }
}

pub fn num(v: &Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{v:.digits$}"))
}

pub fn age(ts: &Option<i64>) -> String {
    ts.map_or_else(
        || "–".into(),
        |t| format!("{} s", (crate::db::now() - t).max(0)),
    )
}

/// The i18n key of a metric source's name (`docker`, `host`, `nvml`,
/// `node_exporter`, `dcgm`, `agent`).
pub fn source_key(name: &str) -> &'static str {
    match name {
        "docker" => "metrics.src_docker",
        "host" => "metrics.src_host",
        "nvml" => "metrics.src_nvml",
        "node_exporter" => "metrics.src_node_exporter",
        "dcgm" => "metrics.src_dcgm",
        "agent" => "metrics.src_agent",
        _ => "metrics.src_other",
    }
}

#[derive(Template)]
#[template(path = "monitor/node.html")]
struct NodePage {
    l: Layout,
    node: Node,
    m: NodeMetrics,
    charts: Vec<Chart>,
    enrolment: Option<Enrolment>,
    errs: FormErrs,
    /// The sources form: what was submitted (shown again with its
    /// errors), else the stored URLs.
    form: FormValues,
}

fn node_charts(l: &Layout, node: NodeId, m: &NodeMetrics) -> Vec<Chart> {
    let host = vec![(format!("node:{node}"), l.t("metrics.host").to_string())];
    let gpus: Vec<(String, String)> = m
        .gpu_rows
        .iter()
        .map(|g| {
            (
                format!("gpu:{node}:{}", g.index),
                format!("GPU {}", g.index),
            )
        })
        .collect();
    let mut c = vec![
        chart("host-cpu", l.t("metrics.cpu"), "cpu_pct", "%", &host),
        chart(
            "host-mem",
            l.t("metrics.memory"),
            "mem_used_bytes",
            "B",
            &host,
        ),
        chart(
            "host-disk",
            l.t("metrics.disk_docker"),
            "disk_docker_used_bytes",
            "B",
            &host,
        ),
        chart("host-rx", l.t("metrics.net_rx"), "net_rx_bps", "B/s", &host),
        chart("host-tx", l.t("metrics.net_tx"), "net_tx_bps", "B/s", &host),
    ];
    if !gpus.is_empty() {
        c.insert(
            0,
            chart("gpu-util", l.t("metrics.gpu_util"), "util_pct", "%", &gpus),
        );
        c.insert(
            1,
            chart(
                "gpu-mem",
                l.t("metrics.gpu_mem"),
                "mem_used_bytes",
                "B",
                &gpus,
            ),
        );
        c.insert(
            2,
            chart("gpu-temp", l.t("metrics.gpu_temp"), "temp_c", "°C", &gpus),
        );
        c.insert(
            3,
            chart("gpu-power", l.t("metrics.gpu_power"), "power_w", "W", &gpus),
        );
    }
    c
}

async fn render_node(
    app: &App,
    ctx: PageCtx,
    id: NodeId,
    enrolment: Option<Enrolment>,
    errs: FormErrs,
    submitted: Option<FormValues>,
) -> Result<Response, AppError> {
    let node = crate::nodes::get(app, id).await?;
    let m = super::api::node_metrics(app, id).await?;
    let l = ctx.nav("nodes").l;
    let charts = node_charts(&l, id, &m);
    let form = submitted.unwrap_or_else(|| {
        FormValues::from_pairs(&[
            ("node_exporter_url", m.config.node_exporter_url.clone()),
            ("dcgm_url", m.config.dcgm_url.clone()),
            ("agent_url", m.config.agent_url.clone()),
        ])
    });
    html(&NodePage {
        l,
        node,
        m,
        charts,
        enrolment,
        errs,
        form,
    })
}

async fn node_page(
    State(app): State<App>,
    ctx: PageCtx,
    ApiPath(id): ApiPath<NodeId>,
) -> Result<Response, AppError> {
    render_node(&app, ctx, id, None, FormErrs::default(), None).await
}

async fn sources(
    State(app): State<App>,
    ctx: PageCtx,
    src: Source,
    ApiPath(id): ApiPath<NodeId>,
    Form(f): Form<HashMap<String, String>>,
) -> Result<Response, AppError> {
    let f = FormValues::from_map(f);
    let input = SourcesInput {
        agent_url: f.text("agent_url"),
        dcgm_url: f.text("dcgm_url"),
        node_exporter_url: f.text("node_exporter_url"),
    };
    match super::api::save_sources(&app, &ctx.me, id, input, &src).await {
        Ok(_) => Ok(Redirect::to(&format!("/nodes/{id}/metrics")).into_response()),
        Err(e) if e.fields().is_some() => {
            let (status, errs) = (e.status(), FormErrs::of_error(&e, ctx.tr()));
            let mut r = render_node(&app, ctx, id, None, errs, Some(f)).await?;
            *r.status_mut() = status;
            Ok(r)
        }
        Err(e) => Err(e),
    }
}

async fn enroll(
    State(app): State<App>,
    ctx: PageCtx,
    src: Source,
    ApiPath(id): ApiPath<NodeId>,
    Form(f): Form<HashMap<String, String>>,
) -> Result<Response, AppError> {
    let f = FormValues::from_map(f);
    let input = EnrollInput {
        agent_url: f.text("agent_url"),
    };
    match super::api::start_enrolment(&app, &ctx.me, id, input, &src).await {
        Ok(e) => render_node(&app, ctx, id, Some(e), FormErrs::default(), None).await,
        Err(e) if e.fields().is_some() => {
            let (status, errs) = (e.status(), FormErrs::of_error(&e, ctx.tr()));
            let mut r = render_node(&app, ctx, id, None, errs, None).await?;
            *r.status_mut() = status;
            Ok(r)
        }
        Err(e) => Err(e),
    }
}

#[derive(Template)]
#[template(path = "monitor/instance.html")]
struct InstancePage {
    l: Layout,
    id: InstanceId,
    name: String,
    charts: Vec<Chart>,
}

#[derive(Template)]
#[template(path = "monitor/instance_charts.html")]
struct InstanceFragment {
    l: Layout,
    charts: Vec<Chart>,
}

async fn instance(
    State(app): State<App>,
    headers: HeaderMap,
    ctx: PageCtx,
    ApiPath(id): ApiPath<InstanceId>,
) -> Result<Response, AppError> {
    let i = crate::instances::get(&app, &ctx.me, id).await?;
    let l = ctx.nav("instances").l;
    let me = vec![(format!("instance:{id}"), i.name.clone())];
    let gpus: Vec<(String, String)> = i
        .gpu_indices
        .iter()
        .map(|g| (format!("gpu:{}:{g}", i.node_id), format!("GPU {g}")))
        .collect();
    let mut charts = vec![
        chart("inst-cpu", l.t("metrics.cpu"), "cpu_pct", "%", &me),
        chart(
            "inst-mem",
            l.t("metrics.memory"),
            "mem_used_bytes",
            "B",
            &me,
        ),
        chart("inst-rx", l.t("metrics.net_rx"), "net_rx_bps", "B/s", &me),
        chart("inst-tx", l.t("metrics.net_tx"), "net_tx_bps", "B/s", &me),
    ];
    if !gpus.is_empty() {
        charts.insert(
            0,
            chart(
                "inst-gpu-util",
                l.t("metrics.gpu_util"),
                "util_pct",
                "%",
                &gpus,
            ),
        );
        charts.insert(
            1,
            chart(
                "inst-gpu-mem",
                l.t("metrics.gpu_mem"),
                "mem_used_bytes",
                "B",
                &gpus,
            ),
        );
    }
    let fragment = InstanceFragment {
        l: l.clone(),
        charts: charts.clone(),
    };
    let full = InstancePage {
        l,
        id,
        name: i.name,
        charts,
    };
    page_or_fragment(&headers, &full, &fragment)
}

#[derive(Template)]
#[template(path = "monitor/overview.html")]
struct OverviewFragment {
    l: Layout,
    o: Overview,
}

/// The dashboard's part (an htmx fragment); a plain visit goes to the dashboard.
async fn overview(
    State(app): State<App>,
    headers: HeaderMap,
    ctx: PageCtx,
) -> Result<Response, AppError> {
    if !crate::web::render::is_htmx(&headers) {
        return Ok(Redirect::to("/").into_response());
    }
    let o = super::api::overview(&app, &ctx.me).await?;
    html(&OverviewFragment { l: ctx.l, o })
}
