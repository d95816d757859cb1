//! A byte stream to a TCP port inside a container, reached as the
//! container's own processes reach it: `127.0.0.1:PORT` (or `[::1]:PORT`)
//! in the container's network namespace. Nothing is published and no
//! network is added: a port stays unreachable from every network, and an
//! app that listens on the container's loopback only (Jupyter's and
//! TensorBoard's default) is reached all the same.
//!
//! Two routes, the same stream:
//! * **namespace** (a daemon on this host, and this process may enter
//!   network namespaces: root, or CAP_SYS_ADMIN + CAP_SYS_PTRACE): a thread
//!   enters the container's network namespace, connects, and leaves; the
//!   socket is an ordinary TCP connection inside the container, as fast as
//!   a direct one.
//! * **relay** (any daemon, local or remote over TLS): a small static
//!   program ([`RELAY`], built from `relay/gpudock-relay.rs`) is copied into
//!   the container once with the archive API and run by `docker exec`; its
//!   stdin and stdout carry the bytes over the Docker API. Slower (every
//!   byte passes dockerd), but it needs nothing on the node but dockerd.
//!
//! On the relay route, a caller that connects often to the same port (the
//! proxy: an app that closes its connection after each response costs a
//! connection per request) keeps a few **warm relays** ready
//! (`warm` in [`Connector::connect`]): started by `docker exec` ahead of need,
//! connected to nothing until one is taken (one byte on its stdin), so a
//! connection costs one round trip to the relay instead of an exec. A warm
//! relay carries its bytes in frames (see `relay/gpudock-relay.rs`, serve
//! mode), so that the end of a connection is told without ending the relay:
//! once both sides of its connection ended cleanly it goes back to its set
//! and serves the next one, and requests back to back cost no exec at all
//! (an exec costs dockerd and runc tens of milliseconds of CPU). They
//! are let go after [`WARM_FOR`] unused, at shutdown (their tasks are the
//! caller's, tracked), and die with their container.
//!
//! What costs a call to the daemon is remembered, so that a connection
//! (the proxy opens one per request to an app that does not keep its
//! connections alive) is a socket and nothing more: the namespace of a
//! container entered once (its file held open; a connection it refuses
//! forgets it and asks the daemon again, so a stopped, restarted or deleted
//! container is never reached through a stale one), and the Docker client
//! of a node (for [`CLIENT_FOR`]); in a namespace in use, a few sockets
//! made ahead of need, so that a connection takes no thread (see
//! [`Netns`]). Nothing here decides who may connect:
//! callers check the user and the instance before every connection.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bollard::Docker;
use bytes::{Buf, Bytes};
use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::DockerError;
use super::exec::{self, ExecSpec, Output, OutputStream};

/// The relay program, statically linked for this build's target.
pub const RELAY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/gpudock-relay"));

/// Where the relay lives in a container: a name of its own per build.
fn relay_dir() -> &'static str {
    "/.gpudock"
}

fn relay_path() -> String {
    use sha2::Digest;
    let hash = hex::encode(sha2::Sha256::digest(RELAY));
    format!("{}/relay-{}", relay_dir(), &hash[..12])
}

/// How long a connection inside a namespace may take.
const CONNECT_IN: Duration = Duration::from_secs(5);
/// How long connecting (entering, or starting the relay) may take.
const CONNECT_WITHIN: Duration = Duration::from_secs(15);
/// How long a node's Docker client is used again before it is made anew
/// (an endpoint edited by an admin is taken within this time).
pub const CLIENT_FOR: Duration = Duration::from_secs(30);
/// How many warm relays are kept ready per container port.
const WARM: usize = 4;
/// How many may be ready at most (relays back from their connections
/// beyond this are let go).
const WARM_MAX: usize = 2 * WARM;
/// How long handing a finished warm relay back may take.
const BACK_WITHIN: Duration = Duration::from_secs(2);
/// The most of an app's answer read away to keep its relay (see
/// `Connector::take_back`).
const DRAIN_MAX: usize = 1 << 20;
/// The most bytes of one frame to a warm relay.
const FRAME_MAX: usize = 256 * 1024;
/// How long a warm relay waits unused before it is let go.
pub const WARM_FOR: Duration = Duration::from_secs(60);
/// The most namespaces held open; past it they are all let go.
const ENTERED_MAX: usize = 4096;
/// Sockets made ahead of need in a namespace in use (see [`Netns`]); a
/// thread makes more when one or none is left.
const SPARE: usize = 4;
/// The most spare sockets held in all namespaces together (file
/// descriptors: a service's default limit is 1024).
const SPARES_MAX: usize = 64;

