//! Account opening (开户申请) end to end: the real gpudock binary, a real
//! OpenSSH server in a container standing in for a compute node
//! (tests/common/sshd.rs), and the real `ssh` client signing in as the
//! accounts gpudock creates. Also the failure classes, scoping, and the
//! delivery desk (contacts, sign-in by e-mail, password resets, public host).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::sshd::{SshNode, ssh};
use common::{Server, code, get, make_tenant, make_user, patch, post, send};
use gpudock::secrets::Secret;
use gpudock::sshclient::{self, SshError, Target};
use reqwest::StatusCode;
use serde_json::{Value, json};

const PW_M: &str = "Harbor-Violet-Stencil-47!";
const PW_O: &str = "Quarry-Lantern-Sable-83!";
const PW_N: &str = "Meadow-Cipher-Rocket-29!";

#[tokio::test]
async fn the_ssh_client_pins_runs_commands_and_refuses_a_changed_key() {
    let node = SshNode::start();
    let t = Target {
        host: "127.0.0.1".into(),
        port: node.port,
        username: "root".into(),
    };
    let pw = Secret::new(node.root_password.clone());
    let s = sshclient::connect(&t, &pw, None, Duration::from_secs(10))
        .await
        .unwrap();
    let key = s.host_key.clone();
    let out = s.exec("id -u; cat", Some(b"from-stdin")).await.unwrap();
    assert!(out.success(), "{out:?}");
    assert_eq!(out.out(), "0\nfrom-stdin");
    s.close().await;
    let bad = Secret::new("wrong".to_string());
    let e = sshclient::connect(&t, &bad, Some(&key), Duration::from_secs(10))
        .await
        .err()
        .unwrap();
    assert!(matches!(e, SshError::AuthRejected { .. }), "{e:?}");
    assert!(
        ssh(node.port, "root", &node.root_password, "true")
            .status
            .success()
    );
    let node = node.replace();
    let pw = Secret::new(node.root_password.clone());
    let e = sshclient::connect(&t, &pw, Some(&key), Duration::from_secs(10))
        .await
        .err()
        .unwrap();
    assert!(matches!(e, SshError::HostKeyChanged { .. }), "{e:?}");
}

