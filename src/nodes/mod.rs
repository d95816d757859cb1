//! Compute nodes (算力节点): the Docker daemons gpudock manages, their sealed
//! credentials, Test connection, Sync hardware, registering this host, and
//! the health loop that keeps each node's status true.

pub mod api;
pub mod health;
pub mod model;
pub mod pages;
pub mod ssh;
pub mod ssh_web;
pub mod store;

pub use health::per_node;

use std::time::Instant;

use rusqlite::TransactionBehavior;
use serde::Serialize;
use serde_json::json;

use crate::app::App;
use crate::audit::{self, Event, Outcome, Source};
use crate::auth::CurrentUser;
use crate::docker::{self, Endpoint, EngineReport, TlsMaterial};
use crate::error::{AppError, FieldError, FieldErrors, on_unique};
use crate::ids::NodeId;
use crate::secrets::Secret;
use model::{Node, NodeFields, NodeInput, SecretChange, Status};
use store::Sealed;

/// Every node, by id (what a form offers to choose from).
pub async fn all(app: &App) -> Result<Vec<Node>, AppError> {
    app.db.read(|c| store::all(c).map_err(AppError::from)).await
}

/// The nodes of `window` that `search` matches, by id, and how many there
/// are.
pub async fn list(
    app: &App,
    search: crate::paging::Search,
    window: crate::paging::Window,
) -> Result<crate::paging::Page<Node>, AppError> {
    let known: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
    search.status_of(&known)?;
    app.db
        .read(move |c| store::list(c, &search, window).map_err(AppError::from))
        .await
}

/// [`list`] with what each node's instances hold (the node list page).
pub async fn list_used(
    app: &App,
    search: crate::paging::Search,
    window: crate::paging::Window,
) -> Result<crate::paging::Page<(Node, model::Used)>, AppError> {
    let page = list(app, search, window).await?;
    app.db
        .read(move |c| {
            let mut items = Vec::with_capacity(page.items.len());
            for n in page.items {
                let u = store::used(c, n.id)?;
                items.push((n, u));
            }
            Ok::<_, AppError>(crate::paging::Page {
                items,
                total: page.total,
                window: page.window,
            })
        })
        .await
}

pub async fn get(app: &App, id: NodeId) -> Result<Node, AppError> {
    app.db
        .read(move |c| store::get(c, id).map_err(AppError::from))
        .await?
        .ok_or(AppError::NotFound)
}

fn seal(app: &App, change: &SecretChange) -> Result<Sealed, AppError> {
    Ok(match change {
        SecretChange::Keep => Sealed::Keep,
        SecretChange::Clear => Sealed::Clear,
        SecretChange::Set(plain) => Sealed::Set(app.sealer.seal(plain.as_bytes())?),
    })
}

/// Creates (`id` None) or updates a node. Secrets are sealed before they
/// reach SQL; the audit record says only whether they changed.
pub async fn save(
    app: &App,
    me: &CurrentUser,
    id: Option<NodeId>,
    input: NodeInput,
    src: &Source,
) -> Result<Node, AppError> {
    let (actor, src, app2) = (me.actor(), src.clone(), app.clone());
    app.db
        .write(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let old = match id {
                Some(id) => Some(store::get(&tx, id)?.ok_or(AppError::NotFound)?),
                None => None,
            };
            let base = old.as_ref().map_or_else(NodeFields::empty, NodeFields::of);
            let has_key = old.as_ref().is_some_and(|n| n.has_client_key);
            let v = model::validate(base, &input, has_key).map_err(AppError::Validation)?;
            let (password, key) = (seal(&app2, &v.password)?, seal(&app2, &v.client_key)?);
            let now = crate::db::now();
            let f = &v.fields;
            let (id, action) = match id {
                Some(id) => (store::update(&tx, id, f, &password, &key, now).map(|_| id).map_err(on_unique("name"))?, "node.update"),
                None => (store::insert(&tx, f, &password, &key, now).map_err(on_unique("name"))?, "node.create"),
            };
            let detail = json!({
                "name": f.name, "public_ip": f.public_ip, "private_ip": f.private_ip, "docker_endpoint": f.docker_endpoint,
                "tls_enabled": f.tls_enabled, "listed": f.listed, "gpu_name": f.gpu_name, "gpu_count": f.gpu_count,
                "password": change_word(&v.password), "tls_client_key": change_word(&v.client_key),
            });
            audit::append(&tx, &Event::new(&actor, &src, action, "node").id(id).detail(detail))?;
            let node = store::get(&tx, id)?.ok_or(AppError::NotFound)?;
            tx.commit()?;
            Ok(node)
        })
        .await
}

