//! Lease pages: the instance page's lease section (lease end, state, "back
//! up your data by", the reclaim's steps; an admin's extend form), and the
//! admin's reclaim page that shows what runs and asks for confirmation.

use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::Deserialize;

use super::{Check, LeaseState, Request, Step};
use crate::app::App;
use crate::audit::Source;
use crate::auth::PageCtx;
use crate::error::AppError;
use crate::ids::InstanceId;
use crate::instances::Instance;
use crate::web::extract::ApiPath;
use crate::web::render::{FormErrs, Layout, fmt_ts, html, is_htmx};

pub fn routes() -> Router<App> {
    Router::new()
        .route("/instances/{id}/lease", get(section).post(set_lease))
        .route("/instances/{id}/reclaim", get(reclaim_page).post(reclaim))
        .route(
            "/instances/{id}/return",
            get(async |a, c, p| reclaim_page_as(Kind::Return, a, c, p).await)
                .post(async |a, c, s, p, f| reclaim_as(Kind::Return, a, c, s, p, f).await),
        )
        .route("/instances/{id}/lease-request", axum::routing::post(ask))
        .route(
            "/lease-requests/{id}/approve",
            axum::routing::post(async |s, c, src, p| decide(true, s, c, src, p).await),
        )
        .route(
            "/lease-requests/{id}/reject",
            axum::routing::post(async |s, c, src, p| decide(false, s, c, src, p).await),
        )
}

#[derive(Template)]
#[template(path = "leases/section.html")]
struct Section {
    l: Layout,
    i: Instance,
    /// Until when the data is kept (once the lease has ended).
    keep_until: Option<i64>,
    steps: Vec<Step>,
    requests: Vec<Request>,
    typed: String,
    errs: FormErrs,
    /// Whether the viewer owns the instance (and so may return it early).
    mine: bool,
}

impl Section {
    fn ended(&self) -> bool {
        self.i.lease_state == LeaseState::Expired
    }
    fn ts(&self, t: &i64) -> String {
        fmt_ts(*t)
    }
    fn state_key(&self) -> &'static str {
        self.i.lease_state.key()
    }
    fn request_key(&self, status: &str) -> &'static str {
        match status {
            "approved" => "leases.rq_approved",
            "rejected" => "leases.rq_rejected",
            _ => "leases.rq_pending",
        }
    }
}

async fn render(
    app: &App,
    ctx: PageCtx,
    id: InstanceId,
    typed: String,
    errs: FormErrs,
) -> Result<Response, AppError> {
    let i = crate::instances::get(app, &ctx.me, id).await?;
    let steps = super::steps(app, &ctx.me, id).await?;
    let keep_until = i.lease_end.map(|e| super::keep_until(app, e));
    let requests = super::requests(app, &ctx.me, Some(id)).await?;
    html(&Section {
        mine: i.user_id == ctx.me.user.id.0,
        l: ctx.l,
        i,
        keep_until,
        steps,
        requests,
        typed,
        errs,
    })
}

async fn section(
    State(app): State<App>,
    ctx: PageCtx,
    ApiPath(id): ApiPath<InstanceId>,
) -> Result<Response, AppError> {
    render(&app, ctx, id, String::new(), FormErrs::default()).await
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct LeaseForm {
    /// `YYYY-MM-DD` or `YYYY-MM-DD HH:MM` (UTC); empty: open-ended.
    lease_end: String,
}

/// `2026-12-01`, `2026-12-01 08:00` or `2026-12-01T08:00` (UTC) as Unix
/// seconds; empty is none.
fn parse_date(text: &str) -> Result<Option<i64>, AppError> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(None);
    }
    let t = t.replace('T', " ");
    let date_only = time::macros::format_description!("[year]-[month]-[day]");
    let with_time = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]");
    let parsed = time::PrimitiveDateTime::parse(&t, &with_time)
        .or_else(|_| time::Date::parse(&t, &date_only).map(|d| d.with_time(time::Time::MIDNIGHT)));
    parsed
        .map(|p| Some(p.assume_utc().unix_timestamp()))
        .map_err(|_| AppError::field("lease_end", "err.leases.date"))
}

async fn set_lease(
    State(app): State<App>,
    headers: HeaderMap,
    ctx: PageCtx,
    src: Source,
    ApiPath(id): ApiPath<InstanceId>,
    Form(f): Form<LeaseForm>,
) -> Result<Response, AppError> {
    let done = match parse_date(&f.lease_end) {
        Ok(end) => super::set_lease(&app, &ctx.me, id, end, &src)
            .await
            .map(|_| ()),
        Err(e) => Err(e),
    };
    match done {
        Ok(()) if is_htmx(&headers) => {
            render(&app, ctx, id, String::new(), FormErrs::default()).await
        }
        Ok(()) => Ok(Redirect::to(&format!("/instances/{id}")).into_response()),
        Err(e) if e.fields().is_some() => {
            let (status, errs) = (e.status(), FormErrs::of_error(&e, ctx.tr()));
            let mut resp = render(&app, ctx, id, f.lease_end, errs).await?;
            *resp.status_mut() = status;
            Ok(resp)
        }
        Err(e) => Err(e),
    }
}

