//! SQL for datasets. Two scopes: what a user *sees* (and may mount and
//! read: admin all; owner the tenant's; member their own and the tenant's
//! own datasets) and what a user *manages* (fills, describes, deletes:
//! admin all; owner the tenant's, members' included; member their own).

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::model::{Dataset, mount_path};
use crate::auth::Scope;
use crate::ids::{InstanceId, NodeId};

/// (tenant, user) parameters of a scope.
fn of(scope: Scope) -> (Option<i64>, Option<i64>) {
    match scope {
        Scope::All => (None, None),
        Scope::Tenant(t) => (Some(t.0), None),
        Scope::User(u, t) => (t.map(|t| t.0), Some(u.0)),
    }
}

/// Rows `?1`/`?2` (tenant, user) see.
const SEES: &str = "((?2 IS NULL AND (?1 IS NULL OR d.tenant_id = ?1)) \
    OR (?2 IS NOT NULL AND (d.user_id = ?2 OR (d.user_id IS NULL AND d.tenant_id = ?1))))";
/// Rows `?1`/`?2` manage.
const MANAGES: &str =
    "((?2 IS NULL AND (?1 IS NULL OR d.tenant_id = ?1)) OR (?2 IS NOT NULL AND d.user_id = ?2))";

const SELECT: &str = "SELECT d.id, d.name, d.node_id, n.name, d.tenant_id, d.user_id, \
    COALESCE(u.username, t.name, ''), d.description, d.size_bytes, d.size_at, d.created_at, d.updated_at, d.volume_name \
    FROM datasets d JOIN nodes n ON n.id = d.node_id LEFT JOIN users u ON u.id = d.user_id \
    LEFT JOIN tenants t ON t.id = d.tenant_id";

fn row(r: &Row<'_>) -> rusqlite::Result<Dataset> {
    let name: String = r.get(1)?;
    Ok(Dataset {
        id: r.get(0)?,
        mount_path: mount_path(&name),
        name,
        node_id: r.get(2)?,
        node_name: r.get(3)?,
        tenant_id: r.get(4)?,
        user_id: r.get(5)?,
        owner: r.get(6)?,
        description: r.get(7)?,
        size_bytes: r.get(8)?,
        size_at: r.get(9)?,
        created_at: r.get(10)?,
        updated_at: r.get(11)?,
        volume_name: r.get(12)?,
    })
}

/// What `scope` sees (on `node` only, when given), by name.
pub fn list(
    conn: &Connection,
    scope: Scope,
    node: Option<NodeId>,
) -> rusqlite::Result<Vec<Dataset>> {
    let (t, u) = of(scope);
    let mut stmt = conn.prepare_cached(&format!(
        "{SELECT} WHERE {SEES} AND (?3 IS NULL OR d.node_id = ?3) ORDER BY d.name, d.id"
    ))?;
    stmt.query_map(params![t, u, node], row)?.collect()
}

/// Dataset `id` if `scope` sees it.
pub fn get(conn: &Connection, scope: Scope, id: i64) -> rusqlite::Result<Option<Dataset>> {
    let (t, u) = of(scope);
    conn.query_row(
        &format!("{SELECT} WHERE d.id = ?3 AND {SEES}"),
        params![t, u, id],
        row,
    )
    .optional()
}

/// Dataset `id` regardless of scope (background work).
pub fn get_any(conn: &Connection, id: i64) -> rusqlite::Result<Option<Dataset>> {
    get(conn, Scope::All, id)
}

/// Whether `scope` manages dataset `id`.
pub fn manages(conn: &Connection, scope: Scope, id: i64) -> rusqlite::Result<bool> {
    let (t, u) = of(scope);
    conn.query_row(
        &format!("SELECT EXISTS (SELECT 1 FROM datasets d WHERE d.id = ?3 AND {MANAGES})"),
        params![t, u, id],
        |r| r.get(0),
    )
}

/// The datasets `scope` sees named `name`, or with id `name`.
pub fn named(conn: &Connection, scope: Scope, name: &str) -> rusqlite::Result<Vec<Dataset>> {
    let (t, u) = of(scope);
    let mut stmt = conn.prepare_cached(&format!(
        "{SELECT} WHERE {SEES} AND (d.name = ?3 OR CAST(d.id AS TEXT) = ?3) ORDER BY d.name <> ?3, d.id"
    ))?;
    stmt.query_map(params![t, u, name], row)?.collect()
}

