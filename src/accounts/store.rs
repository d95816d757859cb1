//! SQL for account-opening requests and cloud users. Every read that
//! serves a signed-in user takes a `Scope`: members reach their own rows,
//! owners their tenant's, admins all — in the query itself.

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Serialize, Serializer};

use super::model::{CloudUserStatus, NewRequest, RequestStatus, Step};
use crate::ids::{CloudUserId, NodeId, OpeningId, Scope, TenantId, UserId};
use crate::paging::{Page, Window};

/// (tenant filter, user filter) for `(?1 IS NULL OR tenant_id = ?1) AND
/// (?2 IS NULL OR <owner> = ?2)`.
fn filters(scope: Scope) -> (Option<TenantId>, Option<UserId>) {
    match scope {
        Scope::All => (None, None),
        Scope::Tenant(t) => (Some(t), None),
        Scope::User(u, _) => (None, Some(u)),
    }
}

/// A sealed value in JSON: `"<sealed>"` when there is one, else null.
fn sealed_marker<S: Serializer>(has: &bool, s: S) -> Result<S::Ok, S::Error> {
    if *has {
        s.serialize_str("<sealed>")
    } else {
        s.serialize_none()
    }
}

fn split_groups(s: &str) -> Vec<String> {
    s.split(',')
        .filter(|g| !g.is_empty())
        .map(str::to_string)
        .collect()
}

/// An account-opening request (AccountOpeningRequest).
#[derive(Debug, Clone, Serialize)]
pub struct Request {
    pub id: OpeningId,
    /// The applicant's user id, and name.
    pub applicant: UserId,
    pub applicant_name: String,
    pub tenant_id: Option<TenantId>,
    pub contact_email: String,
    pub contact_phone: String,
    pub username: String,
    pub user_fullname: String,
    pub user_email: String,
    pub user_description: String,
    /// The node's id (`None` once the node is deleted), and name.
    pub target_host: Option<NodeId>,
    pub target_host_name: String,
    pub is_admin: bool,
    pub groups: Vec<String>,
    pub status: RequestStatus,
    pub approved_by: Option<UserId>,
    pub approved_by_name: Option<String>,
    pub approval_date: Option<i64>,
    pub approval_notes: String,
    pub processed_by: Option<UserId>,
    pub cloud_user_id: Option<CloudUserId>,
    #[serde(serialize_with = "sealed_marker")]
    pub cloud_user_password: bool,
    pub result_kind: String,
    pub result_message: String,
    pub steps: Vec<Step>,
    pub created_at: i64,
    pub updated_at: i64,
}

const REQ_COLS: &str = "r.id, r.applicant_id, a.username, r.tenant_id, r.contact_email, r.contact_phone, \
    r.username, r.user_fullname, r.user_email, r.user_description, r.node_id, r.node_name, r.is_admin, \
    r.groups, r.status, r.approved_by, ap.username, r.approval_date, r.approval_notes, r.processed_by, \
    r.cloud_user_id, r.cloud_user_password IS NOT NULL, r.result_kind, r.result_message, r.steps, \
    r.created_at, r.updated_at";

const REQ_FROM: &str = "account_opening_requests r JOIN users a ON a.id = r.applicant_id \
    LEFT JOIN users ap ON ap.id = r.approved_by";

fn request_row(r: &Row<'_>) -> rusqlite::Result<Request> {
    let steps: String = r.get(24)?;
    Ok(Request {
        id: r.get(0)?,
        applicant: r.get(1)?,
        applicant_name: r.get(2)?,
        tenant_id: r.get(3)?,
        contact_email: r.get(4)?,
        contact_phone: r.get(5)?,
        username: r.get(6)?,
        user_fullname: r.get(7)?,
        user_email: r.get(8)?,
        user_description: r.get(9)?,
        target_host: r.get(10)?,
        target_host_name: r.get(11)?,
        is_admin: r.get(12)?,
        groups: split_groups(&r.get::<_, String>(13)?),
        status: r.get(14)?,
        approved_by: r.get(15)?,
        approved_by_name: r.get(16)?,
        approval_date: r.get(17)?,
        approval_notes: r.get(18)?,
        processed_by: r.get(19)?,
        cloud_user_id: r.get(20)?,
        cloud_user_password: r.get(21)?,
        result_kind: r.get(22)?,
        result_message: r.get(23)?,
        steps: serde_json::from_str(&steps).unwrap_or_default(),
        created_at: r.get(25)?,
        updated_at: r.get(26)?,
    })
}

