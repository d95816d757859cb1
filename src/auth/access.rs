//! The one place that decides access, for every way in: the web guard asks
//! it for the matched route, the jumpbox (and later SFTP, tunnels and the
//! HTTPS proxy) for what it is about to do. Decisions read the permission
//! records; no service checks a role beside them. And the one place that
//! takes access away from what is already live: [`end_live_access`],
//! called by each change of an account that revokes access.

use rusqlite::Connection;

use super::model::{User, UserId};
use super::permissions::{self, Decision};
use super::store;
use crate::app::App;
use crate::error::AppError;
use crate::live::{ACCESS_REVOKED, Holder};

/// What a caller wants to do. Each action is one permission record, so the
/// matrix page shows and changes it; non-HTTP actions share the record of
/// the route that does the same on the web.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action<'a> {
    /// An HTTP route: the method (GET for HEAD) and the matched pattern.
    Route { method: &'a str, pattern: &'a str },
    /// A shell or a command in an instance: the web terminal's WebSocket,
    /// the jumpbox's shells and commands.
    Shell,
    /// A tunnel to a port of an instance through the jumpbox (`ssh -L`,
    /// `ssh -W`, `ssh -J`): no web route does it, so it has a record of
    /// its own that names no route.
    PortForward,
    /// A request through the HTTPS proxy to a web app in an instance: the
    /// record of the hand-off route that signs the browser in to the app.
    WebProxy,
    /// A file operation on an instance's or a dataset's files, by any way
    /// in (the web browser, SFTP, scp). Its own records, not the shell's:
    /// moving data and running commands are different powers (a role may
    /// be let to fill datasets and fetch results without shells, or to
    /// download but not upload), and each kind of operation is decided by
    /// the record of the web browser's API route that does it.
    Files(FileTarget, FileOp),
}

/// What a file operation works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileTarget {
    Instance,
    Dataset,
}

/// A kind of file operation (SFTP's stat and readlink are listing, its
/// setstat and symlink uploading).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileOp {
    List,
    Download,
    Upload,
    Mkdir,
    Delete,
    Rename,
}

impl FileOp {
    pub fn as_str(self) -> &'static str {
        match self {
            FileOp::List => "list",
            FileOp::Download => "download",
            FileOp::Upload => "upload",
            FileOp::Mkdir => "mkdir",
            FileOp::Delete => "delete",
            FileOp::Rename => "rename",
        }
    }
}

/// The record of [`Action::Shell`].
const SHELL: (&str, &str) = ("GET", "/instances/{id}/terminal/ws");
/// The record of [`Action::PortForward`].
const PORT_FORWARD: (&str, &str) = ("SSH", "port-forward");
/// The record of [`Action::WebProxy`].
const WEB_PROXY: (&str, &str) = ("GET", "/instances/{id}/web/{port}/open");

/// The record of [`Action::Files`]: the API route doing the same.
fn files_record(target: FileTarget, op: FileOp) -> (&'static str, &'static str) {
    use FileOp as O;
    use FileTarget as T;
    match (target, op) {
        (T::Instance, O::List) => ("GET", "/api/v1/instances/{id}/files"),
        (T::Instance, O::Download) => ("GET", "/api/v1/instances/{id}/files/download"),
        (T::Instance, O::Upload) => ("PUT", "/api/v1/instances/{id}/files/upload"),
        (T::Instance, O::Mkdir) => ("POST", "/api/v1/instances/{id}/files/mkdir"),
        (T::Instance, O::Delete) => ("POST", "/api/v1/instances/{id}/files/delete"),
        (T::Instance, O::Rename) => ("POST", "/api/v1/instances/{id}/files/rename"),
        (T::Dataset, O::List) => ("GET", "/api/v1/datasets/{id}/files"),
        (T::Dataset, O::Download) => ("GET", "/api/v1/datasets/{id}/files/download"),
        (T::Dataset, O::Upload) => ("PUT", "/api/v1/datasets/{id}/files/upload"),
        (T::Dataset, O::Mkdir) => ("POST", "/api/v1/datasets/{id}/files/mkdir"),
        (T::Dataset, O::Delete) => ("POST", "/api/v1/datasets/{id}/files/delete"),
        (T::Dataset, O::Rename) => ("POST", "/api/v1/datasets/{id}/files/rename"),
    }
}