/// Why a port could not be reached; the text is meant for the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    /// Nothing accepts connections on that port in the container.
    #[error("nothing listens on port {port} in the instance ({detail})")]
    NotListening { port: u16, detail: String },
    /// The container is not running.
    #[error("the instance is not running")]
    NotRunning,
    /// The relay cannot run in this container (another CPU architecture,
    /// a read-only root filesystem).
    #[error("{0}")]
    Unsupported(String),
    #[error(transparent)]
    Docker(#[from] DockerError),
}

/// Which route reached the port (for logs and benchmarks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Namespace,
    Relay,
}

/// What the connector remembers between connections: the containers that
/// already hold this build's relay, whether entering namespaces was
/// refused here (it is not tried again), the namespaces entered (by the
/// caller's key of a container), and nodes' Docker clients.
#[derive(Default, Clone)]
pub struct Connector {
    placed: Arc<Mutex<HashSet<String>>>,
    no_namespaces: Arc<AtomicBool>,
    entered: Arc<Mutex<HashMap<String, Arc<Netns>>>>,
    /// Spare sockets held in all entered namespaces (at most [`SPARES_MAX`]).
    spares: Arc<AtomicUsize>,
    clients: Arc<Mutex<HashMap<i64, KeptClient>>>,
    warm: Arc<Mutex<HashMap<String, WarmSet>>>,
    warm_ids: Arc<std::sync::atomic::AtomicU64>,
}

/// The warm relays of one container port: ready ones (by id) and how many
/// are being started.
#[derive(Default)]
struct WarmSet {
    ready: Vec<(u64, RelayStream)>,
    starting: usize,
    /// Taken for a connection, and may come back (see [`Home`]).
    out: usize,
}

/// Who owns the tasks that keep warm relays: the tracker they run on
/// (shutdown joins them), and the stop signal they obey.
#[derive(Clone)]
pub struct Keeper {
    pub tasks: tokio_util::task::TaskTracker,
    pub stop: tokio_util::sync::CancellationToken,
}

/// A node's Docker client, whether its daemon is on this host, and when
/// it was made.
type KeptClient = (Docker, bool, Instant);

/// A connection to a port in a container.
pub struct PortStream {
    inner: Inner,
    route: Route,
}

enum Inner {
    Tcp(TcpStream),
    Relay(RelayStream),
}

impl PortStream {
    pub fn route(&self) -> Route {
        self.route
    }
}

impl Connector {
    /// The Docker client of node `node` made less than [`CLIENT_FOR`] ago,
    /// and whether the daemon is on this host.
    pub fn client(&self, node: i64) -> Option<(Docker, bool)> {
        let c = self.clients.lock().ok()?;
        c.get(&node)
            .filter(|(_, _, at)| at.elapsed() < CLIENT_FOR)
            .map(|(d, local, _)| (d.clone(), *local))
    }

    /// Keeps node `node`'s client for [`Connector::client`].
    pub fn keep_client(&self, node: i64, d: &Docker, local: bool) {
        if let Ok(mut c) = self.clients.lock() {
            c.insert(node, (d.clone(), local, Instant::now()));
        }
    }

    /// Forgets node `node`'s client (a call through it failed).
    pub fn forget_client(&self, node: i64) {
        if let Ok(mut c) = self.clients.lock() {
            c.remove(&node);
        }
    }

    /// Connects to `port` through the namespace entered before for `key`,
    /// without a call to the daemon: on a spare socket made in it before
    /// (one call, on this thread), else from a thread that enters it. None:
    /// none is known, or it refused (then it is forgotten: the caller takes
    /// [`Connector::connect`]).
    pub async fn connect_known(&self, key: &str, port: u16) -> Option<PortStream> {
        let ns = self.entered.lock().ok()?.get(key).cloned()?;
        let spare = ns.take_spare();
        ns.fill();
        if let Some(sock) = spare {
            let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            if let Ok(Ok(s)) = tokio::time::timeout(CONNECT_IN, sock.connect(v4)).await {
                let _ = s.set_nodelay(true);
                return Some(PortStream {
                    inner: Inner::Tcp(s),
                    route: Route::Namespace,
                });
            }
            // Refused on IPv4: the thread tries IPv6 too.
        }
        match connect_on_thread(ns.file.clone(), port).await {
            Ok(s) => Some(PortStream {
                inner: Inner::Tcp(s),
                route: Route::Namespace,
            }),
            Err(_) => {
                if let Ok(mut e) = self.entered.lock() {
                    e.remove(key);
                }
                None
            }
        }
    }

