//! Instance pages: the list (rows refresh themselves), the create wizard
//! (image → spec → candidate nodes, htmx, no page reloads), creation
//! progress, the instance page with its lifecycle buttons, live status and
//! followed logs. Forms call the same operations as the API.

use std::collections::HashMap;

use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde_json::Value;

use super::model::InstanceStatus;
use super::placement::{Candidate, Refusal};
use super::store::{Instance, Names, Orphan, Warning};
use super::{Action, CreateInput};
use crate::app::App;
use crate::audit::Source;
use crate::auth::PageCtx;
use crate::auth::Role;
use crate::catalog::model::{Image, Spec};
use crate::error::AppError;
use crate::i18n::Tr;
use crate::ids::InstanceId;
use crate::jobs::JobView;
use crate::paging::{Pager, Paging, SearchForm, Window};
use crate::web::extract::{ApiPath, ApiQuery};
use crate::web::form::FormValues;
use crate::web::render::{FormErrs, Layout, html, hx_redirect, is_htmx, page_or_fragment};

pub fn routes() -> Router<App> {
    Router::new()
        .route("/instances", get(list).post(create))
        .route("/instances/new", get(wizard))
        .route("/instances/{id}", get(show))
        .route(
            "/instances/{id}/start",
            post(async |s, h, c, src, id| act(Action::Start, s, h, c, src, id).await),
        )
        .route(
            "/instances/{id}/stop",
            post(async |s, h, c, src, id| act(Action::Stop, s, h, c, src, id).await),
        )
        .route(
            "/instances/{id}/restart",
            post(async |s, h, c, src, id| act(Action::Restart, s, h, c, src, id).await),
        )
        .route("/instances/{id}/delete", post(remove))
        .route("/jobs/{id}", get(job))
}

/// i18n key of a status (docker's states plus ours).
pub fn status_key(status: &InstanceStatus) -> &'static str {
    status.key()
}

/// The translated sentence of a warning (pages show the daemon's words
/// beside it, as they are).
pub fn warning_text(tr: &Tr, w: &Warning) -> String {
    let key = match w.code.as_str() {
        "system_disk_not_enforced" => "instances.w_system_disk_not_enforced",
        _ => "instances.w_other",
    };
    tr.t(key).to_string()
}

/// A container ID as docker shows it (12 characters).
pub fn short_id(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

#[derive(Template)]
#[template(path = "instances/list.html")]
struct ListPage<'a> {
    l: Layout,
    /// The table and pager, rendered (see [`Rows`]).
    rows: &'a str,
    orphans: Vec<Orphan>,
    pager: Pager,
    sf: SearchForm,
}

/// The table and pager: the list page's part that refreshes itself, and
/// all an htmx request for the list gets. The same for every caller with
/// the same rows, language and columns: rendered once and kept until the
/// next commit (`instances::named_rendered`). `l` carries the language
/// only (nothing of who asks).
#[derive(Template)]
#[template(path = "instances/rows.html")]
struct Rows<'a> {
    l: Layout,
    rows: &'a [(Instance, Names)],
    show_user: bool,
    pager: Pager,
}

/// The rendered table and pager of a page of the list, and its pager.
struct RenderedRows {
    html: String,
    pager: Pager,
}

