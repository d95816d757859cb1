//! SQL for instances: scoped reads (member: own; owner: tenant; admin: all),
//! the capacity snapshot placement works on, and the reservation row.

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;

use super::model::InstanceStatus;
use super::placement::{Capacity, NodeSnapshot, NodeState};
use crate::auth::Scope;
use crate::ids::{InstanceId, NodeId};
use crate::paging::{Page, Search, Window};

/// Something the user should know about an instance: a stable code (also an
/// i18n key under `instances.w_`) and the daemon's words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Warning {
    pub code: String,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Instance {
    pub id: InstanceId,
    pub name: String,
    pub image_id: i64,
    pub spec_id: i64,
    pub node_id: NodeId,
    pub user_id: i64,
    pub tenant_id: Option<i64>,
    pub container_id: Option<String>,
    /// What users are shown (`unknown` while the node is unreachable).
    pub status: InstanceStatus,
    /// What Docker last said, whether or not the node answers now: what a
    /// connection to the instance tries (and fails clearly on a dead node).
    #[serde(skip)]
    pub last_known: InstanceStatus,
    pub gpu_indices: Vec<i64>,
    #[serde(skip)]
    pub reserved: Capacity,
    pub warnings: Vec<Warning>,
    pub remark: String,
    pub created_at: i64,
    pub updated_at: i64,
    /// Its container's and data volume's names on the node.
    #[serde(skip)]
    pub objects: ObjectNames,
    /// The lease end (Unix seconds); none: open-ended.
    pub lease_end: Option<i64>,
    /// `active`, `expiring`, `expired` or `reclaimed` (see
    /// [`crate::leases::state`]).
    pub lease_state: crate::leases::LeaseState,
    /// When the reclaim finished (the record stays, as `reclaimed`).
    pub reclaimed_at: Option<i64>,
}

/// The names of an instance's container and data volume on its node:
/// decided once, when it is reserved, and unique (see
/// `lifecycle::object_names`); every later operation uses these.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectNames {
    pub container: String,
    pub volume: String,
}

const COLS: &str = "id, name, image_id, spec_id, node_id, user_id, tenant_id, container_id, status, gpu_indices, \
    gpu_count, cpu_cores, memory_gb, system_disk_gb, data_disk_gb, warnings, remark, created_at, updated_at, \
    container_name, volume_name, lease_end, reclaimed_at";

/// Columns read after `COLS`: the status of the instance's node (what is
/// shown depends on it, see [`InstanceStatus::seen`]).
const NODE_STATUS: &str = "(SELECT n.status FROM nodes n WHERE n.id = node_id)";

/// `COLS` and the node's status, qualified with the table alias `i.`
/// (for joins).
fn cols_of_i() -> String {
    let cols: Vec<String> = COLS
        .split(", ")
        .map(|c| format!("i.{}", c.trim()))
        .collect();
    format!(
        "{}, {}",
        cols.join(", "),
        NODE_STATUS.replace("= node_id", "= i.node_id")
    )
}

/// How many columns [`row`] reads.
const ROW_WIDTH: usize = 24;

/// An instance as users see it (`COLS` then the node's status).
fn row(r: &Row<'_>) -> rusqlite::Result<Instance> {
    let json = |i: usize| -> rusqlite::Result<String> { r.get(i) };
    let stored: InstanceStatus = r.get(8)?;
    let node: Option<String> = r.get(23)?;
    let lease_end: Option<i64> = r.get(21)?;
    let reclaimed_at: Option<i64> = r.get(22)?;
    Ok(Instance {
        id: r.get(0)?,
        name: r.get(1)?,
        image_id: r.get(2)?,
        spec_id: r.get(3)?,
        node_id: r.get(4)?,
        user_id: r.get(5)?,
        tenant_id: r.get(6)?,
        container_id: r.get(7)?,
        status: stored.seen(node.as_deref() == Some("unreachable")),
        last_known: stored,
        gpu_indices: serde_json::from_str(&json(9)?).unwrap_or_default(),
        reserved: Capacity {
            gpus: r.get(10)?,
            cpu_cores: r.get(11)?,
            memory_gb: r.get(12)?,
            system_disk_gb: r.get(13)?,
            data_disk_gb: r.get(14)?,
        },
        warnings: serde_json::from_str(&json(15)?).unwrap_or_default(),
        remark: r.get(16)?,
        created_at: r.get(17)?,
        updated_at: r.get(18)?,
        objects: ObjectNames {
            container: r.get(19)?,
            volume: r.get(20)?,
        },
        lease_end,
        lease_state: crate::leases::state(lease_end, reclaimed_at, crate::db::now()),
        reclaimed_at,
    })
}

