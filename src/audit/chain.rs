//! Appending to and verifying the hash chain. Each record's hash is the SHA-256
//! of its canonical JSON (all fields, in order) including the previous record's
//! hash, so editing, reordering or deleting a record inside the chain breaks it.

use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};

use super::Event;

/// The `prev_hash` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[allow(clippy::too_many_arguments)]
fn digest(
    id: i64,
    ts: i64,
    actor_id: Option<i64>,
    actor_name: &str,
    tenant_id: Option<i64>,
    source_ip: &str,
    user_agent: &str,
    action: &str,
    resource_type: &str,
    resource_id: Option<&str>,
    outcome: &str,
    detail: &str,
    prev_hash: &str,
) -> String {
    let canonical = serde_json::json!([
        id,
        ts,
        actor_id,
        actor_name,
        tenant_id,
        source_ip,
        user_agent,
        action,
        resource_type,
        resource_id,
        outcome,
        detail,
        prev_hash
    ]);
    hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
}

/// Appends `ev`; call inside the transaction that makes the change. The writer
/// connection is the only one that appends, so the chain never forks.
pub fn append(conn: &Connection, ev: &Event<'_>) -> rusqlite::Result<i64> {
    let (last_id, prev_hash): (i64, String) = conn
        .query_row(
            "SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?
        .unwrap_or((0, GENESIS.to_string()));
    let id = last_id + 1;
    let ts = crate::db::now();
    let detail = ev.detail.to_string();
    let ua: String = ev.source.user_agent.chars().take(512).collect();
    let hash = digest(
        id,
        ts,
        ev.actor.id.map(|u| u.0),
        &ev.actor.name,
        ev.actor.tenant.map(|t| t.0),
        &ev.source.ip,
        &ua,
        ev.action,
        ev.resource_type,
        ev.resource_id.as_deref(),
        ev.outcome.as_str(),
        &detail,
        &prev_hash,
    );
    conn.execute(
        "INSERT INTO audit_log (id, ts, actor_id, actor_name, tenant_id, source_ip, user_agent, \
         action, resource_type, resource_id, outcome, detail, prev_hash, hash) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        params![
            id,
            ts,
            ev.actor.id.map(|u| u.0),
            ev.actor.name,
            ev.actor.tenant.map(|t| t.0),
            ev.source.ip,
            ua,
            ev.action,
            ev.resource_type,
            ev.resource_id,
            ev.outcome.as_str(),
            detail,
            prev_hash,
            hash
        ],
    )?;
    Ok(id)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub checked: u64,
    /// The first record whose link or hash does not match, with the reason.
    pub first_broken: Option<(i64, String)>,
}

/// Walks the whole chain in id order.
pub fn verify(conn: &Connection) -> rusqlite::Result<VerifyReport> {
    let mut stmt = conn.prepare(
        "SELECT id, ts, actor_id, actor_name, tenant_id, source_ip, user_agent, action, \
         resource_type, resource_id, outcome, detail, prev_hash, hash FROM audit_log ORDER BY id",
    )?;
    let mut rows = stmt.query([])?;
    let mut expected_prev = GENESIS.to_string();
    let mut expected_id = 1;
    let mut checked = 0;
    while let Some(r) = rows.next()? {
        let id: i64 = r.get(0)?;
        let prev: String = r.get(12)?;
        let stored: String = r.get(13)?;
        let broken = |why: &str| VerifyReport {
            checked,
            first_broken: Some((id, why.to_string())),
        };
        if id != expected_id {
            return Ok(broken(&format!("record {expected_id} is missing")));
        }
        if prev != expected_prev {
            return Ok(broken(
                "prev_hash does not match the previous record's hash",
            ));
        }
        let actual = digest(
            id,
            r.get(1)?,
            r.get(2)?,
            &r.get::<_, String>(3)?,
            r.get(4)?,
            &r.get::<_, String>(5)?,
            &r.get::<_, String>(6)?,
            &r.get::<_, String>(7)?,
            &r.get::<_, String>(8)?,
            r.get::<_, Option<String>>(9)?.as_deref(),
            &r.get::<_, String>(10)?,
            &r.get::<_, String>(11)?,
            &prev,
        );
        if actual != stored {
            return Ok(broken(
                "content does not match its hash (the record was altered)",
            ));
        }
        expected_prev = stored;
        expected_id += 1;
        checked += 1;
    }
    Ok(VerifyReport {
        checked,
        first_broken: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Actor, Outcome, Source};
    use crate::db;

    fn seed(conn: &Connection, n: usize) {
        let actor = Actor::anonymous("alice");
        let src = Source::local();
        for i in 0..n {
            append(
                conn,
                &Event::new(&actor, &src, "user.create", "user")
                    .id(i)
                    .outcome(Outcome::Success)
                    .detail(serde_json::json!({"i": i})),
            )
            .unwrap();
        }
    }

    #[test]
    fn intact_chain_verifies() {
        let conn = db::memory().unwrap();
        seed(&conn, 5);
        assert_eq!(
            verify(&conn).unwrap(),
            VerifyReport {
                checked: 5,
                first_broken: None
            }
        );
    }

    #[test]
    fn the_database_refuses_updates_and_deletes() {
        let conn = db::memory().unwrap();
        seed(&conn, 1);
        assert!(
            conn.execute("UPDATE audit_log SET action = 'x'", [])
                .is_err()
        );
        assert!(conn.execute("DELETE FROM audit_log", []).is_err());
    }

    #[test]
    fn tampering_names_the_first_broken_record() {
        let conn = db::memory().unwrap();
        seed(&conn, 5);
        conn.execute_batch("DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete;")
            .unwrap();
        conn.execute(
            "UPDATE audit_log SET detail = '{\"i\":99}' WHERE id = 3",
            [],
        )
        .unwrap();
        let r = verify(&conn).unwrap();
        assert_eq!(r.first_broken.as_ref().map(|b| b.0), Some(3));
        assert_eq!(r.checked, 2);

        let conn = db::memory().unwrap();
        seed(&conn, 5);
        conn.execute_batch("DROP TRIGGER audit_log_no_delete;")
            .unwrap();
        conn.execute("DELETE FROM audit_log WHERE id = 2", [])
            .unwrap();
        assert_eq!(verify(&conn).unwrap().first_broken.map(|b| b.0), Some(3));
    }
}
