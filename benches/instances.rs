//! Figures for instances (printed, not asserted; `cargo bench --bench
//! instances`, needs root, docker.io and busybox-static like the tests):
//! 1. create latency, request to running, through gpudock's API against
//!    plain bollard create+start of the same container on the same daemon;
//! 2. the candidate-nodes query with 1,000 nodes and 20,000 instances in the
//!    database, in process and over HTTPS, against `GET /api/v1/me` (one
//!    authenticated read) on the same server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType, VolumeCreateRequest};
use bollard::query_parameters::{CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder};
use common::{Server, dockerd, get, post};
use serde_json::json;

const RUNS: usize = 15;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn p95(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[(v.len() * 95 / 100).min(v.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// Plain bollard: volume, create, start (the same limits, mount and TTY as
/// an instance), timed; removed after.
async fn plain_bollard(d: &dockerd::TestDaemon) -> Vec<Duration> {
    let ep = gpudock::docker::Endpoint {
        url: d.unix_url.clone(),
        tls: None,
    };
    let docker = gpudock::docker::connect(&ep, 30).unwrap();
    gpudock::docker::negotiate(&docker, 30).await.unwrap();
    let mut times = Vec::new();
    for n in 0..RUNS {
        let name = format!("bench-plain-{}-{n}", std::process::id());
        let started = Instant::now();
        docker
            .create_volume(VolumeCreateRequest {
                name: Some(format!("{name}-data")),
                ..Default::default()
            })
            .await
            .unwrap();
        let body = ContainerCreateBody {
            image: Some(dockerd::TEST_IMAGE.into()),
            tty: Some(true),
            open_stdin: Some(true),
            labels: Some(HashMap::from([("bench".to_string(), "1".to_string())])),
            host_config: Some(HostConfig {
                nano_cpus: Some(1_000_000_000),
                memory: Some(1 << 30),
                mounts: Some(vec![Mount {
                    typ: Some(MountType::VOLUME),
                    source: Some(format!("{name}-data")),
                    target: Some("/data".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let opts = CreateContainerOptionsBuilder::new().name(&name).build();
        let id = docker.create_container(Some(opts), body).await.unwrap().id;
        docker.start_container(&id, None).await.unwrap();
        times.push(started.elapsed());
        let rm = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        docker.remove_container(&id, Some(rm)).await.unwrap();
        docker
            .remove_volume(
                &format!("{name}-data"),
                None::<bollard::query_parameters::RemoveVolumeOptions>,
            )
            .await
            .unwrap();
    }
    times
}

/// gpudock: `POST /api/v1/instances` until it answers with the running
/// instance; deleted after.
async fn through_gpudock(
    srv: &Server,
    admin: &reqwest::Client,
    d: &dockerd::TestDaemon,
) -> Vec<Duration> {
    let (_, img) = post(
        admin,
        &srv.url("/api/v1/images"),
        json!({"name": "b", "address": dockerd::TEST_IMAGE}),
    )
    .await;
    let (_, spec) = post(
        admin,
        &srv.url("/api/v1/specs"),
        json!({"name": "s", "gpu_model": "x", "gpu_count": 0, "cpu_cores": 1, "memory_gb": 1, "data_disk_gb": 1}),
    )
    .await;
    let (_, node) = post(
        admin,
        &srv.url("/api/v1/nodes"),
        json!({"name": "bench", "public_ip": "127.0.0.1", "private_ip": "127.0.0.1", "docker_endpoint": d.unix_url,
               "tls_enabled": false, "cpu_cores": 64, "memory_gb": 256, "data_disk_gb": 1000}),
    )
    .await;
    post(
        admin,
        &srv.url(&format!("/api/v1/nodes/{}/test", node["id"])),
        json!({}),
    )
    .await;
    let mut times = Vec::new();
    for n in 0..RUNS {
        let body = json!({"image_id": img["id"], "spec_id": spec["id"], "node_id": node["id"], "name": format!("b{n}")});
        let started = Instant::now();
        let (s, i) = post(admin, &srv.url("/api/v1/instances"), body).await;
        times.push(started.elapsed());
        assert_eq!(
            (s.as_u16(), i["status"].as_str()),
            (201, Some("running")),
            "{i}"
        );
        let r = admin
            .delete(srv.url(&format!("/api/v1/instances/{}", i["id"])))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 204);
    }
    times
}

/// 1,000 listed online nodes (4 GPU models, 8 GPUs each) and 20,000
/// instances (20 per node, 1 GPU each), straight into the database.
fn seed(db: &std::path::Path) -> i64 {
    let mut c = rusqlite::Connection::open(db).unwrap();
    let tx = c.transaction().unwrap();
    tx.execute_batch(
        "INSERT INTO images (name, address, created_at, updated_at) VALUES ('seed', 'busybox', 0, 0);
         INSERT INTO specs (name, gpu_model, gpu_count, cpu_cores, memory_gb, system_disk_gb, data_disk_gb, created_at, updated_at)
           VALUES ('seed-4090x1', 'RTX 4090', 1, 2, 8, 50, 50, 0, 0);",
    )
    .unwrap();
    let spec = tx.last_insert_rowid();
    let models = [
        "NVIDIA GeForce RTX 4090",
        "NVIDIA A100-SXM4-80GB",
        "NVIDIA H100 80GB HBM3",
        "NVIDIA L40S",
    ];
    {
        let mut node = tx
            .prepare(
                "INSERT INTO nodes (name, public_ip, private_ip, gpu_name, gpu_count, cpu_cores, memory_gb, system_disk_gb,
                 data_disk_gb, status, created_at, updated_at) VALUES (?1, '10.0.0.1', '10.0.0.1', ?2, 32, 256, 2048, 8000, 20000, 'online', 0, 0)",
            )
            .unwrap();
        let mut inst = tx
            .prepare(
                "INSERT INTO instances (name, image_id, spec_id, node_id, user_id, status, container_id, gpu_indices, gpu_count,
                 cpu_cores, memory_gb, system_disk_gb, data_disk_gb, created_at, updated_at)
                 VALUES (?1, 1, ?2, ?3, 1, 'running', ?4, ?5, 1, 2, 8, 50, 50, 0, 0)",
            )
            .unwrap();
        for n in 0..1000 {
            node.execute(rusqlite::params![format!("seed-node-{n}"), models[n % 4]])
                .unwrap();
            let node_id = tx.last_insert_rowid();
            for k in 0..20 {
                inst.execute(rusqlite::params![
                    format!("seed-{n}-{k}"),
                    spec,
                    node_id,
                    format!("c{n}x{k}"),
                    format!("[{k}]")
                ])
                .unwrap();
            }
        }
    }
    tx.commit().unwrap();
    spec
}

async fn timed(c: &reqwest::Client, url: &str, runs: usize) -> (Vec<Duration>, serde_json::Value) {
    let mut times = Vec::new();
    let mut last = serde_json::Value::Null;
    for _ in 0..runs {
        let started = Instant::now();
        let (s, b) = get(c, url).await;
        times.push(started.elapsed());
        assert_eq!(s.as_u16(), 200, "{b}");
        last = b;
    }
    (times, last)
}

#[tokio::main]
async fn main() {
    let d = dockerd::shared();
    let srv = Server::start_with("[instances]\nstop_timeout_secs = 1\n");
    let admin = srv.admin().await;

    // Warm both paths once (image cache, connections), then measure.
    plain_bollard(d).await;
    let plain = plain_bollard(d).await;
    let ours = through_gpudock(&srv, &admin, d).await;
    println!("create latency, request to running ({RUNS} runs each, same daemon, sequential):");
    println!(
        "  plain bollard volume+create+start: median {}, p95 {}",
        ms(median(plain.clone())),
        ms(p95(plain.clone()))
    );
    println!(
        "  gpudock POST /api/v1/instances:    median {}, p95 {}",
        ms(median(ours.clone())),
        ms(p95(ours.clone()))
    );
    println!(
        "  ratio gpudock / plain (medians):   {:.2}",
        median(ours).as_secs_f64() / median(plain).as_secs_f64()
    );

    // Candidate nodes with 1,000 nodes and 20,000 instances: the seeded
    // database served in process (no health loop would mark the seeded
    // nodes, which have no daemon, unreachable).
    let mut srv = srv;
    srv.stop();
    let started = Instant::now();
    let spec = seed(&srv.data_dir().join("gpudock.db"));
    println!(
        "seeded 1,000 nodes and 20,000 instances in {}",
        ms(started.elapsed())
    );
    let config = gpudock::Config {
        data_dir: srv.data_dir(),
        ..gpudock::Config::default()
    };
    let app = gpudock::App::open(config).await.unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!(
        "https://127.0.0.1:{}",
        listener.local_addr().unwrap().port()
    );
    let cancel = app.cancel.clone();
    let stop = cancel.clone();
    let served = tokio::spawn(gpudock::server::serve(app.clone(), listener, async move {
        stop.cancelled().await
    }));
    let c = common::client_trusting(&srv.cert);
    let deadline = Instant::now() + Duration::from_secs(20);
    while c.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the in-process server did not answer"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (s, _) = post(
        &c,
        &format!("{base}/api/v1/auth/login"),
        json!({"username": "admin", "password": common::ADMIN_PASSWORD}),
    )
    .await;
    assert_eq!(s.as_u16(), 200);
    let url = format!("{base}/api/v1/instances/candidate-nodes?spec_id={spec}");
    timed(&c, &url, 5).await;
    let (cand, found) = timed(&c, &url, 50).await;
    let (me, _) = timed(&c, &format!("{base}/api/v1/me"), 50).await;
    println!(
        "candidate-nodes over HTTPS (50 runs, {} of 1,000 nodes returned):",
        found.as_array().unwrap().len()
    );
    println!(
        "  GET candidate-nodes: median {}, p95 {}",
        ms(median(cand.clone())),
        ms(p95(cand.clone()))
    );
    println!(
        "  GET /api/v1/me:      median {}, p95 {}",
        ms(median(me.clone())),
        ms(p95(me.clone()))
    );
    println!(
        "  ratio candidate-nodes / me (medians): {:.2}",
        median(cand).as_secs_f64() / median(me).as_secs_f64()
    );

    // The capacity snapshot query alone, in process.
    let mut q = Vec::new();
    for _ in 0..50 {
        let started = Instant::now();
        let n = app
            .db
            .read(|c| {
                gpudock::instances::store::snapshots(c, None).map_err(gpudock::db::DbError::from)
            })
            .await
            .unwrap()
            .len();
        q.push(started.elapsed());
        assert!(n >= 1000, "{n} nodes");
    }
    println!(
        "  capacity snapshot query alone: median {}, p95 {}",
        ms(median(q.clone())),
        ms(p95(q))
    );
    cancel.cancel();
    served.await.unwrap().unwrap();
}
