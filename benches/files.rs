//! Figures for file transfers (printed, not asserted; `cargo bench --bench
//! files`, root, with the test packages of README): 1 GiB into and out of
//! an instance's /data through SFTP (the real OpenSSH `sftp`, default
//! cipher and AES-GCM) and through the web file API (HTTPS, `curl` with an
//! API token), each against `docker cp` on the same daemon in the same
//! run, with gpudock's resident memory sampled every 20 ms during each
//! transfer (growth over its value just before).
//!
//! SFTP signs in with a key: a password sign-in's argon2 hash takes
//! `argon2_memory_kib` (19 MiB by default) for a few tens of milliseconds,
//! which the sampler would count as the transfer's growth.
//! `FILES_BENCH_PASSWORD=1` signs in with the password as before.
//!
//! `FILES_BENCH_MIB=5120` moves that many MiB instead of 1024 (the
//! streaming check: gpudock's memory must not grow with the file);
//! `FILES_BENCH_SFTP_ONLY=1` runs only `docker cp` and SFTP with the
//! default cipher (a big run then needs the file three times on disk: the
//! source, the container's copy and the one fetched back).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::lab::{FAST_STOP, Lab, small_spec};
use common::{make_tenant, make_user, post};
use serde_json::json;

const PW: &str = "Velvet-Canyon-Harbor-58!";

