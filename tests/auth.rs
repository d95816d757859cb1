//! End-to-end tests of sign-in, the forced password change, lockout, sessions,
//! API tokens, CSRF and cookie flags, against the real binary over HTTPS.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{ADMIN_PASSWORD, Server, code, get, make_tenant, make_user, post, send};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn first_start_forces_a_password_change_everywhere() {
    let srv = Server::start();
    let pw_file = srv.data_dir().join("initial-admin-password");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&pw_file).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let initial = srv.initial_password();
    assert!(initial.len() >= 16);
    // Logged once, as promised.
    assert_eq!(srv.logs().matches(&initial).count(), 1);

    let (c, s, b) = srv.login("admin", &initial).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["must_change_password"], true);
    assert_eq!(b["user"]["role"], "admin");
    assert!(b["user"].get("password_hash").is_none());

    for (m, path) in [
        ("GET", "/api/v1/users"),
        ("POST", "/api/v1/tenants"),
        ("GET", "/api/v1/audit"),
        ("GET", "/api/v1/tokens"),
        ("GET", "/api/v1/permissions"),
        ("GET", "/"),
        ("GET", "/users"),
    ] {
        let (s, b) = send(&c, m, &srv.url(path), (m == "POST").then(|| json!({}))).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{m} {path}");
        if path.starts_with("/api/") {
            assert_eq!(code(&b), "password_change_required", "{m} {path}");
        }
    }
    let (s, b) = get(&c, &srv.url("/api/v1/me")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["must_change_password"], true);

    // Too weak: 422 naming the field and why.
    let (s, b) = post(
        &c,
        &srv.url("/api/v1/auth/password"),
        json!({"current_password": initial, "new_password": "password123"}),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(code(&b), "validation_failed");
    assert!(
        b["error"]["fields"]["new_password"]
            .as_str()
            .unwrap()
            .contains("weak"),
        "{b}"
    );
    // Wrong current password.
    let (s, b) = post(
        &c,
        &srv.url("/api/v1/auth/password"),
        json!({"current_password": "nope", "new_password": ADMIN_PASSWORD}),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(b["error"]["fields"]["current_password"].is_string());

    let (s, _) = post(
        &c,
        &srv.url("/api/v1/auth/password"),
        json!({"current_password": initial, "new_password": ADMIN_PASSWORD}),
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert!(
        !pw_file.exists(),
        "the spent initial password file is removed"
    );
    let (s, _) = get(&c, &srv.url("/api/v1/users")).await;
    assert_eq!(
        s,
        StatusCode::OK,
        "the same session goes on after the change"
    );
    let (_, s, _) = srv.login("admin", &initial).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(
        !srv.logs().contains(ADMIN_PASSWORD),
        "a chosen password never reaches the log"
    );
}

#[tokio::test]
async fn lockout_after_five_failures_applies_whatever_the_password() {
    let srv = Server::start();
    let admin = srv.admin().await;
    let t = make_tenant(&srv, &admin, "LOCK").await;
    let pw = "Granite-Sparrow-Lattice-41";
    make_user(&srv, &admin, "carol", "customer_member", Some(t), pw).await;

    for i in 1..=4 {
        let (_, s, b) = srv.login("carol", "wrong-password").await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "attempt {i}");
        assert_eq!(code(&b), "invalid_credentials");
    }
    let (_, s, b) = srv.login("carol", "wrong-password").await;
    assert_eq!(s, StatusCode::LOCKED, "the fifth failure locks");
    assert_eq!(code(&b), "account_locked");
    // Locked: the right password gets the same answer as a wrong one.
    let (_, s1, b1) = srv.login("carol", pw).await;
    let (_, s2, b2) = srv.login("carol", "still-wrong").await;
    assert_eq!((s1, s2), (StatusCode::LOCKED, StatusCode::LOCKED));
    assert_eq!(b1, b2);

    // Unknown users look like wrong passwords.
    let (_, s, b) = srv.login("nobody", "x").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(code(&b), "invalid_credentials");

    let (s, recs) = get(&admin, &srv.url("/api/v1/audit?actor=carol&action=auth.")).await;
    assert_eq!(s, StatusCode::OK);
    let recs = recs.as_array().unwrap();
    let failures = recs
        .iter()
        .filter(|r| r["action"] == "auth.login" && r["outcome"] == "failure")
        .count();
    assert_eq!(failures, 7, "5 wrong + 2 while locked");
    let lock = recs
        .iter()
        .find(|r| r["action"] == "auth.lock")
        .expect("lock audited");
    assert_eq!(lock["source_ip"], "127.0.0.1");
    assert!(recs.iter().all(|r| r["source_ip"] == "127.0.0.1"));
    assert!(recs.iter().any(|r| r["detail"]["reason"] == "locked"));

    // The operator's reset clears the lock and forces a new password.
    let out = srv.cli(&["admin", "reset-password", "carol"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let temp = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let (c, s, b) = srv.login("carol", &temp).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["must_change_password"], true);
    let (s, _) = get(&c, &srv.url("/")).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = get(
        &admin,
        &srv.url("/api/v1/audit?action=admin.reset_password&actor=cli"),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn lockout_threshold_is_configurable() {
    let srv = Server::start_with("[security]\nlockout_threshold = 2\nlockout_minutes = 1\n");
    srv.admin().await;
    let (_, s, _) = srv.login("admin", "bad").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (_, s, _) = srv.login("admin", "bad").await;
    assert_eq!(s, StatusCode::LOCKED);
    let (_, s, _) = srv.login("admin", ADMIN_PASSWORD).await;
    assert_eq!(s, StatusCode::LOCKED);
}

#[tokio::test]
async fn sessions_cookies_logout_and_password_change() {
    let srv = Server::start();
    let admin = srv.admin().await;

    // Cookie flags.
    let raw = srv.client();
    let r = raw
        .post(srv.url("/api/v1/auth/login"))
        .json(&json!({"username": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let cookie = r
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    for flag in ["gpudock_session=", "Secure", "HttpOnly", "SameSite=Strict"] {
        assert!(cookie.contains(flag), "{flag} missing in {cookie}");
    }
    let session = cookie.split(';').next().unwrap().to_string();

    // Logout invalidates the session server-side: replaying the cookie fails.
    let (s, _) = post(&raw, &srv.url("/api/v1/auth/logout"), json!({})).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let replay = common::client_trusting(&srv.cert);
    let r = replay
        .get(srv.url("/api/v1/me"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // A password change ends the user's other sessions.
    let (other, s, _) = srv.login("admin", ADMIN_PASSWORD).await;
    assert_eq!(s, StatusCode::OK);
    let new_pw = "Meridian-Copper-Falcon-77";
    let (s, _) = post(
        &admin,
        &srv.url("/api/v1/auth/password"),
        json!({"current_password": ADMIN_PASSWORD, "new_password": new_pw}),
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, b) = get(&other, &srv.url("/api/v1/me")).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(code(&b), "unauthenticated");
    let (s, _) = get(&admin, &srv.url("/api/v1/me")).await;
    assert_eq!(s, StatusCode::OK, "the changing session itself goes on");

    // Pages without a session redirect to the sign-in page.
    let r = srv.client().get(srv.url("/users")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/login?next=%2Fusers");
}

#[tokio::test]
async fn disabling_a_user_ends_access() {
    let srv = Server::start();
    let admin = srv.admin().await;
    let t = make_tenant(&srv, &admin, "DIS").await;
    let pw = "Harbor-Juniper-Vessel-28";
    let (id, dave) = make_user(&srv, &admin, "dave", "customer_owner", Some(t), pw).await;
    let (s, _) = get(&dave, &srv.url("/api/v1/me")).await;
    assert_eq!(s, StatusCode::OK);
    let (s, b) = common::patch(
        &admin,
        &srv.url(&format!("/api/v1/users/{id}")),
        json!({"enabled": false}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, _) = get(&dave, &srv.url("/api/v1/me")).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (_, s, _) = srv.login("dave", pw).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // A disabled tenant shuts out its users too.
    common::patch(
        &admin,
        &srv.url(&format!("/api/v1/users/{id}")),
        json!({"enabled": true}),
    )
    .await;
    let (_, s, _) = srv.login("dave", pw).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = common::patch(
        &admin,
        &srv.url(&format!("/api/v1/tenants/{t}")),
        json!({"enabled": false}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (_, s, _) = srv.login("dave", pw).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // The last enabled admin cannot be disabled or demoted, not even by itself.
    let (s, b) = common::patch(
        &admin,
        &srv.url("/api/v1/users/1"),
        json!({"enabled": false}),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
}

#[tokio::test]
async fn api_tokens_are_shown_once_stored_hashed_and_revocable() {
    let srv = Server::start();
    let admin = srv.admin().await;
    let (s, b) = post(&admin, &srv.url("/api/v1/tokens"), json!({"name": "ci"})).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let token = b["token"].as_str().unwrap().to_string();
    let id = b["api_token"]["id"].as_i64().unwrap();
    assert!(token.starts_with("gdk_") && token.len() > 40);

    let bare = srv.client();
    let r = bare
        .get(srv.url("/api/v1/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Token calls need no CSRF token and can change things.
    let r = bare
        .post(srv.url("/api/v1/tenants"))
        .bearer_auth(&token)
        .json(&json!({"name": "Via token", "company_code": "TOK"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = bare
        .get(srv.url("/api/v1/me"))
        .bearer_auth("gdk_not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // Listed without the secret.
    let (_, list) = get(&admin, &srv.url("/api/v1/tokens")).await;
    assert!(!list.to_string().contains(&token));
    assert!(list[0]["last_used_at"].is_number());

    let (s, _) = send(
        &admin,
        "DELETE",
        &srv.url(&format!("/api/v1/tokens/{id}")),
        Some(json!({})),
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let r = bare
        .get(srv.url("/api/v1/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let (s, _) = send(
        &admin,
        "DELETE",
        &srv.url(&format!("/api/v1/tokens/{id}")),
        Some(json!({})),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Never in clear on disk or in the log.
    let db = std::fs::read(srv.data_dir().join("gpudock.db")).unwrap();
    let wal = std::fs::read(srv.data_dir().join("gpudock.db-wal")).unwrap_or_default();
    for bytes in [&db, &wal] {
        assert!(!bytes.windows(token.len()).any(|w| w == token.as_bytes()));
    }
    assert!(!srv.logs().contains(&token));
    let (_, audit) = get(&admin, &srv.url("/api/v1/audit?action=token.")).await;
    assert_eq!(audit.as_array().unwrap().len(), 2);
    assert!(!audit.to_string().contains(&token));
}

#[tokio::test]
async fn csrf_and_origin_are_checked_for_cookie_sessions() {
    let srv = Server::start();
    let admin = srv.admin().await;
    // A form post without the token is refused.
    let r = admin
        .post(srv.url("/tenants"))
        .form(&[("name", "X"), ("company_code", "XCSRF")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // With the session's token (from /api/v1/me) it passes.
    let (_, me) = get(&admin, &srv.url("/api/v1/me")).await;
    let token = me["csrf_token"].as_str().unwrap().to_string();
    let r = admin
        .post(srv.url("/tenants"))
        .form(&[
            ("name", "X"),
            ("company_code", "XCSRF"),
            ("csrf_token", &token),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    // A wrong token in the header is refused.
    let r = admin
        .post(srv.url("/tenants"))
        .header("x-csrf-token", "forged")
        .form(&[("name", "Y"), ("company_code", "YCSRF")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // JSON from another origin is refused.
    let r = admin
        .post(srv.url("/api/v1/tenants"))
        .header("origin", "https://evil.example")
        .json(&json!({"name": "Z", "company_code": "ZCSRF"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let (_, b) = get(&admin, &srv.url("/api/v1/tenants")).await;
    let codes: Vec<_> = b
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["company_code"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(codes, ["XCSRF"]);
}

#[tokio::test]
async fn errors_have_one_shape_and_validation_names_fields() {
    let srv = Server::start();
    let admin = srv.admin().await;
    let r = admin
        .post(srv.url("/api/v1/tenants"))
        .header("content-type", "application/json")
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let b: serde_json::Value = r.json().await.unwrap();
    assert!(b["error"]["fields"]["body"].is_string(), "{b}");

    let (s, b) = post(
        &admin,
        &srv.url("/api/v1/tenants"),
        json!({"name": "", "company_code": "bad code!"}),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        b["error"]["fields"]["name"].is_string()
            && b["error"]["fields"]["company_code"].is_string(),
        "{b}"
    );
    make_tenant(&srv, &admin, "DUP").await;
    let (s, b) = post(
        &admin,
        &srv.url("/api/v1/tenants"),
        json!({"name": "Again", "company_code": "DUP"}),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(b["error"]["fields"]["company_code"], "already taken");

    let (s, b) = post(
        &admin,
        &srv.url("/api/v1/users"),
        json!({"username": "Bad Name", "role": "wizard"}),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        b["error"]["fields"]["username"].is_string() && b["error"]["fields"]["role"].is_string(),
        "{b}"
    );
    let (s, b) = post(
        &admin,
        &srv.url("/api/v1/users"),
        json!({"username": "eve", "role": "customer_member"}),
    )
    .await;
    assert_eq!(
        s,
        StatusCode::UNPROCESSABLE_ENTITY,
        "a customer needs a tenant"
    );
    assert!(b["error"]["fields"]["tenant_id"].is_string());
    let (s, b) = post(
        &admin,
        &srv.url("/api/v1/users"),
        json!({"username": "eve", "role": "admin", "password": "qwerty123"}),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        b["error"]["fields"]["password"]
            .as_str()
            .unwrap()
            .contains("weak")
    );

    let (s, b) = get(&admin, &srv.url("/api/v1/users/999")).await;
    assert_eq!((s, code(&b)), (StatusCode::NOT_FOUND, "not_found"));
    let (s, b) = get(&admin, &srv.url("/api/v1/users/abc")).await;
    assert_eq!((s, code(&b)), (StatusCode::NOT_FOUND, "not_found"));
    let (s, b) = get(&admin, &srv.url("/api/v1/no-such-route")).await;
    assert_eq!((s, code(&b)), (StatusCode::NOT_FOUND, "not_found"));
    let (s, _) = get(&srv.client(), &srv.url("/healthz")).await;
    assert_eq!(s, StatusCode::OK);
    // HEAD carries GET's permission.
    let r = admin.head(srv.url("/api/v1/users")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = srv
        .client()
        .head(srv.url("/api/v1/users"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // Browser requests get a page in their language instead of JSON.
    let r = admin
        .get(srv.url("/users/999"))
        .header("accept-language", "en")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("id=\"error-message\">not found")
    );
    let r = admin
        .get(srv.url("/users/999"))
        .header("accept-language", "zh-CN,zh;q=0.9")
        .send()
        .await
        .unwrap();
    assert!(r.text().await.unwrap().contains("未找到"));
}

#[tokio::test]
async fn audit_export_and_page_forms_keep_input() {
    let srv = Server::start();
    let admin = srv.admin().await;
    make_tenant(&srv, &admin, "EXP").await;
    let r = admin
        .get(srv.url("/api/v1/audit?format=csv&action=tenant.create"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    assert!(
        r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("gpudock-audit.csv")
    );
    let csv = r.text().await.unwrap();
    let lines: Vec<_> = csv.lines().collect();
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(lines[0].starts_with("id,time,actor_id,actor,tenant_id,source_ip"));
    assert!(lines[1].contains("tenant.create") && lines[1].contains("EXP"));
    let (s, b) = get(&admin, &srv.url("/api/v1/audit?format=json")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(b.as_array().unwrap().len() >= 4);
    let (s, b) = get(&admin, &srv.url("/api/v1/audit?format=xml")).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(b["error"]["fields"]["format"].is_string());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (_, b) = get(
        &admin,
        &srv.url(&format!("/api/v1/audit?since={}", now + 3600)),
    )
    .await;
    assert_eq!(b.as_array().unwrap().len(), 0);

    // A bad form re-renders with the field error and what was typed.
    let (_, me) = get(&admin, &srv.url("/api/v1/me")).await;
    let token = me["csrf_token"].as_str().unwrap();
    let r = admin
        .post(srv.url("/tenants"))
        .header("accept-language", "en")
        .form(&[
            ("name", "Typed Name"),
            ("company_code", "EXP"),
            ("csrf_token", token),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let html = r.text().await.unwrap();
    assert!(html.contains("value=\"Typed Name\""));
    assert!(html.contains("id=\"err-company-code\">already taken"));
    // The htmx filter request gets only the rows fragment.
    let r = admin
        .get(srv.url("/audit?action=tenant."))
        .header("hx-request", "true")
        .send()
        .await
        .unwrap();
    let frag = r.text().await.unwrap();
    assert!(frag.contains("audit-table") && !frag.contains("<html"));
    let r = admin
        .get(srv.url("/audit?action=tenant."))
        .send()
        .await
        .unwrap();
    assert!(r.text().await.unwrap().contains("<html"));
}

#[tokio::test]
async fn language_switch_sets_a_cookie_and_stays_on_site() {
    let srv = Server::start();
    let c = srv.client();
    let r = c
        .get(srv.url("/lang/en?next=%2Flogin%3Fnext%3D%252Fusers"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/login?next=%2Fusers");
    assert!(
        r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .starts_with("lang=en;")
    );
    let html = c
        .get(srv.url("/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("<html lang=\"en\">") && html.contains("Sign in"));
    let r = c
        .get(srv.url("/lang/zh-CN?next=//evil.example"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["location"], "/");
    let html = c
        .get(srv.url("/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("<html lang=\"zh-CN\">") && html.contains("登录"));
    let r = c.get(srv.url("/lang/fr")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

/// A bearer token of `c`'s user, and whether it still works.
async fn token_of(srv: &Server, c: &reqwest::Client) -> String {
    let (s, b) = post(c, &srv.url("/api/v1/tokens"), json!({"name": "script"})).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    b["token"].as_str().unwrap().to_string()
}

async fn token_works(srv: &Server, token: &str) -> bool {
    let r = srv
        .client()
        .get(srv.url("/api/v1/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    match r.status() {
        StatusCode::OK => true,
        StatusCode::UNAUTHORIZED => false,
        s => panic!("unexpected {s}"),
    }
}

/// API tokens and passwords: the user's own change keeps their tokens
/// unless they ask to revoke them; a reset by an admin or an owner (or
/// `gpudock admin reset-password`) revokes them all, gives a temporary
/// password and ends the user's sessions. Nobody resets their own password,
/// and an owner resets only their tenant's users.
#[tokio::test]
async fn password_changes_and_resets_decide_the_fate_of_tokens() {
    let srv = Server::start();
    let admin = srv.admin().await;
    let t = make_tenant(&srv, &admin, "TOK").await;
    let other = make_tenant(&srv, &admin, "OTH").await;
    let pw = "Harbor-Juniper-Vessel-28";
    let (_, owner) = make_user(&srv, &admin, "olive", "customer_owner", Some(t), pw).await;
    let (mid, member) = make_user(&srv, &admin, "milo", "customer_member", Some(t), pw).await;
    let (xid, _) = make_user(&srv, &admin, "xena", "customer_member", Some(other), pw).await;

    // Own change, tokens kept (the default), then own change revoking them.
    let tok = token_of(&srv, &member).await;
    let pw2 = "Lantern-Pebble-Orchid-64";
    let (s, b) = post(
        &member,
        &srv.url("/api/v1/auth/password"),
        json!({"current_password": pw, "new_password": pw2}),
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    assert!(token_works(&srv, &tok).await, "kept unless asked");
    let pw3 = "Quiver-Marble-Tundra-19";
    let (s, b) = post(
        &member,
        &srv.url("/api/v1/auth/password"),
        json!({"current_password": pw2, "new_password": pw3, "revoke_tokens": true}),
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    assert!(!token_works(&srv, &tok).await, "revoked on request");

    // The owner resets the member: a temporary password, tokens revoked,
    // the member's sessions ended.
    let tok = token_of(&srv, &member).await;
    let url = srv.url(&format!("/api/v1/users/{mid}/reset-password"));
    let (s, b) = post(&owner, &url, json!({})).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let temp = b["temporary_password"].as_str().unwrap().to_string();
    assert_eq!(b["user"]["must_change_password"], true, "{b}");
    assert!(!token_works(&srv, &tok).await, "a reset revokes tokens");
    let (s, _) = get(&member, &srv.url("/api/v1/me")).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "a reset ends sessions");
    let (_, s, _) = srv.login("milo", pw3).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "the old password is gone");
    let (c, s, b) = srv.login("milo", &temp).await;
    assert_eq!(
        (s, &b["must_change_password"]),
        (StatusCode::OK, &json!(true))
    );
    let (s, b) = get(&c, &srv.url("/api/v1/users")).await;
    assert_eq!(
        (s, code(&b)),
        (StatusCode::FORBIDDEN, "password_change_required")
    );
    let (_, audit) = get(&admin, &srv.url("/api/v1/audit?action=user.reset_password")).await;
    assert_eq!(audit[0]["detail"]["tokens_revoked"], 1, "{audit}");
    assert!(!audit.to_string().contains(&temp), "{audit}");

    // Not one's own (that is a password change); not another tenant's user.
    let me = get(&owner, &srv.url("/api/v1/me")).await.1["user"]["id"].clone();
    let (s, b) = post(
        &owner,
        &srv.url(&format!("/api/v1/users/{me}/reset-password")),
        json!({}),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    let (s, _) = post(
        &owner,
        &srv.url(&format!("/api/v1/users/{xid}/reset-password")),
        json!({}),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // The pages: a reset button on another user's page (not one's own),
    // the temporary password shown once; the password form offers to
    // revoke one's tokens.
    let page = common::text(&admin, &srv.url(&format!("/users/{mid}"))).await;
    assert!(page.contains("id=\"user-reset-password\""), "{page}");
    let own = common::text(&admin, &srv.url("/users/1")).await;
    assert!(!own.contains("id=\"user-reset-password\""), "{own}");
    let (_, me) = get(&admin, &srv.url("/api/v1/me")).await;
    let csrf = me["csrf_token"].as_str().unwrap().to_string();
    let r = admin
        .post(srv.url(&format!("/users/{mid}/reset-password")))
        .form(&[("csrf_token", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let page = r.text().await.unwrap();
    let shown = page
        .split("id=\"temp-password\">")
        .nth(1)
        .and_then(|t| t.split('<').next())
        .unwrap_or_else(|| panic!("no temporary password shown: {page}"));
    let (_, s, _) = srv.login("milo", shown).await;
    assert_eq!(s, StatusCode::OK, "the shown password signs in");
    let form = common::text(&admin, &srv.url("/account/password")).await;
    assert!(form.contains("name=\"revoke_tokens\""), "{form}");

    // The operator's reset from the command line revokes tokens too.
    let tok = token_of(&srv, &owner).await;
    let out = srv.cli(&["admin", "reset-password", "olive"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !token_works(&srv, &tok).await,
        "the CLI reset revokes tokens"
    );
}
