//! SQL for compute nodes. Sealed columns are written as age ciphertext and
//! read only by `connection`, which hands them to the sealer.

use crate::paging::{Page, Search, Window};
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::model::{Node, NodeFields, Status, Used};
use crate::ids::NodeId;

const COLS: &str = "id, name, region, cpu_cores, memory_gb, system_disk_gb, data_disk_gb, public_ip, private_ip, \
    ssh_port, username, password_sealed IS NOT NULL, gpu_name, gpu_count, docker_endpoint, tls_enabled, tls_ca_cert, \
    tls_client_cert, tls_client_key_sealed IS NOT NULL, listed, remark, status, last_seen_at, last_error, last_report, \
    created_at, updated_at";

fn row(r: &Row<'_>) -> rusqlite::Result<Node> {
    let report: Option<String> = r.get(24)?;
    Ok(Node {
        id: r.get(0)?,
        name: r.get(1)?,
        region: r.get(2)?,
        cpu_cores: r.get(3)?,
        memory_gb: r.get(4)?,
        system_disk_gb: r.get(5)?,
        data_disk_gb: r.get(6)?,
        public_ip: r.get(7)?,
        private_ip: r.get(8)?,
        ssh_port: r.get(9)?,
        username: r.get(10)?,
        has_password: r.get(11)?,
        gpu_name: r.get(12)?,
        gpu_count: r.get(13)?,
        docker_endpoint: r.get(14)?,
        tls_enabled: r.get(15)?,
        tls_ca_cert: r.get(16)?,
        tls_client_cert: r.get(17)?,
        has_client_key: r.get(18)?,
        listed: r.get(19)?,
        remark: r.get(20)?,
        status: r.get(21)?,
        last_seen_at: r.get(22)?,
        last_error: r.get(23)?,
        last_report: report.and_then(|s| serde_json::from_str(&s).ok()),
        created_at: r.get(25)?,
        updated_at: r.get(26)?,
    })
}

/// Every node, by id (for choices; lists page with [`list`]).
pub fn all(conn: &Connection) -> rusqlite::Result<Vec<Node>> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {COLS} FROM nodes ORDER BY id"))?;
    stmt.query_map([], row)?.collect()
}

/// The nodes of `window` that `search` matches (`q` in the name, region,
/// endpoint, public address or GPU name; `status` the node's), by id, and
/// how many there are. A status outside [`Status`]'s words is the caller's
/// field error, checked before.
pub fn list(conn: &Connection, search: &Search, window: Window) -> rusqlite::Result<Page<Node>> {
    let sql = format!(
        "SELECT {COLS} FROM nodes WHERE (?1 IS NULL OR name LIKE ?1 ESCAPE '\\' \
         OR region LIKE ?1 ESCAPE '\\' OR docker_endpoint LIKE ?1 ESCAPE '\\' \
         OR public_ip LIKE ?1 ESCAPE '\\' OR gpu_name LIKE ?1 ESCAPE '\\') \
         AND (?2 IS NULL OR status = ?2) ORDER BY id"
    );
    crate::paging::query(
        conn,
        &sql,
        &[&search.like(), &search.status_param()],
        window,
        row,
    )
}

/// What the instances on `node` hold (zero for a node without any).
pub fn used(conn: &Connection, node: NodeId) -> rusqlite::Result<Used> {
    conn.prepare_cached(
        "SELECT instances, gpus, cpu_cores, memory_gb FROM node_usage WHERE node_id = ?1",
    )?
    .query_row([node], |r| {
        Ok(Used {
            instances: r.get(0)?,
            gpus: r.get(1)?,
            cpu_cores: r.get(2)?,
            memory_gb: r.get(3)?,
        })
    })
    .optional()
    .map(Option::unwrap_or_default)
}

pub fn get(conn: &Connection, id: NodeId) -> rusqlite::Result<Option<Node>> {
    conn.query_row(
        &format!("SELECT {COLS} FROM nodes WHERE id = ?1"),
        [id],
        row,
    )
    .optional()
}

