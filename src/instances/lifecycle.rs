//! Creating, deleting, starting, stopping and restarting instances.
//! Capacity is checked and reserved (the instance row, GPU indices and the
//! names of its container and volume included) in one write transaction;
//! the container is then made by a background job, and on any failure (or
//! when the server stops meanwhile) what that job made and the reservation
//! are removed, nothing else. Every operation is audited.

use std::collections::HashMap;

use rusqlite::TransactionBehavior;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use super::model::InstanceStatus;
use super::placement::{self, NoRoom};
use super::store::{self, Instance, NewInstance, ObjectNames, Warning};
use crate::app::App;
use crate::audit::{self, Actor, Event, Outcome, Source};
use crate::auth::CurrentUser;
use crate::catalog::model::Spec;
use crate::docker::containers::{self, ContainerSpec, CreateError, DiskQuota, PullProgress, Step};
use crate::error::{AppError, FieldError, FieldErrors, docker_error};
use crate::ids::{InstanceId, NodeId};
use crate::jobs::{JobHandle, Progress};
use crate::nodes::client;
use crate::validate::{int_field, multiline_text, required_text};

/// `POST /api/v1/instances` body. The owner comes from the session; any
/// other key (a `user_id`, say) is ignored.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct CreateInput {
    pub image_id: Option<Value>,
    pub spec_id: Option<Value>,
    pub node_id: Option<Value>,
    pub name: Option<String>,
    pub remark: Option<String>,
    /// Datasets on the node to mount read-only at `/datasets/<name>`.
    pub dataset_ids: Option<Value>,
    /// Unix seconds; absent: the spec's default lease length (none:
    /// open-ended).
    pub lease_end: Option<Value>,
}

pub const LABEL_INSTALL: &str = "gpudock.install";
pub const LABEL_INSTANCE: &str = "gpudock.instance";
pub const LABEL_NODE: &str = "gpudock.node";
pub const LABEL_USER: &str = "gpudock.user";

const GIB: i64 = 1 << 30;

/// The names of a new instance's container and data volume:
/// `gpudock-<install>-<id>-<random>` (and `…-data`). The id keeps them
/// readable; the random part keeps them unique even when an id comes back
/// (a restore of an older backup rewinds the id sequence), so a new
/// instance never meets an old one's container or data. Decided once, at
/// reservation, and stored in the row.
pub fn object_names(install: &str, id: InstanceId) -> ObjectNames {
    let nonce: u32 = rand::random();
    let container = format!("gpudock-{install}-{id}-{nonce:08x}");
    ObjectNames {
        volume: format!("{container}-data"),
        container,
    }
}

fn required_id(errors: &mut FieldErrors, field: &'static str, v: Option<&Value>) -> i64 {
    let id = int_field(errors, field, v, 0, i64::MAX);
    if id == 0 && !errors.contains_key(field) {
        errors.insert(field, FieldError::new("err.required"));
    }
    id
}

pub(super) async fn audit_event(
    app: &App,
    actor: Actor,
    src: &Source,
    action: &'static str,
    id: InstanceId,
    outcome: Outcome,
    detail: Value,
) -> Result<(), AppError> {
    audit::record(&app.db, actor, src.clone(), move |a, s| {
        Event::new(a, s, action, "instance")
            .id(id)
            .outcome(outcome)
            .detail(detail)
    })
    .await
    .map_err(AppError::from)
}

fn no_room(why: NoRoom) -> AppError {
    let err = match why {
        NoRoom::GpuModel => FieldError::new("err.gpu_model_mismatch"),
        NoRoom::Short(what) => FieldError::with_detail("err.no_room", what),
    };
    AppError::Conflict(FieldErrors::from([("node_id", err)]))
}

/// A reservation: the row exists (status `creating`) and holds capacity.
pub struct Reserved {
    pub id: InstanceId,
    pub node_id: NodeId,
    pub name: String,
    pub image: String,
    pub spec: Spec,
    /// The node's GPU indices this instance holds.
    pub gpus: Vec<i64>,
    pub objects: ObjectNames,
    /// The datasets' volumes and where they are mounted (read-only).
    pub datasets: Vec<(String, String)>,
    /// Whom it belongs to (the user an admin allocated it to, or the
    /// creator).
    pub owner_id: i64,
}

/// Validates the input and reserves capacity and GPU indices on the node in
/// one write transaction: concurrent creates never place more than it holds.
pub async fn reserve(
    app: &App,
    me: &CurrentUser,
    input: CreateInput,
) -> Result<Reserved, AppError> {
    reserve_for(app, me, me, input).await
}

