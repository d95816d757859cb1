//! Containers, their data volumes and images: the calls instance management
//! makes, each mapped to a [`DockerError`] an admin can act on. Creation is
//! all-or-nothing and takes nothing that exists: it refuses a container or
//! volume name already in use (dockerd would hand back an existing volume
//! of that name, data and all), and a failure or a cancellation removes
//! exactly what this creation made, never an object it found.

use std::collections::HashMap;
use std::time::Duration;

use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, DeviceRequest, HostConfig, Mount, MountType, MountVolumeOptions,
    RestartPolicy, RestartPolicyNameEnum, VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, ListContainersOptionsBuilder,
    RemoveContainerOptionsBuilder, RemoveVolumeOptions, RestartContainerOptionsBuilder,
    StopContainerOptionsBuilder,
};
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

pub use super::pull::PullProgress;
use super::{DockerError, api_status, pull::PullTracker};

/// Where a container's data volume is mounted.
pub const DATA_MOUNT: &str = "/data";

/// What dockerd answers when `StorageOpt size` cannot work on its storage.
const STORAGE_OPT_UNSUPPORTED: &str = "--storage-opt is supported only for";
/// What dockerd answers when a GPU request finds no NVIDIA runtime.
const NO_GPU_DRIVER: &str = "could not select device driver";

/// The container to make, with exactly these limits.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    pub labels: HashMap<String, String>,
    /// CPU limit in billionths of a CPU (`--cpus 2` = 2e9); 0: no limit.
    pub nano_cpus: i64,
    /// Memory limit in bytes (also the memory+swap limit); 0: no limit.
    pub memory_bytes: i64,
    /// Writable layer size (`StorageOpt size`), GB; 0: none asked.
    pub disk_size_gb: i64,
    /// A named volume created for the container and mounted at `/data`.
    pub data_volume: Option<String>,
    /// Specific GPU indices for `DeviceRequests` (driver nvidia, capability gpu).
    pub gpu_device_ids: Vec<String>,
    /// Existing volumes mounted read-only (datasets): (volume, path).
    /// They must exist (dockerd would make an empty one otherwise).
    pub read_only: Vec<(String, String)>,
}

/// What became of the writable-layer size limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskQuota {
    NotAsked,
    Applied,
    /// dockerd refused it (storage without quota support); the container was
    /// made without it. The daemon's message.
    Unsupported(String),
}

#[derive(Debug, Clone)]
pub struct Created {
    pub id: String,
    pub disk_quota: DiskQuota,
    /// Its state once started (`running`, or `exited` when it stopped at
    /// once).
    pub state: Option<String>,
}

/// Why creation failed; nothing it made is left on the daemon (unless the
/// cleanup itself failed, which `cleanup` says).
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("the image {image} is not on the node and pulling it failed: {source}")]
    Pull { image: String, source: DockerError },
    #[error(
        "the node has no NVIDIA container runtime, so it cannot give GPUs to containers \
         (dockerd: {0}); install the NVIDIA container toolkit on the node or pick another node"
    )]
    NoGpuRuntime(String),
    /// A container or volume of that name exists already: not this
    /// creation's, so it was neither used nor touched.
    #[error(
        "a {kind} named {name} already exists on the node; it was left as it is and nothing was created"
    )]
    NameTaken { kind: &'static str, name: String },
    /// Cancelled (the server is stopping); what was made is removed.
    #[error("cancelled")]
    Cancelled,
    #[error("{0}")]
    Docker(DockerError),
}

/// How long removing what a failed creation made may take.
const UNDO_WITHIN: Duration = Duration::from_secs(10);

/// Longest a single create/start/stop call may wait for dockerd's answer.
const SLOW_CALL: Duration = Duration::from_secs(120);

fn slow(d: &Docker) -> Docker {
    d.clone().with_timeout(SLOW_CALL)
}

fn err(d: &Docker) -> impl Fn(bollard::errors::Error) -> DockerError {
    let secs = d.timeout().as_secs();
    move |e| DockerError::from_bollard(e, secs)
}

/// The reference to pull: the address with `:latest` when it names neither
/// a tag nor a digest (an empty tag would make dockerd pull every tag).
pub fn pull_reference(address: &str) -> String {
    let last = address.rsplit('/').next().unwrap_or(address);
    if address.contains('@') || last.contains(':') {
        address.to_string()
    } else {
        format!("{address}:latest")
    }
}

