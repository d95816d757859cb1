//! Datasets (数据集): a named Docker volume on a node, owned by a tenant
//! (managed by its owners) or by a user, with a description and its
//! measured size. Files go in and out through the files capability (the
//! web browser, or `sftp -P 2026 alice+dataset-NAME@host`), which works in
//! a small transfer container holding the volume at `/dataset` (made when
//! needed, removed when idle, see [`run`]). The create wizard offers the
//! datasets on the chosen node; instances mount them read-only at
//! `/datasets/<name>`, and a dataset in use cannot be deleted.

pub mod api;
pub mod model;
pub mod pages;
pub mod store;

use std::collections::HashMap;
use std::time::Duration;

use rusqlite::TransactionBehavior;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::audit::{self, Event, Source};
use crate::auth::{CurrentUser, FileTarget, Scope};
use crate::docker::containers::{self, CreateError, Holder};
use crate::error::{AppError, FieldError, FieldErrors, docker_error};
use crate::files::Place;
use crate::ids::{InstanceId, NodeId};
use crate::validate::{int_field, multiline_text, required_text};
pub use model::{Dataset, ids_field};
pub use pages::choices_html;

/// The label every transfer container carries (this installation's id).
pub const LABEL_TRANSFER: &str = "gpudock.transfer";
/// The label naming a transfer container's dataset.
pub const LABEL_DATASET: &str = "gpudock.dataset";

/// How often each node's transfer containers are looked at.
const KEEP_EVERY: Duration = Duration::from_secs(20);

/// `POST /api/v1/datasets` body.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct CreateInput {
    pub name: Option<String>,
    pub node_id: Option<Value>,
    pub description: Option<String>,
    /// `user` (default: the creator's) or `tenant`.
    pub owner: Option<String>,
    /// The owning tenant of an admin's `tenant` dataset.
    pub tenant_id: Option<Value>,
}

/// `PATCH /api/v1/datasets/{id}` body.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct UpdateInput {
    pub description: Option<String>,
}

/// The datasets `me` sees (on `node` only, when given).
pub async fn list(
    app: &App,
    me: &CurrentUser,
    node: Option<NodeId>,
) -> Result<Vec<Dataset>, AppError> {
    let scope = me.scope();
    app.db
        .read(move |c| store::list(c, scope, node).map_err(AppError::from))
        .await
}

/// Dataset `id` if `me` sees it (404 otherwise), whether `me` manages it,
/// and the instances that mount it.
pub async fn get(
    app: &App,
    me: &CurrentUser,
    id: i64,
) -> Result<(Dataset, bool, Vec<String>), AppError> {
    let scope = me.scope();
    app.db
        .read(move |c| {
            let d = store::get(c, scope, id)?.ok_or(AppError::NotFound)?;
            Ok((d, store::manages(c, scope, id)?, store::used_by(c, id)?))
        })
        .await
}

/// Who owns a new dataset of `me`'s: (tenant, user).
fn owner_of(
    me: &CurrentUser,
    kind: model::OwnerKind,
    tenant: i64,
    e: &mut FieldErrors,
) -> (Option<i64>, Option<i64>) {
    let uid = me.user.id.0;
    match (me.scope(), kind) {
        (Scope::All, model::OwnerKind::User) => (None, Some(uid)),
        (Scope::All, model::OwnerKind::Tenant) if tenant > 0 => (Some(tenant), None),
        (Scope::All, model::OwnerKind::Tenant) => {
            e.insert("tenant_id", FieldError::new("err.required"));
            (None, None)
        }
        (Scope::Tenant(t), model::OwnerKind::Tenant) => (Some(t.0), None),
        (Scope::Tenant(t), model::OwnerKind::User) => (Some(t.0), Some(uid)),
        (Scope::User(_, t), model::OwnerKind::User) => (t.map(|t| t.0), Some(uid)),
        (Scope::User(..), model::OwnerKind::Tenant) => {
            e.insert("owner", FieldError::new("err.owner_not_allowed"));
            (None, None)
        }
    }
}