/// (tenant filter, user filter) of a scope.
fn filters(scope: Scope) -> (Option<i64>, Option<i64>) {
    match scope {
        Scope::All => (None, None),
        Scope::Tenant(t) => (Some(t.0), None),
        Scope::User(u, _) => (None, Some(u.0)),
    }
}

/// What a search narrows the scoped instances to (alias `i`): `?4` a LIKE
/// pattern the instance's name or its user's, node's or image's name
/// matches, `?5` a stored status; either NULL for any.
const SEARCH_WHERE: &str = "(?4 IS NULL OR i.name LIKE ?4 ESCAPE '\\' \
    OR i.user_id IN (SELECT id FROM users WHERE username LIKE ?4 ESCAPE '\\') \
    OR i.node_id IN (SELECT id FROM nodes WHERE name LIKE ?4 ESCAPE '\\') \
    OR i.image_id IN (SELECT id FROM images WHERE name LIKE ?4 ESCAPE '\\')) \
    AND (?5 IS NULL OR i.status = ?5)";

/// [`SEARCH_WHERE`] for a search without text (`?4` NULL): SQLite builds
/// the three name lists of the text search for every run of the statement
/// even when `?4 IS NULL` (0.43 ms of a 1,000-instance count against 0.06
/// ms without them, issue 11).
const STATUS_WHERE: &str = "?4 IS NULL AND (?5 IS NULL OR i.status = ?5)";

/// The search condition for `q` (`?4`, see [`search_params`]).
fn search_where(q: &Option<String>) -> &'static str {
    if q.is_some() {
        SEARCH_WHERE
    } else {
        STATUS_WHERE
    }
}

/// A search's `?4` and `?5` (see [`SEARCH_WHERE`]); a status outside
/// [`InstanceStatus`]'s words is the caller's field error, checked before.
fn search_params(search: &Search) -> (Option<String>, Option<String>) {
    (search.like(), search.status_param())
}

/// The scoped instances of `window` that `search` matches, by id, and how
/// many there are.
pub fn list(
    conn: &Connection,
    scope: Scope,
    search: &Search,
    window: Window,
) -> rusqlite::Result<Page<Instance>> {
    let (t, u) = filters(scope);
    let (q, st) = search_params(search);
    let none: Option<i64> = None;
    let filter = format!("{NAMED_WHERE} AND {}", search_where(&q));
    let sql = format!("SELECT {COLS}, {NODE_STATUS} FROM instances i WHERE {filter} ORDER BY id");
    let count = format!("SELECT COUNT(*) FROM instances i WHERE {filter}");
    crate::paging::counted(conn, &sql, &count, &[&t, &u, &none, &q, &st], window, row)
}

/// Every instance on `node`, by id, as lists show it.
pub fn placed_on(conn: &Connection, node: NodeId) -> rusqlite::Result<Vec<Instance>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLS}, {NODE_STATUS} FROM instances WHERE node_id = ?1 ORDER BY id"
    ))?;
    stmt.query_map([node.0], row)?.collect()
}

/// What pages show beside an instance: the names behind its ids.
#[derive(Debug, Clone, Default)]
pub struct Names {
    pub image: String,
    pub spec: String,
    pub node: String,
    pub user: String,
}

/// Which instances: scoped by `?1` (tenant) and `?2` (user), and `?3` (one
/// instance) unless NULL.
const NAMED_WHERE: &str = "(?1 IS NULL OR i.tenant_id = ?1) AND (?2 IS NULL OR i.user_id = ?2) \
    AND (?3 IS NULL OR i.id = ?3)";

