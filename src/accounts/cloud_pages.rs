//! The cloud users page (`/operations/cloud-users/`): filter by node and
//! status; disable, enable, reset the password (shown once), delete (with a
//! confirmation, home kept or removed), and batch status changes. Every
//! action answers with the page again, saying what happened.

use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, post};

use super::model::{CloudAction, CloudUserStatus};
use super::pages::{form_ids, form_pairs, form_value};
use super::store::{CloudFilter, CloudUser};
use super::{BatchItem, NodeChoice};
use crate::app::App;
use crate::audit::Source;
use crate::auth::PageCtx;
use crate::error::AppError;
use crate::ids::{CloudUserId, NodeId};
use crate::paging::{Pager, Paging};
use crate::web::extract::{ApiPath, ApiQuery};
use crate::web::render::{Layout, html};

/// The list of cloud users.
const LIST: &str = "/operations/cloud-users/";

pub fn routes() -> Router<App> {
    Router::new()
        .route(LIST, get(list))
        .route("/operations/cloud-users/batch/", post(batch))
        .route(
            "/operations/cloud-users/{id}/disable/",
            post(async |s, c, src, id| act(CloudAction::Disable, s, c, src, id).await),
        )
        .route(
            "/operations/cloud-users/{id}/enable/",
            post(async |s, c, src, id| act(CloudAction::Enable, s, c, src, id).await),
        )
        .route("/operations/cloud-users/{id}/reset-password/", post(reset))
        .route("/operations/cloud-users/{id}/delete/", post(delete))
}

/// What the last action did, for the message above the table.
#[derive(Debug, Default)]
struct Flash {
    ok: String,
    error: String,
    /// A new password, shown in this answer only.
    password: String,
    username: String,
}

#[derive(Template)]
#[template(path = "accounts/cloud_users.html")]
struct CloudPage {
    l: Layout,
    rows: Vec<CloudUser>,
    pager: Pager,
    nodes: Vec<NodeChoice>,
    node: String,
    status: String,
    statuses: Vec<CloudUserStatus>,
    flash: Flash,
    results: Vec<BatchItem>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct Filter {
    node: String,
    status: String,
}

async fn page(
    app: &App,
    ctx: PageCtx,
    paging: &Paging,
    q: Filter,
    flash: Flash,
    results: Vec<BatchItem>,
) -> Result<Response, AppError> {
    let f = CloudFilter {
        node: q.node.trim().parse().ok().map(NodeId),
        status: CloudUserStatus::parse(q.status.trim()),
    };
    let page = super::cloud::list(app, &ctx.me, f, paging.window).await?;
    let (pager, rows) = (paging.pager(page.total, page.items.len()), page.items);
    let nodes = super::node_choices(app, &ctx.me).await?;
    html(&CloudPage {
        l: ctx.nav("cloudusers").l,
        rows,
        pager,
        nodes,
        node: q.node,
        status: q.status,
        statuses: CloudUserStatus::ALL.to_vec(),
        flash,
        results,
    })
}

async fn list(
    State(app): State<App>,
    ctx: PageCtx,
    ApiQuery(q): ApiQuery<Filter>,
    paging: Paging,
) -> Result<Response, AppError> {
    page(&app, ctx, &paging, q, Flash::default(), Vec::new()).await
}

/// The page again after an action on user `id`: its message, or the error
/// (a database failure goes to the error page).
async fn after<T>(
    app: &App,
    ctx: PageCtx,
    r: Result<T, AppError>,
    ok_key: &'static str,
    fill: impl FnOnce(T, &mut Flash),
) -> Result<Response, AppError> {
    let tr = ctx.tr();
    let mut flash = Flash::default();
    match r {
        Ok(v) => {
            flash.ok = tr.t(ok_key).to_string();
            fill(v, &mut flash);
        }
        Err(e @ AppError::Internal(_)) => return Err(e),
        Err(e) => flash.error = e.text(tr, true),
    }
    let paging = Paging::first(LIST);
    page(app, ctx, &paging, Filter::default(), flash, Vec::new()).await
}

async fn act(
    action: CloudAction,
    State(app): State<App>,
    ctx: PageCtx,
    src: Source,
    ApiPath(id): ApiPath<CloudUserId>,
) -> Result<Response, AppError> {
    let r = super::cloud::act(&app, &ctx.me, id, action, &src).await;
    let key = match action {
        CloudAction::Disable => "cloudusers.disabled_ok",
        CloudAction::Enable => "cloudusers.enabled_ok",
    };
    after(&app, ctx, r, key, |u, f| f.username = u.username).await
}

async fn reset(
    State(app): State<App>,
    ctx: PageCtx,
    src: Source,
    ApiPath(id): ApiPath<CloudUserId>,
) -> Result<Response, AppError> {
    let r = super::cloud::reset_password(&app, &ctx.me, id, &src).await;
    after(&app, ctx, r, "cloudusers.reset_ok", |(u, p), f| {
        f.username = u.username;
        f.password = p.expose().clone();
    })
    .await
}

async fn delete(
    State(app): State<App>,
    ctx: PageCtx,
    src: Source,
    ApiPath(id): ApiPath<CloudUserId>,
    body: Bytes,
) -> Result<Response, AppError> {
    let pairs = form_pairs(&body);
    let r = match form_value(&pairs, "remove_home") {
        "" => Ok(false),
        v => crate::validate::parse_bool(v)
            .ok_or_else(|| AppError::field("remove_home", "err.not_boolean")),
    };
    let r = match r {
        Ok(remove_home) => super::cloud::delete(&app, &ctx.me, id, remove_home, &src).await,
        Err(e) => Err(e),
    };
    after(&app, ctx, r, "cloudusers.deleted_ok", |u, f| {
        f.username = u.username
    })
    .await
}

async fn batch(
    State(app): State<App>,
    ctx: PageCtx,
    src: Source,
    body: Bytes,
) -> Result<Response, AppError> {
    let pairs = form_pairs(&body);
    let tr = ctx.tr();
    let mut flash = Flash::default();
    let results = match CloudAction::parse(form_value(&pairs, "action")) {
        Some(action) => {
            match super::cloud::batch(&app, &ctx.me, &form_ids(&pairs, CloudUserId), action, &src)
                .await
            {
                Ok(r) => r,
                Err(e @ AppError::Internal(_)) => return Err(e),
                Err(e) => {
                    flash.error = e.text(tr, true);
                    Vec::new()
                }
            }
        }
        None => {
            flash.error = tr.t("err.accounts.batch_action").to_string();
            Vec::new()
        }
    };
    let paging = Paging::first(LIST);
    page(&app, ctx, &paging, Filter::default(), flash, results).await
}
