//! Compute node pages: the list with live status and the offer to register
//! this host, the create/edit form (secrets shown as "unchanged"), Test
//! connection (an htmx fragment), Sync hardware, delete.

use std::collections::HashMap;

use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde_json::Value;

use super::TestResult;
use super::model::{Node, NodeFields, NodeInput, Used};
use crate::app::App;
use crate::audit::Source;
use crate::auth::PageCtx;
use crate::docker::EngineReport;
use crate::error::AppError;
use crate::ids::NodeId;
use crate::paging::{Pager, Paging, SearchForm};
use crate::web::extract::{ApiPath, ApiQuery};
use crate::web::form::FormValues;
use crate::web::render::{FormErrs, Layout, form_error, html, page_or_fragment};

pub fn routes() -> Router<App> {
    Router::new()
        .route("/nodes", get(nodes).post(create))
        .route("/nodes/register-local", post(register_local))
        .route("/nodes/{id}", get(edit).post(save))
        .route("/nodes/{id}/delete", post(remove))
        .route("/nodes/{id}/test", post(test))
        .route("/nodes/{id}/sync", post(sync))
}

fn values(f: &NodeFields) -> FormValues {
    // TLS is for tcp:// only: never shown checked for a unix:// endpoint.
    let tls = f.tls_enabled && !f.docker_endpoint.starts_with("unix://");
    let pairs: Vec<(&str, String)> = vec![
        ("name", f.name.clone()),
        ("region", f.region.clone()),
        ("cpu_cores", f.cpu_cores.to_string()),
        ("memory_gb", f.memory_gb.to_string()),
        ("system_disk_gb", f.system_disk_gb.to_string()),
        ("data_disk_gb", f.data_disk_gb.to_string()),
        ("public_ip", f.public_ip.clone()),
        ("private_ip", f.private_ip.clone()),
        ("ssh_port", f.ssh_port.to_string()),
        ("username", f.username.clone()),
        ("gpu_name", f.gpu_name.clone()),
        ("gpu_count", f.gpu_count.to_string()),
        ("docker_endpoint", f.docker_endpoint.clone()),
        ("tls_enabled", if tls { "1" } else { "" }.into()),
        ("tls_ca_cert", f.tls_ca_cert.clone()),
        ("tls_client_cert", f.tls_client_cert.clone()),
        ("listed", if f.listed { "1" } else { "" }.into()),
        ("remark", f.remark.clone()),
    ];
    FormValues::from_map(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

/// Form strings to the API input. Secret fields left empty keep the sealed
/// value; the "clear" boxes remove it.
fn input(f: &FormValues) -> NodeInput {
    let text = |k: &str| Some(f.v(k).to_string());
    let num = |k: &str| Some(Value::String(f.v(k).to_string()));
    let secret = |k: &str, clear: &str| {
        if f.checked(clear) {
            Some(None)
        } else {
            Some(Some(f.v(k).to_string()))
        }
    };
    NodeInput {
        name: text("name"),
        region: text("region"),
        cpu_cores: num("cpu_cores"),
        memory_gb: num("memory_gb"),
        system_disk_gb: num("system_disk_gb"),
        data_disk_gb: num("data_disk_gb"),
        public_ip: text("public_ip"),
        private_ip: text("private_ip"),
        ssh_port: num("ssh_port"),
        username: text("username"),
        password: secret("password", "clear_password"),
        gpu_name: text("gpu_name"),
        gpu_count: num("gpu_count"),
        docker_endpoint: text("docker_endpoint"),
        tls_enabled: f.bool_value("tls_enabled"),
        tls_ca_cert: text("tls_ca_cert"),
        tls_client_cert: text("tls_client_cert"),
        tls_client_key: secret("tls_client_key", "clear_tls_client_key"),
        listed: f.bool_value("listed"),
        remark: text("remark"),
    }
}

#[derive(Template)]
#[template(path = "nodes/nodes.html")]
struct NodesPage {
    l: Layout,
    nodes: Vec<(Node, Used)>,
    pager: Pager,
    sf: SearchForm,
    offer: Option<EngineReport>,
    action: String,
    editing: bool,
    has_password: bool,
    has_client_key: bool,
    form: FormValues,
    errs: FormErrs,
}

/// The i18n key of a node's status.
pub fn status_key(s: &super::model::Status) -> &'static str {
    match s {
        super::model::Status::Online => "nodes.s_online",
        super::model::Status::Unreachable => "nodes.s_unreachable",
        super::model::Status::Unknown => "nodes.s_unknown",
    }
}

impl NodesPage {
    fn status_key(&self, n: &Node) -> &'static str {
        status_key(&n.status)
    }
}

async fn nodes_page(
    app: &App,
    ctx: PageCtx,
    paging: &Paging,
    form: FormValues,
    errs: FormErrs,
) -> Result<Response, AppError> {
    let page = super::list_used(app, paging.search(), paging.window).await?;
    let offer = super::local_offer(app).await;
    html(&NodesPage {
        l: ctx.nav("nodes").l,
        pager: paging.pager(page.total, page.items.len()),
        nodes: page.items,
        sf: SearchForm::new(
            "/nodes",
            paging,
            super::model::Status::ALL
                .iter()
                .map(|s| (s.as_str(), status_key(s))),
        ),
        offer,
        action: "/nodes".into(),
        editing: false,
        has_password: false,
        has_client_key: false,
        form,
        errs,
    })
}