/// Instances with the names of their image, spec, node and user, by id
/// ([`NAMED_WHERE`] and `also`).
fn named_sql(also: &str) -> String {
    format!(
        "SELECT {}, im.name, s.name, n.name, us.username FROM instances i \
         JOIN images im ON im.id = i.image_id JOIN specs s ON s.id = i.spec_id \
         JOIN nodes n ON n.id = i.node_id JOIN users us ON us.id = i.user_id \
         WHERE {NAMED_WHERE}{also} ORDER BY i.id",
        cols_of_i()
    )
}

fn named_row(r: &Row<'_>) -> rusqlite::Result<(Instance, Names)> {
    Ok((
        row(r)?,
        Names {
            image: r.get(ROW_WIDTH)?,
            spec: r.get(ROW_WIDTH + 1)?,
            node: r.get(ROW_WIDTH + 2)?,
            user: r.get(ROW_WIDTH + 3)?,
        },
    ))
}

/// The scoped instances (all, or only `id`) with the names of their image,
/// spec, node and user.
pub fn list_named(
    conn: &Connection,
    scope: Scope,
    only: Option<InstanceId>,
) -> rusqlite::Result<Vec<(Instance, Names)>> {
    let (t, u) = filters(scope);
    let mut stmt = conn.prepare_cached(&named_sql(""))?;
    stmt.query_map(params![t, u, only], named_row)?.collect()
}

/// [`list_named`] for the rows of `window` that `search` matches, and how
/// many there are.
pub fn list_named_page(
    conn: &Connection,
    scope: Scope,
    search: &Search,
    window: Window,
) -> rusqlite::Result<Page<(Instance, Names)>> {
    let (t, u) = filters(scope);
    let (q, st) = search_params(search);
    let none: Option<i64> = None;
    let also = format!(" AND {}", search_where(&q));
    // Counted without the joins (each joins exactly one row: foreign keys).
    let count = format!("SELECT COUNT(*) FROM instances i WHERE {NAMED_WHERE}{also}");
    crate::paging::counted(
        conn,
        &named_sql(&also),
        &count,
        &[&t, &u, &none, &q, &st],
        window,
        named_row,
    )
}

pub fn get(conn: &Connection, scope: Scope, id: InstanceId) -> rusqlite::Result<Option<Instance>> {
    let (t, u) = filters(scope);
    conn.prepare_cached(&format!("SELECT {COLS}, {NODE_STATUS} FROM instances WHERE id = ?3 AND (?1 IS NULL OR tenant_id = ?1) AND (?2 IS NULL OR user_id = ?2)"))?
    .query_row(params![t, u, id], row)
    .optional()
}

/// Listed, online nodes with what their instances hold (kept in
/// `node_usage` by the schema's triggers, see [`recount_usage`]); `only`
/// restricts to one node.
pub fn snapshots(conn: &Connection, only: Option<NodeId>) -> rusqlite::Result<Vec<NodeSnapshot>> {
    Ok(states(conn, only)?
        .into_iter()
        .filter(|n| n.listed && n.online)
        .map(|n| n.snapshot)
        .collect())
}

/// Every node (or only `only`) with what its instances hold, whether it is
/// listed and whether it is online.
pub fn states(conn: &Connection, only: Option<NodeId>) -> rusqlite::Result<Vec<NodeState>> {
    let mut stmt = conn.prepare_cached(
        "SELECT n.id, n.name, n.gpu_name, n.gpu_count, n.cpu_cores, n.memory_gb, n.system_disk_gb, n.data_disk_gb, \
           COALESCE(u.gpus, 0), COALESCE(u.cpu_cores, 0), COALESCE(u.memory_gb, 0), COALESCE(u.system_disk_gb, 0), \
           COALESCE(u.data_disk_gb, 0), n.listed = 1, n.status = 'online' \
         FROM nodes n LEFT JOIN node_usage u ON u.node_id = n.id \
         WHERE (?1 IS NULL OR n.id = ?1) ORDER BY n.id",
    )?;
    stmt.query_map([only], |r| {
        Ok(NodeState {
            snapshot: NodeSnapshot {
                id: r.get(0)?,
                name: r.get(1)?,
                gpu_name: r.get(2)?,
                total: capacity_at(r, 3)?,
                used: capacity_at(r, 8)?,
            },
            listed: r.get(13)?,
            online: r.get(14)?,
        })
    })?
    .collect()
}

