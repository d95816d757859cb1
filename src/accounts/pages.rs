//! Account-opening pages under `/operations/account-openings/`: the list
//! (filter by status; admins review in batch), the application form, and a
//! request's page — review, process, the steps while it runs (htmx polls),
//! the one-time password and the connection summary. Forms call the same
//! operations as the API.

use std::collections::HashMap;

use askama::Template;
use axum::Form;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde_json::Value;

use super::model::{RequestInput, RequestStatus, ReviewInput};
use super::store::{CloudUser, Request};
use super::{BatchItem, NodeChoice};
use crate::app::App;
use crate::audit::Source;
use crate::auth::{PageCtx, Role};
use crate::error::AppError;
use crate::ids::{NodeId, OpeningId};
use crate::paging::{Pager, Paging};
use crate::web::extract::{ApiPath, ApiQuery};
use crate::web::form::FormValues;
use crate::web::public::PublicOrigin;
use crate::web::render::{FormErrs, Layout, form_error, html, is_htmx};

/// The list of requests.
const LIST: &str = "/operations/account-openings/";

pub fn routes() -> Router<App> {
    Router::new()
        .route(LIST, get(list))
        .route(
            "/operations/account-openings/create/",
            get(create_page).post(create),
        )
        .route("/operations/account-openings/batch/", post(batch))
        .route("/operations/account-openings/{id}/", get(show))
        .route(
            "/operations/account-openings/{id}/approve/",
            post(async |s, c, src, o, id, f| review(true, s, c, src, o, id, f).await),
        )
        .route(
            "/operations/account-openings/{id}/reject/",
            post(async |s, c, src, o, id, f| review(false, s, c, src, o, id, f).await),
        )
        .route("/operations/account-openings/{id}/process/", post(process))
        .route("/operations/account-openings/{id}/reveal/", post(reveal))
        .merge(super::cloud_pages::routes())
}

/// The pairs of a form body, repeated keys kept (checkbox lists).
pub fn form_pairs(body: &Bytes) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

/// The `ids` of a batch form (checked rows).
pub fn form_ids<T>(pairs: &[(String, String)], id: fn(i64) -> T) -> Vec<T> {
    pairs
        .iter()
        .filter(|(k, _)| k == "ids")
        .filter_map(|(_, v)| v.trim().parse::<i64>().ok())
        .map(id)
        .collect()
}

pub fn form_value<'a>(pairs: &'a [(String, String)], key: &str) -> &'a str {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map_or("", |(_, v)| v.as_str())
}

