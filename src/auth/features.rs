//! The permission matrix in words: every permission record (one route)
//! belongs to one feature (Instances, Users, …) and one action on it (view,
//! create, operate, delete, open terminal …), read from its method and path
//! pattern. One switch per action grants or revokes all of its records at
//! once: its API route and its page route, which would otherwise be two
//! toggles for one action. Pure: no I/O.

use serde::Serialize;

use super::permissions::Permission;

/// The features, in the order the matrix shows them.
pub const FEATURES: &[&str] = &[
    "dashboard",
    "instances",
    "terminal",
    "files",
    "reach",
    "leases",
    "usage",
    "datasets",
    "images",
    "specs",
    "nodes",
    "metrics",
    "alerts",
    "alert_rules",
    "channels",
    "maintenance",
    "sessions",
    "users",
    "tenants",
    "accounts",
    "cloud_users",
    "audit",
    "permissions",
    "account",
];

/// The actions, in the order the matrix shows them within a feature.
pub const ACTIONS: &[&str] = &[
    "view",
    "create",
    "edit",
    "operate",
    "upload",
    "download",
    "request",
    "review",
    "reclaim",
    "return",
    "allocate",
    "handle",
    "test",
    "terminate",
    "replay",
    "reset",
    "unlock",
    "delete",
];

/// The (feature, action) of the route `method pattern`: see [`FEATURES`]
/// and [`ACTIONS`] for the words.
pub fn area(method: &str, pattern: &str) -> (&'static str, &'static str) {
    let p = pattern.strip_prefix("/api/v1").unwrap_or(pattern);
    let p = p.strip_prefix("/operations").unwrap_or(p);
    let segs: Vec<&str> = p.split('/').filter(|s| !s.is_empty()).collect();
    let has = |s: &str| segs.contains(&s);
    let first = segs.first().copied().unwrap_or("");
    // The words after the first, without the `{id}`-like placeholders.
    let words: Vec<&str> = segs
        .iter()
        .skip(1)
        .copied()
        .filter(|s| !s.starts_with('{'))
        .collect();
    let last = words.last().copied();
    let feature = match first {
        "" => "dashboard",
        _ if has("files") || first == "file-operations" => "files",
        _ if has("terminal") => "terminal",
        _ if has("metrics") || first == "metrics" => "metrics",
        _ if has("reach") || has("web") || first == "port-forward" => "reach",
        _ if first.starts_with("usage") => "usage",
        _ if has("lease")
            || has("return")
            || has("lease-request")
            || has("lease-requests")
            || has("reclaim")
            || first == "lease-requests" =>
        {
            "leases"
        }
        "account" | "ssh-keys" | "tokens" | "me" | "auth" | "logout" | "jobs" => "account",
        "alert-rules" => "alert_rules",
        "notification-channels" => "channels",
        "maintenance-windows" => "maintenance",
        "account-openings" => "accounts",
        "cloud-users" => "cloud_users",
        // Features named as their first path segment.
        _ => FEATURES
            .iter()
            .copied()
            .find(|f| *f == first)
            .unwrap_or("other"),
    };
    let has_id = segs.iter().any(|s| s.starts_with('{'));
    let action = match (method, last) {
        (_, Some("reclaim")) => "reclaim",
        (_, Some("return")) => "return",
        (_, Some("lease-request" | "lease-requests")) if method == "POST" => "request",
        (_, Some("allocate")) => "allocate",
        (_, Some("candidate-nodes" | "new" | "create" | "choices")) => "create",
        ("GET", Some("download")) => "download",
        ("GET", Some("recording")) => "replay",
        ("GET", _) => "view",
        ("DELETE", _) => "delete",
        ("PUT", Some("upload")) => "upload",
        ("PUT" | "PATCH", _) => "edit",
        (_, Some("delete" | "revoke" | "forget")) => "delete",
        (_, Some("start" | "stop" | "restart" | "sync" | "register-local" | "enroll")) => "operate",
        (_, Some("batch")) if first == "cloud-users" => "edit",
        (_, Some("approve" | "reject" | "process" | "batch")) => "review",
        (_, Some("terminate")) => "terminate",
        (_, Some("reset-password")) => "reset",
        (_, Some("unlock")) => "unlock",
        (_, Some("ack" | "close")) => "handle",
        (_, Some("test" | "ssh-test")) => "test",
        (_, Some("mkdir" | "rename" | "action")) => "edit",
        (_, Some("reveal" | "reveal-password")) => "view",
        (_, Some("web" | "ssh-keys" | "tokens")) => "create",
        (
            _,
            Some("enabled" | "enable" | "disable" | "ports" | "sources" | "lease" | "password"),
        ) => "edit",
        (_, Some("logout")) => "view",
        (_, None) if has_id => "edit",
        (_, None) if first == "logout" => "view",
        (_, None) => "create",
        _ => "other",
    };
    (feature, action)
}