    /// Connects to `port` in `container` on `d`. `local`: the daemon runs on
    /// this host (a unix socket), so its containers' namespaces are this
    /// host's. `tag` marks the relay's process like a session's (see
    /// [`exec::end_tagged`]). `key` names the container for
    /// [`Connector::connect_known`]. With `warm`, on the relay route a warm
    /// relay kept for `key`'s `port` is used when one is ready, and warm
    /// relays are started (in the keeper's tasks) for the next connections.
    #[allow(clippy::too_many_arguments)]
    pub async fn connect(
        &self,
        d: &Docker,
        container: &str,
        key: &str,
        port: u16,
        local: bool,
        tag: &str,
        warm: Option<Keeper>,
    ) -> Result<PortStream, PortError> {
        if local && !self.no_namespaces.load(Ordering::Relaxed) {
            match tokio::time::timeout(CONNECT_WITHIN, enter(d, container, port)).await {
                Ok(Ok((s, ns))) => {
                    if let Ok(mut e) = self.entered.lock() {
                        if e.len() >= ENTERED_MAX {
                            e.clear();
                        }
                        e.insert(key.to_string(), Arc::new(Netns::new(ns, &self.spares)));
                    }
                    return Ok(PortStream {
                        inner: Inner::Tcp(s),
                        route: Route::Namespace,
                    });
                }
                Ok(Err(Entered::Denied(why))) => {
                    log::warn!(
                        "cannot enter containers' network namespaces ({why}); instance ports are \
                         reached through a relay over the Docker API instead (slower; see README, \
                         \"Reaching services inside instances\")"
                    );
                    self.no_namespaces.store(true, Ordering::Relaxed);
                }
                Ok(Err(Entered::Failed(e))) => return Err(e),
                Err(_) => return Err(DockerError::Timeout(CONNECT_WITHIN.as_secs()).into()),
            }
        }
        let relayed = |r: RelayStream| PortStream {
            inner: Inner::Relay(r),
            route: Route::Relay,
        };
        if let Some(keeper) = warm {
            let wkey = format!("{key}:{port}");
            let taken = self.warm.lock().ok().and_then(|mut w| {
                let set = w.get_mut(&wkey)?;
                let (_, r) = set.ready.pop()?;
                set.out += 1;
                Some(r)
            });
            self.refill(d, container, &wkey, port, tag, keeper.clone());
            if let Some(mut r) = taken {
                // Counted out from here on: `home` counts it back.
                let home = Home {
                    connector: self.clone(),
                    wkey,
                    keeper,
                };
                match tokio::time::timeout(CONNECT_WITHIN, r.go(port)).await {
                    Ok(Ok(())) => {
                        if let Some(f) = &mut r.framed {
                            f.home = Some(home);
                        }
                        return Ok(relayed(r));
                    }
                    Ok(Err(e @ PortError::NotListening { .. })) => return Err(e),
                    // Gone with its container, or stuck: a relay of its own.
                    Ok(Err(e)) => log::debug!("a warm relay failed: {e}"),
                    Err(_) => log::debug!("a warm relay did not answer"),
                }
            }
        }
        let relay = tokio::time::timeout(CONNECT_WITHIN, self.relay(d, container, port, tag));
        match relay.await {
            Ok(r) => r.map(relayed),
            Err(_) => Err(DockerError::Timeout(CONNECT_WITHIN.as_secs()).into()),
        }
    }

    /// Starts warm relays for `wkey` up to [`WARM`], each in a task of
    /// `keeper`'s that lets it go after [`WARM_FOR`] or at the stop.
    fn refill(
        &self,
        d: &Docker,
        container: &str,
        wkey: &str,
        port: u16,
        tag: &str,
        keeper: Keeper,
    ) {
        let need = match self.warm.lock() {
            Ok(mut w) => {
                let set = w.entry(wkey.to_string()).or_default();
                // Relays out for a connection come back when it ends (back
                // to back requests need no new ones); one at least is
                // started when none is ready or starting.
                let have = set.ready.len() + set.starting;
                let need = WARM
                    .saturating_sub(have + set.out)
                    .max(usize::from(have == 0));
                set.starting += need;
                need
            }
            Err(_) => 0,
        };
        for _ in 0..need {
            let (this, d, container, wkey, tag) = (
                self.clone(),
                d.clone(),
                container.to_string(),
                wkey.to_string(),
                tag.to_string(),
            );
            let stop = keeper.stop.clone();
            keeper.tasks.spawn(async move {
                let start = tokio::time::timeout(
                    CONNECT_WITHIN,
                    this.relay_exec(&d, &container, port, &tag, true),
                );
                let started = tokio::select! {
                    r = start => r.ok().and_then(Result::ok),
                    () = stop.cancelled() => None,
                };
                let id = this.warm_ids.fetch_add(1, Ordering::Relaxed);
                let kept = started.is_some();
                if let Ok(mut w) = this.warm.lock()
                    && let Some(set) = w.get_mut(&wkey)
                {
                    set.starting = set.starting.saturating_sub(1);
                    if let Some(r) = started {
                        set.ready.push((id, r));
                    }
                }
                this.keep(&wkey, id, kept, &stop).await;
            });
        }
    }