pub struct NewDataset<'a> {
    pub name: &'a str,
    pub node_id: NodeId,
    pub tenant_id: Option<i64>,
    pub user_id: Option<i64>,
    pub description: &'a str,
    pub created_by: i64,
}

/// Inserts a dataset whose volume is named by `volume` given the new id.
pub fn insert(
    conn: &Connection,
    n: &NewDataset<'_>,
    volume: impl FnOnce(i64) -> String,
    now: i64,
) -> rusqlite::Result<i64> {
    conn.execute(
        "INSERT INTO datasets (name, node_id, tenant_id, user_id, description, volume_name, created_by, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, '', ?6, ?7, ?7)",
        params![n.name, n.node_id, n.tenant_id, n.user_id, n.description, n.created_by, now],
    )?;
    let id = conn.last_insert_rowid();
    conn.execute(
        "UPDATE datasets SET volume_name = ?2 WHERE id = ?1",
        params![id, volume(id)],
    )?;
    Ok(id)
}

pub fn delete(conn: &Connection, id: i64) -> rusqlite::Result<bool> {
    Ok(conn.execute("DELETE FROM datasets WHERE id = ?1", [id])? == 1)
}

pub fn set_description(conn: &Connection, id: i64, text: &str, now: i64) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE datasets SET description = ?2, updated_at = ?3 WHERE id = ?1",
        params![id, text, now],
    )?;
    Ok(())
}

/// The names of the instances that mount dataset `id`.
pub fn used_by(conn: &Connection, id: i64) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT i.name FROM instance_datasets x JOIN instances i ON i.id = x.instance_id \
         WHERE x.dataset_id = ?1 ORDER BY i.id",
    )?;
    stmt.query_map([id], |r| r.get(0))?.collect()
}

/// The datasets instance `id` mounts.
pub fn of_instance(conn: &Connection, id: InstanceId) -> rusqlite::Result<Vec<Dataset>> {
    let mut stmt = conn.prepare_cached(&format!(
        "{SELECT} JOIN instance_datasets x ON x.dataset_id = d.id WHERE x.instance_id = ?1 ORDER BY d.name"
    ))?;
    stmt.query_map([id], row)?.collect()
}

pub fn attach(conn: &Connection, instance: InstanceId, dataset: i64) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO instance_datasets (instance_id, dataset_id) VALUES (?1, ?2)",
        params![instance, dataset],
    )?;
    Ok(())
}

/// Marks the dataset's transfer container in use now.
pub fn touch(conn: &Connection, id: i64, now: i64) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE datasets SET last_used_at = ?2 WHERE id = ?1",
        params![id, now],
    )?;
    Ok(())
}

/// Its files changed: the size is measured again.
pub fn changed(conn: &Connection, id: i64) -> rusqlite::Result<()> {
    conn.execute("UPDATE datasets SET size_at = NULL WHERE id = ?1", [id])?;
    Ok(())
}

pub fn set_size(conn: &Connection, id: i64, bytes: u64, now: i64) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE datasets SET size_bytes = ?2, size_at = ?3 WHERE id = ?1",
        params![id, bytes as i64, now],
    )?;
    Ok(())
}

