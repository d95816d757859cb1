//! Files (文件传输): the files of an instance's container, or of a
//! dataset's volume, reached through the Docker API (see [`fs`]) by the
//! SFTP server of the jumpbox ([`sftp`]; scp speaks SFTP) and the web file
//! browser ([`api`], [`pages`], streaming in [`transfer`]). Every way in
//! asks the same permission records ([`crate::auth::Action::Files`]), and
//! every operation is logged in `file_operations` (who, what, the path,
//! the bytes that passed and their SHA-256, the SFTP session).

pub mod api;
pub mod fs;
pub mod model;
pub mod pages;
pub mod sftp;
pub mod store;
pub mod transfer;

use serde::Serialize;

use crate::app::App;
use crate::audit::Outcome;
use crate::auth::{Access, Action, CurrentUser, User};
pub use crate::auth::{FileOp, FileTarget};
use crate::error::{AppError, FieldError, FieldErrors};
use crate::ids::{InstanceId, NodeId, SessionId};
use crate::instances::InstanceStatus;
pub use fs::ContainerFs;
pub use model::{Entry, FsError, Kind};
pub use store::{Filter, Operation};

/// Where files are: an instance's container, or the transfer container
/// of a dataset (its volume mounted at `root`).
#[derive(Debug, Clone)]
pub struct Place {
    pub target: FileTarget,
    /// The instance's or the dataset's id.
    pub id: i64,
    pub name: String,
    pub node_id: NodeId,
    pub node_name: String,
    pub container: String,
    /// Where client paths are in the container: empty (as they are) for
    /// an instance, the volume's mount point for a dataset.
    pub root: String,
    /// Where a client starts: `/data` in an instance, `/` in a dataset.
    pub home: String,
    /// Whether this user may change files here (a member reads the
    /// tenant's datasets; only their owners change them).
    pub writable: bool,
}

impl Place {
    /// Where `path` (absolute, normalized) is in the container.
    pub fn in_container(&self, path: &str) -> String {
        model::in_container(&self.root, path)
    }

    /// How a failure reads for the user (paths as they see them).
    pub fn say(&self, e: &FsError) -> String {
        model::from_container(&self.root, &e.to_string())
    }

    fn kind(&self) -> &'static str {
        match self.target {
            FileTarget::Instance => "instance",
            FileTarget::Dataset => "dataset",
        }
    }
}

/// The files of instance `id`, if `me` reaches it and it runs.
pub async fn instance(app: &App, me: &CurrentUser, id: InstanceId) -> Result<Place, AppError> {
    let (i, n) = crate::instances::named(app, me, Some(id))
        .await?
        .pop()
        .ok_or(AppError::NotFound)?;
    let container = match (&i.container_id, i.last_known) {
        (Some(c), InstanceStatus::Running) => c.clone(),
        _ => return Err(not_running()),
    };
    Ok(Place {
        target: FileTarget::Instance,
        id: i.id.0,
        name: i.name,
        node_id: i.node_id,
        node_name: n.node,
        container,
        root: String::new(),
        home: "/data".into(),
        writable: true,
    })
}

/// The files of dataset `id`, if `me` may see it (its transfer container
/// is made when needed).
pub async fn dataset(app: &App, me: &CurrentUser, id: i64) -> Result<Place, AppError> {
    crate::datasets::files_place(app, me, id).await
}

pub fn not_running() -> AppError {
    AppError::Conflict(FieldErrors::from([(
        "status",
        FieldError::new("err.not_running"),
    )]))
}

/// Whether `op` changes files.
pub fn changes(op: FileOp) -> bool {
    match op {
        FileOp::List | FileOp::Download => false,
        FileOp::Upload | FileOp::Mkdir | FileOp::Delete | FileOp::Rename => true,
    }
}

/// Whether `user` may do `op` at `place`: the record of the operation
/// (the same for every way in), the account unchanged since sign-in, and
/// for a change, the right to change files there.
pub async fn authorize(app: &App, user: &User, place: &Place, op: FileOp) -> Result<(), AppError> {
    match crate::auth::check(app, user, Action::Files(place.target, op)).await? {
        Access::Allowed => {}
        Access::Revoked => return Err(AppError::Unauthenticated),
        Access::Denied => return Err(AppError::Forbidden),
    }
    if changes(op) && !place.writable {
        return Err(AppError::Forbidden);
    }
    Ok(())
}