    /// Keeps ready relay `id` of `wkey` (if `kept`) until [`WARM_FOR`] or
    /// the stop, then lets it go if it is still unused.
    async fn keep(
        &self,
        wkey: &str,
        id: u64,
        kept: bool,
        stop: &tokio_util::sync::CancellationToken,
    ) {
        if kept {
            tokio::select! {
                () = tokio::time::sleep(WARM_FOR) => {}
                () = stop.cancelled() => {}
            }
        }
        // Unused: let go (its stdin ends, it exits).
        if let Ok(mut w) = self.warm.lock()
            && let Some(set) = w.get_mut(wkey)
        {
            set.ready.retain(|(i, _)| *i != id);
            if set.ready.is_empty() && set.starting == 0 && set.out == 0 {
                w.remove(wkey);
            }
        }
    }

    /// A warm relay whose connection ended cleanly: told that gpudock's
    /// side ended too (if it was not), and ready again in its set, unless
    /// the set is full or the server stops.
    fn take_back(home: Home, mut r: RelayStream) {
        let stop = home.keeper.stop.clone();
        let tasks = home.keeper.tasks.clone();
        tasks.spawn(async move {
            // gpudock's side ends; the app then closes (most do when their
            // input ends), and what it still sends is read away, within
            // limits: a relay that does not come back is let go.
            let ended = tokio::time::timeout(BACK_WITHIN, async {
                r.end_writes().await?;
                r.read_away(DRAIN_MAX).await
            })
            .await;
            if !matches!(ended, Ok(Ok(true))) || stop.is_cancelled() {
                return;
            }
            r.reset();
            let this = home.connector.clone();
            let wkey = home.wkey.clone();
            let id = this.warm_ids.fetch_add(1, Ordering::Relaxed);
            let kept = match this.warm.lock() {
                Ok(mut w) => {
                    let set = w.entry(wkey.clone()).or_default();
                    if set.ready.len() < WARM_MAX {
                        set.ready.push((id, r));
                        true
                    } else {
                        false
                    }
                }
                Err(_) => false,
            };
            // Back (or let go): no longer out.
            drop(home);
            if kept {
                this.keep(&wkey, id, true, &stop).await;
            }
        });
    }

    async fn relay(
        &self,
        d: &Docker,
        container: &str,
        port: u16,
        tag: &str,
    ) -> Result<RelayStream, PortError> {
        let mut s = self.relay_exec(d, container, port, tag, false).await?;
        let first = s.first(port).await;
        if first.is_err() {
            // A relay that could not start is forgotten: placed again next time
            // (the container may have been recreated under the same id).
            if let Ok(mut p) = self.placed.lock() {
                p.remove(container);
            }
        }
        first.map(|()| s)
    }

    /// Places the relay if needed and starts it by `docker exec` (`wait`: a
    /// warm relay, connected to nothing until [`RelayStream::go`], in
    /// frames).
    async fn relay_exec(
        &self,
        d: &Docker,
        container: &str,
        port: u16,
        tag: &str,
        wait: bool,
    ) -> Result<RelayStream, PortError> {
        let placed = self.placed.lock().is_ok_and(|p| p.contains(container));
        if !placed {
            place_relay(d, container).await?;
            if let Ok(mut p) = self.placed.lock() {
                p.insert(container.to_string());
            }
        }
        let mut argv = vec![relay_path(), port.to_string()];
        if wait {
            argv.push("serve".into());
        }
        let spec = ExecSpec {
            argv,
            tty: false,
            term: None,
            size: None,
            tag: tag.to_string(),
        };
        let ex = exec::start(d, container, &spec)
            .await
            .map_err(|e| not_running_or(e, container))?;
        Ok(RelayStream {
            output: ex.output,
            input: ex.input,
            pending: Bytes::new(),
            framed: wait.then(Framing::default),
        })
    }
}

fn not_running_or(e: DockerError, container: &str) -> PortError {
    match &e {
        DockerError::Api(m) if m.starts_with("409") || m.contains("is not running") => {
            PortError::NotRunning
        }
        DockerError::Api(m) if m.starts_with("404") => {
            log::debug!("container {container} is gone: {m}");
            PortError::NotRunning
        }
        _ => PortError::Docker(e),
    }
}

