//! Metrics end to end against real parts: Debian's node_exporter as a
//! node's exporter, dcgm-exporter's format (tests/fixtures) from a local
//! server, exporters that hang, answer garbage or without end, `gpudock
//! agent` as a process (enrolment, tokens, a changed certificate), Docker
//! stats of real containers, scoping over the API, and Debian's prometheus
//! scraping the appliance's /metrics with a token.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::exporters::{
    self, Answer, Proc, fake_exporter, free_port, mails, smtp_sink, wait_port,
};
use common::lab::{Lab, small_spec};
use common::{Server, get, make_tenant, make_user, patch, post, send};
use reqwest::StatusCode;
use serde_json::{Value, json};

const FAST: &str = "[metrics]\ninterval_secs = 1\nflush_interval_secs = 1\nscrape_timeout_secs = 2\n\
                    scrape_max_bytes = 1048576\n[nodes]\nhealth_interval_secs = 1\n";
const DCGM: &str = include_str!("fixtures/dcgm-exporter-h100x8.prom");

async fn poll<T>(what: &str, secs: u64, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn node(srv: &Server, admin: &reqwest::Client, name: &str) -> i64 {
    node_at(srv, admin, name, "").await
}

async fn node_at(srv: &Server, admin: &reqwest::Client, name: &str, endpoint: &str) -> i64 {
    let (s, n) = post(
        admin,
        &srv.url("/api/v1/nodes"),
        json!({"name": name, "public_ip": "127.0.0.1", "private_ip": "127.0.0.1", "tls_enabled": false,
               "docker_endpoint": endpoint}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{n}");
    n["id"].as_i64().unwrap()
}

async fn sources(
    srv: &Server,
    admin: &reqwest::Client,
    id: i64,
    body: Value,
) -> (StatusCode, Value) {
    send(
        admin,
        "PUT",
        &srv.url(&format!("/api/v1/nodes/{id}/metrics/sources")),
        Some(body),
    )
    .await
}

fn series_url(target: &str, metric: &str, extra: &str) -> String {
    format!("/api/v1/metrics/series?target={target}&metric={metric}{extra}")
}

/// The non-null values of a series answer.
fn values(v: &Value) -> Vec<f64> {
    v["values"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_f64)
        .collect()
}

async fn wait_values(
    srv: &Server,
    c: &reqwest::Client,
    target: &str,
    metric: &str,
    n: usize,
) -> Value {
    poll(
        &format!("{n} values of {target} {metric}"),
        60,
        async || {
            let (s, b) = get(c, &srv.url(&series_url(target, metric, ""))).await;
            assert_eq!(s, StatusCode::OK, "{b}");
            (values(&b).len() >= n).then_some(b)
        },
    )
    .await
}

async fn source_error(srv: &Server, admin: &reqwest::Client, id: i64, source: &str) -> String {
    poll(
        &format!("an error of {source} on node {id}"),
        30,
        async || {
            let (_, b) = get(admin, &srv.url(&format!("/api/v1/nodes/{id}/metrics"))).await;
            b["sources"][source]["error"].as_str().map(str::to_string)
        },
    )
    .await
}

#[tokio::test]
async fn exporters_are_stored_and_a_bad_exporter_delays_no_other_node() {
    let ne = exporters::node_exporter();
    let dcgm = fake_exporter(Answer::Text(DCGM.to_string())).await;
    let hang = fake_exporter(Answer::Hang).await;
    let garbage = fake_exporter(Answer::Text(
        "<html><body>502 Bad Gateway</body></html>".into(),
    ))
    .await;
    let endless = fake_exporter(Answer::Endless).await;
    let srv = Server::start_with(FAST);
    let admin = srv.admin().await;
    let good = node_at(&srv, &admin, "gpu-a", &common::dockerd::shared().unix_url).await;
    let (s, b) = sources(
        &srv,
        &admin,
        good,
        json!({"node_exporter_url": ne.url(), "dcgm_url": format!("{dcgm}/metrics")}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    // Bad input names the field.
    for bad in ["ftp://x", "https://10.0.0.1:9400", "not a url"] {
        let (s, b) = sources(&srv, &admin, good, json!({"dcgm_url": bad})).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {b}");
        assert!(b["error"]["fields"]["dcgm_url"].is_string(), "{b}");
    }
    let (s, b) = sources(
        &srv,
        &admin,
        good,
        json!({"agent_url": "http://10.0.0.1:9401"}),
    )
    .await;
    assert!(b["error"]["fields"]["agent_url"].is_string(), "{s} {b}");
    let mut bad = Vec::new();
    for (name, url) in [
        ("hang", &hang),
        ("garbage", &garbage),
        ("endless", &endless),
    ] {
        let id = node(&srv, &admin, name).await;
        let (s, b) = sources(
            &srv,
            &admin,
            id,
            json!({"dcgm_url": url, "node_exporter_url": url}),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        bad.push(id);
    }

    // node_exporter's series are stored: memory at once, CPU from the second scrape.
    let t = format!("node:{good}");
    let mem = wait_values(&srv, &admin, &t, "mem_used_bytes", 1).await;
    assert!(values(&mem)[0] > 1e6, "{mem}");
    assert_eq!(mem["tier"], "raw");
    let cpu = wait_values(&srv, &admin, &t, "cpu_pct", 1).await;
    assert!(
        values(&cpu).iter().all(|v| (0.0..=100.0).contains(v)),
        "{cpu}"
    );
    wait_values(&srv, &admin, &t, "disk_docker_total_bytes", 1).await;
    // dcgm-exporter's format: 8 GPUs by index, values as exported.
    let util = wait_values(&srv, &admin, &format!("gpu:{good}:0"), "util_pct", 1).await;
    assert_eq!(values(&util)[0], 97.0);
    let power = wait_values(&srv, &admin, &format!("gpu:{good}:3"), "power_w", 1).await;
    assert_eq!(values(&power)[0], 688.015);
    let mem = wait_values(&srv, &admin, &format!("gpu:{good}:0"), "mem_used_bytes", 1).await;
    assert_eq!(values(&mem)[0], 71_236.0 * 1_048_576.0);

    // Each bad exporter shows its own error, with its age.
    assert!(
        source_error(&srv, &admin, bad[0], "dcgm")
            .await
            .contains("no answer within 2 s")
    );
    assert!(
        source_error(&srv, &admin, bad[1], "dcgm")
            .await
            .contains("not Prometheus text format")
    );
    assert!(
        source_error(&srv, &admin, bad[2], "dcgm")
            .await
            .contains("larger than 1048576 bytes")
    );
    let (_, b) = get(
        &admin,
        &srv.url(&format!("/api/v1/nodes/{}/metrics", bad[0])),
    )
    .await;
    assert!(b["sources"]["dcgm"]["error_at"].is_i64(), "{b}");
    // ... while the good node keeps its one-second cadence. The hanging and
    // endless exporters cost 2 s each per round, so a good node that waited
    // for them would never fill 5 of 8 seconds. A loaded machine may stall
    // any node for a moment, so some window within 30 s must show it.
    let cadence = poll("5 samples of the good node within 8 s", 30, async || {
        let now = now();
        let (_, b) = get(
            &admin,
            &srv.url(&series_url(
                &t,
                "mem_used_bytes",
                &format!("&since={}&until={now}&step=1", now - 8),
            )),
        )
        .await;
        (values(&b).len() >= 5).then_some(b)
    })
    .await;
    assert_eq!(cadence["tier"], "raw", "{cadence}");
    let now = now();

    // Gaps are null, never zero; CSV export.
    let (_, b) = get(
        &admin,
        &srv.url(&series_url(
            &t,
            "mem_used_bytes",
            &format!("&since={}&until={now}", now - 3600),
        )),
    )
    .await;
    let vals = b["values"].as_array().unwrap();
    assert!(
        vals.iter().any(Value::is_null) && vals.iter().any(Value::is_number),
        "{b}"
    );
    let r = admin
        .get(srv.url(&series_url(&t, "mem_used_bytes", "&format=csv")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "text/csv; charset=utf-8");
    let csv = r.text().await.unwrap();
    assert!(csv.starts_with("timestamp,value,min,max\n"), "{csv}");
    // Bad queries name the field.
    for (q, field) in [
        ("target=vm:1&metric=cpu_pct", "target"),
        (&*format!("target=node:{good}&metric=util_pct"), "metric"),
        (
            &*format!("target=node:{good}&metric=cpu_pct&since=10&until=5"),
            "since",
        ),
    ] {
        let (s, b) = get(&admin, &srv.url(&format!("/api/v1/metrics/series?{q}"))).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{q}: {b}");
        assert!(b["error"]["fields"][field].is_string(), "{q}: {b}");
    }

    // Sync hardware fills the GPU model, count and UUIDs from dcgm-exporter.
    let (s, b) = post(
        &admin,
        &srv.url(&format!("/api/v1/nodes/{good}/sync")),
        json!({}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        (&b["gpu_name"], &b["gpu_count"]),
        (&json!("NVIDIA H100 80GB HBM3"), &json!(8)),
        "{b}"
    );
    let (_, a) = get(&admin, &srv.url("/api/v1/audit?action=node.sync")).await;
    assert_eq!(
        a[0]["detail"]["gpu_uuids"].as_array().unwrap().len(),
        8,
        "{a}"
    );
    let (_, m) = get(&admin, &srv.url(&format!("/api/v1/nodes/{good}/metrics"))).await;
    let rows = m["gpu_rows"].as_array().unwrap();
    assert_eq!(rows.len(), 8, "{m}");
    assert!(
        rows.iter()
            .all(|r| r["uuid"].as_str().unwrap().starts_with("GPU-")),
        "{m}"
    );
    assert_eq!(rows[0]["name"], "NVIDIA H100 80GB HBM3");

    // The overview counts the GPUs; the node page shows them and the errors.
    let (_, o) = get(&admin, &srv.url("/api/v1/metrics/overview")).await;
    assert!(o["gpus_total"].as_u64().unwrap() >= 8, "{o}");
    let page = admin
        .get(srv.url(&format!("/nodes/{}/metrics", bad[1])))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("not Prometheus text format"), "{page}");
    let page = admin
        .get(srv.url(&format!("/nodes/{good}/metrics")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("NVIDIA H100 80GB HBM3") && page.contains("id=\"chart-gpu-util\""),
        "{page}"
    );
    drop(ne);
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn agent_client() -> reqwest::Client {
    reqwest::Client::builder()
        .use_rustls_tls()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap()
}

fn agent_cmd(args: &[&str]) -> std::process::Output {
    Command::new(common::bin())
        .arg("agent")
        .args(args)
        .env_remove("JOURNAL_STREAM")
        .output()
        .unwrap()
}

fn start_agent(dir: &std::path::Path, port: u16) -> Proc {
    let mut child = Command::new(common::bin())
        .args([
            "agent",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(dir)
        .env_remove("JOURNAL_STREAM")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_port(port, "gpudock agent", &mut child);
    Proc { child, port }
}

async fn enrol(srv: &Server, admin: &reqwest::Client, id: i64, port: u16) -> String {
    let (s, e) = post(
        admin,
        &srv.url(&format!("/api/v1/nodes/{id}/metrics/enroll")),
        json!({"agent_url": format!("https://127.0.0.1:{port}")}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{e}");
    let token = e["token"].as_str().unwrap().to_string();
    assert!(
        e["command"]
            .as_str()
            .unwrap()
            .contains(&format!("gpudock agent enroll --token {token}")),
        "{e}"
    );
    token
}

#[tokio::test]
async fn the_agent_is_enrolled_by_token_and_its_certificate_is_pinned() {
    let srv = Server::start_with(FAST);
    let admin = srv.admin().await;
    let id = node(&srv, &admin, "remote-gpu").await;
    let port = free_port();
    let token = enrol(&srv, &admin, id, port).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("agent");
    // Not enrolled: it refuses to start, saying what to do.
    let out = agent_cmd(&["--listen", "127.0.0.1:0", "--data-dir", d.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not enrolled"),
        "{out:?}"
    );
    let out = agent_cmd(&[
        "enroll",
        "--token",
        &token,
        "--data-dir",
        d.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    let printed = String::from_utf8_lossy(&out.stdout).to_string();
    let fp = printed
        .split("certificate SHA-256: ")
        .nth(1)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .trim()
        .to_string();
    let agent = start_agent(&d, port);

    // Scrapes without the token, or with another, are refused.
    let c = agent_client();
    let url = format!("https://127.0.0.1:{port}/metrics");
    assert_eq!(
        c.get(&url).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let r = c
        .get(&url)
        .bearer_auth("gda_wrong-token-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = c.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let text = r.text().await.unwrap();
    assert!(text.contains("node_cpu_seconds_total{cpu=\"0\""), "{text}");
    assert!(text.contains("node_memory_MemTotal_bytes"), "{text}");
    // No NVIDIA driver here: the GPU part says why, the host part works.
    let no_gpu = text.contains("gpudock_agent_gpu_up 0");
    if no_gpu {
        assert!(text.contains("gpudock_agent_gpu_info{reason=\""), "{text}");
    }

    // The appliance enrols it (pinning the certificate it printed) and stores its series.
    let node_url = srv.url(&format!("/api/v1/nodes/{id}/metrics"));
    let deadline = Instant::now() + Duration::from_secs(30);
    let pinned = loop {
        let (_, b) = get(&admin, &node_url).await;
        if let Some(f) = b["config"]["agent_fingerprint"]
            .as_str()
            .filter(|f| !f.is_empty())
        {
            break f.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "not enrolled: {b}\n{}",
            srv.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(pinned, fp);
    wait_values(&srv, &admin, &format!("node:{id}"), "cpu_pct", 1).await;
    if no_gpu {
        let (_, b) = get(&admin, &srv.url(&format!("/api/v1/nodes/{id}/metrics"))).await;
        assert!(b["gpu_absent"].as_str().unwrap().contains("NVIDIA"), "{b}");
    }
    let (_, a) = get(&admin, &srv.url("/api/v1/audit?action=node.agent_enrolled")).await;
    assert_eq!(a.as_array().unwrap().len(), 1, "{a}");
    assert_eq!(a[0]["detail"]["certificate_sha256"], fp.as_str());

    // A different certificate (another machine, or a relay) is refused.
    drop(agent);
    std::fs::remove_dir_all(d.join("tls")).unwrap();
    let out = agent_cmd(&[
        "enroll",
        "--token",
        &token,
        "--data-dir",
        d.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    let _agent = start_agent(&d, port);
    let e = source_error(&srv, &admin, id, "agent").await;
    let e = if e.contains("certificate changed") {
        e
    } else {
        poll("the certificate error", 20, async || {
            let e = source_error(&srv, &admin, id, "agent").await;
            e.contains("certificate changed").then_some(e)
        })
        .await
    };
    assert!(e.contains(&fp), "{e}");
    let (_, b) = get(&admin, &srv.url(&format!("/api/v1/nodes/{id}/metrics"))).await;
    assert_eq!(
        b["config"]["agent_fingerprint"],
        fp.as_str(),
        "the pin stays"
    );

    // An agent holding another token is never enrolled.
    let id2 = node(&srv, &admin, "impostor").await;
    let port2 = free_port();
    enrol(&srv, &admin, id2, port2).await;
    let d2 = dir.path().join("agent2");
    let out = agent_cmd(&[
        "enroll",
        "--token",
        "gda_some-other-token-000000",
        "--data-dir",
        d2.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    let _impostor = start_agent(&d2, port2);
    let e = source_error(&srv, &admin, id2, "agent").await;
    assert!(e.contains("did not prove"), "{e}");
    let (_, b) = get(&admin, &srv.url(&format!("/api/v1/nodes/{id2}/metrics"))).await;
    assert_eq!(b["config"]["agent_fingerprint"], "", "{b}");
}

#[tokio::test]
async fn docker_stats_of_a_half_cpu_container_and_scoped_instance_series() {
    let lab = Lab::new(FAST, 8).await;
    // A container running `yes` with a 0.5-CPU limit, read through the collector.
    let out = lab.docker(&[
        "run",
        "-d",
        "--cpus",
        "0.5",
        common::dockerd::TEST_IMAGE,
        "sh",
        "-c",
        "yes > /dev/null",
    ]);
    assert!(out.status.success(), "{out:?}");
    let cid = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let ep = gpudock::docker::Endpoint {
        url: lab.d.unix_url.clone(),
        tls: None,
    };
    let d = gpudock::docker::connect(&ep, 10).unwrap();
    gpudock::docker::negotiate(&d, 10).await.unwrap();
    use gpudock::metrics::docker_stats;
    // The kernel's own count of the container's CPU time (cgroup v1 or v2),
    // read beside the collector: on a loaded machine `yes` gets less than its
    // limit, and the reading must still say what the container really got.
    let cpu_ns = || {
        let out = lab.docker(&[
            "exec",
            &cid,
            "sh",
            "-c",
            "cat /sys/fs/cgroup/cpuacct/cpuacct.usage 2>/dev/null \
             || awk '/^usage_usec/ {printf \"%d000\\n\", $2}' /sys/fs/cgroup/cpu.stat",
        ]);
        let t = std::time::Instant::now();
        let ns: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        (ns, t)
    };
    let (k0, t0) = cpu_ns();
    let (a, _) = docker_stats::read(&d, &cid, Duration::from_secs(10))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (b, facts) = docker_stats::read(&d, &cid, Duration::from_secs(10))
        .await
        .unwrap();
    let (k1, t1) = cpu_ns();
    let kernel_pct = (k1 - k0) / t1.duration_since(t0).as_nanos() as f64 * 100.0;
    assert_eq!(facts.cpu_limit, Some(0.5));
    let t = gpudock::metrics::model::Target::Instance {
        node: gpudock::ids::NodeId(1),
        instance: gpudock::ids::InstanceId(1),
    };
    let s = docker_stats::samples(Some(&a), &b, &facts, t, 0);
    let v = |m: &str| s.iter().find(|x| x.metric == m).map(|x| x.value).unwrap();
    // About 50 % of a core on an idle machine (the limit holds it there);
    // under load, what the kernel counted, never above the limit.
    assert!(
        (kernel_pct - v("cpu_pct")).abs() <= 10.0 && v("cpu_pct") <= 60.0,
        "the kernel counted {kernel_pct:.1} % of a core: {s:?}"
    );
    assert!(
        (v("cpu_limit_pct") - 2.0 * v("cpu_pct")).abs() <= 1.0,
        "the share of a 0.5-CPU limit is twice the share of a core: {s:?}"
    );
    lab.docker(&["rm", "-f", &cid]);

    // A member's instance: its series are collected, and scoped.
    let srv = &lab.srv;
    let ta = make_tenant(srv, &lab.admin, "MT-A").await;
    let tb = make_tenant(srv, &lab.admin, "MT-B").await;
    let (ma_id, ma) = make_user(
        srv,
        &lab.admin,
        "ma",
        "customer_member",
        Some(ta),
        "Velvet-Canyon-Harbor-58!",
    )
    .await;
    let (_, mb) = make_user(
        srv,
        &lab.admin,
        "mb",
        "customer_member",
        Some(tb),
        "Saffron-Glacier-Pilot-36!",
    )
    .await;
    let spec = lab.spec(small_spec("s1")).await;
    let (s, i) = post(
        &ma,
        &srv.url("/api/v1/instances"),
        lab.create_body(spec, "mine"),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{i}");
    let iid = i["id"].as_i64().unwrap();
    let target = format!("instance:{iid}");
    let mem = wait_values(srv, &ma, &target, "mem_used_bytes", 1).await;
    assert!(values(&mem)[0] > 0.0, "{mem}");
    wait_values(srv, &ma, &target, "cpu_pct", 1).await;
    let lim = wait_values(srv, &ma, &target, "mem_limit_bytes", 1).await;
    assert_eq!(values(&lim)[0], 1_073_741_824.0, "the spec's 1 GB");
    // Another tenant, the node's totals and an unassigned GPU: 404.
    let node = lab.node;
    for (c, t, m) in [
        (&mb, target.as_str(), "cpu_pct"),
        (&ma, &*format!("node:{node}"), "cpu_pct"),
        (&ma, &*format!("gpu:{node}:0"), "util_pct"),
    ] {
        let (s, b) = get(c, &srv.url(&series_url(t, m, ""))).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{t}: {b}");
    }
    let (s, _) = get(
        &mb,
        &srv.url(&format!("/api/v1/metrics/live?target={target}")),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // The owner's overview holds no node totals; admin's does.
    let (_, o) = get(&ma, &srv.url("/api/v1/metrics/overview")).await;
    assert!(o["nodes_online"].is_null(), "{o}");
    let (_, o) = get(&lab.admin, &srv.url("/api/v1/metrics/overview")).await;
    assert_eq!(o["nodes_online"], 1, "{o}");
    // Live updates arrive as server-sent events.
    let r = ma
        .get(srv.url(&format!("/api/v1/metrics/live?target={target}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let mut r = r;
    let got = tokio::time::timeout(Duration::from_secs(20), async {
        let mut buf = String::new();
        while let Some(chunk) = r.chunk().await.unwrap() {
            buf.push_str(&String::from_utf8_lossy(&chunk));
            if buf.contains("event: samples") && buf.contains("\"metric\":\"mem_used_bytes\"") {
                return buf;
            }
        }
        buf
    })
    .await
    .unwrap();
    assert!(got.contains(&format!("\"target\":\"{target}\"")), "{got}");
    // Taking the member's access away (an admin disables them) ends the
    // open stream at once, with a last event saying why.
    let asked = Instant::now();
    let (s, b) = patch(
        &lab.admin,
        &srv.url(&format!("/api/v1/users/{ma_id}")),
        json!({"enabled": false}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let rest = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = String::new();
        while let Ok(Some(chunk)) = r.chunk().await {
            buf.push_str(&String::from_utf8_lossy(&chunk));
        }
        buf
    })
    .await
    .expect("the live stream goes on after the revocation");
    let took = asked.elapsed();
    assert!(
        rest.contains("event: end") && rest.contains("\"reason\":\"access_revoked\""),
        "{rest}"
    );
    assert!(took < Duration::from_secs(5), "ended after {took:?}");
    let (s, _) = get(
        &ma,
        &srv.url(&format!("/api/v1/metrics/live?target={target}")),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "and cannot open another");
    assert_eq!(lab.delete(&json!(iid)).await, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn prometheus_scrapes_metrics_with_a_metrics_token() {
    let srv = Server::start_with(FAST);
    let admin = srv.admin().await;
    node(&srv, &admin, "n1").await;
    let (s, t) = post(
        &admin,
        &srv.url("/api/v1/tokens"),
        json!({"name": "prom", "scope": "metrics"}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    let metrics_token = t["token"].as_str().unwrap().to_string();
    assert_eq!(t["api_token"]["scope"], "metrics");
    let (_, t) = post(&admin, &srv.url("/api/v1/tokens"), json!({"name": "api"})).await;
    let api_token = t["token"].as_str().unwrap().to_string();
    let (s, b) = post(
        &admin,
        &srv.url("/api/v1/tokens"),
        json!({"name": "x", "scope": "root"}),
    )
    .await;
    assert!(b["error"]["fields"]["scope"].is_string(), "{s} {b}");
    let (s, b) = post(
        &admin,
        &srv.url("/api/v1/tokens"),
        json!({"name": "x", "scope": "metrics", "admin": true}),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "unknown fields: {b}");
    // A metrics token is for who may read /metrics: not a tenant's owner.
    let tenant = make_tenant(&srv, &admin, "PROM-T").await;
    let (_, owner) = make_user(
        &srv,
        &admin,
        "promowner",
        "customer_owner",
        Some(tenant),
        "Amber-Lantern-Quarry-71!",
    )
    .await;
    let (s, b) = post(
        &owner,
        &srv.url("/api/v1/tokens"),
        json!({"name": "x", "scope": "metrics"}),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert!(b["error"]["fields"]["scope"].is_string(), "{b}");

    let anon = srv.client();
    let url = srv.url("/metrics");
    assert_eq!(
        anon.get(&url).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        anon.get(&url)
            .bearer_auth(&api_token)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        admin.get(&url).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED,
        "a session is not enough"
    );
    // A metrics token opens nothing else.
    let r = anon
        .get(srv.url("/api/v1/me"))
        .bearer_auth(&metrics_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = anon
        .get(&url)
        .bearer_auth(&metrics_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("gpudock_nodes{status=\"unknown\"}")
            || text.contains("gpudock_nodes{status=\"unreachable\"}"),
        "{text}"
    );
    assert!(text.contains("gpudock_database_size_bytes"), "{text}");

    // Debian's prometheus scrapes it with the token and reports the target up.
    assert!(
        std::path::Path::new(exporters::PROMETHEUS).exists(),
        "install prometheus (see .ci/run)"
    );
    let dir = tempfile::tempdir().unwrap();
    let addr = srv.base.trim_start_matches("https://").to_string();
    let cfg = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: gpudock\n    scheme: https\n    \
         authorization:\n      credentials: {metrics_token}\n    tls_config:\n      insecure_skip_verify: true\n    \
         static_configs:\n      - targets: ['{addr}']\n"
    );
    std::fs::write(dir.path().join("prometheus.yml"), cfg).unwrap();
    let port = free_port();
    let mut child = Command::new(exporters::PROMETHEUS)
        .arg(format!(
            "--config.file={}",
            dir.path().join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_port(port, "prometheus", &mut child);
    let _prom = Proc { child, port };
    let plain = reqwest::Client::new();
    let target = poll("prometheus to report the target up", 60, async || {
        let v: Value = plain
            .get(format!("http://127.0.0.1:{port}/api/v1/targets"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let t = v["data"]["activeTargets"][0].clone();
        (t["health"] == "up").then_some(t)
    })
    .await;
    assert_eq!(target["labels"]["job"], "gpudock", "{target}");
    let q: Value = plain
        .get(format!(
            "http://127.0.0.1:{port}/api/v1/query?query=gpudock_nodes"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(!q["data"]["result"].as_array().unwrap().is_empty(), "{q}");
}

/// What the test's webhook receiver saw: timestamp, signature, body.
type Seen = std::sync::Arc<std::sync::Mutex<Vec<(String, String, Value)>>>;

/// A local webhook receiver answering 200; returns its URL.
async fn webhook_receiver(seen: Seen) -> String {
    use axum::http::HeaderMap;
    let app = axum::Router::new().fallback(axum::routing::post(
        move |h: HeaderMap, body: bytes::Bytes| async move {
            let get = |k: &str| h.get(k).unwrap().to_str().unwrap().to_string();
            let json: Value = serde_json::from_slice(&body).unwrap();
            // The signature is recomputed here, independently of gpudock.
            use hmac::Mac;
            let ts = get("x-gpudock-timestamp");
            let mut mac =
                hmac::Hmac::<sha2::Sha256>::new_from_slice(HOOK_SECRET.as_bytes()).unwrap();
            mac.update(ts.as_bytes());
            mac.update(&body);
            let good = hex::encode(mac.finalize().into_bytes()) == get("x-gpudock-signature");
            seen.lock().unwrap().push((ts, good.to_string(), json));
            StatusCode::OK
        },
    ));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    format!("http://{addr}/hook")
}

const HOOK_SECRET: &str = "a-webhook-secret-of-some-length";

async fn alerts_of(srv: &Server, c: &reqwest::Client, query: &str) -> Vec<Value> {
    let (s, b) = get(c, &srv.url(&format!("/api/v1/alerts?{query}"))).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b.as_array().unwrap().clone()
}

async fn audit_count(srv: &Server, admin: &reqwest::Client, action: &str) -> usize {
    let (_, a) = get(admin, &srv.url(&format!("/api/v1/audit?action={action}"))).await;
    a.as_array().unwrap().len()
}

/// The alerts API end to end: bad input names the field; a webhook channel
/// (secret never shown) gets a signed test message; a metric rule on the
/// GPUs of a node (dcgm-exporter's format) fires one alert per GPU that
/// names the node, delivered signed and logged; an admin acknowledges and
/// closes with a note (audited), a customer sees none of the node's alerts
/// and may not act on them; a maintenance window silences its node while
/// another node's alerts fire, and alerts return when it is removed.
#[tokio::test]
async fn alert_rules_fire_to_a_signed_webhook_and_windows_silence_a_node() {
    let dcgm = fake_exporter(Answer::Text(DCGM.to_string())).await;
    let seen = Seen::default();
    let hook = webhook_receiver(seen.clone()).await;
    let srv = Server::start_with(FAST);
    let admin = srv.admin().await;
    let a = node(&srv, &admin, "gpu-a").await;
    let b = node(&srv, &admin, "gpu-b").await;
    for id in [a, b] {
        let (s, v) = sources(
            &srv,
            &admin,
            id,
            json!({"dcgm_url": format!("{dcgm}/metrics")}),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    let api = |p: &str| srv.url(&format!("/api/v1/{p}"));

    // Bad channels and rules name the field.
    for (body, field) in [
        (
            json!({"name": "x", "kind": "fax", "url": hook, "secret": HOOK_SECRET}),
            "kind",
        ),
        (
            json!({"name": "x", "kind": "webhook", "url": "ftp://h/", "secret": HOOK_SECRET}),
            "url",
        ),
        (
            json!({"name": "x", "kind": "webhook", "url": hook, "secret": "short"}),
            "secret",
        ),
    ] {
        let (s, v) = post(&admin, &api("notification-channels"), body).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        assert!(v["error"]["fields"][field].is_string(), "{field}: {v}");
    }
    let (s, ch) = post(
        &admin,
        &api("notification-channels"),
        json!({"name": "ops", "kind": "webhook", "url": hook, "secret": HOOK_SECRET}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{ch}");
    assert!(!ch.to_string().contains(HOOK_SECRET), "{ch}");
    let ch = ch["id"].as_i64().unwrap();
    let (s, t) = post(
        &admin,
        &api(&format!("notification-channels/{ch}/test")),
        json!({}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{t}");
    assert_eq!(t["sent"], true, "{t}");
    {
        let got = seen.lock().unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1, "true", "signature of the test message");
        assert_eq!(got[0].2["event"], "test");
    }
    let rule = |scope: Vec<i64>| {
        json!({"name": "hot GPU", "metric": "temp_c", "condition": ">", "threshold": 0,
               "duration": 0, "level": "P0", "channels": [ch], "enabled": true,
               "scope": "nodes", "scope_ids": scope, "silence": 3600, "tags": ["test"]})
    };
    let mut bad = rule(vec![a]);
    for (k, v, field) in [
        ("metric", json!("warp_speed"), "metric"),
        ("threshold", json!("hot"), "threshold"),
        ("condition", json!("=>"), "condition"),
        ("scope_ids", json!([]), "scope"),
        ("level", json!("P9"), "level"),
        ("channels", json!([9999]), "channels"),
    ] {
        let keep = bad[k].clone();
        bad[k] = v;
        let (s, e) = post(&admin, &api("alert-rules"), bad.clone()).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{k}: {e}");
        assert!(e["error"]["fields"][field].is_string(), "{k}: {e}");
        bad[k] = keep;
    }
    // Event rules: an event instead of a metric, its threshold where the
    // event has one.
    let mut with_event = rule(vec![a]);
    with_event["event"] = json!("node_unreachable");
    for (body, field) in [
        (with_event, "metric"),
        (
            json!({"name": "x", "event": "teleported", "level": "P2"}),
            "event",
        ),
        (
            json!({"name": "x", "event": "instance_oom", "threshold": 3, "level": "P2"}),
            "threshold",
        ),
        (
            json!({"name": "x", "event": "node_unreachable", "threshold": -1, "level": "P2"}),
            "threshold",
        ),
    ] {
        let (s, e) = post(&admin, &api("alert-rules"), body).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
        assert!(e["error"]["fields"][field].is_string(), "{field}: {e}");
    }
    // The form says what is wrong in the reader's language, the value as
    // given (the API's JSON stays English).
    let (_, me) = get(&admin, &srv.url("/api/v1/me")).await;
    let token = me["csrf_token"].as_str().unwrap().to_string();
    for (lang, want) in [
        ("en", "unknown metric: warp_factor"),
        ("zh-CN", "未知的指标: warp_factor"),
    ] {
        let r = admin
            .post(srv.url("/alert-rules"))
            .header("accept-language", lang)
            .form(&[
                ("csrf_token", token.as_str()),
                ("name", "x"),
                ("metric", "warp_factor"),
                ("condition", ">"),
                ("threshold", "1"),
                ("level", "P2"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let html = r.text().await.unwrap();
        assert!(html.contains(want), "{lang}: {html}");
    }
    let (s, ev) = post(
        &admin,
        &api("alert-rules"),
        json!({"name": "node gone", "event": "node_unreachable", "level": "P0",
               "channels": [ch], "enabled": false}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{ev}");
    assert_eq!(
        (
            ev["event"].as_str(),
            ev["target"].as_str(),
            ev["threshold"].as_f64()
        ),
        (Some("node_unreachable"), Some("node"), Some(60.0)),
        "the event's default N: {ev}"
    );
    let (s, r) = post(&admin, &api("alert-rules"), rule(vec![a])).await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    assert_eq!(
        (r["target"].as_str(), r["channels"].clone()),
        (Some("gpu"), json!([ch]))
    );
    let rid = r["id"].as_i64().unwrap();

    // One alert per GPU of node a, naming it, delivered signed.
    let fired = poll("8 alerts on gpu-a", 60, async || {
        let v = alerts_of(&srv, &admin, &format!("level=P0&status=firing&node={a}")).await;
        (v.len() == 8).then_some(v)
    })
    .await;
    assert!(
        fired
            .iter()
            .all(|x| x["message"].as_str().unwrap().contains("node gpu-a")),
        "{fired:?}"
    );
    assert_eq!(fired[0]["rule_id"], rid);
    // A storm: eight alerts of one rule within a minute are one message
    // listing them (a cycle that splits them sends the rest a minute on).
    let fired_msgs = poll("8 alerts announced", 150, async || {
        let got = seen.lock().unwrap();
        let msgs: Vec<Value> = got
            .iter()
            .filter(|x| x.2["event"] == "fired")
            .map(|x| x.2.clone())
            .collect();
        let n: u64 = msgs
            .iter()
            .map(|m| m["group"]["count"].as_u64().unwrap_or(1))
            .sum();
        (n == 8).then_some(msgs)
    })
    .await;
    assert!(fired_msgs.len() < 8, "{fired_msgs:?}");
    let group = fired_msgs.iter().find(|m| m["group"].is_object()).unwrap();
    assert!(
        group["message"]
            .as_str()
            .unwrap()
            .contains("alerts of hot GPU"),
        "{group}"
    );
    assert!(seen.lock().unwrap().iter().all(|x| x.1 == "true"));
    let (s, log) = get(
        &admin,
        &api(&format!("notification-channels/{ch}/deliveries")),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{log}");
    assert_eq!(
        log.as_array().unwrap().len(),
        1 + fired_msgs.len(),
        "the test and the storm's messages: {log}"
    );

    // The pages in both languages: the list names the node, the rule and
    // channel pages show them, the dashboard counts firing alerts by level.
    let page = |path: &str, lang: &str| {
        admin
            .get(srv.url(path))
            .header("accept-language", lang)
            .send()
    };
    for (lang, title, level) in [("en", "Alerts", "Emergency"), ("zh-CN", "告警列表", "紧急")]
    {
        let html = page("/alerts?level=P0&status=firing", lang)
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            html.contains(title)
                && html.contains("node gpu-a")
                && html.contains(&format!("id=\"ack-{}\"", fired[0]["id"])),
            "{lang}: {html}"
        );
        let html = page("/alerts/summary", lang)
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            html.contains(&format!("P0 {level}: <strong>8</strong>")),
            "{lang}: {html}"
        );
        for (path, want) in [
            ("/alert-rules", "hot GPU"),
            ("/notification-channels", "ops"),
            (&format!("/notification-channels/{ch}"), "id=\"deliveries\""),
            ("/maintenance-windows", "window-form"),
        ] {
            let r = page(path, lang).await.unwrap();
            assert_eq!(r.status(), StatusCode::OK, "{path}");
            let html = r.text().await.unwrap();
            assert!(
                html.contains(want) && !html.contains(HOOK_SECRET),
                "{lang} {path}: {html}"
            );
        }
    }

    // A customer sees none of a node's alerts and may not handle them.
    let t = make_tenant(&srv, &admin, "ALERT-T").await;
    let (_, owner) = make_user(
        &srv,
        &admin,
        "alert-owner",
        "customer_owner",
        Some(t),
        "Quartz-Lantern-Orbit-83!",
    )
    .await;
    assert!(alerts_of(&srv, &owner, "").await.is_empty());
    let first = fired[0]["id"].as_i64().unwrap();
    let (s, _) = get(&owner, &api(&format!("alerts/{first}"))).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = post(
        &owner,
        &api(&format!("alerts/{first}/ack")),
        json!({"note": "mine"}),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = get(&owner, &api("alert-rules")).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let r = owner.get(srv.url("/alerts")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(!r.text().await.unwrap().contains("gpu-a"));

    // Acknowledge and close with a note, audited.
    let (s, v) = post(
        &admin,
        &api(&format!("alerts/{first}/ack")),
        json!({"note": "looking"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (v["status"].as_str(), v["note"].as_str()),
        (Some("acknowledged"), Some("looking"))
    );
    assert_eq!(v["acknowledged_by"], "admin");
    let (s, _) = post(
        &admin,
        &api(&format!("alerts/{first}/ack")),
        json!({"note": "again"}),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let second = fired[1]["id"].as_i64().unwrap();
    let (s, v) = post(
        &admin,
        &api(&format!("alerts/{second}/close")),
        json!({"note": "fan fixed"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (v["status"].as_str(), v["resolved_reason"].as_str()),
        (Some("resolved"), Some("closed"))
    );
    assert_eq!(audit_count(&srv, &admin, "alert_rule.create").await, 2);
    for action in [
        "alert.ack",
        "alert.close",
        "notification_channel.create",
        "notification_channel.test",
    ] {
        assert_eq!(audit_count(&srv, &admin, action).await, 1, "{action}");
    }

    // A window on node a; the rule now covers a and b: b fires, a stays quiet.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let (s, e) = post(
        &admin,
        &api("maintenance-windows"),
        json!({"node_id": a, "starts_at": now, "ends_at": now - 5}),
    )
    .await;
    assert!(e["error"]["fields"]["ends_at"].is_string(), "{s} {e}");
    let (s, w) = post(
        &admin,
        &api("maintenance-windows"),
        json!({"node_id": a, "starts_at": now - 5, "ends_at": now + 3600, "reason": "fans"}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{w}");
    assert_eq!(
        (w["active"].as_bool(), w["node"].as_str()),
        (Some(true), Some("gpu-a"))
    );
    // The node's page lists its windows.
    let node_page = admin
        .get(srv.url(&format!("/nodes/{a}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        node_page.contains(&format!("hx-get=\"/nodes/{a}/maintenance-windows\"")),
        "{node_page}"
    );
    let listed = admin
        .get(srv.url(&format!("/nodes/{a}/maintenance-windows")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        listed.contains("fans") && listed.contains(&format!("node-window-{}", w["id"])),
        "{listed}"
    );
    let listed_b = admin
        .get(srv.url(&format!("/nodes/{b}/maintenance-windows")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!listed_b.contains("fans"), "{listed_b}");
    let (s, v) = send(
        &admin,
        "PUT",
        &api(&format!("alert-rules/{rid}")),
        Some(rule(vec![a, b])),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(
        alerts_of(&srv, &admin, &format!("level=P0&status=open&node={a}"))
            .await
            .is_empty(),
        "a changed rule resolves its alerts"
    );
    let closed = alerts_of(&srv, &admin, &format!("level=P0&status=resolved&node={a}")).await;
    assert!(
        closed
            .iter()
            .filter(|x| x["id"] != second)
            .all(|x| x["resolved_reason"] == "rule_off"),
        "{closed:?}"
    );
    poll("8 alerts on gpu-b", 60, async || {
        (alerts_of(&srv, &admin, &format!("level=P0&status=firing&node={b}"))
            .await
            .len()
            == 8)
            .then_some(())
    })
    .await;
    assert!(
        alerts_of(&srv, &admin, &format!("level=P0&status=open&node={a}"))
            .await
            .is_empty(),
        "maintenance"
    );
    let (s, _) = send(
        &admin,
        "DELETE",
        &api(&format!("maintenance-windows/{}", w["id"])),
        Some(json!({})),
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    poll("gpu-a's alerts back", 60, async || {
        (alerts_of(&srv, &admin, &format!("level=P0&status=firing&node={a}"))
            .await
            .len()
            == 8)
            .then_some(())
    })
    .await;
    assert_eq!(audit_count(&srv, &admin, "maintenance_window.").await, 2);
}

/// The fixture with an XID error on every GPU.
fn dcgm_with_xid(xid: u32) -> String {
    DCGM.lines()
        .map(|l| match l.strip_prefix("DCGM_FI_DEV_XID_ERRORS{") {
            Some(rest) if !l.starts_with('#') => {
                let labels = rest.rsplit_once(' ').unwrap().0;
                format!("DCGM_FI_DEV_XID_ERRORS{{{labels} {xid}")
            }
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Event rules end to end from where each event happens: a container
/// killed behind gpudock's back (`docker kill`) raises "instance exited"
/// naming the instance (gpudock's own stop does not); five failed sign-ins
/// raise "account locked"; a failed `gpudock backup` raises "backup failed";
/// a web terminal session over N bytes raises "session over N bytes"; the
/// data directory's disk over N % raises "disk full";
/// eight GPUs reporting an XID (dcgm-exporter's
/// format) are one storm message; a node whose dockerd stops raises "node
/// unreachable", its GPUs' alerts meanwhile are recorded as suppressed and
/// never sent, and the node's alert resolves when the daemon returns. Every
/// message reaches the local webhook signed.
#[tokio::test]
async fn event_rules_alert_from_real_parts_and_converge() {
    let d = common::dockerd::start_restartable();
    let lab = Lab::on(d, FAST, 64).await;
    let (srv, admin, a) = (&lab.srv, &lab.admin, lab.node);
    let api = |p: &str| srv.url(&format!("/api/v1/{p}"));
    let seen = Seen::default();
    let hook = webhook_receiver(seen.clone()).await;
    let (s, ch) = post(
        admin,
        &api("notification-channels"),
        json!({"name": "ops", "kind": "webhook", "url": hook, "secret": HOOK_SECRET}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{ch}");
    let ch = ch["id"].as_i64().unwrap();
    // "instance exited" also goes by e-mail, to a real SMTP server.
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("mail.jsonl");
    let sink = smtp_sink(free_port(), &inbox);
    let (s, mail) = post(
        admin,
        &api("notification-channels"),
        json!({"name": "ops mail", "kind": "email", "host": "127.0.0.1", "port": sink.port,
               "security": "none", "from": "gpudock@lab.test", "to": ["ops@lab.test"],
               "language": "en"}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{mail}");
    for (name, event, extra) in [
        ("node down", "node_unreachable", json!({"threshold": 2})),
        (
            "exited",
            "instance_exited",
            json!({"channels": [ch, mail["id"]]}),
        ),
        ("locked", "account_locked", json!({})),
        ("xid", "gpu_xid", json!({})),
        ("backup", "backup_failed", json!({})),
        ("big session", "session_bytes", json!({"threshold": 2000})),
        ("disk", "disk_full", json!({"threshold": 0.01})),
    ] {
        let mut body = json!({"name": name, "event": event, "level": "P1", "channels": [ch],
                              "enabled": true, "silence": 3600});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let (s, r) = post(admin, &api("alert-rules"), body).await;
        assert_eq!(s, StatusCode::CREATED, "{r}");
    }
    let messages = |rule: &str, event: &str| -> Vec<Value> {
        seen.lock()
            .unwrap()
            .iter()
            .filter(|x| x.2["rule"] == rule && x.2["event"] == event)
            .map(|x| x.2.clone())
            .collect()
    };
    let rule_alerts = async |rule: &str, query: &str| -> Vec<Value> {
        alerts_of(srv, admin, query)
            .await
            .into_iter()
            .filter(|x| x["rule"] == rule)
            .collect()
    };

    // A container killed behind gpudock's back.
    let spec = lab.spec(small_spec("ev")).await;
    let (s, i) = post(
        admin,
        &api("instances"),
        lab.create_body(spec, "victim-box"),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{i}");
    let iid = i["id"].as_i64().unwrap();
    let out = lab.docker(&["kill", i["container_id"].as_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let exited = poll("the instance-exited alert", 60, async || {
        let v = rule_alerts("exited", &format!("node={a}")).await;
        (!v.is_empty()).then_some(v)
    })
    .await;
    assert_eq!(exited[0]["instance_id"], iid);
    assert_eq!(exited[0]["event"], "instance_exited");
    assert!(
        exited[0]["message"]
            .as_str()
            .unwrap()
            .contains("instance victim-box on node n1"),
        "{exited:?}"
    );
    poll("the exit delivered", 30, async || {
        (messages("exited", "fired").len() == 1).then_some(())
    })
    .await;
    let got = poll("the exit by e-mail", 60, async || {
        mails(&inbox).into_iter().next()
    })
    .await;
    assert!(
        got["body"].as_str().unwrap().contains("victim-box")
            && got["subject"].as_str().unwrap().contains("exited"),
        "{got}"
    );
    assert_eq!(got["rcpt_tos"], json!(["ops@lab.test"]), "{got}");
    drop(sink);
    // Closed by hand; then gpudock's own start and stop raise nothing.
    let (s, v) = post(
        admin,
        &api(&format!("alerts/{}/close", exited[0]["id"])),
        json!({"note": "seen"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = post(admin, &api(&format!("instances/{iid}/start")), json!({})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // A web terminal session that moves more than N = 2000 bytes.
    let cookie = common::ws::session_cookie(srv, "admin", common::ADMIN_PASSWORD).await;
    let mut term = common::ws::Term::open(srv, &cookie, iid, 80, 24).await;
    term.send("seq 1 3000\n").await;
    term.expect("2999", Duration::from_secs(30)).await;
    let big = poll("the big-session alert", 30, async || {
        let v = rule_alerts("big session", "").await;
        (!v.is_empty()).then_some(v)
    })
    .await;
    assert!(
        big[0]["target"].as_str().unwrap().starts_with("session:")
            && big[0]["message"].as_str().unwrap().contains("of admin"),
        "{big:?}"
    );
    poll("the big session delivered", 30, async || {
        (messages("big session", "fired").len() == 1).then_some(())
    })
    .await;
    term.close().await;
    let (s, v) = post(admin, &api(&format!("instances/{iid}/stop")), json!({})).await;
    assert_eq!(s, StatusCode::OK, "{v}");

    // Five failed sign-ins lock an account: an alert naming it.
    let (victim, _) = make_user(
        srv,
        admin,
        "locked-out",
        "admin",
        None,
        "Quartz-Lantern-Orbit-83!",
    )
    .await;
    for _ in 0..5 {
        let (_, s, _) = srv.login("locked-out", "wrong-password-here").await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
    let locked = poll("the account-locked alert", 30, async || {
        let v = rule_alerts("locked", "").await;
        (!v.is_empty()).then_some(v)
    })
    .await;
    assert!(
        locked[0]["message"]
            .as_str()
            .unwrap()
            .contains("account locked-out"),
        "{locked:?}"
    );
    poll("the lock delivered", 30, async || {
        (messages("locked", "fired").len() == 1).then_some(())
    })
    .await;
    // Unlocked by an admin: the alert resolves with the lock.
    let (s, v) = post(admin, &api(&format!("users/{victim}/unlock")), json!({})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    poll("the unlock announced", 30, async || {
        (messages("locked", "resolved").len() == 1).then_some(())
    })
    .await;
    let locked = rule_alerts("locked", "").await;
    assert_eq!(
        (
            locked[0]["status"].as_str(),
            locked[0]["resolved_reason"].as_str()
        ),
        (Some("resolved"), Some("cleared"))
    );

    // The data directory's disk over N % (this host's node).
    let disk = poll("the disk alert", 30, async || {
        let v = rule_alerts("disk", &format!("node={a}")).await;
        (!v.is_empty()).then_some(v)
    })
    .await;
    assert!(
        disk[0]["message"]
            .as_str()
            .unwrap()
            .contains("the data directory's disk is"),
        "{disk:?}"
    );

    // A failed backup (its archive's path is taken): recorded by the CLI,
    // announced by the running server.
    let taken = tempfile::NamedTempFile::new().unwrap();
    let out = srv.cli(&["backup", "--to", taken.path().to_str().unwrap()]);
    assert!(!out.status.success(), "{out:?}");
    poll("the backup failure delivered", 30, async || {
        (messages("backup", "fired").len() == 1).then_some(())
    })
    .await;
    let failed = rule_alerts("backup", "").await;
    assert!(
        failed[0]["message"]
            .as_str()
            .unwrap()
            .starts_with("backup: the appliance: backup failed: while backing up"),
        "{failed:?}"
    );

    // A storm: eight GPUs of another node report an XID at once.
    let xid = fake_exporter(Answer::Text(dcgm_with_xid(79))).await;
    let b = node_at(srv, admin, "gpu-b", &common::dockerd::shared().unix_url).await;
    let (s, v) = sources(srv, admin, b, json!({"dcgm_url": format!("{xid}/metrics")})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let storm = poll("one storm message", 120, async || {
        let m = messages("xid", "fired");
        (!m.is_empty()).then_some(m)
    })
    .await;
    assert_eq!(storm.len(), 1, "{storm:?}");
    assert_eq!(storm[0]["group"]["count"], 8, "{storm:?}");
    assert_eq!(storm[0]["group"]["targets"][7], format!("gpu:{b}:7"));
    assert!(
        storm[0]["message"]
            .as_str()
            .unwrap()
            .starts_with("8 alerts of xid: xid: GPU 0 of node gpu-b: XID 79"),
        "{storm:?}"
    );
    assert_eq!(rule_alerts("xid", &format!("node={b}")).await.len(), 8);

    // The node's daemon stops: unreachable (after N = 2 s), announced.
    d.down();
    let down = poll("the node-unreachable alert", 60, async || {
        let v = rule_alerts("node down", &format!("node={a}&status=firing")).await;
        (!v.is_empty()).then_some(v)
    })
    .await;
    assert_eq!(down[0]["target"], format!("node:{a}"));
    assert!(
        down[0]["message"]
            .as_str()
            .unwrap()
            .starts_with("node down: node n1: no answer for"),
        "{down:?}"
    );
    poll("node down delivered", 30, async || {
        (messages("node down", "fired").len() == 1).then_some(())
    })
    .await;
    // Its GPUs report XIDs meanwhile: recorded as suppressed, never sent.
    let (s, v) = sources(srv, admin, a, json!({"dcgm_url": format!("{xid}/metrics")})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let quiet = poll("8 suppressed XID alerts", 60, async || {
        let v = rule_alerts("xid", &format!("node={a}")).await;
        (v.len() == 8).then_some(v)
    })
    .await;
    assert!(
        quiet.iter().all(|x| x["suppressed"] == "node_down"),
        "{quiet:?}"
    );
    let page = admin
        .get(srv.url(&format!("/alerts?node={a}")))
        .header("accept-language", "zh-CN")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("未通知：所在节点不可达"), "{page}");
    // The daemon returns: the node's alert resolves, announced as such.
    d.up();
    poll("node back", 60, async || {
        let v = rule_alerts("node down", &format!("node={a}&status=resolved")).await;
        (v.len() == 1 && v[0]["resolved_reason"] == "cleared").then_some(())
    })
    .await;
    poll("node back delivered", 30, async || {
        (messages("node down", "resolved").len() == 1).then_some(())
    })
    .await;
    let xid_msgs: Vec<Value> = messages("xid", "fired");
    assert_eq!(
        xid_msgs.len(),
        1,
        "node a's XIDs were never sent: {xid_msgs:?}"
    );
    assert!(
        xid_msgs.iter().all(|m| m["group"]["targets"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t.as_str().unwrap().starts_with(&format!("gpu:{b}:")))),
        "{xid_msgs:?}"
    );
    // gpudock's own stop raised no second exit alert, and everything sent
    // was signed.
    assert_eq!(rule_alerts("exited", "").await.len(), 1);
    assert_eq!(messages("exited", "fired").len(), 1);
    assert!(seen.lock().unwrap().iter().all(|x| x.1 == "true"));
    assert!(
        audit_count(srv, admin, "alert_rule.create").await >= 4,
        "rule changes audited"
    );

    // The pages: switching a built-in event rule off keeps its event and
    // N; an event rule made with the form; both languages name the events.
    let (_, me) = get(admin, &srv.url("/api/v1/me")).await;
    let token = me["csrf_token"].as_str().unwrap().to_string();
    let (_, rules) = get(admin, &api("alert-rules")).await;
    let builtin = rules
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "Node unreachable")
        .unwrap()
        .clone();
    assert_eq!(
        (builtin["enabled"].as_bool(), builtin["threshold"].as_f64()),
        (Some(true), Some(60.0)),
        "{builtin}"
    );
    let r = admin
        .post(srv.url(&format!("/alert-rules/{}/enabled", builtin["id"])))
        .form(&[("csrf_token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let (_, v) = get(admin, &api(&format!("alert-rules/{}", builtin["id"]))).await;
    assert_eq!(
        (
            v["enabled"].as_bool(),
            v["event"].as_str(),
            v["threshold"].as_f64()
        ),
        (Some(false), Some("node_unreachable"), Some(60.0)),
        "{v}"
    );
    let r = admin
        .post(srv.url("/alert-rules"))
        .form(&[
            ("csrf_token", token.as_str()),
            ("name", "oom form"),
            ("event", "instance_oom"),
            ("level", "P1"),
            ("enabled", "on"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    for (lang, want) in [
        ("en", "Event: Instance OOM-killed"),
        ("zh-CN", "事件: 实例因内存不足被终止（OOM）"),
    ] {
        let html = admin
            .get(srv.url("/alert-rules"))
            .header("accept-language", lang)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            html.contains("oom form") && html.contains(want),
            "{lang}: {html}"
        );
    }
    // The rule's edit page: filled with the rule; saving changes it
    // (audited), and a bad field comes back named on the form.
    let (_, rules) = get(admin, &api("alert-rules")).await;
    let oom = rules
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "oom form")
        .unwrap()
        .clone();
    let edit_url = srv.url(&format!("/alert-rules/{}", oom["id"]));
    let html = admin
        .get(&edit_url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("value=\"oom form\"") && html.contains("id=\"rule-save\""),
        "{html}"
    );
    let before = audit_count(srv, admin, "alert_rule.update").await;
    let form = |name: &'static str| {
        vec![
            ("csrf_token", token.clone()),
            ("name", name.to_string()),
            ("event", "instance_oom".to_string()),
            ("level", "P3".to_string()),
            ("silence", "120".to_string()),
            ("enabled", "on".to_string()),
        ]
    };
    let r = admin.post(&edit_url).form(&form("")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text().await.unwrap().contains("field-error"));
    let r = admin
        .post(&edit_url)
        .form(&form("oom edited"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let (_, v) = get(admin, &api(&format!("alert-rules/{}", oom["id"]))).await;
    assert_eq!(
        (
            v["name"].as_str(),
            v["level"].as_str(),
            v["silence"].as_i64(),
            v["event"].as_str()
        ),
        (
            Some("oom edited"),
            Some("P3"),
            Some(120),
            Some("instance_oom")
        ),
        "{v}"
    );
    assert_eq!(
        audit_count(srv, admin, "alert_rule.update").await,
        before + 1
    );
}

/// What the robot receiver saw: the request's URI (path and query as
/// sent), its Host header, its body, and whether the vendor's signature
/// (recomputed here) was good.
#[derive(Debug, Clone)]
struct RobotCall {
    uri: String,
    host: String,
    body: Value,
    signed: bool,
}

type Calls = std::sync::Arc<std::sync::Mutex<Vec<RobotCall>>>;

const DING_SECRET: &str = "SECdingtalk-signing-secret-0123456789";
const FEISHU_SECRET: &str = "feishu-signing-secret";
const BOT_TOKEN: &str = "123456:ABC-def_ghi";

fn b64_hmac(key: &[u8], msg: &[u8]) -> String {
    use base64::Engine as _;
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(msg);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// A local stand-in for the robots' servers: DingTalk, WeCom, Feishu,
/// Slack and Telegram (by path prefix), and anything reached through it as
/// a proxy. It checks each vendor's signature as the vendor documents it
/// and answers as the vendor does (an error code in a 200 when the
/// signature is wrong). Returns its base URL.
async fn robot_receiver(calls: Calls) -> String {
    use axum::http::{HeaderMap, Uri};
    let app = axum::Router::new().fallback(axum::routing::post(
        move |uri: Uri, h: HeaderMap, body: bytes::Bytes| async move {
            let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let query: std::collections::HashMap<String, String> = uri
                .query()
                .map(|q| {
                    url::form_urlencoded::parse(q.as_bytes())
                        .into_owned()
                        .collect()
                })
                .unwrap_or_default();
            let path = uri.path().to_string();
            let (signed, answer) = if path.starts_with("/dingtalk/") {
                // sign = base64(HMAC-SHA256(key secret, "{timestamp ms}\n{secret}"))
                let ts = query.get("timestamp").cloned().unwrap_or_default();
                let want = b64_hmac(
                    DING_SECRET.as_bytes(),
                    format!("{ts}\n{DING_SECRET}").as_bytes(),
                );
                let ok = ts.len() == 13 && query.get("sign") == Some(&want);
                let a = if ok {
                    json!({"errcode": 0, "errmsg": "ok"})
                } else {
                    json!({"errcode": 310000, "errmsg": "sign not match"})
                };
                (ok, a.to_string())
            } else if path.starts_with("/feishu/") {
                // sign = base64(HMAC-SHA256(key "{timestamp s}\n{secret}", ""))
                let ts = json["timestamp"].as_str().unwrap_or_default().to_string();
                let want = b64_hmac(format!("{ts}\n{FEISHU_SECRET}").as_bytes(), b"");
                let ok = ts.len() == 10 && json["sign"].as_str() == Some(want.as_str());
                let a = if ok {
                    json!({"code": 0, "msg": "success"})
                } else {
                    json!({"code": 19021, "msg": "sign match fail"})
                };
                (ok, a.to_string())
            } else if path.starts_with("/wecom/") {
                (false, json!({"errcode": 0, "errmsg": "ok"}).to_string())
            } else if path.starts_with("/telegram/") {
                (
                    false,
                    json!({"ok": true, "result": {"message_id": 1}}).to_string(),
                )
            } else {
                (false, "ok".to_string())
            };
            let host = h
                .get("host")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default();
            let call = RobotCall {
                uri: uri.to_string(),
                host,
                body: json,
                signed,
            };
            calls.lock().unwrap().push(call);
            (StatusCode::OK, answer)
        },
    ));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    format!("http://{addr}")
}

/// Every channel kind end to end: DingTalk, WeCom, Feishu, Slack and
/// Telegram test messages reach a local receiver in each vendor's format
/// with the vendor's signature (recomputed by the receiver); a wrong
/// DingTalk secret is refused by the "robot" and logged as three failed
/// tries; token URLs and secrets are never shown back (masked); a change
/// that leaves them as shown keeps them; a webhook goes through the
/// channel's proxy; e-mail reaches a real SMTP server (aiosmtpd) with the
/// subject and body in the channel's language; bad kind-specific input
/// names the field; changes are audited; the edit page saves.
#[tokio::test]
async fn every_channel_kind_delivers_in_its_vendors_format_and_email_arrives() {
    let calls = Calls::default();
    let robot = robot_receiver(calls.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("mail.jsonl");
    let sink = smtp_sink(free_port(), &inbox);
    let srv = Server::start_with(FAST);
    let admin = srv.admin().await;
    let api = |p: &str| srv.url(&format!("/api/v1/{p}"));
    let create = async |body: Value| {
        let (s, v) = post(&admin, &api("notification-channels"), body).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v
    };
    let test = async |id: i64| {
        let (s, t) = post(
            &admin,
            &api(&format!("notification-channels/{id}/test")),
            json!({}),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{t}");
        t
    };
    let last_call = || calls.lock().unwrap().last().cloned().unwrap();

    // Bad kind-specific input names the field.
    for (body, field) in [
        (
            json!({"name": "m", "kind": "email", "host": "", "from": "a@b.c", "to": ["x@y.z"]}),
            "host",
        ),
        (
            json!({"name": "m", "kind": "email", "host": "h", "from": "not an address", "to": ["x@y.z"]}),
            "from",
        ),
        (
            json!({"name": "m", "kind": "email", "host": "h", "from": "a@b.c", "to": []}),
            "to",
        ),
        (
            json!({"name": "m", "kind": "email", "host": "h", "port": 70000, "from": "a@b.c", "to": ["x@y.z"]}),
            "port",
        ),
        (
            json!({"name": "m", "kind": "email", "host": "h", "security": "ssl3", "from": "a@b.c", "to": ["x@y.z"]}),
            "security",
        ),
        (
            json!({"name": "m", "kind": "email", "host": "h", "user": "u", "from": "a@b.c", "to": ["x@y.z"]}),
            "password",
        ),
        (
            json!({"name": "m", "kind": "dingtalk", "url": format!("{robot}/dingtalk/x")}),
            "secret",
        ),
        (
            json!({"name": "m", "kind": "telegram", "secret": "not-a-token", "chat_id": "1"}),
            "secret",
        ),
        (
            json!({"name": "m", "kind": "telegram", "secret": BOT_TOKEN}),
            "chat_id",
        ),
        (
            json!({"name": "m", "kind": "slack", "url": "ftp://x/"}),
            "url",
        ),
        (
            json!({"name": "m", "kind": "slack", "url": format!("{robot}/slack/x"), "proxy": "socks://p"}),
            "proxy",
        ),
        (
            json!({"name": "m", "kind": "slack", "url": format!("{robot}/slack/x"), "language": "fr"}),
            "language",
        ),
    ] {
        let (s, v) = post(&admin, &api("notification-channels"), body.clone()).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {v}");
        assert!(v["error"]["fields"][field].is_string(), "{field}: {v}");
    }

    // DingTalk: signed URL, text message; the token URL is shown masked.
    let ding_url = format!("{robot}/dingtalk/robot/send?access_token=dingtoken9876");
    let ding = create(json!({"name": "ding", "kind": "dingtalk", "url": ding_url,
                             "secret": DING_SECRET, "language": "zh-CN"}))
    .await;
    let shown = ding.to_string();
    assert!(
        !shown.contains("dingtoken") && !shown.contains(DING_SECRET),
        "{shown}"
    );
    assert!(ding["url"].as_str().unwrap().ends_with("9876"), "{ding}");
    let ding_id = ding["id"].as_i64().unwrap();
    assert_eq!(test(ding_id).await["sent"], true);
    let c = last_call();
    assert!(c.signed, "DingTalk signature: {c:?}");
    assert!(c.uri.contains("access_token=dingtoken9876"), "{c:?}");
    assert_eq!(c.body["msgtype"], "text", "{c:?}");
    let content = c.body["text"]["content"].as_str().unwrap();
    assert!(
        content.contains("测试") && content.contains("ding"),
        "{content}"
    );

    // A change that leaves the URL as shown keeps the token and the secret.
    let (s, v) = send(
        &admin,
        "PUT",
        &api(&format!("notification-channels/{ding_id}")),
        Some(json!({"name": "ding2", "kind": "dingtalk", "url": ding["url"], "language": "en"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(test(ding_id).await["sent"], true);
    let c = last_call();
    assert!(
        c.signed && c.uri.contains("access_token=dingtoken9876"),
        "{c:?}"
    );
    assert!(
        c.body["text"]["content"].as_str().unwrap().contains("Test"),
        "{c:?}"
    );

    // A wrong DingTalk secret: the robot's refusal (errcode in a 200) is a
    // failure, tried three times and logged.
    let bad = create(
        json!({"name": "ding-bad", "kind": "dingtalk", "url": ding_url,
                            "secret": "SECwrong"}),
    )
    .await;
    let t = test(bad["id"].as_i64().unwrap()).await;
    assert_eq!(t["sent"], false, "{t}");
    let tries = t["tries"].as_array().unwrap();
    assert_eq!(tries.len(), 3, "{t}");
    assert!(
        tries
            .iter()
            .all(|x| x["status"] == "failed" && x["error"].as_str().unwrap().contains("310000")),
        "{t}"
    );

    // WeCom: text message to the key URL.
    let wecom = create(json!({"name": "wecom", "kind": "wecom",
        "url": format!("{robot}/wecom/cgi-bin/webhook/send?key=wecomkey4321")}))
    .await;
    assert!(!wecom.to_string().contains("wecomkey"), "{wecom}");
    assert_eq!(test(wecom["id"].as_i64().unwrap()).await["sent"], true);
    let c = last_call();
    assert!(c.uri.contains("key=wecomkey4321"), "{c:?}");
    assert_eq!(c.body["msgtype"], "text");
    assert!(
        c.body["text"]["content"]
            .as_str()
            .unwrap()
            .contains("wecom"),
        "{c:?}"
    );

    // Feishu: timestamp and sign in the body.
    let feishu = create(json!({"name": "feishu", "kind": "feishu",
        "url": format!("{robot}/feishu/open-apis/bot/v2/hook/feishuhook"), "secret": FEISHU_SECRET})).await;
    assert!(!feishu.to_string().contains("feishuhook"), "{feishu}");
    assert_eq!(test(feishu["id"].as_i64().unwrap()).await["sent"], true);
    let c = last_call();
    assert!(c.signed, "Feishu signature: {c:?}");
    assert_eq!(c.body["msg_type"], "text");
    assert!(
        c.body["content"]["text"]
            .as_str()
            .unwrap()
            .contains("feishu"),
        "{c:?}"
    );

    // Slack: {"text": ...} to the incoming-webhook URL.
    let slack = create(json!({"name": "slack", "kind": "slack",
        "url": format!("{robot}/slack/services/T0/B0/slacksecret"), "language": "en"}))
    .await;
    assert!(!slack.to_string().contains("slacksecret"), "{slack}");
    assert_eq!(test(slack["id"].as_i64().unwrap()).await["sent"], true);
    let c = last_call();
    assert!(
        c.uri.ends_with("/slack/services/T0/B0/slacksecret"),
        "{c:?}"
    );
    assert!(
        c.body["text"]
            .as_str()
            .unwrap()
            .contains("gpudock test message to channel slack"),
        "{c:?}"
    );

    // Telegram: sendMessage of the bot at the Bot API server, to the chat.
    let tg = create(
        json!({"name": "tg", "kind": "telegram", "url": format!("{robot}/telegram"),
                           "secret": BOT_TOKEN, "chat_id": "-1001234"}),
    )
    .await;
    assert!(!tg.to_string().contains("ABC-def"), "{tg}");
    assert_eq!(tg["chat_id"], "-1001234");
    assert_eq!(test(tg["id"].as_i64().unwrap()).await["sent"], true);
    let c = last_call();
    assert_eq!(
        c.uri.split('?').next().unwrap(),
        format!("/telegram/bot{BOT_TOKEN}/sendMessage")
    );
    assert_eq!(c.body["chat_id"], "-1001234");
    assert!(c.body["text"].as_str().unwrap().contains("tg"), "{c:?}");

    // A webhook to a host only the proxy reaches goes through the proxy
    // (absolute-form request, Host of the real destination).
    let proxied = create(json!({"name": "proxied", "kind": "webhook",
        "url": "http://hooks.lab.invalid/hook", "secret": HOOK_SECRET, "proxy": robot}))
    .await;
    assert_eq!(test(proxied["id"].as_i64().unwrap()).await["sent"], true);
    let c = last_call();
    assert_eq!(c.host, "hooks.lab.invalid", "{c:?}");
    assert_eq!(c.body["event"], "test", "{c:?}");

    // E-mail to a real SMTP server, in each channel's language.
    for (name, lang, subject, body) in [
        (
            "mail-en",
            "en",
            "[gpudock] [P3 Notice] Test",
            "gpudock test message to channel mail-en",
        ),
        (
            "mail-zh",
            "zh-CN",
            "[gpudock] [P3 提示] 测试",
            "gpudock 测试消息，通知渠道 mail-zh",
        ),
    ] {
        let m = create(
            json!({"name": name, "kind": "email", "host": "127.0.0.1", "port": sink.port,
            "security": "none", "from": "GPU Lab <gpudock@lab.test>",
            "to": "ops@lab.test, admin@lab.test", "language": lang}),
        )
        .await;
        assert_eq!(m["to"], json!(["ops@lab.test", "admin@lab.test"]), "{m}");
        let t = test(m["id"].as_i64().unwrap()).await;
        assert_eq!(t["sent"], true, "{t}");
        let got = poll("the e-mail", 60, async || {
            mails(&inbox)
                .into_iter()
                .find(|x| x["body"].as_str().unwrap().contains(body))
        })
        .await;
        assert!(
            got["subject"].as_str().unwrap().starts_with(subject),
            "{got}"
        );
        assert_eq!(
            got["rcpt_tos"],
            json!(["ops@lab.test", "admin@lab.test"]),
            "{got}"
        );
        assert_eq!(got["mail_from"], "gpudock@lab.test", "{got}");
    }
    // An SMTP server that is not there: three failed, logged tries.
    let dead = create(
        json!({"name": "mail-dead", "kind": "email", "host": "127.0.0.1",
        "port": free_port(), "security": "none", "from": "a@lab.test", "to": ["b@lab.test"]}),
    )
    .await;
    let dead_id = dead["id"].as_i64().unwrap();
    assert_eq!(test(dead_id).await["sent"], false);
    let (_, log) = get(
        &admin,
        &api(&format!("notification-channels/{dead_id}/deliveries")),
    )
    .await;
    assert_eq!(log.as_array().unwrap().len(), 3, "{log}");

    // The edit page: shown masked, saved by its form (audited).
    let page = common::text(
        &admin,
        &srv.url(&format!("/notification-channels/{ding_id}")),
    )
    .await;
    assert!(
        page.contains("channel-edit") && !page.contains("dingtoken"),
        "edit form, masked"
    );
    let (_, me) = get(&admin, &api("me")).await;
    let csrf = me["csrf_token"].as_str().unwrap().to_string();
    let masked = ding["url"].as_str().unwrap().to_string();
    let r = admin
        .post(srv.url(&format!("/notification-channels/{ding_id}")))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("name", "ding3"),
            ("url", &masked),
            ("language", "zh-CN"),
            ("enabled", "1"),
        ])
        .send()
        .await
        .unwrap();
    assert!(
        r.status().is_success() || r.status().is_redirection(),
        "{}",
        r.status()
    );
    let (_, v) = get(&admin, &api(&format!("notification-channels/{ding_id}"))).await;
    assert_eq!(v["name"], "ding3", "{v}");
    assert_eq!(test(ding_id).await["sent"], true);
    assert!(last_call().signed);
    assert!(audit_count(&srv, &admin, "notification_channel.update").await >= 2);
    assert!(audit_count(&srv, &admin, "notification_channel.create").await >= 9);

    // A customer owner manages their tenant's own e-mail and webhook
    // channels only, sees no one else's, and cannot aim them at the lab.
    let ta = make_tenant(&srv, &admin, "CH-A").await;
    let tb = make_tenant(&srv, &admin, "CH-B").await;
    let (_, owner) = make_user(
        &srv,
        &admin,
        "ch-owner",
        "customer_owner",
        Some(ta),
        "Velvet-Canyon-Harbor-58!",
    )
    .await;
    let (_, member) = make_user(
        &srv,
        &admin,
        "ch-member",
        "customer_member",
        Some(ta),
        "Saffron-Glacier-Pilot-36!",
    )
    .await;
    let (s, v) = get(&owner, &api("notification-channels")).await;
    assert_eq!(
        (s, v.clone()),
        (StatusCode::OK, json!([])),
        "none of the lab's: {v}"
    );
    for (body, field) in [
        (
            json!({"name": "o", "kind": "slack", "url": "https://hooks.slack.com/services/x"}),
            "kind",
        ),
        (
            json!({"name": "o", "kind": "webhook", "url": format!("{robot}/hook"), "secret": HOOK_SECRET}),
            "url",
        ),
        (
            json!({"name": "o", "kind": "webhook", "url": "http://10.0.0.5/hook", "secret": HOOK_SECRET}),
            "url",
        ),
        (
            json!({"name": "o", "kind": "webhook", "url": "https://hooks.example.com/x", "secret": HOOK_SECRET, "proxy": "http://p.example:3128"}),
            "proxy",
        ),
        (
            json!({"name": "o", "kind": "email", "host": "localhost", "from": "a@b.c", "to": ["x@y.z"]}),
            "host",
        ),
        (
            json!({"name": "o", "kind": "webhook", "url": "https://hooks.example.com/x", "secret": HOOK_SECRET, "tenant_id": tb}),
            "tenant_id",
        ),
    ] {
        let (s, v) = post(&owner, &api("notification-channels"), body.clone()).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {v}");
        assert!(v["error"]["fields"][field].is_string(), "{field}: {v}");
    }
    let (s, own) = post(
        &owner,
        &api("notification-channels"),
        json!({"name": "ding3", "kind": "email",
        "host": "smtp.customer.example", "port": 587, "from": "gpu@customer.example",
        "to": ["me@customer.example"]}),
    )
    .await;
    assert_eq!(
        s,
        StatusCode::CREATED,
        "a name the lab uses is free for a tenant: {own}"
    );
    assert_eq!(own["tenant_id"], ta);
    let own_id = own["id"].as_i64().unwrap();
    let (_, v) = get(&owner, &api("notification-channels")).await;
    assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
    let page = common::text(&owner, &srv.url("/notification-channels")).await;
    assert!(
        page.contains(&format!("/notification-channels/{own_id}")),
        "the owner's page lists theirs"
    );
    // The owner's form offers only what they may create: e-mail and
    // webhook, no proxy (the admin's offers every kind and the proxy).
    let kinds = |page: &str| -> Vec<String> {
        page.split("<select name=\"kind\">")
            .nth(1)
            .unwrap()
            .split("</select>")
            .next()
            .unwrap()
            .split("value=\"")
            .skip(1)
            .map(|x| x.split('"').next().unwrap().to_string())
            .collect()
    };
    assert_eq!(kinds(&page), ["webhook", "email"], "{page}");
    assert!(!page.contains("name=\"proxy\""), "{page}");
    let lab_page = common::text(&admin, &srv.url("/notification-channels")).await;
    assert_eq!(kinds(&lab_page).len(), 7, "{lab_page}");
    assert!(lab_page.contains("name=\"proxy\""));
    assert!(
        !page.contains("mail-en") && !page.contains("proxied"),
        "and none of the lab's"
    );
    for (m, path) in [
        ("GET", format!("notification-channels/{ding_id}")),
        ("DELETE", format!("notification-channels/{ding_id}")),
        ("POST", format!("notification-channels/{ding_id}/test")),
        ("GET", format!("notification-channels/{ding_id}/deliveries")),
    ] {
        let (s, _) = send(&owner, m, &api(&path), (m != "GET").then(|| json!({}))).await;
        assert_eq!(
            s,
            StatusCode::NOT_FOUND,
            "{m} {path}: the lab's channel is not the owner's"
        );
    }
    let (s, _) = get(&member, &api("notification-channels")).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "members do not manage channels");
    let (s, v) = get(&admin, &api(&format!("notification-channels/{own_id}"))).await;
    assert_eq!(
        (s, v["tenant_id"].clone()),
        (StatusCode::OK, json!(ta)),
        "admins see it: {v}"
    );
    // An admin may give a channel to a tenant; the owner then sees it.
    let given = create(json!({"name": "given", "kind": "slack", "tenant_id": ta,
        "url": format!("{robot}/slack/services/T0/B0/given")}))
    .await;
    let (_, v) = get(&owner, &api("notification-channels")).await;
    assert_eq!(v.as_array().unwrap().len(), 2, "{v}");
    let (s, _) = send(
        &owner,
        "DELETE",
        &api(&format!("notification-channels/{}", given["id"])),
        Some(json!({})),
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, v) = send(
        &owner,
        "DELETE",
        &api(&format!("notification-channels/{own_id}")),
        Some(json!({})),
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    drop(sink);
}

/// Users to notify: a rule names users besides its channels; each gets its
/// alerts by e-mail at their account's address through the lab's mail
/// channel, in their own language (en and zh-CN, through a real SMTP
/// server), and only alerts they may see (a customer owner gets no account
/// alert); the channel's own recipients get it in the channel's language;
/// an unknown user id is refused by name; the rule shows and keeps them,
/// the form offers them, and the language preference is validated.
#[tokio::test]
async fn users_to_notify_get_alerts_by_email_in_their_language() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("mail.jsonl");
    let _sink = smtp_sink(free_port(), &inbox);
    let port = _sink.port;
    let srv = Server::start_with(FAST);
    let admin = srv.admin().await;
    let api = |p: &str| srv.url(&format!("/api/v1/{p}"));
    let (s, mail) = post(
        &admin,
        &api("notification-channels"),
        json!({"name": "lab mail", "kind": "email", "host": "127.0.0.1", "port": port,
               "security": "none", "from": "gpudock@lab.test", "to": ["ops@lab.test"],
               "language": "zh-CN"}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{mail}");
    let tenant = make_tenant(&srv, &admin, "NOTIFY").await;
    let mut ids = Vec::new();
    for (name, role, tenant, lang) in [
        ("ann", "admin", None, "en"),
        ("bo", "admin", None, "zh-CN"),
        ("cus", "customer_owner", Some(tenant), "en"),
    ] {
        let (id, _) = make_user(&srv, &admin, name, role, tenant, "Quartz-Lantern-Orbit-83!").await;
        let (s, v) = patch(
            &admin,
            &api(&format!("users/{id}")),
            json!({"email": format!("{name}@lab.test"), "language": lang}),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        ids.push(id);
    }
    let (s, v) = patch(
        &admin,
        &api(&format!("users/{}", ids[0])),
        json!({"language": "fr"}),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(v["error"]["fields"]["language"].is_string(), "{v}");

    let rule = |users: Value| {
        json!({"name": "locked accounts", "event": "account_locked", "level": "P1",
               "channels": [mail["id"]], "notify_users": users, "enabled": true})
    };
    let (s, v) = post(&admin, &api("alert-rules"), rule(json!([ids[0], 987_654]))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(v["error"]["fields"]["notify_users"].is_string(), "{v}");
    let (s, r) = post(&admin, &api("alert-rules"), rule(json!(ids))).await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    assert_eq!(r["notify_users"], json!(ids), "{r}");
    let page = common::text(&admin, &srv.url(&format!("/alert-rules/{}", r["id"]))).await;
    assert!(
        page.contains(&format!("name=\"user_{}\" checked", ids[1])),
        "{page}"
    );

    // Five failed sign-ins lock an account: an alert about it.
    make_user(
        &srv,
        &admin,
        "victim",
        "admin",
        None,
        "Quartz-Lantern-Orbit-84!",
    )
    .await;
    for _ in 0..5 {
        let (_, s, _) = srv.login("victim", "wrong-password-here").await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
    let got = poll(
        "the alert e-mailed to the channel, ann and bo",
        60,
        async || {
            let m = mails(&inbox);
            (m.len() >= 3).then_some(m)
        },
    )
    .await;
    let to = |who: &str| -> Value {
        got.iter()
            .find(|m| m["rcpt_tos"] == json!([who]))
            .unwrap_or_else(|| panic!("nothing for {who}: {got:?}"))
            .clone()
    };
    let (ann, bo, ops) = (to("ann@lab.test"), to("bo@lab.test"), to("ops@lab.test"));
    let body = |m: &Value| m["body"].as_str().unwrap().to_string();
    assert!(
        body(&ann).contains("locked accounts: account victim: locked for")
            && ann["subject"].as_str().unwrap().contains("locked accounts"),
        "{ann}"
    );
    for m in [&bo, &ops] {
        assert!(
            body(m).contains("locked accounts：账号 victim：")
                && body(m).contains("账号因登录失败被锁定")
                && !body(m).contains("account victim"),
            "{m}"
        );
    }
    // Three deliveries, all through the lab's mail channel; the customer
    // owner may not see account alerts: nothing for them.
    let log_url = api(&format!("notification-channels/{}/deliveries", mail["id"]));
    poll("the deliveries logged", 30, async || {
        let (_, log) = get(&admin, &log_url).await;
        let log = log.as_array().cloned().unwrap_or_default();
        (log.len() >= 3 && log.iter().all(|d| d["status"] == "sent")).then_some(())
    })
    .await;
    assert!(
        mails(&inbox)
            .iter()
            .all(|m| m["rcpt_tos"] != json!(["cus@lab.test"])),
        "{got:?}"
    );
    assert!(audit_count(&srv, &admin, "alert_rule.create").await >= 1);
}

/// An image of the test busybox whose command is `sh -c cmd` (made on the
/// test daemon with `docker commit`).
fn image_running(lab: &Lab, tag: &str, cmd: &str) -> String {
    let src = format!("src-{}", tag.replace([':', '/'], "-"));
    let out = lab.docker(&[
        "create",
        "--name",
        &src,
        common::dockerd::TEST_IMAGE,
        "true",
    ]);
    assert!(out.status.success(), "{out:?}");
    let change = format!("CMD {}", json!(["sh", "-c", cmd]));
    let out = lab.docker(&["commit", "--change", &change, &src, tag]);
    assert!(out.status.success(), "{out:?}");
    lab.docker(&["rm", &src]);
    tag.to_string()
}

/// Events from the real dockerd: an instance whose command eats more
/// memory than its spec allows is OOM-killed by the kernel
/// (`instance_oom`, Docker's OOMKilled), and one whose command exits 1 is
/// restarted by Docker's policy in a loop (`instance_restart_loop` once
/// it restarted N = 2 times); each alert names the instance.
#[tokio::test]
async fn oom_kills_and_restart_loops_of_real_containers_raise_alerts() {
    let lab = Lab::new(FAST, 64).await;
    let (srv, admin) = (&lab.srv, &lab.admin);
    let api = |p: &str| srv.url(&format!("/api/v1/{p}"));
    for (name, event, extra) in [
        ("oom", "instance_oom", json!({})),
        ("loop", "instance_restart_loop", json!({"threshold": 2})),
    ] {
        let mut body = json!({"name": name, "event": event, "level": "P1", "channels": [],
                              "enabled": true});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let (s, r) = post(admin, &api("alert-rules"), body).await;
        assert_eq!(s, StatusCode::CREATED, "{r}");
    }
    let spec = lab.spec(small_spec("events")).await;
    let mut made = Vec::new();
    for (name, tag, cmd) in [
        // PID 1 itself grows past the 1 GB limit.
        ("hog", "gpudock-test/hog:1", "tail /dev/zero"),
        ("crasher", "gpudock-test/crasher:1", "sleep 1; exit 1"),
    ] {
        let address = image_running(&lab, tag, cmd);
        let (s, img) = post(
            admin,
            &api("images"),
            json!({"name": name, "address": address}),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{img}");
        let mut body = lab.create_body(spec, name);
        body["image_id"] = img["id"].clone();
        let (s, i) = post(admin, &api("instances"), body).await;
        assert_eq!(s, StatusCode::CREATED, "{i}");
        made.push(i);
    }
    let alert_of = async |rule: &str, i: &Value| -> Option<Value> {
        alerts_of(srv, admin, "")
            .await
            .into_iter()
            .find(|x| x["rule"] == rule && x["instance_id"] == i["id"])
    };
    let oom = poll("the OOM-kill alert", 90, async || {
        alert_of("oom", &made[0]).await
    })
    .await;
    assert_eq!(oom["event"], "instance_oom", "{oom}");
    assert_eq!(oom["instance_id"], made[0]["id"], "{oom}");
    let msg = oom["message"].as_str().unwrap();
    assert!(
        msg.contains("instance hog on node n1") && msg.contains("lack of memory"),
        "{oom}"
    );
    let looping = poll("the restart-loop alert", 90, async || {
        alert_of("loop", &made[1]).await
    })
    .await;
    assert_eq!(looping["event"], "instance_restart_loop", "{looping}");
    assert_eq!(looping["instance_id"], made[1]["id"], "{looping}");
    assert!(looping["value"].as_f64().unwrap() >= 2.0, "{looping}");
    assert!(
        looping["message"]
            .as_str()
            .unwrap()
            .contains("instance crasher on node n1"),
        "{looping}"
    );
    for i in &made {
        assert_eq!(lab.delete(&i["id"]).await, StatusCode::NO_CONTENT);
    }
}
