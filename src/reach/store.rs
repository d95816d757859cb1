//! SQL for what reaches an instance's ports: the ports an admin allows to
//! be forwarded, and the web services served through the HTTPS proxy.
//! Callers check that the instance is in the caller's scope first (through
//! the instances API); these statements name instances by id.

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;

use crate::ids::InstanceId;

/// A port of an instance served through the HTTPS proxy.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct WebService {
    pub id: i64,
    pub instance_id: InstanceId,
    pub target_port: u16,
    pub name: String,
    /// Which of the proxy's ports serves it (port mode): the index from
    /// `proxy_listen`'s port; `None` in domain mode.
    #[serde(skip)]
    pub slot: Option<u16>,
    pub created_at: i64,
}

const COLS: &str = "id, instance_id, target_port, name, proxy_slot, created_at";

fn row(r: &Row<'_>) -> rusqlite::Result<WebService> {
    Ok(WebService {
        id: r.get(0)?,
        instance_id: r.get(1)?,
        target_port: r.get(2)?,
        name: r.get(3)?,
        slot: r.get(4)?,
        created_at: r.get(5)?,
    })
}

/// The forwarding rule's text (`""`: every port).
pub fn forward_ports(c: &Connection, id: InstanceId) -> rusqlite::Result<String> {
    Ok(c.query_row(
        "SELECT ports FROM instance_forward_ports WHERE instance_id = ?1",
        [id],
        |r| r.get(0),
    )
    .optional()?
    .unwrap_or_default())
}

pub fn set_forward_ports(
    c: &Connection,
    id: InstanceId,
    ports: &str,
    now: i64,
) -> rusqlite::Result<()> {
    if ports.is_empty() {
        c.execute(
            "DELETE FROM instance_forward_ports WHERE instance_id = ?1",
            [id],
        )?;
    } else {
        c.execute(
            "INSERT INTO instance_forward_ports (instance_id, ports, updated_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (instance_id) DO UPDATE SET ports = excluded.ports, updated_at = excluded.updated_at",
            params![id, ports, now],
        )?;
    }
    Ok(())
}

pub fn services(c: &Connection, id: InstanceId) -> rusqlite::Result<Vec<WebService>> {
    let mut s = c.prepare_cached(&format!(
        "SELECT {COLS} FROM web_services WHERE instance_id = ?1 ORDER BY target_port"
    ))?;
    s.query_map([id], row)?.collect()
}

pub fn service(c: &Connection, id: InstanceId, port: u16) -> rusqlite::Result<Option<WebService>> {
    c.prepare_cached(&format!(
        "SELECT {COLS} FROM web_services WHERE instance_id = ?1 AND target_port = ?2"
    ))?
    .query_row(params![id, port], row)
    .optional()
}

/// The service on the proxy's port `slot` (port mode).
pub fn service_in_slot(c: &Connection, slot: u16) -> rusqlite::Result<Option<WebService>> {
    c.prepare_cached(&format!(
        "SELECT {COLS} FROM web_services WHERE proxy_slot = ?1"
    ))?
    .query_row([slot], row)
    .optional()
}

/// Adds a service, in the lowest free slot of `slots` when given (port
/// mode); `Ok(None)` when every slot is taken.
pub fn insert_service(
    c: &Connection,
    id: InstanceId,
    port: u16,
    name: &str,
    slots: Option<u16>,
    by: i64,
    now: i64,
) -> rusqlite::Result<Option<WebService>> {
    let slot = match slots {
        None => None,
        Some(n) => {
            let taken: Vec<u16> = {
                let mut s = c.prepare_cached(
                    "SELECT proxy_slot FROM web_services WHERE proxy_slot IS NOT NULL",
                )?;
                s.query_map([], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?
            };
            match (0..n).find(|s| !taken.contains(s)) {
                Some(s) => Some(s),
                None => return Ok(None),
            }
        }
    };
    c.execute(
        "INSERT INTO web_services (instance_id, target_port, name, proxy_slot, created_by, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![id, port, name, slot, by, now],
    )?;
    service(c, id, port)
}

pub fn delete_service(c: &Connection, id: InstanceId, port: u16) -> rusqlite::Result<bool> {
    Ok(c.execute(
        "DELETE FROM web_services WHERE instance_id = ?1 AND target_port = ?2",
        params![id, port],
    )? == 1)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn instance(c: &Connection, id: i64) {
        c.execute_batch(&format!(
            "INSERT OR IGNORE INTO users (id, username, role, password_hash, created_at, updated_at) \
               VALUES (1, 'admin', 'admin', 'h', 0, 0);
             INSERT INTO instances (id, name, image_id, spec_id, node_id, user_id, status, gpu_indices, \
               gpu_count, cpu_cores, memory_gb, system_disk_gb, data_disk_gb, created_at, updated_at) \
             VALUES ({id}, 'i{id}', 1, 1, 1, 1, 'running', '[]', 0, 1, 1, 1, 1, 0, 0);"
        ))
        .unwrap();
    }

    #[test]
    fn services_take_the_lowest_free_slot_and_go_with_their_instance() {
        let c = crate::db::memory().unwrap();
        c.execute_batch("PRAGMA foreign_keys = OFF").unwrap();
        instance(&c, 1);
        instance(&c, 2);
        c.execute_batch("PRAGMA foreign_keys = ON").unwrap();
        let a = insert_service(&c, InstanceId(1), 8888, "Jupyter", Some(2), 1, 5)
            .unwrap()
            .unwrap();
        let b = insert_service(&c, InstanceId(2), 6006, "TB", Some(2), 1, 5)
            .unwrap()
            .unwrap();
        assert_eq!((a.slot, b.slot), (Some(0), Some(1)));
        assert_eq!(
            insert_service(&c, InstanceId(2), 8888, "x", Some(2), 1, 5).unwrap(),
            None,
            "no slot left"
        );
        assert!(
            insert_service(&c, InstanceId(1), 8888, "again", None, 1, 5).is_err(),
            "one service per port"
        );
        assert!(delete_service(&c, InstanceId(1), 8888).unwrap());
        let again = insert_service(&c, InstanceId(2), 8888, "x", Some(2), 1, 5)
            .unwrap()
            .unwrap();
        assert_eq!(again.slot, Some(0));
        assert_eq!(service_in_slot(&c, 0).unwrap(), Some(again));
        set_forward_ports(&c, InstanceId(2), "22", 1).unwrap();
        assert_eq!(forward_ports(&c, InstanceId(2)).unwrap(), "22");
        c.execute("DELETE FROM instances WHERE id = 2", []).unwrap();
        assert!(services(&c, InstanceId(2)).unwrap().is_empty());
        assert_eq!(forward_ports(&c, InstanceId(2)).unwrap(), "");
    }
}