/// Copies the relay into the container (a tar with one directory and one
/// executable), after checking that it can run there.
async fn place_relay(d: &Docker, container: &str) -> Result<(), PortError> {
    let info = d
        .info()
        .await
        .map_err(|e| DockerError::from_bollard(e, d.timeout().as_secs()))?;
    let arch = info.architecture.unwrap_or_default();
    let ours = std::env::consts::ARCH;
    if !arch.is_empty() && arch != ours && !(arch == "amd64" && ours == "x86_64") {
        return Err(PortError::Unsupported(format!(
            "the instance's node runs on {arch}, this gpudock on {ours}: its ports cannot be \
             reached through the relay"
        )));
    }
    let tar = relay_tar().map_err(|e| PortError::Unsupported(format!("packing the relay: {e}")))?;
    let opts = bollard::query_parameters::UploadToContainerOptionsBuilder::default()
        .path("/")
        .build();
    d.upload_to_container(container, Some(opts), bollard::body_full(tar.into()))
        .await
        .map_err(|e| match super::api_status(&e) {
            Some(404 | 409) => PortError::NotRunning,
            Some(403 | 500) => PortError::Unsupported(format!(
                "cannot place gpudock's relay in the instance (a read-only root filesystem?): {}",
                DockerError::from_bollard(e, d.timeout().as_secs())
            )),
            _ => PortError::Docker(DockerError::from_bollard(e, d.timeout().as_secs())),
        })
}

fn relay_tar() -> std::io::Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    let dir = relay_dir().trim_start_matches('/');
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o755);
    h.set_size(0);
    h.set_mtime(0);
    b.append_data(&mut h, format!("{dir}/"), std::io::empty())?;
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o755);
    h.set_size(RELAY.len() as u64);
    h.set_mtime(0);
    let file = relay_path();
    b.append_data(&mut h, file.trim_start_matches('/'), RELAY)?;
    b.into_inner()
}

/// Why entering a container's namespace did not give a connection.
enum Entered {
    /// This process may not enter namespaces: use the relay.
    Denied(String),
    Failed(PortError),
}

/// The container's PID while it runs.
async fn running_pid(d: &Docker, container: &str) -> Result<i64, PortError> {
    let c = d.inspect_container(container, None).await.map_err(|e| {
        if super::api_status(&e) == Some(404) {
            PortError::NotRunning
        } else {
            DockerError::from_bollard(e, d.timeout().as_secs()).into()
        }
    })?;
    let state = c.state.unwrap_or_default();
    match (state.running, state.pid) {
        (Some(true), Some(pid)) if pid > 0 => Ok(pid),
        _ => Err(PortError::NotRunning),
    }
}

/// Connects from inside the container's network namespace. The namespace
/// is held open by its file before the container is asked again whether
/// it still runs under that PID, so the socket cannot land in another
/// process's namespace.
/// Gives the connection and the namespace's file (kept open).
async fn enter(
    d: &Docker,
    container: &str,
    port: u16,
) -> Result<(TcpStream, Arc<std::fs::File>), Entered> {
    let pid = running_pid(d, container).await.map_err(Entered::Failed)?;
    let path = format!("/proc/{pid}/ns/net");
    let ns = match tokio::task::spawn_blocking(move || std::fs::File::open(path)).await {
        Ok(Ok(f)) => f,
        Ok(Err(e)) if is_denied(&e) => return Err(Entered::Denied(e.to_string())),
        Ok(Err(_)) => return Err(Entered::Failed(PortError::NotRunning)),
        Err(e) => return Err(Entered::Denied(e.to_string())),
    };
    if running_pid(d, container).await.map_err(Entered::Failed)? != pid {
        return Err(Entered::Failed(PortError::NotRunning));
    }
    let ns = Arc::new(ns);
    let s = connect_on_thread(ns.clone(), port).await?;
    Ok((s, ns))
}

/// Connects to `port` on the loopback of namespace `ns`, from a thread of
/// its own.
async fn connect_on_thread(ns: Arc<std::fs::File>, port: u16) -> Result<TcpStream, Entered> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    // A thread of its own: it changes namespace and ends (never a pool's).
    let spawned = std::thread::Builder::new()
        .name("gpudock-netns".into())
        .spawn(move || {
            let _ = tx.send(connect_in(&ns, port));
        });
    if let Err(e) = spawned {
        return Err(Entered::Failed(PortError::Unsupported(format!(
            "cannot start a thread: {e}"
        ))));
    }
    let std_stream = match rx.await {
        Ok(r) => r?,
        Err(_) => return Err(Entered::Denied("the namespace thread failed".into())),
    };
    std_stream
        .set_nonblocking(true)
        .and_then(|()| TcpStream::from_std(std_stream))
        .map_err(|e| Entered::Failed(PortError::Unsupported(format!("socket: {e}"))))
}