/// Bytes moved each way: `FILES_BENCH_MIB` MiB, 1 GiB by default.
fn size() -> u64 {
    std::env::var("FILES_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(1024)
        << 20
}

fn sftp_only() -> bool {
    std::env::var("FILES_BENCH_SFTP_ONLY").is_ok_and(|v| v == "1")
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// One transfer's time and gpudock's RSS growth during it (KiB).
struct Run {
    took: Duration,
    growth: u64,
}

/// Runs `cmd` to success with gpudock's (`pid`) memory sampled.
fn measured(pid: u32, mut cmd: Command) -> Run {
    let before = rss_kib(pid);
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(before));
    let (s, p) = (stop.clone(), peak.clone());
    let sampler = std::thread::spawn(move || {
        while !s.load(Ordering::SeqCst) {
            p.fetch_max(rss_kib(pid), Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let started = Instant::now();
    let out = cmd.stdin(Stdio::piped()).output().unwrap();
    let took = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    sampler.join().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Run {
        took,
        growth: peak.load(Ordering::SeqCst).saturating_sub(before),
    }
}

fn mib_s(d: Duration) -> f64 {
    size() as f64 / 1_048_576.0 / d.as_secs_f64()
}

fn password_sign_in() -> bool {
    std::env::var("FILES_BENCH_PASSWORD").is_ok_and(|v| v == "1")
}

/// `sftp` signing in with `key`, or with the password when
/// `FILES_BENCH_PASSWORD=1`.
fn sftp(port: u16, batch: &Path, cipher: Option<&str>, key: &Path) -> Command {
    let mut c;
    if password_sign_in() {
        c = Command::new("sshpass");
        c.args(["-p", PW, "sftp"]).args([
            "-o",
            "BatchMode=no",
            "-o",
            "PreferredAuthentications=password",
            "-o",
            "PubkeyAuthentication=no",
        ]);
    } else {
        c = Command::new("sftp");
        c.args(["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-i"])
            .arg(key);
    }
    c.args(["-P", &port.to_string()]).args([
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
    ]);
    if let Some(cipher) = cipher {
        c.args(["-c", cipher]);
    }
    c.arg("-b").arg(batch).arg("alice+bench@127.0.0.1");
    c
}

fn curl(srv: &common::Server, token: &str) -> Command {
    let mut c = Command::new("curl");
    c.args(["-sS", "--fail", "--cacert"])
        .arg(&srv.cert)
        .args(["-H", &format!("Authorization: Bearer {token}")]);
    c
}

fn line(what: &str, r: &Run, base: &Run) {
    println!(
        "  {what:<34} {:>7.1} MiB/s   ratio to docker cp: {:.2}   RSS growth: {:>6} KiB",
        mib_s(r.took),
        base.took.as_secs_f64() / r.took.as_secs_f64(),
        r.growth
    );
}

#[tokio::main]
async fn main() {
    let lab = Lab::new(FAST_STOP, 16).await;
    let spec = lab.spec(small_spec("s")).await;
    let t = make_tenant(&lab.srv, &lab.admin, "BEN").await;
    let (_, alice) = make_user(
        &lab.srv,
        &lab.admin,
        "alice",
        "customer_member",
        Some(t),
        PW,
    )
    .await;
    let (s, i) = post(
        &alice,
        &lab.srv.url("/api/v1/instances"),
        lab.create_body(spec, "bench"),
    )
    .await;
    assert_eq!(s.as_u16(), 201, "{i}");
    let (id, cid) = (
        i["id"].as_i64().unwrap(),
        i["container_id"].as_str().unwrap().to_string(),
    );
    let (s, tok) = post(
        &alice,
        &lab.srv.url("/api/v1/tokens"),
        json!({"name": "bench"}),
    )
    .await;
    assert_eq!(s.as_u16(), 201, "{tok}");
    let token = tok["token"].as_str().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("id_ed25519");
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(st.success());
    let public = std::fs::read_to_string(dir.path().join("id_ed25519.pub")).unwrap();
    let (s, b) = post(
        &alice,
        &lab.srv.url("/api/v1/ssh-keys"),
        json!({"public_key": public}),
    )
    .await;
    assert_eq!(s.as_u16(), 201, "{b}");
    let big = dir.path().join("big.bin");
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "head -c {} /dev/urandom > {}",
            size(),
            big.display()
        ))
        .status()
        .unwrap();
    assert!(st.success());
    let out = dir.path().join("out.bin");
    let (pid, port) = (lab.srv.pid(), lab.srv.ssh_port());
    let docker = |args: &[&str]| {
        let mut c = Command::new("docker");
        c.args(["-H", &lab.d.unix_url]).args(args);
        c
    };
    let big_s = big.to_string_lossy().into_owned();
    let out_s = out.to_string_lossy().into_owned();
    let clear = |path: &str| {
        let st = docker(&["exec", &cid, "rm", "-f", path]).status().unwrap();
        assert!(st.success());
        let _ = std::fs::remove_file(&out);
    };

    let mib = size() >> 20;
    eprintln!("{mib} MiB each way: docker cp, SFTP (chacha20-poly1305, aes256-gcm), web API...");
    let cp_in = measured(pid, docker(&["cp", &big_s, &format!("{cid}:/data/cp.bin")]));
    let cp_out = measured(pid, docker(&["cp", &format!("{cid}:/data/cp.bin"), &out_s]));
    clear("/data/cp.bin");

    let mut sftp_runs = Vec::new();
    let ciphers: &[Option<&str>] = if sftp_only() {
        &[None]
    } else {
        &[None, Some("aes256-gcm@openssh.com")]
    };
    for &cipher in ciphers {
        let up = dir.path().join("up.batch");
        std::fs::write(&up, format!("put {big_s} /data/s.bin\n")).unwrap();
        let down = dir.path().join("down.batch");
        std::fs::write(&down, format!("get /data/s.bin {out_s}\n")).unwrap();
        let r_up = measured(pid, sftp(port, &up, cipher, &key));
        let r_down = measured(pid, sftp(port, &down, cipher, &key));
        assert_eq!(std::fs::metadata(&out).unwrap().len(), size());
        clear("/data/s.bin");
        sftp_runs.push((
            cipher.unwrap_or("chacha20-poly1305 (default)"),
            r_up,
            r_down,
        ));
    }

    // The web API over HTTP/2 (what curl and browsers pick) and HTTP/1.1.
    let mut web_runs = Vec::new();
    let versions: &[(&str, &str)] = if sftp_only() {
        &[]
    } else {
        &[("HTTP/2", "--http2"), ("HTTP/1.1", "--http1.1")]
    };
    for &(name, flag) in versions {
        let base = lab.srv.url(&format!("/api/v1/instances/{id}/files"));
        let mut up = curl(&lab.srv, &token);
        up.args([flag, "-o", "/dev/null", "-T", &big_s])
            .arg(format!("{base}/upload?path=/data/w.bin"));
        let web_up = measured(pid, up);
        let mut down = curl(&lab.srv, &token);
        down.args([flag, "-o", &out_s])
            .arg(format!("{base}/download?path=/data/w.bin"));
        let web_down = measured(pid, down);
        assert_eq!(std::fs::metadata(&out).unwrap().len(), size());
        clear("/data/w.bin");
        web_runs.push((name, web_up, web_down));
    }
    let _ = std::fs::remove_file(&big);

    let how = if password_sign_in() {
        "password"
    } else {
        "key"
    };
    println!(
        "{mib} MiB of random bytes into and out of an instance's /data (one run each; SFTP signs in with a {how}):"
    );
    println!(
        "  docker cp in:                      {:>7.1} MiB/s   RSS growth: {:>6} KiB",
        mib_s(cp_in.took),
        cp_in.growth
    );
    println!(
        "  docker cp out:                     {:>7.1} MiB/s   RSS growth: {:>6} KiB",
        mib_s(cp_out.took),
        cp_out.growth
    );
    for (cipher, r_up, r_down) in &sftp_runs {
        line(&format!("sftp put, {cipher}"), r_up, &cp_in);
        line(&format!("sftp get, {cipher}"), r_down, &cp_out);
    }
    for (name, web_up, web_down) in &web_runs {
        line(
            &format!("web upload (HTTPS {name}, curl -T)"),
            web_up,
            &cp_in,
        );
        line(
            &format!("web download (HTTPS {name}, curl)"),
            web_down,
            &cp_out,
        );
    }
    println!("  (gpudock's RSS before the runs: {} KiB)", rss_kib(pid));
}