impl<'a> Action<'a> {
    /// The (method, pattern) of the record that decides this action.
    pub fn record(self) -> (&'a str, &'a str) {
        match self {
            Action::Route { method, pattern } => (method, pattern),
            Action::Shell => SHELL,
            Action::PortForward => PORT_FORWARD,
            Action::WebProxy => WEB_PROXY,
            Action::Files(target, op) => files_record(target, op),
        }
    }

    /// How the audit names the action (`permission.denied`'s id).
    pub fn label(self) -> String {
        match self {
            Action::Route { method, pattern } => format!("{method} {pattern}"),
            Action::Shell => "shell".into(),
            Action::PortForward => "port_forward".into(),
            Action::WebProxy => "web_proxy".into(),
            Action::Files(target, op) => {
                let t = match target {
                    FileTarget::Instance => "instance",
                    FileTarget::Dataset => "dataset",
                };
                format!("files:{t}:{}", op.as_str())
            }
        }
    }
}

/// Whether `user`'s role holds the record of `action` (admins hold every
/// record; admin-only records no other role).
pub fn allowed(c: &Connection, user: &User, action: Action<'_>) -> rusqlite::Result<Decision> {
    let (method, pattern) = action.record();
    permissions::decide(c, user.role, method, pattern)
}

/// [`allowed`] as a yes or no, for services that decide what to show.
pub fn holds(c: &Connection, user: &User, action: Action<'_>) -> rusqlite::Result<bool> {
    Ok(allowed(c, user, action)? == Decision::Allow)
}

/// Whether `user` as it was read when it signed in is still the account of
/// now: the same access generation (no password, role or tenant change, no
/// disabling since) and usable (enabled, not locked, tenant enabled).
pub fn current(c: &Connection, user: &User, now: i64) -> rusqlite::Result<bool> {
    generation_current(c, user.id, user.session_epoch, now)
}

fn generation_current(c: &Connection, id: UserId, epoch: i64, now: i64) -> rusqlite::Result<bool> {
    match store::get_user(c, crate::ids::Scope::All, id)? {
        Some(u) => Ok(u.session_epoch == epoch && super::usable(c, &u, now)?),
        None => Ok(false),
    }
}

/// The answer for something about to start outside HTTP (a jumpbox shell).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Allowed,
    /// The account changed since it signed in, or is no longer usable.
    Revoked,
    /// The role does not hold the action's record.
    Denied,
}

/// [`current`] and [`allowed`] in one read, for a caller that signed in
/// earlier (the jumpbox when the shell starts).
pub async fn check(app: &App, user: &User, action: Action<'static>) -> Result<Access, AppError> {
    let (user, now) = (user.clone(), crate::db::now());
    app.db
        .read(move |c| {
            if !current(c, &user, now)? {
                return Ok(Access::Revoked);
            }
            Ok(match allowed(c, &user, action)? {
                Decision::Allow => Access::Allowed,
                Decision::Deny | Decision::NoRecord => Access::Denied,
            })
        })
        .await
}

/// A credential issued to user `id` at access generation `epoch` (a
/// sign-in to the HTTPS proxy), checked now on `c` (the caller reads more
/// in the same turn): the account as it is, when it is still that
/// generation and usable, with whether its role holds `action`.
pub fn resume_on(
    c: &Connection,
    id: UserId,
    epoch: i64,
    action: Action<'_>,
    now: i64,
) -> rusqlite::Result<Option<(User, Access)>> {
    let Some(u) = store::get_user(c, crate::ids::Scope::All, id)? else {
        return Ok(None);
    };
    if u.session_epoch != epoch || !super::usable(c, &u, now)? {
        return Ok(Some((u, Access::Revoked)));
    }
    let access = match allowed(c, &u, action)? {
        Decision::Allow => Access::Allowed,
        Decision::Deny | Decision::NoRecord => Access::Denied,
    };
    Ok(Some((u, access)))
}