/// A container's network namespace entered before: its file, held open,
/// and a few IPv4 sockets made in it ahead of need by a thread that
/// entered it. A socket belongs to the namespace it was made in, so
/// connecting one is a connection inside the container, made without a
/// thread of its own (the proxy connects once per request to an app that
/// closes its connections). They go with the namespace when it is
/// forgotten (a refused connection, the container gone).
struct Netns {
    file: Arc<std::fs::File>,
    spare: Mutex<Vec<tokio::net::TcpSocket>>,
    filling: AtomicBool,
    /// The connector's count of spare sockets.
    spares: Arc<AtomicUsize>,
}

impl Netns {
    fn new(file: Arc<std::fs::File>, spares: &Arc<AtomicUsize>) -> Self {
        Self {
            file,
            spare: Mutex::new(Vec::new()),
            filling: AtomicBool::new(false),
            spares: spares.clone(),
        }
    }

    fn take_spare(&self) -> Option<tokio::net::TcpSocket> {
        let s = self.spare.lock().ok()?.pop();
        if s.is_some() {
            self.spares.fetch_sub(1, Ordering::Relaxed);
        }
        s
    }

    /// Makes spare sockets up to [`SPARE`] on a thread of its own, when one
    /// or none is left and none is being made (within [`SPARES_MAX`]).
    fn fill(self: &Arc<Self>) {
        let have = self.spare.lock().map_or(SPARE, |s| s.len());
        let room = SPARES_MAX.saturating_sub(self.spares.load(Ordering::Relaxed));
        let want = SPARE.saturating_sub(have).min(room);
        if have > 1 || want == 0 || self.filling.swap(true, Ordering::AcqRel) {
            return;
        }
        let ns = self.clone();
        let spawned = std::thread::Builder::new()
            .name("gpudock-netns".into())
            .spawn(move || {
                let made = sockets_in(&ns.file, want);
                if let Ok(mut s) = ns.spare.lock() {
                    ns.spares.fetch_add(made.len(), Ordering::Relaxed);
                    s.extend(made);
                }
                ns.filling.store(false, Ordering::Release);
            });
        if spawned.is_err() {
            self.filling.store(false, Ordering::Release);
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let left = self.spare.get_mut().map_or(0, |s| s.len());
        self.spares.fetch_sub(left, Ordering::Relaxed);
    }
}

/// On a thread of its own: enters namespace `ns` and makes `n` IPv4
/// sockets in it (none if it cannot enter).
fn sockets_in(ns: &std::fs::File, n: usize) -> Vec<tokio::net::TcpSocket> {
    if nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).is_err() {
        return Vec::new();
    }
    (0..n)
        .map_while(|_| tokio::net::TcpSocket::new_v4().ok())
        .collect()
}

fn is_denied(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::Unsupported
    ) || e.raw_os_error() == Some(1)
}

/// On a thread of its own: enters the namespace `ns` and connects to the
/// port on its loopback (IPv4, then IPv6).
fn connect_in(ns: &std::fs::File, port: u16) -> Result<std::net::TcpStream, Entered> {
    if let Err(e) = nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET) {
        return Err(Entered::Denied(format!("setns: {e}")));
    }
    let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
    let s = std::net::TcpStream::connect_timeout(&v4, CONNECT_IN)
        .or_else(|e| std::net::TcpStream::connect_timeout(&v6, CONNECT_IN).map_err(|_| e))
        .map_err(|e| {
            Entered::Failed(PortError::NotListening {
                port,
                detail: e.to_string(),
            })
        })?;
    let _ = s.set_nodelay(true);
    Ok(s)
}

/// The relay's stdin and stdout as one stream.
struct RelayStream {
    output: OutputStream,
    input: Pin<Box<dyn AsyncWrite + Send>>,
    /// Output read but not yet handed out.
    pending: Bytes,
    /// A warm relay's frames (`None`: raw bytes both ways).
    framed: Option<Framing>,
}

/// Where a warm relay goes back to once its connection ended.
struct Home {
    connector: Connector,
    wkey: String,
    keeper: Keeper,
}

impl Drop for Home {
    /// The relay is back in its set, or let go: no longer out.
    fn drop(&mut self) {
        if let Ok(mut w) = self.connector.warm.lock()
            && let Some(set) = w.get_mut(&self.wkey)
        {
            set.out = set.out.saturating_sub(1);
            if set.ready.is_empty() && set.starting == 0 && set.out == 0 {
                w.remove(&self.wkey);
            }
        }
    }
}

