//! SQL for remote sessions: scoped reads (member: own; owner: tenant;
//! admin: all) with filters, and the writes of a session's life.

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;

use super::model::{EndReason, Protocol, SessionStatus};
use crate::auth::Scope;
use crate::ids::{InstanceId, NodeId, SessionId};
use crate::paging::{Page, Window};

#[derive(Debug, Clone, Serialize)]
pub struct SessionRecord {
    pub id: SessionId,
    pub user_id: i64,
    pub username: String,
    pub tenant_id: Option<i64>,
    pub instance_id: InstanceId,
    pub instance_name: String,
    pub node_id: NodeId,
    pub node_name: String,
    pub container_id: String,
    pub protocol: Protocol,
    pub command: String,
    pub source_ip: String,
    pub status: SessionStatus,
    pub started_at: i64,
    pub last_activity_at: i64,
    pub ended_at: Option<i64>,
    pub end_reason: Option<EndReason>,
    pub end_detail: String,
    pub bytes_in: i64,
    pub bytes_out: i64,
    pub has_recording: bool,
    /// When the processes the session started were ended in the container
    /// (`None`: not yet; swept at start-up or when its node answers).
    pub swept_at: Option<i64>,
    /// The port a tunnel reaches (protocol `port_forward` only).
    pub target_port: Option<u16>,
}

const COLS: &str = "id, user_id, username, tenant_id, instance_id, instance_name, node_id, node_name, container_id, \
    protocol, command, source_ip, status, started_at, last_activity_at, ended_at, end_reason, end_detail, bytes_in, \
    bytes_out, recording IS NOT NULL, swept_at, target_port";

fn row(r: &Row<'_>) -> rusqlite::Result<SessionRecord> {
    Ok(SessionRecord {
        id: r.get(0)?,
        user_id: r.get(1)?,
        username: r.get(2)?,
        tenant_id: r.get(3)?,
        instance_id: r.get(4)?,
        instance_name: r.get(5)?,
        node_id: r.get(6)?,
        node_name: r.get(7)?,
        container_id: r.get(8)?,
        protocol: r.get(9)?,
        command: r.get(10)?,
        source_ip: r.get(11)?,
        status: r.get(12)?,
        started_at: r.get(13)?,
        last_activity_at: r.get(14)?,
        ended_at: r.get(15)?,
        end_reason: r.get(16)?,
        end_detail: r.get(17)?,
        bytes_in: r.get(18)?,
        bytes_out: r.get(19)?,
        has_recording: r.get(20)?,
        swept_at: r.get(21)?,
        target_port: r.get(22)?,
    })
}

pub struct NewSession<'a> {
    pub user_id: i64,
    pub username: &'a str,
    pub tenant_id: Option<i64>,
    pub instance_id: InstanceId,
    pub instance_name: &'a str,
    pub node_id: NodeId,
    pub node_name: &'a str,
    pub container_id: &'a str,
    pub protocol: Protocol,
    pub command: &'a str,
    pub source_ip: &'a str,
    pub target_port: Option<u16>,
}

/// Inserts the record; its processes' tag is `tag` of the new id.
pub fn insert(
    conn: &Connection,
    s: &NewSession<'_>,
    tag: impl FnOnce(SessionId) -> String,
    now: i64,
) -> rusqlite::Result<(SessionId, String)> {
    conn.execute(
        "INSERT INTO remote_sessions (user_id, username, tenant_id, instance_id, instance_name, node_id, node_name, \
         container_id, protocol, command, source_ip, status, started_at, last_activity_at, target_port) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 'active', ?12, ?12, ?13)",
        params![
            s.user_id, s.username, s.tenant_id, s.instance_id, s.instance_name, s.node_id, s.node_name,
            s.container_id, s.protocol, s.command, s.source_ip, now, s.target_port
        ],
    )?;
    let id = SessionId(conn.last_insert_rowid());
    let tag = tag(id);
    conn.execute(
        "UPDATE remote_sessions SET exec_tag = ?2 WHERE id = ?1",
        params![id, tag],
    )?;
    Ok((id, tag))
}

pub fn set_recording(conn: &Connection, id: SessionId, file: &str) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE remote_sessions SET recording = ?2 WHERE id = ?1",
        params![id, file],
    )?;
    Ok(())
}

/// The live figures of a session still open.
pub fn touch(
    conn: &Connection,
    id: SessionId,
    status: SessionStatus,
    last: i64,
    bytes_in: u64,
    bytes_out: u64,
) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE remote_sessions SET status = ?2, last_activity_at = ?3, bytes_in = ?4, bytes_out = ?5 \
         WHERE id = ?1 AND status IN ('active', 'idle')",
        params![id, status, last, bytes_in as i64, bytes_out as i64],
    )?;
    Ok(())
}

pub struct Ending<'a> {
    pub status: SessionStatus,
    pub reason: EndReason,
    pub detail: &'a str,
    pub last: i64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

pub fn end(conn: &Connection, id: SessionId, e: &Ending<'_>, now: i64) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE remote_sessions SET status = ?2, end_reason = ?3, end_detail = ?4, last_activity_at = ?5, \
         bytes_in = ?6, bytes_out = ?7, ended_at = ?8 WHERE id = ?1",
        params![id, e.status, e.reason, e.detail, e.last, e.bytes_in as i64, e.bytes_out as i64, now],
    )?;
    Ok(())
}