#[derive(Template)]
#[template(path = "leases/reclaim.html")]
struct ReclaimPage {
    l: Layout,
    /// `reclaim` (an admin's) or `return` (the owner's 退还): the form's
    /// path and the page's words.
    kind: &'static str,
    i: Instance,
    check: Check,
    steps: Vec<Step>,
    errs: FormErrs,
}

impl ReclaimPage {
    fn ts(&self, t: &i64) -> String {
        fmt_ts(*t)
    }
}

/// An admin's reclaim or the owner's early return: the same page and steps.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Reclaim,
    Return,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Reclaim => "reclaim",
            Kind::Return => "return",
        }
    }
    async fn preview(
        self,
        app: &App,
        me: &crate::auth::CurrentUser,
        id: InstanceId,
    ) -> Result<Check, AppError> {
        match self {
            Kind::Reclaim => super::preview(app, me, id).await,
            Kind::Return => super::return_preview(app, me, id).await,
        }
    }
}

async fn reclaim_page(
    app: State<App>,
    ctx: PageCtx,
    id: ApiPath<InstanceId>,
) -> Result<Response, AppError> {
    reclaim_page_as(Kind::Reclaim, app, ctx, id).await
}

async fn reclaim_page_as(
    kind: Kind,
    State(app): State<App>,
    ctx: PageCtx,
    ApiPath(id): ApiPath<InstanceId>,
) -> Result<Response, AppError> {
    let i = crate::instances::get(&app, &ctx.me, id).await?;
    let check = kind.preview(&app, &ctx.me, id).await?;
    let steps = super::steps(&app, &ctx.me, id).await?;
    html(&ReclaimPage {
        l: ctx.nav("instances").l,
        kind: kind.name(),
        i,
        check,
        steps,
        errs: FormErrs::default(),
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ConfirmForm {
    confirm: String,
}

async fn reclaim(
    app: State<App>,
    ctx: PageCtx,
    src: Source,
    id: ApiPath<InstanceId>,
    f: Form<ConfirmForm>,
) -> Result<Response, AppError> {
    reclaim_as(Kind::Reclaim, app, ctx, src, id, f).await
}

async fn reclaim_as(
    kind: Kind,
    State(app): State<App>,
    ctx: PageCtx,
    src: Source,
    ApiPath(id): ApiPath<InstanceId>,
    Form(f): Form<ConfirmForm>,
) -> Result<Response, AppError> {
    let confirm = f.confirm == "1";
    let done = match kind {
        Kind::Reclaim => super::reclaim_by(&app, &ctx.me, id, confirm, &src).await,
        Kind::Return => super::return_by(&app, &ctx.me, id, confirm, &src).await,
    };
    match done {
        Ok(_) => Ok(Redirect::to(&format!("/instances/{id}")).into_response()),
        Err(e) => {
            let (status, errs) = (e.status(), FormErrs::of_error(&e, ctx.tr()));
            let i = crate::instances::get(&app, &ctx.me, id).await?;
            let steps = super::steps(&app, &ctx.me, id).await?;
            let check = kind.preview(&app, &ctx.me, id).await.unwrap_or(Check {
                processes: Vec::new(),
                sessions: Vec::new(),
            });
            let mut resp = html(&ReclaimPage {
                l: ctx.nav("instances").l,
                kind: kind.name(),
                i,
                check,
                steps,
                errs,
            })?;
            *resp.status_mut() = status;
            Ok(resp)
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct AskForm {
    lease_end: String,
    reason: String,
}

/// An owner's request for an extension (the form in the lease section).
async fn ask(
    State(app): State<App>,
    headers: HeaderMap,
    ctx: PageCtx,
    src: Source,
    ApiPath(id): ApiPath<InstanceId>,
    Form(f): Form<AskForm>,
) -> Result<Response, AppError> {
    let done = match parse_date(&f.lease_end) {
        Ok(end) => {
            let end = end.map(serde_json::Value::from);
            super::request(&app, &ctx.me, id, end.as_ref(), &f.reason, &src)
                .await
                .map(|_| ())
        }
        Err(e) => Err(e),
    };
    match done {
        Ok(()) if is_htmx(&headers) => {
            render(&app, ctx, id, String::new(), FormErrs::default()).await
        }
        Ok(()) => Ok(Redirect::to(&format!("/instances/{id}")).into_response()),
        Err(e) if e.fields().is_some() => {
            let (status, errs) = (e.status(), FormErrs::of_error(&e, ctx.tr()));
            let mut resp = render(&app, ctx, id, f.lease_end, errs).await?;
            *resp.status_mut() = status;
            Ok(resp)
        }
        Err(e) => Err(e),
    }
}

/// An admin approves or rejects a request; back to the instance's page.
async fn decide(
    approve: bool,
    State(app): State<App>,
    ctx: PageCtx,
    src: Source,
    ApiPath(rid): ApiPath<i64>,
) -> Result<Response, AppError> {
    let r = super::decide(&app, &ctx.me, rid, approve, &src).await?;
    Ok(Redirect::to(&format!("/instances/{}", r.instance_id)).into_response())
}