/// The state of a warm relay's frames (see `relay/gpudock-relay.rs`).
#[derive(Default)]
struct Framing {
    /// Bytes of the frame being read still to come; `None`: a length next.
    left: Option<usize>,
    /// The length being read (up to 4 bytes, as they come).
    len: Vec<u8>,
    /// The relay's empty frame came: the app closed.
    read_done: bool,
    /// Frames written in part: the rest goes first.
    out: bytes::BytesMut,
    /// gpudock's empty frame is in `out` (or sent).
    write_done: bool,
    /// Something failed: the relay is not used again.
    broken: bool,
    home: Option<Home>,
}

impl Drop for RelayStream {
    fn drop(&mut self) {
        let Some(f) = &mut self.framed else { return };
        // A relay taken for a connection and not broken may serve again
        // (see `Connector::take_back`); any other is let go: its stdin
        // ends and it exits.
        if f.broken {
            return;
        }
        let Some(home) = f.home.take() else { return };
        // Spawning needs the runtime (gone at the very end of shutdown).
        if home.keeper.stop.is_cancelled() || tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let r = RelayStream {
            output: std::mem::replace(&mut self.output, Box::pin(futures_util::stream::empty())),
            input: std::mem::replace(&mut self.input, Box::pin(tokio::io::sink())),
            // The relay's empty frame may be here already, behind the last
            // bytes the app's client read.
            pending: std::mem::take(&mut self.pending),
            framed: self.framed.take(),
        };
        Connector::take_back(home, r);
    }
}

impl RelayStream {
    /// Tells a warm relay to connect, and waits for its answer.
    async fn go(&mut self, port: u16) -> Result<(), PortError> {
        use tokio::io::AsyncWriteExt;
        let sent = self.input.write_all(&[1]).await;
        if let Err(e) = sent.and(self.input.flush().await) {
            return Err(DockerError::Api(format!("the warm relay is gone: {e}")).into());
        }
        self.first(port).await
    }

    /// Sends what is left of gpudock's frames and its empty frame.
    async fn end_writes(&mut self) -> std::io::Result<()> {
        use tokio::io::AsyncWriteExt;
        futures_util::future::poll_fn(|cx| Pin::new(&mut *self).poll_shutdown(cx)).await?;
        self.input.flush().await
    }

    /// Reads the rest of the app's bytes away until the relay's empty frame
    /// (true), the end of the relay, or more than `max` bytes (false).
    async fn read_away(&mut self, max: usize) -> std::io::Result<bool> {
        use tokio::io::AsyncReadExt;
        let mut scratch = vec![0u8; 16 * 1024];
        let mut read = 0;
        loop {
            if self.framed.as_ref().is_some_and(|f| f.read_done) {
                return Ok(true);
            }
            let n = self.read(&mut scratch).await?;
            read += n;
            let done = self.framed.as_ref().is_some_and(|f| f.read_done);
            if read > max || (n == 0 && !done) {
                return Ok(false);
            }
        }
    }

    /// Ready for the next connection.
    fn reset(&mut self) {
        if let Some(f) = &mut self.framed {
            *f = Framing::default();
        }
        self.pending = Bytes::new();
    }

