//! Files (issue 16) with the real OpenSSH `sftp` (batch mode) and `scp`
//! against the real server and dockerd: put and get of binary files with
//! matching SHA-256 (and the same hashes in the file operations log),
//! listings, rename, delete, resume (`reget`, `reput`), permission and
//! path errors, a full disk, a stopped instance, other users' instances;
//! datasets filled by SFTP, mounted read-only in a new instance, kept while
//! in use; the web API's transfers and its refusals; gpudock's memory
//! during a 1 GiB transfer. Part of the jumpbox test binary (its helpers,
//! one link).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{ALICE_PW, BOB_PW, Jump, Ran, jump, perm_id, run, sessions, short, until};
use crate::common::{get, make_tenant, make_user, post, send};

fn sha_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn sha_file(p: &Path) -> String {
    sha_hex(&std::fs::read(p).unwrap())
}

/// `n` bytes that are not text (every byte value, in no simple order).
fn binary(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Options every OpenSSH client here gets (password login, no host key
/// checks against the user's files).
fn common_opts(cmd: &mut tokio::process::Command, port: u16) {
    cmd.args(["-P", &port.to_string()]).args([
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "BatchMode=no",
        "-o",
        "PreferredAuthentications=password",
        "-o",
        "PubkeyAuthentication=no",
        "-o",
        "NumberOfPasswordPrompts=1",
    ]);
}

/// `sftp -b -` (batch mode: it stops at the first failed command) as
/// `login` with `password`, the commands on stdin.
async fn sftp(port: u16, login: &str, password: &str, batch: &str) -> Ran {
    sftp_within(port, login, password, batch, Duration::from_secs(120)).await
}

/// [`sftp`] with a deadline of `within`.
async fn sftp_within(port: u16, login: &str, password: &str, batch: &str, within: Duration) -> Ran {
    let mut c = tokio::process::Command::new("sshpass");
    c.args(["-p", password, "sftp"]);
    common_opts(&mut c, port);
    c.args(["-b", "-"]).arg(format!("{login}@127.0.0.1"));
    c.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    run(&mut c, batch, within).await
}

/// `scp` (OpenSSH 9 speaks SFTP) with `args`.
async fn scp(port: u16, password: &str, args: &[&str]) -> Ran {
    let mut c = tokio::process::Command::new("sshpass");
    c.args(["-p", password, "scp"]);
    common_opts(&mut c, port);
    c.args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    run(&mut c, "", Duration::from_secs(120)).await
}

fn container(i: &Value) -> String {
    i["container_id"].as_str().unwrap().to_string()
}

/// `sh -c cmd` in container `c` on the test daemon (as root).
fn in_container(j: &Jump, c: &str, cmd: &str) -> String {
    let out = j.lab.docker(&["exec", c, "sh", "-c", cmd]);
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The SHA-256 of `path` in container `c` (busybox sha256sum).
fn sha_in(j: &Jump, c: &str, path: &str) -> String {
    in_container(j, c, &format!("sha256sum '{path}'"))
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// The file operations log as the admin sees it (newest first).
async fn operations(j: &Jump, query: &str) -> Vec<Value> {
    let (s, b) = j.lab.get(&format!("/api/v1/file-operations?{query}")).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b.as_array().unwrap().clone()
}

fn op<'a>(ops: &'a [Value], operation: &str, path: &str) -> &'a Value {
    ops.iter()
        .find(|o| o["operation"] == operation && o["path"] == path)
        .unwrap_or_else(|| panic!("no {operation} of {path} in {ops:#?}"))
}

struct Local {
    dir: tempfile::TempDir,
}

impl Local {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }
    fn s(&self, name: &str) -> String {
        self.path(name).to_string_lossy().into_owned()
    }
}

#[tokio::test]
async fn sftp_and_scp_move_files_whole_list_rename_delete_and_resume() {
    let j = jump("").await;
    let (p, alpha) = (j.port, container(&j.alpha));
    let l = Local::new();
    let data = binary(3 * 1024 * 1024 + 17, 1);
    let want = sha_hex(&data);
    l.write("up.bin", &data);

    // put, listing, get, mkdir, rename, rmdir, rm: in one batch.
    let batch = format!(
        "pwd\nput {up} /data/up.bin\nls -l /data\nget /data/up.bin {down}\nmkdir /data/sub\n\
         rename /data/up.bin /data/sub/moved.bin\nls /data/sub\nrm /data/sub/moved.bin\nrmdir /data/sub\nls -la /data\n",
        up = l.s("up.bin"),
        down = l.s("down.bin")
    );
    let r = sftp(p, "alice+alpha", ALICE_PW, &batch).await;
    assert_eq!(r.code, Some(0), "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("Remote working directory: /data"),
        "{}",
        r.stdout
    );
    let long = r
        .stdout
        .lines()
        .find(|l| l.ends_with(" up.bin"))
        .unwrap_or_else(|| panic!("no listing of up.bin in {}", r.stdout));
    assert!(long.starts_with("-rw"), "{long}");
    assert!(long.contains(&data.len().to_string()), "{long}");
    assert!(r.stdout.contains("moved.bin"), "{}", r.stdout);
    assert_eq!(
        sha_file(&l.path("down.bin")),
        want,
        "get gives the bytes put"
    );
    assert_eq!(
        in_container(&j, &alpha, "ls -A /data"),
        "",
        "rm and rmdir left nothing"
    );

    // The session is an sftp session of alice on alpha, ended by her.
    let s = &sessions(&j, "protocol=sftp&username=alice").await[0];
    assert_eq!(
        (s["instance_name"].as_str(), s["protocol"].as_str()),
        (Some("alpha"), Some("sftp"))
    );
    until(
        "the sftp session ends",
        Duration::from_secs(15),
        async || {
            sessions(&j, "protocol=sftp&username=alice").await[0]["end_reason"] == "user_close"
        },
    )
    .await;
    let sid = s["id"].as_i64().unwrap();
    assert!(s["bytes_in"].as_i64().unwrap() >= data.len() as i64, "{s}");

    // The log: the upload and the download with the hash of what passed,
    // and each change, under the session.
    let ops = operations(&j, &format!("session_id={sid}")).await;
    let up = op(&ops, "upload", "/data/up.bin");
    assert_eq!(
        (up["size"].as_u64(), up["sha256"].as_str()),
        (Some(data.len() as u64), Some(want.as_str()))
    );
    assert_eq!(
        (up["outcome"].as_str(), up["via"].as_str()),
        (Some("success"), Some("sftp"))
    );
    let down = op(&ops, "download", "/data/up.bin");
    assert_eq!(down["sha256"], want);
    assert_eq!(
        op(&ops, "rename", "/data/up.bin")["new_path"],
        "/data/sub/moved.bin"
    );
    op(&ops, "mkdir", "/data/sub");
    op(&ops, "delete", "/data/sub/moved.bin");
    op(&ops, "delete", "/data/sub");
    assert!(
        ops.iter()
            .all(|o| o["username"] == "alice" && o["target_name"] == "alpha")
    );
    // The sessions page lists it as SFTP; its own page shows what it did.
    let list = crate::common::text(&j.lab.admin, &j.lab.srv.url("/sessions?protocol=sftp")).await;
    let row = list
        .split("<tr")
        .find(|r| r.contains(&format!("href=\"/sessions/{sid}\"")))
        .unwrap_or_else(|| panic!("no row of session {sid} in {list}"));
    assert!(row.contains("SFTP") && row.contains("alpha"), "{row}");
    let page = crate::common::text(&j.lab.admin, &j.lab.srv.url(&format!("/sessions/{sid}"))).await;
    let table = &page[page
        .find("id=\"session-files\"")
        .expect("no file operations on the session's page")..];
    assert!(
        table.contains("/data/up.bin") && table.contains(&want),
        "{table}"
    );

    // scp both ways (SFTP underneath), into a folder and out of it.
    let r = scp(
        p,
        ALICE_PW,
        &[&l.s("up.bin"), "alice+alpha@127.0.0.1:/data/"],
    )
    .await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(sha_in(&j, &alpha, "/data/up.bin"), want);
    let r = scp(
        p,
        ALICE_PW,
        &["alice+alpha@127.0.0.1:/data/up.bin", &l.s("back.bin")],
    )
    .await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(sha_file(&l.path("back.bin")), want);
    // A relative remote path is in /data.
    let r = scp(
        p,
        ALICE_PW,
        &[&l.s("up.bin"), "alice+alpha@127.0.0.1:rel.bin"],
    )
    .await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(sha_in(&j, &alpha, "/data/rel.bin"), want);

    // Resume: reget finishes a partial download, reput a partial upload;
    // only the missing bytes pass.
    let cut = 1_000_003;
    l.write("partial.bin", &data[..cut]);
    in_container(
        &j,
        &alpha,
        &format!("head -c {cut} /data/up.bin > /data/half.bin"),
    );
    let batch = format!(
        "reget /data/up.bin {part}\nreput {up} /data/half.bin\n",
        part = l.s("partial.bin"),
        up = l.s("up.bin")
    );
    let r = sftp(p, "alice+alpha", ALICE_PW, &batch).await;
    assert_eq!(r.code, Some(0), "{}\n{}", r.stdout, r.stderr);
    assert_eq!(
        sha_file(&l.path("partial.bin")),
        want,
        "reget completed the file"
    );
    assert_eq!(
        sha_in(&j, &alpha, "/data/half.bin"),
        want,
        "reput completed the file"
    );
    let ops = operations(&j, "operation=upload").await;
    let resumed = op(&ops, "upload", "/data/half.bin");
    assert_eq!(resumed["size"].as_u64(), Some((data.len() - cut) as u64));
    assert_eq!(resumed["sha256"], sha_hex(&data[cut..]));
    let ops = operations(&j, "operation=download").await;
    assert_eq!(
        op(&ops, "download", "/data/up.bin")["size"].as_u64(),
        Some((data.len() - cut) as u64)
    );

    // Symlinks are shown as such, and readlink works.
    in_container(&j, &alpha, "ln -s /data/up.bin /data/link");
    let r = sftp(p, "alice+alpha", ALICE_PW, "ls -l /data\n").await;
    let link = r
        .stdout
        .lines()
        .find(|l| l.ends_with(" link"))
        .unwrap_or_default();
    assert!(link.starts_with('l'), "{}", r.stdout);
    let r = sftp(
        p,
        "alice+alpha",
        ALICE_PW,
        &format!(
            "ln -s /data/up.bin /data/made\nget /data/made {}\n",
            l.s("via-link.bin")
        ),
    )
    .await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(
        in_container(&j, &alpha, "readlink /data/made").trim(),
        "/data/up.bin"
    );
    assert_eq!(sha_file(&l.path("via-link.bin")), want);
}

#[tokio::test]
async fn sftp_refuses_with_clear_errors_and_logs_them() {
    let j = jump("").await;
    let (p, alpha) = (j.port, container(&j.alpha));
    let l = Local::new();
    l.write("small.bin", &binary(1000, 2));

    // Missing files and folders.
    let r = sftp(
        p,
        "alice+alpha",
        ALICE_PW,
        &format!("get /data/nope {}\n", l.s("x")),
    )
    .await;
    assert_ne!(r.code, Some(0));
    assert!(
        r.stderr.contains("not found") || r.stderr.contains("No such file"),
        "{}",
        r.stderr
    );
    let r = sftp(
        p,
        "alice+alpha",
        ALICE_PW,
        &format!("put {} /nowhere/x.bin\n", l.s("small.bin")),
    )
    .await;
    assert_ne!(r.code, Some(0));
    assert!(r.stderr.contains("No such file"), "{}", r.stderr);
    // A read-only filesystem is a permission error.
    let r = sftp(p, "alice+alpha", ALICE_PW, "mkdir /sys/gpudock-x\n").await;
    assert_ne!(r.code, Some(0));
    assert!(
        r.stderr.to_lowercase().contains("permission denied"),
        "{}",
        r.stderr
    );
    // A full disk: the upload fails, and the client is told (nothing is
    // reported as written).
    let r = sftp(
        p,
        "alice+alpha",
        ALICE_PW,
        &format!("put {} /dev/full\n", l.s("small.bin")),
    )
    .await;
    assert_ne!(r.code, Some(0), "{}", r.stdout);
    let ops = operations(&j, "operation=upload").await;
    let full = op(&ops, "upload", "/dev/full");
    assert_eq!(full["outcome"], "failure");
    assert!(
        full["error"].as_str().unwrap().contains("No space left"),
        "{full}"
    );
    // A full tmpfs (/dev/shm holds 64 MiB): the upload fails part way and
    // says so; what it wrote is not passed off as the file.
    let big = l.write("big.bin", &binary(70 << 20, 3));
    let r = sftp(
        p,
        "alice+alpha",
        ALICE_PW,
        &format!("put {} /dev/shm/big.bin\n", big.display()),
    )
    .await;
    assert_ne!(r.code, Some(0), "{}", r.stdout);
    let ops = operations(&j, "operation=upload").await;
    let shm = op(&ops, "upload", "/dev/shm/big.bin");
    assert_eq!(shm["outcome"], "failure", "{shm}");
    assert!(
        shm["error"].as_str().unwrap().contains("No space left"),
        "{shm}"
    );
    in_container(&j, &alpha, "rm -f /dev/shm/big.bin");

    // `..` resolves within the container (the whole container is alice's).
    let r = sftp(
        p,
        "alice+alpha",
        ALICE_PW,
        &format!("get /data/../../../etc/passwd {}\n", l.s("passwd")),
    )
    .await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        std::fs::read_to_string(l.path("passwd"))
            .unwrap()
            .starts_with("root:")
    );

    // Another user's instance, by name or id, and one that does not exist.
    for target in [
        "bobinst".to_string(),
        j.bobinst["id"].to_string(),
        "ghost".into(),
    ] {
        let r = sftp(p, &format!("alice+{target}"), ALICE_PW, "ls\n").await;
        assert_ne!(r.code, Some(0));
        assert!(
            r.stderr.contains("no instance named"),
            "{target}: {}",
            r.stderr
        );
    }
    // No target named.
    let r = sftp(p, "alice", ALICE_PW, "ls\n").await;
    assert_ne!(r.code, Some(0));
    assert!(r.stderr.contains("name what to reach"), "{}", r.stderr);

    // A stopped instance.
    let (s, b) = post(
        &j.alice,
        &j.lab
            .srv
            .url(&format!("/api/v1/instances/{}/stop", j.beta["id"])),
        json!({}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let r = sftp(p, "alice+beta", ALICE_PW, "ls\n").await;
    assert_ne!(r.code, Some(0));
    assert!(r.stderr.contains("not running"), "{}", r.stderr);

    // The records: without the upload record, uploads are refused (and
    // logged as denied) while downloads still work; the shell's record is
    // another one.
    let upload = perm_id(&j.lab, "PUT", "/api/v1/instances/{id}/files/upload").await;
    let url = j
        .lab
        .srv
        .url(&format!("/api/v1/permissions/customer_member/{upload}"));
    let (s, b) = send(&j.lab.admin, "DELETE", &url, Some(json!({}))).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let batch = format!(
        "get /etc/hostname {}\nput {} /data/denied.bin\n",
        l.s("h"),
        l.s("small.bin")
    );
    let r = sftp(p, "alice+alpha", ALICE_PW, &batch).await;
    assert_ne!(r.code, Some(0));
    assert!(
        r.stderr.to_lowercase().contains("permission denied"),
        "{}",
        r.stderr
    );
    assert_eq!(
        std::fs::read_to_string(l.path("h")).unwrap().trim(),
        short(&j.alpha)
    );
    let ops = operations(&j, "operation=upload").await;
    assert_eq!(op(&ops, "upload", "/data/denied.bin")["outcome"], "denied");
    let r = super::run(
        super::ssh(p, "alice+alpha", Some(ALICE_PW), None, &[]).arg("echo shell-ok"),
        "",
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(r.stdout.trim(), "shell-ok", "{}", r.stderr);
    let (s, b) = send(&j.lab.admin, "PUT", &url, Some(json!({}))).await;
    assert!(s.is_success(), "{b}");

    // Names shown on the terminal are escaped.
    in_container(&j, &alpha, "touch \"/data/evil$(printf '\\033')[2J\"");
    let r = sftp(p, "alice+alpha", ALICE_PW, "ls -l /data\n").await;
    assert!(!r.stdout.contains('\u{1b}'), "{:?}", r.stdout);
}

/// gpudock's resident memory (kB) from /proc.
fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// A 1 GiB file up and down through SFTP, with gpudock's RSS sampled
/// while it passes: it does not grow with the file (the figures against
/// `docker cp` are in benches/files.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gib_through_sftp_keeps_gpudock_memory_flat() {
    let j = jump("").await;
    let (p, alpha) = (j.port, container(&j.alpha));
    let l = Local::new();
    let big = l.path("gib.bin");
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&big).unwrap());
        for i in 0..64 {
            f.write_all(&binary(16 << 20, 100 + i)).unwrap();
        }
    }
    let want = sha_file(&big);
    let pid = j.lab.srv.pid();
    let before = rss_kb(pid);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (s2, peak) = (
        stop.clone(),
        std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0)),
    );
    let p2 = peak.clone();
    let sampler = std::thread::spawn(move || {
        while !s2.load(std::sync::atomic::Ordering::SeqCst) {
            p2.fetch_max(rss_kb(pid), std::sync::atomic::Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let started = Instant::now();
    let batch = format!(
        "put {} /data/gib.bin\nget /data/gib.bin {}\n",
        big.display(),
        l.s("back.bin")
    );
    let r = sftp_within(p, "alice+alpha", ALICE_PW, &batch, Duration::from_secs(600)).await;
    let took = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    sampler.join().unwrap();
    assert_eq!(r.code, Some(0), "{}\n{}", r.stdout, r.stderr);
    assert_eq!(sha_in(&j, &alpha, "/data/gib.bin"), want);
    assert_eq!(sha_file(&l.path("back.bin")), want);
    let growth = peak
        .load(std::sync::atomic::Ordering::SeqCst)
        .saturating_sub(before);
    eprintln!("2 GiB through SFTP in {took:?}; RSS before {before} kB, growth at most {growth} kB");
    assert!(
        growth < 64 * 1024,
        "gpudock grew by {growth} kB while 1 GiB passed"
    );
}

/// A tenant of its own with a user, for datasets another tenant cannot see.
async fn outsider(j: &Jump) -> reqwest::Client {
    let t = make_tenant(&j.lab.srv, &j.lab.admin, "OUT").await;
    make_user(
        &j.lab.srv,
        &j.lab.admin,
        "olga",
        "customer_member",
        Some(t),
        BOB_PW,
    )
    .await
    .1
}

#[tokio::test]
async fn datasets_are_filled_by_sftp_mounted_read_only_and_kept_while_in_use() {
    let j = jump("").await;
    let (p, lab) = (j.port, &j.lab);
    let url = |path: &str| lab.srv.url(path);
    let l = Local::new();
    let data = binary(2 * 1024 * 1024 + 5, 7);
    let want = sha_hex(&data);
    l.write("train.bin", &data);

    // Bad names are refused, by field.
    for bad in ["a/b", "", "../x", "a b"] {
        let (s, b) = post(
            &j.alice,
            &url("/api/v1/datasets"),
            json!({"name": bad, "node_id": lab.node}),
        )
        .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {b}");
        assert!(b["error"]["fields"]["name"].is_string(), "{b}");
    }
    let (s, b) = post(
        &j.alice,
        &url("/api/v1/datasets"),
        json!({"name": "x", "node_id": lab.node, "owner": "tenant"}),
    )
    .await;
    assert_eq!(
        s,
        StatusCode::UNPROCESSABLE_ENTITY,
        "a member makes no tenant dataset: {b}"
    );
    let (s, d) = post(
        &j.alice,
        &url("/api/v1/datasets"),
        json!({"name": "coco", "node_id": lab.node, "description": "images"}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{d}");
    let id = d["id"].as_i64().unwrap();
    assert_eq!(d["mount_path"], "/datasets/coco");

    // Filled by SFTP: the dataset's top folder is /, and nothing above it
    // is reachable (`..` stays inside, symlinks are refused).
    let batch = format!(
        "pwd\nmkdir /train\nput {} /train/a.bin\ncd ../../..\nls /\n-get ../../etc/passwd {}\n-ln -s /etc/passwd /escape\n",
        l.s("train.bin"),
        l.s("passwd")
    );
    let r = sftp(p, "alice+dataset-coco", ALICE_PW, &batch).await;
    assert_eq!(r.code, Some(0), "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("Remote working directory: /\n"),
        "{}",
        r.stdout
    );
    assert!(
        !l.path("passwd").exists(),
        "a file outside the dataset came out"
    );
    assert!(r.stderr.contains("Permission denied"), "{}", r.stderr);
    let ops = operations(&j, "operation=symlink").await;
    let link = op(&ops, "symlink", "/escape");
    assert_eq!(
        (link["outcome"].as_str(), link["new_path"].as_str()),
        (Some("failure"), Some("/etc/passwd"))
    );
    assert!(
        link["error"]
            .as_str()
            .unwrap()
            .contains("not allowed in datasets"),
        "{link}"
    );
    let s = &sessions(&j, "protocol=sftp&username=alice").await[0];
    assert_eq!(s["instance_name"], "dataset:coco");
    // Its size is measured once its files changed.
    until(
        "the dataset's size is measured",
        Duration::from_secs(60),
        async || {
            let (_, d) = get(&j.alice, &url(&format!("/api/v1/datasets/{id}"))).await;
            d["size_bytes"].as_i64().unwrap_or(0) >= data.len() as i64 && d["size_at"].is_i64()
        },
    )
    .await;

    // Another member of the tenant cannot see it; another tenant neither.
    let bob = j.lab.srv.login("bob", BOB_PW).await.0;
    let (s, _) = get(&bob, &url(&format!("/api/v1/datasets/{id}"))).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let r = sftp(p, "bob+dataset-coco", BOB_PW, "ls\n").await;
    assert!(r.stderr.contains("no dataset named"), "{}", r.stderr);
    let olga = outsider(&j).await;
    let (s, list) = get(&olga, &url("/api/v1/datasets")).await;
    assert_eq!(
        (s, list.as_array().map(Vec::len)),
        (StatusCode::OK, Some(0)),
        "{list}"
    );

    // A new instance mounts it read-only at /datasets/coco: reading gives
    // the bytes, writing fails.
    let spec = lab.spec(super::small_spec("ds")).await;
    let mut body = lab.create_body(spec, "trainer");
    body["dataset_ids"] = json!([id]);
    let (s, inst) = post(&j.alice, &url("/api/v1/instances"), body).await;
    assert_eq!(s, StatusCode::CREATED, "{inst}");
    let c = container(&inst);
    assert_eq!(sha_in(&j, &c, "/datasets/coco/train/a.bin"), want);
    let out = lab.docker(&["exec", &c, "sh", "-c", "echo x > /datasets/coco/new"]);
    assert!(!out.status.success(), "wrote into a read-only dataset");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Read-only"),
        "{:?}",
        out
    );
    // Through SFTP too.
    let r = sftp(
        p,
        "alice+trainer",
        ALICE_PW,
        &format!("put {} /datasets/coco/x\n", l.s("train.bin")),
    )
    .await;
    assert_ne!(r.code, Some(0));
    assert!(
        r.stderr.to_lowercase().contains("permission denied"),
        "{}",
        r.stderr
    );

    // A dataset on another node, or not one's own, is refused at creation.
    let mut body = lab.create_body(spec, "nope");
    body["dataset_ids"] = json!([id + 1000]);
    let (s, b) = post(&j.alice, &url("/api/v1/instances"), body).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert!(b["error"]["fields"]["dataset_ids"].is_string(), "{b}");

    // In use: deletion refused, naming the instance.
    let (s, b) = send(
        &j.alice,
        "DELETE",
        &url(&format!("/api/v1/datasets/{id}")),
        Some(json!({})),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert!(
        b["error"]["fields"]["id"]
            .as_str()
            .unwrap()
            .contains("trainer"),
        "{b}"
    );
    let volume = lab.inspect("container", &c).unwrap()["Mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["Destination"] == "/datasets/coco")
        .unwrap()["Name"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(lab.inspect("volume", &volume).is_some());
    // Once the instance is gone, the dataset goes, volume and all.
    let (s, _) = send(
        &j.alice,
        "DELETE",
        &url(&format!("/api/v1/instances/{}", inst["id"])),
        Some(json!({})),
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, b) = send(
        &j.alice,
        "DELETE",
        &url(&format!("/api/v1/datasets/{id}")),
        Some(json!({})),
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    assert!(
        lab.inspect("volume", &volume).is_none(),
        "the volume was removed"
    );
    assert!(lab.audited("action=dataset.delete&outcome=success").await >= 1);

    // A tenant's dataset: its members read it, only owners change it.
    let (tid, owner) = {
        let (_, me) = get(&j.alice, &url("/api/v1/me")).await;
        let t = me["user"]["tenant_id"].as_i64().unwrap();
        (
            t,
            make_user(
                &lab.srv,
                &lab.admin,
                "otto",
                "customer_owner",
                Some(t),
                BOB_PW,
            )
            .await
            .1,
        )
    };
    let (s, d) = post(
        &owner,
        &url("/api/v1/datasets"),
        json!({"name": "shared", "node_id": lab.node, "owner": "tenant"}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{d}");
    assert_eq!(d["tenant_id"], tid);
    let r = sftp(
        p,
        "otto+dataset-shared",
        BOB_PW,
        &format!("put {} /a.bin\n", l.s("train.bin")),
    )
    .await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let batch = format!(
        "get /a.bin {}\nput {} /b.bin\n",
        l.s("shared.bin"),
        l.s("train.bin")
    );
    let r = sftp(p, "alice+dataset-shared", ALICE_PW, &batch).await;
    assert_ne!(r.code, Some(0));
    assert!(r.stderr.contains("Permission denied"), "{}", r.stderr);
    let ops = operations(&j, "username=alice&operation=upload").await;
    assert_eq!(op(&ops, "upload", "/b.bin")["outcome"], "denied");
    assert_eq!(sha_file(&l.path("shared.bin")), want);
}

#[tokio::test]
async fn the_web_file_api_streams_and_refuses_bad_input() {
    let j = jump("[files]\nmax_upload_bytes = 4000000\n").await;
    let (lab, alpha) = (&j.lab, container(&j.alpha));
    let base = lab
        .srv
        .url(&format!("/api/v1/instances/{}/files", j.alpha["id"]));
    let data = binary(3_000_001, 9);
    let want = sha_hex(&data);
    let put = async |path: &str, body: Vec<u8>, overwrite: bool| {
        upload(&j, &base, path, body, overwrite).await
    };

    let (s, b) = put("/data/web.bin", data.clone(), false).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(
        (b["size"].as_u64(), b["sha256"].as_str()),
        (Some(data.len() as u64), Some(want.as_str()))
    );
    assert_eq!(sha_in(&j, &alpha, "/data/web.bin"), want);
    // Exists: refused unless overwriting.
    let (s, b) = put("/data/web.bin", b"x".to_vec(), false).await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    let (s, _) = put("/data/web.bin", data.clone(), true).await;
    assert_eq!(s, StatusCode::CREATED);
    // Over the limit: 413, nothing written.
    let (s, b) = put("/data/huge.bin", vec![7; 4_000_001], false).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{b}");
    assert_eq!(b["error"]["code"], "too_large");
    // A full disk: refused with the reason, and no partial file is left.
    let (s, b) = put("/dev/shm/x.bin", data.clone(), false).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    in_container(
        &j,
        &alpha,
        "dd if=/dev/zero of=/dev/shm/fill bs=1M count=62 2>/dev/null || true",
    );
    let (s, b) = put("/dev/shm/y.bin", data.clone(), false).await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert!(b.to_string().contains("No space left"), "{b}");
    let left = in_container(&j, &alpha, "ls -A /dev/shm");
    assert!(!left.contains("y.bin") && !left.contains(".part"), "{left}");
    in_container(&j, &alpha, "rm -f /dev/shm/fill /dev/shm/x.bin");
    // Bad paths and names.
    for (bad, field) in [
        ("/data/../etc/x", "path"),
        ("data/x", "path"),
        ("/", "path"),
    ] {
        let (s, b) = put(bad, b"x".to_vec(), false).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {b}");
        assert!(b["error"]["fields"][field].is_string(), "{b}");
    }
    for name in ["a/b", "..", ""] {
        let (s, b) = post(
            &j.alice,
            &format!("{base}/mkdir"),
            json!({"path": "/data", "name": name}),
        )
        .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{name}: {b}");
    }
    let (s, b) = post(
        &j.alice,
        &format!("{base}/mkdir"),
        json!({"path": "/data", "name": "dir 1"}),
    )
    .await;
    assert_eq!(
        (s, b["path"].as_str()),
        (StatusCode::CREATED, Some("/data/dir 1")),
        "{b}"
    );
    in_container(
        &j,
        &alpha,
        "echo hello > '/data/dir 1/a.txt' && mkdir '/data/dir 1/sub' && echo x > '/data/dir 1/sub/b'",
    );

    // The listing, and a folder downloaded as a tar.
    let (s, list) = get(&j.alice, &format!("{base}?path=/data")).await;
    assert_eq!(s, StatusCode::OK, "{list}");
    let names: Vec<&str> = list["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["dir 1", "web.bin"]);
    let r = j
        .alice
        .get(format!("{base}/download?path={}", urlencode("/data/dir 1")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("dir%201.tar")
    );
    let tar_bytes = r.bytes().await.unwrap();
    let mut tar = tar::Archive::new(&tar_bytes[..]);
    let mut entries: Vec<String> = tar
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    entries.sort();
    assert!(
        entries.iter().any(|e| e.ends_with("dir 1/sub/b")),
        "{entries:?}"
    );
    let r = j
        .alice
        .get(format!("{base}/download?path=/data/web.bin"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["content-length"],
        data.len().to_string().as_str()
    );
    assert_eq!(sha_hex(&r.bytes().await.unwrap()), want);
    let ops = operations(&j, "via=web").await;
    let web_ops: Vec<&Value> = ops.iter().filter(|o| o["via"] == "web").collect();
    assert!(
        web_ops
            .iter()
            .any(|o| o["operation"] == "download" && o["sha256"] == want),
        "{ops:#?}"
    );
    // Rename, delete (a folder only with recursive).
    let (s, _) = post(
        &j.alice,
        &format!("{base}/rename"),
        json!({"from": "/data/web.bin", "to": "/data/w2.bin"}),
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, b) = post(
        &j.alice,
        &format!("{base}/delete"),
        json!({"path": "/data/dir 1"}),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "not empty: {b}");
    let (s, _) = post(
        &j.alice,
        &format!("{base}/delete"),
        json!({"path": "/data/dir 1", "recursive": true}),
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(in_container(&j, &alpha, "ls -A /data").trim(), "w2.bin");

    // Another user's instance: 404; a stopped one: 409.
    let other = lab.srv.url(&format!(
        "/api/v1/instances/{}/files?path=/data",
        j.bobinst["id"]
    ));
    assert_eq!(get(&j.alice, &other).await.0, StatusCode::NOT_FOUND);
    let (s, _) = post(
        &j.alice,
        &lab.srv
            .url(&format!("/api/v1/instances/{}/stop", j.beta["id"])),
        json!({}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let stopped = lab.srv.url(&format!(
        "/api/v1/instances/{}/files?path=/data",
        j.beta["id"]
    ));
    let (s, b) = get(&j.alice, &stopped).await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert!(
        b["error"]["fields"]["status"]
            .as_str()
            .unwrap()
            .contains("not running"),
        "{b}"
    );
}

/// A web upload (the raw body) of `body` to `path` as alice.
async fn upload(
    j: &Jump,
    base: &str,
    path: &str,
    body: Vec<u8>,
    overwrite: bool,
) -> (StatusCode, Value) {
    let url = format!(
        "{base}/upload?path={}{}",
        urlencode(path),
        if overwrite { "&overwrite=true" } else { "" }
    );
    let r = j
        .alice
        .put(url)
        .header("content-type", "application/octet-stream")
        .header("x-csrf-token", csrf(&j.alice, j).await)
        // A refusal answers before the body is read and closes the
        // connection: it is not one to use again.
        .header("connection", "close")
        .body(body)
        .send()
        .await
        .unwrap();
    let s = r.status();
    (s, r.json::<Value>().await.unwrap_or(Value::Null))
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// The CSRF token of `c`'s web session (cookie-authenticated uploads
/// carry it in `X-CSRF-Token`).
async fn csrf(c: &reqwest::Client, j: &Jump) -> String {
    let (_, me) = get(c, &j.lab.srv.url("/api/v1/me")).await;
    me["csrf_token"].as_str().unwrap_or_default().to_string()
}

/// Sends an interactive `sftp` client whose session ended its next
/// command: it ends, finding the connection closed.
async fn gone(mut t: super::Talk) -> Ran {
    t.send("ls\n").await;
    t.finish(true, Duration::from_secs(20)).await
}

/// An SFTP connection is a session like a shell: it ends at the idle
/// timeout and when its user's access is revoked; a web transfer ends
/// with the revocation too, leaving no partial file.
#[tokio::test]
async fn sftp_sessions_and_web_transfers_end_on_idle_timeout_and_revocation() {
    let j = jump("[sessions]\nidle_timeout_secs = 5\n").await;
    let (p, lab) = (j.port, &j.lab);
    let interactive = || {
        let mut c = tokio::process::Command::new("sshpass");
        c.args(["-p", ALICE_PW, "sftp"]);
        common_opts(&mut c, p);
        c.arg("alice+alpha@127.0.0.1")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        c
    };
    let live = async || sessions(&j, "protocol=sftp&status=live").await.len();

    // Idle: ended by gpudock after 5 s without a byte.
    let mut t = super::Talk::start(&mut interactive()).await;
    t.send("pwd\n").await;
    t.expect("Remote working directory", Duration::from_secs(20))
        .await;
    until("the session is live", Duration::from_secs(10), async || {
        live().await == 1
    })
    .await;
    let s = super::ended_session(&j, "protocol=sftp").await;
    assert_eq!(s["end_reason"], "idle_timeout", "{s}");
    // The client, waiting for its next command, finds the connection gone.
    let r = gone(t).await;
    assert_ne!(r.code, Some(0), "{}", r.stderr);

    // Revoked: alice is disabled while connected.
    let mut t = super::Talk::start(&mut interactive()).await;
    t.send("pwd\n").await;
    t.expect("Remote working directory", Duration::from_secs(20))
        .await;
    until("the session is live", Duration::from_secs(10), async || {
        live().await == 1
    })
    .await;
    let (_, me) = get(&j.alice, &lab.srv.url("/api/v1/me")).await;
    let alice = me["user"]["id"].as_i64().unwrap();
    let (s, b) = super::patch(
        &lab.admin,
        &lab.srv.url(&format!("/api/v1/users/{alice}")),
        json!({"enabled": false}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let took = until(
        "the sftp session ends",
        Duration::from_secs(5),
        async || live().await == 0,
    )
    .await;
    let r = gone(t).await;
    assert_ne!(r.code, Some(0), "{}", r.stderr);
    let s = &sessions(&j, "protocol=sftp").await[0];
    assert_eq!(s["end_reason"], "access_revoked", "{s} after {took:?}");

    // A web upload under way (slowed by the client) ends with bob's access.
    let (bob_id, bob) = {
        let (c, _, _) = lab.srv.login("bob", BOB_PW).await;
        let (_, me) = get(&c, &lab.srv.url("/api/v1/me")).await;
        (me["user"]["id"].as_i64().unwrap(), c)
    };
    let (s, tok) = post(&bob, &lab.srv.url("/api/v1/tokens"), json!({"name": "t"})).await;
    assert_eq!(s, StatusCode::CREATED, "{tok}");
    let l = Local::new();
    l.write("slow.bin", &binary(8 << 20, 11));
    let url = lab.srv.url(&format!(
        "/api/v1/instances/{}/files/upload?path=/data/slow.bin",
        j.bobinst["id"]
    ));
    let mut curl = tokio::process::Command::new("curl");
    curl.args(["-sS", "--fail", "--limit-rate", "256k", "--cacert"])
        .arg(&lab.srv.cert)
        .args([
            "-H",
            &format!("Authorization: Bearer {}", tok["token"].as_str().unwrap()),
        ])
        .args(["-T", &l.s("slow.bin"), &url])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let child = curl.spawn().expect("curl (see .ci/run)");
    let bobinst = container(&j.bobinst);
    until(
        "the upload is under way",
        Duration::from_secs(20),
        async || in_container(&j, &bobinst, "ls -A /data").contains(".part"),
    )
    .await;
    let (s, b) = super::patch(
        &lab.admin,
        &lab.srv.url(&format!("/api/v1/users/{bob_id}")),
        json!({"enabled": false}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("the upload did not end")
        .unwrap();
    assert!(
        !out.status.success(),
        "the upload went on after the revocation"
    );
    let ops = operations(&j, "username=bob&operation=upload").await;
    let up = op(&ops, "upload", "/data/slow.bin");
    assert_eq!(up["outcome"], "failure", "{up}");
    assert!(
        up["error"].as_str().unwrap().contains("access revoked"),
        "{up}"
    );
    assert!(up["size"].as_u64().unwrap() < 8 << 20, "{up}");
    until(
        "the partial file is gone",
        Duration::from_secs(20),
        async || in_container(&j, &bobinst, "ls -A /data").trim().is_empty(),
    )
    .await;
}
