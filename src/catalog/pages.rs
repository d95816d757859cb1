//! Catalog pages: image library and product specs, list + create + edit +
//! delete. Forms post to the same operations as the API.

use std::collections::HashMap;

use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde_json::Value;

use super::model::{Image, ImageFields, ImageInput, Spec, SpecFields, SpecInput};
use super::store::Table;
use crate::app::App;
use crate::audit::Source;
use crate::auth::Role;
use crate::auth::pages::PageCtx;
use crate::error::AppError;
use crate::web::extract::ApiPath;
use crate::web::render::{FormErrs, Layout, form_error, html};

pub fn routes() -> Router<App> {
    Router::new()
        .route("/images", get(images).post(image_create))
        .route("/images/{id}", get(image_edit).post(image_save))
        .route("/images/{id}/delete", post(image_delete))
        .route("/specs", get(specs).post(spec_create))
        .route("/specs/{id}", get(spec_edit).post(spec_save))
        .route("/specs/{id}/delete", post(spec_delete))
}

/// What a form shows: the submitted strings, or an entity's current values.
#[derive(Debug, Default, Clone)]
pub struct FormValues(HashMap<String, String>);

impl FormValues {
    pub fn v(&self, key: &str) -> &str {
        self.0.get(key).map(String::as_str).unwrap_or("")
    }
    pub fn checked(&self, key: &str) -> bool {
        matches!(self.v(key), "1" | "on" | "true")
    }
    fn text(&self, key: &str) -> Option<String> {
        Some(self.v(key).to_string())
    }
    fn value(&self, key: &str) -> Option<Value> {
        Some(Value::String(self.v(key).to_string()))
    }
    fn listed(&self) -> Option<Value> {
        Some(Value::Bool(self.checked("listed")))
    }
    pub fn from_map(map: HashMap<String, String>) -> Self {
        Self(map)
    }
    fn from_pairs(pairs: &[(&str, String)]) -> Self {
        Self(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        )
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
        listed: f.listed(),
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
        listed: f.listed(),
        remark: f.text("remark"),
    }
}

#[derive(Template)]
#[template(path = "catalog/images.html")]
struct ImagesPage {
    l: Layout,
    images: Vec<Image>,
    is_admin: bool,
    action: String,
    editing: bool,
    form: FormValues,
    errs: FormErrs,
}

async fn images_page(
    app: &App,
    ctx: PageCtx,
    form: FormValues,
    errs: FormErrs,
) -> Result<Response, AppError> {
    let images = super::list_images(app, &ctx.me).await?;
    let is_admin = ctx.me.user.role == Role::Admin;
    html(&ImagesPage {
        l: ctx.nav("images").l,
        images,
        is_admin,
        action: "/images".into(),
        editing: false,
        form,
        errs,
    })
}

async fn images(State(app): State<App>, ctx: PageCtx) -> Result<Response, AppError> {
    images_page(
        &app,
        ctx,
        image_values(&ImageFields::empty()),
        FormErrs::default(),
    )
    .await
}

async fn image_create(
    State(app): State<App>,
    ctx: PageCtx,
    src: Source,
    Form(f): Form<HashMap<String, String>>,
) -> Result<Response, AppError> {
    let form = FormValues(f);
    match super::save_image(&app, &ctx.me, None, image_input(&form), &src).await {
        Ok(_) => Ok(Redirect::to("/images").into_response()),
        Err(e) if e.fields().is_some() => {
            let (status, errs) = (e.status(), FormErrs::of_error(&e, ctx.tr()));
            let mut r = images_page(&app, ctx, form, errs).await?;
            *r.status_mut() = status;
            Ok(r)
        }
        Err(e) => Err(e),
    }
}

#[derive(Template)]
#[template(path = "catalog/image_edit.html")]
struct ImageEditPage {
    l: Layout,
    id: i64,
    action: String,
    editing: bool,
    form: FormValues,
    errs: FormErrs,
}

async fn image_edit(
    State(app): State<App>,
    ctx: PageCtx,
    ApiPath(id): ApiPath<i64>,
) -> Result<Response, AppError> {
    let image = super::get_image(&app, &ctx.me, id).await?;
    let form = image_values(&ImageFields::of(&image));
    html(&ImageEditPage {
        l: ctx.nav("images").l,
        id,
        action: format!("/images/{id}"),
        editing: true,
        form,
        errs: FormErrs::default(),
    })
}