fn change_word(c: &SecretChange) -> &'static str {
    match c {
        SecretChange::Keep => "unchanged",
        SecretChange::Clear => "cleared",
        SecretChange::Set(_) => "changed",
    }
}

pub async fn delete(app: &App, me: &CurrentUser, id: NodeId, src: &Source) -> Result<(), AppError> {
    let (actor, src) = (me.actor(), src.clone());
    app.db
        .write(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let node = store::get(&tx, id)?.ok_or(AppError::NotFound)?;
            store::delete(&tx, id).map_err(crate::error::on_in_use("id"))?;
            audit::append(
                &tx,
                &Event::new(&actor, &src, "node.delete", "node")
                    .id(id)
                    .detail(json!({"name": node.name})),
            )?;
            tx.commit().map_err(AppError::from)
        })
        .await
}

/// The node's endpoint with its TLS material opened from the seal (in memory
/// only). `None` when no endpoint is configured.
pub async fn endpoint_of(app: &App, id: NodeId) -> Result<Option<Endpoint>, AppError> {
    let row = app
        .db
        .read(move |c| store::connection(c, id).map_err(AppError::from))
        .await?
        .ok_or(AppError::NotFound)?;
    if row.endpoint.is_empty() {
        return Ok(None);
    }
    let tls = if row.tls_enabled && row.endpoint.starts_with("tcp://") {
        let sealed = row
            .key_sealed
            .ok_or_else(|| AppError::Upstream("the node has TLS on but no client key".into()))?;
        let key = app.sealer.unseal(&sealed)?;
        let key = String::from_utf8(key.expose().clone()).map_err(AppError::internal)?;
        Some(TlsMaterial {
            ca_pem: row.ca,
            cert_pem: row.cert,
            key_pem: Secret::new(key),
        })
    } else {
        None
    };
    Ok(Some(Endpoint {
        url: row.endpoint,
        tls,
    }))
}

/// How long an operation on a node (anything but a health probe) waits for
/// the daemon's answer. A daemon that is down fails at connecting (within
/// `nodes.probe_timeout_secs`); one that is only slow, as under heavy load,
/// gets this long rather than the probe's few seconds, so that sessions
/// and instance operations do not fail while it catches up.
pub const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// A negotiated client for the node (connecting within the probe timeout,
/// answers within [`CALL_TIMEOUT`]); unreachable is `Upstream`.
pub async fn client(app: &App, node_id: NodeId) -> Result<bollard::Docker, AppError> {
    let ep = endpoint_of(app, node_id)
        .await?
        .ok_or_else(|| AppError::Upstream("the node has no Docker endpoint".into()))?;
    let d = docker::connect(&ep, app.config.nodes.probe_timeout_secs)
        .map_err(crate::error::docker_error)?
        .with_timeout(CALL_TIMEOUT);
    docker::negotiate(&d, CALL_TIMEOUT.as_secs())
        .await
        .map_err(crate::error::docker_error)?;
    Ok(d)
}

/// Connects and probes within the configured timeout.
pub async fn probe_endpoint(app: &App, ep: &Endpoint) -> Result<EngineReport, docker::DockerError> {
    let timeout = app.config.nodes.probe_timeout_secs;
    let d = docker::connect(ep, timeout)?;
    docker::probe(&d, timeout).await
}