/// Whether `token` may read the Prometheus scrape (`GET /metrics`, served
/// outside the session guard: no cookies, no sign-in page): a live token of
/// the `metrics` scope whose owner's account is usable and whose role holds
/// the route's record. The same rules as the guard's, for a token only.
pub async fn scrape_allowed(app: &App, token: &str) -> Result<bool, AppError> {
    let (hash, now) = (super::guard::token_hash(token), crate::db::now());
    let (method, pattern) = super::model::SCRAPE_ROUTE;
    let found = app
        .db
        .read(move |c| {
            let Some((id, uid, scope)) = store::find_token(c, &hash)? else {
                return Ok::<_, AppError>(None);
            };
            if !scope.admits(method, pattern) {
                return Ok(None);
            }
            let Some(user) = store::get_user(c, crate::ids::Scope::All, uid)? else {
                return Ok(None);
            };
            let route = Action::Route { method, pattern };
            let ok = super::usable(c, &user, now)? && holds(c, &user, route)?;
            Ok(ok.then_some(id))
        })
        .await?;
    let Some(id) = found else { return Ok(false) };
    super::guard::token_used(app, id, now).await?;
    Ok(true)
}

/// The live holder of `user`'s access (sessions and holds register under it).
pub fn holder(user: &User) -> Holder {
    Holder {
        owner: user.id.0,
        epoch: user.session_epoch,
    }
}

/// Ends at once everything `users` hold live (web terminals, SSH shells,
/// jumpbox connections, followed logs): each ends with the reason
/// `access_revoked`, its client is told why, and a session's processes are
/// swept from the container by its own loop. Called after the change that
/// revoked access is committed.
pub fn end_live_access(app: &App, users: &[UserId]) {
    for u in users {
        let n = app.live.stop_owner(u.0, ACCESS_REVOKED);
        if n > 0 {
            log::info!(
                "access of user {} revoked: {n} live connection(s) ended",
                u.0
            );
        }
    }
}