    /// Writes out `framed.out` (what was framed but not yet sent).
    fn poll_out(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let Some(f) = &mut self.framed else {
            return Poll::Ready(Ok(()));
        };
        while !f.out.is_empty() {
            match ready!(self.input.as_mut().poll_write(cx, &f.out)) {
                Ok(0) => {
                    f.broken = true;
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
                }
                Ok(n) => f.out.advance(n),
                Err(e) => {
                    f.broken = true;
                    return Poll::Ready(Err(e));
                }
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Waits for the relay's first word: 0x00 on stdout (connected), or a
    /// line on stderr (why not).
    async fn first(&mut self, port: u16) -> Result<(), PortError> {
        let mut said = String::new();
        while let Some(item) = self.output.next().await {
            match item? {
                Output::Stdout(b) if b.first() == Some(&0) => {
                    self.pending = b.slice(1..);
                    return Ok(());
                }
                Output::Stdout(b) | Output::Stderr(b) => {
                    said.push_str(&String::from_utf8_lossy(&b));
                }
            }
        }
        let said = said.trim().to_string();
        Err(
            if said.contains("Connection refused") || said.contains("connect to port") {
                PortError::NotListening {
                    port,
                    detail: said.rsplit(": ").next().unwrap_or("refused").to_string(),
                }
            } else if said.contains("exec format error") {
                PortError::Unsupported(
                    "gpudock's relay cannot run in this instance (another CPU architecture)".into(),
                )
            } else {
                PortError::Docker(DockerError::Api(format!(
                    "the relay in the instance did not start: {said}"
                )))
            },
        )
    }
}

impl AsyncRead for RelayStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            if let Some(f) = &mut this.framed {
                if f.read_done {
                    return Poll::Ready(Ok(()));
                }
                // A frame's length, then its bytes.
                match f.left {
                    None if !this.pending.is_empty() => {
                        let n = (4 - f.len.len()).min(this.pending.len());
                        f.len.extend_from_slice(&this.pending[..n]);
                        this.pending.advance(n);
                        if let Ok(len) = <[u8; 4]>::try_from(&f.len[..]) {
                            f.len.clear();
                            match u32::from_be_bytes(len) as usize {
                                0 => f.read_done = true,
                                n => f.left = Some(n),
                            }
                        }
                        continue;
                    }
                    Some(left) if !this.pending.is_empty() => {
                        let n = left.min(this.pending.len()).min(buf.remaining());
                        buf.put_slice(&this.pending[..n]);
                        this.pending.advance(n);
                        f.left = Some(left - n).filter(|l| *l > 0);
                        return Poll::Ready(Ok(()));
                    }
                    _ => {}
                }
            } else if !this.pending.is_empty() {
                let n = this.pending.len().min(buf.remaining());
                buf.put_slice(&this.pending[..n]);
                this.pending.advance(n);
                return Poll::Ready(Ok(()));
            }
            let next = ready!(this.output.poll_next_unpin(cx));
            if let (Some(f), false) = (&mut this.framed, matches!(next, Some(Ok(_)))) {
                f.broken = true;
            }
            match next {
                Some(Ok(Output::Stdout(b))) => this.pending = b,
                // The relay's complaints are not the app's bytes.
                Some(Ok(Output::Stderr(b))) => {
                    log::debug!("relay: {}", String::from_utf8_lossy(&b).trim());
                }
                Some(Err(e)) => return Poll::Ready(Err(std::io::Error::other(e))),
                None => return Poll::Ready(Ok(())),
            }
        }
    }
}

impl AsyncWrite for RelayStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        if this.framed.is_none() {
            return this.input.as_mut().poll_write(cx, buf);
        }
        // One frame at a time: the last is sent before the next is taken.
        ready!(this.poll_out(cx))?;
        let Some(f) = &mut this.framed else {
            return Poll::Ready(Ok(0));
        };
        if f.write_done {
            return Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into()));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let n = buf.len().min(FRAME_MAX);
        f.out.reserve(4 + n);
        f.out.extend_from_slice(&(n as u32).to_be_bytes());
        f.out.extend_from_slice(&buf[..n]);
        // Under way; a pending rest is written by the next call or flush.
        if let Poll::Ready(Err(e)) = this.poll_out(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        ready!(self.poll_out(cx))?;
        self.input.as_mut().poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let Some(f) = &mut this.framed else {
            return this.input.as_mut().poll_shutdown(cx);
        };
        // The relay stays: only this direction of its connection ends.
        if !f.write_done {
            f.write_done = true;
            f.out.extend_from_slice(&0u32.to_be_bytes());
        }
        ready!(this.poll_out(cx))?;
        this.input.as_mut().poll_flush(cx)
    }
}

impl AsyncRead for PortStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().inner {
            Inner::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Inner::Relay(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for PortStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match &mut self.get_mut().inner {
            Inner::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Inner::Relay(s) => Pin::new(s).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().inner {
            Inner::Tcp(s) => Pin::new(s).poll_flush(cx),
            Inner::Relay(s) => Pin::new(s).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().inner {
            Inner::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Inner::Relay(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn the_relay_is_a_static_executable_packed_with_its_directory() {
        assert_eq!(&RELAY[..4], b"\x7fELF");
        // No program interpreter: it runs in images without a libc.
        // (glibc's static code names ld-linux in strings: the program
        // headers tell, PT_INTERP = 3 must be absent.)
        let u16_at = |o: usize| usize::from(u16::from_le_bytes([RELAY[o], RELAY[o + 1]]));
        let phoff =
            usize::try_from(u64::from_le_bytes(RELAY[0x20..0x28].try_into().unwrap())).unwrap();
        let (size, count) = (u16_at(0x36), u16_at(0x38));
        assert!(count > 0);
        for i in 0..count {
            let at = phoff + i * size;
            let kind = u32::from_le_bytes(RELAY[at..at + 4].try_into().unwrap());
            assert_ne!(
                kind, 3,
                "the relay must be statically linked (no PT_INTERP)"
            );
        }
        let tar = relay_tar().unwrap();
        let mut a = tar::Archive::new(&tar[..]);
        let names: Vec<(String, u32)> = a
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    e.header().mode().unwrap(),
                )
            })
            .collect();
        assert_eq!(names[0], (".gpudock/".to_string(), 0o755));
        assert!(names[1].0.starts_with(".gpudock/relay-") && names[1].1 == 0o755);
    }
}