async fn nodes(State(app): State<App>, ctx: PageCtx, paging: Paging) -> Result<Response, AppError> {
    let form = values(&NodeFields::empty());
    nodes_page(&app, ctx, &paging, form, FormErrs::default()).await
}

async fn create(
    State(app): State<App>,
    ctx: PageCtx,
    src: Source,
    Form(f): Form<HashMap<String, String>>,
) -> Result<Response, AppError> {
    let form = FormValues::from_map(f);
    match super::save(&app, &ctx.me, None, input(&form), &src).await {
        Ok(n) => Ok(Redirect::to(&format!("/nodes/{}", n.id)).into_response()),
        Err(e) if e.fields().is_some() => {
            let (status, errs) = (e.status(), FormErrs::of_error(&e, ctx.tr()));
            let mut r = nodes_page(&app, ctx, &Paging::first("/nodes"), form, errs).await?;
            *r.status_mut() = status;
            Ok(r)
        }
        Err(e) => Err(e),
    }
}

async fn register_local(
    State(app): State<App>,
    ctx: PageCtx,
    src: Source,
) -> Result<Response, AppError> {
    let node = super::register_local(&app, &ctx.me, &src).await?;
    Ok(Redirect::to(&format!("/nodes/{}", node.id)).into_response())
}

#[derive(Template)]
#[template(path = "nodes/node_edit.html")]
struct EditPage {
    l: Layout,
    node: Node,
    action: String,
    editing: bool,
    has_password: bool,
    has_client_key: bool,
    form: FormValues,
    errs: FormErrs,
    result: Option<TestResult>,
    /// The action just done (`?done=sync`, `?done=saved`): its i18n key.
    done: Option<&'static str>,
}

#[derive(Template)]
#[template(path = "nodes/test_result.html")]
struct ResultFragment {
    l: Layout,
    result: Option<TestResult>,
}

fn edit_page(
    ctx: PageCtx,
    node: Node,
    form: FormValues,
    errs: FormErrs,
    result: Option<TestResult>,
) -> EditPage {
    EditPage {
        action: format!("/nodes/{}", node.id),
        editing: true,
        has_password: node.has_password,
        has_client_key: node.has_client_key,
        l: ctx.nav("nodes").l,
        node,
        form,
        errs,
        result,
        done: None,
    }
}

/// Which action's result the node page shows (`?done=`).
#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct Done {
    done: String,
}

async fn edit(
    State(app): State<App>,
    ctx: PageCtx,
    ApiPath(id): ApiPath<NodeId>,
    ApiQuery(done): ApiQuery<Done>,
) -> Result<Response, AppError> {
    let node = super::get(&app, id).await?;
    let form = values(&NodeFields::of(&node));
    let mut page = edit_page(ctx, node, form, FormErrs::default(), None);
    page.done = match done.done.as_str() {
        "sync" => Some("nodes.done_sync"),
        _ => None,
    };
    html(&page)
}

async fn save(
    State(app): State<App>,
    ctx: PageCtx,
    src: Source,
    ApiPath(id): ApiPath<NodeId>,
    Form(f): Form<HashMap<String, String>>,
) -> Result<Response, AppError> {
    let form = FormValues::from_map(f);
    match super::save(&app, &ctx.me, Some(id), input(&form), &src).await {
        Ok(_) => Ok(Redirect::to("/nodes").into_response()),
        Err(e) => {
            let node = super::get(&app, id).await?;
            let tr = ctx.tr();
            form_error(e, |errs| html(&edit_page(ctx, node, form, errs, None)), tr)
        }
    }
}

async fn remove(
    State(app): State<App>,
    ctx: PageCtx,
    src: Source,
    ApiPath(id): ApiPath<NodeId>,
) -> Result<Response, AppError> {
    super::delete(&app, &ctx.me, id, &src).await?;
    Ok(Redirect::to("/nodes").into_response())
}

async fn test(
    State(app): State<App>,
    headers: HeaderMap,
    ctx: PageCtx,
    src: Source,
    ApiPath(id): ApiPath<NodeId>,
) -> Result<Response, AppError> {
    let result = super::test(&app, &ctx.me, id, &src).await?;
    let node = super::get(&app, id).await?;
    let form = values(&NodeFields::of(&node));
    let fragment = ResultFragment {
        l: ctx.l.clone(),
        result: Some(result.clone()),
    };
    let full = edit_page(ctx, node, form, FormErrs::default(), Some(result));
    page_or_fragment(&headers, &full, &fragment)
}

async fn sync(
    State(app): State<App>,
    ctx: PageCtx,
    src: Source,
    ApiPath(id): ApiPath<NodeId>,
) -> Result<Response, AppError> {
    super::sync(&app, &ctx.me, id, &src).await?;
    Ok(Redirect::to(&format!("/nodes/{id}?done=sync")).into_response())
}