/// Ends what is held under an access generation that is no longer current
/// (changed by another process, such as `gpudock admin reset-password`);
/// how many. Run periodically as a backstop to [`end_live_access`].
pub async fn end_stale_access(app: &App) -> Result<usize, AppError> {
    let holders = app.live.holders();
    if holders.is_empty() {
        return Ok(0);
    }
    let now = crate::db::now();
    let stale = app
        .db
        .read(move |c| {
            let mut stale = Vec::new();
            for h in holders {
                if !generation_current(c, UserId(h.owner), h.epoch, now)? {
                    stale.push(h);
                }
            }
            Ok::<_, AppError>(stale)
        })
        .await?;
    Ok(stale
        .into_iter()
        .map(|h| app.live.stop_generation(h, ACCESS_REVOKED))
        .sum())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::auth::model::{Role, TenantId};
    use crate::db;

    fn member(c: &Connection) -> User {
        c.execute_batch(
            "INSERT INTO tenants (id, name, company_code, created_at, updated_at) VALUES (1, 'A', 'A', 0, 0);
             INSERT INTO users (id, username, role, tenant_id, password_hash, created_at, updated_at)
               VALUES (10, 'm', 'customer_member', 1, 'h', 0, 0);",
        )
        .unwrap();
        store::get_user(c, crate::ids::Scope::All, UserId(10))
            .unwrap()
            .unwrap()
    }

    #[test]
    fn the_account_signed_in_stays_current_until_it_changes() {
        let c = db::memory().unwrap();
        let u = member(&c);
        assert!(current(&c, &u, 1).unwrap());
        // Disabling the tenant: not current (and current again once enabled).
        c.execute("UPDATE tenants SET enabled = 0", []).unwrap();
        assert!(!current(&c, &u, 1).unwrap());
        c.execute("UPDATE tenants SET enabled = 1", []).unwrap();
        assert!(current(&c, &u, 1).unwrap());
        // A password change (or a role, tenant or enabled change) is a new
        // generation: what signed in before is not current any more.
        store::set_password(&c, u.id, "h2", false, 2).unwrap();
        assert!(!current(&c, &u, 3).unwrap());
        let again = store::get_user(&c, crate::ids::Scope::All, u.id)
            .unwrap()
            .unwrap();
        assert!(current(&c, &again, 3).unwrap());
        assert_eq!(again.tenant_id, Some(TenantId(1)));
    }

    #[test]
    fn shells_are_decided_by_the_web_terminals_record() {
        let c = db::memory().unwrap();
        let u = member(&c);
        assert_eq!(allowed(&c, &u, Action::Shell).unwrap(), Decision::Allow);
        let (m, p) = Action::Shell.record();
        c.execute(
            "DELETE FROM role_permissions WHERE role = 'customer_member' AND permission_id = \
             (SELECT id FROM permissions WHERE method = ?1 AND path_pattern = ?2)",
            [m, p],
        )
        .unwrap();
        assert_eq!(allowed(&c, &u, Action::Shell).unwrap(), Decision::Deny);
        let route = Action::Route {
            method: m,
            pattern: p,
        };
        assert_eq!(allowed(&c, &u, route).unwrap(), Decision::Deny);
        let admin = User {
            role: Role::Admin,
            tenant_id: None,
            ..u
        };
        assert!(holds(&c, &admin, Action::Shell).unwrap());
    }

    #[test]
    fn tunnels_and_the_proxy_have_records_of_their_own() {
        let c = db::memory().unwrap();
        let u = member(&c);
        for a in [Action::PortForward, Action::WebProxy] {
            assert_eq!(allowed(&c, &u, a).unwrap(), Decision::Allow, "{a:?}");
            let (m, p) = a.record();
            c.execute(
                "DELETE FROM role_permissions WHERE role = 'customer_member' AND permission_id = \
                 (SELECT id FROM permissions WHERE method = ?1 AND path_pattern = ?2)",
                [m, p],
            )
            .unwrap();
            assert_eq!(allowed(&c, &u, a).unwrap(), Decision::Deny, "{a:?}");
        }
        assert_eq!(allowed(&c, &u, Action::Shell).unwrap(), Decision::Allow);
    }

    /// Every file operation has its own record (granted to both customer
    /// roles), apart from the shell's: revoking one leaves the others.
    #[test]
    fn file_operations_are_decided_by_their_own_records() {
        let c = db::memory().unwrap();
        let u = member(&c);
        let ops = [
            FileOp::List,
            FileOp::Download,
            FileOp::Upload,
            FileOp::Mkdir,
            FileOp::Delete,
            FileOp::Rename,
        ];
        for t in [FileTarget::Instance, FileTarget::Dataset] {
            for op in ops {
                let a = Action::Files(t, op);
                assert_eq!(allowed(&c, &u, a).unwrap(), Decision::Allow, "{a:?}");
                assert_ne!(a.record(), Action::Shell.record());
            }
        }
        let (m, p) = Action::Files(FileTarget::Instance, FileOp::Upload).record();
        c.execute(
            "DELETE FROM role_permissions WHERE role = 'customer_member' AND permission_id = \
             (SELECT id FROM permissions WHERE method = ?1 AND path_pattern = ?2)",
            [m, p],
        )
        .unwrap();
        let upload = Action::Files(FileTarget::Instance, FileOp::Upload);
        assert_eq!(allowed(&c, &u, upload).unwrap(), Decision::Deny);
        let download = Action::Files(FileTarget::Instance, FileOp::Download);
        assert_eq!(allowed(&c, &u, download).unwrap(), Decision::Allow);
        assert_eq!(allowed(&c, &u, Action::Shell).unwrap(), Decision::Allow);
        assert_eq!(upload.label(), "files:instance:upload");
    }
}
