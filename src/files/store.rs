//! SQL for the file operations log: one row per operation, and scoped
//! reads (member: own; owner: tenant; admin: all).

use rusqlite::{Connection, Row, params};
use serde::Serialize;

use crate::auth::Scope;

/// A row of `file_operations` as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Operation {
    pub id: i64,
    pub user_id: i64,
    pub username: String,
    pub tenant_id: Option<i64>,
    pub via: String,
    pub session_id: Option<i64>,
    pub target_kind: String,
    pub target_id: i64,
    pub target_name: String,
    pub node_id: i64,
    pub operation: String,
    pub path: String,
    pub new_path: Option<String>,
    pub size: Option<i64>,
    pub sha256: Option<String>,
    pub outcome: String,
    pub error: String,
    pub source_ip: String,
    pub started_at: i64,
    pub ended_at: i64,
}

const COLS: &str = "id, user_id, username, tenant_id, via, session_id, target_kind, target_id, target_name, \
    node_id, operation, path, new_path, size, sha256, outcome, error, source_ip, started_at, ended_at";

fn row(r: &Row<'_>) -> rusqlite::Result<Operation> {
    Ok(Operation {
        id: r.get(0)?,
        user_id: r.get(1)?,
        username: r.get(2)?,
        tenant_id: r.get(3)?,
        via: r.get(4)?,
        session_id: r.get(5)?,
        target_kind: r.get(6)?,
        target_id: r.get(7)?,
        target_name: r.get(8)?,
        node_id: r.get(9)?,
        operation: r.get(10)?,
        path: r.get(11)?,
        new_path: r.get(12)?,
        size: r.get(13)?,
        sha256: r.get(14)?,
        outcome: r.get(15)?,
        error: r.get(16)?,
        source_ip: r.get(17)?,
        started_at: r.get(18)?,
        ended_at: r.get(19)?,
    })
}

/// Inserts `op` (its id is ignored); the new id.
pub fn insert(conn: &Connection, op: &Operation) -> rusqlite::Result<i64> {
    conn.execute(
        "INSERT INTO file_operations (user_id, username, tenant_id, via, session_id, target_kind, target_id, \
         target_name, node_id, operation, path, new_path, size, sha256, outcome, error, source_ip, started_at, ended_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)",
        params![
            op.user_id, op.username, op.tenant_id, op.via, op.session_id, op.target_kind, op.target_id,
            op.target_name, op.node_id, op.operation, op.path, op.new_path, op.size, op.sha256, op.outcome,
            op.error, op.source_ip, op.started_at, op.ended_at
        ],
    )?;
    Ok(conn.last_insert_rowid())
}

/// What a read of the log asks for (each `None`: any).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default)]
pub struct Filter {
    pub session_id: Option<i64>,
    /// `instance` or `dataset`, with `target_id`.
    pub target_kind: Option<String>,
    pub target_id: Option<i64>,
    pub operation: Option<String>,
    pub username: Option<String>,
    /// At most this many, newest first (default 200, at most 1000).
    pub limit: Option<u32>,
}

/// The rows in `scope` matching `f`, newest first.
pub fn list(conn: &Connection, scope: Scope, f: &Filter) -> rusqlite::Result<Vec<Operation>> {
    let (t, u) = match scope {
        Scope::All => (None, None),
        Scope::Tenant(t) => (Some(t.0), None),
        Scope::User(u, _) => (None, Some(u.0)),
    };
    let limit = f.limit.unwrap_or(200).clamp(1, 1000);
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLS} FROM file_operations WHERE (?1 IS NULL OR tenant_id = ?1) AND (?2 IS NULL OR user_id = ?2) \
         AND (?3 IS NULL OR session_id = ?3) AND (?4 IS NULL OR target_kind = ?4) AND (?5 IS NULL OR target_id = ?5) \
         AND (?6 IS NULL OR operation = ?6) AND (?7 IS NULL OR username = ?7) ORDER BY id DESC LIMIT ?8"
    ))?;
    stmt.query_map(
        params![
            t,
            u,
            f.session_id,
            f.target_kind,
            f.target_id,
            f.operation,
            f.username,
            limit
        ],
        row,
    )?
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{TenantId, UserId};

    fn op(user: i64, tenant: Option<i64>, operation: &str) -> Operation {
        Operation {
            id: 0,
            user_id: user,
            username: format!("u{user}"),
            tenant_id: tenant,
            via: "sftp".into(),
            session_id: Some(3),
            target_kind: "instance".into(),
            target_id: 7,
            target_name: "alpha".into(),
            node_id: 1,
            operation: operation.into(),
            path: "/data/x".into(),
            new_path: None,
            size: Some(5),
            sha256: Some("ab".into()),
            outcome: "success".into(),
            error: String::new(),
            source_ip: "127.0.0.1".into(),
            started_at: 1,
            ended_at: 2,
        }
    }

    #[test]
    fn rows_are_scoped_and_the_schema_checks_their_words() {
        let c = crate::db::memory().unwrap();
        c.execute_batch(
            "INSERT INTO tenants (id, name, company_code, created_at, updated_at) VALUES (1, 'A', 'A', 0, 0), (2, 'B', 'B', 0, 0);
             INSERT INTO users (id, username, role, tenant_id, password_hash, created_at, updated_at) VALUES
               (10, 'a1', 'customer_member', 1, 'h', 0, 0), (11, 'a2', 'customer_member', 1, 'h', 0, 0),
               (20, 'b1', 'customer_member', 2, 'h', 0, 0);",
        )
        .unwrap();
        insert(&c, &op(10, Some(1), "upload")).unwrap();
        insert(&c, &op(11, Some(1), "download")).unwrap();
        insert(&c, &op(20, Some(2), "mkdir")).unwrap();
        let all = Filter::default();
        assert_eq!(list(&c, Scope::All, &all).unwrap().len(), 3);
        assert_eq!(list(&c, Scope::Tenant(TenantId(1)), &all).unwrap().len(), 2);
        let mine = list(&c, Scope::User(UserId(10), Some(TenantId(1))), &all).unwrap();
        assert_eq!(mine.len(), 1);
        assert_eq!(
            (mine[0].operation.as_str(), mine[0].sha256.as_deref()),
            ("upload", Some("ab"))
        );
        let f = Filter {
            operation: Some("download".into()),
            ..Filter::default()
        };
        assert_eq!(list(&c, Scope::All, &f).unwrap()[0].user_id, 11);
        assert!(
            insert(&c, &op(10, Some(1), "chmod")).is_err(),
            "unknown operation"
        );
        let mut bad = op(10, Some(1), "upload");
        bad.via = "ftp".into();
        assert!(insert(&c, &bad).is_err(), "unknown way in");
    }
}
