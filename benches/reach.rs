//! Figures for reaching services inside instances (issue 15; printed, not
//! asserted; `cargo bench --bench reach`, root, with the test packages of
//! README; `REACH_BENCH_MIB` sets the size): a 1 GiB download from busybox
//! httpd listening on the loopback of an instance's container,
//! * directly (curl inside the container's network namespace, `nsenter -n`:
//!   the baseline),
//! * through the jumpbox's `ssh -L` tunnel (the real OpenSSH client),
//! * through the HTTPS proxy (curl with the proxy's sign-in cookie),
//!
//! for an instance on the local node (unix socket: the namespace route) and
//! on the same daemon reached over TLS (the relay route); and the time to
//! first byte of a small file, directly and through the proxy (the median
//! of many requests on one connection each, TLS set up before the clock).
//! `REACH_BENCH_TTFB_ONLY=1` measures the time to first byte alone;
//! `REACH_BENCH_HOLD_S=N` keeps each node's instance up N seconds after
//! its figures, printing the curl line (to trace a request by hand);
//! `GPUDOCK_BIN` runs another gpudock binary (an older build, for a
//! before/after comparison in one script).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::lab::{FAST_STOP, Lab, small_spec};
use common::{make_tenant, make_user, post};
use serde_json::{Value, json};

const PW: &str = "Velvet-Canyon-Harbor-58!";
/// The size of the big file in MiB (`REACH_BENCH_MIB`, default 1024).
fn big_mib() -> u64 {
    std::env::var("REACH_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024)
}
/// Only the time to first byte (`REACH_BENCH_TTFB_ONLY=1`).
fn ttfb_only() -> bool {
    std::env::var("REACH_BENCH_TTFB_ONLY").is_ok_and(|v| v == "1")
}
const RUNS: usize = 2;
const SMALL_RUNS: usize = 50;

/// curl's figures for one download: bytes, total seconds, and the time from
/// the request being ready to the first byte.
struct Got {
    bytes: u64,
    total: f64,
    ttfb: f64,
}

fn curl(prefix: &[&str], args: &[&str], url: &str) -> Got {
    let mut c = Command::new(prefix.first().copied().unwrap_or("curl"));
    if !prefix.is_empty() {
        c.args(&prefix[1..]).arg("curl");
    }
    let out = c
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{size_download} %{time_total} %{time_starttransfer} %{time_pretransfer}",
        ])
        .args(args)
        .arg(url)
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let f: Vec<f64> = text
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect();
    assert!(out.status.success() && f.len() == 4, "curl {url}: {text}");
    Got {
        bytes: f[0] as u64,
        total: f[1],
        ttfb: f[2] - f[3],
    }
}

/// The best throughput (MiB/s) of `RUNS` downloads of the big file.
fn throughput(prefix: &[&str], args: &[&str], url: &str) -> f64 {
    let runs = if ttfb_only() { 0 } else { RUNS };
    (0..runs)
        .map(|_| {
            let g = curl(prefix, args, url);
            assert_eq!(g.bytes, big_mib() << 20, "{url}");
            g.bytes as f64 / 1_048_576.0 / g.total
        })
        .fold(0.0, f64::max)
}

/// The time to first byte (ms) of the small file, `SMALL_RUNS` requests
/// `apart`: the median, and the fastest and the 90th percentile.
fn ttfb(prefix: &[&str], args: &[&str], url: &str, apart: Duration) -> Ttfb {
    let mut v: Vec<f64> = (0..SMALL_RUNS)
        .map(|_| {
            std::thread::sleep(apart);
            curl(prefix, args, url).ttfb * 1000.0
        })
        .collect();
    v.sort_by(f64::total_cmp);
    Ttfb {
        median: v[v.len() / 2],
        min: v[0],
        p90: v[v.len() * 9 / 10],
    }
}

struct Ttfb {
    median: f64,
    min: f64,
    p90: f64,
}

impl std::fmt::Display for Ttfb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.2} ms (fastest {:.2}, p90 {:.2})",
            self.median, self.min, self.p90
        )
    }
}

/// The proxy's sign-in cookie for web service `port` of instance `id`.
async fn proxy_cookie(srv: &common::Server, c: &reqwest::Client, id: &Value, port: u16) -> String {
    let r = c
        .get(srv.url(&format!("/instances/{id}/web/{port}/open")))
        .send()
        .await
        .unwrap();
    let handoff = r.headers()["location"].to_str().unwrap().to_string();
    let r = c.get(&handoff).send().await.unwrap();
    let set = r.headers()["set-cookie"].to_str().unwrap();
    set.split(';').next().unwrap().to_string()
}