/// Probes node `id` and records the outcome as its status.
pub async fn check(app: &App, id: NodeId) -> Result<Result<EngineReport, String>, AppError> {
    let outcome = match endpoint_of(app, id).await {
        Ok(Some(ep)) => probe_endpoint(app, &ep).await.map_err(|e| e.to_string()),
        Ok(None) => Err("no Docker endpoint configured".to_string()),
        Err(AppError::Upstream(why)) => Err(why),
        Err(e) => return Err(e),
    };
    let (status, error, report) = match &outcome {
        Ok(r) => (
            Status::Online,
            String::new(),
            Some(serde_json::to_string(r).map_err(AppError::internal)?),
        ),
        Err(e) => (Status::Unreachable, e.clone(), None),
    };
    app.db
        .write(move |c| {
            store::set_status(c, id, status, &error, report.as_deref(), crate::db::now())
                .map_err(AppError::from)
        })
        .await?;
    Ok(outcome)
}

#[derive(Debug, Clone, Serialize)]
pub struct TestResult {
    pub ok: bool,
    pub report: Option<EngineReport>,
    pub error: Option<String>,
    pub elapsed_ms: u128,
}

/// Test connection: probe, record the status, audit the outcome.
pub async fn test(
    app: &App,
    me: &CurrentUser,
    id: NodeId,
    src: &Source,
) -> Result<TestResult, AppError> {
    get(app, id).await?;
    let started = Instant::now();
    let outcome = check(app, id).await?;
    let elapsed_ms = started.elapsed().as_millis();
    let (actor, src) = (me.actor(), src.clone());
    let (outcome_kind, detail) = match &outcome {
        Ok(r) => (
            Outcome::Success,
            json!({"docker_version": r.docker_version, "api_version": r.api_version, "ms": elapsed_ms}),
        ),
        Err(e) => (Outcome::Failure, json!({"error": e, "ms": elapsed_ms})),
    };
    app.db
        .write(move |c| {
            audit::append(
                c,
                &Event::new(&actor, &src, "node.test", "node")
                    .id(id)
                    .outcome(outcome_kind)
                    .detail(detail),
            )
            .map_err(AppError::from)
        })
        .await?;
    Ok(match outcome {
        Ok(r) => TestResult {
            ok: true,
            report: Some(r),
            error: None,
            elapsed_ms,
        },
        Err(e) => TestResult {
            ok: false,
            report: None,
            error: Some(e),
            elapsed_ms,
        },
    })
}

const GIB: i64 = 1 << 30;

/// Sync hardware: CPU and memory from the daemon; GPU model, count and
/// UUIDs from NVML when the node is this host (a unix socket), else from its
/// gpudock agent or dcgm-exporter (see `monitor::gpu_inventory`); disk sizes
/// from this host's filesystems, else from the node's agent or
/// node_exporter (see `monitor::remote_disks`), else left as entered.
pub async fn sync(app: &App, me: &CurrentUser, id: NodeId, src: &Source) -> Result<Node, AppError> {
    let report = match check(app, id).await? {
        Ok(r) => r,
        Err(why) => return Err(AppError::Upstream(why)),
    };
    let local = get(app, id).await?.docker_endpoint.starts_with("unix://");
    let inventory = crate::monitor::gpu_inventory(app, Some(id), local).await;
    let uuids = inventory.as_ref().map(|g| g.2.clone());
    let gpus = inventory.map(|(name, count, _)| (name, count));
    let memory_gb = (report.memory_bytes + GIB / 2) / GIB;
    let disks = if local {
        local_disks(&report.docker_root).await
    } else {
        crate::monitor::remote_disks(app, id, &report.docker_root).await
    };
    let (actor, src) = (me.actor(), src.clone());
    app.db
        .write(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let g = gpus.as_ref().map(|(n, k)| (n.as_str(), *k));
            let hw = store::Hardware {
                cpus: report.cpus,
                memory_gb,
                gpu: g,
                disks,
            };
            store::set_hardware(&tx, id, &hw, crate::db::now())?;
            let detail = json!({"cpu_cores": report.cpus, "memory_gb": memory_gb, "gpu": gpus, "gpu_uuids": uuids, "nvml": local,
                "system_disk_gb": disks.map(|d| d.0), "data_disk_gb": disks.map(|d| d.1)});
            audit::append(&tx, &Event::new(&actor, &src, "node.sync", "node").id(id).detail(detail))?;
            let node = store::get(&tx, id)?.ok_or(AppError::NotFound)?;
            tx.commit()?;
            Ok(node)
        })
        .await
}

