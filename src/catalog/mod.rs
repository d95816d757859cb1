//! The catalog: the image library (镜像库) and product specs (产品规格).
//! Admins manage both; customers list the listed entries.

pub mod api;
pub mod model;
pub mod pages;
mod reference;
pub mod store;

use rusqlite::TransactionBehavior;
use serde_json::json;

use crate::app::App;
use crate::audit::{self, Event, Source};
use crate::auth::CurrentUser;
use crate::error::AppError;
use crate::paging::{Page, Window};
use model::{Image, ImageFields, ImageInput, Spec, SpecFields, SpecInput};
use store::Table;

const IMAGES: &str = "/api/v1/images";
const SPECS: &str = "/api/v1/specs";

/// Whether `me` sees listed entries only (enforced in every query): those
/// who may not manage the catalog, as the permission matrix says (its
/// management is admin-only).
/// `create` is the route that creates entries of the kind read.
pub fn listed_only(
    c: &rusqlite::Connection,
    me: &CurrentUser,
    create: &'static str,
) -> rusqlite::Result<bool> {
    let manage = crate::auth::Action::Route {
        method: "POST",
        pattern: create,
    };
    Ok(!crate::auth::holds(c, &me.user, manage)?)
}

/// The images `me` sees in `window`, by id, and how many there are.
pub async fn list_images(
    app: &App,
    me: &CurrentUser,
    window: Window,
) -> Result<Page<Image>, AppError> {
    let me = me.clone();
    app.db
        .read(move |c| {
            store::list_images(c, listed_only(c, &me, IMAGES)?, window).map_err(AppError::from)
        })
        .await
}

pub async fn get_image(app: &App, me: &CurrentUser, id: i64) -> Result<Image, AppError> {
    let me = me.clone();
    app.db
        .read(move |c| {
            store::get_image(c, id, listed_only(c, &me, IMAGES)?).map_err(AppError::from)
        })
        .await?
        .ok_or(AppError::NotFound)
}

/// Creates (`id` None) or updates an image; the audit record holds the new fields.
pub async fn save_image(
    app: &App,
    me: &CurrentUser,
    id: Option<i64>,
    input: ImageInput,
    src: &Source,
) -> Result<Image, AppError> {
    let (actor, src) = (me.actor(), src.clone());
    app.db
        .write(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let base = match id {
                Some(id) => ImageFields::of(&store::get_image(&tx, id, false)?.ok_or(AppError::NotFound)?),
                None => ImageFields::empty(),
            };
            let f = ImageFields::merge(base, &input).map_err(AppError::Validation)?;
            let now = crate::db::now();
            let (id, action) = match id {
                Some(id) => (store::update_image(&tx, id, &f, now).map(|_| id)?, "image.update"),
                None => (store::insert_image(&tx, &f, now)?, "image.create"),
            };
            let detail = json!({"name": f.name, "address": f.address, "listed": f.listed, "source": f.source});
            audit::append(&tx, &Event::new(&actor, &src, action, "image").id(id).detail(detail))?;
            let image = store::get_image(&tx, id, false)?.ok_or(AppError::NotFound)?;
            tx.commit()?;
            Ok(image)
        })
        .await
}

/// The specs `me` sees in `window`, by id, and how many there are.
pub async fn list_specs(
    app: &App,
    me: &CurrentUser,
    window: Window,
) -> Result<Page<Spec>, AppError> {
    let me = me.clone();
    app.db
        .read(move |c| {
            store::list_specs(c, listed_only(c, &me, SPECS)?, window).map_err(AppError::from)
        })
        .await
}

pub async fn get_spec(app: &App, me: &CurrentUser, id: i64) -> Result<Spec, AppError> {
    let me = me.clone();
    app.db
        .read(move |c| store::get_spec(c, id, listed_only(c, &me, SPECS)?).map_err(AppError::from))
        .await?
        .ok_or(AppError::NotFound)
}

pub async fn save_spec(
    app: &App,
    me: &CurrentUser,
    id: Option<i64>,
    input: SpecInput,
    src: &Source,
) -> Result<Spec, AppError> {
    let (actor, src) = (me.actor(), src.clone());
    app.db
        .write(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let base = match id {
                Some(id) => SpecFields::of(&store::get_spec(&tx, id, false)?.ok_or(AppError::NotFound)?),
                None => SpecFields::empty(),
            };
            let f = SpecFields::merge(base, &input).map_err(AppError::Validation)?;
            let now = crate::db::now();
            let (id, action) = match id {
                Some(id) => (store::update_spec(&tx, id, &f, now).map(|_| id)?, "spec.update"),
                None => (store::insert_spec(&tx, &f, now)?, "spec.create"),
            };
            let detail = json!({
                "name": f.name, "gpu_model": f.gpu_model, "gpu_count": f.gpu_count, "cpu_cores": f.cpu_cores,
                "memory_gb": f.memory_gb, "system_disk_gb": f.system_disk_gb, "data_disk_gb": f.data_disk_gb,
                "price_per_hour": f.price_text(), "listed": f.listed
            });
            audit::append(&tx, &Event::new(&actor, &src, action, "spec").id(id).detail(detail))?;
            let spec = store::get_spec(&tx, id, false)?.ok_or(AppError::NotFound)?;
            tx.commit()?;
            Ok(spec)
        })
        .await
}

pub async fn delete(
    app: &App,
    me: &CurrentUser,
    table: Table,
    id: i64,
    src: &Source,
) -> Result<(), AppError> {
    let (actor, src) = (me.actor(), src.clone());
    let (action, kind) = match table {
        Table::Images => ("image.delete", "image"),
        Table::Specs => ("spec.delete", "spec"),
    };
    app.db
        .write(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if !store::delete(&tx, table, id).map_err(crate::error::on_in_use("id"))? {
                return Err(AppError::NotFound);
            }
            audit::append(&tx, &Event::new(&actor, &src, action, kind).id(id))?;
            tx.commit().map_err(AppError::from)
        })
        .await
}