/// [`reserve`] by `me` for `owner` (an admin's allocation, 分配): the owner
/// and tenant, and the datasets it may mount, are the owner's.
pub async fn reserve_for(
    app: &App,
    me: &CurrentUser,
    owner: &CurrentUser,
    input: CreateInput,
) -> Result<Reserved, AppError> {
    let mut e = FieldErrors::new();
    let image_id = required_id(&mut e, "image_id", input.image_id.as_ref());
    let spec_id = required_id(&mut e, "spec_id", input.spec_id.as_ref());
    let node_id = NodeId(required_id(&mut e, "node_id", input.node_id.as_ref()));
    let name = required_text(&mut e, "name", input.name.as_deref().unwrap_or(""), 64);
    let remark = multiline_text(&mut e, "remark", input.remark.as_deref().unwrap_or(""), 500);
    let dataset_ids = crate::datasets::ids_field(&mut e, "dataset_ids", input.dataset_ids.as_ref());
    if !e.is_empty() {
        return Err(AppError::Validation(e));
    }
    let scope = owner.scope();
    let not_found_as = |field: &'static str, key: &'static str| {
        move |err| match err {
            AppError::NotFound => AppError::field(field, key),
            other => other,
        }
    };
    let image = crate::catalog::get_image(app, me, image_id)
        .await
        .map_err(not_found_as("image_id", "err.no_such_image"))?;
    let spec = crate::catalog::get_spec(app, me, spec_id)
        .await
        .map_err(not_found_as("spec_id", "err.no_such_spec"))?;
    let lease_end =
        crate::leases::at_creation(app, me, spec.lease_days, input.lease_end.as_ref()).await?;
    let req = super::request_of(&spec);
    let (uid, tenant) = (owner.user.id.0, owner.user.tenant_id.map(|t| t.0));
    let (n, r) = (name.clone(), remark);
    let (install, generation) = (app.install_id.clone(), app.generation);
    let (id, gpus, objects, datasets) = app
        .db
        .write(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let unavailable = || {
                AppError::Conflict(FieldErrors::from([(
                    "node_id",
                    FieldError::new("err.node_unavailable"),
                )]))
            };
            let snap = store::snapshots(&tx, Some(node_id))?
                .pop()
                .ok_or_else(unavailable)?;
            placement::fits(&req, &snap).map_err(no_room)?;
            let used = store::used_gpus(&tx, node_id)?;
            let gpus = placement::free_gpus(snap.total.gpus, &used, req.need.gpus)
                .ok_or_else(|| no_room(NoRoom::Short("gpu_count")))?;
            if let Some(t) = tenant {
                super::quota::check(&tx, crate::auth::TenantId(t), &req.need, 1)?;
            }
            let new = NewInstance {
                name: &n,
                image_id,
                spec_id,
                node_id,
                user_id: uid,
                tenant_id: tenant,
                gpu_indices: &gpus,
                reserved: req.need,
                remark: &r,
                generation,
                lease_end,
            };
            let mut objects = ObjectNames::default();
            let id = store::insert(
                &tx,
                &new,
                |id| {
                    objects = object_names(&install, id);
                    objects.clone()
                },
                crate::db::now(),
            )?;
            let datasets = crate::datasets::attach(&tx, scope, node_id, id, &dataset_ids)?;
            tx.commit()?;
            Ok::<_, AppError>((id, gpus, objects, datasets))
        })
        .await?;
    Ok(Reserved {
        id,
        node_id,
        name,
        image: image.address,
        spec,
        gpus,
        objects,
        datasets,
        owner_id: uid,
    })
}

/// Reserves, then makes the container in a background job. Bad input and a
/// node without room fail here; the job's handle yields the running
/// instance or why it failed (and nothing was left behind).
pub async fn create(
    app: &App,
    me: &CurrentUser,
    input: CreateInput,
    src: &Source,
) -> Result<(u64, JoinHandle<Result<Instance, AppError>>), AppError> {
    create_for(app, me, me, input, src).await
}

/// [`create`] by `me` for `owner` (see [`reserve_for`]).
pub async fn create_for(
    app: &App,
    me: &CurrentUser,
    owner: &CurrentUser,
    input: CreateInput,
    src: &Source,
) -> Result<(u64, JoinHandle<Result<Instance, AppError>>), AppError> {
    let r = reserve_for(app, me, owner, input).await?;
    let (app2, actor, src) = (app.clone(), me.actor(), src.clone());
    let first = Progress {
        key: "instances.p_connect",
        detail: String::new(),
        percent: None,
    };
    Ok(app.jobs.spawn(
        me.user.id.0,
        first,
        |i: &Instance| format!("/instances/{}", i.id),
        move |job| provision(app2, actor, src, r, job),
    ))
}