/// Five columns from `at` on: GPUs, CPU cores, memory, system disk, data disk.
fn capacity_at(r: &Row<'_>, at: usize) -> rusqlite::Result<Capacity> {
    Ok(Capacity {
        gpus: r.get(at)?,
        cpu_cores: r.get(at + 1)?,
        memory_gb: r.get(at + 2)?,
        system_disk_gb: r.get(at + 3)?,
        data_disk_gb: r.get(at + 4)?,
    })
}

/// What a tenant's (or a node's) instances hold: how many, and their
/// reservations added up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Usage {
    pub instances: i64,
    pub held: Capacity,
}

/// What tenant `tenant`'s instances hold (for quotas), from `tenant_usage`.
pub fn tenant_usage(conn: &Connection, tenant: i64) -> rusqlite::Result<Usage> {
    conn.query_row(
        "SELECT instances, gpus, cpu_cores, memory_gb, system_disk_gb, data_disk_gb \
         FROM tenant_usage WHERE tenant_id = ?1",
        [tenant],
        |r| {
            Ok(Usage {
                instances: r.get(0)?,
                held: capacity_at(r, 1)?,
            })
        },
    )
    .optional()
    .map(Option::unwrap_or_default)
}

/// The usage tables and how each is counted from `instances`.
const USAGE: [(&str, &str, &str); 2] = [
    ("node_usage", "node_id", "node_id"),
    ("tenant_usage", "tenant_id", "tenant_id"),
];

/// Keys (`node_usage 3`, `tenant_usage 7`) whose row in a usage table
/// differs from a recount of `instances` (all-zero rows count as absent).
pub fn usage_drift(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut drift = Vec::new();
    for (table, key, col) in USAGE {
        let counted = format!(
            "SELECT {col} AS k, COUNT(*), SUM(gpu_count), SUM(cpu_cores), SUM(memory_gb), SUM(system_disk_gb), \
             SUM(data_disk_gb) FROM instances WHERE {col} IS NOT NULL AND reclaimed_at IS NULL GROUP BY {col}"
        );
        let kept = format!(
            "SELECT {key} AS k, instances, gpus, cpu_cores, memory_gb, system_disk_gb, data_disk_gb FROM {table} \
             WHERE instances <> 0 OR gpus <> 0 OR cpu_cores <> 0 OR memory_gb <> 0 OR system_disk_gb <> 0 \
             OR data_disk_gb <> 0"
        );
        let sql = format!(
            "SELECT k FROM (SELECT * FROM ({counted}) EXCEPT SELECT * FROM ({kept})) UNION \
             SELECT k FROM (SELECT * FROM ({kept}) EXCEPT SELECT * FROM ({counted})) ORDER BY k"
        );
        let mut stmt = conn.prepare(&sql)?;
        let keys = stmt.query_map([], |r| r.get::<_, i64>(0))?;
        for k in keys {
            drift.push(format!("{table} {}", k?));
        }
    }
    Ok(drift)
}

/// Checks the usage tables against a recount of `instances` and, where
/// they differ, replaces them with the recount; what differed. Run at
/// every start (within one write transaction).
pub fn recount_usage(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let drift = usage_drift(conn)?;
    if drift.is_empty() {
        return Ok(drift);
    }
    for (table, key, col) in USAGE {
        conn.execute(&format!("DELETE FROM {table}"), [])?;
        conn.execute(
            &format!(
                "INSERT INTO {table} ({key}, instances, gpus, cpu_cores, memory_gb, system_disk_gb, data_disk_gb) \
                 SELECT {col}, COUNT(*), SUM(gpu_count), SUM(cpu_cores), SUM(memory_gb), SUM(system_disk_gb), \
                 SUM(data_disk_gb) FROM instances WHERE {col} IS NOT NULL AND reclaimed_at IS NULL GROUP BY {col}"
            ),
            [],
        )?;
    }
    Ok(drift)
}