pub fn insert_request(
    conn: &Connection,
    applicant: UserId,
    tenant: Option<TenantId>,
    node_name: &str,
    r: &NewRequest,
    now: i64,
) -> rusqlite::Result<OpeningId> {
    conn.execute(
        "INSERT INTO account_opening_requests (applicant_id, tenant_id, contact_email, contact_phone, username, \
         user_fullname, user_email, user_description, node_id, node_name, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11)",
        params![
            applicant, tenant, r.contact_email, r.contact_phone, r.username, r.user_fullname, r.user_email,
            r.user_description, r.target_host, node_name, now
        ],
    )?;
    Ok(OpeningId(conn.last_insert_rowid()))
}

pub fn get_request(
    conn: &Connection,
    scope: Scope,
    id: OpeningId,
) -> rusqlite::Result<Option<Request>> {
    let (t, u) = filters(scope);
    conn.query_row(
        &format!(
            "SELECT {REQ_COLS} FROM {REQ_FROM} WHERE r.id = ?3 AND (?1 IS NULL OR r.tenant_id = ?1) \
             AND (?2 IS NULL OR r.applicant_id = ?2)"
        ),
        params![t, u, id],
        request_row,
    )
    .optional()
}

/// The requests in scope (with `status`), newest first, for the rows of
/// `window`, and how many there are.
pub fn list_requests(
    conn: &Connection,
    scope: Scope,
    status: Option<RequestStatus>,
    window: Window,
) -> rusqlite::Result<Page<Request>> {
    let (t, u) = filters(scope);
    crate::paging::query(
        conn,
        &format!(
            "SELECT {REQ_COLS} FROM {REQ_FROM} WHERE (?1 IS NULL OR r.tenant_id = ?1) \
             AND (?2 IS NULL OR r.applicant_id = ?2) AND (?3 IS NULL OR r.status = ?3) ORDER BY r.id DESC"
        ),
        &[&t, &u, &status],
        window,
        request_row,
    )
}

/// Whether `username` on `node` is taken by an open request or a cloud
/// user that is not deleted (`except` a request id).
pub fn name_taken(
    conn: &Connection,
    node: NodeId,
    username: &str,
    except: Option<OpeningId>,
) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM account_opening_requests WHERE node_id = ?1 AND username = ?2 \
           AND status IN ('pending', 'approved', 'processing') AND id IS NOT ?3) \
         OR EXISTS (SELECT 1 FROM cloud_users WHERE node_id = ?1 AND username = ?2 AND status <> 'deleted')",
        params![node, username, except],
        |r| r.get(0),
    )
}

/// Records a review of a pending request; false when it is not pending.
pub fn review(
    conn: &Connection,
    id: OpeningId,
    to: RequestStatus,
    by: UserId,
    notes: &str,
    admin_and_groups: Option<(bool, &[String])>,
    now: i64,
) -> rusqlite::Result<bool> {
    let (set, admin, groups) = match admin_and_groups {
        Some((a, g)) => (true, a, g.join(",")),
        None => (false, false, String::new()),
    };
    let n = conn.execute(
        "UPDATE account_opening_requests SET status = ?2, approved_by = ?3, approval_date = ?5, \
         approval_notes = ?4, is_admin = CASE WHEN ?6 THEN ?7 ELSE is_admin END, \
         groups = CASE WHEN ?6 THEN ?8 ELSE groups END, updated_at = ?5 \
         WHERE id = ?1 AND status = 'pending'",
        params![id, to, by, notes, now, set, admin, groups],
    )?;
    Ok(n == 1)
}