/// The volume of a new dataset: `gpudock-<install>-ds<id>-<random>`.
fn volume_name(install: &str, id: i64) -> String {
    let nonce: u32 = rand::random();
    format!("gpudock-{install}-ds{id}-{nonce:08x}")
}

fn labels(app: &App, id: i64) -> HashMap<String, String> {
    HashMap::from([
        (
            crate::instances::lifecycle::LABEL_INSTALL.to_string(),
            app.install_id.to_string(),
        ),
        (LABEL_DATASET.to_string(), id.to_string()),
    ])
}

/// Creates a dataset and its (empty) volume on the node.
pub async fn create(
    app: &App,
    me: &CurrentUser,
    input: CreateInput,
    src: &Source,
) -> Result<Dataset, AppError> {
    let mut e = FieldErrors::new();
    let name = required_text(&mut e, "name", input.name.as_deref().unwrap_or(""), 64);
    if !e.contains_key("name") && !model::valid_name(&name) {
        e.insert("name", FieldError::new("err.dataset_name"));
    }
    let description = multiline_text(
        &mut e,
        "description",
        input.description.as_deref().unwrap_or(""),
        1000,
    );
    let node_id = NodeId(int_field(
        &mut e,
        "node_id",
        input.node_id.as_ref(),
        0,
        i64::MAX,
    ));
    if node_id.0 == 0 && !e.contains_key("node_id") {
        e.insert("node_id", FieldError::new("err.required"));
    }
    let tenant = int_field(&mut e, "tenant_id", input.tenant_id.as_ref(), 0, i64::MAX);
    let kind =
        model::OwnerKind::parse(input.owner.as_deref().unwrap_or("").trim()).unwrap_or_else(|| {
            e.insert("owner", FieldError::new("err.owner_kind"));
            model::OwnerKind::User
        });
    let (tenant_id, user_id) = owner_of(me, kind, tenant, &mut e);
    if !e.is_empty() {
        return Err(AppError::Validation(e));
    }
    let node = crate::nodes::get(app, node_id)
        .await
        .map_err(|err| match err {
            AppError::NotFound => AppError::field("node_id", "err.no_such_node"),
            other => other,
        })?;
    if !node.listed && !crate::auth::sees_node_details(app, &me.user).await? {
        return Err(AppError::field("node_id", "err.no_such_node"));
    }
    let (install, uid, n, dsc) = (
        app.install_id.clone(),
        me.user.id.0,
        name.clone(),
        description.clone(),
    );
    let (id, volume) = app
        .db
        .write(move |c| {
            let new = store::NewDataset {
                name: &n,
                node_id,
                tenant_id,
                user_id,
                description: &dsc,
                created_by: uid,
            };
            let mut volume = String::new();
            let id = store::insert(
                c,
                &new,
                |id| {
                    volume = volume_name(&install, id);
                    volume.clone()
                },
                crate::db::now(),
            )
            .map_err(|err| {
                if crate::db::is_foreign_key_violation(&err) {
                    AppError::field("tenant_id", "err.no_such_tenant")
                } else {
                    crate::error::on_unique("name")(err)
                }
            })?;
            store::set_size(c, id, 0, crate::db::now())?;
            Ok::<_, AppError>((id, volume))
        })
        .await?;
    let made = async {
        let d = crate::nodes::client(app, node_id).await?;
        containers::create_volume(&d, &volume, &labels(app, id))
            .await
            .map_err(|err| match err {
                CreateError::Docker(x) => docker_error(x),
                other => AppError::Docker(other.to_string()),
            })
    }
    .await;
    let detail = json!({"name": name, "node_id": node_id, "tenant_id": tenant_id, "user_id": user_id, "volume": volume});
    if let Err(err) = made {
        app.db
            .write(move |c| store::delete(c, id).map_err(AppError::from))
            .await?;
        let mut d = detail;
        d["error"] = json!(err.to_string());
        audited(
            app,
            me,
            src,
            "dataset.create",
            id,
            crate::audit::Outcome::Failure,
            d,
        )
        .await?;
        return Err(err);
    }
    audited(
        app,
        me,
        src,
        "dataset.create",
        id,
        crate::audit::Outcome::Success,
        detail,
    )
    .await?;
    Ok(get(app, me, id).await?.0)
}