async fn provision(
    app: App,
    actor: Actor,
    src: Source,
    r: Reserved,
    job: JobHandle,
) -> Result<Instance, AppError> {
    let mounted: Vec<&str> = r.datasets.iter().map(|(_, at)| at.as_str()).collect();
    let detail = json!({"name": r.name, "node_id": r.node_id, "image": r.image,
                        "spec_id": r.spec.id, "gpu_indices": r.gpus, "job": job.id(),
                        "datasets": mounted});
    match make_container(&app, &r, &job).await {
        Ok((inst, pulled)) => {
            let mut detail = detail;
            detail["container_id"] = json!(inst.container_id);
            detail["warnings"] = json!(inst.warnings);
            detail["pulled"] = json!(pulled);
            audit_event(
                &app,
                actor,
                &src,
                "instance.create",
                r.id,
                Outcome::Success,
                detail,
            )
            .await?;
            Ok(inst)
        }
        Err(err) => {
            // What this creation made is gone (create_and_start undoes it);
            // the reservation goes too.
            let id = r.id;
            app.db
                .write(move |c| store::delete(c, id).map_err(AppError::from))
                .await?;
            let mut detail = detail;
            detail["error"] = json!(match &err {
                AppError::ShuttingDown => "interrupted: gpudock is shutting down".to_string(),
                other => other.to_string(),
            });
            audit_event(
                &app,
                actor,
                &src,
                "instance.create",
                r.id,
                Outcome::Failure,
                detail,
            )
            .await?;
            Err(err)
        }
    }
}

fn report(job: &JobHandle, step: Step<'_>) {
    match step {
        Step::Image => job.progress("instances.p_image", "", None),
        Step::Pull(p) => job.progress(
            "instances.p_pull",
            format!("{} · {}/{}", p.status, p.layers_done, p.layers),
            p.percent,
        ),
        Step::Volume => job.progress("instances.p_volume", "", None),
        Step::Container => job.progress("instances.p_container", "", None),
        Step::Start => job.progress("instances.p_start", "", None),
    }
}

async fn make_container(
    app: &App,
    r: &Reserved,
    job: &JobHandle,
) -> Result<(Instance, Option<PullProgress>), AppError> {
    let d = tokio::select! {
        _ = job.cancelled() => return Err(AppError::ShuttingDown),
        d = client(app, r.node_id) => d?,
    };
    let install = app.install_id.to_string();
    let labels = HashMap::from([
        (LABEL_INSTALL.to_string(), install.clone()),
        (LABEL_INSTANCE.to_string(), r.id.to_string()),
        (LABEL_NODE.to_string(), r.node_id.to_string()),
        (LABEL_USER.to_string(), r.owner_id.to_string()),
    ]);
    let cs = ContainerSpec {
        name: r.objects.container.clone(),
        image: r.image.clone(),
        labels,
        nano_cpus: r.spec.cpu_cores * 1_000_000_000,
        memory_bytes: r.spec.memory_gb * GIB,
        disk_size_gb: r.spec.system_disk_gb,
        data_volume: Some(r.objects.volume.clone()),
        gpu_device_ids: r.gpus.iter().map(i64::to_string).collect(),
        read_only: r.datasets.clone(),
    };
    // The image's pull, when there was one (for the audit record).
    let mut pulled: Option<PullProgress> = None;
    let created = containers::create_and_start(&d, &cs, job.cancel_token(), &mut |s| {
        if let Step::Pull(p) = s {
            pulled = Some(p.clone());
        }
        report(job, s);
    })
    .await
    .map_err(|e| match e {
        CreateError::Docker(d) => docker_error(d),
        CreateError::Cancelled => AppError::ShuttingDown,
        other @ (CreateError::Pull { .. }
        | CreateError::NoGpuRuntime(_)
        | CreateError::NameTaken { .. }) => AppError::Docker(other.to_string()),
    })?;
    let status = InstanceStatus::of_container(created.state.as_deref());
    let warnings = match &created.disk_quota {
        DiskQuota::Unsupported(why) => vec![Warning {
            code: "system_disk_not_enforced".into(),
            detail: format!("{} GB: {why}", r.spec.system_disk_gb),
        }],
        DiskQuota::NotAsked | DiskQuota::Applied => vec![],
    };
    let (id, cid) = (r.id, created.id.clone());
    app.db
        .write(move |c| {
            store::set_created(c, id, &cid, status, &warnings, crate::db::now())?;
            store::get(c, crate::auth::Scope::All, id)?.ok_or(AppError::NotFound)
        })
        .await
        .map(|inst| (inst, pulled))
}

/// The instance if `me` may reach it (404 otherwise, never 403).
pub async fn scoped(app: &App, me: &CurrentUser, id: InstanceId) -> Result<Instance, AppError> {
    let scope = me.scope();
    app.db
        .read(move |c| store::get(c, scope, id).map_err(AppError::from))
        .await?
        .ok_or(AppError::NotFound)
}