async fn list(
    State(app): State<App>,
    headers: HeaderMap,
    ctx: PageCtx,
    paging: Paging,
) -> Result<Response, AppError> {
    let show_user = ctx.me.user.role != Role::CustomerMember;
    let tr = ctx.tr();
    // Everything the rows' rendering reads beside the rows: the language,
    // the user column, and the query string (`here` names the path, the
    // window and every other pair the pager's links keep).
    let key = format!(
        "rows lang={} show_user={show_user} here={}",
        tr.code(),
        paging.link(paging.window.offset)
    );
    let p = paging.clone();
    let rendered = super::named_rendered(
        &app,
        &ctx.me,
        paging.search(),
        paging.window,
        &key,
        move |page| {
            let pager = p.pager(page.total, page.items.len());
            let html = Rows {
                l: Layout::language_only(tr),
                rows: &page.items,
                show_user,
                pager: pager.clone(),
            }
            .render()
            .map_err(AppError::internal)?;
            Ok(RenderedRows { html, pager })
        },
    )
    .await?;
    // The rows on screen refresh themselves every few seconds (this page of
    // them, and the pager): only they are sent.
    if is_htmx(&headers) {
        return Ok(Html(rendered.html.clone()).into_response());
    }
    // Shown to whoever holds the orphan report (admins).
    let orphans = match super::orphans(&app, &ctx.me).await {
        Ok(o) => o,
        Err(AppError::Forbidden) => Vec::new(),
        Err(e) => return Err(e),
    };
    let statuses = InstanceStatus::ALL.iter().map(|s| (s.as_str(), s.key()));
    html(&ListPage {
        l: ctx.nav("instances").l,
        rows: &rendered.html,
        orphans,
        pager: rendered.pager.clone(),
        sf: SearchForm::new("/instances", &paging, statuses),
    })
}

#[derive(Template)]
#[template(path = "instances/new.html")]
struct WizardPage {
    l: Layout,
    images: Vec<Image>,
    specs: Vec<Spec>,
    form: FormValues,
    errs: FormErrs,
    /// The candidate nodes of the chosen spec (when the form comes back).
    nodes: Vec<Candidate>,
    /// Why each other node cannot take the chosen spec (rendered lines).
    refused: Vec<String>,
    /// The dataset checkboxes for the chosen node (rendered).
    datasets: String,
    /// `[server] currency`, before each spec's price.
    currency: String,
}

#[derive(Template)]
#[template(path = "instances/wizard.html")]
struct WizardForm {
    l: Layout,
    images: Vec<Image>,
    specs: Vec<Spec>,
    form: FormValues,
    errs: FormErrs,
    nodes: Vec<Candidate>,
    /// Why each other node cannot take the chosen spec (rendered lines).
    refused: Vec<String>,
    datasets: String,
    currency: String,
}

impl WizardForm {
    fn spec_label(&self, s: &Spec) -> String {
        spec_label(self.l.tr, s, &self.currency)
    }
}

impl WizardPage {
    fn spec_label(&self, s: &Spec) -> String {
        spec_label(self.l.tr, s, &self.currency)
    }
}

/// name · GPU model × count · CPU / memory / system disk / data disk ·
/// price per hour.
fn spec_label(tr: Tr, s: &Spec, currency: &str) -> String {
    format!(
        "{} · {} × {} · {} {} / {} GB / {} {} GB / {} {} GB · {currency}{}{}",
        s.name,
        s.gpu_model,
        s.gpu_count,
        s.cpu_cores,
        tr.t("instances.cores"),
        s.memory_gb,
        tr.t("instances.system_disk"),
        s.system_disk_gb,
        tr.t("instances.data_disk"),
        s.data_disk_gb,
        s.price_text(),
        tr.t("instances.per_hour"),
    )
}

/// The wizard's dataset checkboxes for the form's node.
async fn dataset_choices(app: &App, ctx: &PageCtx, form: &FormValues) -> Result<String, AppError> {
    let node = form
        .v("node_id")
        .parse::<i64>()
        .ok()
        .map(crate::ids::NodeId);
    let ticked = form
        .v("dataset_ids")
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect();
    crate::datasets::choices_html(app, &ctx.me, ctx.l.clone(), node, ticked).await
}

async fn wizard_parts(
    app: &App,
    ctx: &PageCtx,
    form: &FormValues,
) -> Result<(Vec<Image>, Vec<Spec>, Vec<Candidate>, Vec<String>), AppError> {
    let images: Vec<Image> = crate::catalog::list_images(app, &ctx.me, Window::all())
        .await?
        .items
        .into_iter()
        .filter(|i| i.listed)
        .collect();
    let specs: Vec<Spec> = crate::catalog::list_specs(app, &ctx.me, Window::all())
        .await?
        .items
        .into_iter()
        .filter(|s| s.listed)
        .collect();
    let (nodes, refused) = match form.v("spec_id").parse::<i64>() {
        Ok(spec) => super::placement_of(app, &ctx.me, spec)
            .await
            .unwrap_or_default(),
        Err(_) => Default::default(),
    };
    let refused = refusal_lines(ctx.tr(), &refused);
    Ok((images, specs, nodes, refused))
}