async fn image_save(
    State(app): State<App>,
    ctx: PageCtx,
    src: Source,
    ApiPath(id): ApiPath<i64>,
    Form(f): Form<HashMap<String, String>>,
) -> Result<Response, AppError> {
    let form = FormValues(f);
    match super::save_image(&app, &ctx.me, Some(id), image_input(&form), &src).await {
        Ok(_) => Ok(Redirect::to("/images").into_response()),
        Err(e) => {
            let tr = ctx.tr();
            let l = ctx.nav("images").l;
            form_error(
                e,
                |errs| {
                    html(&ImageEditPage {
                        l,
                        id,
                        action: format!("/images/{id}"),
                        editing: true,
                        form,
                        errs,
                    })
                },
                tr,
            )
        }
    }
}

async fn image_delete(
    State(app): State<App>,
    ctx: PageCtx,
    src: Source,
    ApiPath(id): ApiPath<i64>,
) -> Result<Response, AppError> {
    super::delete(&app, &ctx.me, Table::Images, id, &src).await?;
    Ok(Redirect::to("/images").into_response())
}

#[derive(Template)]
#[template(path = "catalog/specs.html")]
struct SpecsPage {
    l: Layout,
    specs: Vec<Spec>,
    is_admin: bool,
    action: String,
    editing: bool,
    form: FormValues,
    errs: FormErrs,
}

async fn specs_page(
    app: &App,
    ctx: PageCtx,
    form: FormValues,
    errs: FormErrs,
) -> Result<Response, AppError> {
    let specs = super::list_specs(app, &ctx.me).await?;
    let is_admin = ctx.me.user.role == Role::Admin;
    html(&SpecsPage {
        l: ctx.nav("specs").l,
        specs,
        is_admin,
        action: "/specs".into(),
        editing: false,
        form,
        errs,
    })
}

async fn specs(State(app): State<App>, ctx: PageCtx) -> Result<Response, AppError> {
    specs_page(
        &app,
        ctx,
        spec_values(&SpecFields::empty()),
        FormErrs::default(),
    )
    .await
}

async fn spec_create(
    State(app): State<App>,
    ctx: PageCtx,
    src: Source,
    Form(f): Form<HashMap<String, String>>,
) -> Result<Response, AppError> {
    let form = FormValues(f);
    match super::save_spec(&app, &ctx.me, None, spec_input(&form), &src).await {
        Ok(_) => Ok(Redirect::to("/specs").into_response()),
        Err(e) if e.fields().is_some() => {
            let (status, errs) = (e.status(), FormErrs::of_error(&e, ctx.tr()));
            let mut r = specs_page(&app, ctx, form, errs).await?;
            *r.status_mut() = status;
            Ok(r)
        }
        Err(e) => Err(e),
    }
}

#[derive(Template)]
#[template(path = "catalog/spec_edit.html")]
struct SpecEditPage {
    l: Layout,
    id: i64,
    action: String,
    editing: bool,
    form: FormValues,
    errs: FormErrs,
}

async fn spec_edit(
    State(app): State<App>,
    ctx: PageCtx,
    ApiPath(id): ApiPath<i64>,
) -> Result<Response, AppError> {
    let spec = super::get_spec(&app, &ctx.me, id).await?;
    let form = spec_values(&SpecFields::of(&spec));
    html(&SpecEditPage {
        l: ctx.nav("specs").l,
        id,
        action: format!("/specs/{id}"),
        editing: true,
        form,
        errs: FormErrs::default(),
    })
}

async fn spec_save(
    State(app): State<App>,
    ctx: PageCtx,
    src: Source,
    ApiPath(id): ApiPath<i64>,
    Form(f): Form<HashMap<String, String>>,
) -> Result<Response, AppError> {
    let form = FormValues(f);
    match super::save_spec(&app, &ctx.me, Some(id), spec_input(&form), &src).await {
        Ok(_) => Ok(Redirect::to("/specs").into_response()),
        Err(e) => {
            let tr = ctx.tr();
            let l = ctx.nav("specs").l;
            form_error(
                e,
                |errs| {
                    html(&SpecEditPage {
                        l,
                        id,
                        action: format!("/specs/{id}"),
                        editing: true,
                        form,
                        errs,
                    })
                },
                tr,
            )
        }
    }
}

async fn spec_delete(
    State(app): State<App>,
    ctx: PageCtx,
    src: Source,
    ApiPath(id): ApiPath<i64>,
) -> Result<Response, AppError> {
    super::delete(&app, &ctx.me, Table::Specs, id, &src).await?;
    Ok(Redirect::to("/specs").into_response())
}