async fn audited(
    app: &App,
    me: &CurrentUser,
    src: &Source,
    action: &'static str,
    id: i64,
    outcome: crate::audit::Outcome,
    detail: Value,
) -> Result<(), AppError> {
    audit::record(&app.db, me.actor(), src.clone(), move |a, s| {
        Event::new(a, s, action, "dataset")
            .id(id)
            .outcome(outcome)
            .detail(detail)
    })
    .await
    .map_err(AppError::from)
}

/// Dataset `id` if `me` manages it: 404 when not seen, 403 when only seen.
async fn managed(app: &App, me: &CurrentUser, id: i64) -> Result<Dataset, AppError> {
    let (d, manages, _) = get(app, me, id).await?;
    if !manages {
        return Err(AppError::Forbidden);
    }
    Ok(d)
}

/// Changes the description.
pub async fn update(
    app: &App,
    me: &CurrentUser,
    id: i64,
    input: UpdateInput,
    src: &Source,
) -> Result<Dataset, AppError> {
    let mut e = FieldErrors::new();
    let text = multiline_text(
        &mut e,
        "description",
        input.description.as_deref().unwrap_or(""),
        1000,
    );
    if !e.is_empty() {
        return Err(AppError::Validation(e));
    }
    managed(app, me, id).await?;
    let (actor, src2, t) = (me.actor(), src.clone(), text.clone());
    app.db
        .write(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            store::set_description(&tx, id, &t, crate::db::now())?;
            let ev = Event::new(&actor, &src2, "dataset.update", "dataset")
                .id(id)
                .detail(json!({"description": t}));
            audit::append(&tx, &ev)?;
            tx.commit().map_err(AppError::from)
        })
        .await?;
    Ok(get(app, me, id).await?.0)
}

/// The 409 of a dataset that instances mount, naming them.
fn in_use(names: &[String]) -> AppError {
    AppError::Conflict(FieldErrors::from([(
        "id",
        FieldError::with_detail("err.dataset_in_use", names.join(", ")),
    )]))
}

/// Deletes the dataset, its transfer container and its volume (409 naming
/// the instances that mount it, while any does).
pub async fn delete(app: &App, me: &CurrentUser, id: i64, src: &Source) -> Result<(), AppError> {
    let d = managed(app, me, id).await?;
    let used = app
        .db
        .read(move |c| store::used_by(c, id).map_err(AppError::from))
        .await?;
    if !used.is_empty() {
        return Err(in_use(&used));
    }
    let detail = json!({"name": d.name, "node_id": d.node_id, "volume": d.volume_name});
    let removed = async {
        let dk = crate::nodes::client(app, d.node_id).await?;
        containers::remove(&dk, &transfer_name(&d), None)
            .await
            .map_err(docker_error)?;
        containers::remove_volume(&dk, &d.volume_name)
            .await
            .map_err(docker_error)
    }
    .await;
    if let Err(err) = removed {
        let mut dd = detail;
        dd["error"] = json!(err.to_string());
        audited(
            app,
            me,
            src,
            "dataset.delete",
            id,
            crate::audit::Outcome::Failure,
            dd,
        )
        .await?;
        return Err(err);
    }
    let (actor, src2) = (me.actor(), src.clone());
    app.db
        .write(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let used = store::used_by(&tx, id)?;
            if !used.is_empty() {
                return Err(in_use(&used));
            }
            store::delete(&tx, id)?;
            audit::append(
                &tx,
                &Event::new(&actor, &src2, "dataset.delete", "dataset")
                    .id(id)
                    .detail(detail),
            )?;
            tx.commit().map_err(AppError::from)
        })
        .await
}

