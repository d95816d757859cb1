//! Instances over the real server and a real dockerd: candidate nodes, the
//! containers behind instances (limits, volume, labels verified by
//! inspecting them), the disk-quota fallback, a GPU spec on a node without
//! the NVIDIA runtime, concurrent creates against a small node, delete (also
//! while the node is unreachable), lifecycle, logs, status through the event
//! stream and after a restart, orphans, and scoping for all three roles.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::dockerd::{self, docker_cli};
use common::lab::{FAST_STOP, Lab, small_spec};
use common::{Server, code, get, make_tenant, make_user, patch, post, send, text};
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
    let (s, b) = get(
        &admin,
        &srv.url("/api/v1/instances/candidate-nodes?spec_id=x"),
    )
    .await;
    assert_eq!(
        (s, b["error"]["fields"]["spec_id"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("must be a whole number")
        )
    );
    // The wizard, its spec choice cleared again: no nodes, no error.
    let r = admin
        .get(srv.url("/api/v1/instances/candidate-nodes?spec_id="))
        .header("hx-request", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let options = r.text().await.unwrap();
    assert!(
        options.contains("<option value=\"\">") && !options.contains("good"),
        "{options}"
    );
    // The same with a spec: the node, as an option.
    let r = admin
        .get(url(fits))
        .header("hx-request", "true")
        .send()
        .await
        .unwrap();
    let options = r.text().await.unwrap();
    assert!(
        options.contains(&format!("<option value=\"{good}\"")),
        "{options}"
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

/// Polls `GET /api/v1/instances/{id}` until its status is `want`; the time
/// it took.
async fn wait_status(
    c: &reqwest::Client,
    srv: &Server,
    id: i64,
    want: &str,
    within: Duration,
) -> Duration {
    let started = Instant::now();
    let mut last = Value::Null;
    while started.elapsed() < within {
        let (s, b) = get(c, &srv.url(&format!("/api/v1/instances/{id}"))).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        if b["status"] == want {
            return started.elapsed();
        }
        last = b;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "instance {id} not {want} within {within:?}: {last}\n{}",
        srv.logs()
    );
}

#[tokio::test]
async fn create_runs_a_container_with_exactly_the_specs_limits_and_a_data_volume() {
    let lab = Lab::new(FAST_STOP, 16).await;
    let spec = lab.spec(small_spec("1c1g")).await;
    let mut body = lab.create_body(spec, "alpha");
    body["user_id"] = json!(999);
    body["remark"] = json!("first one");
    // The owner is not the body's to say: a user_id is refused by name.
    let (s, i) = lab.post("/api/v1/instances", body.clone()).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{i}");
    assert!(i["error"]["fields"]["user_id"].is_string(), "{i}");
    body.as_object_mut().unwrap().remove("user_id");
    let (s, i) = lab.post("/api/v1/instances", body).await;
    assert_eq!(s, StatusCode::CREATED, "{i}");
    let (_, me) = lab.get("/api/v1/me").await;
    assert_eq!(
        i["user_id"], me["user"]["id"],
        "the owner comes from the session: {i}"
    );
    for key in [
        "id",
        "name",
        "image_id",
        "spec_id",
        "node_id",
        "user_id",
        "tenant_id",
        "container_id",
        "status",
        "gpu_indices",
        "warnings",
        "remark",
        "created_at",
    ] {
        assert!(i.get(key).is_some(), "no {key} in {i}");
    }
    assert_eq!(
        (i["status"].as_str(), i["remark"].as_str()),
        (Some("running"), Some("first one"))
    );
    assert_eq!(i["gpu_indices"], json!([]));

    // The daemon has the limits, the volume at /data and the labels.
    let cid = i["container_id"].as_str().unwrap();
    let c = lab.inspect("container", cid).unwrap();
    assert_eq!(c["State"]["Status"], "running");
    assert_eq!(c["HostConfig"]["NanoCpus"], 1_000_000_000i64);
    assert_eq!(c["HostConfig"]["Memory"], 1i64 << 30);
    assert_eq!(c["Config"]["Tty"], true);
    assert_eq!(c["Config"]["OpenStdin"], true);
    let id = i["id"].as_i64().unwrap();
    let labels = &c["Config"]["Labels"];
    assert_eq!(labels["gpudock.instance"], id.to_string());
    assert_eq!(labels["gpudock.node"], lab.node.to_string());
    let install = labels["gpudock.install"].as_str().unwrap().to_string();
    assert_eq!(install.len(), 8, "{labels}");
    let mount = c["Mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["Destination"] == "/data")
        .unwrap_or_else(|| panic!("no /data mount: {}", c["Mounts"]))
        .clone();
    assert_eq!(mount["Type"], "volume");
    let volume = mount["Name"].as_str().unwrap().to_string();
    assert!(lab.inspect("volume", &volume).is_some());

    // This daemon (overlay2 on ext4) cannot enforce the system disk size:
    // the container was made without it, and the instance says so.
    assert!(
        c["HostConfig"]["StorageOpt"].is_null(),
        "{}",
        c["HostConfig"]
    );
    let w = i["warnings"].as_array().unwrap();
    assert_eq!(w.len(), 1, "{i}");
    assert_eq!(w[0]["code"], "system_disk_not_enforced");
    assert!(
        w[0]["detail"]
            .as_str()
            .unwrap()
            .contains("--storage-opt is supported only for overlay over xfs"),
        "{w:?}"
    );
    // ... also on the instance page.
    let page = lab
        .admin
        .get(lab.srv.url(&format!("/instances/{id}")))
        .send()
        .await
        .unwrap();
    let html = page.text().await.unwrap();
    assert!(html.contains("class=\"notice warning\""), "{html}");

    // Logs: the shell's prompt is there; followed, new output arrives.
    let r = lab
        .admin
        .get(lab.srv.url(&format!("/api/v1/instances/{id}/logs")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("BusyBox"),
        "no shell banner in the logs: {text:?}"
    );
    let mut follow = lab
        .admin
        .get(
            lab.srv
                .url(&format!("/api/v1/instances/{id}/logs?follow=1&tail=0")),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(follow.status(), StatusCode::OK);
    let out = lab.docker(&[
        "exec",
        cid,
        "sh",
        "-c",
        "echo followed-line-7 > /proc/1/fd/1",
    ]);
    assert!(out.status.success(), "{out:?}");
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !seen.contains("followed-line-7") && Instant::now() < deadline {
        let chunk = tokio::time::timeout(Duration::from_secs(10), follow.chunk())
            .await
            .unwrap()
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
    }
    assert!(seen.contains("followed-line-7"), "{seen:?}");
    drop(follow);

    // Lifecycle: stop (关闭), start, restart.
    let url = |op: &str| lab.srv.url(&format!("/api/v1/instances/{id}/{op}"));
    let (s, b) = post(&lab.admin, &url("stop"), json!({})).await;
    assert_eq!(
        (s, b["status"].as_str()),
        (StatusCode::OK, Some("exited")),
        "{b}"
    );
    assert_eq!(
        lab.inspect("container", cid).unwrap()["State"]["Status"],
        "exited"
    );
    let (s, b) = post(&lab.admin, &url("start"), json!({})).await;
    assert_eq!(
        (s, b["status"].as_str()),
        (StatusCode::OK, Some("running")),
        "{b}"
    );
    let started_at = lab.inspect("container", cid).unwrap()["State"]["StartedAt"].clone();
    let (s, b) = post(&lab.admin, &url("restart"), json!({})).await;
    assert_eq!(
        (s, b["status"].as_str()),
        (StatusCode::OK, Some("running")),
        "{b}"
    );
    assert_ne!(
        lab.inspect("container", cid).unwrap()["State"]["StartedAt"],
        started_at
    );

    // Delete removes the container and its volume, then the row.
    assert_eq!(lab.delete(&json!(id)).await, StatusCode::NO_CONTENT);
    assert!(
        lab.inspect("container", cid).is_none(),
        "container left behind"
    );
    assert!(
        lab.inspect("volume", &volume).is_none(),
        "volume left behind"
    );
    let (s, _) = lab.get(&format!("/api/v1/instances/{id}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Every operation was audited.
    let (_, a) = lab
        .get("/api/v1/audit?action=instance.&resource_type=instance&limit=100")
        .await;
    let actions: Vec<&str> = a
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    for want in [
        "instance.create",
        "instance.stop",
        "instance.start",
        "instance.restart",
        "instance.delete",
    ] {
        assert!(actions.contains(&want), "{want} not audited: {actions:?}");
    }
    // The container that the delete removed was expected to go: it is not
    // also reported as missing.
    assert!(
        !actions.contains(&"instance.missing"),
        "a delete audited as missing: {actions:?}"
    );
}

/// Names of the containers and volumes on the daemon for instance `id` of
/// this installation.
fn leftovers(lab: &Lab, install_hint: &str) -> (String, String) {
    let ps = lab.docker(&[
        "ps",
        "-a",
        "--format",
        "{{.Names}}",
        "--filter",
        &format!("name={install_hint}"),
    ]);
    let vols = lab.docker(&[
        "volume",
        "ls",
        "--format",
        "{{.Name}}",
        "--filter",
        &format!("name={install_hint}"),
    ]);
    (
        String::from_utf8_lossy(&ps.stdout).trim().to_string(),
        String::from_utf8_lossy(&vols.stdout).trim().to_string(),
    )
}

/// This server's install id, read off a throwaway instance's labels.
async fn install_id(lab: &Lab, spec: i64) -> String {
    let (s, i) = lab
        .post("/api/v1/instances", lab.create_body(spec, "probe"))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{i}");
    let c = lab
        .inspect("container", i["container_id"].as_str().unwrap())
        .unwrap();
    let install = c["Config"]["Labels"]["gpudock.install"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(lab.delete(&i["id"]).await, StatusCode::NO_CONTENT);
    install
}

#[tokio::test]
async fn a_gpu_spec_on_a_node_without_the_nvidia_runtime_fails_cleanly() {
    let lab = Lab::new(FAST_STOP, 16).await;
    let plain = lab.spec(small_spec("plain")).await;
    let install = install_id(&lab, plain).await;
    let gpu = lab
        .spec(json!({"name": "4090x2", "gpu_model": "RTX 4090", "gpu_count": 2, "cpu_cores": 1, "memory_gb": 1}))
        .await;
    let (s, b) = lab
        .post("/api/v1/instances", lab.create_body(gpu, "gpu"))
        .await;
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{b}");
    assert_eq!(code(&b), "docker_error", "{b}");
    let msg = b["error"]["message"].as_str().unwrap();
    assert!(msg.contains("no NVIDIA container runtime"), "{msg}");
    assert!(msg.contains("could not select device driver"), "{msg}");
    // Nothing left behind: no container, no volume, no reservation.
    assert_eq!(
        leftovers(&lab, &format!("gpudock-{install}-")),
        (String::new(), String::new())
    );
    let (_, list) = lab.get("/api/v1/instances").await;
    assert_eq!(list, json!([]));
    let (_, c) = lab
        .get(&format!("/api/v1/instances/candidate-nodes?spec_id={gpu}"))
        .await;
    assert_eq!(c[0]["free"]["gpus"], 8, "the GPUs are free again: {c}");
    assert_eq!(
        lab.audited("action=instance.create&outcome=failure").await,
        1
    );

    // An image that is not on the node and cannot be pulled: the same.
    let (s, b) = lab
        .post(
            "/api/v1/images",
            json!({"name": "nowhere", "address": "127.0.0.1:9/gpudock/missing:1"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let mut body = lab.create_body(plain, "nopull");
    body["image_id"] = b["id"].clone();
    let (s, b) = lab.post("/api/v1/instances", body).await;
    assert_eq!(
        (s, code(&b)),
        (StatusCode::BAD_GATEWAY, "docker_error"),
        "{b}"
    );
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("pulling it failed"),
        "{b}"
    );
    assert_eq!(
        leftovers(&lab, &format!("gpudock-{install}-")),
        (String::new(), String::new())
    );
}

#[tokio::test]
async fn twelve_concurrent_creates_on_a_node_with_room_for_three() {
    let lab = Lab::new(FAST_STOP, 3).await;
    let spec = lab.spec(small_spec("1c")).await;
    let calls = (0..12).map(|n| {
        let (c, url, body) = (
            lab.admin.clone(),
            lab.srv.url("/api/v1/instances"),
            lab.create_body(spec, &format!("c{n}")),
        );
        tokio::spawn(async move { post(&c, &url, body).await })
    });
    let mut created = Vec::new();
    let mut refused = Vec::new();
    for call in calls {
        let (s, b) = call.await.unwrap();
        match s {
            StatusCode::CREATED => created.push(b),
            StatusCode::CONFLICT => refused.push(b),
            other => panic!("unexpected {other}: {b}"),
        }
    }
    assert_eq!((created.len(), refused.len()), (3, 9));
    for b in &refused {
        assert_eq!(code(b), "conflict");
        let why = b["error"]["fields"]["node_id"].as_str().unwrap();
        assert!(
            why.contains("no room") && why.contains("cpu_cores"),
            "{why}"
        );
    }
    for b in &created {
        assert_eq!(b["status"], "running", "{b}");
    }
    let (_, list) = lab.get("/api/v1/instances").await;
    assert_eq!(list.as_array().unwrap().len(), 3);
    let (_, c) = lab
        .get(&format!("/api/v1/instances/candidate-nodes?spec_id={spec}"))
        .await;
    assert_eq!(c, json!([]), "the node is full");
    for b in &created {
        assert_eq!(lab.delete(&b["id"]).await, StatusCode::NO_CONTENT);
    }
}

#[tokio::test]
async fn delete_while_the_node_is_unreachable_fails_and_keeps_the_instance() {
    let lab = Lab::new(FAST_STOP, 16).await;
    let spec = lab.spec(small_spec("s")).await;
    let (s, i) = lab
        .post("/api/v1/instances", lab.create_body(spec, "keep"))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{i}");
    let (id, cid) = (
        i["id"].as_i64().unwrap(),
        i["container_id"].as_str().unwrap().to_string(),
    );
    // The node's daemon goes away (here: its endpoint now leads nowhere).
    let node_url = lab.srv.url(&format!("/api/v1/nodes/{}", lab.node));
    let (s, b) = patch(
        &lab.admin,
        &node_url,
        json!({"docker_endpoint": "tcp://127.0.0.1:1"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let url = lab.srv.url(&format!("/api/v1/instances/{id}"));
    let (s, b) = send(&lab.admin, "DELETE", &url, Some(json!({}))).await;
    assert_eq!(
        (s, code(&b)),
        (StatusCode::BAD_GATEWAY, "node_unreachable"),
        "{b}"
    );
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("connection refused to 127.0.0.1:1"),
        "{b}"
    );
    let (s, kept) = get(&lab.admin, &url).await;
    assert_eq!(
        (s, kept["container_id"].as_str()),
        (StatusCode::OK, Some(cid.as_str()))
    );
    assert!(lab.inspect("container", &cid).is_some());
    assert_eq!(
        lab.audited("action=instance.delete&outcome=failure").await,
        1
    );
    // Once the node is known unreachable, nobody is told the container
    // still runs: its state is unknown (on the page too).
    let test_url = lab.srv.url(&format!("/api/v1/nodes/{}/test", lab.node));
    let (_, t) = post(&lab.admin, &test_url, json!({})).await;
    assert_eq!(t["ok"], false, "{t}");
    let (_, shown) = get(&lab.admin, &url).await;
    assert_eq!(shown["status"], "unknown", "{shown}");
    let page = common::text(&lab.admin, &lab.srv.url(&format!("/instances/{id}"))).await;
    assert!(page.contains("data-status=\"unknown\""), "{page}");
    // Back online, the delete goes through.
    let (s, _) = patch(
        &lab.admin,
        &node_url,
        json!({"docker_endpoint": lab.d.unix_url}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (_, t) = post(&lab.admin, &test_url, json!({})).await;
    assert_eq!(t["ok"], true, "{t}");
    let (_, shown) = get(&lab.admin, &url).await;
    assert_eq!(shown["status"], "running", "{shown}");
    let (s, b) = send(&lab.admin, "DELETE", &url, Some(json!({}))).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    assert!(lab.inspect("container", &cid).is_none());
}

#[tokio::test]
async fn changes_made_with_the_docker_cli_show_through_the_event_stream() {
    // Reconciling only every 5 minutes: what follows is the event stream.
    let lab = Lab::new(
        "[instances]\nreconcile_interval_secs = 300\nstop_timeout_secs = 1\n",
        16,
    )
    .await;
    let spec = lab.spec(small_spec("s")).await;
    let (s, i) = lab
        .post("/api/v1/instances", lab.create_body(spec, "watched"))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{i}");
    let (id, cid) = (
        i["id"].as_i64().unwrap(),
        i["container_id"].as_str().unwrap().to_string(),
    );
    let within = Duration::from_secs(5);
    let out = lab.docker(&["stop", "-t", "1", &cid]);
    assert!(out.status.success(), "{out:?}");
    let took = wait_status(&lab.admin, &lab.srv, id, "exited", within).await;
    eprintln!("docker stop -> exited after {took:?}");
    lab.docker(&["start", &cid]);
    wait_status(&lab.admin, &lab.srv, id, "running", within).await;
    lab.docker(&["rm", "-f", &cid]);
    wait_status(&lab.admin, &lab.srv, id, "missing", within).await;
    assert_eq!(lab.audited("action=instance.missing").await, 1);
    // A missing instance can still be deleted (its volume goes too).
    assert_eq!(lab.delete(&json!(id)).await, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn after_a_restart_status_is_reconciled_and_unknown_containers_are_reported() {
    let lab = Lab::new(FAST_STOP, 16).await;
    let spec = lab.spec(small_spec("s")).await;
    let mut ids = Vec::new();
    for name in ["stopped-while-down", "removed-while-down"] {
        let (s, i) = lab
            .post("/api/v1/instances", lab.create_body(spec, name))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{i}");
        ids.push((
            i["id"].as_i64().unwrap(),
            i["container_id"].as_str().unwrap().to_string(),
        ));
    }
    let install =
        lab.inspect("container", &ids[0].1).unwrap()["Config"]["Labels"]["gpudock.install"]
            .as_str()
            .unwrap()
            .to_string();
    let Lab {
        srv,
        admin: _,
        d,
        image,
        node,
    } = lab;
    let mut srv = srv;
    srv.stop();
    // While gpudock is down: one container stopped, one removed, and one
    // made by hand with this installation's labels for an instance that
    // does not exist.
    let lab_cli = |args: &[&str]| docker_cli(d, args);
    assert!(lab_cli(&["stop", "-t", "1", &ids[0].1]).status.success());
    assert!(lab_cli(&["rm", "-f", &ids[1].1]).status.success());
    let stray = format!("stray-{install}");
    let out = lab_cli(&[
        "create",
        "--name",
        &stray,
        "--label",
        &format!("gpudock.install={install}"),
        "--label",
        "gpudock.instance=999",
        "--label",
        &format!("gpudock.node={node}"),
        dockerd::TEST_IMAGE,
    ]);
    assert!(out.status.success(), "{out:?}");
    let srv = srv.restart("");
    let (c, s, _) = srv.login("admin", common::ADMIN_PASSWORD).await;
    assert_eq!(s, StatusCode::OK);
    wait_status(&c, &srv, ids[0].0, "exited", Duration::from_secs(20)).await;
    wait_status(&c, &srv, ids[1].0, "missing", Duration::from_secs(20)).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let orphans = loop {
        let (s, o) = get(&c, &srv.url("/api/v1/instances/orphans")).await;
        assert_eq!(s, StatusCode::OK, "{o}");
        if !o.as_array().unwrap().is_empty() || Instant::now() > deadline {
            break o;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(orphans.as_array().unwrap().len(), 1, "{orphans}");
    assert_eq!(
        (
            orphans[0]["name"].as_str(),
            orphans[0]["instance_label"].as_str()
        ),
        (Some(stray.as_str()), Some("999"))
    );
    // Reported, not removed.
    assert!(
        lab_cli(&["inspect", &stray]).status.success(),
        "the stray container was removed"
    );
    let (_, a) = get(&c, &srv.url("/api/v1/audit?action=instance.orphan_found")).await;
    assert_eq!(a.as_array().unwrap().len(), 1, "{a}");
    let html = common::text(&c, &srv.url("/instances")).await;
    assert!(
        html.contains(&stray),
        "the orphan is not on the instances page"
    );
    lab_cli(&["rm", "-f", &stray]);
    let _ = image;
    for (id, _) in ids {
        let (s, b) = send(
            &c,
            "DELETE",
            &srv.url(&format!("/api/v1/instances/{id}")),
            Some(json!({})),
        )
        .await;
        assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    }
}

#[tokio::test]
async fn each_role_reaches_exactly_its_instances_on_every_route() {
    let lab = Lab::new(FAST_STOP, 16).await;
    let spec = lab.spec(small_spec("s")).await;
    let (srv, admin) = (&lab.srv, &lab.admin);
    let ta = make_tenant(srv, admin, "TA").await;
    let tb = make_tenant(srv, admin, "TB").await;
    let (_, oa) = make_user(
        srv,
        admin,
        "oa",
        "customer_owner",
        Some(ta),
        "Copper-Meadow-Falcon-41!",
    )
    .await;
    let (ma1_id, ma1) = make_user(
        srv,
        admin,
        "ma1",
        "customer_member",
        Some(ta),
        "Velvet-Canyon-Harbor-58!",
    )
    .await;
    let (_, ma2) = make_user(
        srv,
        admin,
        "ma2",
        "customer_member",
        Some(ta),
        "Saffron-Glacier-Pilot-36!",
    )
    .await;
    let (_, ob) = make_user(
        srv,
        admin,
        "ob",
        "customer_owner",
        Some(tb),
        "Amber-Tundra-Signal-72!",
    )
    .await;
    let (_, mb) = make_user(
        srv,
        admin,
        "mb",
        "customer_member",
        Some(tb),
        "Orchid-Basalt-Ferry-19!",
    )
    .await;

    // A member creates; a user_id in the body is refused, not obeyed.
    let mut body = lab.create_body(spec, "mine");
    body["user_id"] = json!(1);
    let (s, x) = post(&ma1, &srv.url("/api/v1/instances"), body.clone()).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{x}");
    body.as_object_mut().unwrap().remove("user_id");
    let (s, x) = post(&ma1, &srv.url("/api/v1/instances"), body).await;
    assert_eq!(s, StatusCode::CREATED, "{x}");
    assert_eq!(
        (x["user_id"].as_i64(), x["tenant_id"].as_i64()),
        (Some(ma1_id), Some(ta))
    );
    let id = x["id"].as_i64().unwrap();

    let ids = |v: &Value| {
        v.as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_i64().unwrap())
            .collect::<Vec<_>>()
    };
    for (who, c, sees) in [
        ("admin", admin, true),
        ("oa", &oa, true),
        ("ma1", &ma1, true),
        ("ma2", &ma2, false),
        ("ob", &ob, false),
        ("mb", &mb, false),
    ] {
        let (s, l) = get(c, &srv.url("/api/v1/instances")).await;
        assert_eq!(s, StatusCode::OK, "{who}: {l}");
        assert_eq!(ids(&l), if sees { vec![id] } else { vec![] }, "{who}");
        for (method, path) in [
            ("GET", format!("/api/v1/instances/{id}")),
            ("GET", format!("/api/v1/instances/{id}/logs")),
            ("POST", format!("/api/v1/instances/{id}/stop")),
            ("POST", format!("/api/v1/instances/{id}/start")),
            ("POST", format!("/api/v1/instances/{id}/restart")),
            ("GET", format!("/instances/{id}")),
        ] {
            let r = c.request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                srv.url(&path),
            );
            let r = if method == "POST" {
                r.json(&json!({}))
            } else {
                r
            };
            let s = r.send().await.unwrap().status();
            let want = if sees {
                StatusCode::OK
            } else {
                StatusCode::NOT_FOUND
            };
            assert_eq!(s, want, "{who}: {method} {path}");
        }
        if !sees {
            let (s, b) = send(
                c,
                "DELETE",
                &srv.url(&format!("/api/v1/instances/{id}")),
                Some(json!({})),
            )
            .await;
            assert_eq!(
                s,
                StatusCode::NOT_FOUND,
                "{who} reached another's instance: {b}"
            );
        }
    }
    // Search and filters narrow a list within its scope, never beyond it.
    let (s, x) = post(
        &mb,
        &srv.url("/api/v1/instances"),
        lab.create_body(spec, "THEIRS-mine"),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{x}");
    let theirs = x["id"].as_i64().unwrap();
    wait_status(admin, srv, id, "running", Duration::from_secs(60)).await;
    wait_status(admin, srv, theirs, "running", Duration::from_secs(60)).await;
    let found = |c: &'static str| srv.url(&format!("/api/v1/instances?{c}"));
    for (who, c, query, want) in [
        ("admin", admin, "q=MINE", vec![id, theirs]),
        ("admin", admin, "q=theirs", vec![theirs]),
        ("admin", admin, "q=ma1", vec![id]),
        ("admin", admin, "q=%25", vec![]),
        ("admin", admin, "q=_", vec![]),
        ("admin", admin, "q=mine&status=running", vec![id, theirs]),
        ("admin", admin, "q=mine&status=exited", vec![]),
        ("ob", &ob, "q=mine", vec![theirs]),
        ("ob", &ob, "q=ma1", vec![]),
        ("ma2", &ma2, "q=mine", vec![]),
    ] {
        let (s, l) = get(c, &found(query)).await;
        assert_eq!(s, StatusCode::OK, "{who} {query}: {l}");
        assert_eq!(ids(&l), want, "{who} {query}");
    }
    // A status without text (the statement without the name search).
    let (_, running) = get(&ob, &found("status=running")).await;
    let (_, exited) = get(&ob, &found("status=exited")).await;
    assert!(ids(&running).contains(&theirs), "{running}");
    assert!(!ids(&exited).contains(&theirs), "{exited}");
    let (s, b) = get(admin, &found("status=sleeping")).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert!(b.to_string().contains("status"), "{b}");
    // The page shows the same rows, and its pager and refresh keep the search.
    let page = text(&ob, &srv.url("/instances?q=mine")).await;
    assert!(
        page.contains(&format!("id=\"instance-{theirs}\"")),
        "{page}"
    );
    assert!(!page.contains(&format!("id=\"instance-{id}\"")), "{page}");
    assert!(
        page.contains("q=mine"),
        "the refresh keeps the search: {page}"
    );
    // Users: owners search their tenant only; a status narrows.
    let names = |v: &Value| {
        let mut n: Vec<String> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["username"].as_str().unwrap().to_string())
            .collect();
        n.sort();
        n
    };
    let (_, l) = get(&oa, &srv.url("/api/v1/users?q=M")).await;
    assert_eq!(names(&l), ["ma1", "ma2"]);
    let (_, l) = get(admin, &srv.url("/api/v1/users?q=B&status=enabled")).await;
    assert_eq!(names(&l), ["mb", "ob"]);
    let (_, l) = get(admin, &srv.url("/api/v1/users?q=b&status=disabled")).await;
    assert_eq!(names(&l), Vec::<String>::new());
    let (s, _) = get(admin, &srv.url("/api/v1/users?status=gone")).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    // Nodes: by name or endpoint, and by status; the page shows what is free.
    let (_, n) = get(admin, &srv.url(&format!("/api/v1/nodes/{}", lab.node))).await;
    let name = n["name"].as_str().unwrap().to_string();
    let (_, l) = get(
        admin,
        &srv.url(&format!("/api/v1/nodes?q={name}&status=online")),
    )
    .await;
    assert_eq!(ids(&l), vec![lab.node]);
    let (_, l) = get(admin, &srv.url("/api/v1/nodes?q=no-such-node")).await;
    assert_eq!(ids(&l), Vec::<i64>::new());
    let page = text(admin, &srv.url(&format!("/nodes?q={name}"))).await;
    assert!(page.contains("class=\"node-free\""), "{page}");
    // Orphans are for admins only.
    for c in [&oa, &ma1] {
        let (s, _) = get(c, &srv.url("/api/v1/instances/orphans")).await;
        assert_eq!(s, StatusCode::FORBIDDEN);
    }
    // Answers kept in memory are never stale: a permission taken from the
    // member's role refuses the very next list (API and page), given back
    // it serves the next one again.
    let (_, perms) = get(admin, &srv.url("/api/v1/permissions")).await;
    let record = |m: &str, p: &str| {
        perms
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["method"] == m && r["path_pattern"] == p)
            .unwrap()["id"]
            .as_i64()
            .unwrap()
    };
    let records = [
        record("GET", "/api/v1/instances"),
        record("GET", "/instances"),
    ];
    let status = |c: &reqwest::Client, path: &str| {
        let (c, url) = (c.clone(), srv.url(path));
        async move { c.get(url).send().await.unwrap().status() }
    };
    let row = format!("id=\"instance-{id}\"");
    for _ in 0..3 {
        let (s, l) = get(&ma1, &srv.url("/api/v1/instances")).await;
        assert_eq!((s, ids(&l)), (StatusCode::OK, vec![id]));
        assert!(text(&ma1, &srv.url("/instances")).await.contains(&row));
    }
    for (method, want) in [("DELETE", StatusCode::FORBIDDEN), ("PUT", StatusCode::OK)] {
        for r in records {
            let url = srv.url(&format!("/api/v1/permissions/customer_member/{r}"));
            let (s, b) = send(admin, method, &url, Some(json!({}))).await;
            assert_eq!(s, StatusCode::OK, "{method} {r}: {b}");
        }
        assert_eq!(
            status(&ma1, "/api/v1/instances").await,
            want,
            "after {method}"
        );
        assert_eq!(status(&ma1, "/instances").await, want, "after {method}");
        assert_eq!(status(&oa, "/api/v1/instances").await, StatusCode::OK);
    }
    // The tenant's owner may delete the member's instance; it is gone from
    // the next list of everyone who saw it (API and page).
    let (_, me) = get(&oa, &srv.url("/api/v1/me")).await;
    let r = oa
        .delete(srv.url(&format!("/api/v1/instances/{id}")))
        .header("x-csrf-token", me["csrf_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    for (who, c) in [("admin", admin), ("oa", &oa), ("ma1", &ma1)] {
        let (s, l) = get(c, &srv.url("/api/v1/instances")).await;
        assert_eq!(s, StatusCode::OK, "{who}");
        let listed: Vec<i64> = l
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_i64().unwrap())
            .collect();
        assert!(!listed.contains(&id), "{who}: {listed:?}");
        assert!(
            !text(c, &srv.url("/instances")).await.contains(&row),
            "{who}"
        );
    }
}

/// GPU-exact placement under concurrency, in process against the real
/// reservation path: every instance gets its own GPU indices, and no more
/// are handed out than the node has.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_reservations_get_distinct_gpu_indices() {
    use gpudock::instances::lifecycle;

    let dir = tempfile::tempdir().unwrap();
    let (app, me) = common::in_process_admin(dir.path()).await;
    let (image, spec, node) = fake_gpu_node(
        &app,
        &me,
        json!({"name": "x3", "gpu_model": "H100", "gpu_count": 3, "cpu_cores": 1, "memory_gb": 1}),
    )
    .await;
    let tries = (0..6).map(|n| {
        let (app, me) = (app.clone(), me.clone());
        let input = reserve_input(image, spec, node, &format!("r{n}"));
        tokio::spawn(async move { lifecycle::reserve(&app, &me, input).await })
    });
    let mut got = Vec::new();
    let mut refused = 0;
    for t in tries {
        match t.await.unwrap() {
            Ok(r) => got.push(r.gpus),
            Err(e) => {
                assert_eq!(e.status(), StatusCode::CONFLICT, "{e}");
                refused += 1;
            }
        }
    }
    // 8 GPUs hold two instances of 3; the third would need 3 of the 2 left.
    assert_eq!((got.len(), refused), (2, 4), "{got:?}");
    got.sort();
    assert_eq!(got, vec![vec![0, 1, 2], vec![3, 4, 5]]);
}

fn from_json<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).unwrap()
}

/// In process: an image, the spec `spec`, and an online node on paper (8
/// H100s, 64 cores, 512 GB) that no daemon backs: for the reserving
/// transaction alone. Their ids.
async fn fake_gpu_node(
    app: &gpudock::App,
    me: &gpudock::auth::CurrentUser,
    spec: Value,
) -> (i64, i64, i64) {
    let src = gpudock::audit::Source::local();
    let image = gpudock::catalog::save_image(
        app,
        me,
        None,
        from_json(json!({"name": "i", "address": "busybox"})),
        &src,
    )
    .await
    .unwrap();
    let spec = gpudock::catalog::save_spec(app, me, None, from_json(spec), &src)
        .await
        .unwrap();
    let node = gpudock::nodes::save(
        app,
        me,
        None,
        from_json(json!({"name": "h", "public_ip": "10.0.0.1", "private_ip": "10.0.0.1", "gpu_name": "NVIDIA H100 80GB HBM3",
                    "gpu_count": 8, "cpu_cores": 64, "memory_gb": 512})),
        &src,
    )
    .await
    .unwrap();
    let id = node.id;
    app.db
        .write(move |c| {
            gpudock::nodes::store::set_status(
                c,
                id,
                gpudock::nodes::model::Status::Online,
                "",
                None,
                0,
            )
            .map_err(gpudock::db::DbError::from)
        })
        .await
        .unwrap();
    (image.id, spec.id, node.id.0)
}

fn reserve_input(
    image: i64,
    spec: i64,
    node: i64,
    name: &str,
) -> gpudock::instances::lifecycle::CreateInput {
    gpudock::instances::lifecycle::CreateInput {
        image_id: Some(json!(image)),
        spec_id: Some(json!(spec)),
        node_id: Some(json!(node)),
        name: Some(name.to_string()),
        remark: None,
        dataset_ids: None,
        lease_end: None,
    }
}

/// Issue 14, quotas: 30 concurrent reservations (the real reserving
/// transaction, in process; a GPU container cannot start here) for a tenant
/// with a quota of 4 GPUs place exactly 4; the rest are refused naming the
/// quota and the numbers. Quotas on instances, CPU cores and memory each
/// refuse by name; lifted, the next one fits.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_concurrent_creates_hold_a_tenant_to_its_quotas() {
    use gpudock::auth::{TenantId, accounts};
    use gpudock::error::AppError;
    use gpudock::instances::lifecycle;

    let dir = tempfile::tempdir().unwrap();
    let (app, me) = common::in_process_admin(dir.path()).await;
    let (image, spec, node) = fake_gpu_node(
        &app,
        &me,
        json!({"name": "x1", "gpu_model": "H100", "gpu_count": 1, "cpu_cores": 1, "memory_gb": 1}),
    )
    .await;
    let src = gpudock::audit::Source::local();
    let t = accounts::create_tenant(
        &app,
        &me,
        from_json(json!({"name": "Q", "company_code": "Q1"})),
        &src,
    )
    .await
    .unwrap();
    let (user, _) = accounts::create_user(
        &app,
        &me,
        from_json(
            json!({"username": "qcarol", "role": "customer_member", "tenant_id": t.id.0,
                         "password": "Velvet-Canyon-Harbor-58!"}),
        ),
        &src,
    )
    .await
    .unwrap();
    let owner = gpudock::auth::CurrentUser { user, via: me.via };
    let set = |q: Value| {
        let (app, me, src) = (app.clone(), me.clone(), src.clone());
        async move {
            accounts::update_tenant(&app, &me, t.id, from_json(q), &src)
                .await
                .unwrap()
        }
    };
    assert_eq!(
        set(json!({"quota_gpus": 4})).await.quota.quota_gpus,
        Some(4)
    );
    let tries = (0..30).map(|n| {
        let (app, me, owner) = (app.clone(), me.clone(), owner.clone());
        let input = reserve_input(image, spec, node, &format!("q{n}"));
        tokio::spawn(async move { lifecycle::reserve_for(&app, &me, &owner, input).await })
    });
    let (mut placed, mut refused) = (0, Vec::new());
    for t in tries {
        match t.await.unwrap() {
            Ok(_) => placed += 1,
            Err(e) => refused.push(e),
        }
    }
    assert_eq!((placed, refused.len()), (4, 26));
    let refusal = |e: &AppError| match e {
        AppError::Conflict(f) => f
            .iter()
            .map(|(k, v)| format!("{k}: {}", v.detail.clone().unwrap_or_default()))
            .collect::<Vec<_>>(),
        other => panic!("not a quota refusal: {other}"),
    };
    for e in &refused {
        assert_eq!(refusal(e), ["quota_gpus: 4 + 1 > 4"]);
    }
    let use_now = |app: gpudock::App| async move {
        app.db
            .read(move |c| {
                gpudock::auth::tenant_quota(c, TenantId(t.id.0)).map_err(gpudock::db::DbError::from)
            })
            .await
            .unwrap()
            .unwrap()
            .1
    };
    let u = use_now(app.clone()).await;
    assert_eq!(
        (u.gpus, u.instances, u.cpu_cores, u.memory_gb),
        (4, 4, 4, 4)
    );
    for (quota, field) in [
        ("quota_instances", "quota_instances"),
        ("quota_cpu_cores", "quota_cpu_cores"),
        ("quota_memory_gb", "quota_memory_gb"),
    ] {
        let mut q = json!({"quota_gpus": null, "quota_instances": null, "quota_cpu_cores": null, "quota_memory_gb": null});
        q[quota] = json!(4);
        set(q).await;
        let e = lifecycle::reserve_for(&app, &me, &owner, reserve_input(image, spec, node, "over"))
            .await
            .err()
            .unwrap();
        assert_eq!(refusal(&e), [format!("{field}: 4 + 1 > 4")]);
        assert_eq!(e.status(), StatusCode::CONFLICT);
    }
    let lifted = set(json!({"quota_memory_gb": null})).await.quota;
    assert_eq!(lifted, gpudock::auth::Quota::default());
    lifecycle::reserve_for(&app, &me, &owner, reserve_input(image, spec, node, "fits"))
        .await
        .unwrap();
    assert_eq!(use_now(app.clone()).await.gpus, 5);
}

/// Issue 14, quotas over the API and the pages, with real containers: PATCH
/// refuses bad quota values naming each field, GET shows quotas and current
/// use, a customer's create past the instance quota is refused (409, naming
/// it), an admin's batch allocation that would pass it is refused whole,
/// and the admin's tenant page has the quota inputs and the use.
#[tokio::test]
async fn tenant_quotas_over_the_api_refuse_creates_and_batches_by_name() {
    let lab = Lab::new(FAST_STOP, 16).await;
    let t = make_tenant(&lab.srv, &lab.admin, "QT").await;
    let (uid, alice) = make_user(
        &lab.srv,
        &lab.admin,
        "qalice",
        "customer_member",
        Some(t),
        "Velvet-Canyon-Harbor-58!",
    )
    .await;
    let url = lab.srv.url(&format!("/api/v1/tenants/{t}"));
    let (s, b) = patch(&lab.admin, &url, json!({"quota_gpus": -1, "quota_instances": 1.5, "quota_cpu_cores": "2", "quota_memory_gb": true})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    let named: Vec<&String> = b["error"]["fields"].as_object().unwrap().keys().collect();
    assert_eq!(
        named,
        [
            "quota_cpu_cores",
            "quota_gpus",
            "quota_instances",
            "quota_memory_gb"
        ],
        "{b}"
    );
    let (s, b) = patch(
        &lab.admin,
        &url,
        json!({"quota_instances": 1, "quota_gpus": 4}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (_, b) = get(&lab.admin, &url).await;
    assert_eq!(
        (
            &b["quota_gpus"],
            &b["quota_instances"],
            &b["quota_cpu_cores"],
            &b["quota_memory_gb"]
        ),
        (&json!(4), &json!(1), &Value::Null, &Value::Null),
        "{b}"
    );
    assert_eq!(
        b["usage"],
        json!({"gpus": 0, "instances": 0, "cpu_cores": 0, "memory_gb": 0})
    );
    let spec = lab.spec(small_spec("q1")).await;
    let create = lab.srv.url("/api/v1/instances");
    let (s, first) = post(&alice, &create, lab.create_body(spec, "qa1")).await;
    assert_eq!(s, StatusCode::CREATED, "{first}");
    let (s, b) = post(&alice, &create, lab.create_body(spec, "qa2")).await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    let why = b["error"]["fields"]["quota_instances"].as_str().unwrap();
    assert!(
        why.contains("instance quota") && why.contains("1 + 1 > 1"),
        "{why}"
    );
    let (_, b) = get(&lab.admin, &url).await;
    assert_eq!(
        b["usage"],
        json!({"gpus": 0, "instances": 1, "cpu_cores": 1, "memory_gb": 1})
    );
    // A batch of 2 with room for 1 more: refused whole, nothing made.
    patch(&lab.admin, &url, json!({"quota_instances": 2})).await;
    let mut body = lab.create_body(spec, "batch");
    body["user_id"] = json!(uid);
    body["count"] = json!(2);
    let (s, b) = lab.post("/api/v1/instances/allocate", body).await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    let why = b["error"]["fields"]["quota_instances"].as_str().unwrap();
    assert!(why.contains("1 + 2 > 2"), "{b}");
    let (_, mine) = get(&alice, &create).await;
    assert_eq!(mine.as_array().unwrap().len(), 1, "{mine}");
    let page = common::text(&lab.admin, &lab.srv.url(&format!("/tenants/{t}"))).await;
    assert!(
        page.contains(r#"id="tenant-quota_instances" inputmode="numeric" value="2""#),
        "{page}"
    );
    assert!(page.contains(r#"id="tenant-quota-use""#), "{page}");
    assert_eq!(lab.delete(&first["id"]).await, StatusCode::NO_CONTENT);
}

/// Issue 14, early return (退还): only the instance's owner may return it;
/// the page and the API show the same check as an admin's reclaim (running
/// processes, live sessions) and ask for confirmation; confirmed, the
/// reclaim's steps remove the container and then its data volume, the
/// record stays `reclaimed`, and the return is audited.
#[tokio::test]
async fn the_owner_returns_an_instance_early_through_the_reclaim_steps() {
    let lab = Lab::new(FAST_STOP, 16).await;
    let spec = lab.spec(small_spec("ret")).await;
    let (alice, bob) = two_tenants(&lab).await;
    let create = lab.srv.url("/api/v1/instances");
    let (s, inst) = post(&alice, &create, lab.create_body(spec, "ret")).await;
    assert_eq!(s, StatusCode::CREATED, "{inst}");
    let (id, cid) = (
        inst["id"].as_i64().unwrap(),
        inst["container_id"].as_str().unwrap().to_string(),
    );
    let volume = data_volume(&lab, &cid);
    let url = lab.srv.url(&format!("/api/v1/instances/{id}/return"));
    // Not the owner: another tenant's user does not see it, an admin may
    // reclaim but not return it.
    assert_eq!(get(&bob, &url).await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        lab.post(
            &format!("/api/v1/instances/{id}/return"),
            json!({"confirm": true})
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    let (s, check) = get(&alice, &url).await;
    assert_eq!(s, StatusCode::OK, "{check}");
    assert!(
        !check["processes"].as_array().unwrap().is_empty(),
        "{check}"
    );
    assert_eq!(check["sessions"], json!([]));
    let page = common::text(&alice, &lab.srv.url(&format!("/instances/{id}/return"))).await;
    assert!(
        page.contains(&format!(r#"action="/instances/{id}/return""#)),
        "{page}"
    );
    let section = common::text(&alice, &lab.srv.url(&format!("/instances/{id}/lease"))).await;
    assert!(section.contains(r#"id="lease-return""#), "{section}");
    let (s, b) = post(&alice, &url, json!({})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert!(b["error"]["fields"]["confirm"].is_string(), "{b}");
    assert!(
        lab.inspect("container", &cid).is_some(),
        "nothing removed unconfirmed"
    );
    let (s, b) = post(&alice, &url, json!({"confirm": true})).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let steps: Vec<(&str, &str)> = b["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["step"].as_str().unwrap(), s["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        steps,
        [
            ("check", "done"),
            ("end_sessions", "done"),
            ("remove_container", "done"),
            ("remove_volume", "done"),
            ("release", "done"),
            ("record", "done")
        ]
    );
    assert!(lab.inspect("container", &cid).is_none());
    assert!(lab.inspect("volume", &volume).is_none());
    let (_, i) = get(&alice, &lab.srv.url(&format!("/api/v1/instances/{id}"))).await;
    assert_eq!(i["status"], "reclaimed", "{i}");
    let (_, a) = lab
        .get("/api/v1/audit?action=instance.return&outcome=success")
        .await;
    assert_eq!(a.as_array().unwrap().len(), 1, "{a}");
    assert_eq!(a[0]["actor_name"], "ralice");
    // Returned already: a second return is refused.
    assert_eq!(
        post(&alice, &url, json!({"confirm": true})).await.0,
        StatusCode::CONFLICT
    );
}

/// A local registry (Debian's `docker-registry`) on 127.0.0.1, which the
/// test daemon may use over plain HTTP (127.0.0.0/8 is insecure by default).
struct Registry {
    child: std::process::Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start() -> Registry {
        let bin = "/usr/bin/docker-registry";
        assert!(
            std::path::Path::new(bin).exists(),
            "{bin} not found: install docker-registry (see .ci/run)"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
                 http:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let child = std::process::Command::new(bin)
            .arg("serve")
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let addr = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "the registry did not listen on {addr}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Registry {
            child,
            addr,
            _dir: dir,
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn an_image_missing_on_the_node_is_pulled_first() {
    let lab = Lab::new(FAST_STOP, 16).await;
    let reg = Registry::start();
    // An image with a layer of its own (4 MiB of random bytes on the busybox
    // one), pushed to the registry and then removed from the node.
    let image = format!("{}/gpudock/pulled:{}", reg.addr, std::process::id());
    let base = format!("pull-base-{}", std::process::id());
    let ok = |out: std::process::Output| assert!(out.status.success(), "{out:?}");
    ok(lab.docker(&[
        "run",
        "--name",
        &base,
        dockerd::TEST_IMAGE,
        "sh",
        "-c",
        "head -c 4194304 /dev/urandom > /payload",
    ]));
    // The committed image keeps a shell as its command (not the one-off
    // `head` above, after which the container would exit and restart).
    ok(lab.docker(&["commit", "--change", r#"CMD ["/bin/sh"]"#, &base, &image]));
    ok(lab.docker(&["rm", &base]));
    ok(lab.docker(&["push", &image]));
    ok(lab.docker(&["rmi", &image]));
    assert!(lab.inspect("image", &image).is_none());

    let (s, b) = lab
        .post(
            "/api/v1/images",
            json!({"name": "pulled", "address": image}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let mut body = lab.create_body(lab.spec(small_spec("s")).await, "pulled");
    body["image_id"] = b["id"].clone();
    let (s, i) = lab.post("/api/v1/instances", body).await;
    assert_eq!(s, StatusCode::CREATED, "{i}");
    assert_eq!(i["status"], "running");
    assert!(
        lab.inspect("image", &image).is_some(),
        "the image was not pulled"
    );
    let (_, a) = lab
        .get("/api/v1/audit?action=instance.create&outcome=success")
        .await;
    let pulled = &a[0]["detail"]["pulled"];
    assert_eq!(pulled["layers"], 2, "{a}");
    assert_eq!(pulled["layers_done"], 2, "{a}");
    assert_eq!(pulled["percent"], 100, "{a}");
    assert_eq!(lab.delete(&i["id"]).await, StatusCode::NO_CONTENT);
    ok(lab.docker(&["rmi", &image]));
}

/// Runs `sh -c script` in container `cid`; its stdout.
fn sh_in(lab: &Lab, cid: &str, script: &str) -> String {
    let out = lab.docker(&["exec", cid, "sh", "-c", script]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `gpudock.install` label of a container.
fn install_of(lab: &Lab, cid: &str) -> String {
    lab.inspect("container", cid).unwrap()["Config"]["Labels"]["gpudock.install"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The name of the volume mounted at /data in container `cid`.
fn data_volume(lab: &Lab, cid: &str) -> String {
    let c = lab.inspect("container", cid).unwrap();
    c["Mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["Destination"] == "/data")
        .and_then(|m| m["Name"].as_str())
        .unwrap()
        .to_string()
}

/// Two tenants with a member each: (alice of A, bob of B).
async fn two_tenants(lab: &Lab) -> (reqwest::Client, reqwest::Client) {
    let ta = make_tenant(&lab.srv, &lab.admin, "RA").await;
    let tb = make_tenant(&lab.srv, &lab.admin, "RB").await;
    let (_, alice) = make_user(
        &lab.srv,
        &lab.admin,
        "ralice",
        "customer_member",
        Some(ta),
        "Velvet-Canyon-Harbor-58!",
    )
    .await;
    let (_, bob) = make_user(
        &lab.srv,
        &lab.admin,
        "rbob",
        "customer_member",
        Some(tb),
        "Saffron-Glacier-Pilot-36!",
    )
    .await;
    (alice, bob)
}

/// Issue 10, first reproduction: a data volume left on the node under the
/// name an instance had (`gpudock-<install>-<id>-data`) was mounted into
/// another tenant's new instance, which got the same id and read the old
/// `/data`. Ids are not reused now, and a volume is never taken over.
#[tokio::test]
async fn a_leftover_data_volume_never_reaches_another_tenants_new_instance() {
    let lab = Lab::new(FAST_STOP, 16).await;
    let spec = lab.spec(small_spec("s")).await;
    let (alice, bob) = two_tenants(&lab).await;
    let url = lab.srv.url("/api/v1/instances");
    let (s, a) = post(&alice, &url, lab.create_body(spec, "a")).await;
    assert_eq!(s, StatusCode::CREATED, "{a}");
    let (a_id, a_cid) = (
        a["id"].as_i64().unwrap(),
        a["container_id"].as_str().unwrap(),
    );
    let install = install_of(&lab, a_cid);
    sh_in(&lab, a_cid, "echo alice-secret > /data/secret");
    assert_eq!(lab.delete(&a["id"]).await, StatusCode::NO_CONTENT);
    // What was left of it: its data volume, under the name its id gave.
    let leftover = format!("gpudock-{install}-{a_id}-data");
    let ok = |o: std::process::Output| assert!(o.status.success(), "{o:?}");
    ok(lab.docker(&["volume", "create", &leftover]));
    ok(lab.docker(&[
        "run",
        "--rm",
        "-v",
        &format!("{leftover}:/data"),
        dockerd::TEST_IMAGE,
        "sh",
        "-c",
        "echo alice-secret > /data/secret",
    ]));

    let (s, b) = post(&bob, &url, lab.create_body(spec, "b")).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let b_cid = b["container_id"].as_str().unwrap();
    assert_eq!(
        sh_in(&lab, b_cid, "ls -A /data"),
        "",
        "bob's /data is not empty"
    );
    assert_ne!(data_volume(&lab, b_cid), leftover);
    assert!(b["id"].as_i64().unwrap() > a_id, "id {a_id} came back: {b}");
    // The leftover is not bob's to have, nor gpudock's to remove.
    assert!(lab.inspect("volume", &leftover).is_some());
    assert_eq!(lab.delete(&b["id"]).await, StatusCode::NO_CONTENT);
    assert!(lab.inspect("volume", &leftover).is_some());
    ok(lab.docker(&["volume", "rm", &leftover]));
}

/// Issue 10, second reproduction: a reported orphan (a container and volume
/// labelled for an id that no instance has) made the next create, which got
/// that id, fail with a name conflict, and the failed create's clean-up
/// removed the orphan's container and volume. Orphans are kept.
#[tokio::test]
async fn an_orphan_with_an_old_id_is_neither_in_the_way_nor_removed() {
    let lab = Lab::new(
        "[instances]\nreconcile_interval_secs = 1\nstop_timeout_secs = 1\n",
        16,
    )
    .await;
    let spec = lab.spec(small_spec("s")).await;
    let (s, p) = lab
        .post("/api/v1/instances", lab.create_body(spec, "p"))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    let p_id = p["id"].as_i64().unwrap();
    let install = install_of(&lab, p["container_id"].as_str().unwrap());
    assert_eq!(lab.delete(&p["id"]).await, StatusCode::NO_CONTENT);
    // An orphan carrying that id, named as its instance would have been.
    let (name, volume) = (
        format!("gpudock-{install}-{p_id}"),
        format!("gpudock-{install}-{p_id}-data"),
    );
    let out = lab.docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "-v",
        &format!("{volume}:/data"),
        "--label",
        &format!("gpudock.install={install}"),
        "--label",
        &format!("gpudock.instance={p_id}"),
        "--label",
        &format!("gpudock.node={}", lab.node),
        dockerd::TEST_IMAGE,
        "sh",
        "-c",
        "echo orphan-data > /data/keep; sleep 3600",
    ]);
    assert!(out.status.success(), "{out:?}");
    let orphan_id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, o) = lab.get("/api/v1/instances/orphans").await;
        if o.as_array()
            .unwrap()
            .iter()
            .any(|x| x["container_id"] == orphan_id)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the orphan was not reported: {o}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let (s, q) = lab
        .post("/api/v1/instances", lab.create_body(spec, "q"))
        .await;
    assert_eq!(s, StatusCode::CREATED, "the orphan got in the way: {q}");
    assert!(q["id"].as_i64().unwrap() > p_id, "{q}");
    assert_ne!(q["container_id"].as_str(), Some(orphan_id.as_str()));
    // The orphan and its data are as they were.
    let o = lab
        .inspect("container", &orphan_id)
        .expect("the orphan was removed");
    assert_eq!(o["State"]["Status"], "running");
    assert_eq!(sh_in(&lab, &orphan_id, "cat /data/keep"), "orphan-data\n");
    assert_eq!(
        lab.audited("action=instance.create&outcome=failure").await,
        0
    );
    assert_eq!(lab.delete(&q["id"]).await, StatusCode::NO_CONTENT);
    assert!(lab.inspect("container", &orphan_id).is_some());
    lab.docker(&["rm", "-f", &orphan_id]);
    lab.docker(&["volume", "rm", &volume]);
}

/// Issue 10, third reproduction, with documented steps only: back up,
/// create an instance and write data, `restore --force` the backup, create
/// again. The restore rewinds the ids, so the new instance had the newer
/// one's id: its create failed and its clean-up destroyed the newer
/// instance's container and data. Now the newer container is kept (an
/// orphan), the new instance neither meets it nor takes its id.
#[tokio::test]
async fn create_after_restoring_an_older_backup_keeps_the_newer_instance_and_its_data() {
    let lab = Lab::new(FAST_STOP, 16).await;
    let spec = lab.spec(small_spec("s")).await;
    let (alice, _) = two_tenants(&lab).await;
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("before.tar.gz");
    let out = lab.srv.cli(&["backup", "--to", archive.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let url = lab.srv.url("/api/v1/instances");
    let (s, x) = post(&alice, &url, lab.create_body(spec, "x")).await;
    assert_eq!(s, StatusCode::CREATED, "{x}");
    let (x_id, x_cid) = (
        x["id"].as_i64().unwrap(),
        x["container_id"].as_str().unwrap().to_string(),
    );
    let x_volume = data_volume(&lab, &x_cid);
    sh_in(&lab, &x_cid, "echo newer-data > /data/work");

    let Lab { srv, d, .. } = lab;
    let mut srv = srv;
    srv.stop();
    let out = srv.cli(&["restore", "--from", archive.to_str().unwrap(), "--force"]);
    assert!(out.status.success(), "{out:?}");
    let srv = srv.restart(FAST_STOP);
    let (admin, s, _) = srv.login("admin", common::ADMIN_PASSWORD).await;
    assert_eq!(s, StatusCode::OK);
    let (bob, s, _) = srv.login("rbob", "Saffron-Glacier-Pilot-36!").await;
    assert_eq!(s, StatusCode::OK);
    // The newer instance is gone from the database; its container is an
    // orphan, reported once the node is reconciled.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, o) = get(&admin, &srv.url("/api/v1/instances/orphans")).await;
        if o.as_array()
            .unwrap()
            .iter()
            .any(|c| c["container_id"] == x_cid.as_str())
        {
            break;
        }
        assert!(Instant::now() < deadline, "no orphan reported: {o}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let image = {
        let (_, l) = get(&admin, &srv.url("/api/v1/images")).await;
        l[0]["id"].clone()
    };
    let node = {
        let (_, l) = get(&admin, &srv.url("/api/v1/nodes")).await;
        l[0]["id"].clone()
    };
    let body = json!({"image_id": image, "spec_id": spec, "node_id": node, "name": "y"});
    let (s, y) = post(&bob, &srv.url("/api/v1/instances"), body).await;
    assert_eq!(
        s,
        StatusCode::CREATED,
        "the create after the restore failed: {y}"
    );
    assert!(
        y["id"].as_i64().unwrap() > x_id,
        "id {x_id} given again: {y}"
    );
    let y_cid = y["container_id"].as_str().unwrap();
    let cli = |args: &[&str]| docker_cli(d, args);
    let y_data = cli(&["exec", y_cid, "ls", "-A", "/data"]);
    assert_eq!(
        String::from_utf8_lossy(&y_data.stdout),
        "",
        "bob sees data not his"
    );
    // The newer instance's container and data are untouched.
    let x_data = cli(&["exec", &x_cid, "cat", "/data/work"]);
    assert_eq!(
        String::from_utf8_lossy(&x_data.stdout),
        "newer-data\n",
        "{x_data:?}"
    );
    assert!(cli(&["volume", "inspect", &x_volume]).status.success());
    let (s, _) = send(
        &admin,
        "DELETE",
        &srv.url(&format!("/api/v1/instances/{}", y["id"])),
        Some(json!({})),
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    cli(&["rm", "-f", &x_cid]);
    cli(&["volume", "rm", &x_volume]);
}

/// SIGTERM while an instance is being created from an image whose pull
/// never ends, and while its logs are followed: the creation is cancelled
/// (the request is told, its reservation and audit say so), the followed
/// logs end cleanly, and the server stops well before systemd would kill
/// it (nothing waits on the pull nor on the open stream).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_cancels_a_long_create_and_ends_followed_logs() {
    let lab = Lab::new(FAST_STOP, 16).await;
    let spec = lab.spec(small_spec("s")).await;
    let (s, r) = lab
        .post("/api/v1/instances", lab.create_body(spec, "r"))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    let mut follow = lab
        .admin
        .get(lab.srv.url(&format!(
            "/api/v1/instances/{}/logs?follow=1&tail=1",
            r["id"]
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(follow.status(), StatusCode::OK);
    let create = lab.create_pulling_forever(spec, "slow").await;
    let (_, list) = lab.get("/api/v1/instances").await;
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|i| i["status"] == "creating"),
        "{list}"
    );

    let Lab { srv, .. } = lab;
    let mut srv = srv;
    let stopped = tokio::task::spawn_blocking(move || {
        let asked = Instant::now();
        srv.stop();
        eprintln!(
            "SIGTERM with a create pulling and logs followed: exited after {:?}",
            asked.elapsed()
        );
        srv
    });
    let (s, b) = create.await.unwrap();
    assert_eq!(
        (s, code(&b)),
        (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
        "{b}"
    );
    // The followed logs end as a complete answer, not a cut connection.
    loop {
        match tokio::time::timeout(Duration::from_secs(20), follow.chunk()).await {
            Ok(Ok(Some(_))) => {}
            Ok(Ok(None)) => break,
            Ok(Err(e)) => panic!("the followed logs were cut off: {e}"),
            Err(_) => panic!("the followed logs did not end"),
        }
    }
    let srv = stopped.await.unwrap();
    let logs = srv.logs();
    assert!(
        logs.contains("stopped: database checkpointed and closed"),
        "{logs}"
    );

    let srv = srv.restart(FAST_STOP);
    let (c, s, _) = srv.login("admin", common::ADMIN_PASSWORD).await;
    assert_eq!(s, StatusCode::OK);
    let (_, list) = get(&c, &srv.url("/api/v1/instances")).await;
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    let (_, a) = get(
        &c,
        &srv.url("/api/v1/audit?action=instance.create&outcome=failure"),
    )
    .await;
    assert!(
        a[0]["detail"]["error"]
            .as_str()
            .unwrap()
            .contains("shutting down"),
        "{a}"
    );
    let (s, _) = send(
        &c,
        "DELETE",
        &srv.url(&format!("/api/v1/instances/{}", r["id"])),
        Some(json!({})),
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
}

/// Polls instance `id` (as `c`) until `ok` holds of it.
async fn wait_for(
    c: &reqwest::Client,
    srv: &Server,
    id: i64,
    what: &str,
    ok: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut last = Value::Null;
    while Instant::now() < deadline {
        let (s, b) = get(c, &srv.url(&format!("/api/v1/instances/{id}"))).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        if ok(&b) {
            return b;
        }
        last = b;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!(
        "instance {id}: not {what} within 90 s: {last}\n{}",
        srv.logs()
    );
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Issue 14: a lease set from the spec's default; reminders sent once each;
/// at lease end the container stops and the owner is told to back up by a
/// date; after the buffer the reclaim removes container and data volume,
/// capacity comes back and the record stays `reclaimed`.
#[tokio::test]
async fn a_lease_reminds_stops_at_its_end_and_is_reclaimed_after_the_buffer() {
    let config = format!("{FAST_STOP}[leases]\ncheck_interval_secs = 1\nbuffer_days = 3\n");
    let lab = Lab::new(&config, 2).await;
    let mut body = small_spec("leased");
    body["cpu_cores"] = json!(2);
    body["lease_days"] = json!(30);
    let spec = lab.spec(body).await;
    let (alice, _) = two_tenants(&lab).await;
    let create = lab.srv.url("/api/v1/instances");

    // A customer may not choose beyond the spec's default lease.
    let mut b = lab.create_body(spec, "too-long");
    b["lease_end"] = json!(now() + 40 * 86_400);
    let (s, e) = post(&alice, &create, b).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert!(e["error"]["fields"]["lease_end"].is_string(), "{e}");
    let (s, inst) = post(&alice, &create, lab.create_body(spec, "leased")).await;
    assert_eq!(s, StatusCode::CREATED, "{inst}");
    let id = inst["id"].as_i64().unwrap();
    let cid = inst["container_id"].as_str().unwrap().to_string();
    let end = inst["lease_end"].as_i64().unwrap();
    assert!((end - (now() + 30 * 86_400)).abs() < 600, "{inst}");
    assert_eq!(inst["lease_state"], "active");
    let volume = data_volume(&lab, &cid);
    let url = lab.srv.url(&format!("/api/v1/instances/{id}"));
    let candidates = format!("/api/v1/instances/candidate-nodes?spec_id={spec}");
    assert_eq!(lab.get(&candidates).await.1, json!([]), "the node is full");

    // An event rule on expiring leases (the alert hook leases call).
    let (s, rule) = lab
        .post(
            "/api/v1/alert-rules",
            json!({"name": "lease soon", "event": "lease_expiring", "level": "P3",
                   "channels": [], "enabled": true, "threshold": 3 * 86_400}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{rule}");

    // The lab has an e-mail channel (a real SMTP sink), and alice an
    // address and Chinese as her language: reminders reach her by e-mail.
    let inbox = tempfile::NamedTempFile::new().unwrap();
    let sink = common::exporters::smtp_sink(dockerd::free_port(), inbox.path());
    let (s, ch) = lab
        .post(
            "/api/v1/notification-channels",
            json!({"name": "lab mail", "kind": "email", "host": "127.0.0.1", "port": sink.port,
                   "security": "none", "from": "gpudock@lab.test", "to": ["ops@lab.test"]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{ch}");
    let (_, me) = get(&alice, &lab.srv.url("/api/v1/me")).await;
    let alice_id = me["user"]["id"].as_i64().unwrap();
    let (s, b) = patch(
        &lab.admin,
        &lab.srv.url(&format!("/api/v1/users/{alice_id}")),
        json!({"email": "ralice@lab.test", "language": "zh-CN"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");

    // Setting a lease end is an admin's.
    let (s, _) = patch(&alice, &url, json!({"lease_end": now()})).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, b) = patch(&lab.admin, &url, json!({"lease_end": now() + 2 * 86_400})).await;
    assert_eq!(
        (s, &b["lease_state"]),
        (StatusCode::OK, &json!("expiring")),
        "{b}"
    );
    assert_eq!(lab.audited("action=instance.lease").await, 1);

    // The 3-day reminder goes out once (not the 7-day one too).
    let deadline = Instant::now() + Duration::from_secs(60);
    while lab.audited("action=lease.reminder").await == 0 {
        assert!(Instant::now() < deadline, "no reminder\n{}", lab.srv.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (s, page) = (
        StatusCode::OK,
        common::text(&alice, &lab.srv.url("/instances")).await,
    );
    assert_eq!(s, StatusCode::OK);
    assert!(
        page.contains("lease-banner-1") && page.contains("leased"),
        "{page}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        lab.audited("action=lease.reminder").await,
        1,
        "each reminder once"
    );
    // By e-mail too, once, to alice, in her language.
    let mailed = |inbox: &std::path::Path| {
        common::exporters::mails(inbox)
            .into_iter()
            .filter(|m| m["rcpt_tos"] == json!(["ralice@lab.test"]))
            .collect::<Vec<_>>()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while mailed(inbox.path()).is_empty() {
        assert!(
            Instant::now() < deadline,
            "no reminder e-mail\n{}",
            lab.srv.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let m = mailed(inbox.path());
    assert_eq!(m.len(), 1, "{m:?}");
    let body = m[0]["body"].as_str().unwrap();
    assert!(
        body.contains("实例 leased 的租期") && body.contains("备份"),
        "{body}"
    );
    // The reminder raised the rule's alert, once, naming the instance.
    let (_, alerts) = lab.get("/api/v1/alerts").await;
    let raised: Vec<&Value> = alerts
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["rule_id"] == rule["id"])
        .collect();
    assert_eq!(raised.len(), 1, "{alerts}");
    assert!(
        raised[0]["message"].as_str().unwrap().contains("leased"),
        "{alerts}"
    );

    // At lease end: stopped, sessions refused, "back up by" shown.
    let (s, b) = patch(&lab.admin, &url, json!({"lease_end": now() - 60})).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let b = wait_for(&alice, &lab.srv, id, "stopped by its lease", |b| {
        b["status"] == "exited" && b["lease_state"] == "expired"
    })
    .await;
    assert_eq!(b["reclaimed_at"], Value::Null);
    let state = lab.inspect("container", &cid).unwrap();
    assert_eq!(state["State"]["Running"], false);
    let deadline = Instant::now() + Duration::from_secs(60);
    while lab.audited("action=lease.expire").await == 0 {
        assert!(
            Instant::now() < deadline,
            "no lease.expire\n{}",
            lab.srv.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let section = common::text(&alice, &lab.srv.url(&format!("/instances/{id}/lease"))).await;
    assert!(section.contains("lease-backup"), "{section}");
    let banner = common::text(&alice, &lab.srv.url("/instances")).await;
    assert!(banner.contains("lease-banner-1"), "{banner}");

    // After the buffer: reclaimed, container then volume gone, capacity back.
    let (s, b) = patch(&lab.admin, &url, json!({"lease_end": now() - 4 * 86_400})).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let b = wait_for(&alice, &lab.srv, id, "reclaimed", |b| {
        b["status"] == "reclaimed"
    })
    .await;
    assert_eq!(b["lease_state"], "reclaimed");
    assert!(b["reclaimed_at"].as_i64().is_some(), "{b}");
    assert!(
        lab.inspect("container", &cid).is_none(),
        "container removed"
    );
    assert!(lab.inspect("volume", &volume).is_none(), "volume removed");
    let listed = lab.get(&candidates).await.1;
    assert_eq!(ids(&listed), [lab.node], "capacity back: {listed}");
    assert_eq!(lab.audited("action=instance.reclaim").await, 1);
    let section = lab.srv.url(&format!("/instances/{id}/lease"));
    let steps = common::text(&lab.admin, &section).await;
    for step in [
        "check",
        "end_sessions",
        "remove_container",
        "remove_volume",
        "release",
        "record",
    ] {
        assert!(
            steps.contains(&format!("data-step=\"{step}\" data-status=\"done\"")),
            "{step}: {steps}"
        );
    }
    // A reclaimed instance takes no lease again.
    let (s, _) = patch(&lab.admin, &url, json!({"lease_end": now() + 86_400})).await;
    assert_eq!(s, StatusCode::CONFLICT);
}

/// Issue 14: an admin's reclaim shows the processes running (`docker top`)
/// and asks for confirmation first; customers cannot reclaim.
#[tokio::test]
async fn a_manual_reclaim_shows_what_runs_and_needs_confirmation() {
    let lab = Lab::new(FAST_STOP, 4).await;
    let spec = lab.spec(small_spec("s")).await;
    let (alice, _) = two_tenants(&lab).await;
    let (s, inst) = post(
        &alice,
        &lab.srv.url("/api/v1/instances"),
        lab.create_body(spec, "r1"),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{inst}");
    assert_eq!(
        inst["lease_end"],
        Value::Null,
        "open-ended without a default"
    );
    let id = inst["id"].as_i64().unwrap();
    let cid = inst["container_id"].as_str().unwrap().to_string();
    let url = lab.srv.url(&format!("/api/v1/instances/{id}/reclaim"));
    let (s, _) = get(&alice, &url).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, check) = get(&lab.admin, &url).await;
    assert_eq!(s, StatusCode::OK, "{check}");
    assert!(
        !check["processes"].as_array().unwrap().is_empty(),
        "{check}"
    );
    assert_eq!(check["sessions"], json!([]));
    let (s, e) = post(&lab.admin, &url, json!({})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert!(
        lab.inspect("container", &cid).is_some(),
        "nothing removed unconfirmed"
    );
    let (s, done) = post(&lab.admin, &url, json!({"confirm": true})).await;
    assert_eq!(s, StatusCode::OK, "{done}");
    let steps: Vec<&str> = done["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        [
            "check",
            "end_sessions",
            "remove_container",
            "remove_volume",
            "release",
            "record"
        ]
    );
    assert!(lab.inspect("container", &cid).is_none());
    let (s, b) = get(&alice, &lab.srv.url(&format!("/api/v1/instances/{id}"))).await;
    assert_eq!(
        (s, &b["status"]),
        (StatusCode::OK, &json!("reclaimed")),
        "{b}"
    );
    let (s, _) = post(&lab.admin, &url, json!({"confirm": true})).await;
    assert_eq!(s, StatusCode::CONFLICT, "reclaimed once");
    assert_eq!(lab.audited("action=instance.reclaim").await, 1);
}

/// Issue 14: an owner asks for an extension (续期申请); an admin approves it
/// and the lease end becomes the one asked for; both audited.
#[tokio::test]
async fn an_owner_asks_for_an_extension_and_an_admin_approves_it() {
    let lab = Lab::new(FAST_STOP, 4).await;
    let mut body = small_spec("s");
    body["lease_days"] = json!(10);
    let spec = lab.spec(body).await;
    let (alice, bob) = two_tenants(&lab).await;
    let (s, inst) = post(
        &alice,
        &lab.srv.url("/api/v1/instances"),
        lab.create_body(spec, "x1"),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{inst}");
    let id = inst["id"].as_i64().unwrap();
    let ask = lab
        .srv
        .url(&format!("/api/v1/instances/{id}/lease-requests"));
    let want = inst["lease_end"].as_i64().unwrap() + 20 * 86_400;
    let (s, _) = post(&bob, &ask, json!({"lease_end": want})).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "another tenant's instance");
    let (s, e) = post(&alice, &ask, json!({"lease_end": now() + 60})).await;
    assert_eq!(
        s,
        StatusCode::UNPROCESSABLE_ENTITY,
        "not later than the lease: {e}"
    );
    let (s, r) = post(
        &alice,
        &ask,
        json!({"lease_end": want, "reason": "training runs"}),
    )
    .await;
    assert_eq!(
        (s, &r["status"]),
        (StatusCode::CREATED, &json!("pending")),
        "{r}"
    );
    let (s, _) = post(&alice, &ask, json!({"lease_end": want + 1})).await;
    assert_eq!(s, StatusCode::CONFLICT, "one pending at a time");
    let rid = r["id"].as_i64().unwrap();
    let (s, list) = get(&bob, &lab.srv.url("/api/v1/lease-requests")).await;
    assert_eq!((s, list), (StatusCode::OK, json!([])));
    let approve = lab
        .srv
        .url(&format!("/api/v1/lease-requests/{rid}/approve"));
    let (s, _) = post(&alice, &approve, json!({})).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "approving is an admin's");
    let (s, r) = post(&lab.admin, &approve, json!({})).await;
    assert_eq!(
        (s, &r["status"]),
        (StatusCode::OK, &json!("approved")),
        "{r}"
    );
    let (_, b) = get(&alice, &lab.srv.url(&format!("/api/v1/instances/{id}"))).await;
    assert_eq!(b["lease_end"], json!(want));
    let (s, _) = post(&lab.admin, &approve, json!({})).await;
    assert_eq!(s, StatusCode::CONFLICT, "decided once");
    assert_eq!(lab.audited("action=lease.request").await, 1);
    assert_eq!(lab.audited("action=lease.request.approve").await, 1);
}

/// Issue 14: an admin allocates (分配) instances to a user of a tenant: the
/// owner is that user (who sees them), N at once, audited; customers may
/// not allocate.
#[tokio::test]
async fn an_admin_allocates_instances_to_a_customer() {
    let lab = Lab::new(FAST_STOP, 8).await;
    let spec = lab.spec(small_spec("s")).await;
    let ta = make_tenant(&lab.srv, &lab.admin, "AL").await;
    let (uid, carol) = make_user(
        &lab.srv,
        &lab.admin,
        "carol",
        "customer_member",
        Some(ta),
        "Harbor-Velvet-Canyon-77!",
    )
    .await;
    let url = lab.srv.url("/api/v1/instances/allocate");
    let mut body = lab.create_body(spec, "gpu");
    body["user_id"] = json!(uid);
    body["count"] = json!(2);
    let (s, _) = post(&carol, &url, body.clone()).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, b) = post(&lab.admin, &url, body).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let made = b["instances"].as_array().unwrap();
    assert_eq!(made.len(), 2, "{b}");
    for (i, n) in made.iter().zip(["gpu-1", "gpu-2"]) {
        assert_eq!(
            (i["name"].as_str(), i["user_id"].as_i64()),
            (Some(n), Some(uid)),
            "{i}"
        );
        assert_eq!(i["tenant_id"].as_i64(), Some(ta));
        let cid = i["container_id"].as_str().unwrap();
        let c = lab.inspect("container", cid).unwrap();
        assert_eq!(
            c["Config"]["Labels"]["gpudock.user"],
            json!(uid.to_string())
        );
    }
    let (s, mine) = get(&carol, &lab.srv.url("/api/v1/instances")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(ids(&mine).len(), 2, "{mine}");
    let mut bad = lab.create_body(spec, "x");
    bad["user_id"] = json!(1);
    let (s, e) = post(&lab.admin, &url, bad).await;
    assert_eq!(
        s,
        StatusCode::UNPROCESSABLE_ENTITY,
        "an admin owns no tenant: {e}"
    );
    assert_eq!(lab.audited("action=instance.allocate").await, 1);
}

/// Infrastructure warnings (the system-disk quota dockerd could not apply
/// here, with its own words) reach admins, never customers: not in the API
/// (create, show, list) nor on their pages.
#[tokio::test]
async fn infrastructure_warnings_are_for_admins_only() {
    let lab = Lab::new(FAST_STOP, 16).await;
    let spec = lab.spec(small_spec("s")).await;
    let (alice, _) = two_tenants(&lab).await;
    let create = lab.srv.url("/api/v1/instances");
    let (s, inst) = post(&alice, &create, lab.create_body(spec, "warned")).await;
    assert_eq!(s, StatusCode::CREATED, "{inst}");
    assert_eq!(inst["warnings"], json!([]), "create: {inst}");
    let id = inst["id"].as_i64().unwrap();
    let (_, mine) = get(&alice, &lab.srv.url(&format!("/api/v1/instances/{id}"))).await;
    assert_eq!(mine["warnings"], json!([]), "show: {mine}");
    let (_, list) = get(&alice, &lab.srv.url("/api/v1/instances")).await;
    assert_eq!(list[0]["warnings"], json!([]), "list: {list}");
    let (_, seen) = lab.get(&format!("/api/v1/instances/{id}")).await;
    assert_eq!(
        seen["warnings"][0]["code"], "system_disk_not_enforced",
        "the admin: {seen}"
    );
    let page = |c: &reqwest::Client, path: String| {
        let (c, url) = (c.clone(), lab.srv.url(&path));
        async move { c.get(url).send().await.unwrap().text().await.unwrap() }
    };
    for path in [format!("/instances/{id}"), "/instances".to_string()] {
        let html = page(&alice, path.clone()).await;
        assert!(
            !html.contains("storage-opt") && !html.contains("class=\"badge warn\""),
            "{path}: {html}"
        );
    }
    let html = page(&lab.admin, format!("/instances/{id}")).await;
    assert!(html.contains("storage-opt"), "the admin's page: {html}");
}

/// Visible text of a page: text between tags, without scripts, styles,
/// code, preformatted text and form values (what users typed or data).
fn visible_text(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = html;
    // `dd`: values beside their labels (data, addresses, the daemon's words).
    let skip = ["script", "style", "code", "pre", "textarea", "option", "dd"];
    while let Some(lt) = rest.find('<') {
        let text = rest[..lt].trim();
        if !text.is_empty() {
            out.push(
                text.replace("&amp;", "&")
                    .replace("&lt;", "<")
                    .replace("&gt;", ">")
                    .replace("&quot;", "\"")
                    .replace("&#39;", "'"),
            );
        }
        rest = &rest[lt..];
        let end = rest.find('>').map_or(rest.len(), |e| e + 1);
        // What a tag shows of itself: hints, tooltips, labels read aloud.
        for attr in [" placeholder=\"", " title=\"", " aria-label=\""] {
            for part in rest[..end].split(attr).skip(1) {
                let v = part.split('"').next().unwrap_or("").trim();
                if !v.is_empty() {
                    out.push(v.replace("&#34;", "\"").replace("&#39;", "'"));
                }
            }
        }
        let tag = rest[1..end.saturating_sub(1)]
            .split([' ', '\n', '/', '>'])
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        rest = &rest[end..];
        if skip.contains(&tag.as_str()) {
            let close = format!("</{tag}");
            rest = rest.find(&close).map_or("", |at| &rest[at..]);
        }
    }
    out
}

/// Every page an admin can open, in both languages: no visible English
/// word in zh-CN beyond proper nouns, units and the data this test made,
/// and no Chinese in English.
#[tokio::test]
async fn every_page_speaks_one_language() {
    let lab = Lab::new(FAST_STOP, 16).await;
    let spec = lab.spec(small_spec("s")).await;
    let (srv, admin) = (&lab.srv, &lab.admin);
    let tenant = make_tenant(srv, admin, "WALK").await;
    let (user, walker) = make_user(
        srv,
        admin,
        "walker",
        "customer_member",
        Some(tenant),
        "Pebble-Lantern-Harvest-64!",
    )
    .await;
    let (s, x) = post(
        admin,
        &srv.url("/api/v1/instances"),
        lab.create_body(spec, "walk"),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{x}");
    let inst = x["id"].as_i64().unwrap();
    wait_status(admin, srv, inst, "running", Duration::from_secs(60)).await;
    let (_, perms) = get(admin, &srv.url("/api/v1/permissions")).await;
    let ids = |pattern: &str| -> Option<String> {
        let first = pattern
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or("");
        Some(match first {
            "instances" => inst.to_string(),
            "nodes" => lab.node.to_string(),
            "images" => lab.image.to_string(),
            "specs" => spec.to_string(),
            "tenants" => tenant.to_string(),
            "users" => user.to_string(),
            "alert-rules" => "1".into(),
            _ => return None,
        })
    };
    let mut pages = Vec::new();
    for p in perms.as_array().unwrap() {
        let (m, pat) = (
            p["method"].as_str().unwrap(),
            p["path_pattern"].as_str().unwrap(),
        );
        if m != "GET" || pat.starts_with("/api/") || p["group"] != "pages" {
            continue;
        }
        if ["/terminal/ws", "/open", "/jobs/", "/download"]
            .iter()
            .any(|x| pat.contains(x))
        {
            continue;
        }
        let path = if pat.contains('{') {
            match ids(pat) {
                Some(id) if pat.matches('{').count() == 1 => pat.replace("{id}", &id),
                _ => continue,
            }
        } else {
            pat.to_string()
        };
        pages.push(path);
    }
    assert!(pages.len() > 40, "{pages:?}");
    // Proper nouns, units and protocols that stay as they are, formats
    // shown as examples in hints (a key, a PEM header, a metric's code),
    // and what this test named.
    let allowed: Vec<&str> = "GPU GPUs CPU SSH API Docker HTTP HTTPS TLS IP URL ID UUID NVML SFTP \
        scp ssh sftp Jupyter TensorBoard Prometheus node_exporter dcgm-exporter Exporter Webhook \
        DingTalk WeCom Feishu Slack Telegram Bot SMTP STARTTLS CSV JSON gpudock GiB GB MB KB MiB KiB \
        UTC PEM CA ECC XID OOM P0 P1 P2 P3 NVIDIA GeForce RTX Linux Agent Shell VS Code Remote-SSH \
        SSE asciicast sudo bash Ctrl Shift localhost PORT YYYY-MM-DD HH MM Authorization \
        Ed25519 ed25519 ECDSA RSA ssh-keygen pub id_ed25519 xfs pquota overlay chat id metrics \
        Bearer Web English n1 s walk walker WALK Tenant admin Administrator local busybox data \
        ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA gpu rack-1 temp_c gpudock-cli \
        -----BEGIN CERTIFICATE----- PRIVATE KEY-----"
        .split_whitespace()
        .collect();
    let mut bad = Vec::new();
    for (who, lang) in [
        ("admin", "zh-CN"),
        ("admin", "en"),
        ("member", "zh-CN"),
        ("member", "en"),
    ] {
        let c = if who == "admin" { admin } else { &walker };
        let r = c
            .get(srv.url(&format!("/lang/{lang}?next=/")))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success() || r.status().is_redirection());
        for path in &pages {
            let r = c.get(srv.url(path)).send().await.unwrap();
            let status = r.status();
            let html = r.text().await.unwrap();
            if status.is_redirection() {
                continue; // a part of another page, only for htmx
            }
            if who == "member"
                && (status == StatusCode::FORBIDDEN || status == StatusCode::NOT_FOUND)
            {
                continue; // not the member's page (the admin's pass saw it)
            }
            assert!(status.is_success(), "{who} {path}: {status} {html}");
            for t in visible_text(&html) {
                // Paths, addresses, key combinations and placeholders
                // (`/data`, `api.telegram.org`, `Ctrl+Shift+C`, `<名称>`)
                // are not words of a language.
                let words: Vec<&str> = t
                    .split_whitespace()
                    .filter(|w| !w.contains(['/', '.', '~', ':', '@', '<', '&', '+', '=', '#']))
                    .flat_map(|w| {
                        w.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
                    })
                    .filter(|w| w.chars().filter(char::is_ascii_alphabetic).count() >= 2)
                    .collect();
                let cjk = t.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c));
                if lang == "zh-CN" {
                    let english: Vec<&&str> =
                        words.iter().filter(|w| !allowed.contains(w)).collect();
                    if !english.is_empty() {
                        bad.push(format!("{who} {lang} {path}: {t:?} ({english:?})"));
                    }
                } else if cjk && t != "中文" {
                    bad.push(format!("{who} {lang} {path}: {t:?}"));
                }
            }
        }
    }
    bad.sort();
    bad.dedup();
    assert!(
        bad.is_empty(),
        "{} texts in the wrong language:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

/// Issue 14 metering: a `docker stop` behind gpudock's back closes the
/// running interval; cost uses the price at placement after the spec's
/// price is edited; a member sees only their own usage; CSV cells escaped.
#[tokio::test]
async fn metering_follows_docker_and_keeps_the_price_at_placement() {
    let lab = Lab::new(
        "[instances]\nreconcile_interval_secs = 300\nstop_timeout_secs = 1\n",
        16,
    )
    .await;
    let mut body = small_spec("metered");
    body["price_per_hour"] = json!(3600.0);
    let spec = lab.spec(body).await;
    let (alice, bob) = two_tenants(&lab).await;
    let (s, inst) = post(
        &alice,
        &lab.srv.url("/api/v1/instances"),
        lab.create_body(spec, "=metered"),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{inst}");
    let (id, cid) = (
        inst["id"].as_i64().unwrap(),
        inst["container_id"].as_str().unwrap().to_string(),
    );
    let (s, b) = patch(
        &lab.admin,
        &lab.srv.url(&format!("/api/v1/specs/{spec}")),
        json!({"price_per_hour": 0.01}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(lab.docker(&["stop", "-t", "1", &cid]).status.success());
    wait_status(&alice, &lab.srv, id, "exited", Duration::from_secs(10)).await;
    let (s, u) = get(&alice, &lab.srv.url("/api/v1/usage")).await;
    assert_eq!(s, StatusCode::OK, "{u}");
    let rows = u["usage"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{u}");
    let secs = rows[0]["running_seconds"].as_i64().unwrap();
    assert!((1..60).contains(&secs), "{u}");
    // 3600.00 per hour at placement, not the edited 0.01.
    assert_eq!(rows[0]["cost_cents"].as_i64().unwrap(), secs * 100, "{u}");
    assert!(rows[0]["gpu_hours"].is_number() && rows[0]["cpu_core_hours"].is_number());
    // Stopped: nothing more accrues.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, again) = get(&alice, &lab.srv.url("/api/v1/usage")).await;
    assert_eq!(
        again["usage"][0]["running_seconds"].as_i64(),
        Some(secs),
        "{again}"
    );
    // Scoped: the other tenant's member sees none of it; a bad month is refused.
    let (_, theirs) = get(&bob, &lab.srv.url("/api/v1/usage")).await;
    assert_eq!(theirs["usage"], json!([]), "{theirs}");
    let (s, _) = get(&alice, &lab.srv.url("/api/v1/usage?month=2026-13")).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (_, other) = get(&alice, &lab.srv.url("/api/v1/usage?month=2001-01")).await;
    assert_eq!(other["usage"], json!([]), "{other}");
    let csv = common::text(&alice, &lab.srv.url("/api/v1/usage.csv")).await;
    assert!(
        csv.contains(",'=metered,") && !csv.contains(",=metered"),
        "{csv}"
    );
    assert!(
        common::text(&alice, &lab.srv.url("/usage"))
            .await
            .contains("usage-users")
    );
}

/// The reclaim steps stored on an instance (read beside the running server).
fn reclaim_steps(srv: &Server, id: i64) -> Value {
    let c = rusqlite::Connection::open(srv.data_dir().join("gpudock.db")).unwrap();
    let steps: String = c
        .query_row(
            "SELECT reclaim_steps FROM instances WHERE id = ?1",
            [id],
            |r| r.get(0),
        )
        .unwrap();
    serde_json::from_str(&steps).unwrap()
}

/// Issue 14: a reclaim that fails on the way (its node unreachable) keeps
/// the container's capacity reserved; gpudock killed (SIGKILL) while the
/// reclaim is pending resumes it after restart once the node answers, and
/// only then is the capacity released.
#[tokio::test]
async fn a_reclaim_pending_when_gpudock_is_killed_resumes_after_restart() {
    let config = format!("{FAST_STOP}[leases]\ncheck_interval_secs = 1\nbuffer_days = 3\n");
    let lab = Lab::new(&config, 2).await;
    let mut body = small_spec("full");
    body["cpu_cores"] = json!(2);
    let spec = lab.spec(body).await;
    let (alice, _) = two_tenants(&lab).await;
    let (s, inst) = post(
        &alice,
        &lab.srv.url("/api/v1/instances"),
        lab.create_body(spec, "doomed"),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{inst}");
    let id = inst["id"].as_i64().unwrap();
    let cid = inst["container_id"].as_str().unwrap().to_string();
    let volume = data_volume(&lab, &cid);
    let candidates = format!("/api/v1/instances/candidate-nodes?spec_id={spec}");
    assert_eq!(lab.get(&candidates).await.1, json!([]), "the node is full");
    // The node stops answering, and the lease is past its buffer.
    let node_url = lab.srv.url(&format!("/api/v1/nodes/{}", lab.node));
    let (s, n) = get(&lab.admin, &node_url).await;
    assert_eq!(s, StatusCode::OK, "{n}");
    let endpoint = n["docker_endpoint"].clone();
    let (s, b) = patch(
        &lab.admin,
        &node_url,
        json!({"docker_endpoint": "tcp://127.0.0.1:1", "tls_enabled": false}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let url = lab.srv.url(&format!("/api/v1/instances/{id}"));
    let (s, b) = patch(&lab.admin, &url, json!({"lease_end": now() - 4 * 86_400})).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !reclaim_steps(&lab.srv, id)
        .to_string()
        .contains("\"failed\"")
    {
        assert!(
            Instant::now() < deadline,
            "no failed step: {}\n{}",
            reclaim_steps(&lab.srv, id),
            lab.srv.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Failed on the way: nothing removed, nothing released.
    assert!(lab.inspect("container", &cid).is_some());
    let c = rusqlite::Connection::open(lab.srv.data_dir().join("gpudock.db")).unwrap();
    let held: i64 = c
        .query_row(
            "SELECT cpu_cores FROM node_usage WHERE node_id = ?1",
            [lab.node],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        held, 2,
        "capacity stays reserved while the container exists"
    );
    drop(c);

    // Killed outright while the reclaim is pending; restarted; the node
    // answers again.
    let Lab { srv, d, node, .. } = lab;
    let mut srv = srv;
    srv.kill();
    let srv = srv.restart(&config);
    let (admin, s, _) = srv.login("admin", common::ADMIN_PASSWORD).await;
    assert_eq!(s, StatusCode::OK);
    let node_url = srv.url(&format!("/api/v1/nodes/{node}"));
    let (s, b) = patch(
        &admin,
        &node_url,
        json!({"docker_endpoint": endpoint, "tls_enabled": false}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, i) = get(&admin, &srv.url(&format!("/api/v1/instances/{id}"))).await;
        if i["status"] == "reclaimed" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not reclaimed: {i}\n{}",
            srv.logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let steps = reclaim_steps(&srv, id);
    for step in ["check", "end_sessions", "remove_container", "remove_volume"] {
        assert!(steps.to_string().contains(step), "{steps}");
    }
    let gone = |kind: &str, name: &str| {
        !common::dockerd::docker_cli(d, &["inspect", "--type", kind, name])
            .status
            .success()
    };
    assert!(
        gone("container", &cid) && gone("volume", &volume),
        "container and volume removed"
    );
    let (_, cands) = get(&admin, &srv.url(&candidates)).await;
    assert_eq!(
        cands.as_array().map(Vec::len),
        Some(1),
        "capacity back: {cands}"
    );
}

/// Issue 14 metering across a restart of gpudock: a container that keeps
/// running while gpudock is down keeps counting; one stopped while gpudock
/// is down stops counting once the restart sees it; nothing counts twice.
#[tokio::test]
async fn metering_survives_a_gpudock_restart() {
    let lab = Lab::new(FAST_STOP, 16).await;
    let mut body = small_spec("m2");
    body["price_per_hour"] = json!(36.0);
    let spec = lab.spec(body).await;
    let (alice, _) = two_tenants(&lab).await;
    let mut ids = Vec::new();
    for name in ["keeps", "halts"] {
        let (s, i) = post(
            &alice,
            &lab.srv.url("/api/v1/instances"),
            lab.create_body(spec, name),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{i}");
        let id = i["id"].as_i64().unwrap();
        wait_status(&alice, &lab.srv, id, "running", Duration::from_secs(60)).await;
        ids.push((id, i["container_id"].as_str().unwrap().to_string()));
    }
    let Lab { srv, d, .. } = lab;
    let mut srv = srv;
    srv.stop();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        common::dockerd::docker_cli(d, &["stop", "-t", "1", &ids[1].1])
            .status
            .success()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let srv = srv.restart(FAST_STOP);
    let (alice, s, _) = srv.login("ralice", "Velvet-Canyon-Harbor-58!").await;
    assert_eq!(s, StatusCode::OK);
    wait_status(&alice, &srv, ids[1].0, "exited", Duration::from_secs(30)).await;
    let seconds = |u: &Value, id: i64| {
        u["usage"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["instance_id"] == id)
            .map(|r| r["running_seconds"].as_i64().unwrap())
            .sum::<i64>()
    };
    let (_, first) = get(&alice, &srv.url("/api/v1/usage")).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, second) = get(&alice, &srv.url("/api/v1/usage")).await;
    let (keeps, halts) = (ids[0].0, ids[1].0);
    // The one that kept running counted through gpudock's downtime (3 s).
    assert!(seconds(&first, keeps) >= 3, "{first}");
    assert!(
        seconds(&second, keeps) > seconds(&first, keeps),
        "still counting: {second}"
    );
    // The one stopped behind gpudock's back counts no more.
    assert!(seconds(&first, halts) >= 1, "{first}");
    assert_eq!(seconds(&second, halts), seconds(&first, halts), "{second}");
    // One interval each: rows per instance and month, never doubled.
    for id in [keeps, halts] {
        let n = second["usage"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["instance_id"] == id)
            .count();
        assert_eq!(n, 1, "{second}");
    }
    // 36.00 per hour = one cent a second.
    for r in second["usage"].as_array().unwrap() {
        assert_eq!(r["cost_cents"], r["running_seconds"], "{r}");
    }
}
