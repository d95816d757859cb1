//! Permission records (one per route: method + axum path pattern) and the
//! grants of the two customer roles. The admin role holds every record; `fixed`
//! records are held by every signed-in role and cannot be revoked.

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::model::Role;

#[derive(Debug, Clone, Serialize)]
pub struct Permission {
    pub id: i64,
    pub method: String,
    pub path_pattern: String,
    pub group: String,
    pub description: String,
    pub description_zh: String,
    pub fixed: bool,
    /// Granted to customer_owner / customer_member (always true for fixed).
    pub customer_owner: bool,
    pub customer_member: bool,
}

/// Routes anyone may call without signing in. They have no permission record.
pub const PUBLIC_ROUTES: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/login"),
    ("POST", "/login"),
    ("POST", "/api/v1/auth/login"),
    ("GET", "/static/{*path}"),
    ("GET", "/lang/{code}"),
];

/// Routes a user who must change their password may still call.
pub const ALLOWED_BEFORE_PASSWORD_CHANGE: &[(&str, &str)] = &[
    ("GET", "/api/v1/me"),
    ("POST", "/api/v1/auth/logout"),
    ("POST", "/api/v1/auth/password"),
    ("GET", "/account/password"),
    ("POST", "/account/password"),
    ("POST", "/logout"),
];

pub fn is_public(method: &str, pattern: &str) -> bool {
    PUBLIC_ROUTES
        .iter()
        .any(|(m, p)| *m == method && *p == pattern)
}

pub fn allowed_before_password_change(method: &str, pattern: &str) -> bool {
    ALLOWED_BEFORE_PASSWORD_CHANGE
        .iter()
        .any(|(m, p)| *m == method && *p == pattern)
}

/// The decision for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny,
    /// The route has no permission record: a programming error, denied.
    NoRecord,
}

pub fn decide(
    conn: &Connection,
    role: Role,
    method: &str,
    pattern: &str,
) -> rusqlite::Result<Decision> {
    let rec: Option<(i64, bool)> = conn
        .query_row(
            "SELECT id, fixed FROM permissions WHERE method = ?1 AND path_pattern = ?2",
            params![method, pattern],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((id, fixed)) = rec else {
        return Ok(Decision::NoRecord);
    };
    if fixed || role == Role::Admin {
        return Ok(Decision::Allow);
    }
    let granted: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM role_permissions WHERE role = ?1 AND permission_id = ?2)",
        params![role.as_str(), id],
        |r| r.get(0),
    )?;
    Ok(if granted {
        Decision::Allow
    } else {
        Decision::Deny
    })
}

/// The methods route `pattern` answers (its records and its public
/// methods; HEAD with GET), for the `Allow` of a 405.
pub fn methods_of(conn: &Connection, pattern: &str) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare_cached("SELECT method FROM permissions WHERE path_pattern = ?1")?;
    let mut methods: Vec<String> = stmt
        .query_map([pattern], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    methods.extend(
        PUBLIC_ROUTES
            .iter()
            .filter(|(_, p)| *p == pattern)
            .map(|(m, _)| m.to_string()),
    );
    if methods.iter().any(|m| m == "GET") {
        methods.push("HEAD".into());
    }
    methods.sort();
    methods.dedup();
    Ok(methods)
}

/// The record that decides who may see a node's details (its Docker
/// endpoint, its daemon's words) in error messages: the nodes page's. Pages
/// ask it through their layout (`l.can("/nodes")`), everything else here.
pub const NODE_DETAIL_RECORD: (&str, &str) = ("GET", "/nodes");

pub fn sees_node_details(conn: &Connection, role: Role) -> rusqlite::Result<bool> {
    let (method, pattern) = NODE_DETAIL_RECORD;
    Ok(decide(conn, role, method, pattern)? == Decision::Allow)
}

pub fn list(conn: &Connection) -> rusqlite::Result<Vec<Permission>> {
    let mut stmt = conn.prepare_cached(
        "SELECT p.id, p.method, p.path_pattern, p.grp, p.description, p.description_zh, p.fixed, \
           p.fixed OR EXISTS (SELECT 1 FROM role_permissions r WHERE r.permission_id = p.id AND r.role = 'customer_owner'), \
           p.fixed OR EXISTS (SELECT 1 FROM role_permissions r WHERE r.permission_id = p.id AND r.role = 'customer_member') \
         FROM permissions p ORDER BY p.grp, p.path_pattern, p.method",
    )?;
    stmt.query_map([], |r| {
        Ok(Permission {
            id: r.get(0)?,
            method: r.get(1)?,
            path_pattern: r.get(2)?,
            group: r.get(3)?,
            description: r.get(4)?,
            description_zh: r.get(5)?,
            fixed: r.get(6)?,
            customer_owner: r.get(7)?,
            customer_member: r.get(8)?,
        })
    })?
    .collect()
}

pub fn get(conn: &Connection, id: i64) -> rusqlite::Result<Option<Permission>> {
    Ok(list(conn)?.into_iter().find(|p| p.id == id))
}

