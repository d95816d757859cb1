//! Catalog pages: image library and product specs, list + create + edit +
//! delete. Forms post to the same operations as the API.

use std::collections::HashMap;

use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use super::model::{Image, ImageFields, ImageInput, Spec, SpecFields, SpecInput};
use super::store::Table;
use crate::app::App;
use crate::audit::Source;
use crate::auth::PageCtx;
use crate::error::AppError;
use crate::paging::{Pager, Paging};
use crate::web::extract::ApiPath;
use crate::web::form::FormValues;
use crate::web::render::{FormErrs, Layout, form_error, html};

pub fn routes() -> Router<App> {
    Router::new()
        .route(
            "/images",
            get(async |s, c, p| list(Kind::Images, s, c, p).await)
                .post(async |s, c, src, f| create(Kind::Images, s, c, src, f).await),
        )
        .route(
            "/images/{id}",
            get(async |s, c, id| edit(Kind::Images, s, c, id).await)
                .post(async |s, c, src, id, f| save(Kind::Images, s, c, src, id, f).await),
        )
        .route(
            "/images/{id}/delete",
            post(async |s, c, src, id| delete(Kind::Images, s, c, src, id).await),
        )
        .route(
            "/specs",
            get(async |s, c, p| list(Kind::Specs, s, c, p).await)
                .post(async |s, c, src, f| create(Kind::Specs, s, c, src, f).await),
        )
        .route(
            "/specs/{id}",
            get(async |s, c, id| edit(Kind::Specs, s, c, id).await)
                .post(async |s, c, src, id, f| save(Kind::Specs, s, c, src, id, f).await),
        )
        .route(
            "/specs/{id}/delete",
            post(async |s, c, src, id| delete(Kind::Specs, s, c, src, id).await),
        )
}

/// The two catalog kinds share every handler; only the list table differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Images,
    Specs,
}

impl Kind {
    fn path(self) -> &'static str {
        match self {
            Kind::Images => "images",
            Kind::Specs => "specs",
        }
    }

    fn table(self) -> Table {
        match self {
            Kind::Images => Table::Images,
            Kind::Specs => Table::Specs,
        }
    }

    fn edit_title(self) -> &'static str {
        match self {
            Kind::Images => "catalog.edit_image",
            Kind::Specs => "catalog.edit_spec",
        }
    }

    /// The form values of entry `id`, or of a new entry.
    async fn values(
        self,
        app: &App,
        ctx: &PageCtx,
        id: Option<i64>,
    ) -> Result<FormValues, AppError> {
        Ok(match (self, id) {
            (Kind::Images, None) => image_values(&ImageFields::empty()),
            (Kind::Images, Some(id)) => {
                image_values(&ImageFields::of(&super::get_image(app, &ctx.me, id).await?))
            }
            (Kind::Specs, None) => spec_values(&SpecFields::empty()),
            (Kind::Specs, Some(id)) => {
                spec_values(&SpecFields::of(&super::get_spec(app, &ctx.me, id).await?))
            }
        })
    }

    async fn save(
        self,
        app: &App,
        ctx: &PageCtx,
        id: Option<i64>,
        form: &FormValues,
        src: &Source,
    ) -> Result<(), AppError> {
        match self {
            Kind::Images => super::save_image(app, &ctx.me, id, image_input(form), src)
                .await
                .map(|_| ()),
            Kind::Specs => super::save_spec(app, &ctx.me, id, spec_input(form), src)
                .await
                .map(|_| ()),
        }
    }
}

fn image_values(f: &ImageFields) -> FormValues {
    FormValues::from_pairs(&[
        ("name", f.name.clone()),
        ("address", f.address.clone()),
        ("description", f.description.clone()),
        ("source", f.source.clone()),
        ("listed", if f.listed { "1" } else { "" }.into()),
        ("remark", f.remark.clone()),
    ])
}

fn image_input(f: &FormValues) -> ImageInput {
    ImageInput {
        name: f.text("name"),
        address: f.text("address"),
        description: f.text("description"),
        source: f.text("source"),
        listed: f.bool_value("listed"),
        remark: f.text("remark"),
    }
}

fn spec_values(f: &SpecFields) -> FormValues {
    FormValues::from_pairs(&[
        ("name", f.name.clone()),
        ("gpu_model", f.gpu_model.clone()),
        ("gpu_count", f.gpu_count.to_string()),
        ("cpu_cores", f.cpu_cores.to_string()),
        ("memory_gb", f.memory_gb.to_string()),
        ("system_disk_gb", f.system_disk_gb.to_string()),
        ("data_disk_gb", f.data_disk_gb.to_string()),
        ("price_per_hour", f.price_text()),
        ("listed", if f.listed { "1" } else { "" }.into()),
        ("remark", f.remark.clone()),
        (
            "lease_days",
            f.lease_days.map(|d| d.to_string()).unwrap_or_default(),
        ),
    ])
}