/// (id, last use, size measured) of the datasets on `node`.
pub fn on_node(conn: &Connection, node: NodeId) -> rusqlite::Result<Vec<(i64, i64, bool)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, last_used_at, size_at IS NOT NULL FROM datasets WHERE node_id = ?1 ORDER BY id",
    )?;
    stmt.query_map([node], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{TenantId, UserId};

    fn seed(c: &Connection) {
        c.execute_batch(
            "INSERT INTO tenants (id, name, company_code, created_at, updated_at) VALUES (1, 'A', 'A', 0, 0), (2, 'B', 'B', 0, 0);
             INSERT INTO users (id, username, role, tenant_id, password_hash, created_at, updated_at) VALUES
               (1, 'root', 'admin', NULL, 'h', 0, 0),
               (10, 'a1', 'customer_member', 1, 'h', 0, 0), (11, 'a2', 'customer_member', 1, 'h', 0, 0),
               (12, 'aown', 'customer_owner', 1, 'h', 0, 0), (20, 'b1', 'customer_member', 2, 'h', 0, 0);
             INSERT INTO nodes (id, name, public_ip, private_ip, gpu_name, gpu_count, cpu_cores, memory_gb, status, created_at, updated_at)
               VALUES (1, 'n1', '1.1.1.1', '1.1.1.1', 'RTX 4090', 8, 16, 64, 'online', 0, 0);",
        )
        .unwrap();
    }

    fn add(c: &Connection, name: &str, tenant: Option<i64>, user: Option<i64>) -> i64 {
        let n = NewDataset {
            name,
            node_id: NodeId(1),
            tenant_id: tenant,
            user_id: user,
            description: "",
            created_by: user.unwrap_or(12),
        };
        insert(c, &n, |id| format!("vol{id}"), 1).unwrap()
    }

    #[test]
    fn members_see_their_own_and_their_tenants_and_manage_their_own() {
        let c = crate::db::memory().unwrap();
        seed(&c);
        let shared = add(&c, "imagenet", Some(1), None);
        let mine = add(&c, "mine", Some(1), Some(10));
        let theirs = add(&c, "theirs", Some(1), Some(11));
        let other = add(&c, "imagenet", Some(2), None);
        let a1 = Scope::User(UserId(10), Some(TenantId(1)));
        let owner = Scope::Tenant(TenantId(1));
        let names = |s| {
            list(&c, s, None)
                .unwrap()
                .into_iter()
                .map(|d| d.id)
                .collect::<Vec<_>>()
        };
        assert_eq!(names(a1), [shared, mine]);
        assert_eq!(names(owner), [shared, mine, theirs]);
        assert_eq!(names(Scope::All).len(), 4);
        assert!(get(&c, a1, theirs).unwrap().is_none());
        assert!(get(&c, a1, other).unwrap().is_none());
        assert!(manages(&c, a1, mine).unwrap());
        assert!(
            !manages(&c, a1, shared).unwrap(),
            "the tenant's dataset: owners manage it"
        );
        assert!(manages(&c, owner, shared).unwrap() && manages(&c, owner, theirs).unwrap());
        assert!(!manages(&c, owner, other).unwrap());
        let d = get(&c, a1, shared).unwrap().unwrap();
        assert_eq!(
            (d.owner.as_str(), d.volume_name.as_str()),
            ("A", format!("vol{shared}").as_str())
        );
        assert_eq!(get(&c, a1, mine).unwrap().unwrap().owner, "a1");
        assert_eq!(
            named(&c, a1, "imagenet").unwrap().len(),
            1,
            "the other tenant's is not seen"
        );
        assert_eq!(named(&c, a1, &mine.to_string()).unwrap()[0].name, "mine");
        // Names are unique within a tenant, not across tenants.
        let dup = NewDataset {
            name: "mine",
            node_id: NodeId(1),
            tenant_id: Some(1),
            user_id: None,
            description: "",
            created_by: 12,
        };
        assert!(crate::db::is_unique_violation(
            &insert(&c, &dup, |i| format!("v{i}"), 1).unwrap_err()
        ));
    }

    #[test]
    fn a_dataset_in_use_cannot_be_deleted() {
        let c = crate::db::memory().unwrap();
        seed(&c);
        c.execute_batch(
            "INSERT INTO images (id, name, address, created_at, updated_at) VALUES (1, 'i', 'busybox', 0, 0);
             INSERT INTO specs (id, name, gpu_model, gpu_count, cpu_cores, memory_gb, created_at, updated_at) VALUES (1, 's', 'RTX 4090', 0, 1, 1, 0, 0);
             INSERT INTO instances (id, name, image_id, spec_id, node_id, user_id, tenant_id, status, gpu_indices, gpu_count, cpu_cores, memory_gb, system_disk_gb, data_disk_gb, created_at, updated_at)
               VALUES (5, 'train', 1, 1, 1, 10, 1, 'running', '[]', 0, 1, 1, 0, 0, 0, 0);",
        )
        .unwrap();
        let d = add(&c, "coco", Some(1), Some(10));
        attach(&c, InstanceId(5), d).unwrap();
        assert_eq!(used_by(&c, d).unwrap(), ["train"]);
        assert_eq!(of_instance(&c, InstanceId(5)).unwrap()[0].name, "coco");
        assert!(crate::db::is_foreign_key_violation(
            &delete(&c, d).unwrap_err()
        ));
        c.execute("DELETE FROM instances WHERE id = 5", []).unwrap();
        assert!(used_by(&c, d).unwrap().is_empty());
        assert!(delete(&c, d).unwrap());
    }
}