/// How a customer role holds an action's records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Held {
    /// Every record (fixed ones included).
    All,
    /// Some of the grantable records, not all.
    Part,
    None,
    /// Only fixed records: held by every role, no switch.
    Fixed,
    /// Only admin-only records: no switch.
    AdminOnly,
}

impl Held {
    fn of(records: &[Permission], granted: impl Fn(&Permission) -> bool) -> Held {
        if records.iter().all(|p| p.fixed) {
            return Held::Fixed;
        }
        let grantable: Vec<&Permission> = records
            .iter()
            .filter(|p| !p.fixed && !p.admin_only)
            .collect();
        if grantable.is_empty() {
            return Held::AdminOnly;
        }
        let n = grantable.iter().filter(|p| granted(p)).count();
        match n {
            0 => Held::None,
            n if n == grantable.len() => Held::All,
            _ => Held::Part,
        }
    }

    /// Whether the switch shows as on (a click then revokes).
    pub fn on(&self) -> bool {
        *self == Held::All
    }

    /// The word templates compare (`all`, `part`, `none`, `fixed`,
    /// `admin_only`).
    pub fn word(&self) -> &'static str {
        match self {
            Held::All => "all",
            Held::Part => "part",
            Held::None => "none",
            Held::Fixed => "fixed",
            Held::AdminOnly => "admin_only",
        }
    }
}

/// One action of a feature: its records and how each customer role holds
/// them.
#[derive(Debug, Clone, Serialize)]
pub struct ActionRow {
    pub feature: &'static str,
    pub action: &'static str,
    pub records: Vec<Permission>,
    pub customer_owner: Held,
    pub customer_member: Held,
}

impl ActionRow {
    /// How `role` (`customer_owner` / `customer_member`) holds it.
    pub fn held(&self, role: &str) -> Held {
        if role == "customer_owner" {
            self.customer_owner
        } else {
            self.customer_member
        }
    }

    /// The i18n keys of its feature and action.
    pub fn feature_key(&self) -> String {
        format!("permf.{}", self.feature)
    }

    pub fn action_key(&self) -> String {
        format!("perma.{}", self.action)
    }
}