/// Audits a failed operation (the error added to `detail`) and gives back
/// the error to return (or the audit's own failure).
async fn failed(
    app: &App,
    me: &CurrentUser,
    src: &Source,
    action: &'static str,
    id: InstanceId,
    mut detail: Value,
    err: AppError,
) -> AppError {
    detail["error"] = json!(err.to_string());
    match audit_event(app, me.actor(), src, action, id, Outcome::Failure, detail).await {
        Ok(()) => err,
        Err(audit) => audit,
    }
}

fn creating() -> AppError {
    AppError::Conflict(FieldErrors::from([(
        "status",
        FieldError::new("err.still_creating"),
    )]))
}

/// Removes the container and its data volume, then the row. When the node
/// cannot be reached the delete fails with the reason and the row stays.
pub async fn delete(
    app: &App,
    me: &CurrentUser,
    id: InstanceId,
    src: &Source,
) -> Result<(), AppError> {
    let inst = scoped(app, me, id).await?;
    if inst.status == InstanceStatus::Creating {
        return Err(creating());
    }
    let target = inst
        .container_id
        .clone()
        .unwrap_or_else(|| inst.objects.container.clone());
    expect_stop(app, id, true).await?;
    let generation = app.generation;
    let mark = move |back: Option<InstanceStatus>| {
        app.db.write(move |c| {
            store::mark_deleting(c, id, back, crate::db::now(), generation).map_err(AppError::from)
        })
    };
    mark(None).await?;
    let removed = async {
        let d = client(app, inst.node_id).await?;
        containers::remove(&d, &target, Some(&inst.objects.volume))
            .await
            .map_err(docker_error)
    }
    .await;
    let detail =
        json!({"name": inst.name, "node_id": inst.node_id, "container_id": inst.container_id});
    if let Err(err) = removed {
        mark(Some(inst.status)).await?;
        return Err(failed(app, me, src, "instance.delete", id, detail, err).await);
    }
    let (actor, src) = (me.actor(), src.clone());
    app.db
        .write(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            store::delete(&tx, id)?;
            let e = Event::new(&actor, &src, "instance.delete", "instance")
                .id(id)
                .detail(detail);
            audit::append(&tx, &e)?;
            tx.commit().map_err(AppError::from)
        })
        .await?;
    // Tunnels to it end now (issue 15), not when they next move a byte.
    crate::sessions::end_tunnels_to(app, id, crate::sessions::EndReason::AccessRevoked).await?;
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Start,
    Stop,
    Restart,
}

impl Action {
    pub fn audit_name(self) -> &'static str {
        match self {
            Action::Start => "instance.start",
            Action::Stop => "instance.stop",
            Action::Restart => "instance.restart",
        }
    }
}

/// Notes that the container's coming death is ours (no "exited
/// unexpectedly" alert), or (`false`) that any death from now on is not.
async fn expect_stop(app: &App, id: InstanceId, stopping: bool) -> Result<(), AppError> {
    let at = stopping.then(crate::db::now);
    app.db
        .write(move |c| store::mark_stop_requested(c, id, at).map_err(AppError::from))
        .await
}

/// Start, stop or restart the container; the row takes the daemon's state.
pub async fn act(
    app: &App,
    me: &CurrentUser,
    id: InstanceId,
    action: Action,
    src: &Source,
) -> Result<Instance, AppError> {
    let inst = scoped(app, me, id).await?;
    if inst.status == InstanceStatus::Creating {
        return Err(creating());
    }
    let cid = inst
        .container_id
        .clone()
        .ok_or_else(|| AppError::field("id", "err.no_container"))?;
    // A start forgets an earlier stop request: a crash after it is news.
    expect_stop(app, id, action != Action::Start).await?;
    let done = async {
        let d = client(app, inst.node_id).await?;
        let grace = i32::try_from(app.config.instances.stop_timeout_secs).unwrap_or(10);
        match action {
            Action::Start => containers::start(&d, &cid).await,
            Action::Stop => containers::stop(&d, &cid, grace).await,
            Action::Restart => containers::restart(&d, &cid, grace).await,
        }
        .map_err(docker_error)?;
        containers::state(&d, &cid).await.map_err(docker_error)
    }
    .await;
    let status = match done {
        Ok(s) => InstanceStatus::of_container(s.as_deref()),
        Err(err) => {
            let detail = json!({"name": inst.name});
            return Err(failed(app, me, src, action.audit_name(), id, detail, err).await);
        }
    };
    let c = cid.clone();
    app.db
        .write(move |conn| {
            store::set_status(conn, id, &c, status, crate::db::now()).map_err(AppError::from)
        })
        .await?;
    if status != InstanceStatus::Running {
        crate::sessions::end_tunnels_to(app, id, crate::sessions::EndReason::UserClose).await?;
    }
    let detail = json!({"name": inst.name, "status": status});
    audit_event(
        app,
        me.actor(),
        src,
        action.audit_name(),
        id,
        Outcome::Success,
        detail,
    )
    .await?;
    scoped(app, me, id).await
}
