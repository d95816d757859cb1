//! The role and tenant isolation matrix, end to end against the real binary:
//! every `/api/v1/` permission record is called by admin, customer_owner and
//! customer_member (403 `forbidden` exactly where the role lacks the record)
//! and without a session (401); tenant scoping answers 404 for another
//! tenant's rows, in the queries themselves, whatever the grants.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{Server, code, get, make_tenant, make_user};
use reqwest::StatusCode;
use serde_json::{Value, json};

const PW_OA: &str = "Copper-Meadow-Falcon-41!";
const PW_MA: &str = "Velvet-Canyon-Harbor-58!";
const PW_OB: &str = "Amber-Tundra-Signal-72!";
const PW_MB: &str = "Saffron-Glacier-Pilot-36!";

/// A signed-in caller with its session's CSRF token (sent on every request,
/// so bodiless DELETEs pass the CSRF check and reach the permission check).
struct Caller {
    name: &'static str,
    role: &'static str,
    password: &'static str,
    client: reqwest::Client,
    csrf: String,
    id: i64,
}

impl Caller {
    async fn new(
        srv: &Server,
        name: &'static str,
        role: &'static str,
        password: &'static str,
        client: reqwest::Client,
    ) -> Self {
        let (s, me) = get(&client, &srv.url("/api/v1/me")).await;
        assert_eq!(s, StatusCode::OK, "{name}: {me}");
        assert_eq!(me["user"]["role"], role, "{name}: {me}");
        Caller {
            name,
            role,
            password,
            client,
            csrf: me["csrf_token"].as_str().unwrap().to_string(),
            id: me["user"]["id"].as_i64().unwrap(),
        }
    }

    async fn req(
        &self,
        srv: &Server,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        req(&self.client, Some(&self.csrf), srv, method, path, body).await
    }

    async fn get(&self, srv: &Server, path: &str) -> (StatusCode, Value) {
        self.req(srv, "GET", path, None).await
    }
}