fn resource_key(what: &str) -> &'static str {
    match what {
        "gpu_count" => "instances.res_gpu_count",
        "cpu_cores" => "instances.res_cpu_cores",
        "memory_gb" => "instances.res_memory_gb",
        "system_disk_gb" => "instances.res_system_disk_gb",
        _ => "instances.res_data_disk_gb",
    }
}

/// One line per node that cannot take the spec: its name and why, in the
/// reader's language (which resource is short, and by how much).
pub fn refusal_lines(tr: Tr, refused: &[(String, Refusal)]) -> Vec<String> {
    refused
        .iter()
        .map(|(name, why)| {
            let reason = match why {
                Refusal::Unlisted => tr.t("instances.why_unlisted").to_string(),
                Refusal::Offline => tr.t("instances.why_offline").to_string(),
                Refusal::GpuModel(gpu) if gpu.is_empty() => {
                    tr.t("instances.why_no_gpu").to_string()
                }
                Refusal::GpuModel(gpu) => format!("{} ({gpu})", tr.t("instances.why_gpu_model")),
                Refusal::Short(s) => format!(
                    "{} {}: {} {}, {} {}",
                    tr.t("instances.why_short"),
                    tr.t(resource_key(s.what)),
                    tr.t("instances.needs"),
                    s.need,
                    tr.t("instances.free"),
                    s.free
                ),
            };
            format!("{name}: {reason}")
        })
        .collect()
}

async fn wizard(State(app): State<App>, ctx: PageCtx) -> Result<Response, AppError> {
    let form = FormValues::default();
    let (images, specs, nodes, refused) = wizard_parts(&app, &ctx, &form).await?;
    let datasets = dataset_choices(&app, &ctx, &form).await?;
    html(&WizardPage {
        l: ctx.nav("instances").l,
        images,
        specs,
        form,
        errs: FormErrs::default(),
        nodes,
        refused,
        datasets,
        currency: app.config.server.currency.clone(),
    })
}

#[derive(Template)]
#[template(path = "instances/node_options.html")]
struct NodeOptions {
    tr: Tr,
    nodes: Vec<Candidate>,
    refused: Vec<String>,
    selected: String,
}

/// The wizard's node `<option>`s for a spec's candidates, then each other
/// node (disabled) with why it cannot take the spec.
pub fn node_options(
    tr: Tr,
    nodes: &[Candidate],
    refused: &[(String, Refusal)],
) -> Result<Response, AppError> {
    html(&NodeOptions {
        tr,
        nodes: nodes.to_vec(),
        refused: refusal_lines(tr, refused),
        selected: String::new(),
    })
}

fn input(f: &FormValues) -> CreateInput {
    let num = |k: &str| Some(Value::String(f.v(k).to_string()));
    CreateInput {
        image_id: num("image_id"),
        spec_id: num("spec_id"),
        node_id: num("node_id"),
        name: Some(f.v("name").to_string()),
        remark: Some(f.v("remark").to_string()),
        dataset_ids: Some(Value::String(f.v("dataset_ids").to_string())),
        lease_end: None,
    }
}