/// Moves an approved (or failed) request to processing by this process
/// (`generation`, see `App::generation`); false otherwise.
pub fn start_processing(
    conn: &Connection,
    id: OpeningId,
    by: UserId,
    steps: &[Step],
    generation: i64,
    now: i64,
) -> rusqlite::Result<bool> {
    let steps = serde_json::to_string(steps).unwrap_or_else(|_| "[]".into());
    let n = conn.execute(
        "UPDATE account_opening_requests SET status = 'processing', processed_by = ?2, steps = ?3, \
         result_kind = '', result_message = '', generation = ?4, updated_at = ?5 \
         WHERE id = ?1 AND status IN ('approved', 'failed')",
        params![id, by, steps, generation, now],
    )?;
    Ok(n == 1)
}

pub fn set_steps(
    conn: &Connection,
    id: OpeningId,
    steps: &[Step],
    now: i64,
) -> rusqlite::Result<()> {
    let steps = serde_json::to_string(steps).unwrap_or_else(|_| "[]".into());
    conn.execute(
        "UPDATE account_opening_requests SET steps = ?2, updated_at = ?3 WHERE id = ?1",
        params![id, steps, now],
    )?;
    Ok(())
}

/// Ends processing as failed with its class and message.
pub fn fail(
    conn: &Connection,
    id: OpeningId,
    kind: &str,
    message: &str,
    steps: &[Step],
    now: i64,
) -> rusqlite::Result<()> {
    let steps = serde_json::to_string(steps).unwrap_or_else(|_| "[]".into());
    conn.execute(
        "UPDATE account_opening_requests SET status = 'failed', result_kind = ?2, result_message = ?3, \
         steps = ?4, updated_at = ?5 WHERE id = ?1",
        params![id, kind, message, steps, now],
    )?;
    Ok(())
}

/// Ends processing as completed, pointing at the new cloud user.
pub fn complete(
    conn: &Connection,
    id: OpeningId,
    cloud_user: CloudUserId,
    sealed: &[u8],
    message: &str,
    steps: &[Step],
    now: i64,
) -> rusqlite::Result<()> {
    let steps = serde_json::to_string(steps).unwrap_or_else(|_| "[]".into());
    conn.execute(
        "UPDATE account_opening_requests SET status = 'completed', cloud_user_id = ?2, \
         cloud_user_password = ?3, result_kind = '', result_message = ?4, steps = ?5, updated_at = ?6 \
         WHERE id = ?1",
        params![id, cloud_user, sealed, message, steps, now],
    )?;
    Ok(())
}

