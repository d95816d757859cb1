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

    // The fifth failure locks, answered like the four before it.
    for i in 1..=5 {
        let (_, s, b) = srv.login("carol", "wrong-password").await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "attempt {i}");
        assert_eq!(code(&b), "invalid_credentials");
    }
    // Locked: the right password, a wrong one and an unknown name all get
    // the very same answer (nobody learns from outside that carol exists or
    // is locked).
    let (_, s1, b1) = srv.login("carol", pw).await;
    let (_, s2, b2) = srv.login("carol", "still-wrong").await;
    let (_, s3, b3) = srv.login("nobody", "x").await;
    assert_eq!(
        (s1, s2, s3),
        (
            StatusCode::UNAUTHORIZED,
            StatusCode::UNAUTHORIZED,
            StatusCode::UNAUTHORIZED
        )
    );
    assert_eq!((&b1, &b1), (&b2, &b3));
    assert_eq!(code(&b1), "invalid_credentials");
    // The sign-in page answers alike too.
    let page = |name: &'static str, pw: &'static str| {
        let srv = &srv;
        async move {
            let c = srv.client();
            let token = login_token(srv, &c).await;
            let r = c
                .post(srv.url("/login"))
                .header("accept-language", "en")
                .form(&[("username", name), ("password", pw), ("csrf_token", &token)])
                .send()
                .await
                .unwrap();
            let status = r.status();
            let html = r.text().await.unwrap();
            let error = html
                .split("id=\"login-error\">")
                .nth(1)
                .unwrap_or("")
                .split('<')
                .next()
                .unwrap_or("")
                .to_string();
            (status, error)
        }
    };
    let locked = page("carol", "Granite-Sparrow-Lattice-41").await;
    assert_eq!(locked.0, StatusCode::UNAUTHORIZED);
    assert!(!locked.1.is_empty());
    assert_eq!(locked, page("nobody", "whatever").await);
    // Admins see the lock.
    let (_, users) = get(&admin, &srv.url("/api/v1/users")).await;
    let carol = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "carol")
        .unwrap();
    assert!(carol["locked_until"].is_i64(), "{carol}");
    let carol_id = carol["id"].as_i64().unwrap();

    // The user's page offers Unlock; an owner of another tenant cannot.
    let page_html = admin
        .get(srv.url(&format!("/users/{carol_id}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page_html.contains("id=\"user-unlock\""), "{page_html}");
    let other = make_tenant(&srv, &admin, "ELSE").await;
    let (_, dave) = make_user(&srv, &admin, "dave", "customer_owner", Some(other), pw).await;
    let unlock_url = srv.url(&format!("/api/v1/users/{carol_id}/unlock"));
    let (s, _) = post(&dave, &unlock_url, json!({})).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "another tenant's owner");
    // The admin unlocks (audited): the right password works again at once.
    let (s, b) = post(&admin, &unlock_url, json!({})).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert!(b["locked_until"].is_null(), "{b}");
    let (_, s, _) = srv.login("carol", pw).await;
    assert_eq!(s, StatusCode::OK, "signed in after the unlock");
    let (s, b) = post(&admin, &unlock_url, json!({})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert!(b["error"]["fields"]["id"].is_string(), "{b}");
    let (_, a) = get(&admin, &srv.url("/api/v1/audit?action=user.unlock")).await;
    assert_eq!(a.as_array().unwrap().len(), 1, "{a}");

    let (s, recs) = get(&admin, &srv.url("/api/v1/audit?actor=carol&action=auth.")).await;
    assert_eq!(s, StatusCode::OK);
    let recs = recs.as_array().unwrap();
    let failures = recs
        .iter()
        .filter(|r| r["action"] == "auth.login" && r["outcome"] == "failure")
        .count();
    assert_eq!(
        failures, 8,
        "5 wrong + 3 while locked (API twice, the page once)"
    );
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
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (_, s, _) = srv.login("admin", ADMIN_PASSWORD).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "locked after two");
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
    // The right password is told the account is disabled; a wrong one
    // learns nothing.
    let (_, s, user_off) = srv.login("dave", pw).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{user_off}");
    assert_eq!(code(&user_off), "account_disabled");
    let (_, s, b) = srv.login("dave", "not-his-password").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(code(&b), "invalid_credentials");

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
    let (_, s, b) = srv.login("dave", pw).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    assert_eq!(code(&b), "account_disabled");
    assert_ne!(
        b["error"]["message"], user_off["error"]["message"],
        "says that the tenant is disabled"
    );

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
    let r = form_post(
        &srv,
        &admin,
        "/tenants",
        &[("name", "Typed Name"), ("company_code", "EXP")],
    )
    .await;
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
    // In words, in the reader's language: the action, resource and outcome,
    // and the detail as labelled fields, not JSON; the code stays at hand.
    for (lang, words) in [
        ("en", ["Tenant: create", "success", "<dt>"]),
        ("zh-CN", ["租户：创建", "成功", "<dt>"]),
    ] {
        let frag = admin
            .get(srv.url("/audit?action=tenant.create"))
            .header("hx-request", "true")
            .header("accept-language", lang)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        for w in words {
            assert!(frag.contains(w), "{lang}: {w} in {frag}");
        }
        assert!(frag.contains("data-action=\"tenant.create\""), "{frag}");
        assert!(!frag.contains("<code>{"), "no JSON: {frag}");
    }
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