#[tokio::main]
async fn main() {
    let lab = Lab::new(&format!("{FAST_STOP}[sessions]\nmax_per_user = 0\n"), 64).await;
    let image = common::app::register(&lab).await;
    let tls_node = common::app::tls_node(&lab, 64).await;
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
    let port = lab.srv.ssh_port();
    let cert = lab.srv.data_dir().join("tls/cert.pem");
    let cert = cert.to_str().unwrap().to_string();
    println!(
        "reach benchmark: {} MiB from busybox httpd on the container's loopback (best of {RUNS}); TTFB: median of {SMALL_RUNS}",
        big_mib()
    );
    for (name, node, route) in [
        ("local", json!(lab.node), "namespace"),
        ("tls", tls_node.clone(), "relay over the Docker API"),
    ] {
        let body = json!({"image_id": image, "spec_id": spec, "node_id": node, "name": name});
        let (s, i) = post(&alice, &lab.srv.url("/api/v1/instances"), body).await;
        assert!(s.is_success(), "{i}");
        let container = i["container_id"].as_str().unwrap().to_string();
        let setup = "mkdir -p /tmp/www && dd if=/dev/zero of=/tmp/www/big bs=1048576 count=0 seek=MIB 2>/dev/null \
                     && echo small > /tmp/www/small && busybox httpd -p 127.0.0.1:9000 -h /tmp/www"
            .replace("MIB", &big_mib().to_string());
        let out = lab.docker(&["exec", &container, "sh", "-c", &setup]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pid_out = lab.docker(&["inspect", "-f", "{{.State.Pid}}", &container]);
        let pid = String::from_utf8_lossy(&pid_out.stdout).trim().to_string();
        let ns = ["nsenter", "-t", pid.as_str(), "-n"];
        let direct = throughput(&ns, &[], "http://127.0.0.1:9000/big");

        let local = common::dockerd::free_port();
        let mut tunnel = Command::new("sshpass")
            .args(["-p", PW, "ssh", "-p", &port.to_string()])
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
            ])
            .args([
                "-o",
                "LogLevel=ERROR",
                "-o",
                "PubkeyAuthentication=no",
                "-N",
                "-L",
            ])
            .arg(format!("{local}:localhost:9000"))
            .arg(format!("alice+{name}@127.0.0.1"))
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let via_ssh = loop {
            if std::net::TcpStream::connect(("127.0.0.1", local)).is_ok() {
                break format!("http://127.0.0.1:{local}/big");
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let ssh = throughput(&[], &[], &via_ssh);
        let _ = tunnel.kill();
        let _ = tunnel.wait();

        let (_, w) = post(
            &alice,
            &lab.srv.url(&format!("/api/v1/instances/{}/web", i["id"])),
            json!({"port": 9000}),
        )
        .await;
        let url = w["url"].as_str().unwrap().to_string();
        let cookie = proxy_cookie(&lab.srv, &alice, &i["id"], 9000).await;
        let args = [
            "--cacert",
            cert.as_str(),
            "-H",
            &format!("Cookie: {cookie}"),
        ];
        let args: Vec<&str> = args.iter().map(|s| &**s).collect();
        let proxy = throughput(&[], &args, &format!("{url}big"));
        let now = Duration::ZERO;
        let t_direct = ttfb(&ns, &[], "http://127.0.0.1:9000/small", now);
        let t_proxy = ttfb(&[], &args, &format!("{url}small"), now);
        // Requests 300 ms apart: what is kept ready ahead of need (warm
        // relays, spare sockets) is ready again for each.
        let apart = Duration::from_millis(300);
        let p_direct = ttfb(&ns, &[], "http://127.0.0.1:9000/small", apart);
        let p_proxy = ttfb(&[], &args, &format!("{url}small"), apart);
        println!("\n{name} node ({route}):");
        println!("  direct (in the container's namespace): {direct:8.0} MiB/s");
        println!(
            "  ssh -L through the jumpbox:            {ssh:8.0} MiB/s  ({:.2}x direct)",
            ssh / direct
        );
        println!(
            "  HTTPS proxy:                           {proxy:8.0} MiB/s  ({:.2}x direct)",
            proxy / direct
        );
        for (how, d, p) in [
            ("back to back", t_direct, t_proxy),
            ("300 ms apart", p_direct, p_proxy),
        ] {
            println!(
                "  time to first byte, small file, {how}: direct {d}, proxy {p} (+{:.2} ms)",
                p.median - d.median
            );
        }
        let hold: u64 = std::env::var("REACH_BENCH_HOLD_S")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if hold > 0 {
            println!(
                "  holding {hold} s: server data {}; curl --cacert {cert} -H 'Cookie: {cookie}' {url}small",
                lab.srv.data_dir().display()
            );
            tokio::time::sleep(Duration::from_secs(hold)).await;
        }
    }
}
