//! SQL of leases: the lease columns of `instances`, reminders sent, owners'
//! extension requests and the reclaim's steps.

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::auth::Scope;
use crate::ids::{InstanceId, NodeId};

/// What the lease checker needs of an instance with a lease end.
#[derive(Debug, Clone)]
pub struct Leased {
    pub id: InstanceId,
    pub name: String,
    pub user_id: i64,
    pub node_id: NodeId,
    pub container_id: Option<String>,
    pub container_name: String,
    pub volume_name: String,
    pub lease_end: Option<i64>,
    pub stopped: bool,
    pub gpu_indices: String,
}

const LEASED_COLS: &str = "id, name, user_id, node_id, container_id, container_name, volume_name, \
    lease_end, lease_stopped_at IS NOT NULL, gpu_indices";

fn leased_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Leased> {
    Ok(Leased {
        id: r.get(0)?,
        name: r.get(1)?,
        user_id: r.get(2)?,
        node_id: r.get(3)?,
        container_id: r.get(4)?,
        container_name: r.get(5)?,
        volume_name: r.get(6)?,
        lease_end: r.get(7)?,
        stopped: r.get(8)?,
        gpu_indices: r.get(9)?,
    })
}

/// Instances with a lease end, not reclaimed, not being created.
pub fn leased(conn: &Connection) -> rusqlite::Result<Vec<Leased>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {LEASED_COLS} FROM instances WHERE lease_end IS NOT NULL AND reclaimed_at IS NULL \
         AND status NOT IN ('creating', 'deleting') ORDER BY lease_end"
    ))?;
    stmt.query_map([], leased_row)?.collect()
}

/// One instance (not reclaimed) as the checker sees it.
pub fn one(conn: &Connection, id: InstanceId) -> rusqlite::Result<Option<Leased>> {
    conn.query_row(
        &format!("SELECT {LEASED_COLS} FROM instances WHERE id = ?1 AND reclaimed_at IS NULL"),
        [id],
        leased_row,
    )
    .optional()
}

/// Records the `days` reminder of the lease ending at `end`; false when it
/// was sent before (each is sent once).
pub fn remind(
    conn: &Connection,
    id: InstanceId,
    end: i64,
    days: i64,
    now: i64,
) -> rusqlite::Result<bool> {
    Ok(conn.execute(
        "INSERT OR IGNORE INTO lease_reminders (instance_id, lease_end, days, sent_at) VALUES (?1, ?2, ?3, ?4)",
        params![id, end, days, now],
    )? == 1)
}

/// Marks the instance stopped at the end of the lease ending at `end`
/// (unless the lease changed meanwhile); whether it did.
pub fn mark_stopped(
    conn: &Connection,
    id: InstanceId,
    end: i64,
    now: i64,
) -> rusqlite::Result<bool> {
    Ok(conn.execute(
        "UPDATE instances SET lease_stopped_at = ?3 WHERE id = ?1 AND lease_end = ?2 AND reclaimed_at IS NULL",
        params![id, end, now],
    )? == 1)
}

/// Sets the lease end (none: open-ended); the stop at the old end no
/// longer counts. Whether the instance exists (and is not reclaimed).
pub fn set_lease(
    conn: &Connection,
    id: InstanceId,
    end: Option<i64>,
    now: i64,
) -> rusqlite::Result<bool> {
    Ok(conn.execute(
        "UPDATE instances SET lease_end = ?2, lease_stopped_at = NULL, updated_at = ?3 \
         WHERE id = ?1 AND reclaimed_at IS NULL",
        params![id, end, now],
    )? == 1)
}

/// One step of a reclaim (清理进度) as shown.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Step {
    /// `check`, `end_sessions`, `remove_container`, `remove_volume`,
    /// `release`, `record`.
    pub step: String,
    /// `done` or `failed`.
    pub status: String,
    pub detail: String,
    pub at: i64,
}

pub fn steps(conn: &Connection, id: InstanceId) -> rusqlite::Result<Vec<Step>> {
    let text: Option<String> = conn
        .query_row(
            "SELECT reclaim_steps FROM instances WHERE id = ?1",
            [id],
            |r| r.get(0),
        )
        .optional()?;
    Ok(text
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default())
}

pub fn set_steps(conn: &Connection, id: InstanceId, steps: &[Step]) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE instances SET reclaim_steps = ?2 WHERE id = ?1",
        params![
            id,
            serde_json::to_string(steps).unwrap_or_else(|_| "[]".into())
        ],
    )?;
    Ok(())
}

/// Releases what the instance held (GPU indices, cores, memory, disks: the
/// usage tables follow through their triggers) and keeps the record as
/// `reclaimed`. Only called once its container is gone.
pub fn finish_reclaim(conn: &Connection, id: InstanceId, now: i64) -> rusqlite::Result<bool> {
    Ok(conn.execute(
        "UPDATE instances SET status = 'reclaimed', reclaimed_at = ?2, updated_at = ?2, gpu_indices = '[]', \
         gpu_count = 0, cpu_cores = 0, memory_gb = 0, system_disk_gb = 0, data_disk_gb = 0 \
         WHERE id = ?1 AND reclaimed_at IS NULL",
        params![id, now],
    )? == 1)
}

/// A lease notice for a user: an instance whose reminder was sent or whose
/// lease ended (not reclaimed yet).
#[derive(Debug, Clone, Serialize)]
pub struct Notice {
    pub instance_id: InstanceId,
    pub name: String,
    pub lease_end: i64,
}

