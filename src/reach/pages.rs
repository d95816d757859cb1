//! The instance page's section about reaching its services: the `ssh -L`
//! line and which ports may be forwarded (an admin may restrict them), the
//! web services with their URLs, and the forms that turn web access on and
//! off. The section is its own route, loaded into the instance page by
//! htmx (and a page of its own without it); its forms answer with it.

use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::Overview;
use crate::app::App;
use crate::audit::Source;
use crate::auth::PageCtx;
use crate::error::AppError;
use crate::ids::InstanceId;
use crate::web::extract::ApiPath;
use crate::web::public::PublicOrigin;
use crate::web::render::{FormErrs, Layout, html, is_htmx};

pub fn routes() -> Router<App> {
    Router::new()
        .route("/instances/{id}/reach", get(show))
        .route("/instances/{id}/reach/ports", post(set_ports))
        .route("/instances/{id}/web", post(enable))
        .route("/instances/{id}/web/{port}/delete", post(disable))
}

/// What the forms keep after an error.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Typed {
    port: String,
    name: String,
    ports: String,
}

#[derive(Template)]
#[template(path = "reach/section.html")]
struct Section {
    l: Layout,
    o: Overview,
    typed: Typed,
    errs: FormErrs,
}

#[derive(Template)]
#[template(path = "reach/page.html")]
struct Page {
    l: Layout,
    o: Overview,
    typed: Typed,
    errs: FormErrs,
}

/// The section (htmx) or a page around it.
async fn render(
    app: &App,
    headers: &HeaderMap,
    origin: &PublicOrigin,
    ctx: PageCtx,
    id: InstanceId,
    typed: Typed,
    errs: FormErrs,
) -> Result<Response, AppError> {
    let o = super::overview(app, &ctx.me, id, &super::browser_host(origin)).await?;
    let l = ctx.nav("instances").l;
    if is_htmx(headers) {
        html(&Section { l, o, typed, errs })
    } else {
        html(&Page { l, o, typed, errs })
    }
}

async fn show(
    State(app): State<App>,
    headers: HeaderMap,
    origin: PublicOrigin,
    ctx: PageCtx,
    ApiPath(id): ApiPath<InstanceId>,
) -> Result<Response, AppError> {
    render(
        &app,
        &headers,
        &origin,
        ctx,
        id,
        Typed::default(),
        FormErrs::default(),
    )
    .await
}

/// After a form: the section again (htmx), or the instance page; field
/// errors show in the section with what was typed.
async fn answer(
    app: &App,
    headers: &HeaderMap,
    origin: &PublicOrigin,
    ctx: PageCtx,
    id: InstanceId,
    typed: Typed,
    done: Result<(), AppError>,
) -> Result<Response, AppError> {
    match done {
        Ok(()) if is_htmx(headers) => {
            render(
                app,
                headers,
                origin,
                ctx,
                id,
                Typed::default(),
                FormErrs::default(),
            )
            .await
        }
        Ok(()) => Ok(Redirect::to(&format!("/instances/{id}")).into_response()),
        Err(e) if e.fields().is_some() => {
            let (status, errs) = (e.status(), FormErrs::of_error(&e, ctx.tr()));
            let mut resp = render(app, headers, origin, ctx, id, typed, errs).await?;
            *resp.status_mut() = status;
            Ok(resp)
        }
        Err(e) => Err(e),
    }
}

async fn set_ports(
    State(app): State<App>,
    headers: HeaderMap,
    origin: PublicOrigin,
    ctx: PageCtx,
    src: Source,
    ApiPath(id): ApiPath<InstanceId>,
    Form(typed): Form<Typed>,
) -> Result<Response, AppError> {
    let done = super::set_forward_ports(&app, &ctx.me, id, &typed.ports, &src)
        .await
        .map(|_| ());
    answer(&app, &headers, &origin, ctx, id, typed, done).await
}

async fn enable(
    State(app): State<App>,
    headers: HeaderMap,
    origin: PublicOrigin,
    ctx: PageCtx,
    src: Source,
    ApiPath(id): ApiPath<InstanceId>,
    Form(typed): Form<Typed>,
) -> Result<Response, AppError> {
    let port = serde_json::Value::String(typed.port.clone());
    let done = match super::new_service(Some(&port), &typed.name) {
        Ok(new) => super::enable_web(&app, &ctx.me, id, new, &src)
            .await
            .map(|_| ()),
        Err(e) => Err(e),
    };
    answer(&app, &headers, &origin, ctx, id, typed, done).await
}

async fn disable(
    State(app): State<App>,
    headers: HeaderMap,
    origin: PublicOrigin,
    ctx: PageCtx,
    src: Source,
    ApiPath((id, port)): ApiPath<(InstanceId, u16)>,
) -> Result<Response, AppError> {
    let done = super::disable_web(&app, &ctx.me, id, port, &src).await;
    answer(&app, &headers, &origin, ctx, id, Typed::default(), done).await
}