/// Pulls `image` unless the node has it; `progress` sees each step.
pub async fn ensure_image(
    d: &Docker,
    image: &str,
    progress: &mut (dyn FnMut(&PullProgress) + Send),
) -> Result<(), DockerError> {
    match d.inspect_image(image).await {
        Ok(_) => return Ok(()),
        Err(e) if api_status(&e) == Some(404) => {}
        Err(e) => return Err(err(d)(e)),
    }
    let opts = CreateImageOptionsBuilder::new()
        .from_image(&pull_reference(image))
        .build();
    let mut tracker = PullTracker::default();
    let mut stream = d.create_image(Some(opts), None, None);
    while let Some(item) = stream.next().await {
        match item {
            Ok(info) => progress(&tracker.update(&info)),
            Err(bollard::errors::Error::DockerStreamError { error }) => {
                return Err(DockerError::Api(error));
            }
            Err(e) => return Err(err(d)(e)),
        }
    }
    Ok(())
}

fn body(spec: &ContainerSpec, with_quota: bool) -> ContainerCreateBody {
    let positive = |v: i64| (v > 0).then_some(v);
    let storage_opt = (with_quota && spec.disk_size_gb > 0)
        .then(|| HashMap::from([("size".to_string(), format!("{}G", spec.disk_size_gb))]));
    let data = spec.data_volume.iter().map(|v| Mount {
        typ: Some(MountType::VOLUME),
        source: Some(v.clone()),
        target: Some(DATA_MOUNT.into()),
        ..Default::default()
    });
    let read_only = spec.read_only.iter().map(|(v, at)| Mount {
        typ: Some(MountType::VOLUME),
        source: Some(v.clone()),
        target: Some(at.clone()),
        read_only: Some(true),
        volume_options: Some(MountVolumeOptions {
            no_copy: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    });
    let all: Vec<Mount> = data.chain(read_only).collect();
    let mounts = (!all.is_empty()).then_some(all);
    let device_requests = (!spec.gpu_device_ids.is_empty()).then(|| {
        vec![DeviceRequest {
            driver: Some("nvidia".into()),
            device_ids: Some(spec.gpu_device_ids.clone()),
            capabilities: Some(vec![vec!["gpu".into()]]),
            ..Default::default()
        }]
    });
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        labels: Some(spec.labels.clone()),
        // Like `docker run -dit`: a shell image stays up.
        tty: Some(true),
        open_stdin: Some(true),
        host_config: Some(HostConfig {
            nano_cpus: positive(spec.nano_cpus),
            memory: positive(spec.memory_bytes),
            memory_swap: positive(spec.memory_bytes),
            storage_opt,
            mounts,
            device_requests,
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                maximum_retry_count: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Creates the container, retrying without the disk quota when dockerd
/// cannot enforce one. A name in use is `NameTaken`.
async fn create(d: &Docker, spec: &ContainerSpec) -> Result<Created, CreateError> {
    create_once(d, spec).await.map_err(|e| match e {
        bollard::errors::Error::DockerResponseServerError {
            status_code: 409, ..
        } => CreateError::NameTaken {
            kind: "container",
            name: spec.name.clone(),
        },
        e => CreateError::Docker(err(d)(e)),
    })
}

async fn create_once(d: &Docker, spec: &ContainerSpec) -> Result<Created, bollard::errors::Error> {
    let opts = || {
        Some(
            CreateContainerOptionsBuilder::new()
                .name(&spec.name)
                .build(),
        )
    };
    let first = slow(d).create_container(opts(), body(spec, true)).await;
    match first {
        Ok(r) => Ok(Created {
            id: r.id,
            disk_quota: if spec.disk_size_gb > 0 {
                DiskQuota::Applied
            } else {
                DiskQuota::NotAsked
            },
            state: None,
        }),
        Err(bollard::errors::Error::DockerResponseServerError { message, .. })
            if message.contains(STORAGE_OPT_UNSUPPORTED) =>
        {
            let r = slow(d).create_container(opts(), body(spec, false)).await?;
            Ok(Created {
                id: r.id,
                disk_quota: DiskQuota::Unsupported(message.trim().to_string()),
                state: None,
            })
        }
        Err(e) => Err(e),
    }
}

/// `fut`, unless `cancel` comes first.
async fn or_cancel<T>(
    cancel: &CancellationToken,
    fut: impl std::future::Future<Output = T>,
) -> Result<T, CreateError> {
    tokio::select! {
        biased;
        _ = cancel.cancelled() => Err(CreateError::Cancelled),
        r = fut => Ok(r),
    }
}

/// Whether a container or volume named `name` exists.
async fn exists(d: &Docker, kind: &'static str, name: &str) -> Result<bool, DockerError> {
    let found = match kind {
        "volume" => d.inspect_volume(name).await.map(|_| ()),
        _ => d.inspect_container(name, None).await.map(|_| ()),
    };
    match found {
        Ok(()) => Ok(true),
        Err(e) if api_status(&e) == Some(404) => Ok(false),
        Err(e) => Err(err(d)(e)),
    }
}

/// Refuses names in use: an existing volume would be handed back by
/// dockerd as if new, and neither it nor a container of the name is ours.
/// The read-only volumes must exist (dockerd would make an empty one).
async fn names_free(d: &Docker, spec: &ContainerSpec) -> Result<(), CreateError> {
    for (v, _) in &spec.read_only {
        if !exists(d, "volume", v).await.map_err(CreateError::Docker)? {
            return Err(CreateError::Docker(DockerError::Api(format!(
                "the volume {v} is not on the node (a dataset's volume was removed behind gpudock's back)"
            ))));
        }
    }
    let volume = spec.data_volume.iter().map(|v| ("volume", v.as_str()));
    for (kind, name) in std::iter::once(("container", spec.name.as_str())).chain(volume) {
        if exists(d, kind, name).await.map_err(CreateError::Docker)? {
            return Err(CreateError::NameTaken {
                kind,
                name: name.to_string(),
            });
        }
    }
    Ok(())
}

/// What a creation made (or may have made, when a call was cut short): only
/// this is removed when it fails.
#[derive(Debug, Default)]
struct Made {
    volume: bool,
    container: bool,
}

/// Pulls the image if needed, creates the data volume and the container,
/// starts it and reads its state, unless `cancel` comes first. Names in use are refused; on
/// failure or cancellation, whatever this call made is removed.
pub async fn create_and_start(
    d: &Docker,
    spec: &ContainerSpec,
    cancel: &CancellationToken,
    progress: &mut (dyn FnMut(Step<'_>) + Send),
) -> Result<Created, CreateError> {
    progress(Step::Image);
    or_cancel(
        cancel,
        ensure_image(d, &spec.image, &mut |p| progress(Step::Pull(p))),
    )
    .await?
    .map_err(|source| CreateError::Pull {
        image: spec.image.clone(),
        source,
    })?;
    or_cancel(cancel, names_free(d, spec)).await??;
    let mut made = Made::default();
    let result = make(d, spec, cancel, &mut made, progress).await;
    if result.is_err() {
        undo(d, spec, &made).await;
    }
    result
}

/// The steps after the checks, noting in `made` what exists (or may) before
/// each call that makes something.
async fn make(
    d: &Docker,
    spec: &ContainerSpec,
    cancel: &CancellationToken,
    made: &mut Made,
    progress: &mut (dyn FnMut(Step<'_>) + Send),
) -> Result<Created, CreateError> {
    if let Some(v) = &spec.data_volume {
        progress(Step::Volume);
        let req = VolumeCreateRequest {
            name: Some(v.clone()),
            labels: Some(spec.labels.clone()),
            ..Default::default()
        };
        made.volume = true;
        or_cancel(cancel, d.create_volume(req))
            .await?
            .map_err(|e| CreateError::Docker(err(d)(e)))?;
    }
    progress(Step::Container);
    made.container = true;
    let mut created = match or_cancel(cancel, create(d, spec)).await? {
        Ok(c) => c,
        Err(e @ CreateError::NameTaken { .. }) => {
            // Made by someone else meanwhile: not ours to remove.
            made.container = false;
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    progress(Step::Start);
    if let Err(e) = or_cancel(cancel, slow(d).start_container(&created.id, None)).await? {
        let e = err(d)(e);
        return Err(match &e {
            DockerError::Api(m) if m.contains(NO_GPU_DRIVER) => {
                CreateError::NoGpuRuntime(m.clone())
            }
            _ => CreateError::Docker(e),
        });
    }
    created.state = or_cancel(cancel, state(d, &created.id))
        .await?
        .map_err(CreateError::Docker)?;
    Ok(created)
}

/// A step of [`create_and_start`], for progress display.
#[derive(Debug, Clone, Copy)]
pub enum Step<'a> {
    Image,
    Pull(&'a PullProgress),
    Volume,
    Container,
    Start,
}

/// Best-effort removal of what a failed creation made, within
/// [`UNDO_WITHIN`]; a failure is logged (the reconciler reports a container
/// left behind).
async fn undo(d: &Docker, spec: &ContainerSpec, made: &Made) {
    let container = made.container.then_some(spec.name.as_str());
    let volume = spec.data_volume.as_deref().filter(|_| made.volume);
    let work = async {
        if let Some(c) = container {
            remove(d, c, None).await?;
        }
        match volume {
            Some(v) => remove_volume(d, v).await,
            None => Ok(()),
        }
    };
    match tokio::time::timeout(UNDO_WITHIN, work).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => log::error!("cleaning up {} after a failed creation: {e}", spec.name),
        Err(_) => log::error!(
            "cleaning up {} after a failed creation took over {UNDO_WITHIN:?}; left for the reconciler",
            spec.name
        ),
    }
}

/// Removes the volume; its absence is no error.
pub async fn remove_volume(d: &Docker, v: &str) -> Result<(), DockerError> {
    match d.remove_volume(v, None::<RemoveVolumeOptions>).await {
        Ok(()) => Ok(()),
        Err(e) if api_status(&e) == Some(404) => Ok(()),
        Err(e) => Err(err(d)(e)),
    }
}

/// Removes the container (forcibly) and its volume; either being absent
/// already is no error.
pub async fn remove(d: &Docker, container: &str, volume: Option<&str>) -> Result<(), DockerError> {
    let opts = RemoveContainerOptionsBuilder::new()
        .force(true)
        .v(true)
        .build();
    match slow(d).remove_container(container, Some(opts)).await {
        Ok(()) => {}
        Err(e) if api_status(&e) == Some(404) => {}
        Err(e) => return Err(err(d)(e)),
    }
    match volume {
        Some(v) => remove_volume(d, v).await,
        None => Ok(()),
    }
}

pub async fn start(d: &Docker, id: &str) -> Result<(), DockerError> {
    match slow(d).start_container(id, None).await {
        // 304: already running.
        Err(e) if api_status(&e) != Some(304) => Err(err(d)(e)),
        _ => Ok(()),
    }
}

pub async fn stop(d: &Docker, id: &str, grace_secs: i32) -> Result<(), DockerError> {
    let opts = StopContainerOptionsBuilder::new().t(grace_secs).build();
    match slow(d).stop_container(id, Some(opts)).await {
        // 304: already stopped.
        Err(e) if api_status(&e) != Some(304) => Err(err(d)(e)),
        _ => Ok(()),
    }
}

pub async fn restart(d: &Docker, id: &str, grace_secs: i32) -> Result<(), DockerError> {
    let opts = RestartContainerOptionsBuilder::new().t(grace_secs).build();
    slow(d)
        .restart_container(id, Some(opts))
        .await
        .map_err(err(d))
}

/// The container's state (`running`, `exited`, ...), `None` when it does not
/// exist.
pub async fn state(d: &Docker, id: &str) -> Result<Option<String>, DockerError> {
    match d.inspect_container(id, None).await {
        Ok(c) => Ok(Some(
            c.state
                .and_then(|s| s.status)
                .map_or_else(|| "unknown".to_string(), |s| s.to_string()),
        )),
        Err(e) if api_status(&e) == Some(404) => Ok(None),
        Err(e) => Err(err(d)(e)),
    }
}

/// What Docker says of a container after it stopped or restarted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExitFacts {
    pub exit_code: i64,
    /// The kernel killed it for lack of memory.
    pub oom_killed: bool,
    /// How often Docker restarted it (its restart policy).
    pub restarts: i64,
}

/// The exit facts of a container (`None`: it is gone).
pub async fn exit_facts(d: &Docker, id: &str) -> Result<Option<ExitFacts>, DockerError> {
    match d.inspect_container(id, None).await {
        Ok(c) => {
            let st = c.state.unwrap_or_default();
            Ok(Some(ExitFacts {
                exit_code: st.exit_code.unwrap_or(0),
                oom_killed: st.oom_killed.unwrap_or(false),
                restarts: c.restart_count.unwrap_or(0),
            }))
        }
        Err(e) if api_status(&e) == Some(404) => Ok(None),
        Err(e) => Err(err(d)(e)),
    }
}

/// Creates a named volume with `labels`; a volume of that name already
/// there is refused (dockerd would hand it back as if new).
pub async fn create_volume(
    d: &Docker,
    name: &str,
    labels: &HashMap<String, String>,
) -> Result<(), CreateError> {
    if exists(d, "volume", name)
        .await
        .map_err(CreateError::Docker)?
    {
        return Err(CreateError::NameTaken {
            kind: "volume",
            name: name.to_string(),
        });
    }
    let req = VolumeCreateRequest {
        name: Some(name.to_string()),
        labels: Some(labels.clone()),
        ..Default::default()
    };
    d.create_volume(req)
        .await
        .map(|_| ())
        .map_err(|e| CreateError::Docker(err(d)(e)))
}

/// Whether the node has volume `name`.
pub async fn volume_exists(d: &Docker, name: &str) -> Result<bool, DockerError> {
    exists(d, "volume", name).await
}

/// Whether the node has image `image`.
pub async fn has_image(d: &Docker, image: &str) -> Result<bool, DockerError> {
    match d.inspect_image(image).await {
        Ok(_) => Ok(true),
        Err(e) if api_status(&e) == Some(404) => Ok(false),
        Err(e) => Err(err(d)(e)),
    }
}

/// A container that only holds a volume for `docker exec`s to work in:
/// `sh` sleeping as PID 1, no network, little memory, root (to write any
/// file of the volume), no restart.
#[derive(Debug, Clone)]
pub struct Holder {
    pub name: String,
    pub image: String,
    pub labels: HashMap<String, String>,
    pub volume: String,
    pub mount: String,
}

/// The id of container `name` when it runs (`None`: absent or stopped).
pub async fn running_id(d: &Docker, name: &str) -> Result<Option<String>, DockerError> {
    match d.inspect_container(name, None).await {
        Ok(c) if c.state.as_ref().and_then(|s| s.running).unwrap_or(false) => Ok(c.id),
        Ok(_) => Ok(None),
        Err(e) if api_status(&e) == Some(404) => Ok(None),
        Err(e) => Err(err(d)(e)),
    }
}

/// The running holder `h` (made when missing, started when stopped): its id.
pub async fn ensure_holder(d: &Docker, h: &Holder) -> Result<String, DockerError> {
    for _ in 0..3 {
        match d.inspect_container(&h.name, None).await {
            Ok(c) => {
                let id = c.id.unwrap_or_default();
                let running = c.state.and_then(|s| s.running).unwrap_or(false);
                if !running {
                    start(d, &id).await?;
                }
                return Ok(id);
            }
            Err(e) if api_status(&e) == Some(404) => {}
            Err(e) => return Err(err(d)(e)),
        }
        let body = ContainerCreateBody {
            image: Some(h.image.clone()),
            labels: Some(h.labels.clone()),
            entrypoint: Some(vec!["/bin/sh".into(), "-c".into()]),
            cmd: Some(vec![
                "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done".into(),
            ]),
            user: Some("0:0".into()),
            working_dir: Some(h.mount.clone()),
            network_disabled: Some(true),
            host_config: Some(HostConfig {
                network_mode: Some("none".into()),
                memory: Some(256 << 20),
                mounts: Some(vec![Mount {
                    typ: Some(MountType::VOLUME),
                    source: Some(h.volume.clone()),
                    target: Some(h.mount.clone()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let opts = CreateContainerOptionsBuilder::new().name(&h.name).build();
        match slow(d).create_container(Some(opts), body).await {
            Ok(r) => {
                start(d, &r.id).await?;
                return Ok(r.id);
            }
            // Made meanwhile by another request: use that one.
            Err(e) if api_status(&e) == Some(409) => continue,
            Err(e) => return Err(err(d)(e)),
        }
    }
    Err(DockerError::Api(format!(
        "the container {} kept changing while it was being made",
        h.name
    )))
}

/// A container as listed, with its labels.
#[derive(Debug, Clone)]
pub struct Listed {
    pub id: String,
    pub name: String,
    pub state: String,
    pub labels: HashMap<String, String>,
}

/// Every container (running or not) carrying `label=value`.
pub async fn list_labelled(
    d: &Docker,
    label: &str,
    value: &str,
) -> Result<Vec<Listed>, DockerError> {
    let filters = HashMap::from([("label", vec![format!("{label}={value}")])]);
    let opts = ListContainersOptionsBuilder::new()
        .all(true)
        .filters(&filters)
        .build();
    let list = d.list_containers(Some(opts)).await.map_err(err(d))?;
    Ok(list
        .into_iter()
        .map(|c| Listed {
            id: c.id.unwrap_or_default(),
            name: c
                .names
                .and_then(|n| n.into_iter().next())
                .map(|n| n.trim_start_matches('/').to_string())
                .unwrap_or_default(),
            state: c.state.map(|s| s.to_string()).unwrap_or_default(),
            labels: c.labels.unwrap_or_default(),
        })
        .collect())
}

/// The processes running in the container (`docker top`), each as its
/// `ps` columns joined by spaces; none when it is not running or is gone.
pub async fn top(d: &Docker, id: &str) -> Result<Vec<String>, DockerError> {
    match d
        .top_processes(id, None::<bollard::query_parameters::TopOptions>)
        .await
    {
        Ok(t) => Ok(t
            .processes
            .unwrap_or_default()
            .into_iter()
            .map(|p| p.join(" "))
            .collect()),
        // 404: no such container; 409: not running.
        Err(e) if matches!(api_status(&e), Some(404) | Some(409)) => Ok(Vec::new()),
        Err(e) => Err(err(d)(e)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn pulls_name_a_tag() {
        assert_eq!(pull_reference("busybox"), "busybox:latest");
        assert_eq!(pull_reference("nvidia/cuda:12.4.0"), "nvidia/cuda:12.4.0");
        assert_eq!(
            pull_reference("127.0.0.1:5000/team/img"),
            "127.0.0.1:5000/team/img:latest"
        );
        assert_eq!(pull_reference("r.io/x@sha256:ab"), "r.io/x@sha256:ab");
    }

    #[test]
    fn the_body_carries_the_limits() {
        let spec = ContainerSpec {
            name: "n".into(),
            image: "i".into(),
            labels: HashMap::from([("k".into(), "v".into())]),
            nano_cpus: 2_000_000_000,
            memory_bytes: 1 << 30,
            disk_size_gb: 50,
            data_volume: Some("vol".into()),
            gpu_device_ids: vec!["2".into(), "3".into()],
            read_only: vec![("ds".into(), "/datasets/imagenet".into())],
        };
        let b = body(&spec, true);
        let h = b.host_config.clone().unwrap();
        assert_eq!(
            (h.nano_cpus, h.memory),
            (Some(2_000_000_000), Some(1 << 30))
        );
        assert_eq!(h.storage_opt.unwrap()["size"], "50G");
        let m = &h.mounts.as_ref().unwrap()[0];
        assert_eq!(
            (m.source.as_deref(), m.target.as_deref()),
            (Some("vol"), Some("/data"))
        );
        let ds = &h.mounts.as_ref().unwrap()[1];
        assert_eq!(
            (ds.source.as_deref(), ds.target.as_deref(), ds.read_only),
            (Some("ds"), Some("/datasets/imagenet"), Some(true))
        );
        let g = &h.device_requests.unwrap()[0];
        assert_eq!(
            g.device_ids.as_deref(),
            Some(&["2".to_string(), "3".to_string()][..])
        );
        assert_eq!(g.count, None, "device IDs, never a bare count");
        assert_eq!(b.tty, Some(true));
        assert!(
            body(&spec, false)
                .host_config
                .unwrap()
                .storage_opt
                .is_none()
        );
        let none = ContainerSpec {
            nano_cpus: 0,
            memory_bytes: 0,
            disk_size_gb: 0,
            data_volume: None,
            gpu_device_ids: vec![],
            read_only: vec![],
            ..spec
        };
        let h = body(&none, true).host_config.unwrap();
        assert!(h.nano_cpus.is_none() && h.memory.is_none() && h.storage_opt.is_none());
        assert!(h.mounts.is_none() && h.device_requests.is_none());
    }
}