/// The records grouped by feature and action, in [`FEATURES`] and
/// [`ACTIONS`] order (an unknown word last).
pub fn rows(perms: Vec<Permission>) -> Vec<ActionRow> {
    let pos = |list: &[&str], w: &str| list.iter().position(|x| *x == w).unwrap_or(list.len());
    let mut groups: Vec<((&'static str, &'static str), Vec<Permission>)> = Vec::new();
    for p in perms {
        let key = area(&p.method, &p.path_pattern);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(p),
            None => groups.push((key, vec![p])),
        }
    }
    groups.sort_by_key(|((f, a), _)| (pos(FEATURES, f), pos(ACTIONS, a)));
    groups
        .into_iter()
        .map(|((feature, action), records)| ActionRow {
            feature,
            action,
            customer_owner: Held::of(&records, |p| p.customer_owner),
            customer_member: Held::of(&records, |p| p.customer_member),
            records,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::db;

    #[test]
    fn routes_read_as_features_and_actions() {
        for (m, p, want) in [
            ("GET", "/", ("dashboard", "view")),
            ("GET", "/api/v1/instances", ("instances", "view")),
            ("POST", "/api/v1/instances", ("instances", "create")),
            ("POST", "/instances", ("instances", "create")),
            ("GET", "/instances/new", ("instances", "create")),
            (
                "POST",
                "/api/v1/instances/{id}/stop",
                ("instances", "operate"),
            ),
            ("POST", "/instances/{id}/restart", ("instances", "operate")),
            ("DELETE", "/api/v1/instances/{id}", ("instances", "delete")),
            ("POST", "/instances/{id}/delete", ("instances", "delete")),
            ("GET", "/instances/{id}/terminal/ws", ("terminal", "view")),
            (
                "PUT",
                "/api/v1/instances/{id}/files/upload",
                ("files", "upload"),
            ),
            (
                "GET",
                "/api/v1/datasets/{id}/files/download",
                ("files", "download"),
            ),
            ("POST", "/api/v1/users/{id}/unlock", ("users", "unlock")),
            ("POST", "/users/{id}", ("users", "edit")),
            ("PATCH", "/api/v1/users/{id}", ("users", "edit")),
            (
                "POST",
                "/operations/account-openings/{id}/approve/",
                ("accounts", "review"),
            ),
            (
                "GET",
                "/api/v1/sessions/{id}/recording",
                ("sessions", "replay"),
            ),
            (
                "POST",
                "/api/v1/instances/{id}/reclaim",
                ("leases", "reclaim"),
            ),
            ("POST", "/api/v1/alerts/{id}/ack", ("alerts", "handle")),
            ("POST", "/account/tokens/{id}/revoke", ("account", "delete")),
        ] {
            assert_eq!(area(m, p), want, "{m} {p}");
        }
    }

    /// Every record of the schema reads as a known feature and action, and
    /// each has its words in both languages.
    #[test]
    fn every_record_has_words_in_both_languages() {
        let conn = db::memory().unwrap();
        let perms = super::super::permissions::list(&conn).unwrap();
        let rows = rows(perms);
        for r in &rows {
            assert!(
                FEATURES.contains(&r.feature) && ACTIONS.contains(&r.action),
                "{} {} for {:?}",
                r.feature,
                r.action,
                r.records
                    .iter()
                    .map(|p| format!("{} {}", p.method, p.path_pattern))
                    .collect::<Vec<_>>()
            );
            for lang in [crate::i18n::Lang::En, crate::i18n::Lang::ZhCn] {
                let tr = crate::i18n::Tr::new(lang);
                for k in [r.feature_key(), r.action_key()] {
                    assert_ne!(tr.t(&k), k.as_str(), "{k} missing in {lang:?}");
                }
            }
        }
        // Far fewer switches than routes: one per action, API and page alike.
        let n = super::super::permissions::list(&conn).unwrap().len();
        assert!(rows.len() * 2 < n, "{} actions for {n} records", rows.len());
        let ops = rows
            .iter()
            .find(|r| (r.feature, r.action) == ("instances", "operate"))
            .unwrap();
        let routes: Vec<String> = ops
            .records
            .iter()
            .map(|p| format!("{} {}", p.method, p.path_pattern))
            .collect();
        for r in [
            "POST /api/v1/instances/{id}/stop",
            "POST /instances/{id}/stop",
            "POST /api/v1/instances/{id}/start",
        ] {
            assert!(routes.contains(&r.to_string()), "{routes:?}");
        }
    }

    #[test]
    fn how_a_role_holds_an_action() {
        let rec = |fixed, admin_only, granted| Permission {
            id: 1,
            method: "GET".into(),
            path_pattern: "/x".into(),
            group: "g".into(),
            description: String::new(),
            description_zh: String::new(),
            fixed,
            admin_only,
            customer_owner: granted,
            customer_member: granted,
        };
        let held = |rs: &[Permission]| Held::of(rs, |p| p.customer_owner);
        assert_eq!(held(&[rec(true, false, true)]), Held::Fixed);
        assert_eq!(held(&[rec(false, true, false)]), Held::AdminOnly);
        assert_eq!(
            held(&[rec(false, false, true), rec(false, true, false)]),
            Held::All
        );
        assert_eq!(
            held(&[rec(false, false, true), rec(false, false, false)]),
            Held::Part
        );
        assert_eq!(held(&[rec(false, false, false)]), Held::None);
    }
}