/// Pending requests created before `before` become expired; returns them.
pub fn expire_pending(
    conn: &Connection,
    before: i64,
    now: i64,
) -> rusqlite::Result<Vec<(OpeningId, String)>> {
    let mut stmt = conn.prepare_cached(
        "UPDATE account_opening_requests SET status = 'expired', updated_at = ?2 \
         WHERE status = 'pending' AND created_at < ?1 RETURNING id, username",
    )?;
    stmt.query_map(params![before, now], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect()
}

/// Deletes requests that expired before `before` (no cloud user points at
/// an expired request); returns how many.
pub fn purge_expired(conn: &Connection, before: i64) -> rusqlite::Result<usize> {
    conn.execute(
        "DELETE FROM account_opening_requests WHERE status = 'expired' AND updated_at < ?1",
        [before],
    )
}

/// Requests left in processing by a process that is gone (an older
/// generation than `generation`): failed as interrupted. Returns their ids.
pub fn interrupt_stale(
    conn: &Connection,
    generation: i64,
    message: &str,
    now: i64,
) -> rusqlite::Result<Vec<OpeningId>> {
    let mut stmt = conn.prepare_cached(
        "UPDATE account_opening_requests SET status = 'failed', result_kind = 'interrupted', \
         result_message = ?2, updated_at = ?3 WHERE status = 'processing' AND generation < ?1 RETURNING id",
    )?;
    stmt.query_map(params![generation, message, now], |r| r.get(0))?
        .collect()
}

// ---- cloud users ----

/// An OS account gpudock created on a node (CloudComputerUser).
#[derive(Debug, Clone, Serialize)]
pub struct CloudUser {
    pub id: CloudUserId,
    pub username: String,
    pub fullname: String,
    pub email: String,
    pub description: String,
    /// The node's id (`None` once deleted), and name.
    pub host: Option<NodeId>,
    pub host_name: String,
    pub status: CloudUserStatus,
    pub is_admin: bool,
    pub groups: Vec<String>,
    pub created_from_request: Option<OpeningId>,
    /// The applicant it was opened for.
    pub owner_id: Option<UserId>,
    pub tenant_id: Option<TenantId>,
    #[serde(skip)]
    pub reveal_owner: bool,
    #[serde(skip)]
    pub reveal_admin_id: Option<UserId>,
    pub created_at: i64,
    pub updated_at: i64,
}

const CU_COLS: &str = "id, username, fullname, email, description, node_id, node_name, status, is_admin, groups, \
    created_from_request, owner_id, tenant_id, reveal_owner, reveal_admin_id, created_at, updated_at";

fn cloud_row(r: &Row<'_>) -> rusqlite::Result<CloudUser> {
    Ok(CloudUser {
        id: r.get(0)?,
        username: r.get(1)?,
        fullname: r.get(2)?,
        email: r.get(3)?,
        description: r.get(4)?,
        host: r.get(5)?,
        host_name: r.get(6)?,
        status: r.get(7)?,
        is_admin: r.get(8)?,
        groups: split_groups(&r.get::<_, String>(9)?),
        created_from_request: r.get(10)?,
        owner_id: r.get(11)?,
        tenant_id: r.get(12)?,
        reveal_owner: r.get(13)?,
        reveal_admin_id: r.get(14)?,
        created_at: r.get(15)?,
        updated_at: r.get(16)?,
    })
}

/// Creates the cloud user of a completed request: the applicant and the
/// admin who processed it may each see the password once.
pub fn insert_cloud_user(
    conn: &Connection,
    req: &Request,
    sealed: &[u8],
    processor: Option<UserId>,
    now: i64,
) -> rusqlite::Result<CloudUserId> {
    conn.execute(
        "INSERT INTO cloud_users (node_id, node_name, username, fullname, email, description, is_admin, groups, \
         created_from_request, owner_id, tenant_id, password_sealed, reveal_owner, reveal_admin_id, created_at, \
         updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, 1, ?13, ?14, ?14)",
        params![
            req.target_host, req.target_host_name, req.username, req.user_fullname, req.user_email,
            req.user_description, req.is_admin, req.groups.join(","), req.id, req.applicant, req.tenant_id,
            sealed, processor, now
        ],
    )?;
    Ok(CloudUserId(conn.last_insert_rowid()))
}

pub fn get_cloud_user(
    conn: &Connection,
    scope: Scope,
    id: CloudUserId,
) -> rusqlite::Result<Option<CloudUser>> {
    let (t, u) = filters(scope);
    conn.query_row(
        &format!(
            "SELECT {CU_COLS} FROM cloud_users WHERE id = ?3 AND (?1 IS NULL OR tenant_id = ?1) \
             AND (?2 IS NULL OR owner_id = ?2)"
        ),
        params![t, u, id],
        cloud_row,
    )
    .optional()
}

#[derive(Debug, Default, Clone, Copy)]
pub struct CloudFilter {
    pub node: Option<NodeId>,
    pub status: Option<CloudUserStatus>,
}

/// The cloud users in scope that `f` matches, newest first, for the rows
/// of `window`, and how many there are.
pub fn list_cloud_users(
    conn: &Connection,
    scope: Scope,
    f: CloudFilter,
    window: Window,
) -> rusqlite::Result<Page<CloudUser>> {
    let (t, u) = filters(scope);
    crate::paging::query(
        conn,
        &format!(
            "SELECT {CU_COLS} FROM cloud_users WHERE (?1 IS NULL OR tenant_id = ?1) AND (?2 IS NULL OR owner_id = ?2) \
             AND (?3 IS NULL OR node_id = ?3) AND (?4 IS NULL OR status = ?4) ORDER BY id DESC"
        ),
        &[&t, &u, &f.node, &f.status],
        window,
        cloud_row,
    )
}

pub fn set_cloud_status(
    conn: &Connection,
    id: CloudUserId,
    status: CloudUserStatus,
    now: i64,
) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE cloud_users SET status = ?2, updated_at = ?3 WHERE id = ?1",
        params![id, status, now],
    )?;
    Ok(())
}