fn spec_input(f: &FormValues) -> SpecInput {
    SpecInput {
        name: f.text("name"),
        gpu_model: f.text("gpu_model"),
        gpu_count: f.value("gpu_count"),
        cpu_cores: f.value("cpu_cores"),
        memory_gb: f.value("memory_gb"),
        system_disk_gb: f.value("system_disk_gb"),
        data_disk_gb: f.value("data_disk_gb"),
        price_per_hour: f.value("price_per_hour"),
        listed: f.bool_value("listed"),
        remark: f.text("remark"),
        lease_days: f.value("lease_days"),
    }
}

#[derive(Template)]
#[template(path = "catalog/images.html")]
struct ImagesPage {
    l: Layout,
    images: Vec<Image>,
    pager: Pager,
    can_manage: bool,
    action: String,
    editing: bool,
    form: FormValues,
    errs: FormErrs,
}

#[derive(Template)]
#[template(path = "catalog/specs.html")]
struct SpecsPage {
    l: Layout,
    specs: Vec<Spec>,
    pager: Pager,
    can_manage: bool,
    action: String,
    editing: bool,
    form: FormValues,
    errs: FormErrs,
}

/// The list with the create form (admins) below it.
async fn list_page(
    kind: Kind,
    app: &App,
    ctx: PageCtx,
    paging: &Paging,
    form: FormValues,
    errs: FormErrs,
) -> Result<Response, AppError> {
    // The create form and the listed column: for whoever may create here.
    let can_manage = ctx.l.can(&format!("POST /{}", kind.path()));
    let action = format!("/{}", kind.path());
    match kind {
        Kind::Images => {
            let page = super::list_images(app, &ctx.me, paging.window).await?;
            html(&ImagesPage {
                l: ctx.nav(kind.path()).l,
                pager: paging.pager(page.total, page.items.len()),
                images: page.items,
                can_manage,
                action,
                editing: false,
                form,
                errs,
            })
        }
        Kind::Specs => {
            let page = super::list_specs(app, &ctx.me, paging.window).await?;
            html(&SpecsPage {
                l: ctx.nav(kind.path()).l,
                pager: paging.pager(page.total, page.items.len()),
                specs: page.items,
                can_manage,
                action,
                editing: false,
                form,
                errs,
            })
        }
    }
}

async fn list(
    kind: Kind,
    State(app): State<App>,
    ctx: PageCtx,
    paging: Paging,
) -> Result<Response, AppError> {
    let form = kind.values(&app, &ctx, None).await?;
    list_page(kind, &app, ctx, &paging, form, FormErrs::default()).await
}

async fn create(
    kind: Kind,
    State(app): State<App>,
    ctx: PageCtx,
    src: Source,
    Form(f): Form<HashMap<String, String>>,
) -> Result<Response, AppError> {
    let form = FormValues::from_map(f);
    match kind.save(&app, &ctx, None, &form, &src).await {
        Ok(()) => Ok(Redirect::to(&format!("/{}", kind.path())).into_response()),
        Err(e) if e.fields().is_some() => {
            let (status, errs) = (e.status(), FormErrs::of_error(&e, ctx.tr()));
            let paging = Paging::first(&format!("/{}", kind.path()));
            let mut r = list_page(kind, &app, ctx, &paging, form, errs).await?;
            *r.status_mut() = status;
            Ok(r)
        }
        Err(e) => Err(e),
    }
}

#[derive(Template)]
#[template(path = "catalog/edit.html")]
struct EditPage {
    l: Layout,
    kind: &'static str,
    title: &'static str,
    id: i64,
    action: String,
    editing: bool,
    form: FormValues,
    errs: FormErrs,
}

fn edit_page(kind: Kind, ctx: PageCtx, id: i64, form: FormValues, errs: FormErrs) -> EditPage {
    EditPage {
        l: ctx.nav(kind.path()).l,
        kind: kind.path(),
        title: kind.edit_title(),
        id,
        action: format!("/{}/{id}", kind.path()),
        editing: true,
        form,
        errs,
    }
}

async fn edit(
    kind: Kind,
    State(app): State<App>,
    ctx: PageCtx,
    ApiPath(id): ApiPath<i64>,
) -> Result<Response, AppError> {
    let form = kind.values(&app, &ctx, Some(id)).await?;
    html(&edit_page(kind, ctx, id, form, FormErrs::default()))
}

async fn save(
    kind: Kind,
    State(app): State<App>,
    ctx: PageCtx,
    src: Source,
    ApiPath(id): ApiPath<i64>,
    Form(f): Form<HashMap<String, String>>,
) -> Result<Response, AppError> {
    let form = FormValues::from_map(f);
    match kind.save(&app, &ctx, Some(id), &form, &src).await {
        Ok(()) => Ok(Redirect::to(&format!("/{}", kind.path())).into_response()),
        Err(e) => {
            let tr = ctx.tr();
            form_error(e, |errs| html(&edit_page(kind, ctx, id, form, errs)), tr)
        }
    }
}

async fn delete(
    kind: Kind,
    State(app): State<App>,
    ctx: PageCtx,
    src: Source,
    ApiPath(id): ApiPath<i64>,
) -> Result<Response, AppError> {
    super::delete(&app, &ctx.me, kind.table(), id, &src).await?;
    Ok(Redirect::to(&format!("/{}", kind.path())).into_response())
}