/// A client of `place`'s node and its filesystem; the processes it starts
/// carry `tag`.
pub async fn open_fs(app: &App, place: &Place, tag: String) -> Result<ContainerFs, AppError> {
    let d = crate::nodes::client(app, place.node_id).await?;
    Ok(ContainerFs::new(d, place.container.clone(), tag))
}

/// A tag for the processes of one web transfer (`<install>-w<random>`).
pub fn web_tag(app: &App) -> String {
    let nonce: u32 = rand::random();
    format!("{}-w{nonce:08x}", app.install_id)
}

/// A failure as the web answers it.
pub fn app_error(place: &Place, e: FsError) -> AppError {
    let field = |key: &'static str, detail: Option<String>| {
        let err = match detail {
            Some(d) => FieldError::with_detail(key, d),
            None => FieldError::new(key),
        };
        AppError::Conflict(FieldErrors::from([("path", err)]))
    };
    let said = place.say(&e);
    match e {
        FsError::NotFound(_) => field("err.no_such_file", Some(said)),
        FsError::Denied(_) => field("err.file_denied", Some(said)),
        FsError::Exists(_) => field("err.file_exists", Some(said)),
        FsError::NoSpace(_) => field("err.disk_full", Some(said)),
        FsError::Failed(_) => field("err.file_failed", Some(said)),
        FsError::TooLarge => field("err.listing_too_large", None),
        FsError::NotRunning => not_running(),
        FsError::Node(d) => crate::error::docker_error(d),
    }
}

/// How a file operation came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Sftp,
    Web,
}

/// Who does file operations, from where, in which SFTP session.
#[derive(Debug, Clone)]
pub struct Doer {
    pub user: User,
    pub ip: String,
    pub via: Via,
    pub session: Option<SessionId>,
}

impl Doer {
    pub fn web(me: &CurrentUser, src: &crate::audit::Source) -> Self {
        Self {
            user: me.user.clone(),
            ip: src.ip.clone(),
            via: Via::Web,
            session: None,
        }
    }
}

/// One finished operation, for the log.
#[derive(Debug, Clone)]
pub struct Done {
    /// `upload`, `download`, `delete`, `rename`, `mkdir` or `symlink`.
    pub op: &'static str,
    pub path: String,
    pub new_path: Option<String>,
    /// Bytes that passed, and their SHA-256 (transfers only).
    pub transferred: Option<(u64, String)>,
    pub started: i64,
}

impl Done {
    pub fn new(op: &'static str, path: &str) -> Self {
        Self {
            op,
            path: path.to_string(),
            new_path: None,
            transferred: None,
            started: crate::db::now(),
        }
    }
}

/// Logs `done` with its outcome (an error: why). A failure to log is
/// logged, never the caller's failure.
pub async fn log(app: &App, doer: &Doer, place: &Place, done: Done, result: Result<(), String>) {
    if result.is_ok() && place.target == FileTarget::Dataset && done.op != "download" {
        crate::datasets::changed(app, place.id).await;
    }
    let (outcome, error) = match result {
        Ok(()) => (Outcome::Success, String::new()),
        Err(e) if e == DENIED => (Outcome::Denied, e),
        Err(e) => (Outcome::Failure, e),
    };
    let (size, sha256) = match done.transferred {
        Some((n, h)) => (Some(n as i64), Some(h)),
        None => (None, None),
    };
    let op = Operation {
        id: 0,
        user_id: doer.user.id.0,
        username: doer.user.username.clone(),
        tenant_id: doer.user.tenant_id.map(|t| t.0),
        via: match doer.via {
            Via::Sftp => "sftp",
            Via::Web => "web",
        }
        .into(),
        session_id: doer.session.map(|s| s.0),
        target_kind: place.kind().into(),
        target_id: place.id,
        target_name: place.name.clone(),
        node_id: place.node_id.0,
        operation: done.op.into(),
        path: done.path,
        new_path: done.new_path,
        size,
        sha256,
        outcome: outcome.as_str().into(),
        error,
        source_ip: doer.ip.clone(),
        started_at: done.started,
        ended_at: crate::db::now(),
    };
    let r = app
        .db
        .write(move |c| store::insert(c, &op).map_err(AppError::from))
        .await;
    if let Err(e) = r {
        log::error!("file operations log: {e}");
    }
}

