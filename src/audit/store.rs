//! Reading the audit log with filters, scoped like every other query.

use rusqlite::{Connection, Row, ToSql, params};
use serde::{Deserialize, Serialize};

use crate::ids::Scope;
use crate::paging::{Page, Window};

#[derive(Debug, Clone, Serialize)]
pub struct AuditRecord {
    pub id: i64,
    pub ts: i64,
    pub actor_id: Option<i64>,
    pub actor_name: String,
    pub tenant_id: Option<i64>,
    pub source_ip: String,
    pub user_agent: String,
    pub action: String,
    pub resource_type: String,
    pub resource_id: Option<String>,
    pub outcome: String,
    pub detail: serde_json::Value,
    pub hash: String,
}

/// Filters from the query string; empty strings mean "any".
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct AuditFilter {
    /// Actor username (exact).
    pub actor: String,
    /// Action, exact or a prefix ending in `.` (e.g. `auth.`).
    pub action: String,
    pub resource_type: String,
    pub resource_id: String,
    pub outcome: String,
    /// Unix seconds, inclusive.
    pub since: Option<i64>,
    /// Unix seconds, exclusive.
    pub until: Option<i64>,
}

fn opt(s: &str) -> Option<&str> {
    let s = s.trim();
    (!s.is_empty()).then_some(s)
}

/// Newest first, the rows of `window` and how many match. Customers'
/// scopes: an owner sees their tenant's records, a member only their own.
pub fn query(
    conn: &Connection,
    scope: Scope,
    f: &AuditFilter,
    window: Window,
) -> rusqlite::Result<Page<AuditRecord>> {
    matching(scope, f, |sql, params| {
        crate::paging::query(conn, sql, params, window, record_row)
    })
}

/// [`query`]'s rows without counting them all (the newest few, an export).
pub fn records(
    conn: &Connection,
    scope: Scope,
    f: &AuditFilter,
    window: Window,
) -> rusqlite::Result<Vec<AuditRecord>> {
    matching(scope, f, |sql, params| {
        crate::paging::rows(conn, sql, params, window, record_row)
    })
}

/// Runs `run` with the SELECT of the records in `scope` that `f` matches,
/// newest first, and its parameters.
fn matching<R>(scope: Scope, f: &AuditFilter, run: impl FnOnce(&str, &[&dyn ToSql]) -> R) -> R {
    let (tenant, actor_id) = match scope {
        Scope::All => (None, None),
        Scope::Tenant(t) => (Some(t.0), None),
        Scope::User(u, _) => (None, Some(u.0)),
    };
    let action = opt(&f.action);
    let (action_exact, action_prefix) = match action {
        Some(a) if a.ends_with('.') => (None, Some(format!("{a}%"))),
        Some(a) => (Some(a), None),
        None => (None, None),
    };
    let (actor, resource_type, resource_id, outcome) = (
        opt(&f.actor),
        opt(&f.resource_type),
        opt(&f.resource_id),
        opt(&f.outcome),
    );
    run(
        "SELECT id, ts, actor_id, actor_name, tenant_id, source_ip, user_agent, action, \
         resource_type, resource_id, outcome, detail, hash FROM audit_log WHERE \
         (?1 IS NULL OR tenant_id = ?1) AND (?2 IS NULL OR actor_id = ?2) AND \
         (?3 IS NULL OR actor_name = ?3) AND (?4 IS NULL OR action = ?4) AND \
         (?5 IS NULL OR action LIKE ?5) AND (?6 IS NULL OR resource_type = ?6) AND \
         (?7 IS NULL OR resource_id = ?7) AND (?8 IS NULL OR outcome = ?8) AND \
         (?9 IS NULL OR ts >= ?9) AND (?10 IS NULL OR ts < ?10) \
         ORDER BY id DESC",
        &[
            &tenant,
            &actor_id,
            &actor,
            &action_exact,
            &action_prefix,
            &resource_type,
            &resource_id,
            &outcome,
            &f.since,
            &f.until,
        ],
    )
}

fn record_row(r: &Row<'_>) -> rusqlite::Result<AuditRecord> {
    let detail: String = r.get(11)?;
    Ok(AuditRecord {
        id: r.get(0)?,
        ts: r.get(1)?,
        actor_id: r.get(2)?,
        actor_name: r.get(3)?,
        tenant_id: r.get(4)?,
        source_ip: r.get(5)?,
        user_agent: r.get(6)?,
        action: r.get(7)?,
        resource_type: r.get(8)?,
        resource_id: r.get(9)?,
        outcome: r.get(10)?,
        detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::String(detail)),
        hash: r.get(12)?,
    })
}

/// How many records the scope sees since `since` (Unix seconds).
pub fn count_since(conn: &Connection, scope: Scope, since: i64) -> rusqlite::Result<i64> {
    let (tenant, actor_id) = match scope {
        Scope::All => (None, None),
        Scope::Tenant(t) => (Some(t.0), None),
        Scope::User(u, _) => (None, Some(u.0)),
    };
    conn.query_row(
        "SELECT COUNT(*) FROM audit_log WHERE (?1 IS NULL OR tenant_id = ?1) \
         AND (?2 IS NULL OR actor_id = ?2) AND ts >= ?3",
        params![tenant, actor_id, since],
        |r| r.get(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Actor, Event, Outcome, Source, append};
    use crate::db;
    use crate::ids::{TenantId, UserId};

    #[test]
    fn filters_and_scopes() {
        let conn = db::memory().unwrap();
        let src = Source::local();
        let a = Actor {
            id: Some(UserId(1)),
            name: "root".into(),
            tenant: None,
        };
        let b = Actor {
            id: Some(UserId(2)),
            name: "bob".into(),
            tenant: Some(TenantId(9)),
        };
        append(&conn, &Event::new(&a, &src, "auth.login", "session")).unwrap();
        append(
            &conn,
            &Event::new(&b, &src, "auth.login", "session").outcome(Outcome::Failure),
        )
        .unwrap();
        append(&conn, &Event::new(&b, &src, "user.update", "user").id(5)).unwrap();
        let q = |scope, f: AuditFilter| {
            let page = query(&conn, scope, &f, Window::first(100)).unwrap();
            assert_eq!(page.total, page.items.len() as u64);
            page.items.len()
        };
        assert_eq!(q(Scope::All, AuditFilter::default()), 3);
        assert_eq!(q(Scope::Tenant(TenantId(9)), AuditFilter::default()), 2);
        assert_eq!(q(Scope::User(UserId(1), None), AuditFilter::default()), 1);
        assert_eq!(
            q(
                Scope::All,
                AuditFilter {
                    action: "auth.".into(),
                    ..Default::default()
                }
            ),
            2
        );
        assert_eq!(
            q(
                Scope::All,
                AuditFilter {
                    outcome: "failure".into(),
                    ..Default::default()
                }
            ),
            1
        );
        assert_eq!(
            q(
                Scope::All,
                AuditFilter {
                    actor: "bob".into(),
                    resource_id: "5".into(),
                    ..Default::default()
                }
            ),
            1
        );
        assert_eq!(
            q(
                Scope::All,
                AuditFilter {
                    since: Some(i64::MAX),
                    ..Default::default()
                }
            ),
            0
        );
        assert_eq!(
            count_since(&conn, Scope::Tenant(TenantId(9)), 0).unwrap(),
            2
        );
        assert_eq!(count_since(&conn, Scope::All, i64::MAX).unwrap(), 0);
        let newest = records(&conn, Scope::All, &AuditFilter::default(), Window::first(1)).unwrap();
        assert_eq!(newest[0].action, "user.update");
    }
}