/// A new password: the owner may see it once (the admin who reset it saw it).
pub fn set_cloud_password(
    conn: &Connection,
    id: CloudUserId,
    sealed: &[u8],
    now: i64,
) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE cloud_users SET password_sealed = ?2, reveal_owner = owner_id IS NOT NULL, \
         reveal_admin_id = NULL, updated_at = ?3 WHERE id = ?1",
        params![id, sealed, now],
    )?;
    Ok(())
}

/// Takes `viewer`'s one look at the password: clears their reveal and
/// returns the sealed password, or `None` when they have none pending.
pub fn take_reveal(
    conn: &Connection,
    id: CloudUserId,
    viewer: UserId,
) -> rusqlite::Result<Option<Vec<u8>>> {
    let n = conn.execute(
        "UPDATE cloud_users SET \
           reveal_owner = CASE WHEN owner_id = ?2 THEN 0 ELSE reveal_owner END, \
           reveal_admin_id = CASE WHEN reveal_admin_id = ?2 THEN NULL ELSE reveal_admin_id END \
         WHERE id = ?1 AND password_sealed IS NOT NULL AND status <> 'deleted' \
           AND ((owner_id = ?2 AND reveal_owner) OR reveal_admin_id = ?2)",
        params![id, viewer],
    )?;
    if n == 0 {
        return Ok(None);
    }
    conn.query_row(
        "SELECT password_sealed FROM cloud_users WHERE id = ?1",
        [id],
        |r| r.get(0),
    )
}

// ---- dashboard ----

/// Requests per status and cloud users per status, in `scope`.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Counts {
    pub requests: Vec<(RequestStatus, i64)>,
    pub cloud_users: Vec<(CloudUserStatus, i64)>,
}

impl Counts {
    pub fn request(&self, s: &RequestStatus) -> i64 {
        self.requests
            .iter()
            .find(|(x, _)| x == s)
            .map_or(0, |(_, n)| *n)
    }
    pub fn cloud(&self, s: &CloudUserStatus) -> i64 {
        self.cloud_users
            .iter()
            .find(|(x, _)| x == s)
            .map_or(0, |(_, n)| *n)
    }
}

/// `(status, count)` of `table` in `scope` (`owner` names its user column).
fn count_by<S: rusqlite::types::FromSql>(
    conn: &Connection,
    scope: Scope,
    table: &str,
    owner: &str,
) -> rusqlite::Result<Vec<(S, i64)>> {
    let (t, u) = filters(scope);
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT status, COUNT(*) FROM {table} WHERE (?1 IS NULL OR tenant_id = ?1) \
         AND (?2 IS NULL OR {owner} = ?2) GROUP BY status"
    ))?;
    stmt.query_map(params![t, u], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect()
}