/// GPU indices held by the instances of `node`.
pub fn used_gpus(conn: &Connection, node: NodeId) -> rusqlite::Result<Vec<i64>> {
    let mut stmt = conn.prepare_cached("SELECT gpu_indices FROM instances WHERE node_id = ?1")?;
    let lists = stmt
        .query_map([node], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(lists
        .iter()
        .flat_map(|l| serde_json::from_str::<Vec<i64>>(l).unwrap_or_default())
        .collect())
}

pub struct NewInstance<'a> {
    pub name: &'a str,
    pub image_id: i64,
    pub spec_id: i64,
    pub node_id: NodeId,
    pub user_id: i64,
    pub tenant_id: Option<i64>,
    pub gpu_indices: &'a [i64],
    pub reserved: Capacity,
    pub remark: &'a str,
    /// The generation of the process reserving it (`App::generation`).
    pub generation: i64,
    /// The lease end (Unix seconds); none: open-ended.
    pub lease_end: Option<i64>,
}

/// Inserts the reservation (status `creating`); its container and volume
/// are named by `names`, given the new id.
pub fn insert(
    conn: &Connection,
    n: &NewInstance<'_>,
    names: impl FnOnce(InstanceId) -> ObjectNames,
    now: i64,
) -> rusqlite::Result<InstanceId> {
    let r = n.reserved;
    conn.execute(
        "INSERT INTO instances (name, image_id, spec_id, node_id, user_id, tenant_id, status, gpu_indices, gpu_count, \
         cpu_cores, memory_gb, system_disk_gb, data_disk_gb, remark, created_at, updated_at, generation, lease_end) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'creating', ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?14, ?15, ?16)",
        params![
            n.name, n.image_id, n.spec_id, n.node_id, n.user_id, n.tenant_id,
            serde_json::to_string(n.gpu_indices).unwrap_or_else(|_| "[]".into()),
            r.gpus, r.cpu_cores, r.memory_gb, r.system_disk_gb, r.data_disk_gb, n.remark, now, n.generation, n.lease_end
        ],
    )?;
    let id = InstanceId(conn.last_insert_rowid());
    let o = names(id);
    conn.execute(
        "UPDATE instances SET container_name = ?2, volume_name = ?3 WHERE id = ?1",
        params![id, o.container, o.volume],
    )?;
    Ok(id)
}

pub fn delete(conn: &Connection, id: InstanceId) -> rusqlite::Result<bool> {
    Ok(conn.execute("DELETE FROM instances WHERE id = ?1", [id])? == 1)
}

/// Records the container made for a reservation.
pub fn set_created(
    conn: &Connection,
    id: InstanceId,
    container_id: &str,
    status: InstanceStatus,
    warnings: &[Warning],
    now: i64,
) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE instances SET container_id = ?2, status = ?3, warnings = ?4, updated_at = ?5 WHERE id = ?1",
        params![
            id,
            container_id,
            status,
            serde_json::to_string(warnings).unwrap_or_else(|_| "[]".into()),
            now
        ],
    )?;
    Ok(())
}

/// Notes that gpudock itself asks the container to stop at `at` (stop,
/// restart, delete): its death is then expected; `None` after a start.
pub fn mark_stop_requested(
    conn: &Connection,
    id: InstanceId,
    at: Option<i64>,
) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE instances SET stop_requested_at = ?2 WHERE id = ?1",
        params![id, at],
    )?;
    Ok(())
}

