//! SQL of metering: the intervals a scope reaches, and the start-up
//! reconcile of open intervals with instance statuses.

use rusqlite::{Connection, params};

use super::model::Interval;
use crate::ids::Scope;

/// Intervals overlapping [from, to) (all when no window) of the instances
/// `scope` reaches, narrowed by the `user` and `tenant` filters. Scoping is
/// in the WHERE clause: a member reaches their own, an owner their tenant's.
pub fn intervals(
    conn: &Connection,
    scope: Scope,
    user: Option<i64>,
    tenant: Option<i64>,
    window: Option<(i64, i64)>,
    instance: Option<i64>,
) -> rusqlite::Result<Vec<Interval>> {
    let (st, su) = match scope {
        Scope::All => (None, None),
        Scope::Tenant(t) => (Some(t.0), None),
        Scope::User(u, _) => (None, Some(u.0)),
    };
    let (from, to) = window.map_or((None, None), |(f, t)| (Some(f), Some(t)));
    let mut stmt = conn.prepare_cached(
        "SELECT v.instance_id, v.instance_name, v.user_id, COALESCE(u.username, ''), v.tenant_id, t.name, \
         v.gpu_count, v.cpu_cores, v.price_cents, v.started_at, v.ended_at \
         FROM instance_intervals v LEFT JOIN users u ON u.id = v.user_id LEFT JOIN tenants t ON t.id = v.tenant_id \
         WHERE (?1 IS NULL OR v.tenant_id = ?1) AND (?2 IS NULL OR v.user_id = ?2) \
         AND (?3 IS NULL OR v.user_id = ?3) AND (?4 IS NULL OR v.tenant_id = ?4) \
         AND (?5 IS NULL OR v.ended_at IS NULL OR v.ended_at > ?5) AND (?6 IS NULL OR v.started_at < ?6) \
         AND (?7 IS NULL OR v.instance_id = ?7) \
         ORDER BY v.instance_id, v.started_at",
    )?;
    stmt.query_map(params![st, su, user, tenant, from, to, instance], |r| {
        Ok(Interval {
            instance_id: r.get(0)?,
            instance_name: r.get(1)?,
            user_id: r.get(2)?,
            username: r.get(3)?,
            tenant_id: r.get(4)?,
            tenant_name: r.get(5)?,
            gpu_count: r.get(6)?,
            cpu_cores: r.get(7)?,
            price_cents: r.get(8)?,
            started_at: r.get(9)?,
            ended_at: r.get(10)?,
        })
    })?
    .collect()
}

