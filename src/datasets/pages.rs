//! Dataset pages: the list with a create form, a dataset's page (its
//! files, how to fill it by SFTP, the instances using it, delete with
//! confirmation), and the checkboxes the instance wizard offers for the
//! chosen node.

use std::collections::HashMap;

use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::Value;

use super::{CreateInput, Dataset};
use crate::app::App;
use crate::audit::Source;
use crate::auth::{PageCtx, Scope};
use crate::error::AppError;
use crate::ids::NodeId;
use crate::web::extract::{ApiPath, ApiQuery};
use crate::web::form::FormValues;
use crate::web::render::{FormErrs, Layout, html, is_htmx};

pub fn routes() -> Router<App> {
    Router::new()
        .route("/datasets", get(list).post(create))
        .route("/datasets/choices", get(choices))
        .route("/datasets/{id}", get(show))
        .route("/datasets/{id}/delete", post(remove))
}

/// A size as the pages show it.
pub fn size(d: &Dataset) -> String {
    crate::files::model::human_size(d.size_bytes.max(0) as u64)
}

#[derive(Template)]
#[template(path = "datasets/list.html")]
struct ListPage {
    l: Layout,
    datasets: Vec<Dataset>,
    /// (id, name) of the nodes a dataset may go on.
    nodes: Vec<(NodeId, String)>,
    /// Whether the creator may make the tenant's datasets.
    tenant_owned: bool,
    admin: bool,
    form: FormValues,
    errs: FormErrs,
}

async fn render_list(
    app: &App,
    ctx: PageCtx,
    form: FormValues,
    errs: FormErrs,
) -> Result<Response, AppError> {
    let datasets = super::list(app, &ctx.me, None).await?;
    let all = crate::auth::sees_node_details(app, &ctx.me.user).await?;
    let nodes = crate::nodes::all(app)
        .await?
        .into_iter()
        .filter(|n| n.listed || all)
        .map(|n| (n.id, n.name))
        .collect();
    let scope = ctx.me.scope();
    html(&ListPage {
        l: ctx.nav("datasets").l,
        datasets,
        nodes,
        tenant_owned: !matches!(scope, Scope::User(..)),
        admin: matches!(scope, Scope::All),
        form,
        errs,
    })
}

async fn list(State(app): State<App>, ctx: PageCtx) -> Result<Response, AppError> {
    render_list(&app, ctx, FormValues::default(), FormErrs::default()).await
}

async fn create(
    State(app): State<App>,
    ctx: PageCtx,
    src: Source,
    Form(f): Form<HashMap<String, String>>,
) -> Result<Response, AppError> {
    let form = FormValues::from_map(f);
    let input = CreateInput {
        name: form.text("name"),
        node_id: form.value("node_id"),
        description: form.text("description"),
        owner: form.text("owner"),
        tenant_id: match form.v("tenant_id") {
            "" => None,
            v => Some(Value::String(v.to_string())),
        },
    };
    match super::create(&app, &ctx.me, input, &src).await {
        Ok(d) => Ok(Redirect::to(&format!("/datasets/{}", d.id)).into_response()),
        Err(e) if e.fields().is_some() => {
            let (status, errs) = (e.status(), FormErrs::of_error(&e, ctx.tr()));
            let mut resp = render_list(&app, ctx, form, errs).await?;
            *resp.status_mut() = status;
            Ok(resp)
        }
        Err(e) => Err(e),
    }
}

#[derive(Template)]
#[template(path = "datasets/show.html")]
struct ShowPage {
    l: Layout,
    d: Dataset,
    manages: bool,
    used_by: Vec<String>,
    ssh_port: u16,
    host: String,
}

async fn show(
    State(app): State<App>,
    ctx: PageCtx,
    origin: crate::web::public::PublicOrigin,
    ApiPath(id): ApiPath<i64>,
) -> Result<Response, AppError> {
    let (d, manages, used_by) = super::get(&app, &ctx.me, id).await?;
    html(&ShowPage {
        l: ctx.nav("datasets").l,
        d,
        manages,
        used_by,
        ssh_port: origin.ssh_port,
        host: origin.ssh_host,
    })
}

/// Deletes after the browser's confirmation (htmx `hx-confirm`).
async fn remove(
    State(app): State<App>,
    headers: HeaderMap,
    ctx: PageCtx,
    src: Source,
    ApiPath(id): ApiPath<i64>,
) -> Result<Response, AppError> {
    super::delete(&app, &ctx.me, id, &src).await?;
    if is_htmx(&headers) {
        let mut r = ().into_response();
        r.headers_mut()
            .insert("hx-redirect", HeaderValue::from_static("/datasets"));
        return Ok(r);
    }
    Ok(Redirect::to("/datasets").into_response())
}

#[derive(Template)]
#[template(path = "datasets/choices.html")]
pub struct Choices {
    pub l: Layout,
    pub datasets: Vec<Dataset>,
    /// Ids ticked already (the wizard coming back with errors).
    pub ticked: Vec<i64>,
    pub node_chosen: bool,
}

impl Choices {
    pub fn is_ticked(&self, d: &Dataset) -> bool {
        self.ticked.contains(&d.id)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ChoicesQuery {
    node_id: Option<String>,
}

/// The wizard's datasets for a node: the ones the user may use there.
async fn choices(
    State(app): State<App>,
    ctx: PageCtx,
    ApiQuery(q): ApiQuery<ChoicesQuery>,
) -> Result<Response, AppError> {
    let node = q
        .node_id
        .as_deref()
        .and_then(|v| v.trim().parse::<i64>().ok())
        .map(NodeId);
    let text = choices_html(&app, &ctx.me, ctx.l.clone(), node, Vec::new()).await?;
    Ok(axum::response::Html(text).into_response())
}

/// The checkboxes of the datasets `me` may mount on `node`.
pub async fn choices_html(
    app: &App,
    me: &crate::auth::CurrentUser,
    l: Layout,
    node: Option<NodeId>,
    ticked: Vec<i64>,
) -> Result<String, AppError> {
    let datasets = match node {
        Some(n) => super::list(app, me, Some(n)).await?,
        None => Vec::new(),
    };
    let c = Choices {
        l,
        datasets,
        ticked,
        node_chosen: node.is_some(),
    };
    c.render().map_err(AppError::internal)
}
