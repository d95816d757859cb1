//! Permission records (one per route: method + axum path pattern) and the
//! grants of the two customer roles. The admin role holds every record; `fixed`
//! records are held by every signed-in role and cannot be revoked;
//! `admin_only` records (the matrix itself, nodes, tenants' creation, the
//! shared catalog's management) are held by the admin role alone: no grant
//! gives them to another role, whatever the table says.

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
    /// Held by admins alone; never granted to another role.
    pub admin_only: bool,
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
    // Every request decides (cached statements: no parse per request).
    let rec: Option<(i64, bool, bool)> = conn
        .prepare_cached(
            "SELECT id, fixed, admin_only FROM permissions WHERE method = ?1 AND path_pattern = ?2",
        )?
        .query_row(params![method, pattern], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    let Some((id, fixed, admin_only)) = rec else {
        return Ok(Decision::NoRecord);
    };
    if fixed || role == Role::Admin {
        return Ok(Decision::Allow);
    }
    if admin_only {
        return Ok(Decision::Deny);
    }
    let granted: bool = conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM role_permissions WHERE role = ?1 AND permission_id = ?2)",
        )?
        .query_row(params![role.as_str(), id], |r| r.get(0))?;
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
        "SELECT p.id, p.method, p.path_pattern, p.grp, p.description, p.description_zh, p.fixed, p.admin_only, \
           p.fixed OR (NOT p.admin_only AND EXISTS (SELECT 1 FROM role_permissions r WHERE r.permission_id = p.id AND r.role = 'customer_owner')), \
           p.fixed OR (NOT p.admin_only AND EXISTS (SELECT 1 FROM role_permissions r WHERE r.permission_id = p.id AND r.role = 'customer_member')) \
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
            admin_only: r.get(7)?,
            customer_owner: r.get(8)?,
            customer_member: r.get(9)?,
        })
    })?
    .collect()
}

pub fn get(conn: &Connection, id: i64) -> rusqlite::Result<Option<Permission>> {
    Ok(list(conn)?.into_iter().find(|p| p.id == id))
}

/// Whether a caller of role `by`, who `holds` record `p` or not, may grant
/// or revoke `p` for `role`; otherwise the i18n key of why not. A role never
/// hands out what it does not hold itself, nor touches its own role's grants
/// or a higher one's; fixed records never change; admin-only records are
/// never granted (so the matrix itself, nodes and the like stay with admins).
pub fn may_change(by: Role, holds: bool, p: &Permission, role: Role) -> Result<(), &'static str> {
    fn rank(r: Role) -> u8 {
        match r {
            Role::Admin => 2,
            Role::CustomerOwner => 1,
            Role::CustomerMember => 0,
        }
    }
    if p.fixed {
        return Err("err.permission_fixed");
    }
    if p.admin_only {
        return Err("err.permission_admin_only");
    }
    if !holds || rank(role) >= rank(by) {
        return Err("err.permission_not_held");
    }
    Ok(())
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
         (?1 = 'admin' OR fixed OR (NOT admin_only AND EXISTS (SELECT 1 FROM role_permissions r \
          WHERE r.permission_id = p.id AND r.role = ?1)))",
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
        // The metrics agent's router is another server's (`gpudock agent`),
        // outside the appliance and its records; its file says so.
        for text in crate::testutil::source_texts(&["src"])
            .into_iter()
            .filter(|t| !t.contains("// Not the appliance's router: no permission records."))
        {
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
    fn admin_only_records_stay_with_admins_whatever_the_table_says() {
        let conn = db::memory().unwrap();
        for (m, p) in [
            ("PUT", "/api/v1/permissions/{role}/{id}"),
            ("GET", "/api/v1/permissions"),
            ("POST", "/permissions/{role}/{id}"),
            ("POST", "/api/v1/nodes"),
            ("GET", "/nodes"),
            ("GET", "/api/v1/instances/orphans"),
            ("POST", "/api/v1/tenants"),
            ("POST", "/api/v1/images"),
            ("PATCH", "/api/v1/specs/{id}"),
            ("GET", "/metrics"),
            ("GET", "/api/v1/nodes/{id}/metrics"),
            ("PUT", "/api/v1/nodes/{id}/metrics/sources"),
            ("POST", "/api/v1/nodes/{id}/metrics/enroll"),
            ("GET", "/nodes/{id}/metrics"),
            ("POST", "/nodes/{id}/metrics/sources"),
            ("POST", "/nodes/{id}/metrics/enroll"),
        ] {
            let id: i64 = conn
                .query_row(
                    "SELECT id FROM permissions WHERE method = ?1 AND path_pattern = ?2 AND admin_only",
                    params![m, p],
                    |r| r.get(0),
                )
                .unwrap_or_else(|e| panic!("{m} {p} is not admin-only: {e}"));
            // A grant row (made before the rule, or by hand) gives nothing.
            set_grant(&conn, Role::CustomerOwner, id, true).unwrap();
            assert_eq!(
                decide(&conn, Role::CustomerOwner, m, p).unwrap(),
                Decision::Deny
            );
            assert_eq!(decide(&conn, Role::Admin, m, p).unwrap(), Decision::Allow);
            let rec = get(&conn, id).unwrap().unwrap();
            assert!(rec.admin_only && !rec.customer_owner, "{rec:?}");
            assert!(
                !allowed_pages(&conn, Role::CustomerOwner)
                    .unwrap()
                    .contains(&p.to_string())
            );
        }
        // What customers use stays grantable.
        let p = get(&conn, 1).unwrap().unwrap();
        assert!(!p.admin_only, "{p:?}");
    }

    #[test]
    fn a_role_grants_only_what_it_holds_and_only_below_itself() {
        let conn = db::memory().unwrap();
        let all = list(&conn).unwrap();
        let rec = |m: &str, p: &str| {
            all.iter()
                .find(|r| r.method == m && r.path_pattern == p)
                .unwrap()
                .clone()
        };
        let users = rec("GET", "/api/v1/users");
        let nodes = rec("POST", "/api/v1/nodes");
        let me = rec("GET", "/api/v1/me");
        let (a, o, m) = (Role::Admin, Role::CustomerOwner, Role::CustomerMember);
        assert_eq!(may_change(a, true, &users, m), Ok(()));
        assert_eq!(may_change(a, true, &users, o), Ok(()));
        assert_eq!(
            may_change(a, true, &nodes, o),
            Err("err.permission_admin_only")
        );
        assert_eq!(may_change(a, true, &me, m), Err("err.permission_fixed"));
        // An owner (were the matrix ever theirs) could hand members only
        // what owners hold, and never touch owners' own grants.
        assert_eq!(may_change(o, true, &users, m), Ok(()));
        assert_eq!(
            may_change(o, false, &users, m),
            Err("err.permission_not_held")
        );
        assert_eq!(
            may_change(o, true, &users, o),
            Err("err.permission_not_held")
        );
        assert_eq!(
            may_change(o, true, &nodes, m),
            Err("err.permission_admin_only")
        );
        assert_eq!(
            may_change(m, true, &users, m),
            Err("err.permission_not_held")
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