/// The notices of the instances `scope` reaches: a reminder of the current
/// lease end was sent, or the lease ended.
pub fn notices(conn: &Connection, scope: Scope, now: i64) -> rusqlite::Result<Vec<Notice>> {
    let (t, u) = match scope {
        Scope::All => (None, None),
        Scope::Tenant(t) => (Some(t.0), None),
        Scope::User(u, _) => (None, Some(u.0)),
    };
    let mut stmt = conn.prepare_cached(
        "SELECT i.id, i.name, i.lease_end FROM instances i WHERE i.lease_end IS NOT NULL \
         AND i.reclaimed_at IS NULL AND (?1 IS NULL OR i.tenant_id = ?1) AND (?2 IS NULL OR i.user_id = ?2) \
         AND (i.lease_end <= ?3 OR EXISTS (SELECT 1 FROM lease_reminders r \
              WHERE r.instance_id = i.id AND r.lease_end = i.lease_end)) \
         ORDER BY i.lease_end, i.id LIMIT 20",
    )?;
    stmt.query_map(params![t, u, now], |r| {
        Ok(Notice {
            instance_id: r.get(0)?,
            name: r.get(1)?,
            lease_end: r.get(2)?,
        })
    })?
    .collect()
}

/// The reminders sent for instance `id` (lease end, days), newest first.
pub fn reminders(conn: &Connection, id: InstanceId) -> rusqlite::Result<Vec<(i64, i64)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT lease_end, days FROM lease_reminders WHERE instance_id = ?1 ORDER BY sent_at DESC, days",
    )?;
    stmt.query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect()
}

/// Whether the lease of instance `id` has ended at `now`, or it was
/// reclaimed: its lease end (0 for a reclaimed one without), if so.
pub fn ended(conn: &Connection, id: InstanceId, now: i64) -> rusqlite::Result<Option<i64>> {
    conn.query_row(
        "SELECT COALESCE(lease_end, 0) FROM instances WHERE id = ?1 \
         AND (reclaimed_at IS NOT NULL OR (lease_end IS NOT NULL AND lease_end <= ?2))",
        params![id, now],
        |r| r.get(0),
    )
    .optional()
}

/// An owner's (or member's) request to extend a lease (续期申请).
#[derive(Debug, Clone, Serialize)]
pub struct Request {
    pub id: i64,
    pub instance_id: InstanceId,
    pub instance_name: String,
    pub user_id: i64,
    pub username: String,
    pub tenant_id: Option<i64>,
    /// The lease end asked for (Unix seconds).
    pub lease_end: i64,
    pub reason: String,
    /// `pending`, `approved` or `rejected`.
    pub status: String,
    pub decided_by: Option<i64>,
    pub decided_at: Option<i64>,
    pub created_at: i64,
}

pub struct NewRequest {
    pub instance_id: InstanceId,
    pub user_id: i64,
    pub tenant_id: Option<i64>,
    pub lease_end: i64,
    pub reason: String,
}

/// Records a request; none when one is pending for the instance already.
pub fn insert_request(
    conn: &Connection,
    r: &NewRequest,
    now: i64,
) -> rusqlite::Result<Option<i64>> {
    let n = conn.execute(
        "INSERT INTO lease_requests (instance_id, user_id, tenant_id, lease_end, reason, created_at) \
         SELECT ?1, ?2, ?3, ?4, ?5, ?6 WHERE NOT EXISTS \
         (SELECT 1 FROM lease_requests WHERE instance_id = ?1 AND status = 'pending')",
        params![r.instance_id, r.user_id, r.tenant_id, r.lease_end, r.reason, now],
    )?;
    Ok((n == 1).then(|| conn.last_insert_rowid()))
}

/// The requests `scope` reaches (member: own; owner: tenant; admin: all),
/// of one instance or all, newest first.
pub fn requests(
    conn: &Connection,
    scope: Scope,
    instance: Option<InstanceId>,
) -> rusqlite::Result<Vec<Request>> {
    let (t, u) = match scope {
        Scope::All => (None, None),
        Scope::Tenant(t) => (Some(t.0), None),
        Scope::User(u, _) => (None, Some(u.0)),
    };
    let mut stmt = conn.prepare_cached(
        "SELECT r.id, r.instance_id, i.name, r.user_id, u.username, r.tenant_id, r.lease_end, r.reason, \
         r.status, r.decided_by, r.decided_at, r.created_at FROM lease_requests r \
         JOIN instances i ON i.id = r.instance_id JOIN users u ON u.id = r.user_id \
         WHERE (?1 IS NULL OR r.tenant_id = ?1) AND (?2 IS NULL OR r.user_id = ?2) \
         AND (?3 IS NULL OR r.instance_id = ?3) ORDER BY r.id DESC LIMIT 500",
    )?;
    stmt.query_map(params![t, u, instance], |r| {
        Ok(Request {
            id: r.get(0)?,
            instance_id: r.get(1)?,
            instance_name: r.get(2)?,
            user_id: r.get(3)?,
            username: r.get(4)?,
            tenant_id: r.get(5)?,
            lease_end: r.get(6)?,
            reason: r.get(7)?,
            status: r.get(8)?,
            decided_by: r.get(9)?,
            decided_at: r.get(10)?,
            created_at: r.get(11)?,
        })
    })?
    .collect()
}

/// Decides a pending request; its instance and lease end when it was
/// pending (none otherwise).
pub fn decide(
    conn: &Connection,
    id: i64,
    approve: bool,
    by: i64,
    now: i64,
) -> rusqlite::Result<Option<(InstanceId, i64)>> {
    let status = if approve { "approved" } else { "rejected" };
    let n = conn.execute(
        "UPDATE lease_requests SET status = ?2, decided_by = ?3, decided_at = ?4 \
         WHERE id = ?1 AND status = 'pending'",
        params![id, status, by, now],
    )?;
    if n == 0 {
        return Ok(None);
    }
    conn.query_row(
        "SELECT instance_id, lease_end FROM lease_requests WHERE id = ?1",
        [id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
}