#[derive(Template)]
#[template(path = "accounts/list.html")]
struct ListPage {
    l: Layout,
    rows: Vec<Request>,
    pager: Pager,
    status: String,
    statuses: Vec<RequestStatus>,
    show_applicant: bool,
    results: Vec<BatchItem>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct ListQuery {
    status: String,
}

async fn list_page(
    app: &App,
    ctx: PageCtx,
    paging: &Paging,
    status: String,
    results: Vec<BatchItem>,
) -> Result<Response, AppError> {
    let filter = RequestStatus::parse(&status);
    let page = super::list(app, &ctx.me, filter, paging.window).await?;
    let (pager, rows) = (paging.pager(page.total, page.items.len()), page.items);
    let show_applicant = ctx.me.user.role != Role::CustomerMember;
    html(&ListPage {
        l: ctx.nav("accounts").l,
        rows,
        pager,
        status,
        statuses: RequestStatus::ALL.to_vec(),
        show_applicant,
        results,
    })
}

async fn list(
    State(app): State<App>,
    ctx: PageCtx,
    ApiQuery(q): ApiQuery<ListQuery>,
    paging: Paging,
) -> Result<Response, AppError> {
    list_page(&app, ctx, &paging, q.status, Vec::new()).await
}

async fn batch(
    State(app): State<App>,
    ctx: PageCtx,
    src: Source,
    body: Bytes,
) -> Result<Response, AppError> {
    let pairs = form_pairs(&body);
    let approve = form_value(&pairs, "action") == "approve";
    let input = ReviewInput {
        approval_notes: form_value(&pairs, "approval_notes").to_string(),
        ..Default::default()
    };
    let results = match super::batch_review(
        &app,
        &ctx.me,
        &form_ids(&pairs, OpeningId),
        approve,
        input,
        &src,
    )
    .await
    {
        Ok(r) => r,
        Err(e) if e.fields().is_some() => Vec::new(),
        Err(e) => return Err(e),
    };
    let paging = Paging::first(LIST);
    list_page(&app, ctx, &paging, String::new(), results).await
}

#[derive(Template)]
#[template(path = "accounts/create.html")]
struct CreatePage {
    l: Layout,
    nodes: Vec<NodeChoice>,
    form: FormValues,
    errs: FormErrs,
}

impl CreatePage {
    fn is_node(&self, id: &NodeId) -> bool {
        self.form.v("target_host") == id.to_string()
    }
}

async fn create_form(
    app: &App,
    ctx: PageCtx,
    form: FormValues,
    errs: FormErrs,
) -> Result<Response, AppError> {
    let nodes = super::node_choices(app, &ctx.me).await?;
    html(&CreatePage {
        l: ctx.nav("accounts").l,
        nodes,
        form,
        errs,
    })
}

async fn create_page(State(app): State<App>, ctx: PageCtx) -> Result<Response, AppError> {
    let me = &ctx.me.user;
    let form = FormValues::from_map(HashMap::from([
        ("contact_email".to_string(), me.email.clone()),
        ("contact_phone".to_string(), me.phone.clone()),
        ("user_email".to_string(), me.email.clone()),
        ("user_fullname".to_string(), me.display_name.clone()),
    ]));
    create_form(&app, ctx, form, FormErrs::default()).await
}

async fn create(
    State(app): State<App>,
    ctx: PageCtx,
    src: Source,
    Form(f): Form<HashMap<String, String>>,
) -> Result<Response, AppError> {
    let form = FormValues::from_map(f);
    let input = RequestInput {
        contact_email: form.v("contact_email").into(),
        contact_phone: form.v("contact_phone").into(),
        username: form.v("username").into(),
        user_fullname: form.v("user_fullname").into(),
        user_email: form.v("user_email").into(),
        user_description: form.v("user_description").into(),
        target_host: Some(Value::String(form.v("target_host").into())),
    };
    match super::submit(&app, &ctx.me, input, &src).await {
        Ok(r) => {
            Ok(Redirect::to(&format!("/operations/account-openings/{}/", r.id)).into_response())
        }
        Err(e) => {
            let tr = ctx.tr();
            let nodes = super::node_choices(&app, &ctx.me).await?;
            let l = ctx.nav("accounts").l;
            form_error(
                e,
                |errs| {
                    html(&CreatePage {
                        l,
                        nodes,
                        form,
                        errs,
                    })
                },
                tr,
            )
        }
    }
}

/// What a request's page shows.
struct Detail {
    r: Request,
    cloud: Option<CloudUser>,
    can_reveal: bool,
    /// The password, in the one answer that reveals it.
    password: Option<String>,
    summary_text: String,
    errs: FormErrs,
}

impl Detail {
    fn processing(&self) -> bool {
        self.r.status == RequestStatus::Processing
    }
    fn pending(&self) -> bool {
        self.r.status.can_review()
    }
    fn processable(&self) -> bool {
        self.r.status.can_process() && self.r.target_host.is_some()
    }
    fn completed(&self) -> bool {
        self.r.status == RequestStatus::Completed
    }
    fn failure_key(&self) -> &'static str {
        super::failure_key(&self.r.result_kind)
    }
    fn failure_hint(&self) -> &'static str {
        super::failure_hint(&self.r.result_kind)
    }
}

#[derive(Template)]
#[template(path = "accounts/show.html")]
struct ShowPage {
    l: Layout,
    d: Detail,
}

#[derive(Template)]
#[template(path = "accounts/detail.html")]
struct DetailFragment {
    l: Layout,
    d: Detail,
}