/// Reserves and starts the creation job; the wizard then shows its
/// progress (htmx) or the browser goes to the progress page.
async fn create(
    State(app): State<App>,
    headers: HeaderMap,
    ctx: PageCtx,
    src: Source,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Result<Response, AppError> {
    // The datasets' checkboxes share a name: their values go joined.
    let mut f: HashMap<String, String> = HashMap::new();
    for (k, v) in pairs {
        match f.get_mut(&k) {
            Some(prev) if k == "dataset_ids" => {
                prev.push(',');
                prev.push_str(&v);
            }
            _ => {
                f.insert(k, v);
            }
        }
    }
    let form = FormValues::from_map(f);
    match super::create(&app, &ctx.me, input(&form), &src).await {
        Ok((job, _task)) => {
            if is_htmx(&headers) {
                let view = app.jobs.get(job, ctx.me.user.id.0, false);
                return job_fragment(&ctx, view, job);
            }
            Ok(Redirect::to(&format!("/jobs/{job}")).into_response())
        }
        Err(e) if e.fields().is_some() => {
            let status = e.status();
            let errs = FormErrs::of_error(&e, ctx.tr());
            let (images, specs, nodes, refused) = wizard_parts(&app, &ctx, &form).await?;
            let datasets = dataset_choices(&app, &ctx, &form).await?;
            let l = ctx.nav("instances").l;
            let mut r = if is_htmx(&headers) {
                html(&WizardForm {
                    l,
                    images,
                    specs,
                    form,
                    errs,
                    nodes,
                    refused,
                    datasets,
                    currency: app.config.server.currency.clone(),
                })?
            } else {
                html(&WizardPage {
                    l,
                    images,
                    specs,
                    form,
                    errs,
                    nodes,
                    refused,
                    datasets,
                    currency: app.config.server.currency.clone(),
                })?
            };
            *r.status_mut() = status;
            Ok(r)
        }
        Err(e) => Err(e),
    }
}

#[derive(Template)]
#[template(path = "instances/job.html")]
struct JobFragment {
    l: Layout,
    id: u64,
    view: JobView,
}

/// Why a job failed, in the reader's language; a node's detail only for
/// who may see nodes (`l.can("/nodes")`, the nodes page's record).
pub fn job_error(l: &Layout, view: &JobView) -> String {
    let Some(Err(e)) = &view.outcome else {
        return String::new();
    };
    e.text(l.tr, l.can("/nodes"))
}

#[derive(Template)]
#[template(path = "instances/job_page.html")]
struct JobPage {
    l: Layout,
    id: u64,
    view: JobView,
}

fn job_fragment(ctx: &PageCtx, view: Option<JobView>, id: u64) -> Result<Response, AppError> {
    let view = view.ok_or(AppError::NotFound)?;
    if let Some(Ok(href)) = &view.outcome {
        return Ok(hx_redirect(href));
    }
    html(&JobFragment {
        l: ctx.l.clone(),
        id,
        view,
    })
}

/// The progress of one of my jobs (admins: anyone's). While it runs htmx
/// polls this; a success goes to the instance.
async fn job(
    State(app): State<App>,
    headers: HeaderMap,
    ctx: PageCtx,
    ApiPath(id): ApiPath<u64>,
) -> Result<Response, AppError> {
    let admin = ctx.me.user.role == Role::Admin;
    let view = app.jobs.get(id, ctx.me.user.id.0, admin);
    if is_htmx(&headers) {
        return job_fragment(&ctx, view, id);
    }
    let view = view.ok_or(AppError::NotFound)?;
    if let Some(Ok(href)) = &view.outcome {
        return Ok(Redirect::to(href).into_response());
    }
    html(&JobPage {
        l: ctx.nav("instances").l,
        id,
        view,
    })
}

#[derive(Template)]
#[template(path = "instances/show.html")]
struct ShowPage {
    l: Layout,
    i: Instance,
    n: Names,
    show_user: bool,
    /// The connection summary (连接信息摘要), as text to copy.
    summary_text: String,
    /// The lines one connects with (web, terminal, ssh): label, id, value,
    /// each with its own copy button.
    conn_lines: Vec<(String, &'static str, String)>,
    /// For the SFTP command lines shown on the page.
    ssh_port: u16,
    host: String,
    /// The datasets it mounts (read-only).
    datasets: Vec<crate::datasets::Dataset>,
    /// The result of the action just done (`?done=stop`): its i18n key.
    done: Option<&'static str>,
    /// Running hours and cost so far (metering), as shown.
    metered: (String, String),
}

impl ShowPage {
    /// Start is offered only while the container is stopped (created,
    /// exited or dead); Stop and Restart only while it runs.
    fn can_start(&self) -> bool {
        matches!(
            self.i.status,
            InstanceStatus::Created | InstanceStatus::Exited | InstanceStatus::Dead
        )
    }
}

#[derive(Template)]
#[template(path = "instances/summary.html")]
struct Summary {
    l: Layout,
    i: Instance,
    n: Names,
    show_user: bool,
}

/// Which action's result a page shows (`?done=`): anything else, none.
#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct Done {
    done: String,
}

impl Done {
    fn key(&self) -> Option<&'static str> {
        match self.done.as_str() {
            "start" => Some("instances.done_start"),
            "stop" => Some("instances.done_stop"),
            "restart" => Some("instances.done_restart"),
            _ => None,
        }
    }
}

