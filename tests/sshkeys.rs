//! SSH public keys end to end against the real binary, with keys made by the
//! real `ssh-keygen`: accepted types and their fingerprints (as `ssh-keygen
//! -l` prints them), refused inputs with a field error each, duplicates,
//! per-user scoping, the page, the audit records, and the lookup the jumpbox
//! uses.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;

use common::{Server, code, get, make_tenant, make_user, post};
use reqwest::StatusCode;
use serde_json::{Value, json};

const PW_ALICE: &str = "Harbor-Lantern-Mosaic-27!";
const PW_BOB: &str = "Glacier-Tinsel-Parrot-64!";

/// A key pair made by `ssh-keygen` in `dir`.
struct Key {
    /// The `.pub` line as written (`type base64 comment`).
    line: String,
    /// The private key file's content.
    private: String,
    /// `SHA256:...` as `ssh-keygen -lf key.pub -E sha256` prints it.
    fingerprint: String,
}

impl Key {
    /// `type base64`, without the comment.
    fn bare(&self) -> String {
        self.line.split(' ').take(2).collect::<Vec<_>>().join(" ")
    }
}

/// Runs `ssh-keygen -q -N '' -C comment -f dir/name args...`; `None` when
/// this OpenSSH refuses to make such a key.
fn try_keygen(dir: &Path, name: &str, comment: &str, args: &[&str]) -> Option<Key> {
    let path = dir.join(name);
    let out = Command::new("ssh-keygen")
        .args(["-q", "-N", "", "-C", comment, "-f"])
        .arg(&path)
        .args(args)
        .output()
        .expect("ssh-keygen must be installed (openssh-client)");
    if !out.status.success() {
        return None;
    }
    let pub_path = path.with_extension("pub");
    let listed = Command::new("ssh-keygen")
        .args(["-E", "sha256", "-lf"])
        .arg(&pub_path)
        .output()
        .unwrap();
    assert!(listed.status.success(), "{listed:?}");
    let fingerprint = String::from_utf8(listed.stdout).unwrap();
    Some(Key {
        line: std::fs::read_to_string(&pub_path)
            .unwrap()
            .trim()
            .to_string(),
        private: std::fs::read_to_string(&path).unwrap(),
        fingerprint: fingerprint.split_whitespace().nth(1).unwrap().to_string(),
    })
}

fn keygen(dir: &Path, name: &str, comment: &str, args: &[&str]) -> Key {
    try_keygen(dir, name, comment, args).unwrap_or_else(|| panic!("ssh-keygen {args:?} failed"))
}

/// A caller's session client and its CSRF token (for bodiless DELETEs).
struct Caller {
    c: reqwest::Client,
    csrf: String,
}

impl Caller {
    async fn new(srv: &Server, c: reqwest::Client) -> Self {
        let (s, me) = get(&c, &srv.url("/api/v1/me")).await;
        assert_eq!(s, StatusCode::OK, "{me}");
        let csrf = me["csrf_token"].as_str().unwrap().to_string();
        Caller { c, csrf }
    }

    async fn add(&self, srv: &Server, body: Value) -> (StatusCode, Value) {
        post(&self.c, &srv.url("/api/v1/ssh-keys"), body).await
    }

    async fn list(&self, srv: &Server) -> Vec<Value> {
        let (s, b) = get(&self.c, &srv.url("/api/v1/ssh-keys")).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        b.as_array().unwrap().clone()
    }

    async fn delete(&self, srv: &Server, id: i64) -> StatusCode {
        self.c
            .delete(srv.url(&format!("/api/v1/ssh-keys/{id}")))
            .header("x-csrf-token", &self.csrf)
            .send()
            .await
            .unwrap()
            .status()
    }

    /// Posts a page form (with the CSRF field) in English; status and body.
    async fn form(
        &self,
        srv: &Server,
        path: &str,
        fields: &[(&str, &str)],
    ) -> (StatusCode, String) {
        let mut all = vec![("csrf_token", self.csrf.as_str())];
        all.extend_from_slice(fields);
        let r = self
            .c
            .post(srv.url(path))
            .header("accept-language", "en")
            .form(&all)
            .send()
            .await
            .unwrap();
        (r.status(), r.text().await.unwrap())
    }

    async fn page(&self, srv: &Server, path: &str, lang: &str) -> String {
        let r = self
            .c
            .get(srv.url(path))
            .header("accept-language", lang)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        r.text().await.unwrap()
    }
}