pub fn ids(conn: &Connection) -> rusqlite::Result<Vec<NodeId>> {
    let mut stmt = conn.prepare_cached("SELECT id FROM nodes")?;
    stmt.query_map([], |r| r.get(0))?.collect()
}

/// A sealed column's change: keep, clear, or new ciphertext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sealed {
    Keep,
    Clear,
    Set(Vec<u8>),
}

impl Sealed {
    /// (whether to write, the value to write)
    fn write(&self) -> (bool, Option<&[u8]>) {
        match self {
            Sealed::Keep => (false, None),
            Sealed::Clear => (true, None),
            Sealed::Set(b) => (true, Some(b)),
        }
    }
}

pub fn insert(
    conn: &Connection,
    f: &NodeFields,
    password: &Sealed,
    key: &Sealed,
    now: i64,
) -> rusqlite::Result<NodeId> {
    conn.execute(
        "INSERT INTO nodes (name, region, cpu_cores, memory_gb, system_disk_gb, data_disk_gb, public_ip, private_ip, \
         ssh_port, username, gpu_name, gpu_count, docker_endpoint, tls_enabled, tls_ca_cert, tls_client_cert, listed, \
         remark, password_sealed, tls_client_key_sealed, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?21)",
        params![
            f.name, f.region, f.cpu_cores, f.memory_gb, f.system_disk_gb, f.data_disk_gb, f.public_ip, f.private_ip,
            f.ssh_port, f.username, f.gpu_name, f.gpu_count, f.docker_endpoint, f.tls_enabled, f.tls_ca_cert,
            f.tls_client_cert, f.listed, f.remark, password.write().1, key.write().1, now
        ],
    )?;
    Ok(NodeId(conn.last_insert_rowid()))
}

pub fn update(
    conn: &Connection,
    id: NodeId,
    f: &NodeFields,
    password: &Sealed,
    key: &Sealed,
    now: i64,
) -> rusqlite::Result<()> {
    let (pw_write, pw) = password.write();
    let (key_write, k) = key.write();
    conn.execute(
        "UPDATE nodes SET name = ?2, region = ?3, cpu_cores = ?4, memory_gb = ?5, system_disk_gb = ?6, \
         data_disk_gb = ?7, public_ip = ?8, private_ip = ?9, ssh_port = ?10, username = ?11, gpu_name = ?12, \
         gpu_count = ?13, docker_endpoint = ?14, tls_enabled = ?15, tls_ca_cert = ?16, tls_client_cert = ?17, \
         listed = ?18, remark = ?19, \
         password_sealed = CASE WHEN ?20 THEN ?21 ELSE password_sealed END, \
         tls_client_key_sealed = CASE WHEN ?22 THEN ?23 ELSE tls_client_key_sealed END, \
         updated_at = ?24 WHERE id = ?1",
        params![
            id, f.name, f.region, f.cpu_cores, f.memory_gb, f.system_disk_gb, f.data_disk_gb, f.public_ip,
            f.private_ip, f.ssh_port, f.username, f.gpu_name, f.gpu_count, f.docker_endpoint, f.tls_enabled,
            f.tls_ca_cert, f.tls_client_cert, f.listed, f.remark, pw_write, pw, key_write, k, now
        ],
    )?;
    Ok(())
}

pub fn delete(conn: &Connection, id: NodeId) -> rusqlite::Result<bool> {
    Ok(conn.execute("DELETE FROM nodes WHERE id = ?1", [id])? == 1)
}

/// What connecting needs: endpoint, TLS flag, CA, client cert, sealed key.
pub struct ConnectionRow {
    pub endpoint: String,
    pub tls_enabled: bool,
    pub ca: String,
    pub cert: String,
    pub key_sealed: Option<Vec<u8>>,
}