/// This host's disk sizes in whole GiB (rounded down, never promising more
/// than there is): the system disk is the Docker root's filesystem (where
/// containers' writable layers live), the data disk the filesystem of the
/// volume location (`volumes/` under the root, where the local driver keeps
/// instances' data volumes). `None` when the root is unknown or unreadable.
async fn local_disks(docker_root: &str) -> Option<(i64, i64)> {
    if docker_root.is_empty() {
        return None;
    }
    let root = docker_root.to_string();
    tokio::task::spawn_blocking(move || {
        let system = crate::metrics::host::filesystem_size(&root)?;
        let volumes = std::path::Path::new(&root).join("volumes");
        let data =
            crate::metrics::host::filesystem_size(&volumes.to_string_lossy()).unwrap_or(system);
        let gb = |b: u64| i64::try_from(b / GIB as u64).unwrap_or(i64::MAX);
        Some((gb(system), gb(data)))
    })
    .await
    .ok()
    .flatten()
}

fn local_url(app: &App) -> String {
    format!("unix://{}", app.config.nodes.local_socket.display())
}

/// The local daemon's report when it answers and no node uses it yet: what
/// the nodes page offers to register (never done silently).
pub async fn local_offer(app: &App) -> Option<EngineReport> {
    let url = local_url(app);
    let u = url.clone();
    let taken = app
        .db
        .read(move |c| {
            c.query_row(
                "SELECT EXISTS (SELECT 1 FROM nodes WHERE docker_endpoint = ?1)",
                [u],
                |r| r.get::<_, bool>(0),
            )
            .map_err(AppError::from)
        })
        .await;
    if taken.unwrap_or(true) || !app.config.nodes.local_socket.exists() {
        return None;
    }
    probe_endpoint(app, &Endpoint { url, tls: None }).await.ok()
}

/// Registers this host's daemon as the node `local` (on the admin's click).
pub async fn register_local(app: &App, me: &CurrentUser, src: &Source) -> Result<Node, AppError> {
    let url = local_url(app);
    let report = probe_endpoint(
        app,
        &Endpoint {
            url: url.clone(),
            tls: None,
        },
    )
    .await
    .map_err(|e| AppError::Upstream(e.to_string()))?;
    let gpus = crate::monitor::gpu_inventory(app, None, true)
        .await
        .map(|(name, count, _)| (name, count));
    let disks = local_disks(&report.docker_root).await;
    let input = NodeInput {
        name: Some("local".into()),
        public_ip: Some("127.0.0.1".into()),
        private_ip: Some("127.0.0.1".into()),
        docker_endpoint: Some(url),
        tls_enabled: Some(serde_json::Value::Bool(false)),
        cpu_cores: Some(json!(report.cpus)),
        memory_gb: Some(json!((report.memory_bytes + GIB / 2) / GIB)),
        system_disk_gb: disks.map(|d| json!(d.0)),
        data_disk_gb: disks.map(|d| json!(d.1)),
        gpu_name: gpus.as_ref().map(|g| g.0.clone()),
        gpu_count: gpus.as_ref().map(|g| json!(g.1)),
        remark: Some("this host".into()),
        ..Default::default()
    };
    let node = save(app, me, None, input, src).await.map_err(|e| match e {
        AppError::Conflict(_) => AppError::Conflict(FieldErrors::from([(
            "name",
            FieldError::new("err.local_exists"),
        )])),
        other => other,
    })?;
    // Records the first status; the outcome shows on the node itself.
    let _probe = check(app, node.id).await?;
    get(app, node.id).await
}