/// Checks the datasets a new instance asks for (seen by `scope`, on
/// `node`, names distinct) and records them as mounted by `instance`, in
/// the reservation's transaction; their (volume, mount point)s.
pub fn attach(
    tx: &rusqlite::Connection,
    scope: Scope,
    node: NodeId,
    instance: InstanceId,
    ids: &[i64],
) -> Result<Vec<(String, String)>, AppError> {
    let field = |key: &'static str, detail: String| {
        AppError::Validation(FieldErrors::from([(
            "dataset_ids",
            FieldError::with_detail(key, detail),
        )]))
    };
    let mut out: Vec<(String, String)> = Vec::new();
    for id in ids {
        let d = store::get(tx, scope, *id)?
            .ok_or_else(|| field("err.no_such_dataset", id.to_string()))?;
        if d.node_id != node {
            return Err(field("err.dataset_other_node", d.name));
        }
        if out.iter().any(|(_, at)| *at == d.mount_path) {
            return Err(field("err.dataset_name_twice", d.name));
        }
        store::attach(tx, instance, d.id)?;
        out.push((d.volume_name, d.mount_path));
    }
    Ok(out)
}

/// The datasets instance `id` mounts (for its page).
pub async fn of_instance(app: &App, id: InstanceId) -> Result<Vec<Dataset>, AppError> {
    app.db
        .read(move |c| store::of_instance(c, id).map_err(AppError::from))
        .await
}

fn transfer_name(d: &Dataset) -> String {
    format!("{}-transfer", d.volume_name)
}

/// The image a transfer container runs: the configured one (pulled if
/// needed), else an image of the library that the node has.
async fn transfer_image(
    app: &App,
    me: &CurrentUser,
    d: &bollard::Docker,
) -> Result<String, AppError> {
    let configured = app.config.datasets.transfer_image.trim();
    if !configured.is_empty() {
        containers::ensure_image(d, configured, &mut |_| {})
            .await
            .map_err(docker_error)?;
        return Ok(configured.to_string());
    }
    for image in crate::catalog::list_images(app, me, crate::paging::Window::all())
        .await?
        .items
    {
        if containers::has_image(d, &image.address)
            .await
            .map_err(docker_error)?
        {
            return Ok(image.address);
        }
    }
    Err(AppError::Conflict(FieldErrors::from([(
        "node_id",
        FieldError::new("err.no_transfer_image"),
    )])))
}

/// The files of dataset `d` for `me`: its transfer container running.
async fn place_of(
    app: &App,
    me: &CurrentUser,
    d: Dataset,
    writable: bool,
) -> Result<Place, AppError> {
    let dk = crate::nodes::client(app, d.node_id).await?;
    let holder = Holder {
        name: transfer_name(&d),
        image: String::new(),
        labels: HashMap::from([
            (LABEL_TRANSFER.to_string(), app.install_id.to_string()),
            (LABEL_DATASET.to_string(), d.id.to_string()),
        ]),
        volume: d.volume_name.clone(),
        mount: model::TRANSFER_MOUNT.into(),
    };
    touch(app, d.id).await;
    let container = match containers::running_id(&dk, &holder.name)
        .await
        .map_err(docker_error)?
    {
        Some(id) => id,
        None => {
            let image = transfer_image(app, me, &dk).await?;
            containers::ensure_holder(&dk, &Holder { image, ..holder })
                .await
                .map_err(docker_error)?
        }
    };
    Ok(Place {
        target: FileTarget::Dataset,
        id: d.id,
        name: d.name,
        node_id: d.node_id,
        node_name: d.node_name,
        container,
        root: model::TRANSFER_MOUNT.into(),
        home: "/".into(),
        writable,
    })
}

/// The files of dataset `id`, if `me` sees it (writable if `me` manages it).
pub async fn files_place(app: &App, me: &CurrentUser, id: i64) -> Result<Place, AppError> {
    let (d, manages, _) = get(app, me, id).await?;
    place_of(app, me, d, manages).await
}

