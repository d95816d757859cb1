//! Instances over the real server and a real dockerd: candidate nodes for a
//! product spec (listed, online, GPU model and every resource checked).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::dockerd;
use common::{Server, code, get, make_tenant, make_user, post};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn node(
    srv: &Server,
    admin: &reqwest::Client,
    name: &str,
    endpoint: &str,
    gpu: &str,
    listed: bool,
) -> i64 {
    let (s, n) = post(
        admin,
        &srv.url("/api/v1/nodes"),
        json!({"name": name, "public_ip": "127.0.0.1", "private_ip": "127.0.0.1", "docker_endpoint": endpoint,
               "tls_enabled": false, "gpu_name": gpu, "gpu_count": 8, "cpu_cores": 16, "memory_gb": 64,
               "system_disk_gb": 1000, "data_disk_gb": 1000, "listed": listed}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{n}");
    let id = n["id"].as_i64().unwrap();
    post(
        admin,
        &srv.url(&format!("/api/v1/nodes/{id}/test")),
        json!({}),
    )
    .await;
    id
}

fn ids(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|c| c["node_id"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn candidate_nodes_are_listed_online_matching_and_with_room() {
    let d = dockerd::shared();
    let srv = Server::start();
    let admin = srv.admin().await;
    let good = node(
        &srv,
        &admin,
        "good",
        &d.unix_url,
        "NVIDIA GeForce RTX 4090",
        true,
    )
    .await;
    node(
        &srv,
        &admin,
        "a100",
        &d.unix_url,
        "NVIDIA A100-SXM4-80GB",
        true,
    )
    .await;
    node(
        &srv,
        &admin,
        "unlisted",
        &d.unix_url,
        "NVIDIA GeForce RTX 4090",
        false,
    )
    .await;
    node(
        &srv,
        &admin,
        "down",
        "tcp://127.0.0.1:1",
        "NVIDIA GeForce RTX 4090",
        true,
    )
    .await;

    let spec = |body: Value| {
        let (srv, admin) = (&srv, &admin);
        async move {
            let (s, b) = post(admin, &srv.url("/api/v1/specs"), body).await;
            assert_eq!(s, StatusCode::CREATED, "{b}");
            b["id"].as_i64().unwrap()
        }
    };
    let fits = spec(json!({"name": "4090x2", "gpu_model": "RTX 4090", "gpu_count": 2, "cpu_cores": 2, "memory_gb": 4, "system_disk_gb": 50, "data_disk_gb": 50})).await;
    let too_big = spec(json!({"name": "4090x9", "gpu_model": "RTX 4090", "gpu_count": 9})).await;
    let too_much_disk = spec(
        json!({"name": "disk", "gpu_model": "RTX 4090", "gpu_count": 1, "data_disk_gb": 1001}),
    )
    .await;
    let hidden =
        spec(json!({"name": "hidden", "gpu_model": "RTX 4090", "gpu_count": 1, "listed": false}))
            .await;

    let url = |id: i64| srv.url(&format!("/api/v1/instances/candidate-nodes?spec_id={id}"));
    let (s, c) = get(&admin, &url(fits)).await;
    assert_eq!(s, StatusCode::OK, "{c}");
    assert_eq!(ids(&c), [good]);
    assert_eq!(
        c[0]["free"],
        json!({"gpus": 8, "cpu_cores": 16, "memory_gb": 64, "system_disk_gb": 1000, "data_disk_gb": 1000})
    );
    assert!(
        c[0].get("public_ip").is_none(),
        "no node details beyond name, GPU and free capacity"
    );
    assert_eq!(ids(&get(&admin, &url(too_big)).await.1), Vec::<i64>::new());
    assert_eq!(
        ids(&get(&admin, &url(too_much_disk)).await.1),
        Vec::<i64>::new()
    );

    let (s, b) = get(&admin, &srv.url("/api/v1/instances/candidate-nodes")).await;
    assert_eq!(
        (s, b["error"]["fields"]["spec_id"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("required"))
    );

    // Customers may ask, for listed specs only.
    let t = make_tenant(&srv, &admin, "INS").await;
    let (_, member) = make_user(
        &srv,
        &admin,
        "insm",
        "customer_member",
        Some(t),
        "Harvest-Quill-Beacon-64",
    )
    .await;
    let (s, c) = get(&member, &url(fits)).await;
    assert_eq!((s, ids(&c)), (StatusCode::OK, vec![good]));
    let (s, b) = get(&member, &url(hidden)).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(code(&b), "validation_failed");
    let (s, _) = get(&admin, &url(hidden)).await;
    assert_eq!(s, StatusCode::OK);
}