/// The error text of a refusal by the permission records.
pub const DENIED: &str = "permission denied";

/// A folder's listing.
#[derive(Debug, Clone, Serialize)]
pub struct Listing {
    pub path: String,
    pub entries: Vec<Entry>,
}

/// A path from the web, checked (422 naming `field` otherwise).
pub fn checked_path(field: &'static str, path: &str) -> Result<String, AppError> {
    model::web_path(path).map_err(|why| AppError::field(field, why.key()))
}

/// The entries of folder `path`.
pub async fn list(
    app: &App,
    me: &CurrentUser,
    place: &Place,
    path: &str,
) -> Result<Listing, AppError> {
    let path = checked_path("path", path)?;
    authorize(app, &me.user, place, FileOp::List).await?;
    let fs = open_fs(app, place, web_tag(app)).await?;
    let entries = fs
        .list(&place.in_container(&path))
        .await
        .map_err(|e| app_error(place, e))?;
    Ok(Listing { path, entries })
}

/// Runs a logged change from the web: checked, authorized, done, logged.
async fn change<F, Fut>(
    app: &App,
    doer: &Doer,
    place: &Place,
    op: FileOp,
    done: Done,
    work: F,
) -> Result<(), AppError>
where
    F: FnOnce(ContainerFs) -> Fut,
    Fut: std::future::Future<Output = Result<(), FsError>>,
{
    if let Err(e) = authorize(app, &doer.user, place, op).await {
        if matches!(e, AppError::Forbidden) {
            log(app, doer, place, done, Err(DENIED.into())).await;
        }
        return Err(e);
    }
    let fs = open_fs(app, place, web_tag(app)).await?;
    match work(fs).await {
        Ok(()) => {
            log(app, doer, place, done, Ok(())).await;
            Ok(())
        }
        Err(e) => {
            log(app, doer, place, done, Err(place.say(&e))).await;
            Err(app_error(place, e))
        }
    }
}

/// A new folder `name` in `dir`.
pub async fn mkdir(
    app: &App,
    doer: &Doer,
    place: &Place,
    dir: &str,
    name: &str,
) -> Result<String, AppError> {
    let dir = checked_path("path", dir)?;
    if !model::valid_name(name) {
        return Err(AppError::field("name", "err.bad_file_name"));
    }
    let path = model::join(&dir, name);
    let at = place.in_container(&path);
    change(
        app,
        doer,
        place,
        FileOp::Mkdir,
        Done::new("mkdir", &path),
        |fs| async move { fs.mkdir(&at, None).await },
    )
    .await?;
    Ok(path)
}

/// Deletes `path` (a folder with everything in it only when `recursive`).
pub async fn delete(
    app: &App,
    doer: &Doer,
    place: &Place,
    path: &str,
    recursive: bool,
) -> Result<(), AppError> {
    let path = checked_path("path", path)?;
    if path == "/" {
        return Err(AppError::field("path", "err.path_root"));
    }
    let at = place.in_container(&path);
    change(
        app,
        doer,
        place,
        FileOp::Delete,
        Done::new("delete", &path),
        |fs| async move {
            match fs.stat(&at, false).await? {
                e if e.kind == Kind::Dir && recursive => fs.remove_all(&at).await,
                e if e.kind == Kind::Dir => fs.rmdir(&at).await,
                _ => fs.remove(&at).await,
            }
        },
    )
    .await
}

/// Renames (moves) `from` to `to`; an existing `to` is refused.
pub async fn rename(
    app: &App,
    doer: &Doer,
    place: &Place,
    from: &str,
    to: &str,
) -> Result<(), AppError> {
    let from = checked_path("from", from)?;
    let to = checked_path("to", to)?;
    let mut done = Done::new("rename", &from);
    done.new_path = Some(to.clone());
    let (a, b) = (place.in_container(&from), place.in_container(&to));
    change(app, doer, place, FileOp::Rename, done, |fs| async move {
        fs.rename(&a, &b, false).await
    })
    .await
}

/// The file operations log in `me`'s scope.
pub async fn operations(
    app: &App,
    me: &CurrentUser,
    f: Filter,
) -> Result<Vec<Operation>, AppError> {
    let scope = me.scope();
    app.db
        .read(move |c| store::list(c, scope, &f).map_err(AppError::from))
        .await
}