async fn show(
    State(app): State<App>,
    headers: HeaderMap,
    ctx: PageCtx,
    origin: crate::web::public::PublicOrigin,
    ApiPath(id): ApiPath<InstanceId>,
    ApiQuery(done): ApiQuery<Done>,
) -> Result<Response, AppError> {
    let (mut i, n) = super::named(&app, &ctx.me, Some(id))
        .await?
        .pop()
        .ok_or(AppError::NotFound)?;
    super::shield(&app, &ctx.me, [&mut i]).await?;
    let show_user = ctx.me.user.role != Role::CustomerMember;
    let ctx_me = ctx.me.clone();
    let l = ctx.nav("instances").l;
    let fragment = Summary {
        l: l.clone(),
        i: i.clone(),
        n: n.clone(),
        show_user,
    };
    let (summary_text, conn_lines, datasets) = if is_htmx(&headers) {
        Default::default()
    } else {
        let summary = crate::delivery::instance(&app, &ctx_me, id, &origin)
            .await?
            .summary();
        let lines = summary
            .lines
            .iter()
            .filter_map(|(k, v)| {
                let id = match *k {
                    "delivery.web" => "conn-web",
                    "delivery.terminal" => "conn-terminal",
                    "delivery.ssh" => "conn-ssh",
                    _ => return None,
                };
                Some((l.t(k).to_string(), id, v.clone()))
            })
            .collect();
        let text = summary.text(&l.tr);
        (text, lines, crate::datasets::of_instance(&app, i.id).await?)
    };
    let (secs, cents) = crate::usage::of_instance(&app, id).await?;
    let metered = (
        format!("{:.2}", secs as f64 / 3600.0),
        format!("{}{:.2}", app.config.server.currency, cents as f64 / 100.0),
    );
    let full = ShowPage {
        l,
        i,
        n,
        show_user,
        summary_text,
        conn_lines,
        ssh_port: origin.ssh_port,
        host: origin.ssh_host.clone(),
        datasets,
        done: done.key(),
        metered,
    };
    page_or_fragment(&headers, &full, &fragment)
}

async fn act(
    action: Action,
    State(app): State<App>,
    headers: HeaderMap,
    ctx: PageCtx,
    src: Source,
    ApiPath(id): ApiPath<InstanceId>,
) -> Result<Response, AppError> {
    super::act(&app, &ctx.me, id, action, &src).await?;
    // The page again, saying what was done (htmx: the whole page, as the
    // state and the buttons that fit it change).
    let word = match action {
        Action::Start => "start",
        Action::Stop => "stop",
        Action::Restart => "restart",
    };
    let to = format!("/instances/{id}?done={word}");
    if is_htmx(&headers) {
        return Ok(hx_redirect(&to));
    }
    Ok(Redirect::to(&to).into_response())
}

/// Deletes after the browser's confirmation (htmx `hx-confirm`).
async fn remove(
    State(app): State<App>,
    headers: HeaderMap,
    ctx: PageCtx,
    src: Source,
    ApiPath(id): ApiPath<InstanceId>,
) -> Result<Response, AppError> {
    super::delete(&app, &ctx.me, id, &src).await?;
    if is_htmx(&headers) {
        return Ok(hx_redirect("/instances"));
    }
    Ok(Redirect::to("/instances").into_response())
}