/// Posts the form `fields` to `path` as the signed-in `c`, with its CSRF
/// token, asking for English.
async fn form_post(
    srv: &Server,
    c: &reqwest::Client,
    path: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let (_, me) = get(c, &srv.url("/api/v1/me")).await;
    let token = me["csrf_token"].as_str().unwrap().to_string();
    let mut form = fields.to_vec();
    form.push(("csrf_token", &token));
    c.post(srv.url(path))
        .header("accept-language", "en")
        .form(&form)
        .send()
        .await
        .unwrap()
}

/// Opens the sign-in page on `c` (which keeps its cookie) and returns the
/// form's CSRF token.
async fn login_token(srv: &Server, c: &reqwest::Client) -> String {
    let html = common::text(c, &srv.url("/login")).await;
    html.split("name=\"csrf_token\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_else(|| panic!("no token in the sign-in page: {html}"))
        .to_string()
}

/// Rows of `table` in the server's database (read beside the running server).
fn rows(srv: &Server, sql: &str) -> Vec<String> {
    let c = rusqlite::Connection::open(srv.data_dir().join("gpudock.db")).unwrap();
    let mut stmt = c.prepare(sql).unwrap();
    stmt.query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[tokio::test]
async fn redirect_targets_stay_on_site_and_never_fail() {
    let srv = Server::start();
    let c = srv.client();
    // Browsers drop tabs and line breaks from a Location: `/\t/host` would
    // be `//host`, another site. Control characters answered 500 before.
    for (next, want) in [
        ("/%09/evil.example", "/"),
        ("/%0a/evil.example", "/"),
        ("/%0d%0a/evil.example", "/"),
        ("/%5C/evil.example", "/"),
        ("/.//evil.example", "/"),
        ("https://evil.example/", "/"),
        ("/%0a", "/"),
        ("/%0d%0a", "/"),
        ("/%7f", "/%7F"),
        ("/%00", "/"),
        ("/users%3Fx%3D1", "/users?x=1"),
    ] {
        let r = c
            .get(srv.url(&format!("/lang/en?next={next}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{next}");
        assert_eq!(r.headers()["location"], want, "{next}");
    }
    // The sign-in form's `next` is parsed the same way.
    srv.admin().await;
    for (next, want) in [("/\t/evil.example", "/"), ("/users", "/users")] {
        let c = srv.client();
        let token = login_token(&srv, &c).await;
        let r = c
            .post(srv.url("/login"))
            .form(&[
                ("username", "admin"),
                ("password", ADMIN_PASSWORD),
                ("csrf_token", &token),
                ("next", next),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{next:?}");
        assert_eq!(r.headers()["location"], want, "{next:?}");
    }
}

#[tokio::test]
async fn visitors_leave_no_session_rows_and_the_sign_in_form_keeps_csrf() {
    let srv = Server::start();
    srv.admin().await;
    let before = rows(&srv, "SELECT id FROM sessions").len();
    for _ in 0..30 {
        let r = srv.client().get(srv.url("/login")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    // A failed sign-in on the page stores nothing either.
    let c = srv.client();
    let token = login_token(&srv, &c).await;
    let r = c
        .post(srv.url("/login"))
        .form(&[
            ("username", "admin"),
            ("password", "nope"),
            ("csrf_token", &token),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(rows(&srv, "SELECT id FROM sessions").len(), before);

    // The form still needs its token: without the cookie that goes with it,
    // or with another token, the post is refused.
    let form = |token: &str| {
        vec![
            ("username", "admin".to_string()),
            ("password", ADMIN_PASSWORD.to_string()),
            ("csrf_token", token.to_string()),
        ]
    };
    let stranger = srv.client();
    let r = stranger
        .post(srv.url("/login"))
        .form(&form(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::FORBIDDEN,
        "token without its cookie"
    );
    let c = srv.client();
    let mine = login_token(&srv, &c).await;
    for forged in [token.as_str(), "", "1.abc.def"] {
        let r = c
            .post(srv.url("/login"))
            .form(&form(forged))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{forged:?}");
    }
    let r = c
        .post(srv.url("/login"))
        .form(&form(&mine))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("gpudock_session="))
        .and_then(|v| v.split(';').next())
        .unwrap()
        .to_string();
    let (s, _) = get(&c, &srv.url("/api/v1/me")).await;
    assert_eq!(s, StatusCode::OK);

    // Stored: one more row, under a hash, never the cookie's id.
    let ids = rows(&srv, "SELECT id FROM sessions");
    assert_eq!(ids.len(), before + 1);
    assert!(
        ids.iter().all(|id| id.len() == 64 && *id != cookie),
        "{ids:?}"
    );
    for f in ["gpudock.db", "gpudock.db-wal", "gpudock.db-shm"] {
        let bytes = std::fs::read(srv.data_dir().join(f)).unwrap();
        assert!(
            !bytes.windows(cookie.len()).any(|w| w == cookie.as_bytes()),
            "the session id in clear in {f}"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(srv.data_dir().join(f))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
    }
}

#[tokio::test]
async fn database_files_made_readable_before_are_made_private() {
    use std::os::unix::fs::PermissionsExt;
    let srv = Server::start();
    srv.admin().await;
    let dir = srv.data_dir();
    let files = ["gpudock.db", "gpudock.db-wal", "gpudock.db-shm"];
    for f in files {
        std::fs::set_permissions(dir.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let srv = srv.restart("");
    let (_, s, _) = srv.login("admin", ADMIN_PASSWORD).await;
    assert_eq!(s, StatusCode::OK);
    for f in files {
        let mode = std::fs::metadata(dir.join(f)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }
}

#[tokio::test]
async fn wrong_methods_answer_405_without_an_error_in_the_log() {
    let srv = Server::start();
    let admin = srv.admin().await;
    for (c, m, path, allow) in [
        (&admin, "PUT", "/api/v1/users", "GET, HEAD, POST"),
        (&admin, "DELETE", "/api/v1/tenants/1", "GET, HEAD, PATCH"),
        (&admin, "PUT", "/users/1", "GET, HEAD, POST"),
        (&srv.client(), "DELETE", "/login", "GET, HEAD, POST"),
        (&srv.client(), "POST", "/healthz", "GET, HEAD"),
        (&srv.client(), "PATCH", "/api/v1/users", "GET, HEAD, POST"),
    ] {
        let r = c
            .request(
                reqwest::Method::from_bytes(m.as_bytes()).unwrap(),
                srv.url(path),
            )
            .header("x-csrf-token", "x")
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED, "{m} {path}");
        assert_eq!(r.headers()["allow"], allow, "{m} {path}");
        if path.starts_with("/api/") {
            let b: serde_json::Value = r.json().await.unwrap();
            assert_eq!(code(&b), "method_not_allowed");
        }
    }
    assert!(!srv.logs().contains("ERROR"), "{}", srv.logs());
}

#[tokio::test]
async fn bodies_refuse_unknown_fields_bad_booleans_and_control_characters() {
    let srv = Server::start();
    let admin = srv.admin().await;
    let t = make_tenant(&srv, &admin, "BODY").await;
    let url = srv.url(&format!("/api/v1/tenants/{t}"));
    // A misspelt field is refused by name; nothing changes.
    let (s, b) = common::patch(&admin, &url, json!({"nmae": "New", "remark": "x"})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(code(&b), "validation_failed");
    assert!(b["error"]["fields"]["nmae"].is_string(), "{b}");
    let (_, now) = get(&admin, &url).await;
    assert_eq!(
        (now["name"].as_str(), now["remark"].as_str()),
        (Some("Tenant BODY"), Some(""))
    );
    let (s, b) = post(
        &admin,
        &srv.url("/api/v1/users"),
        json!({"username": "zed", "role": "admin", "is_admin": true}),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert!(b["error"]["fields"]["is_admin"].is_string(), "{b}");

    // Booleans: a value that is no boolean is an error, not false.
    let (s, b) = post(
        &admin,
        &srv.url("/api/v1/images"),
        json!({"name": "i", "address": "busybox", "listed": "maybe"}),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert!(
        b["error"]["fields"]["listed"]
            .as_str()
            .unwrap()
            .contains("true or false"),
        "{b}"
    );
    let (s, b) = post(
        &admin,
        &srv.url("/api/v1/nodes"),
        json!({"name": "n", "public_ip": "127.0.0.1", "private_ip": "127.0.0.1",
               "docker_endpoint": "tcp://127.0.0.1:2376", "tls_enabled": "enabled"}),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert!(b["error"]["fields"]["tls_enabled"].is_string(), "{b}");
    let (_, nodes) = get(&admin, &srv.url("/api/v1/nodes")).await;
    assert_eq!(nodes.as_array().unwrap().len(), 0, "no node made");
    let (s, b) = post(
        &admin,
        &srv.url("/api/v1/images"),
        json!({"name": "i", "address": "busybox", "listed": "no"}),
    )
    .await;
    assert_eq!(
        (s, &b["listed"]),
        (StatusCode::CREATED, &json!(false)),
        "{b}"
    );
    // Forms too.
    let r = form_post(
        &srv,
        &admin,
        "/images",
        &[("name", "j"), ("address", "busybox"), ("listed", "maybe")],
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text().await.unwrap().contains("must be true or false"));

    // Control characters in names (they would drive a terminal that shows
    // them) are refused wherever a name is taken.
    for (path, body) in [
        (
            "/api/v1/tenants",
            json!({"name": "Evil\u{1b}[2J", "company_code": "EVL"}),
        ),
        (
            "/api/v1/images",
            json!({"name": "bell\u{7}", "address": "busybox"}),
        ),
        ("/api/v1/tokens", json!({"name": "a\nb"})),
        (
            "/api/v1/instances",
            json!({"name": "x\u{1b}]0;pwned\u{7}", "image_id": 1, "spec_id": 1, "node_id": 1}),
        ),
    ] {
        let (s, b) = post(&admin, &srv.url(path), body).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {b}");
        assert!(
            b["error"]["fields"]["name"]
                .as_str()
                .unwrap()
                .contains("control characters"),
            "{path}: {b}"
        );
    }
    // A remark may hold line breaks.
    let (s, b) = common::patch(&admin, &url, json!({"remark": "line 1\nline 2"})).await;
    assert_eq!(s, StatusCode::OK, "{b}");
}

#[tokio::test]
async fn audit_exports_neutralise_formulas_and_paging_cannot_overflow() {
    let srv = Server::start();
    let admin = srv.admin().await;
    let evil = "=HYPERLINK(\"http://evil.example/\",\"click\")";
    for name in [evil, "+1+1", "-2", "@SUM(A1)", "\tx"] {
        let (_, s, _) = srv.login(name, "x").await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
    let csv = admin
        .get(srv.url("/api/v1/audit?format=csv&action=auth.login&outcome=failure"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let mut actors = Vec::new();
    for rec in reader.records() {
        let rec = rec.unwrap();
        for cell in rec.iter() {
            assert!(
                !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
                "a formula cell: {cell:?} in {csv}"
            );
        }
        actors.push(rec[3].to_string());
    }
    assert!(actors.contains(&format!("'{evil}")), "{actors:?}");

    for path in [
        "/audit?page=4294967295",
        "/audit?page=4294967294",
        "/api/v1/audit?offset=18446744073709551615",
        "/api/v1/audit?limit=4294967295",
    ] {
        let r = admin.get(srv.url(path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
    }
    let r = admin.get(srv.url("/audit?page=-1")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn a_wrong_current_password_counts_toward_the_lockout_and_is_audited() {
    let srv = Server::start_with("[security]\nlockout_threshold = 3\n");
    let admin = srv.admin().await;
    let t = make_tenant(&srv, &admin, "PWC").await;
    let pw = "Granite-Sparrow-Lattice-41";
    let (id, erin) = make_user(&srv, &admin, "erin", "customer_member", Some(t), pw).await;
    for _ in 0..3 {
        let (s, b) = post(
            &erin,
            &srv.url("/api/v1/auth/password"),
            json!({"current_password": "guess", "new_password": "Another-Strong-Pass-99"}),
        )
        .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
        assert!(b["error"]["fields"]["current_password"].is_string());
    }
    // Locked: the session that guessed ends, and signing in fails.
    let (s, _) = get(&erin, &srv.url("/api/v1/me")).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (_, s, _) = srv.login("erin", pw).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (_, recs) = get(
        &admin,
        &srv.url("/api/v1/audit?actor=erin&action=auth.password_change&outcome=failure"),
    )
    .await;
    let recs = recs.as_array().unwrap();
    assert_eq!(recs.len(), 3, "{recs:?}");
    assert!(
        recs.iter()
            .all(|r| r["detail"]["reason"] == "wrong_current_password")
    );
    let (_, lock) = get(&admin, &srv.url("/api/v1/audit?action=auth.lock")).await;
    assert_eq!(lock[0]["resource_id"], id.to_string(), "{lock}");
}

#[tokio::test]
async fn sign_ins_are_limited_per_address() {
    let srv = Server::start_with("[security]\nsign_in_burst = 3\nsign_in_per_minute = 1\n");
    srv.admin().await;
    for _ in 0..3 {
        let (_, s, _) = srv.login("nobody", "guess").await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
    // The address is out of attempts: even the right password waits.
    let c = srv.client();
    let r = c
        .post(srv.url("/api/v1/auth/login"))
        .json(&json!({"username": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    let b: serde_json::Value = r.json().await.unwrap();
    assert_eq!(code(&b), "too_many_attempts");
    // The sign-in page too.
    let token = login_token(&srv, &c).await;
    let r = c
        .post(srv.url("/login"))
        .form(&[
            ("username", "admin"),
            ("password", ADMIN_PASSWORD),
            ("csrf_token", &token),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key("retry-after"));
}

#[tokio::test]
async fn usernames_of_other_tenants_are_refused_without_saying_so() {
    let srv = Server::start();
    let admin = srv.admin().await;
    let (ta, tb) = (
        make_tenant(&srv, &admin, "UA").await,
        make_tenant(&srv, &admin, "UB").await,
    );
    let pw = "Granite-Sparrow-Lattice-41";
    let (_, owner) = make_user(&srv, &admin, "ownera", "customer_owner", Some(ta), pw).await;
    make_user(&srv, &admin, "elsewhere", "customer_member", Some(tb), pw).await;
    make_user(&srv, &admin, "mine", "customer_member", Some(ta), pw).await;
    let mut answers = Vec::new();
    for name in ["elsewhere", "mine", "root"] {
        let (s, b) = post(
            &owner,
            &srv.url("/api/v1/users"),
            json!({"username": name, "role": "customer_member"}),
        )
        .await;
        answers.push((s, b["error"]["fields"]["username"].clone()));
    }
    assert_eq!(answers[0].0, StatusCode::CONFLICT, "{answers:?}");
    assert!(answers.iter().all(|a| *a == answers[0]), "{answers:?}");
    assert_eq!(
        answers[0].1,
        "this username is not available; choose another"
    );
}

#[tokio::test]
async fn a_failed_removal_of_the_spent_initial_password_is_logged() {
    let srv = Server::start();
    let initial = srv.initial_password();
    // Something the server cannot remove stands where the file was.
    let path = srv.data_dir().join("initial-admin-password");
    std::fs::remove_file(&path).unwrap();
    std::fs::create_dir(&path).unwrap();
    std::fs::write(path.join("keep"), "x").unwrap();
    let (c, s, _) = srv.login("admin", &initial).await;
    assert_eq!(s, StatusCode::OK);
    let (s, b) = post(
        &c,
        &srv.url("/api/v1/auth/password"),
        json!({"current_password": initial, "new_password": ADMIN_PASSWORD}),
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !srv.logs().contains("cannot remove") {
        assert!(
            std::time::Instant::now() < deadline,
            "the failure was silent:\n{}",
            srv.logs()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(srv.logs().contains("initial-admin-password"));
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

/// Lists come in pages: `limit`/`offset`, the total in `X-Total-Count`, links
/// to the neighbouring pages, the tenant's scope in the count too, and a
/// pager under the list page.
#[tokio::test]
async fn lists_page_with_totals_and_links() {
    let srv = Server::start();
    let admin = srv.admin().await;
    let t = make_tenant(&srv, &admin, "PAGE").await;
    for n in 0..5 {
        let (s, b) = post(
            &admin,
            &srv.url("/api/v1/users"),
            json!({"username": format!("pager{n}"), "role": "customer_member", "tenant_id": t}),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
    }
    let (s, b) = post(
        &admin,
        &srv.url("/api/v1/users"),
        json!({"username": "pagemgr", "role": "customer_owner", "tenant_id": t}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    // admin + 6 users.
    let r = admin
        .get(srv.url("/api/v1/users?limit=2&offset=2"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["x-total-count"], "7");
    let link = r.headers()["link"].to_str().unwrap().to_string();
    assert!(
        link.contains("</api/v1/users?limit=2&offset=4>; rel=\"next\"")
            && link.contains("</api/v1/users?limit=2&offset=0>; rel=\"prev\""),
        "{link}"
    );
    let rows: serde_json::Value = r.json().await.unwrap();
    let names: Vec<_> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["pager1", "pager2"]);
    // The last page: no next link.
    let r = admin
        .get(srv.url("/api/v1/users?limit=2&offset=6"))
        .send()
        .await
        .unwrap();
    assert!(!r.headers()["link"].to_str().unwrap().contains("next"));
    assert_eq!(
        r.json::<serde_json::Value>()
            .await
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // Not a number: the field is named.
    let (s, b) = get(&admin, &srv.url("/api/v1/users?limit=ten")).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert!(b.to_string().contains("limit"), "{b}");
    // Tenants and tokens page the same way.
    let r = admin
        .get(srv.url("/api/v1/tenants?limit=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-total-count"], "1");
    for n in 0..3 {
        let (s, b) = post(
            &admin,
            &srv.url("/api/v1/tokens"),
            json!({"name": format!("t{n}")}),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
    }
    let r = admin
        .get(srv.url("/api/v1/tokens?limit=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-total-count"], "3");
    let rows: serde_json::Value = r.json().await.unwrap();
    assert_eq!(rows[0]["name"], "t2", "newest first: {rows}");

    // A customer owner counts only the users of their tenant.
    let (_, mgr) = make_user(
        &srv,
        &admin,
        "pagemgr2",
        "customer_owner",
        Some(t),
        "Pager-Pass-2026!x",
    )
    .await;
    let r = mgr
        .get(srv.url("/api/v1/users?limit=3"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-total-count"], "7");
    let rows: serde_json::Value = r.json().await.unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 3);
    assert!(rows.to_string().contains("pager0") && !rows.to_string().contains("\"admin\""));

    // The page: its rows, a pager saying which of how many, links onward.
    let page = admin
        .get(srv.url("/users?limit=3&offset=3"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("class=\"pager\""), "{page}");
    assert!(page.contains("4–6"), "{page}");
    assert!(
        page.contains("href=\"/users?limit=3&#38;offset=6\" class=\"pager-next\""),
        "{page}"
    );
    assert!(page.contains("pager2") && !page.contains("pager1<") && !page.contains(">pager0<"));
}

/// `http://` on the HTTPS port: a plain HTTP request (a real TCP client, no
/// TLS) is answered with a redirect to the same address over `https://`,
/// and the listener goes on serving HTTPS.
#[tokio::test]
async fn plain_http_on_the_https_port_is_redirected_to_https() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let srv = Server::start();
    let authority = srv.base.trim_start_matches("https://").to_string();
    let ask = |head: String| {
        let authority = authority.clone();
        async move {
            let mut s = tokio::net::TcpStream::connect(&authority).await.unwrap();
            s.write_all(head.as_bytes()).await.unwrap();
            let mut answer = String::new();
            tokio::time::timeout(
                std::time::Duration::from_secs(20),
                s.read_to_string(&mut answer),
            )
            .await
            .expect("an answer, then the connection closed")
            .unwrap();
            answer
        }
    };
    let answer = ask(format!(
        "GET /instances?page=2 HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: test\r\n\r\n"
    ))
    .await;
    assert!(answer.starts_with("HTTP/1.1 301 "), "{answer}");
    assert!(
        answer.contains(&format!(
            "\r\nLocation: https://{authority}/instances?page=2\r\n"
        )),
        "{answer}"
    );
    // Without a Host there is nowhere to send it: a plain refusal.
    let answer = ask("GET / HTTP/1.0\r\n\r\n".to_string()).await;
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    // HTTPS on the same port still works.
    let r = srv.client().get(srv.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

/// The permission matrix in words: one switch per action grants or revokes
/// its page and its API together, for that role only, audited once; the
/// raw routes stay as a detail view.
#[tokio::test]
async fn one_switch_per_action_covers_its_page_and_its_api() {
    let srv = Server::start();
    let admin = srv.admin().await;
    let t = make_tenant(&srv, &admin, "PMW").await;
    let (_, member) = make_user(
        &srv,
        &admin,
        "pm-member",
        "customer_member",
        Some(t),
        "Lantern-Quarry-Mosaic-83!",
    )
    .await;
    let (_, owner) = make_user(
        &srv,
        &admin,
        "pm-owner",
        "customer_owner",
        Some(t),
        "Harbor-Violet-Comet-27!",
    )
    .await;
    let status = |c: &reqwest::Client, path: &'static str| {
        let (c, url) = (c.clone(), srv.url(path));
        async move { c.get(url).send().await.unwrap().status() }
    };
    assert_eq!(
        status(&member, "/api/v1/users").await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(status(&member, "/users").await, StatusCode::FORBIDDEN);

    let page = common::text(&admin, &srv.url("/permissions")).await;
    assert!(page.contains("id=\"actions-matrix\"") && !page.contains("id=\"matrix\""));
    assert!(
        page.contains("id=\"acell-customer_member-users-view\""),
        "{page}"
    );
    let detail = common::text(&admin, &srv.url("/permissions?view=routes")).await;
    assert!(detail.contains("id=\"matrix\"") && detail.contains("GET /api/v1/users"));

    let path = "/permissions/customer_member/action/users/view";
    let r = form_post(&srv, &admin, path, &[("granted", "1")]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(status(&member, "/api/v1/users").await, StatusCode::OK);
    assert_eq!(status(&member, "/users").await, StatusCode::OK);
    let (_, one) = get(&member, &srv.url("/api/v1/users")).await;
    assert!(
        one.as_array().unwrap().len() == 1,
        "still scoped to themselves: {one}"
    );
    let page = common::text(&admin, &srv.url("/permissions")).await;
    let cell = page
        .split("id=\"acell-customer_member-users-view\"")
        .nth(1)
        .unwrap();
    assert!(
        cell.split("</td>")
            .next()
            .unwrap()
            .contains("data-held=\"all\""),
        "{cell}"
    );
    // The owner's grants are the owner's: unchanged.
    let (s, _) = get(&owner, &srv.url("/api/v1/users")).await;
    assert_eq!(s, StatusCode::OK);
    let r = form_post(&srv, &admin, path, &[("granted", "0")]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        status(&member, "/api/v1/users").await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(status(&member, "/users").await, StatusCode::FORBIDDEN);
    // One audit record per switch, naming the routes it changed.
    let audited = rows(
        &srv,
        "SELECT action || ' ' || detail FROM audit_log WHERE action LIKE 'permission.%' ORDER BY id",
    );
    assert_eq!(audited.len(), 2, "{audited:?}");
    assert!(
        audited[0].starts_with("permission.grant")
            && audited[0].contains("GET /api/v1/users")
            && audited[0].contains("GET /users"),
        "{audited:?}"
    );
    // Fixed and admin-only actions have no switch; a customer cannot flip.
    let r = form_post(
        &srv,
        &admin,
        "/permissions/customer_member/action/nodes/view",
        &[("granted", "1")],
    )
    .await;
    assert_eq!(
        status(&member, "/api/v1/nodes").await,
        StatusCode::FORBIDDEN,
        "{r:?}"
    );
    let r = form_post(
        &srv,
        &owner,
        "/permissions/customer_member/action/users/view",
        &[("granted", "1")],
    )
    .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = form_post(
        &srv,
        &admin,
        "/permissions/customer_member/action/users/fly",
        &[("granted", "1")],
    )
    .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}