async fn req(
    c: &reqwest::Client,
    csrf: Option<&str>,
    srv: &Server,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut rb = c.request(m, srv.url(path));
    if let Some(t) = csrf {
        rb = rb.header("x-csrf-token", t);
    }
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let r = rb.send().await.unwrap();
    let s = r.status();
    let text = r.text().await.unwrap();
    (
        s,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// `{}` for methods that carry a body.
fn body_for(method: &str) -> Option<Value> {
    matches!(method, "POST" | "PUT" | "PATCH").then(|| json!({}))
}

#[derive(Debug, Clone)]
struct Perm {
    id: i64,
    method: String,
    path: String,
    fixed: bool,
    owner: bool,
    member: bool,
}

async fn permissions(srv: &Server, admin: &Caller) -> Vec<Perm> {
    let (s, b) = admin.get(srv, "/api/v1/permissions").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b.as_array()
        .unwrap()
        .iter()
        .map(|p| Perm {
            id: p["id"].as_i64().unwrap(),
            method: p["method"].as_str().unwrap().to_string(),
            path: p["path_pattern"].as_str().unwrap().to_string(),
            fixed: p["fixed"].as_bool().unwrap(),
            owner: p["customer_owner"].as_bool().unwrap(),
            member: p["customer_member"].as_bool().unwrap(),
        })
        .collect()
}

fn perm_id(perms: &[Perm], method: &str, path: &str) -> i64 {
    perms
        .iter()
        .find(|p| p.method == method && p.path == path)
        .unwrap_or_else(|| panic!("no permission record for {method} {path}"))
        .id
}

/// Ids in the caller's own scope used for the path placeholders.
struct Ids {
    user: i64,
    tenant: i64,
    token: i64,
    /// A fixed record: grant/revoke on it is refused (422) and changes nothing.
    fixed_perm: i64,
}

/// The concrete path for `pattern`, placeholders filled from `ids`.
fn concrete(pattern: &str, ids: &Ids) -> String {
    let id = if pattern.starts_with("/api/v1/tokens/") {
        ids.token
    } else if pattern.starts_with("/api/v1/users/") {
        ids.user
    } else if pattern.starts_with("/api/v1/tenants/") {
        ids.tenant
    } else if pattern.starts_with("/api/v1/permissions/") {
        ids.fixed_perm
    } else {
        1
    };
    let filled = pattern
        .replace("{role}", "customer_member")
        .replace("{id}", &id.to_string());
    // Any placeholder added later: a harmless literal.
    let mut out = String::new();
    let mut rest = filled.as_str();
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find('}')
            .map_or(rest.len(), |e| start + e + 1);
        out.push('1');
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

fn ids_of(v: &Value) -> BTreeSet<i64> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|x| x["id"].as_i64().unwrap())
        .collect()
}

fn assert_forbidden(s: StatusCode, b: &Value, what: &str) {
    assert_eq!(s, StatusCode::FORBIDDEN, "{what}: {b}");
    assert_eq!(code(b), "forbidden", "{what}: {b}");
}

fn assert_not_found(s: StatusCode, b: &Value, what: &str) {
    assert_eq!(s, StatusCode::NOT_FOUND, "{what}: {b}");
    assert_eq!(code(b), "not_found", "{what}: {b}");
}

fn assert_field_error(s: StatusCode, b: &Value, field: &str, what: &str) {
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{what}: {b}");
    assert_eq!(code(b), "validation_failed", "{what}: {b}");
    assert!(
        b["error"]["fields"][field].is_string(),
        "{what}: expected an error on field `{field}`: {b}"
    );
}

/// admin, owner `oa` and member `ma` of tenant A.
async fn setup_a(srv: &Server) -> (Caller, Caller, Caller, i64) {
    let admin_c = srv.admin().await;
    let admin = Caller::new(srv, "admin", "admin", common::ADMIN_PASSWORD, admin_c).await;
    let ta = make_tenant(srv, &admin.client, "TENANT-A").await;
    let (_, c) = make_user(srv, &admin.client, "oa", "customer_owner", Some(ta), PW_OA).await;
    let oa = Caller::new(srv, "oa", "customer_owner", PW_OA, c).await;
    let (_, c) = make_user(srv, &admin.client, "ma", "customer_member", Some(ta), PW_MA).await;
    let ma = Caller::new(srv, "ma", "customer_member", PW_MA, c).await;
    (admin, oa, ma, ta)
}

#[tokio::test]
async fn every_api_route_is_enforced_per_role_and_needs_a_session() {
    let srv = Server::start();
    let (admin, oa, ma, ta) = setup_a(&srv).await;

    let perms = permissions(&srv, &admin).await;
    let api: Vec<Perm> = perms
        .iter()
        .filter(|p| p.path.starts_with("/api/v1/"))
        .cloned()
        .collect();
    assert!(
        api.len() >= 15,
        "only {} /api/v1/ permission records: {api:?}",
        api.len()
    );
    // Every API route of the shell has its record (fail-closed otherwise).
    for (m, p) in [
        ("GET", "/api/v1/me"),
        ("POST", "/api/v1/auth/logout"),
        ("POST", "/api/v1/auth/password"),
        ("GET", "/api/v1/tokens"),
        ("POST", "/api/v1/tokens"),
        ("DELETE", "/api/v1/tokens/{id}"),
        ("GET", "/api/v1/users"),
        ("POST", "/api/v1/users"),
        ("GET", "/api/v1/users/{id}"),
        ("PATCH", "/api/v1/users/{id}"),
        ("GET", "/api/v1/tenants"),
        ("POST", "/api/v1/tenants"),
        ("GET", "/api/v1/tenants/{id}"),
        ("PATCH", "/api/v1/tenants/{id}"),
        ("GET", "/api/v1/audit"),
        ("GET", "/api/v1/permissions"),
        ("PUT", "/api/v1/permissions/{role}/{id}"),
        ("DELETE", "/api/v1/permissions/{role}/{id}"),
    ] {
        perm_id(&api, m, p);
    }
    // The public sign-in route has no record: it must not be listed.
    assert!(
        !api.iter()
            .any(|p| p.method == "POST" && p.path == "/api/v1/auth/login"),
        "the public login route has a permission record"
    );
    for p in &api {
        if p.fixed {
            assert!(p.owner && p.member, "fixed record not held by all: {p:?}");
        }
    }
    // The seeded grants, as the migration defines them.
    let rec = |m: &str, path: &str| {
        api.iter()
            .find(|p| p.method == m && p.path == path)
            .unwrap()
            .clone()
    };
    let r = rec("GET", "/api/v1/users");
    assert!(r.owner && !r.member && !r.fixed, "{r:?}");
    let r = rec("POST", "/api/v1/tenants");
    assert!(!r.owner && !r.member, "{r:?}");
    let r = rec("GET", "/api/v1/permissions");
    assert!(!r.owner && !r.member, "{r:?}");
    let r = rec("GET", "/api/v1/me");
    assert!(r.fixed && r.owner && r.member, "{r:?}");
    let fixed_perm = perm_id(&api, "GET", "/api/v1/me");

    // One live token per caller, for DELETE /api/v1/tokens/{id}.
    let mut ids = BTreeMap::new();
    for c in [&admin, &oa, &ma] {
        let (s, b) = c
            .req(
                &srv,
                "POST",
                "/api/v1/tokens",
                Some(json!({"name": "matrix"})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{}: {b}", c.name);
        ids.insert(
            c.name,
            Ids {
                user: c.id,
                tenant: ta,
                token: b["api_token"]["id"].as_i64().unwrap(),
                fixed_perm,
            },
        );
    }

    // The matrix: (method, pattern, role) -> status.
    let mut seen: BTreeMap<(String, String, &str), StatusCode> = BTreeMap::new();
    let mut failures = Vec::new();
    for p in &api {
        for c in [&admin, &oa, &ma] {
            let holds = match c.role {
                "admin" => true,
                "customer_owner" => p.owner,
                _ => p.member,
            };
            let path = concrete(&p.path, &ids[c.name]);
            let ends_session = p.method == "POST" && p.path == "/api/v1/auth/logout";
            let (s, b) = if ends_session {
                // A throwaway session, so the caller stays signed in.
                let (t, s, b) = srv.login(c.name, c.password).await;
                assert_eq!(s, StatusCode::OK, "{}: {b}", c.name);
                req(&t, None, &srv, &p.method, &path, body_for(&p.method)).await
            } else {
                c.req(&srv, &p.method, &path, body_for(&p.method)).await
            };
            let what = format!(
                "{} {} ({}) as {} [{}]",
                p.method, path, p.path, c.name, c.role
            );
            if holds {
                if s == StatusCode::FORBIDDEN || s == StatusCode::UNAUTHORIZED {
                    failures.push(format!("{what}: held, but got {s} {b}"));
                }
            } else if s != StatusCode::FORBIDDEN || code(&b) != "forbidden" {
                failures.push(format!(
                    "{what}: not held, expected 403 forbidden, got {s} {b}"
                ));
            }
            seen.insert((p.method.clone(), p.path.clone(), c.role), s);
        }
    }
    assert!(
        failures.is_empty(),
        "permission matrix violations:\n{}",
        failures.join("\n")
    );
    assert_eq!(seen.len(), api.len() * 3);

    // Hard-coded expectations, so the matrix cannot pass vacuously.
    let at = |m: &str, p: &str, role: &str| seen[&(m.to_string(), p.to_string(), role)];
    for (m, p, role, want) in [
        (
            "GET",
            "/api/v1/users",
            "customer_member",
            StatusCode::FORBIDDEN,
        ),
        (
            "POST",
            "/api/v1/users",
            "customer_member",
            StatusCode::FORBIDDEN,
        ),
        (
            "POST",
            "/api/v1/tenants",
            "customer_member",
            StatusCode::FORBIDDEN,
        ),
        (
            "GET",
            "/api/v1/audit",
            "customer_member",
            StatusCode::FORBIDDEN,
        ),
        (
            "GET",
            "/api/v1/permissions",
            "customer_member",
            StatusCode::FORBIDDEN,
        ),
        (
            "POST",
            "/api/v1/tenants",
            "customer_owner",
            StatusCode::FORBIDDEN,
        ),
        (
            "PATCH",
            "/api/v1/tenants/{id}",
            "customer_owner",
            StatusCode::FORBIDDEN,
        ),
        (
            "GET",
            "/api/v1/permissions",
            "customer_owner",
            StatusCode::FORBIDDEN,
        ),
        (
            "PUT",
            "/api/v1/permissions/{role}/{id}",
            "customer_owner",
            StatusCode::FORBIDDEN,
        ),
        (
            "DELETE",
            "/api/v1/permissions/{role}/{id}",
            "customer_owner",
            StatusCode::FORBIDDEN,
        ),
        ("GET", "/api/v1/me", "customer_member", StatusCode::OK),
        ("GET", "/api/v1/tokens", "customer_member", StatusCode::OK),
        (
            "DELETE",
            "/api/v1/tokens/{id}",
            "customer_member",
            StatusCode::NO_CONTENT,
        ),
        (
            "POST",
            "/api/v1/auth/logout",
            "customer_member",
            StatusCode::NO_CONTENT,
        ),
        ("GET", "/api/v1/users", "customer_owner", StatusCode::OK),
        (
            "GET",
            "/api/v1/users/{id}",
            "customer_owner",
            StatusCode::OK,
        ),
        (
            "GET",
            "/api/v1/tenants/{id}",
            "customer_owner",
            StatusCode::OK,
        ),
        ("GET", "/api/v1/audit", "customer_owner", StatusCode::OK),
        ("GET", "/api/v1/permissions", "admin", StatusCode::OK),
        ("GET", "/api/v1/users", "admin", StatusCode::OK),
        ("GET", "/api/v1/tenants/{id}", "admin", StatusCode::OK),
        (
            "POST",
            "/api/v1/tenants",
            "admin",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "PUT",
            "/api/v1/permissions/{role}/{id}",
            "admin",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "DELETE",
            "/api/v1/permissions/{role}/{id}",
            "admin",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        assert_eq!(at(m, p, role), want, "{m} {p} as {role}");
    }
    for ((m, p, role), s) in &seen {
        if *role == "admin" {
            assert_ne!(*s, StatusCode::FORBIDDEN, "admin got 403 on {m} {p}");
        }
    }
    let forbidden = seen
        .values()
        .filter(|s| **s == StatusCode::FORBIDDEN)
        .count();
    assert!(forbidden >= 10, "only {forbidden} denials in the matrix");

    // Denied changes are audited.
    let (s, b) = admin
        .get(&srv, "/api/v1/audit?action=permission.denied&limit=1000")
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert!(
        b.as_array().unwrap().iter().any(|r| r["actor_id"] == ma.id
            && r["resource_id"] == "POST /api/v1/tenants"
            && r["outcome"] == "denied"),
        "no permission.denied record for ma POST /api/v1/tenants: {b}"
    );

    // Fixed records cannot be revoked (nor granted), for either role; the
    // permission stays held.
    for role in ["customer_member", "customer_owner"] {
        let path = format!("/api/v1/permissions/{role}/{fixed_perm}");
        let (s, b) = admin.req(&srv, "DELETE", &path, None).await;
        assert_field_error(s, &b, "permission", &format!("DELETE {path}"));
        let (s, b) = admin.req(&srv, "PUT", &path, None).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "PUT {path}: {b}");
    }
    // The admin role is not grantable: it holds everything already.
    let users_perm = perm_id(&api, "GET", "/api/v1/users");
    let (s, b) = admin
        .req(
            &srv,
            "DELETE",
            &format!("/api/v1/permissions/admin/{users_perm}"),
            None,
        )
        .await;
    assert_field_error(s, &b, "role", "revoke from admin");
    let (s, b) = ma.get(&srv, "/api/v1/me").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let after = permissions(&srv, &admin).await;
    let me_rec = after.iter().find(|p| p.id == fixed_perm).unwrap();
    assert!(me_rec.fixed && me_rec.owner && me_rec.member, "{me_rec:?}");

    // Without a session every recorded API route answers 401 (none is public).
    let anon = srv.client();
    let none = Ids {
        user: 1,
        tenant: 1,
        token: 1,
        fixed_perm,
    };
    let mut failures = Vec::new();
    for p in &api {
        let path = concrete(&p.path, &none);
        let (s, b) = req(&anon, None, &srv, &p.method, &path, body_for(&p.method)).await;
        if s != StatusCode::UNAUTHORIZED || code(&b) != "unauthenticated" {
            failures.push(format!(
                "{} {path}: expected 401 unauthenticated, got {s} {b}",
                p.method
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "unauthenticated calls not refused:\n{}",
        failures.join("\n")
    );
    // A bearer token that does not exist is no session either.
    let (s, b) = {
        let r = anon
            .get(srv.url("/api/v1/users"))
            .bearer_auth("gdk_not-a-token")
            .send()
            .await
            .unwrap();
        let s = r.status();
        (s, r.json::<Value>().await.unwrap())
    };
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    assert_eq!(code(&b), "unauthenticated", "{b}");
    // The one public API route stays reachable (a bad body is 422, not 401).
    let (s, b) = req(
        &anon,
        None,
        &srv,
        "POST",
        "/api/v1/auth/login",
        Some(json!({})),
    )
    .await;
    assert_ne!(s, StatusCode::UNAUTHORIZED, "{b}");
    assert_ne!(s, StatusCode::FORBIDDEN, "{b}");
}

#[tokio::test]
async fn tenants_are_isolated_in_every_scoped_query() {
    let srv = Server::start();
    let (admin, oa, ma, ta) = setup_a(&srv).await;
    let tb = make_tenant(&srv, &admin.client, "TENANT-B").await;
    let (_, c) = make_user(&srv, &admin.client, "ob", "customer_owner", Some(tb), PW_OB).await;
    let ob = Caller::new(&srv, "ob", "customer_owner", PW_OB, c).await;
    let (_, c) = make_user(
        &srv,
        &admin.client,
        "mb",
        "customer_member",
        Some(tb),
        PW_MB,
    )
    .await;
    let mb = Caller::new(&srv, "mb", "customer_member", PW_MB, c).await;
    let perms = permissions(&srv, &admin).await;

    // Admin sees everyone (so the scoped lists below are real restrictions).
    let (s, b) = admin.get(&srv, "/api/v1/users").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let everyone = ids_of(&b);
    for c in [&admin, &oa, &ma, &ob, &mb] {
        assert!(everyone.contains(&c.id), "admin list lacks {}: {b}", c.name);
    }

    // ---- owner oa: tenant A only ----
    let (s, b) = oa.get(&srv, "/api/v1/users").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(ids_of(&b), BTreeSet::from([oa.id, ma.id]), "oa lists {b}");
    assert!(b.as_array().unwrap().iter().all(|u| u["tenant_id"] == ta));
    let (s, b) = oa.get(&srv, &format!("/api/v1/users/{}", ma.id)).await;
    assert_eq!(s, StatusCode::OK, "oa GET own member: {b}");
    for other in [&ob, &mb, &admin] {
        let path = format!("/api/v1/users/{}", other.id);
        let (s, b) = oa.get(&srv, &path).await;
        assert_not_found(s, &b, &format!("oa GET {path} ({})", other.name));
        let (s, b) = oa
            .req(&srv, "PATCH", &path, Some(json!({"display_name": "pwned"})))
            .await;
        assert_not_found(s, &b, &format!("oa PATCH {path} ({})", other.name));
        let (s, b) = oa
            .req(&srv, "PATCH", &path, Some(json!({"enabled": false})))
            .await;
        assert_not_found(s, &b, &format!("oa PATCH {path} disable ({})", other.name));
        let (s, b) = admin.get(&srv, &path).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        assert_ne!(b["display_name"], "pwned", "{b}");
        assert_eq!(b["enabled"], true, "{b}");
    }
    // Symmetric: B's owner cannot see A.
    let (s, b) = ob.get(&srv, "/api/v1/users").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(ids_of(&b), BTreeSet::from([ob.id, mb.id]), "ob lists {b}");
    let path = format!("/api/v1/users/{}", oa.id);
    let (s, b) = ob.get(&srv, &path).await;
    assert_not_found(s, &b, &format!("ob GET {path}"));

    let (s, b) = oa.get(&srv, "/api/v1/tenants").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(ids_of(&b), BTreeSet::from([ta]), "oa lists tenants {b}");
    let (s, b) = oa.get(&srv, &format!("/api/v1/tenants/{ta}")).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let path = format!("/api/v1/tenants/{tb}");
    let (s, b) = oa.get(&srv, &path).await;
    assert_not_found(s, &b, &format!("oa GET {path}"));
    let (s, b) = admin.get(&srv, "/api/v1/tenants").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert!(ids_of(&b).is_superset(&BTreeSet::from([ta, tb])), "{b}");

    // Owners cannot create outside their tenant, nor admins.
    let (s, b) = oa
        .req(
            &srv,
            "POST",
            "/api/v1/users",
            Some(json!({"username": "intruder1", "role": "customer_member", "tenant_id": tb})),
        )
        .await;
    assert_field_error(s, &b, "tenant_id", "oa creates a user in B");
    let (s, b) = oa
        .req(
            &srv,
            "POST",
            "/api/v1/users",
            Some(json!({"username": "intruder2", "role": "admin"})),
        )
        .await;
    assert_field_error(s, &b, "role", "oa creates an admin");
    let (s, b) = oa
        .req(
            &srv,
            "POST",
            "/api/v1/users",
            Some(json!({"username": "intruder3", "role": "customer_owner", "tenant_id": tb})),
        )
        .await;
    assert_field_error(s, &b, "tenant_id", "oa creates an owner in B");
    // Nor move their own users out, nor promote them to admin.
    let path = format!("/api/v1/users/{}", ma.id);
    let (s, b) = oa
        .req(&srv, "PATCH", &path, Some(json!({"tenant_id": tb})))
        .await;
    assert_field_error(s, &b, "tenant_id", "oa moves ma to B");
    let (s, b) = oa
        .req(&srv, "PATCH", &path, Some(json!({"role": "admin"})))
        .await;
    assert_field_error(s, &b, "role", "oa promotes ma to admin");
    // A member in A: 201, and it lands in A.
    let (s, b) = oa
        .req(
            &srv,
            "POST",
            "/api/v1/users",
            Some(json!({"username": "newmember", "role": "customer_member"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "oa creates a member: {b}");
    assert_eq!(b["user"]["tenant_id"], ta, "{b}");
    assert_eq!(b["user"]["role"], "customer_member", "{b}");
    let new_id = b["user"]["id"].as_i64().unwrap();
    let (_, b) = admin.get(&srv, &format!("/api/v1/users/{new_id}")).await;
    assert_eq!(b["tenant_id"], ta, "{b}");
    let (_, b) = admin.get(&srv, "/api/v1/users").await;
    let names: Vec<&str> = b
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert!(
        !names.iter().any(|n| n.starts_with("intruder")),
        "{names:?}"
    );
    let (_, b) = oa.get(&srv, "/api/v1/users").await;
    assert_eq!(ids_of(&b), BTreeSet::from([oa.id, ma.id, new_id]), "{b}");
    let (s, b) = ob.get(&srv, &format!("/api/v1/users/{new_id}")).await;
    assert_not_found(s, &b, "ob GET oa's new member");

    // ---- member: scoping is in the query, not only the permission ----
    let list_perm = perm_id(&perms, "GET", "/api/v1/users");
    let show_perm = perm_id(&perms, "GET", "/api/v1/users/{id}");
    let (s, b) = ma.get(&srv, "/api/v1/users").await;
    assert_forbidden(s, &b, "ma GET /api/v1/users before the grant");
    for id in [list_perm, show_perm] {
        let (s, b) = admin
            .req(
                &srv,
                "PUT",
                &format!("/api/v1/permissions/customer_member/{id}"),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "grant {id}: {b}");
        assert_eq!(b["customer_member"], true, "{b}");
    }
    let (s, b) = ma.get(&srv, "/api/v1/users").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(ids_of(&b), BTreeSet::from([ma.id]), "ma lists {b}");
    let (s, b) = mb.get(&srv, "/api/v1/users").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(ids_of(&b), BTreeSet::from([mb.id]), "mb lists {b}");
    let (s, b) = ma.get(&srv, &format!("/api/v1/users/{}", ma.id)).await;
    assert_eq!(s, StatusCode::OK, "ma GET self: {b}");
    for other in [&oa, &mb, &ob, &admin] {
        let path = format!("/api/v1/users/{}", other.id);
        let (s, b) = ma.get(&srv, &path).await;
        assert_not_found(s, &b, &format!("ma GET {path} ({})", other.name));
    }
    let path = format!("/api/v1/users/{new_id}");
    let (s, b) = ma.get(&srv, &path).await;
    assert_not_found(s, &b, &format!("ma GET {path} (newmember)"));
    for id in [list_perm, show_perm] {
        let (s, b) = admin
            .req(
                &srv,
                "DELETE",
                &format!("/api/v1/permissions/customer_member/{id}"),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "revoke {id}: {b}");
        assert_eq!(b["customer_member"], false, "{b}");
    }
    let (s, b) = ma.get(&srv, "/api/v1/users").await;
    assert_forbidden(s, &b, "ma GET /api/v1/users after the revoke");
    let (s, b) = ma.get(&srv, &format!("/api/v1/users/{}", oa.id)).await;
    assert_forbidden(s, &b, "ma GET /api/v1/users/{oa} after the revoke");

    // ---- audit: owners see their tenant, members themselves ----
    let (s, all) = admin.get(&srv, "/api/v1/audit?limit=1000").await;
    assert_eq!(s, StatusCode::OK, "{all}");
    let all = all.as_array().unwrap().clone();
    assert!(
        all.iter().any(|r| r["tenant_id"] == tb),
        "no B records at all"
    );
    assert!(
        all.iter().any(|r| r["tenant_id"] == ta),
        "no A records at all"
    );
    for path in ["/api/v1/audit?limit=1000", "/api/v1/audit?format=json"] {
        let (s, b) = oa.get(&srv, path).await;
        assert_eq!(s, StatusCode::OK, "oa {path}: {b}");
        let rows = b.as_array().unwrap();
        assert!(!rows.is_empty(), "oa {path}: empty");
        for r in rows {
            assert_eq!(r["tenant_id"], ta, "oa {path} sees a foreign record: {r}");
        }
        assert!(
            rows.iter()
                .any(|r| r["action"] == "user.create" && r["actor_id"] == oa.id),
            "oa {path}: own user.create missing"
        );
    }
    let (s, b) = oa.get(&srv, "/api/v1/audit?format=csv").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let csv = b.as_str().unwrap();
    for line in csv.lines().skip(1) {
        let tenant = line.split(',').nth(4).unwrap_or("");
        assert_eq!(
            tenant,
            ta.to_string(),
            "oa CSV has a foreign record: {line}"
        );
    }
    let (s, b) = ob.get(&srv, "/api/v1/audit?limit=1000").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    for r in b.as_array().unwrap() {
        assert_eq!(r["tenant_id"], tb, "ob sees a foreign record: {r}");
    }

    let audit_perm = perm_id(&perms, "GET", "/api/v1/audit");
    let (s, b) = ma.get(&srv, "/api/v1/audit").await;
    assert_forbidden(s, &b, "ma GET /api/v1/audit before the grant");
    let grant_path = format!("/api/v1/permissions/customer_member/{audit_perm}");
    let (s, b) = admin.req(&srv, "PUT", &grant_path, None).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    for path in ["/api/v1/audit?limit=1000", "/api/v1/audit?format=json"] {
        let (s, b) = ma.get(&srv, path).await;
        assert_eq!(s, StatusCode::OK, "ma {path}: {b}");
        let rows = b.as_array().unwrap();
        assert!(!rows.is_empty(), "ma {path}: empty");
        for r in rows {
            assert_eq!(r["actor_id"], ma.id, "ma {path} sees another's record: {r}");
        }
    }
    let (s, b) = mb.get(&srv, "/api/v1/audit?limit=1000").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    for r in b.as_array().unwrap() {
        assert_eq!(r["actor_id"], mb.id, "mb sees another's record: {r}");
    }
    let (s, b) = admin.req(&srv, "DELETE", &grant_path, None).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = ma.get(&srv, "/api/v1/audit").await;
    assert_forbidden(s, &b, "ma GET /api/v1/audit after the revoke");

    // ---- grants and revokes are audited ----
    for (action, ids) in [
        ("permission.grant", [list_perm, show_perm, audit_perm]),
        ("permission.revoke", [list_perm, show_perm, audit_perm]),
    ] {
        let (s, b) = admin
            .get(&srv, &format!("/api/v1/audit?action={action}"))
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let rows = b.as_array().unwrap();
        for id in ids {
            assert!(
                rows.iter().any(|r| r["action"] == action
                    && r["resource_type"] == "permission"
                    && r["resource_id"].as_str() == Some(id.to_string().as_str())
                    && r["actor_id"] == admin.id
                    && r["detail"]["role"] == "customer_member"),
                "no {action} record for permission {id}: {b}"
            );
        }
    }
    // ...and owners do not see them (admin's records carry no tenant).
    let (_, b) = oa.get(&srv, "/api/v1/audit?action=permission.grant").await;
    assert_eq!(b, json!([]), "oa sees admin's grants: {b}");
}

/// No escalation through the matrix: admin-only records (the matrix itself,
/// nodes, the orphan report, creating tenants, managing the shared catalog)
/// cannot be granted to any other role, so an owner can never be handed
/// the matrix and grant themselves admin routes; a grant row for one (made
/// before this rule, or by hand in the database) gives nothing; and other
/// tenants' users stay out of an owner's reach with any grant.
#[tokio::test]
async fn the_matrix_cannot_hand_out_what_belongs_to_admins() {
    let srv = Server::start();
    let (admin, oa, _ma, _ta) = setup_a(&srv).await;
    let (s, all) = admin.get(&srv, "/api/v1/permissions").await;
    assert_eq!(s, StatusCode::OK, "{all}");
    let admin_only: Vec<(i64, String, String)> = all
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["admin_only"] == true)
        .map(|p| {
            (
                p["id"].as_i64().unwrap(),
                p["method"].as_str().unwrap().to_string(),
                p["path_pattern"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let named: BTreeSet<(String, String)> = admin_only
        .iter()
        .map(|(_, m, p)| (m.clone(), p.clone()))
        .collect();
    for (m, p) in [
        ("PUT", "/api/v1/permissions/{role}/{id}"),
        ("DELETE", "/api/v1/permissions/{role}/{id}"),
        ("GET", "/api/v1/permissions"),
        ("POST", "/permissions/{role}/{id}"),
        ("POST", "/api/v1/nodes"),
        ("GET", "/api/v1/nodes"),
        ("GET", "/api/v1/instances/orphans"),
        ("POST", "/api/v1/tenants"),
        ("POST", "/api/v1/images"),
    ] {
        assert!(
            named.contains(&(m.to_string(), p.to_string())),
            "{m} {p} is not admin-only"
        );
    }
    // Not even an admin can grant them, to either customer role.
    for (id, m, p) in &admin_only {
        for role in ["customer_owner", "customer_member"] {
            let path = format!("/api/v1/permissions/{role}/{id}");
            let (s, b) = admin.req(&srv, "PUT", &path, None).await;
            assert_field_error(s, &b, "permission", &format!("grant {m} {p} to {role}"));
        }
    }

    // A grant row written straight into the database gives nothing either.
    let id_of = |m: &str, p: &str| {
        admin_only
            .iter()
            .find(|(_, mm, pp)| mm == m && pp == p)
            .unwrap()
            .0
    };
    let (matrix, nodes) = (
        id_of("PUT", "/api/v1/permissions/{role}/{id}"),
        id_of("POST", "/api/v1/nodes"),
    );
    {
        let conn = rusqlite::Connection::open(srv.data_dir().join("gpudock.db")).unwrap();
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .unwrap();
        for id in [matrix, nodes, id_of("GET", "/api/v1/nodes")] {
            conn.execute(
                "INSERT OR IGNORE INTO role_permissions (role, permission_id) VALUES ('customer_owner', ?1)",
                [id],
            )
            .unwrap();
        }
    }
    let (s, b) = oa
        .req(
            &srv,
            "PUT",
            &format!("/api/v1/permissions/customer_owner/{nodes}"),
            None,
        )
        .await;
    assert_forbidden(s, &b, "owner grants itself nodes");
    let (s, b) = oa.get(&srv, "/api/v1/nodes").await;
    assert_forbidden(s, &b, "owner lists nodes");
    let (s, b) = oa
        .req(&srv, "POST", "/api/v1/nodes", Some(json!({"name": "evil"})))
        .await;
    assert_forbidden(s, &b, "owner creates a node");
    let after = permissions(&srv, &admin).await;
    for p in after.iter().filter(|p| p.id == matrix || p.id == nodes) {
        assert!(!p.owner && !p.member, "{p:?}");
    }
    // The nodes page is not in the owner's navigation.
    let page = common::text(&oa.client, &srv.url("/")).await;
    assert!(!page.contains("href=\"/nodes\""), "{page}");
}