/// Open intervals of instances not running (or gone) are closed at the
/// best known time (the instance's last status change, else `now`); running
/// instances without an open interval get one from `now`. How many of each.
pub fn reconcile(conn: &Connection, now: i64) -> rusqlite::Result<(usize, usize)> {
    let closed = conn.execute(
        "UPDATE instance_intervals SET ended_at = MAX(started_at, \
             COALESCE((SELECT i.updated_at FROM instances i WHERE i.id = instance_intervals.instance_id), ?1)) \
         WHERE ended_at IS NULL AND NOT EXISTS (SELECT 1 FROM instances i \
             WHERE i.id = instance_intervals.instance_id AND i.status = 'running')",
        [now],
    )?;
    let opened = conn.execute(
        "INSERT INTO instance_intervals \
         (instance_id, instance_name, user_id, tenant_id, gpu_count, cpu_cores, price_cents, started_at) \
         SELECT id, name, user_id, tenant_id, gpu_count, cpu_cores, price_cents, ?1 FROM instances i \
         WHERE status = 'running' AND NOT EXISTS (SELECT 1 FROM instance_intervals v \
             WHERE v.instance_id = i.id AND v.ended_at IS NULL)",
        [now],
    )?;
    Ok((closed, opened))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db;
    use crate::ids::{TenantId, UserId};

    fn seed(conn: &Connection) {
        conn.execute_batch(
            "INSERT INTO tenants (id, name, company_code, created_at, updated_at) VALUES (1, 'A', 'A', 0, 0), (2, 'B', 'B', 0, 0);
             INSERT INTO users (id, username, role, tenant_id, password_hash, created_at, updated_at) VALUES
               (10, 'a1', 'customer_member', 1, 'h', 0, 0), (20, 'b1', 'customer_member', 2, 'h', 0, 0);
             INSERT INTO images (id, name, address, created_at, updated_at) VALUES (1, 'i', 'busybox', 0, 0);
             INSERT INTO specs (id, name, gpu_model, gpu_count, cpu_cores, memory_gb, price_cents, created_at, updated_at)
               VALUES (1, 's', 'RTX 4090', 2, 4, 4, 250, 0, 0);
             INSERT INTO nodes (id, name, public_ip, private_ip, gpu_name, gpu_count, cpu_cores, memory_gb, status, created_at, updated_at)
               VALUES (1, 'n1', '1.1.1.1', '1.1.1.1', 'RTX 4090', 8, 16, 64, 'online', 0, 0);",
        )
        .unwrap();
    }

    fn add(conn: &Connection, user: i64, tenant: i64, status: &str) -> i64 {
        conn.execute(
            "INSERT INTO instances (name, image_id, spec_id, node_id, user_id, tenant_id, status, gpu_indices, gpu_count, \
             cpu_cores, memory_gb, system_disk_gb, data_disk_gb, remark, created_at, updated_at, generation) \
             VALUES ('x', 1, 1, 1, ?1, ?2, ?3, '[0,1]', 2, 4, 4, 0, 0, '', 1, 1, 1)",
            params![user, tenant, status],
        )
        .unwrap();
        conn.last_insert_rowid()
    }

    fn set(conn: &Connection, id: i64, status: &str, at: i64) {
        conn.execute(
            "UPDATE instances SET status = ?2, updated_at = ?3 WHERE id = ?1",
            params![id, status, at],
        )
        .unwrap();
    }

    fn spans(conn: &Connection, id: i64) -> Vec<(i64, Option<i64>, i64)> {
        let mut s = conn
            .prepare("SELECT started_at, ended_at, price_cents FROM instance_intervals WHERE instance_id = ?1 ORDER BY id")
            .unwrap();
        s.query_map([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    fn tenant_count(conn: &Connection, t: i64) -> (i64, i64) {
        conn.query_row(
            "SELECT COALESCE(SUM(instances), 0), COALESCE(SUM(gpus), 0) FROM tenant_usage WHERE tenant_id = ?1",
            [t],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
    }

    #[test]
    fn statuses_open_and_close_intervals_at_the_price_of_placement() {
        let conn = db::memory().unwrap();
        seed(&conn);
        let a = add(&conn, 10, 1, "creating");
        conn.execute("UPDATE specs SET price_cents = 999", [])
            .unwrap();
        set(&conn, a, "running", 1000);
        set(&conn, a, "running", 1500);
        set(&conn, a, "exited", 4600);
        set(&conn, a, "running", 5000);
        assert_eq!(
            spans(&conn, a),
            [(1000, Some(4600), 250), (5000, None, 250)]
        );
        // Scoped in SQL: the other tenant's member sees nothing of it.
        let mine = intervals(
            &conn,
            Scope::User(UserId(10), Some(TenantId(1))),
            None,
            None,
            None,
            None,
        )
        .unwrap();
        assert_eq!(mine.len(), 2);
        assert!(
            intervals(
                &conn,
                Scope::User(UserId(20), Some(TenantId(2))),
                None,
                None,
                None,
                None
            )
            .unwrap()
            .is_empty()
        );
        assert!(
            intervals(&conn, Scope::Tenant(TenantId(2)), None, None, None, None)
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            intervals(&conn, Scope::All, None, Some(1), Some((4600, 4700)), None)
                .unwrap()
                .len(),
            0
        );
        assert_eq!(
            intervals(&conn, Scope::All, None, Some(1), Some((4000, 4700)), None)
                .unwrap()
                .len(),
            1
        );
        // Deleted: closed.
        conn.execute("DELETE FROM instances WHERE id = ?1", [a])
            .unwrap();
        assert!(spans(&conn, a)[1].1.is_some());
    }

    #[test]
    fn reconcile_closes_stale_and_opens_missing_intervals() {
        let conn = db::memory().unwrap();
        seed(&conn);
        let a = add(&conn, 10, 1, "running");
        let b = add(&conn, 20, 2, "creating");
        set(&conn, b, "running", 100);
        // A status changed with the triggers lost, say: b is exited now.
        conn.execute(
            "UPDATE instances SET status = 'exited', updated_at = 300 WHERE id = ?1",
            [b],
        )
        .unwrap();
        conn.execute(
            "UPDATE instance_intervals SET ended_at = NULL WHERE instance_id = ?1",
            [b],
        )
        .unwrap();
        assert_eq!(reconcile(&conn, 900).unwrap(), (1, 1));
        assert_eq!(spans(&conn, a), [(900, None, 250)]);
        assert_eq!(spans(&conn, b), [(100, Some(300), 250)]);
        assert_eq!(reconcile(&conn, 950).unwrap(), (0, 0));
    }

    #[test]
    fn a_reclaimed_instance_counts_no_more_in_the_tenants_usage() {
        let conn = db::memory().unwrap();
        seed(&conn);
        let a = add(&conn, 10, 1, "creating");
        add(&conn, 10, 1, "creating");
        assert_eq!(tenant_count(&conn, 1), (2, 4));
        set(&conn, a, "running", 10);
        conn.execute(
            "UPDATE instances SET status = 'reclaimed', reclaimed_at = 20, updated_at = 20, gpu_indices = '[]', \
             gpu_count = 0, cpu_cores = 0, memory_gb = 0, system_disk_gb = 0, data_disk_gb = 0 WHERE id = ?1",
            [a],
        )
        .unwrap();
        assert_eq!(tenant_count(&conn, 1), (1, 2));
        let node: i64 = conn
            .query_row(
                "SELECT instances FROM node_usage WHERE node_id = 1",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(node, 1);
        assert_eq!(spans(&conn, a), [(10, Some(20), 250)]);
        // Deleting the reclaimed record takes nothing off twice.
        conn.execute("DELETE FROM instances WHERE id = ?1", [a])
            .unwrap();
        assert_eq!(tenant_count(&conn, 1), (1, 2));
    }
}