/// Sessions a previous process left open: closed with reason `error` (not
/// swept: their processes may still run).
pub fn close_orphans(conn: &Connection, now: i64) -> rusqlite::Result<usize> {
    conn.execute(
        "UPDATE remote_sessions SET status = 'closed', end_reason = 'error', \
         end_detail = 'gpudock stopped while the session was open', ended_at = ?1 \
         WHERE status IN ('active', 'idle')",
        [now],
    )
}

/// Records that the session's processes were ended in its container.
pub fn set_swept(conn: &Connection, id: SessionId, now: i64) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE remote_sessions SET swept_at = ?2 WHERE id = ?1 AND swept_at IS NULL",
        params![id, now],
    )?;
    Ok(())
}

/// A session that ended without its processes being swept.
#[derive(Debug, Clone)]
pub struct Unswept {
    pub id: SessionId,
    pub container_id: String,
    pub exec_tag: String,
}

/// The ended sessions on `node` whose processes were not swept yet.
pub fn unswept(conn: &Connection, node: NodeId) -> rusqlite::Result<Vec<Unswept>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, container_id, exec_tag FROM remote_sessions \
         WHERE node_id = ?1 AND swept_at IS NULL AND status NOT IN ('active', 'idle') ORDER BY id",
    )?;
    stmt.query_map([node], |r| {
        Ok(Unswept {
            id: r.get(0)?,
            container_id: r.get(1)?,
            exec_tag: r.get(2)?,
        })
    })?
    .collect()
}

/// The live tunnels (`port_forward` sessions) to instance `instance`.
pub fn live_tunnels(conn: &Connection, instance: InstanceId) -> rusqlite::Result<Vec<SessionId>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id FROM remote_sessions WHERE instance_id = ?1 AND protocol = 'port_forward' \
         AND status IN ('active', 'idle')",
    )?;
    stmt.query_map([instance], |r| r.get(0))?.collect()
}

/// Every live session (any protocol) to instance `instance`: id, user and
/// protocol (what a reclaim shows before it ends them).
pub fn live_on(conn: &Connection, instance: InstanceId) -> rusqlite::Result<Vec<LiveOn>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, username, protocol, started_at FROM remote_sessions WHERE instance_id = ?1 \
         AND status IN ('active', 'idle') ORDER BY id",
    )?;
    stmt.query_map([instance], |r| {
        Ok(LiveOn {
            id: r.get(0)?,
            username: r.get(1)?,
            protocol: r.get(2)?,
            started_at: r.get(3)?,
        })
    })?
    .collect()
}

/// A live session to an instance.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LiveOn {
    pub id: SessionId,
    pub username: String,
    pub protocol: Protocol,
    pub started_at: i64,
}

/// History filters; all optional.
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(default)]
pub struct Filter {
    /// `live` (active or idle) or one status.
    pub status: Option<String>,
    pub protocol: Option<String>,
    pub username: Option<String>,
    pub instance: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
}

fn scope_filters(scope: Scope) -> (Option<i64>, Option<i64>) {
    match scope {
        Scope::All => (None, None),
        Scope::Tenant(t) => (Some(t.0), None),
        Scope::User(u, _) => (None, Some(u.0)),
    }
}

/// The sessions in scope that `f` matches, newest first, for the rows of
/// `window`, and how many match in all.
pub fn list(
    conn: &Connection,
    scope: Scope,
    f: &Filter,
    window: Window,
) -> rusqlite::Result<Page<SessionRecord>> {
    let (t, u) = scope_filters(scope);
    let empty = |s: &Option<String>| s.clone().filter(|v| !v.trim().is_empty());
    let (status, protocol, username, instance) = (
        empty(&f.status),
        empty(&f.protocol),
        empty(&f.username),
        empty(&f.instance),
    );
    crate::paging::query(
        conn,
        &format!(
            "SELECT {COLS} FROM remote_sessions WHERE (?1 IS NULL OR tenant_id = ?1) AND (?2 IS NULL OR user_id = ?2) \
             AND (?3 IS NULL OR (?3 = 'live' AND status IN ('active', 'idle')) OR status = ?3) \
             AND (?4 IS NULL OR protocol = ?4) AND (?5 IS NULL OR username = ?5) \
             AND (?6 IS NULL OR instance_name = ?6 OR CAST(instance_id AS TEXT) = ?6) \
             AND (?7 IS NULL OR started_at >= ?7) AND (?8 IS NULL OR started_at < ?8) \
             ORDER BY id DESC"
        ),
        &[
            &t, &u, &status, &protocol, &username, &instance, &f.since, &f.until,
        ],
        window,
        row,
    )
}

pub fn get(
    conn: &Connection,
    scope: Scope,
    id: SessionId,
) -> rusqlite::Result<Option<SessionRecord>> {
    let (t, u) = scope_filters(scope);
    conn.query_row(
        &format!(
            "SELECT {COLS} FROM remote_sessions WHERE id = ?3 AND (?1 IS NULL OR tenant_id = ?1) AND (?2 IS NULL OR user_id = ?2)"
        ),
        params![t, u, id],
        row,
    )
    .optional()
}

/// The recording file of a session in scope.
pub fn recording(
    conn: &Connection,
    scope: Scope,
    id: SessionId,
) -> rusqlite::Result<Option<String>> {
    let (t, u) = scope_filters(scope);
    conn.query_row(
        "SELECT recording FROM remote_sessions WHERE id = ?3 AND (?1 IS NULL OR tenant_id = ?1) AND (?2 IS NULL OR user_id = ?2)",
        params![t, u, id],
        |r| r.get::<_, Option<String>>(0),
    )
    .optional()
    .map(Option::flatten)
}