/// Grants or revokes; returns whether anything changed.
pub fn set_grant(conn: &Connection, role: Role, id: i64, granted: bool) -> rusqlite::Result<bool> {
    let n = if granted {
        conn.execute(
            "INSERT OR IGNORE INTO role_permissions (role, permission_id) VALUES (?1, ?2)",
            params![role.as_str(), id],
        )?
    } else {
        conn.execute(
            "DELETE FROM role_permissions WHERE role = ?1 AND permission_id = ?2",
            params![role.as_str(), id],
        )?
    };
    Ok(n > 0)
}

/// Page routes (group `pages`) that `role` may use: GET routes as their
/// path (`/users`), others as `METHOD path` (`POST /instances/{id}/stop`).
/// Drives the nav and which buttons a page shows.
pub fn allowed_pages(conn: &Connection, role: Role) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT CASE method WHEN 'GET' THEN path_pattern ELSE method || ' ' || path_pattern END \
         FROM permissions p WHERE grp = 'pages' AND \
         (?1 = 'admin' OR fixed OR EXISTS (SELECT 1 FROM role_permissions r \
          WHERE r.permission_id = p.id AND r.role = ?1))",
    )?;
    stmt.query_map([role.as_str()], |r| r.get(0))?.collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db;

    #[test]
    fn seeded_grants_and_decisions() {
        let conn = db::memory().unwrap();
        let d = |role, m, p| decide(&conn, role, m, p).unwrap();
        assert_eq!(d(Role::Admin, "POST", "/api/v1/tenants"), Decision::Allow);
        assert_eq!(
            d(Role::CustomerOwner, "POST", "/api/v1/tenants"),
            Decision::Deny
        );
        assert_eq!(
            d(Role::CustomerOwner, "POST", "/api/v1/users"),
            Decision::Allow
        );
        assert_eq!(
            d(Role::CustomerMember, "GET", "/api/v1/users"),
            Decision::Deny
        );
        assert_eq!(
            d(Role::CustomerMember, "POST", "/api/v1/auth/password"),
            Decision::Allow
        );
        assert_eq!(d(Role::Admin, "GET", "/api/v1/nothing"), Decision::NoRecord);
        assert_eq!(
            methods_of(&conn, "/api/v1/tenants/{id}").unwrap(),
            ["GET", "HEAD", "PATCH"]
        );
        assert_eq!(
            methods_of(&conn, "/login").unwrap(),
            ["GET", "HEAD", "POST"]
        );
        assert!(methods_of(&conn, "/api/v1/nothing").unwrap().is_empty());
        assert!(sees_node_details(&conn, Role::Admin).unwrap());
        assert!(!sees_node_details(&conn, Role::CustomerOwner).unwrap());
    }

    /// Every route registered in the sources is public or has a record, so a
    /// new route cannot ship without one (the guard would deny it anyway).
    #[test]
    fn every_route_in_the_sources_has_a_record() {
        let conn = db::memory().unwrap();
        let mut routes = Vec::new();
        for text in crate::testutil::source_texts(&["src"]) {
            let text: String = text.split_whitespace().collect();
            for call in text.split(".route(\"").skip(1) {
                let (pattern, rest) = call.split_once('"').unwrap();
                let args = rest.split([';', '}']).next().unwrap();
                for m in ["get", "post", "put", "patch", "delete"] {
                    // A method router follows the pattern's comma or a dot;
                    // a handler named like a method follows `|` or `(`.
                    if args.contains(&format!(",{m}(")) || args.contains(&format!(".{m}(")) {
                        routes.push((m.to_uppercase(), pattern.to_string()));
                    }
                }
            }
        }
        assert!(routes.len() > 40, "found only {} routes", routes.len());
        let missing: Vec<_> = routes
            .iter()
            .filter(|(m, p)| {
                !is_public(m, p) && decide(&conn, Role::Admin, m, p).unwrap() == Decision::NoRecord
            })
            .collect();
        assert!(
            missing.is_empty(),
            "routes without a permission record: {missing:?}"
        );
    }

    #[test]
    fn grant_and_revoke_change_decisions() {
        let conn = db::memory().unwrap();
        let id: i64 = conn
            .query_row(
                "SELECT id FROM permissions WHERE method = 'GET' AND path_pattern = '/api/v1/users'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(set_grant(&conn, Role::CustomerMember, id, true).unwrap());
        assert!(!set_grant(&conn, Role::CustomerMember, id, true).unwrap());
        assert_eq!(
            decide(&conn, Role::CustomerMember, "GET", "/api/v1/users").unwrap(),
            Decision::Allow
        );
        assert!(set_grant(&conn, Role::CustomerMember, id, false).unwrap());
        assert_eq!(
            decide(&conn, Role::CustomerMember, "GET", "/api/v1/users").unwrap(),
            Decision::Deny
        );
        let p = get(&conn, id).unwrap().unwrap();
        assert!(p.customer_owner && !p.customer_member);
    }
}