/// Registers the container as a node gpudock reaches over SSH as `user`.
async fn add_node(
    srv: &Server,
    admin: &reqwest::Client,
    name: &str,
    port: u16,
    user: &str,
    pw: &str,
) -> i64 {
    let (s, n) = post(
        admin,
        &srv.url("/api/v1/nodes"),
        json!({"name": name, "public_ip": "127.0.0.1", "private_ip": "127.0.0.1", "ssh_port": port,
               "username": user, "password": pw, "tls_enabled": false}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{n}");
    n["id"].as_i64().unwrap()
}

async fn apply(srv: &Server, c: &reqwest::Client, node: i64, username: &str) -> Value {
    let (s, r) = post(
        c,
        &srv.url("/api/v1/account-openings"),
        json!({"username": username, "user_fullname": "Test User", "target_host": node,
               "contact_email": "test@lab.example.com", "user_description": "training"}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    r
}

async fn approve(srv: &Server, admin: &reqwest::Client, id: i64) {
    let (s, r) = post(
        admin,
        &srv.url(&format!("/api/v1/account-openings/{id}/approve")),
        json!({"approval_notes": "ok"}),
    )
    .await;
    assert_eq!(
        (s, r["status"].as_str()),
        (StatusCode::OK, Some("approved")),
        "{r}"
    );
}

async fn process(srv: &Server, admin: &reqwest::Client, id: i64) -> (StatusCode, Value) {
    post(
        admin,
        &srv.url(&format!("/api/v1/account-openings/{id}/process")),
        json!({}),
    )
    .await
}

/// POST /api/v1/cloud-users/{cu}/{action} as `admin`.
async fn cloud(
    srv: &Server,
    admin: &reqwest::Client,
    cu: i64,
    action: &str,
) -> (StatusCode, Value) {
    let url = srv.url(&format!("/api/v1/cloud-users/{cu}/{action}"));
    post(admin, &url, json!({})).await
}

/// Signs in over the real OpenSSH client and returns who it is (None: refused).
fn ssh_whoami(port: u16, user: &str, pw: &str) -> Option<String> {
    let out = ssh(port, user, pw, "id -un");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

async fn audit_has(srv: &Server, admin: &reqwest::Client, action: &str, outcome: &str) -> bool {
    let (_, a) = get(
        admin,
        &srv.url(&format!("/api/v1/audit?action={action}&outcome={outcome}")),
    )
    .await;
    !a.as_array().unwrap().is_empty()
}

/// The whole life of an account: applied for by a member, approved and
/// opened by an admin (who sees the password once), the OS user signs in
/// with it over SSH; disable refuses the sign-in, enable restores it, a
/// reset replaces the password, delete removes the user from the node.
#[tokio::test]
async fn an_account_is_opened_used_disabled_reset_and_deleted() {
    let node = SshNode::start();
    let srv = Server::start();
    let admin = srv.admin().await;
    let n = add_node(
        &srv,
        &admin,
        "gpu-1",
        node.port,
        "root",
        &node.root_password,
    )
    .await;
    let t = make_tenant(&srv, &admin, "LAB").await;
    let (_, member) = make_user(&srv, &admin, "mia", "customer_member", Some(t), PW_M).await;

    let r = apply(&srv, &member, n, "alice").await;
    let id = r["id"].as_i64().unwrap();
    assert_eq!(
        (r["status"].as_str(), r["applicant_name"].as_str()),
        (Some("pending"), Some("mia"))
    );
    assert_eq!(
        (
            r["target_host"].as_i64(),
            r["cloud_user_password"].is_null()
        ),
        (Some(n), true)
    );
    // The member may neither review nor process.
    let (s, _) = post(
        &member,
        &srv.url(&format!("/api/v1/account-openings/{id}/approve")),
        json!({}),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // Not approved yet: cannot be processed.
    let (s, b) = process(&srv, &admin, id).await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    approve(&srv, &admin, id).await;

    let (s, done) = process(&srv, &admin, id).await;
    assert_eq!(s, StatusCode::OK, "{done}\n{}", node.logs());
    let password = done["password"].as_str().unwrap().to_string();
    let req = &done["request"];
    assert_eq!(req["status"], "completed", "{req}");
    assert_eq!(req["cloud_user_password"], "<sealed>");
    assert!(
        req["steps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["state"] == "done"),
        "{req}"
    );
    let cu = req["cloud_user_id"].as_i64().unwrap();
    assert_eq!(
        ssh_whoami(node.port, "alice", &password).as_deref(),
        Some("alice")
    );
    let home = node.sh("stat -c %U /home/alice");
    assert_eq!(String::from_utf8_lossy(&home.stdout).trim(), "alice");

    // The host key is pinned; it is the one sshd has.
    let (_, k) = get(&admin, &srv.url(&format!("/api/v1/nodes/{n}/ssh-host-key"))).await;
    let fp = k["host_key"]["fingerprint"].as_str().unwrap().to_string();
    let keygen = node.sh(&format!(
        "ssh-keygen -l -E sha256 -f /etc/ssh/ssh_host_{}_key.pub",
        match k["host_key"]["algorithm"].as_str().unwrap() {
            "ssh-ed25519" => "ed25519",
            "ecdsa-sha2-nistp256" => "ecdsa",
            _ => "rsa",
        }
    ));
    assert!(
        String::from_utf8_lossy(&keygen.stdout).contains(&fp),
        "{fp}"
    );

    // The password is shown once to the admin (already, above) and once to
    // the applicant; never again.
    let reveal = format!("/api/v1/account-openings/{id}/reveal-password");
    let (s, b) = post(&admin, &srv.url(&reveal), json!({})).await;
    assert_eq!((s, code(&b)), (StatusCode::CONFLICT, "conflict"), "{b}");
    let (s, b) = post(&member, &srv.url(&reveal), json!({})).await;
    assert_eq!(
        (s, b["password"].as_str()),
        (StatusCode::OK, Some(password.as_str())),
        "{b}"
    );
    let (s, _) = post(&member, &srv.url(&reveal), json!({})).await;
    assert_eq!(s, StatusCode::CONFLICT);

    // Disable: the open session ends, sign-in is refused (and the state is
    // recorded); enable: back.
    let mut open = common::sshd::ssh_spawn(node.port, "alice", &password, "echo in; sleep 120");
    common::sshd::wait_for_line(&mut open, "in");
    let (s, u) = cloud(&srv, &admin, cu, "disable").await;
    assert_eq!(
        (s, u["status"].as_str()),
        (StatusCode::OK, Some("disabled")),
        "{u}"
    );
    assert!(
        common::sshd::exits_within(&mut open, Duration::from_secs(10)),
        "the open session survived"
    );
    assert_eq!(ssh_whoami(node.port, "alice", &password), None);
    let (s, b) = cloud(&srv, &admin, cu, "disable").await;
    assert_eq!(s, StatusCode::CONFLICT, "already disabled: {b}");
    let (s, u) = cloud(&srv, &admin, cu, "enable").await;
    assert_eq!(
        (s, u["status"].as_str()),
        (StatusCode::OK, Some("active")),
        "{u}"
    );
    assert_eq!(
        ssh_whoami(node.port, "alice", &password).as_deref(),
        Some("alice")
    );

    // Reset: the new password works, the old one no longer.
    let (s, b) = cloud(&srv, &admin, cu, "reset-password").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let new = b["password"].as_str().unwrap().to_string();
    assert_ne!(new, password);
    assert_eq!(
        ssh_whoami(node.port, "alice", &new).as_deref(),
        Some("alice")
    );
    assert_eq!(ssh_whoami(node.port, "alice", &password), None);
    // The applicant may look at the new one once.
    let (s, b) = post(&member, &srv.url(&reveal), json!({})).await;
    assert_eq!(
        (s, b["password"].as_str()),
        (StatusCode::OK, Some(new.as_str())),
        "{b}"
    );

    // Delete with the home directory: gone from the node.
    let url = srv.url(&format!("/api/v1/cloud-users/{cu}?remove_home=1"));
    let (s, u) = send(&admin, "DELETE", &url, Some(json!({}))).await;
    assert_eq!(
        (s, u["status"].as_str()),
        (StatusCode::OK, Some("deleted")),
        "{u}"
    );
    assert!(!node.has_user("alice"));
    assert!(
        !node.sh("test -e /home/alice").status.success(),
        "home removed"
    );
    assert_eq!(ssh_whoami(node.port, "alice", &new), None);
    let (s, _) = cloud(&srv, &admin, cu, "enable").await;
    assert_eq!(s, StatusCode::CONFLICT);

    // Audited, and no password anywhere in the audit trail or the log.
    for action in [
        "account_opening.create",
        "account_opening.approve",
        "account_opening.process",
        "account_opening.complete",
        "account_opening.password_reveal",
        "cloud_user.create",
        "cloud_user.disable",
        "cloud_user.enable",
        "cloud_user.reset_password",
        "cloud_user.delete",
        "node.ssh_host_key_pin",
    ] {
        assert!(
            audit_has(&srv, &admin, action, "success").await,
            "{action} not audited"
        );
    }
    let csv = admin
        .get(srv.url("/api/v1/audit?format=csv&limit=10000"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for secret in [&password, &new, &node.root_password] {
        assert!(
            !csv.contains(secret.as_str()),
            "a password is in the audit trail"
        );
        assert!(
            !srv.logs().contains(secret.as_str()),
            "a password is in the log"
        );
    }
    let (_, list) = get(&admin, &srv.url("/api/v1/cloud-users?status=deleted")).await;
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    let (_, list) = get(
        &admin,
        &srv.url(&format!("/api/v1/cloud-users?node={n}&status=active")),
    )
    .await;
    assert!(list.as_array().unwrap().is_empty(), "{list}");
}

/// The failure classes of seed §7, each with the request failed, its steps
/// showing where, and nothing left on the node: a wrong node password (host
/// authentication), an unreachable node (network), an existing username
/// (user creation), a node user without root (permission), and a changed
/// host key (refused until an admin forgets the pin).
#[tokio::test]
async fn failures_are_classified_and_leave_nothing_behind() {
    let node = SshNode::start();
    let srv = Server::start();
    let admin = srv.admin().await;
    let fail_with = |want: &'static str, kind: &'static str| {
        let (srv, admin) = (&srv, &admin);
        async move |node_id: i64, username: &str| {
            let r = apply(srv, admin, node_id, username).await;
            let id = r["id"].as_i64().unwrap();
            approve(srv, admin, id).await;
            let (s, b) = process(srv, admin, id).await;
            assert_eq!((s, code(&b)), (StatusCode::BAD_GATEWAY, want), "{b}");
            let (_, r) = get(admin, &srv.url(&format!("/api/v1/account-openings/{id}"))).await;
            assert_eq!(
                (r["status"].as_str(), r["result_kind"].as_str()),
                (Some("failed"), Some(kind)),
                "{r}"
            );
            assert!(!r["result_message"].as_str().unwrap().is_empty());
            assert!(
                r["steps"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|s| s["state"] == "failed"),
                "{r}"
            );
            assert!(r["cloud_user_id"].is_null());
            (id, r)
        }
    };

    // Wrong password.
    let bad = add_node(
        &srv,
        &admin,
        "bad-pw",
        node.port,
        "root",
        "not-the-password",
    )
    .await;
    let (retry, r) = fail_with("host_auth_failed", "host_auth")(bad, "bob").await;
    assert!(
        r["result_message"]
            .as_str()
            .unwrap()
            .contains("refused the password"),
        "{r}"
    );
    assert!(!node.has_user("bob"));
    // Fixed on the node page, the same request goes through on a retry.
    let (s, b) = patch(
        &admin,
        &srv.url(&format!("/api/v1/nodes/{bad}")),
        json!({"password": node.root_password}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = process(&srv, &admin, retry).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert!(node.has_user("bob"));

    // Unreachable: nothing listens on the port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let gone = add_node(&srv, &admin, "gone", closed, "root", "x").await;
    let (_, r) = fail_with("network_error", "network")(gone, "carol").await;
    assert!(
        r["result_message"]
            .as_str()
            .unwrap()
            .contains("cannot connect"),
        "{r}"
    );
    // A customer's own failed request names the class, not the node's words.
    let (s, n) = patch(
        &admin,
        &srv.url(&format!("/api/v1/nodes/{gone}")),
        json!({"listed": true}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{n}");
    let t = make_tenant(&srv, &admin, "FAIL").await;
    let (_, member) = make_user(&srv, &admin, "fmem", "customer_member", Some(t), PW_M).await;
    let mine = apply(&srv, &member, gone, "frank").await["id"]
        .as_i64()
        .unwrap();
    approve(&srv, &admin, mine).await;
    assert_eq!(process(&srv, &admin, mine).await.0, StatusCode::BAD_GATEWAY);
    let url = srv.url(&format!("/api/v1/account-openings/{mine}"));
    let (_, seen) = get(&member, &url).await;
    assert_eq!(
        (
            seen["result_kind"].as_str(),
            seen["result_message"].as_str()
        ),
        (Some("network"), Some("")),
        "{seen}"
    );
    assert!(
        seen["steps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["detail"] == ""),
        "{seen}"
    );
    assert!(!seen.to_string().contains("127.0.0.1"), "{seen}");
    let (_, full) = get(&admin, &url).await;
    assert!(
        full["result_message"]
            .as_str()
            .unwrap()
            .contains("cannot connect"),
        "{full}"
    );

    // The username exists on the node already: refused, and that user is untouched.
    let n = add_node(&srv, &admin, "ok", node.port, "root", &node.root_password).await;
    let (_, r) = fail_with("user_creation_failed", "user_creation")(n, "ops").await;
    assert!(
        r["result_message"]
            .as_str()
            .unwrap()
            .contains("already exists"),
        "{r}"
    );
    assert_eq!(
        ssh_whoami(node.port, "ops", &node.ops_password).as_deref(),
        Some("ops")
    );

    // The node's SSH user is not root and has no sudo.
    let ops = add_node(&srv, &admin, "as-ops", node.port, "ops", &node.ops_password).await;
    let (_, r) = fail_with("permission_denied", "permission_denied")(ops, "dave").await;
    assert!(
        r["result_message"].as_str().unwrap().contains("sudo"),
        "{r}"
    );
    assert!(!node.has_user("dave"));

    // The node is replaced (new host key): refused, nothing created.
    let node = node.replace();
    let (s, b) = patch(
        &admin,
        &srv.url(&format!("/api/v1/nodes/{n}")),
        json!({"password": node.root_password}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (id, r) = fail_with("host_auth_failed", "host_auth")(n, "erin").await;
    assert!(
        r["result_message"].as_str().unwrap().contains("host key"),
        "{r}"
    );
    assert!(!node.has_user("erin"));
    let (_, t) = post(
        &admin,
        &srv.url(&format!("/api/v1/nodes/{n}/ssh-test")),
        json!({}),
    )
    .await;
    assert_eq!(
        (t["ok"].as_bool(), t["error_kind"].as_str()),
        (Some(false), Some("host_auth")),
        "{t}"
    );
    // The admin forgets the pin; the retry pins the new key and succeeds.
    let url = srv.url(&format!("/api/v1/nodes/{n}/ssh-host-key"));
    assert_eq!(
        send(&admin, "DELETE", &url, Some(json!({}))).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(get(&admin, &url).await.1["host_key"], Value::Null);
    let (s, b) = process(&srv, &admin, id).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert!(node.has_user("erin"));
    assert!(get(&admin, &url).await.1["host_key"]["fingerprint"].is_string());
    let (_, t) = post(
        &admin,
        &srv.url(&format!("/api/v1/nodes/{n}/ssh-test")),
        json!({}),
    )
    .await;
    assert_eq!(
        (t["ok"].as_bool(), t["privileged"].as_bool()),
        (Some(true), Some(true)),
        "{t}"
    );

    for action in ["account_opening.fail", "node.ssh_test"] {
        assert!(
            audit_has(&srv, &admin, action, "failure").await,
            "{action} failure not audited"
        );
    }
    assert!(audit_has(&srv, &admin, "node.ssh_host_key_forget", "success").await);
}

/// A member sees only their own requests, an owner their tenant's, in lists,
/// single reads and the dashboard counts; customers apply only for listed
/// nodes; one name per node while a request or account holds it.
#[tokio::test]
async fn requests_are_scoped_and_validated() {
    let srv = Server::start();
    let admin = srv.admin().await;
    let n = add_node(&srv, &admin, "n1", 22, "root", "x").await;
    let hidden = add_node(&srv, &admin, "hidden", 22, "root", "x").await;
    let (s, b) = patch(
        &admin,
        &srv.url(&format!("/api/v1/nodes/{hidden}")),
        json!({"listed": false}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (ta, tb) = (
        make_tenant(&srv, &admin, "TA").await,
        make_tenant(&srv, &admin, "TB").await,
    );
    let (_, oa) = make_user(&srv, &admin, "oa", "customer_owner", Some(ta), PW_O).await;
    let (_, a1) = make_user(&srv, &admin, "a1", "customer_member", Some(ta), PW_M).await;
    let (_, a2) = make_user(&srv, &admin, "a2", "customer_member", Some(ta), PW_N).await;
    let (_, b1) = make_user(&srv, &admin, "b1", "customer_member", Some(tb), PW_M).await;
    let r1 = apply(&srv, &a1, n, "u-a1").await["id"].as_i64().unwrap();
    let r2 = apply(&srv, &a2, n, "u-a2").await["id"].as_i64().unwrap();
    let r3 = apply(&srv, &b1, n, "u-b1").await["id"].as_i64().unwrap();
    let ids = async |c: &reqwest::Client| {
        let (s, l) = get(c, &srv.url("/api/v1/account-openings")).await;
        assert_eq!(s, StatusCode::OK, "{l}");
        let mut v: Vec<i64> = l
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_i64().unwrap())
            .collect();
        v.sort();
        v
    };
    assert_eq!(ids(&a1).await, [r1]);
    assert_eq!(ids(&oa).await, [r1, r2]);
    assert_eq!(ids(&b1).await, [r3]);
    assert_eq!(ids(&admin).await, [r1, r2, r3]);
    for (c, id) in [(&a1, r2), (&oa, r3), (&b1, r1)] {
        let (s, b) = get(c, &srv.url(&format!("/api/v1/account-openings/{id}"))).await;
        assert_eq!((s, code(&b)), (StatusCode::NOT_FOUND, "not_found"), "{b}");
    }
    let (s, _) = get(&oa, &srv.url(&format!("/api/v1/account-openings/{r2}"))).await;
    assert_eq!(s, StatusCode::OK);
    // Cloud users and reviews are the admins'.
    assert_eq!(
        get(&oa, &srv.url("/api/v1/cloud-users")).await.0,
        StatusCode::FORBIDDEN
    );
    let (s, _) = post(
        &oa,
        &srv.url(&format!("/api/v1/account-openings/{r1}/reject")),
        json!({}),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // The dashboard counts follow the same scope.
    let count = async |c: &reqwest::Client| {
        let page = c
            .get(srv.url("/"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let tag = "id=\"count-requests-pending\">";
        let at = page
            .find(tag)
            .unwrap_or_else(|| panic!("no count in {page}"))
            + tag.len();
        page[at..].split('<').next().unwrap().to_string()
    };
    assert_eq!(
        (count(&a1).await, count(&oa).await, count(&admin).await),
        ("1".into(), "2".into(), "3".into())
    );
    assert!(
        !a1.get(srv.url("/"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
            .contains("count-cloudusers-")
    );

    // Validation and conflicts.
    let body = |u: &str, node: i64| json!({"username": u, "target_host": node});
    let url = srv.url("/api/v1/account-openings");
    let (s, b) = post(&a1, &url, body("Bad Name", n)).await;
    assert_eq!(
        (s, b["error"]["fields"]["username"].is_string()),
        (StatusCode::UNPROCESSABLE_ENTITY, true),
        "{b}"
    );
    let (s, b) = post(&a1, &url, body("root", n)).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    let (s, b) = post(&a1, &url, body("u-a2", n)).await;
    assert_eq!(
        (s, b["error"]["fields"]["username"].is_string()),
        (StatusCode::CONFLICT, true),
        "{b}"
    );
    let (s, b) = post(&a1, &url, body("fine", hidden)).await;
    assert_eq!(
        (s, b["error"]["fields"]["target_host"].is_string()),
        (StatusCode::UNPROCESSABLE_ENTITY, true),
        "{b}"
    );
    let (s, b) = post(&admin, &url, body("fine", hidden)).await;
    assert_eq!(s, StatusCode::CREATED, "admins may use unlisted nodes: {b}");
    // Batch review: two rejected, the third already reviewed.
    let (s, b) = post(
        &admin,
        &srv.url("/api/v1/account-openings/batch"),
        json!({"ids": [r1, r2, r1], "action": "reject", "approval_notes": "no room"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let ok: Vec<bool> = b["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["ok"].as_bool().unwrap())
        .collect();
    assert_eq!(ok, [true, true, false], "{b}");
    let (_, r) = get(&a1, &srv.url(&format!("/api/v1/account-openings/{r1}"))).await;
    assert_eq!(
        (r["status"].as_str(), r["approval_notes"].as_str()),
        (Some("rejected"), Some("no room"))
    );
    // A rejected request frees its name.
    let (s, b) = post(&a2, &url, body("u-a1", n)).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
}

/// The delivery desk: contact fields, sign-in by e-mail, web password
/// resets (admins anyone, owners their members; shown once, must be
/// changed).
#[tokio::test]
async fn delivery_desk_contacts_email_sign_in_and_password_resets() {
    let srv = Server::start();
    let admin = srv.admin().await;
    let (s, t) = post(
        &admin,
        &srv.url("/api/v1/tenants"),
        json!({"name": "Lab", "company_code": "LAB1", "contact_person": "Wang Fang",
               "contact_email": "wang@lab.example.com", "contact_phone": "+86 138 0013 8000"}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    assert_eq!(t["contact_person"], "Wang Fang");
    let tid = t["id"].as_i64().unwrap();
    let (s, b) = patch(
        &admin,
        &srv.url(&format!("/api/v1/tenants/{tid}")),
        json!({"contact_email": "nope"}),
    )
    .await;
    assert_eq!(
        (s, b["error"]["fields"]["contact_email"].is_string()),
        (StatusCode::UNPROCESSABLE_ENTITY, true)
    );

    let (s, u) = post(
        &admin,
        &srv.url("/api/v1/users"),
        json!({"username": "li", "role": "customer_member", "tenant_id": tid,
               "email": "Li.Lei@Lab.example.com", "phone": "138 0013 8001"}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{u}");
    assert_eq!(u["user"]["email"], "Li.Lei@Lab.example.com");
    let li = u["user"]["id"].as_i64().unwrap();
    let temp = u["initial_password"].as_str().unwrap();
    // The e-mail signs in too, in any case; it is unique.
    let (c, s, b) = srv.login("li.lei@lab.example.com", temp).await;
    assert_eq!(
        (s, b["user"]["username"].as_str()),
        (StatusCode::OK, Some("li")),
        "{b}"
    );
    let (s, _) = post(
        &c,
        &srv.url("/api/v1/auth/password"),
        json!({"current_password": temp, "new_password": PW_M}),
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, b) = post(
        &admin,
        &srv.url("/api/v1/users"),
        json!({"username": "li2", "role": "customer_member", "tenant_id": tid, "email": "LI.LEI@lab.example.com"}),
    )
    .await;
    assert_eq!(
        (s, b["error"]["fields"]["email"].is_string()),
        (StatusCode::CONFLICT, true),
        "{b}"
    );

    // An owner resets a member of their tenant: shown once, must be changed,
    // the member's sessions end.
    let (_, owner) = make_user(&srv, &admin, "own", "customer_owner", Some(tid), PW_O).await;
    let reset = |id: i64| srv.url(&format!("/api/v1/users/{id}/reset-password"));
    let (s, b) = post(&owner, &reset(li), json!({})).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let temp2 = b["temporary_password"].as_str().unwrap().to_string();
    assert_eq!(b["user"]["must_change_password"], true);
    assert_eq!(
        get(&c, &srv.url("/api/v1/me")).await.0,
        StatusCode::UNAUTHORIZED,
        "old session ended"
    );
    let (c2, s, b) = srv.login("li", &temp2).await;
    assert_eq!(
        (s, b["must_change_password"].as_bool()),
        (StatusCode::OK, Some(true))
    );
    let (s, b) = get(&c2, &srv.url("/api/v1/account-openings")).await;
    assert_eq!(
        (s, code(&b)),
        (StatusCode::FORBIDDEN, "password_change_required")
    );
    // Not another owner, not themselves, not another tenant's member; members not at all.
    let (own2, _) = make_user(&srv, &admin, "own2", "customer_owner", Some(tid), PW_N).await;
    assert_eq!(
        post(&owner, &reset(own2), json!({})).await.0,
        StatusCode::FORBIDDEN
    );
    let me = get(&owner, &srv.url("/api/v1/me")).await.1["user"]["id"]
        .as_i64()
        .unwrap();
    let (s, b) = post(&owner, &reset(me), json!({})).await;
    assert_eq!(
        (s, b["error"]["fields"]["id"].is_string()),
        (StatusCode::UNPROCESSABLE_ENTITY, true),
        "not one's own: {b}"
    );
    let other = make_tenant(&srv, &admin, "OTHER").await;
    let (stranger, _) = make_user(
        &srv,
        &admin,
        "stranger",
        "customer_member",
        Some(other),
        PW_N,
    )
    .await;
    assert_eq!(
        post(&owner, &reset(stranger), json!({})).await.0,
        StatusCode::NOT_FOUND
    );
    let (_, member) = make_user(&srv, &admin, "mem", "customer_member", Some(tid), PW_N).await;
    assert_eq!(
        post(&member, &reset(stranger), json!({})).await.0,
        StatusCode::FORBIDDEN
    );
    // Admins reset anyone (the page shows the temporary password once).
    let page = admin
        .post(srv.url(&format!("/users/{own2}/reset-password")))
        .header(
            "x-csrf-token",
            get(&admin, &srv.url("/api/v1/me")).await.1["csrf_token"]
                .as_str()
                .unwrap(),
        )
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("id=\"temp-password\""), "{page}");
    assert!(page.contains("id=\"reset-done\""), "{page}");
    assert!(audit_has(&srv, &admin, "user.reset_password", "success").await);
}

/// What gpudock shows as its address: the configured public host (web
/// address and SSH host), the jumpbox's real port and host key.
#[tokio::test]
async fn connection_summaries_name_the_public_host() {
    use common::lab::{FAST_STOP, Lab, small_spec};
    let config = format!("{FAST_STOP}[server]\npublic_host = \"gpu.example.com:9443\"\n");
    let lab = Lab::new(&config, 4).await;
    let spec = lab.spec(small_spec("s")).await;
    let (s, i) = lab
        .post("/api/v1/instances", lab.create_body(spec, "train"))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{i}");
    let id = i["id"].as_i64().unwrap();
    let (s, c) = lab.get(&format!("/api/v1/instances/{id}/connection")).await;
    assert_eq!(s, StatusCode::OK, "{c}");
    assert_eq!(
        c["web_url"],
        format!("https://gpu.example.com:9443/instances/{id}")
    );
    let port = lab.srv.ssh_port();
    assert_eq!(
        c["ssh_command"],
        format!("ssh -p {port} admin+train@gpu.example.com")
    );
    let key = std::process::Command::new("ssh-keygen")
        .args(["-l", "-E", "sha256", "-f"])
        .arg(lab.srv.data_dir().join("ssh_host_ed25519_key"))
        .output()
        .unwrap();
    let fp = c["jumpbox_host_key"].as_str().unwrap();
    assert!(String::from_utf8_lossy(&key.stdout).contains(fp), "{c}");
    assert!(c["text"].as_str().unwrap().contains(fp));
    // The instance page carries the same summary, with its copy button.
    let page = lab
        .admin
        .get(lab.srv.url(&format!("/instances/{id}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("id=\"copy-summary\"") && page.contains("gpu.example.com:9443"),
        "{page}"
    );
    // Another tenant's member cannot read it.
    let t = make_tenant(&lab.srv, &lab.admin, "TT1").await;
    let (_, m) = make_user(
        &lab.srv,
        &lab.admin,
        "mm1",
        "customer_member",
        Some(t),
        PW_M,
    )
    .await;
    let (s, _) = get(
        &m,
        &lab.srv.url(&format!("/api/v1/instances/{id}/connection")),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(lab.delete(&json!(id)).await, StatusCode::NO_CONTENT);
}

/// With `process_on_approval`, approving opens the account at once; the
/// node page's SSH section shows the pinned key.
#[tokio::test]
async fn approval_opens_the_account_when_configured() {
    let node = SshNode::start();
    let srv = Server::start_with("[accounts]\nprocess_on_approval = true\n");
    let admin = srv.admin().await;
    let n = add_node(&srv, &admin, "auto", node.port, "root", &node.root_password).await;
    let id = apply(&srv, &admin, n, "auto1").await["id"]
        .as_i64()
        .unwrap();
    let (s, r) = post(
        &admin,
        &srv.url(&format!("/api/v1/account-openings/{id}/approve")),
        json!({"is_admin": true, "groups": "users"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let r = loop {
        let (_, r) = get(&admin, &srv.url(&format!("/api/v1/account-openings/{id}"))).await;
        if r["status"] != "processing" && r["status"] != "approved" {
            break r;
        }
        assert!(std::time::Instant::now() < deadline, "{r}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(r["status"], "completed", "{r}");
    let groups = node.sh("id -nG auto1");
    let groups = String::from_utf8_lossy(&groups.stdout);
    assert!(
        groups.contains("sudo") && groups.contains("users"),
        "{groups}"
    );
    let (_, k) = get(&admin, &srv.url(&format!("/api/v1/nodes/{n}/ssh-host-key"))).await;
    let fp = k["host_key"]["fingerprint"].as_str().unwrap();
    let section = admin
        .get(srv.url(&format!("/nodes/{n}/ssh")))
        .header("hx-request", "true")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(section.contains(fp), "{section}");
}

/// Pending requests expire after `pending_expiry_days` and are deleted
/// `expired_retention_days` later, audited as the system.
#[tokio::test]
async fn pending_requests_expire_then_go() {
    let dir = tempfile::tempdir().unwrap();
    let (app, me) = common::in_process_admin(dir.path()).await;
    let src = gpudock::audit::Source::local();
    let input = gpudock::nodes::model::NodeInput {
        name: Some("n".into()),
        public_ip: Some("10.0.0.1".into()),
        private_ip: Some("10.0.0.1".into()),
        ..Default::default()
    };
    let node = gpudock::nodes::save(&app, &me, None, input, &src)
        .await
        .unwrap();
    let input = gpudock::accounts::RequestInput {
        username: "late".into(),
        target_host: Some(json!(node.id)),
        ..Default::default()
    };
    let r = gpudock::accounts::submit(&app, &me, input, &src)
        .await
        .unwrap();
    let now = gpudock::db::now();
    let sweep = |at| gpudock::accounts::sweep::sweep(&app, at);
    assert_eq!(sweep(now + 13 * 86_400).await.unwrap(), (0, 0));
    assert_eq!(sweep(now + 15 * 86_400).await.unwrap(), (1, 0));
    let got = gpudock::accounts::get(&app, &me, r.id).await.unwrap();
    assert_eq!(got.status, gpudock::accounts::RequestStatus::Expired);
    // Expired on day 15: kept for 30 days after that.
    assert_eq!(sweep(now + 44 * 86_400).await.unwrap(), (0, 0));
    assert_eq!(sweep(now + 46 * 86_400).await.unwrap(), (0, 1));
    assert!(gpudock::accounts::get(&app, &me, r.id).await.is_err());
}

/// The server's stop reaches an opening between its steps: it goes no
/// further on the node, the request fails as interrupted (to be checked and
/// run again), and the job ends at once instead of holding up the stop.
#[tokio::test]
async fn a_stopping_server_interrupts_an_opening_between_steps() {
    let dir = tempfile::tempdir().unwrap();
    let (app, me) = common::in_process_admin(dir.path()).await;
    let src = gpudock::audit::Source::local();
    let input = gpudock::nodes::model::NodeInput {
        name: Some("n".into()),
        public_ip: Some("10.0.0.1".into()),
        private_ip: Some("10.0.0.1".into()),
        ..Default::default()
    };
    let node = gpudock::nodes::save(&app, &me, None, input, &src)
        .await
        .unwrap();
    let input = gpudock::accounts::RequestInput {
        username: "stopper".into(),
        target_host: Some(json!(node.id)),
        ..Default::default()
    };
    let r = gpudock::accounts::submit(&app, &me, input, &src)
        .await
        .unwrap();
    let review = gpudock::accounts::ReviewInput::default();
    gpudock::accounts::review(&app, &me, r.id, true, review, &src)
        .await
        .unwrap();
    app.cancel.cancel();
    let (_, task) = gpudock::accounts::process(&app, &me, r.id, &src)
        .await
        .unwrap();
    let e = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the job ends at once")
        .unwrap()
        .unwrap_err();
    assert_eq!(e.code(), "shutting_down");
    let got = gpudock::accounts::get(&app, &me, r.id).await.unwrap();
    assert_eq!(
        (got.status, got.result_kind.as_str()),
        (gpudock::accounts::RequestStatus::Failed, "interrupted")
    );
    assert!(
        got.steps.iter().all(|s| s.state_str() == "skipped"),
        "{:?}",
        got.steps
    );
}