async fn detail(
    app: &App,
    ctx: &PageCtx,
    origin: &PublicOrigin,
    id: OpeningId,
    password: Option<crate::secrets::Secret<String>>,
    errs: FormErrs,
) -> Result<Detail, AppError> {
    let r = super::get(app, &ctx.me, id).await?;
    let cloud = match r.cloud_user_id {
        Some(cu) => super::cloud::get(app, &ctx.me, cu).await.ok(),
        None => None,
    };
    let can_reveal = super::can_reveal(app, &ctx.me, &r).await?;
    let summary_text = if r.status == RequestStatus::Completed {
        crate::delivery::account(app, &r, origin, password.as_ref())
            .await?
            .text(&ctx.l.tr)
    } else {
        String::new()
    };
    Ok(Detail {
        r,
        cloud,
        can_reveal,
        password: password.map(|p| p.expose().clone()),
        summary_text,
        errs,
    })
}

async fn show(
    State(app): State<App>,
    headers: HeaderMap,
    ctx: PageCtx,
    origin: PublicOrigin,
    ApiPath(id): ApiPath<OpeningId>,
) -> Result<Response, AppError> {
    let d = detail(&app, &ctx, &origin, id, None, FormErrs::default()).await?;
    let l = ctx.nav("accounts").l;
    if is_htmx(&headers) {
        return html(&DetailFragment { l, d });
    }
    html(&ShowPage { l, d })
}

/// Shows the request page again with the errors of `e` (validation or
/// conflict); any other error goes to the error page.
async fn show_errors(
    app: &App,
    ctx: PageCtx,
    origin: &PublicOrigin,
    id: OpeningId,
    e: AppError,
) -> Result<Response, AppError> {
    if e.fields().is_none() {
        return Err(e);
    }
    let status = e.status();
    let d = detail(
        app,
        &ctx,
        origin,
        id,
        None,
        FormErrs::of_error(&e, ctx.tr()),
    )
    .await?;
    let mut r = html(&ShowPage {
        l: ctx.nav("accounts").l,
        d,
    })?;
    *r.status_mut() = status;
    Ok(r)
}

fn back(id: OpeningId) -> Response {
    Redirect::to(&format!("/operations/account-openings/{id}/")).into_response()
}

async fn review(
    approve: bool,
    State(app): State<App>,
    ctx: PageCtx,
    src: Source,
    origin: PublicOrigin,
    ApiPath(id): ApiPath<OpeningId>,
    Form(f): Form<HashMap<String, String>>,
) -> Result<Response, AppError> {
    let form = FormValues::from_map(f);
    let input = ReviewInput {
        approval_notes: form.v("approval_notes").into(),
        is_admin: approve.then(|| form.bool_value("is_admin")).flatten(),
        groups: approve.then(|| form.v("groups").to_string()),
    };
    match super::review(&app, &ctx.me, id, approve, input, &src).await {
        Ok(_) => Ok(back(id)),
        Err(e) => show_errors(&app, ctx, &origin, id, e).await,
    }
}

async fn process(
    State(app): State<App>,
    ctx: PageCtx,
    src: Source,
    origin: PublicOrigin,
    ApiPath(id): ApiPath<OpeningId>,
) -> Result<Response, AppError> {
    match super::process(&app, &ctx.me, id, &src).await {
        Ok(_) => Ok(back(id)),
        Err(e) => show_errors(&app, ctx, &origin, id, e).await,
    }
}

/// Shows the password once, in this answer only (and in the summary).
async fn reveal(
    State(app): State<App>,
    ctx: PageCtx,
    src: Source,
    origin: PublicOrigin,
    ApiPath(id): ApiPath<OpeningId>,
) -> Result<Response, AppError> {
    match super::reveal(&app, &ctx.me, id, &src).await {
        Ok(p) => {
            let d = detail(&app, &ctx, &origin, id, Some(p), FormErrs::default()).await?;
            html(&ShowPage {
                l: ctx.nav("accounts").l,
                d,
            })
        }
        Err(e) => show_errors(&app, ctx, &origin, id, e).await,
    }
}