/// When gpudock last asked the container to stop, and the instance's node.
pub fn stop_requested(
    conn: &Connection,
    id: InstanceId,
) -> rusqlite::Result<Option<(Option<i64>, NodeId)>> {
    conn.query_row(
        "SELECT stop_requested_at, node_id FROM instances WHERE id = ?1",
        [id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
}

/// Sets the status of instance `id` when its container is `container_id`
/// and the status differs; whether it changed.
pub fn set_status(
    conn: &Connection,
    id: InstanceId,
    container_id: &str,
    status: InstanceStatus,
    now: i64,
) -> rusqlite::Result<bool> {
    Ok(conn.execute(
        "UPDATE instances SET status = ?3, updated_at = ?4 \
         WHERE id = ?1 AND container_id = ?2 AND status <> ?3 AND status <> 'deleting' \
         AND reclaimed_at IS NULL",
        params![id, container_id, status, now],
    )? == 1)
}

/// Marks the instance as being deleted by gpudock (its container going away
/// is then expected, not `missing`) by the process of `generation` (a
/// deletion that a restart interrupted is finished by the reconciler), or
/// with `back`, returns it to `back` after a removal that failed.
pub fn mark_deleting(
    conn: &Connection,
    id: InstanceId,
    back: Option<InstanceStatus>,
    now: i64,
    generation: i64,
) -> rusqlite::Result<()> {
    match back {
        None => conn.execute(
            "UPDATE instances SET status = 'deleting', updated_at = ?2, generation = ?3 WHERE id = ?1",
            params![id, now, generation],
        ),
        Some(s) => conn.execute(
            "UPDATE instances SET status = ?2, updated_at = ?3 WHERE id = ?1 AND status = 'deleting'",
            params![id, s, now],
        ),
    }?;
    Ok(())
}

/// What the reconciler needs of one instance (its status as stored).
#[derive(Debug, Clone)]
pub struct Tracked {
    pub id: InstanceId,
    pub name: String,
    pub container_id: Option<String>,
    pub status: InstanceStatus,
    pub objects: ObjectNames,
    /// The generation of the process that reserved it, or that is
    /// deleting it.
    pub generation: i64,
}

/// The instances placed on `node`.
pub fn on_node(conn: &Connection, node: NodeId) -> rusqlite::Result<Vec<Tracked>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, name, container_id, status, container_name, volume_name, generation \
         FROM instances WHERE node_id = ?1 AND reclaimed_at IS NULL ORDER BY id",
    )?;
    stmt.query_map([node], |r| {
        Ok(Tracked {
            id: r.get(0)?,
            name: r.get(1)?,
            container_id: r.get(2)?,
            status: r.get(3)?,
            objects: ObjectNames {
                container: r.get(4)?,
                volume: r.get(5)?,
            },
            generation: r.get(6)?,
        })
    })?
    .collect()
}

/// Moves the id sequence of instances past `seen` (an id found on a
/// container's label): after a restore of an older backup, the next
/// instance does not take an id that containers still carry.
pub fn skip_ids_through(conn: &Connection, seen: i64) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO sqlite_sequence (name, seq) SELECT 'instances', ?1 \
         WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'instances')",
        [seen],
    )?;
    conn.execute(
        "UPDATE sqlite_sequence SET seq = ?1 WHERE name = 'instances' AND seq < ?1",
        [seen],
    )?;
    Ok(())
}

/// A container labelled for this installation that no instance owns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Orphan {
    pub node_id: NodeId,
    pub container_id: String,
    pub name: String,
    /// The `gpudock.instance` label it carries.
    pub instance_label: String,
    pub state: String,
    pub first_seen: i64,
    pub last_seen: i64,
}