pub fn counts(conn: &Connection, scope: Scope) -> rusqlite::Result<Counts> {
    Ok(Counts {
        requests: count_by(conn, scope, "account_opening_requests", "applicant_id")?,
        cloud_users: count_by(conn, scope, "cloud_users", "owner_id")?,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::accounts::model::initial_steps;
    use crate::auth::model::Role;
    use crate::db;

    fn user(conn: &Connection, name: &str, role: Role, tenant: Option<TenantId>) -> UserId {
        conn.query_row(
            "INSERT INTO users (username, role, tenant_id, password_hash, created_at, updated_at) \
             VALUES (?1, ?2, ?3, 'h', 1, 1) RETURNING id",
            params![name, role.as_str(), tenant],
            |r| r.get(0),
        )
        .unwrap()
    }

    fn tenant(conn: &Connection, name: &str) -> TenantId {
        conn.query_row(
            "INSERT INTO tenants (name, company_code, created_at, updated_at) \
             VALUES (?1, ?1, 1, 1) RETURNING id",
            [name],
            |r| r.get(0),
        )
        .unwrap()
    }

    fn node(conn: &Connection, name: &str) -> NodeId {
        conn.query_row(
            "INSERT INTO nodes (name, public_ip, private_ip, gpu_name, gpu_count, cpu_cores, memory_gb, \
             status, created_at, updated_at) \
             VALUES (?1, '10.0.0.1', '10.0.0.1', 'RTX 4090', 8, 16, 64, 'online', 1, 1) RETURNING id",
            [name],
            |r| r.get(0),
        )
        .unwrap()
    }

    fn apply(
        conn: &Connection,
        who: UserId,
        tenant: Option<TenantId>,
        node: NodeId,
        name: &str,
        at: i64,
    ) -> OpeningId {
        let r = NewRequest {
            contact_email: String::new(),
            contact_phone: String::new(),
            username: name.into(),
            user_fullname: String::new(),
            user_email: String::new(),
            user_description: String::new(),
            target_host: node,
        };
        insert_request(conn, who, tenant, "n", &r, at).unwrap()
    }

    #[test]
    fn requests_and_cloud_users_are_scoped_in_the_query() {
        let conn = db::memory().unwrap();
        let (ta, tb) = (tenant(&conn, "A1"), tenant(&conn, "B1"));
        let admin = user(&conn, "root1", Role::Admin, None);
        let a1 = user(&conn, "a1", Role::CustomerMember, Some(ta));
        let a2 = user(&conn, "a2", Role::CustomerMember, Some(ta));
        let b1 = user(&conn, "b1", Role::CustomerMember, Some(tb));
        let n = node(&conn, "n1");
        let r1 = apply(&conn, a1, Some(ta), n, "u1", 10);
        let r2 = apply(&conn, a2, Some(ta), n, "u2", 10);
        let r3 = apply(&conn, b1, Some(tb), n, "u3", 10);
        let ids = |s| {
            list_requests(&conn, s, None, Window::first(10))
                .unwrap()
                .items
                .iter()
                .map(|r| r.id)
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(Scope::All), [r3, r2, r1]);
        assert_eq!(ids(Scope::Tenant(ta)), [r2, r1]);
        assert_eq!(ids(Scope::User(a1, Some(ta))), [r1]);
        assert!(
            get_request(&conn, Scope::User(a1, Some(ta)), r2)
                .unwrap()
                .is_none()
        );
        assert!(get_request(&conn, Scope::Tenant(tb), r1).unwrap().is_none());
        assert_eq!(
            get_request(&conn, Scope::All, r1)
                .unwrap()
                .unwrap()
                .applicant_name,
            "a1"
        );

        // A completed one makes a cloud user owned by the applicant.
        assert!(review(&conn, r1, RequestStatus::Approved, admin, "ok", None, 11).unwrap());
        assert!(start_processing(&conn, r1, admin, &initial_steps(), 1, 12).unwrap());
        let req = get_request(&conn, Scope::All, r1).unwrap().unwrap();
        let cu = insert_cloud_user(&conn, &req, b"sealed", Some(admin), 13).unwrap();
        complete(&conn, r1, cu, b"sealed", "done", &req.steps, 13).unwrap();
        let f = CloudFilter::default();
        assert_eq!(
            list_cloud_users(&conn, Scope::Tenant(ta), f, Window::first(10))
                .unwrap()
                .total,
            1
        );
        assert!(
            list_cloud_users(&conn, Scope::Tenant(tb), f, Window::first(10))
                .unwrap()
                .items
                .is_empty()
        );
        assert!(
            get_cloud_user(&conn, Scope::User(a2, Some(ta)), cu)
                .unwrap()
                .is_none()
        );
        let c = counts(&conn, Scope::Tenant(ta)).unwrap();
        assert_eq!(
            (
                c.request(&RequestStatus::Completed),
                c.request(&RequestStatus::Pending)
            ),
            (1, 1)
        );
        assert_eq!(c.cloud(&CloudUserStatus::Active), 1);
        assert_eq!(
            counts(&conn, Scope::User(b1, Some(tb)))
                .unwrap()
                .cloud(&CloudUserStatus::Active),
            0
        );
    }

    #[test]
    fn names_are_held_per_node_and_states_move_only_forward() {
        let conn = db::memory().unwrap();
        let (admin, a) = (
            user(&conn, "root1", Role::Admin, None),
            user(&conn, "a", Role::Admin, None),
        );
        let (n1, n2) = (node(&conn, "n1"), node(&conn, "n2"));
        let r = apply(&conn, a, None, n1, "alice", 10);
        assert!(name_taken(&conn, n1, "alice", None).unwrap());
        assert!(!name_taken(&conn, n1, "alice", Some(r)).unwrap());
        assert!(!name_taken(&conn, n2, "alice", None).unwrap());
        // Not approved: cannot start; reviewed once only.
        assert!(!start_processing(&conn, r, admin, &[], 1, 11).unwrap());
        assert!(review(&conn, r, RequestStatus::Rejected, admin, "no", None, 11).unwrap());
        assert!(!review(&conn, r, RequestStatus::Approved, admin, "", None, 12).unwrap());
        assert!(
            !name_taken(&conn, n1, "alice", None).unwrap(),
            "a rejected request frees the name"
        );
        let r2 = apply(&conn, a, None, n1, "alice", 20);
        let g = vec!["docker".to_string()];
        assert!(
            review(
                &conn,
                r2,
                RequestStatus::Approved,
                admin,
                "",
                Some((true, &g)),
                21
            )
            .unwrap()
        );
        let got = get_request(&conn, Scope::All, r2).unwrap().unwrap();
        assert!(got.is_admin && got.groups == g && got.approved_by == Some(admin));
        assert!(start_processing(&conn, r2, admin, &initial_steps(), 1, 22).unwrap());
        assert!(
            !start_processing(&conn, r2, admin, &initial_steps(), 1, 22).unwrap(),
            "one job at a time"
        );
        fail(&conn, r2, "network", "down", &[], 23).unwrap();
        assert!(
            start_processing(&conn, r2, admin, &initial_steps(), 1, 24).unwrap(),
            "a failed one is retried"
        );
    }

    #[test]
    fn old_pending_requests_expire_and_are_purged_and_stale_processing_fails() {
        let conn = db::memory().unwrap();
        let (admin, a) = (
            user(&conn, "root1", Role::Admin, None),
            user(&conn, "a", Role::Admin, None),
        );
        let n = node(&conn, "n1");
        let old = apply(&conn, a, None, n, "old", 100);
        let fresh = apply(&conn, a, None, n, "fresh", 1000);
        let busy = apply(&conn, a, None, n, "busy", 100);
        review(&conn, busy, RequestStatus::Approved, admin, "", None, 100).unwrap();
        start_processing(&conn, busy, admin, &initial_steps(), 5, 150).unwrap();
        assert_eq!(
            expire_pending(&conn, 500, 2000).unwrap(),
            [(old, "old".to_string())]
        );
        let status = |id| {
            get_request(&conn, Scope::All, id)
                .unwrap()
                .map(|r| r.status)
        };
        assert_eq!(status(old), Some(RequestStatus::Expired));
        assert_eq!(status(fresh), Some(RequestStatus::Pending));
        assert_eq!(purge_expired(&conn, 1999).unwrap(), 0, "expired at 2000");
        assert_eq!(purge_expired(&conn, 2001).unwrap(), 1);
        assert_eq!(status(old), None);
        // Its own process (generation 5) is not interrupted, whatever the
        // clock says; the next start (6) finds it left behind.
        assert_eq!(
            interrupt_stale(&conn, 5, "x", 9999).unwrap(),
            Vec::<OpeningId>::new()
        );
        assert_eq!(interrupt_stale(&conn, 6, "x", 151).unwrap(), [busy]);
        let b = get_request(&conn, Scope::All, busy).unwrap().unwrap();
        assert_eq!(
            (b.status, b.result_kind.as_str()),
            (RequestStatus::Failed, "interrupted")
        );
    }

    #[test]
    fn a_password_is_revealed_once_to_each_of_its_two_viewers() {
        let conn = db::memory().unwrap();
        let admin = user(&conn, "root1", Role::Admin, None);
        let a = user(&conn, "a", Role::Admin, None);
        let other = user(&conn, "o", Role::Admin, None);
        let n = node(&conn, "n1");
        let r = apply(&conn, a, None, n, "alice", 10);
        let req = get_request(&conn, Scope::All, r).unwrap().unwrap();
        let cu = insert_cloud_user(&conn, &req, b"s1", Some(admin), 11).unwrap();
        assert!(take_reveal(&conn, cu, other).unwrap().is_none());
        assert_eq!(
            take_reveal(&conn, cu, a).unwrap().as_deref(),
            Some(&b"s1"[..])
        );
        assert!(take_reveal(&conn, cu, a).unwrap().is_none());
        assert_eq!(
            take_reveal(&conn, cu, admin).unwrap().as_deref(),
            Some(&b"s1"[..])
        );
        assert!(take_reveal(&conn, cu, admin).unwrap().is_none());
        // A reset: the owner may look once more, the admin who reset saw it.
        set_cloud_password(&conn, cu, b"s2", 12).unwrap();
        assert!(take_reveal(&conn, cu, admin).unwrap().is_none());
        assert_eq!(
            take_reveal(&conn, cu, a).unwrap().as_deref(),
            Some(&b"s2"[..])
        );
        set_cloud_status(&conn, cu, CloudUserStatus::Deleted, 13).unwrap();
        set_cloud_password(&conn, cu, b"s3", 14).unwrap();
        assert!(
            take_reveal(&conn, cu, a).unwrap().is_none(),
            "never for a deleted account"
        );
    }

    /// The status enums' texts are exactly the values the schema allows;
    /// ids are never reused (AUTOINCREMENT, like every table since V12).
    #[test]
    fn status_texts_match_the_schema() {
        let conn = db::memory().unwrap();
        for table in ["account_opening_requests", "cloud_users"] {
            let sql: String = conn
                .query_row(
                    "SELECT sql FROM sqlite_master WHERE name = ?1",
                    [table],
                    |r| r.get(0),
                )
                .unwrap();
            assert!(sql.contains("AUTOINCREMENT"), "{table}: {sql}");
        }
        let allowed = |table: &str| {
            let sql: String = conn
                .query_row(
                    "SELECT sql FROM sqlite_master WHERE name = ?1",
                    [table],
                    |r| r.get(0),
                )
                .unwrap();
            let at = sql.find("status IN").unwrap();
            let list = &sql[sql[at..].find('(').unwrap() + at + 1..];
            let mut v: Vec<String> = list[..list.find(')').unwrap()]
                .split(',')
                .map(|x| x.trim().trim_matches('\'').to_string())
                .collect();
            v.sort();
            v
        };
        let texts = |all: Vec<&str>| {
            let mut v: Vec<String> = all.into_iter().map(str::to_string).collect();
            v.sort();
            v
        };
        assert_eq!(
            allowed("account_opening_requests"),
            texts(RequestStatus::ALL.iter().map(|s| s.as_str()).collect())
        );
        assert_eq!(
            allowed("cloud_users"),
            texts(CloudUserStatus::ALL.iter().map(|s| s.as_str()).collect())
        );
        let back: RequestStatus = conn
            .query_row("SELECT ?1", [RequestStatus::Expired], |r| r.get(0))
            .unwrap();
        assert_eq!(back, RequestStatus::Expired);
        assert_eq!(
            serde_json::to_value(CloudUserStatus::Disabled).unwrap(),
            "disabled"
        );
    }
}