/// The files of the dataset a login names (`alice+dataset-NAME`): by
/// name, or by id when several have the name.
pub async fn login_place(app: &App, me: &CurrentUser, name: &str) -> Result<Place, AppError> {
    let scope = me.scope();
    let n = name.to_string();
    let found = app
        .db
        .read(move |c| store::named(c, scope, &n).map_err(AppError::from))
        .await?;
    let by_name: Vec<&Dataset> = found.iter().filter(|d| d.name == name).collect();
    let d = match (by_name.as_slice(), found.first()) {
        ([one], _) => (*one).clone(),
        ([], Some(by_id)) => by_id.clone(),
        ([], None) => return Err(AppError::NotFound),
        (many, _) => {
            let ids: Vec<String> = many.iter().map(|d| d.id.to_string()).collect();
            return Err(AppError::Conflict(FieldErrors::from([(
                "name",
                FieldError::with_detail(
                    "err.dataset_ambiguous",
                    format!("dataset-{}", ids.join(", dataset-")),
                ),
            )])));
        }
    };
    files_place(app, me, d.id).await
}

/// Marks dataset `id`'s transfer container in use now.
pub async fn touch(app: &App, id: i64) {
    let r = app
        .db
        .write(move |c| store::touch(c, id, crate::db::now()).map_err(AppError::from))
        .await;
    if let Err(e) = r {
        log::warn!("dataset {id}: marking it in use: {e}");
    }
}

/// Dataset `id`'s files changed: its size is measured again soon.
pub async fn changed(app: &App, id: i64) {
    let r = app
        .db
        .write(move |c| store::changed(c, id).map_err(AppError::from))
        .await;
    if let Err(e) = r {
        log::warn!("dataset {id}: marking its size stale: {e}");
    }
}

/// Keeps every node's transfer containers: measures the size of datasets
/// whose files changed, and removes containers idle for
/// `datasets.transfer_idle_secs` (or whose dataset is gone), until `cancel`.
pub async fn run(app: App, cancel: CancellationToken) {
    crate::nodes::per_node(app, cancel, "dataset transfers", keeper).await;
}

async fn keeper(app: App, node: NodeId, cancel: CancellationToken) {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            () = keep_node(&app, node) => {}
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(KEEP_EVERY) => {}
        }
    }
}

async fn keep_node(app: &App, node: NodeId) {
    let Ok(known) = app
        .db
        .read(move |c| store::on_node(c, node).map_err(AppError::from))
        .await
    else {
        return;
    };
    let Ok(d) = crate::nodes::client(app, node).await else {
        return; // unreachable: next time
    };
    let Ok(found) = containers::list_labelled(&d, LABEL_TRANSFER, &app.install_id).await else {
        return;
    };
    let idle = app.config.datasets.transfer_idle_secs as i64;
    let now = crate::db::now();
    for c in found {
        let id: i64 = c
            .labels
            .get(LABEL_DATASET)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let Some((_, last_used, measured)) = known.iter().find(|(k, _, _)| *k == id) else {
            remove_transfer(&d, &c.name).await;
            continue;
        };
        if !*measured && c.state == "running" {
            measure(app, &d, &c.id, id).await;
        }
        if now - last_used >= idle {
            remove_transfer(&d, &c.name).await;
        }
    }
}

async fn remove_transfer(d: &bollard::Docker, name: &str) {
    match containers::remove(d, name, None).await {
        Ok(()) => log::info!("transfer container {name} removed (idle)"),
        Err(e) => log::warn!("removing transfer container {name}: {e}"),
    }
}

/// Measures dataset `id`'s size in its transfer container.
async fn measure(app: &App, d: &bollard::Docker, container: &str, id: i64) {
    let fs = crate::files::ContainerFs::new(
        d.clone(),
        container.to_string(),
        format!("{}-m", app.install_id),
    );
    match fs.usage(model::TRANSFER_MOUNT).await {
        Ok(bytes) => {
            let r = app
                .db
                .write(move |c| {
                    store::set_size(c, id, bytes, crate::db::now()).map_err(AppError::from)
                })
                .await;
            if let Err(e) = r {
                log::warn!("dataset {id}: recording its size: {e}");
            }
        }
        Err(e) => log::warn!("dataset {id}: measuring its size: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes_are_named_for_the_installation_and_unique() {
        let a = volume_name("ab12", 7);
        assert!(a.starts_with("gpudock-ab12-ds7-"), "{a}");
        assert_ne!(a, volume_name("ab12", 7));
    }
}