/// Admin, a member `alice` and an owner `bob` of one tenant.
async fn setup(srv: &Server) -> (Caller, Caller, Caller) {
    let admin = srv.admin().await;
    let t = make_tenant(srv, &admin, "KEYS").await;
    let (_, a) = make_user(srv, &admin, "alice", "customer_member", Some(t), PW_ALICE).await;
    let (_, b) = make_user(srv, &admin, "bob", "customer_owner", Some(t), PW_BOB).await;
    (
        Caller::new(srv, admin).await,
        Caller::new(srv, a).await,
        Caller::new(srv, b).await,
    )
}

fn assert_key_error(s: StatusCode, b: &Value, want: StatusCode, what: &str) -> String {
    assert_eq!(s, want, "{what}: {b}");
    let msg = b["error"]["fields"]["public_key"].as_str();
    assert!(msg.is_some(), "{what}: no error on public_key: {b}");
    msg.unwrap().to_string()
}

#[tokio::test]
async fn the_api_takes_good_keys_and_says_what_is_wrong_with_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let srv = Server::start();
    let (admin, alice, bob) = setup(&srv).await;

    // Every accepted type, with the fingerprint ssh-keygen prints.
    let good = [
        (
            "ed25519",
            keygen(d, "ed", "alice@laptop", &["-t", "ed25519"]),
            "ssh-ed25519",
        ),
        (
            "rsa3072",
            keygen(d, "rsa", "alice@rsa", &["-t", "rsa", "-b", "3072"]),
            "ssh-rsa",
        ),
        (
            "p256",
            keygen(d, "e256", "alice@p256", &["-t", "ecdsa", "-b", "256"]),
            "ecdsa-sha2-nistp256",
        ),
        (
            "p384",
            keygen(d, "e384", "alice@p384", &["-t", "ecdsa", "-b", "384"]),
            "ecdsa-sha2-nistp384",
        ),
        (
            "p521",
            keygen(d, "e521", "alice@p521", &["-t", "ecdsa", "-b", "521"]),
            "ecdsa-sha2-nistp521",
        ),
    ];
    let mut ids = Vec::new();
    for (what, key, algorithm) in &good {
        let (s, b) = alice.add(&srv, json!({"public_key": key.line})).await;
        assert_eq!(s, StatusCode::CREATED, "{what}: {b}");
        assert_eq!(b["fingerprint"], key.fingerprint.as_str(), "{what}: {b}");
        assert_eq!(b["algorithm"], *algorithm, "{what}: {b}");
        assert_eq!(b["public_key"], key.bare(), "{what}: {b}");
        assert_eq!(
            b["name"],
            key.line.split(' ').nth(2).unwrap(),
            "{what}: the comment names it"
        );
        assert!(b["created_at"].as_i64().unwrap() > 0, "{b}");
        assert!(b["last_used_at"].is_null(), "{b}");
        ids.push(b["id"].as_i64().unwrap());
    }

    // Refused inputs: each a 422 on `public_key` that says what is wrong.
    let weak = keygen(d, "rsa1024", "weak", &["-t", "rsa", "-b", "1024"]);
    let ed = &good[0].1;
    let two_lines = format!("{}\n{}", ed.line, good[1].1.line);
    let truncated = ed.line[..50].to_string();
    for (what, text, says) in [
        (
            "garbage",
            "hello, this is not a key",
            "not an OpenSSH public key",
        ),
        ("truncated base64", truncated.as_str(), "damaged"),
        ("private key", ed.private.as_str(), "this is a private key"),
        ("two lines", two_lines.as_str(), "one key only"),
        ("RSA 1024", weak.line.as_str(), "1024"),
        ("empty", "   ", "required"),
    ] {
        let (s, b) = alice.add(&srv, json!({"public_key": text})).await;
        let msg = assert_key_error(s, &b, StatusCode::UNPROCESSABLE_ENTITY, what);
        assert!(msg.contains(says), "{what}: {msg}");
    }
    // DSA: still made by this OpenSSH (9.2), refused as unsupported.
    match try_keygen(d, "dsa", "old", &["-t", "dsa"]) {
        Some(dsa) => {
            let (s, b) = alice.add(&srv, json!({"public_key": dsa.line})).await;
            let msg = assert_key_error(s, &b, StatusCode::UNPROCESSABLE_ENTITY, "dsa");
            assert!(
                msg.contains("unsupported key type") && msg.contains("ssh-dss"),
                "{msg}"
            );
        }
        None => eprintln!("this ssh-keygen no longer makes DSA keys; skipped"),
    }
    let (s, b) = alice.add(&srv, json!({})).await;
    assert_key_error(s, &b, StatusCode::UNPROCESSABLE_ENTITY, "no key");
    let (s, b) = alice
        .add(
            &srv,
            json!({"name": "n".repeat(65), "public_key": weak.line}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert!(b["error"]["fields"]["name"].is_string(), "{b}");

    // Duplicates: the same key material under another comment, by its owner,
    // is a conflict on `public_key` (other users' keys: see the end).
    let recommented = format!("{} another-comment", ed.bare());
    let (s, b) = alice
        .add(&srv, json!({"name": "dup", "public_key": recommented}))
        .await;
    let msg = assert_key_error(s, &b, StatusCode::CONFLICT, "alice");
    assert_eq!(code(&b), "conflict", "{b}");
    assert!(
        msg.contains("you have registered this key already"),
        "{msg}"
    );

    // Lists are per user (admins included); a given name is kept.
    assert_eq!(alice.list(&srv).await.len(), good.len());
    assert!(bob.list(&srv).await.is_empty());
    let bobs = keygen(d, "bob", "bob@ws", &["-t", "ed25519"]);
    let (s, b) = bob
        .add(
            &srv,
            json!({"name": "  work laptop ", "public_key": bobs.line}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["name"], "work laptop");
    let bob_key = b["id"].as_i64().unwrap();
    assert_eq!(bob.list(&srv).await.len(), 1);
    assert!(admin.list(&srv).await.is_empty());

    // Another user's key is not found, for admins too, and stays.
    for c in [&bob, &admin] {
        assert_eq!(c.delete(&srv, ids[0]).await, StatusCode::NOT_FOUND);
    }
    assert_eq!(alice.delete(&srv, bob_key).await, StatusCode::NOT_FOUND);
    assert_eq!(alice.list(&srv).await.len(), good.len());
    assert_eq!(bob.list(&srv).await.len(), 1);
    assert_eq!(alice.delete(&srv, ids[0]).await, StatusCode::NO_CONTENT);
    assert_eq!(alice.delete(&srv, ids[0]).await, StatusCode::NOT_FOUND);
    let left: Vec<i64> = alice
        .list(&srv)
        .await
        .iter()
        .map(|k| k["id"].as_i64().unwrap())
        .collect();
    assert_eq!(left, ids[1..]);
    // Once deleted, the key may be registered again (here by bob).
    let (s, b) = bob.add(&srv, json!({"public_key": ed.line})).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");

    // Audit: creates and the delete, with the fingerprint.
    let (s, b) = get(
        &admin.c,
        &srv.url("/api/v1/audit?action=sshkey.create&limit=100"),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let rows = b.as_array().unwrap();
    assert_eq!(rows.len(), good.len() + 2, "{b}");
    for (_, key, _) in &good {
        assert!(
            rows.iter()
                .any(|r| r["detail"]["fingerprint"] == key.fingerprint.as_str()
                    && r["resource_type"] == "ssh_key"
                    && r["actor_name"] == "alice"),
            "no sshkey.create for {}: {b}",
            key.fingerprint
        );
    }
    let (_, b) = get(&admin.c, &srv.url("/api/v1/audit?action=sshkey.delete")).await;
    let rows = b.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{b}");
    assert_eq!(rows[0]["detail"]["fingerprint"], ed.fingerprint.as_str());
    assert_eq!(rows[0]["resource_id"], ids[0].to_string());

    // Keys are per user: adding a key another user holds is no conflict,
    // so nobody learns from an answer what keys other accounts have.
    let (_, alices_key, _) = &good[1];
    let recommented = format!("{} bobs-copy", alices_key.bare());
    for (who, c) in [("bob", &bob), ("admin", &admin)] {
        let (s, b) = c.add(&srv, json!({"public_key": recommented})).await;
        assert_eq!(s, StatusCode::CREATED, "{who}: {b}");
        assert_eq!(b["fingerprint"], alices_key.fingerprint.as_str());
    }
    assert_eq!(alice.list(&srv).await.len(), good.len() - 1);
}

#[tokio::test]
async fn the_page_adds_keeps_typed_text_on_error_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start();
    let (_admin, alice, bob) = setup(&srv).await;
    let key = keygen(dir.path(), "ed", "alice@desk", &["-t", "ed25519"]);

    let account = alice.page(&srv, "/account", "zh-CN").await;
    assert!(account.contains("href=\"/account/ssh-keys\""), "{account}");
    let html = alice.page(&srv, "/account/ssh-keys", "zh-CN").await;
    for label in ["SSH 公钥", "指纹", "添加公钥", "尚未添加 SSH 公钥"] {
        assert!(html.contains(label), "no {label}");
    }

    // An error re-renders the form with what was typed and the field error.
    let (s, html) = alice
        .form(
            &srv,
            "/account/ssh-keys",
            &[
                ("name", "typed name"),
                ("public_key", "ssh-ed25519 AAAAC3Nzbroken"),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("value=\"typed name\""), "{html}");
    assert!(
        html.contains(">ssh-ed25519 AAAAC3Nzbroken</textarea>"),
        "{html}"
    );
    assert!(
        html.contains("id=\"err-public_key\">the key data"),
        "{html}"
    );
    let (s, html) = alice
        .form(
            &srv,
            "/account/ssh-keys",
            &[("name", ""), ("public_key", &key.private)],
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        html.contains("this is a private key; paste the .pub file"),
        "{html}"
    );

    // A good key: back to the list, which shows it.
    let (s, _) = alice
        .form(
            &srv,
            "/account/ssh-keys",
            &[("name", ""), ("public_key", &format!("{}\r\n", key.line))],
        )
        .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let html = alice.page(&srv, "/account/ssh-keys", "en").await;
    assert!(
        html.contains(&format!("<code>{}</code>", key.fingerprint)),
        "{html}"
    );
    assert!(
        html.contains("<td>alice@desk</td><td>ssh-ed25519</td>"),
        "{html}"
    );
    let id = alice.list(&srv).await[0]["id"].as_i64().unwrap();

    // The same key again, from its owner: 409 with the message and what
    // was typed.
    let (s, html) = alice
        .form(
            &srv,
            "/account/ssh-keys",
            &[("name", "mine"), ("public_key", &key.line)],
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(
        html.contains("you have registered this key already"),
        "{html}"
    );
    assert!(html.contains("value=\"mine\""), "{html}");

    // Bob cannot delete it; alice can.
    let path = format!("/account/ssh-keys/{id}/delete");
    let (s, _) = bob.form(&srv, &path, &[]).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(alice.list(&srv).await.len(), 1);
    let (s, _) = alice.form(&srv, &path, &[]).await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    assert!(alice.list(&srv).await.is_empty());
    let html = alice.page(&srv, "/account/ssh-keys", "en").await;
    assert!(html.contains("No SSH public keys yet."), "{html}");
}

/// The jumpbox's lookup: by the login's user and key material (any
/// comment), then `touch`.
#[tokio::test]
async fn the_jumpbox_finds_the_owner_by_key_and_records_use() {
    use gpudock::audit::Source;
    use gpudock::sshkeys::{self, model::KeyInput};
    use russh::keys::PublicKey;

    let dir = tempfile::tempdir().unwrap();
    let (app, me) = common::in_process_admin(dir.path()).await;
    let key = keygen(dir.path(), "ed", "first", &["-t", "ed25519"]);
    let input = KeyInput {
        name: None,
        public_key: Some(key.line.clone()),
    };
    let saved = sshkeys::add(&app, &me, &input, &Source::local())
        .await
        .unwrap();
    assert_eq!(saved.fingerprint, key.fingerprint);

    let offered = PublicKey::from_openssh(&format!("{} other-comment", key.bare())).unwrap();
    let found = sshkeys::find(&app, "admin", &offered).await.unwrap();
    assert_eq!(found, Some((saved.id, me.user.id)));
    assert_eq!(sshkeys::find(&app, "bob", &offered).await.unwrap(), None);
    let stranger = keygen(dir.path(), "other", "x", &["-t", "ed25519"]);
    let stranger = PublicKey::from_openssh(&stranger.line).unwrap();
    assert_eq!(sshkeys::find(&app, "admin", &stranger).await.unwrap(), None);

    sshkeys::touch(&app, saved.id).await.unwrap();
    let listed = sshkeys::list(&app, &me, gpudock::paging::Window::first(10))
        .await
        .unwrap();
    assert_eq!(listed.total, 1);
    assert!(listed.items[0].last_used_at.is_some(), "{listed:?}");
    sshkeys::delete(&app, &me, saved.id, &Source::local())
        .await
        .unwrap();
    assert_eq!(sshkeys::find(&app, "admin", &offered).await.unwrap(), None);
    sshkeys::touch(&app, saved.id).await.unwrap();
}
