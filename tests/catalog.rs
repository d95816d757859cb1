//! The image library and product specs over the real server: CRUD, field
//! validation, customers' listed-only view, audit records, the pages.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Server, code, get, make_tenant, make_user, patch, post, send};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn field<'a>(b: &'a Value, name: &str) -> &'a str {
    b["error"]["fields"][name].as_str().unwrap_or("")
}

#[tokio::test]
async fn images_crud_and_validation() {
    let srv = Server::start();
    let admin = srv.admin().await;
    let url = srv.url("/api/v1/images");

    let (s, b) = post(&admin, &url, json!({})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(field(&b, "name"), "required");
    assert_eq!(field(&b, "address"), "required");
    for bad in ["bad image", "UPPER/case:1", "x:", "repo@sha256:nothex"] {
        let (s, b) = post(&admin, &url, json!({"name": "x", "address": bad})).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        assert!(
            field(&b, "address").starts_with("not a valid image reference"),
            "{bad}: {b}"
        );
    }
    let (s, img) = post(&admin, &url, json!({"name": "CUDA 12.4", "address": "nvidia/cuda:12.4.0-runtime-ubuntu22.04", "description": "base", "source": "Docker Hub"})).await;
    assert_eq!(s, StatusCode::CREATED, "{img}");
    assert_eq!(img["listed"], true, "listed by default");
    let id = img["id"].as_i64().unwrap();

    let (s, b) = patch(
        &admin,
        &format!("{url}/{id}"),
        json!({"listed": false, "remark": "maintenance"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (
            b["listed"].as_bool(),
            b["remark"].as_str(),
            b["name"].as_str()
        ),
        (Some(false), Some("maintenance"), Some("CUDA 12.4"))
    );
    let (s, b) = patch(
        &admin,
        &format!("{url}/{id}"),
        json!({"address": "no spaces allowed"}),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(!field(&b, "address").is_empty());
    let (s, b) = patch(&admin, &format!("{url}/{id}"), json!({"name": "   "})).await;
    assert_eq!(
        (s, field(&b, "name")),
        (StatusCode::UNPROCESSABLE_ENTITY, "required")
    );

    let (s, _) = send(&admin, "DELETE", &format!("{url}/{id}"), Some(json!({}))).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, b) = get(&admin, &format!("{url}/{id}")).await;
    assert_eq!((s, code(&b)), (StatusCode::NOT_FOUND, "not_found"));

    let (_, audit) = get(&admin, &srv.url("/api/v1/audit?resource_type=image")).await;
    let actions: Vec<_> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(actions, ["image.delete", "image.update", "image.create"]);
}

#[tokio::test]
async fn specs_validate_numbers_and_keep_money_exact() {
    let srv = Server::start();
    let admin = srv.admin().await;
    let url = srv.url("/api/v1/specs");
    let (s, b) = post(&admin, &url, json!({})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        (field(&b, "name"), field(&b, "gpu_model")),
        ("required", "required")
    );

    let (s, b) = post(&admin, &url, json!({
        "name": "x", "gpu_model": "RTX 4090", "gpu_count": -1, "cpu_cores": 2.5, "memory_gb": "lots",
        "system_disk_gb": 2_000_000, "data_disk_gb": true, "price_per_hour": 1.234
    }))
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    for f in [
        "gpu_count",
        "cpu_cores",
        "memory_gb",
        "system_disk_gb",
        "data_disk_gb",
        "price_per_hour",
    ] {
        assert!(!field(&b, f).is_empty(), "{f} not reported: {b}");
    }

    let (s, spec) = post(&admin, &url, json!({
        "name": "4090 x2", "gpu_model": "RTX 4090", "gpu_count": 2, "cpu_cores": 16, "memory_gb": 64,
        "system_disk_gb": 100, "data_disk_gb": 500, "price_per_hour": 12.5
    }))
    .await;
    assert_eq!(s, StatusCode::CREATED, "{spec}");
    assert_eq!(spec["price_per_hour"], 12.5);
    assert_eq!(spec["listed"], true);
    let id = spec["id"].as_i64().unwrap();
    let (_, b) = patch(
        &admin,
        &format!("{url}/{id}"),
        json!({"price_per_hour": "0.10"}),
    )
    .await;
    assert_eq!(b["price_per_hour"], 0.1);
    assert_eq!(b["gpu_count"], 2, "absent fields are kept");
}

#[tokio::test]
async fn customers_see_listed_entries_only_and_change_nothing() {
    let srv = Server::start();
    let admin = srv.admin().await;
    let t = make_tenant(&srv, &admin, "CAT").await;
    let (_, owner) = make_user(
        &srv,
        &admin,
        "cato",
        "customer_owner",
        Some(t),
        "Juniper-Atlas-Rocket-55",
    )
    .await;
    let (_, member) = make_user(
        &srv,
        &admin,
        "catm",
        "customer_member",
        Some(t),
        "Ember-Willow-Signal-12",
    )
    .await;
    let (_, shown) = post(
        &admin,
        &srv.url("/api/v1/images"),
        json!({"name": "shown", "address": "ubuntu:24.04"}),
    )
    .await;
    let (_, hidden) = post(
        &admin,
        &srv.url("/api/v1/images"),
        json!({"name": "hidden", "address": "ubuntu:22.04", "listed": false}),
    )
    .await;
    let (_, spec) = post(
        &admin,
        &srv.url("/api/v1/specs"),
        json!({"name": "s", "gpu_model": "A100", "listed": false}),
    )
    .await;
    let hidden_id = hidden["id"].as_i64().unwrap();

    for c in [&owner, &member] {
        let (s, list) = get(c, &srv.url("/api/v1/images")).await;
        assert_eq!(s, StatusCode::OK);
        let names: Vec<_> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["shown"]);
        let (s, _) = get(c, &srv.url(&format!("/api/v1/images/{hidden_id}"))).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let (s, _) = get(c, &srv.url(&format!("/api/v1/images/{}", shown["id"]))).await;
        assert_eq!(s, StatusCode::OK);
        let (_, specs) = get(c, &srv.url("/api/v1/specs")).await;
        assert!(specs.as_array().unwrap().is_empty());
        let (s, _) = get(c, &srv.url(&format!("/api/v1/specs/{}", spec["id"]))).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let (s, b) = post(
            c,
            &srv.url("/api/v1/images"),
            json!({"name": "x", "address": "x"}),
        )
        .await;
        assert_eq!((s, code(&b)), (StatusCode::FORBIDDEN, "forbidden"));
        let (s, _) = patch(
            c,
            &srv.url(&format!("/api/v1/images/{}", shown["id"])),
            json!({"listed": false}),
        )
        .await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        let (s, _) = send(
            c,
            "DELETE",
            &srv.url(&format!("/api/v1/specs/{}", spec["id"])),
            Some(json!({})),
        )
        .await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        // The page lists the same, without admin columns or the form.
        let html = c
            .get(srv.url("/images"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            html.contains("ubuntu:24.04")
                && !html.contains("ubuntu:22.04")
                && !html.contains("image-save")
        );
    }
}

#[tokio::test]
async fn pages_create_edit_and_keep_bad_input() {
    let srv = Server::start();
    let admin = srv.admin().await;
    let (_, me) = get(&admin, &srv.url("/api/v1/me")).await;
    let csrf = me["csrf_token"].as_str().unwrap().to_string();
    let r = admin
        .post(srv.url("/specs"))
        .header("accept-language", "en")
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("name", "Typed"),
            ("gpu_model", "H100"),
            ("gpu_count", "eight"),
            ("price_per_hour", "3.999"),
            ("listed", "1"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = r.text().await.unwrap();
    assert!(html.contains("value=\"Typed\"") && html.contains("value=\"eight\""));
    assert!(html.contains("id=\"err-gpu_count\">must be a whole number"));
    assert!(html.contains("id=\"err-price\">a price with at most two decimals"));

    let r = admin
        .post(srv.url("/specs"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("name", "H100 x8"),
            ("gpu_model", "H100"),
            ("gpu_count", "8"),
            ("price_per_hour", "39.90"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let (_, specs) = get(&admin, &srv.url("/api/v1/specs")).await;
    assert_eq!(specs[0]["gpu_count"], 8);
    assert_eq!(specs[0]["listed"], false, "an unchecked box means unlisted");
    let id = specs[0]["id"].as_i64().unwrap();
    let html = admin
        .get(srv.url(&format!("/specs/{id}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("value=\"39.90\""));
    let r = admin
        .post(srv.url(&format!("/specs/{id}/delete")))
        .form(&[("csrf_token", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let (s, _) = get(&admin, &srv.url(&format!("/api/v1/specs/{id}"))).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let html = admin
        .get(srv.url("/images"))
        .header("accept-language", "zh-CN")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("镜像库") && html.contains("新增镜像"));
}

/// The other lists page the same way: images, specs, sessions, audit and
/// the instance list, whose page refreshes only the rows on screen.
#[tokio::test]
async fn every_list_pages_with_its_total() {
    let srv = Server::start();
    let admin = srv.admin().await;
    for n in 0..3 {
        let (s, b) = post(
            &admin,
            &srv.url("/api/v1/images"),
            json!({"name": format!("img{n}"), "address": format!("busybox:1.{n}")}),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
    }
    let total = |r: &reqwest::Response| {
        r.headers()["x-total-count"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    let r = admin
        .get(srv.url("/api/v1/images?limit=2&offset=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(total(&r), 3);
    let rows: Value = r.json().await.unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 2);
    assert_eq!(rows[0]["name"], "img1");
    let page = common::text(&admin, &srv.url("/images?limit=2")).await;
    assert!(page.contains("class=\"pager-next\""), "{page}");
    assert!(!page.contains(">img2<"), "{page}");

    for path in [
        "/api/v1/specs",
        "/api/v1/sessions",
        "/api/v1/nodes",
        "/api/v1/instances",
    ] {
        let r = admin.get(srv.url(path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert_eq!(total(&r), 0, "{path}");
    }
    // Every sign-in and creation above is in the audit log: the API's
    // total counts them all, its window shows one.
    let r = admin
        .get(srv.url("/api/v1/audit?limit=1"))
        .send()
        .await
        .unwrap();
    assert!(total(&r) >= 4);
    assert!(
        r.headers()["link"]
            .to_str()
            .unwrap()
            .contains("offset=1>; rel=\"next\"")
    );
    assert_eq!(
        r.json::<Value>().await.unwrap().as_array().unwrap().len(),
        1
    );
    for (path, field) in [
        ("/api/v1/sessions?offset=x", "offset"),
        ("/api/v1/images?limit=-2", "limit"),
    ] {
        let (s, b) = get(&admin, &srv.url(path)).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {b}");
        assert!(field_named(&b, field), "{path}: {b}");
    }
    // The instance list polls the page it shows, not every instance.
    let page = common::text(&admin, &srv.url("/instances?limit=20&offset=40")).await;
    assert!(
        page.contains("hx-get=\"/instances?limit=20&#38;offset=40\""),
        "{page}"
    );
}

fn field_named(b: &Value, name: &str) -> bool {
    b["error"]["fields"].get(name).is_some()
}