/// Replaces the orphans recorded for `node` with `found`; returns those not
/// recorded before (newly found).
pub fn replace_orphans(
    conn: &Connection,
    node: NodeId,
    found: &[Orphan],
    now: i64,
) -> rusqlite::Result<Vec<Orphan>> {
    let known: std::collections::HashMap<String, i64> = conn
        .prepare_cached(
            "SELECT container_id, first_seen FROM orphan_containers WHERE node_id = ?1",
        )?
        .query_map([node], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    conn.execute("DELETE FROM orphan_containers WHERE node_id = ?1", [node])?;
    let mut fresh = Vec::new();
    for o in found {
        let first_seen = match known.get(&o.container_id) {
            Some(t) => *t,
            None => {
                fresh.push(o.clone());
                now
            }
        };
        conn.execute(
            "INSERT INTO orphan_containers (node_id, container_id, name, instance_label, state, first_seen, last_seen) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![node, o.container_id, o.name, o.instance_label, o.state, first_seen, now],
        )?;
    }
    Ok(fresh)
}

pub fn orphans(conn: &Connection) -> rusqlite::Result<Vec<Orphan>> {
    let mut stmt = conn.prepare_cached(
        "SELECT node_id, container_id, name, instance_label, state, first_seen, last_seen \
         FROM orphan_containers ORDER BY node_id, first_seen",
    )?;
    stmt.query_map([], |r| {
        Ok(Orphan {
            node_id: r.get(0)?,
            container_id: r.get(1)?,
            name: r.get(2)?,
            instance_label: r.get(3)?,
            state: r.get(4)?,
            first_seen: r.get(5)?,
            last_seen: r.get(6)?,
        })
    })?
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{TenantId, UserId};
    use crate::db;

    fn all() -> Window {
        Window::first(1000)
    }

    fn seed(conn: &Connection) -> (i64, i64, i64) {
        conn.execute_batch(
            "INSERT INTO tenants (id, name, company_code, created_at, updated_at) VALUES (1, 'A', 'A', 0, 0), (2, 'B', 'B', 0, 0);
             INSERT INTO users (id, username, role, tenant_id, password_hash, created_at, updated_at) VALUES
               (10, 'a1', 'customer_member', 1, 'h', 0, 0), (11, 'a2', 'customer_member', 1, 'h', 0, 0), (20, 'b1', 'customer_member', 2, 'h', 0, 0);
             INSERT INTO images (id, name, address, created_at, updated_at) VALUES (1, 'i', 'busybox', 0, 0);
             INSERT INTO specs (id, name, gpu_model, gpu_count, cpu_cores, memory_gb, created_at, updated_at) VALUES (1, 's', 'RTX 4090', 2, 2, 4, 0, 0);
             INSERT INTO nodes (id, name, public_ip, private_ip, gpu_name, gpu_count, cpu_cores, memory_gb, status, created_at, updated_at)
               VALUES (1, 'n1', '1.1.1.1', '1.1.1.1', 'RTX 4090', 8, 16, 64, 'online', 0, 0),
                      (2, 'n2', '1.1.1.2', '1.1.1.2', 'RTX 4090', 8, 16, 64, 'unreachable', 0, 0);",
        )
        .unwrap();
        (1, 1, 1)
    }

    fn add(conn: &Connection, user: i64, tenant: i64, gpus: &[i64]) -> InstanceId {
        let reserved = Capacity {
            gpus: gpus.len() as i64,
            cpu_cores: 2,
            memory_gb: 4,
            system_disk_gb: 0,
            data_disk_gb: 0,
        };
        insert(
            conn,
            &NewInstance {
                name: "x",
                image_id: 1,
                spec_id: 1,
                node_id: NodeId(1),
                user_id: user,
                tenant_id: Some(tenant),
                gpu_indices: gpus,
                reserved,
                remark: "",
                generation: 1,
                lease_end: None,
            },
            |id| ObjectNames {
                container: format!("c{id}"),
                volume: format!("v{id}"),
            },
            1,
        )
        .unwrap()
    }

    #[test]
    fn scoping_and_snapshots() {
        let conn = db::memory().unwrap();
        seed(&conn);
        let a1 = add(&conn, 10, 1, &[0, 1]);
        add(&conn, 11, 1, &[2, 3]);
        let b1 = add(&conn, 20, 2, &[4]);
        assert_eq!(
            list(&conn, Scope::All, &Search::default(), all())
                .unwrap()
                .items
                .len(),
            3
        );
        assert_eq!(
            list(&conn, Scope::Tenant(TenantId(1)), &Search::default(), all())
                .unwrap()
                .total,
            2
        );
        assert_eq!(
            list(
                &conn,
                Scope::User(UserId(10), Some(TenantId(1))),
                &Search::default(),
                all()
            )
            .unwrap()
            .items
            .iter()
            .map(|i| i.id)
            .collect::<Vec<_>>(),
            [a1]
        );
        assert!(
            get(&conn, Scope::Tenant(TenantId(1)), b1)
                .unwrap()
                .is_none()
        );
        assert!(
            get(&conn, Scope::User(UserId(11), Some(TenantId(1))), a1)
                .unwrap()
                .is_none()
        );
        assert_eq!(
            get(&conn, Scope::All, a1).unwrap().unwrap().gpu_indices,
            [0, 1]
        );

        let snaps = snapshots(&conn, None).unwrap();
        assert_eq!(snaps.len(), 1, "unreachable nodes are no candidates");
        assert_eq!(
            snaps[0].used,
            Capacity {
                gpus: 5,
                cpu_cores: 6,
                memory_gb: 12,
                system_disk_gb: 0,
                data_disk_gb: 0
            }
        );
        // What instances use cannot be deleted.
        for sql in [
            "DELETE FROM images WHERE id = 1",
            "DELETE FROM specs WHERE id = 1",
            "DELETE FROM nodes WHERE id = 1",
        ] {
            assert!(
                db::is_foreign_key_violation(&conn.execute(sql, []).unwrap_err()),
                "{sql}"
            );
        }
        let mut used = used_gpus(&conn, NodeId(1)).unwrap();
        used.sort();
        assert_eq!(used, [0, 1, 2, 3, 4]);
    }

    /// The usage tables follow every insert, change and delete in the same
    /// transaction, match a recount, and a drift is found and corrected.
    #[test]
    fn usage_tables_match_a_recount() {
        let conn = db::memory().unwrap();
        seed(&conn);
        let a = add(&conn, 10, 1, &[0, 1]);
        let b = add(&conn, 11, 1, &[2]);
        add(&conn, 20, 2, &[3]);
        assert_eq!(usage_drift(&conn).unwrap(), Vec::<String>::new());
        let t1 = tenant_usage(&conn, 1).unwrap();
        assert_eq!((t1.instances, t1.held.gpus, t1.held.cpu_cores), (2, 3, 4));
        assert_eq!(snapshots(&conn, Some(NodeId(1))).unwrap()[0].used.gpus, 4);
        // A reservation rolled back leaves nothing behind.
        {
            let tx = conn.unchecked_transaction().unwrap();
            add(&tx, 10, 1, &[4, 5]);
            assert_eq!(tenant_usage(&tx, 1).unwrap().instances, 3);
            tx.rollback().unwrap();
        }
        assert_eq!(tenant_usage(&conn, 1).unwrap(), t1);
        delete(&conn, a).unwrap();
        conn.execute(
            "UPDATE instances SET node_id = 2, cpu_cores = 8 WHERE id = ?1",
            [b],
        )
        .unwrap();
        assert_eq!(usage_drift(&conn).unwrap(), Vec::<String>::new());
        let t1 = tenant_usage(&conn, 1).unwrap();
        assert_eq!((t1.instances, t1.held.gpus, t1.held.cpu_cores), (1, 1, 8));
        delete(&conn, b).unwrap();
        assert_eq!(tenant_usage(&conn, 1).unwrap(), Usage::default());
        assert_eq!(tenant_usage(&conn, 99).unwrap(), Usage::default());
        assert_eq!(usage_drift(&conn).unwrap(), Vec::<String>::new());
        // A drift (a table edited by hand, triggers lost) is corrected.
        conn.execute_batch(
            "UPDATE node_usage SET gpus = 7 WHERE node_id = 1; DELETE FROM tenant_usage WHERE tenant_id = 2;
             INSERT INTO tenant_usage (tenant_id, instances) VALUES (5, 1);",
        )
        .unwrap();
        assert_eq!(
            recount_usage(&conn).unwrap(),
            ["node_usage 1", "tenant_usage 2", "tenant_usage 5"]
        );
        assert_eq!(usage_drift(&conn).unwrap(), Vec::<String>::new());
        assert_eq!(snapshots(&conn, None).unwrap()[0].used.gpus, 1);
        assert_eq!(recount_usage(&conn).unwrap(), Vec::<String>::new());
    }

    /// Ids carried by containers (orphans after a restore) are skipped; the
    /// sequence never goes back.
    #[test]
    fn the_id_sequence_moves_past_ids_seen_on_containers() {
        let conn = db::memory().unwrap();
        seed(&conn);
        let first = add(&conn, 10, 1, &[]);
        skip_ids_through(&conn, first.0 + 10).unwrap();
        skip_ids_through(&conn, first.0 + 5).unwrap();
        let next = add(&conn, 10, 1, &[]);
        assert_eq!(next.0, first.0 + 11);
        let got = get(&conn, Scope::All, next).unwrap().unwrap();
        assert_eq!(got.objects.container, format!("c{next}"));
    }
}