pub fn connection(conn: &Connection, id: NodeId) -> rusqlite::Result<Option<ConnectionRow>> {
    conn.query_row(
        "SELECT docker_endpoint, tls_enabled, tls_ca_cert, tls_client_cert, tls_client_key_sealed FROM nodes WHERE id = ?1",
        [id],
        |r| {
            Ok(ConnectionRow { endpoint: r.get(0)?, tls_enabled: r.get(1)?, ca: r.get(2)?, cert: r.get(3)?, key_sealed: r.get(4)? })
        },
    )
    .optional()
}

/// Records a probe result: online with the report, or unreachable with why.
pub fn set_status(
    conn: &Connection,
    id: NodeId,
    status: Status,
    error: &str,
    report: Option<&str>,
    now: i64,
) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE nodes SET status = ?2, last_error = ?3, \
         last_seen_at = CASE WHEN ?2 = 'online' THEN ?5 ELSE last_seen_at END, \
         last_report = COALESCE(?4, last_report) WHERE id = ?1",
        params![id, status, error, report, now],
    )?;
    Ok(())
}

/// Hardware from the daemon (and NVML when local): CPU and memory always,
/// GPU name and count only when known.
/// What Sync hardware read; `None` parts keep the recorded figures (asked
/// of the admin when nothing on the node reports them).
pub struct Hardware<'a> {
    pub cpus: i64,
    pub memory_gb: i64,
    pub gpu: Option<(&'a str, i64)>,
    /// System and data disk in GiB.
    pub disks: Option<(i64, i64)>,
}

pub fn set_hardware(
    conn: &Connection,
    id: NodeId,
    hw: &Hardware<'_>,
    now: i64,
) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE nodes SET cpu_cores = ?2, memory_gb = ?3, gpu_name = COALESCE(?4, gpu_name), \
         gpu_count = COALESCE(?5, gpu_count), system_disk_gb = COALESCE(?6, system_disk_gb), \
         data_disk_gb = COALESCE(?7, data_disk_gb), updated_at = ?8 WHERE id = ?1",
        params![
            id,
            hw.cpus,
            hw.memory_gb,
            hw.gpu.map(|g| g.0),
            hw.gpu.map(|g| g.1),
            hw.disks.map(|d| d.0),
            hw.disks.map(|d| d.1),
            now
        ],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db;

    #[test]
    fn sealed_columns_keep_set_and_clear() {
        let conn = db::memory().unwrap();
        let mut f = NodeFields::empty();
        f.name = "n1".into();
        f.public_ip = "1.2.3.4".into();
        f.private_ip = "10.0.0.1".into();
        let id = insert(
            &conn,
            &f,
            &Sealed::Set(b"cipher".to_vec()),
            &Sealed::Keep,
            1,
        )
        .unwrap();
        let n = get(&conn, id).unwrap().unwrap();
        assert!(n.has_password && !n.has_client_key);
        update(&conn, id, &f, &Sealed::Keep, &Sealed::Set(b"k".to_vec()), 2).unwrap();
        let n = get(&conn, id).unwrap().unwrap();
        assert!(n.has_password && n.has_client_key);
        update(&conn, id, &f, &Sealed::Clear, &Sealed::Keep, 3).unwrap();
        let n = get(&conn, id).unwrap().unwrap();
        assert!(!n.has_password && n.has_client_key);
        assert_eq!(
            connection(&conn, id)
                .unwrap()
                .unwrap()
                .key_sealed
                .as_deref(),
            Some(&b"k"[..])
        );

        set_status(&conn, id, Status::Online, "", Some("{\"cpus\":2}"), 10).unwrap();
        set_status(&conn, id, Status::Unreachable, "refused", None, 20).unwrap();
        let n = get(&conn, id).unwrap().unwrap();
        assert_eq!(
            (n.status, n.last_seen_at, n.last_error.as_str()),
            (Status::Unreachable, Some(10), "refused")
        );
        assert_eq!(n.last_report.unwrap()["cpus"], 2);
        assert!(db::is_unique_violation(
            &insert(&conn, &f, &Sealed::Keep, &Sealed::Keep, 1).unwrap_err()
        ));
    }
}
