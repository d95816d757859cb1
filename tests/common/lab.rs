//! A lab for tests that need instances: a server, its admin, the test
//! busybox image and a node on the shared test daemon.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::dockerd::{self, TestDaemon, docker_cli};
use super::{Server, get, post, send};

/// busybox `sh` as PID 1 ignores SIGTERM: stops would wait the whole grace.
pub const FAST_STOP: &str = "[instances]\nstop_timeout_secs = 1\n";

/// A server, its admin, an image of the test busybox and a node on the
/// shared test daemon with `cpu` cores (8 RTX 4090s on paper).
pub struct Lab {
    pub srv: Server,
    pub admin: reqwest::Client,
    pub d: &'static TestDaemon,
    pub image: i64,
    pub node: i64,
}

impl Lab {
    pub async fn new(config: &str, cpu: i64) -> Lab {
        Lab::on(dockerd::shared(), config, cpu).await
    }

    /// A lab whose node is the daemon `d` (e.g. a restartable one).
    pub async fn on(d: &'static TestDaemon, config: &str, cpu: i64) -> Lab {
        let srv = Server::start_with(config);
        let admin = srv.admin().await;
        let (s, b) = post(
            &admin,
            &srv.url("/api/v1/images"),
            json!({"name": "busybox", "address": dockerd::TEST_IMAGE}),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        let image = b["id"].as_i64().unwrap();
        let (s, n) = post(
            &admin,
            &srv.url("/api/v1/nodes"),
            json!({"name": "n1", "public_ip": "127.0.0.1", "private_ip": "127.0.0.1",
                   "docker_endpoint": d.unix_url, "tls_enabled": false,
                   "gpu_name": "NVIDIA GeForce RTX 4090", "gpu_count": 8, "cpu_cores": cpu,
                   "memory_gb": 64, "system_disk_gb": 1000, "data_disk_gb": 1000}),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{n}");
        let node = n["id"].as_i64().unwrap();
        let (s, t) = post(
            &admin,
            &srv.url(&format!("/api/v1/nodes/{node}/test")),
            json!({}),
        )
        .await;
        assert_eq!((s, &t["ok"]), (StatusCode::OK, &json!(true)), "{t}");
        Lab {
            srv,
            admin,
            d,
            image,
            node,
        }
    }

    pub async fn spec(&self, body: Value) -> i64 {
        let (s, b) = post(&self.admin, &self.srv.url("/api/v1/specs"), body).await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        b["id"].as_i64().unwrap()
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        get(&self.admin, &self.srv.url(path)).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        post(&self.admin, &self.srv.url(path), body).await
    }

    pub async fn delete(&self, id: &Value) -> StatusCode {
        let url = self.srv.url(&format!("/api/v1/instances/{id}"));
        send(&self.admin, "DELETE", &url, Some(json!({}))).await.0
    }

    /// How many audit records match `query` (e.g. `action=x&outcome=failure`).
    pub async fn audited(&self, query: &str) -> usize {
        let (s, a) = self.get(&format!("/api/v1/audit?{query}&limit=1000")).await;
        assert_eq!(s, StatusCode::OK, "{a}");
        a.as_array().unwrap().len()
    }

    pub fn create_body(&self, spec: i64, name: &str) -> Value {
        json!({"image_id": self.image, "spec_id": spec, "node_id": self.node, "name": name})
    }

    /// Starts creating instance `name` (as the admin) from an image whose
    /// pull never ends (see [`super::silent_registry`]); returns once the
    /// pull has begun, with the pending request.
    pub async fn create_pulling_forever(
        &self,
        spec: i64,
        name: &str,
    ) -> tokio::task::JoinHandle<(StatusCode, Value)> {
        let (port, asked) = super::silent_registry();
        let address = format!("127.0.0.1:{port}/gpudock/slow:1");
        let (s, img) = self
            .post(
                "/api/v1/images",
                json!({"name": "slow", "address": address}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{img}");
        let mut body = self.create_body(spec, name);
        body["image_id"] = img["id"].clone();
        let (c, url) = (self.admin.clone(), self.srv.url("/api/v1/instances"));
        let create = tokio::spawn(async move { post(&c, &url, body).await });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !asked.load(std::sync::atomic::Ordering::SeqCst) {
            assert!(
                std::time::Instant::now() < deadline,
                "the pull never started"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        create
    }

    pub fn docker(&self, args: &[&str]) -> std::process::Output {
        docker_cli(self.d, args)
    }

    /// `docker inspect` of a container or volume as JSON (None: no such).
    pub fn inspect(&self, kind: &str, name: &str) -> Option<Value> {
        let out = self.docker(&[kind, "inspect", name]);
        if !out.status.success() {
            return None;
        }
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        Some(v[0].clone())
    }
}

pub fn small_spec(name: &str) -> Value {
    json!({"name": name, "gpu_model": "RTX 4090", "gpu_count": 0, "cpu_cores": 1, "memory_gb": 1,
           "system_disk_gb": 10, "data_disk_gb": 5})
}
