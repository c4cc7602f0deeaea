//! The `/platform/v1` API, health, metrics, OpenAPI and routing, over HTTP.

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{TestApp, expect_error};

#[tokio::test]
async fn login_refuses_wrong_credentials_without_revealing_which() {
    let t = TestApp::spawn().await;
    for (email, password) in [
        (t.config.admin_email.as_str(), "wrong password"),
        ("nobody@ferrobase.test", "correct horse battery staple"),
        ("not an email", "x"),
    ] {
        let resp = t
            .http
            .post(format!("{}/platform/v1/auth/login", t.url))
            .json(&json!({"email": email, "password": password}))
            .send()
            .await
            .unwrap();
        let body = expect_error(resp, 401, "invalid_credentials").await;
        assert_eq!(body["message"], "Invalid email or password.");
    }
}

#[tokio::test]
async fn project_lifecycle_create_list_get_use_delete() {
    let t = TestApp::spawn().await;
    let p = t.create_project("life-cycle").await;
    assert_eq!(p.url, format!("{}/p/life-cycle", t.url));

    let list: Vec<Value> = t
        .admin(Method::GET, "/platform/v1/projects")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["ref"], "life-cycle");
    assert_eq!(list[0]["status"], "ready");
    assert!(
        list[0].get("anon_key").is_none(),
        "the list does not carry keys"
    );

    let got: Value = t
        .admin(Method::GET, "/platform/v1/projects/life-cycle")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["anon_key"], p.anon);
    assert_eq!(got["service_role_key"], p.service);

    // Use it: the JWKS carries the key that signed the project's API keys.
    let jwks: Value = t
        .http
        .get(format!("{}/auth/v1/.well-known/jwks.json", p.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kid = jwks["keys"][0]["kid"].as_str().unwrap().to_owned();
    assert_eq!(jwks["keys"][0]["alg"], "ES256");
    assert!(
        jwks["keys"][0].get("d").is_none(),
        "no private key material in JWKS"
    );
    let header = p.anon.split('.').next().unwrap();
    let header: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, header).unwrap(),
    )
    .unwrap();
    assert_eq!(header["kid"], kid);

    // The owner connection string works and reaches the project database.
    let cfg: tokio_postgres::Config = p.db_url.parse().unwrap();
    let client = ferrobase_server::db::connect(&cfg).await.unwrap();
    let uid: Option<uuid::Uuid> = client
        .query_one("select auth.uid()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(uid, None);
    drop(client);

    let resp = t
        .admin(Method::DELETE, "/platform/v1/projects/life-cycle")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    expect_error(
        t.admin(Method::GET, "/platform/v1/projects/life-cycle")
            .send()
            .await
            .unwrap(),
        404,
        "project_not_found",
    )
    .await;
    expect_error(
        t.http
            .get(format!("{}/auth/v1/.well-known/jwks.json", p.url))
            .send()
            .await
            .unwrap(),
        404,
        "project_not_found",
    )
    .await;
    assert!(
        ferrobase_server::db::connect(&cfg).await.is_err(),
        "database and role are dropped"
    );
    expect_error(
        t.admin(Method::DELETE, "/platform/v1/projects/life-cycle")
            .send()
            .await
            .unwrap(),
        404,
        "project_not_found",
    )
    .await;
    // The ref can be reused.
    t.create_project("life-cycle").await;
}

#[tokio::test]
async fn duplicate_and_invalid_refs_are_refused() {
    let t = TestApp::spawn().await;
    t.create_project("dupe").await;
    let resp = t
        .admin(Method::POST, "/platform/v1/projects")
        .json(&json!({"ref": "dupe"}))
        .send()
        .await
        .unwrap();
    expect_error(resp, 409, "project_exists").await;
    for bad in [
        "ab",
        "-ab",
        "ab-",
        "Upper",
        "with_underscore",
        "spa ce",
        "dots.dots",
        "x'; drop database postgres; --",
        &"a".repeat(41),
    ] {
        let resp = t
            .admin(Method::POST, "/platform/v1/projects")
            .json(&json!({"ref": bad}))
            .send()
            .await
            .unwrap();
        let body = expect_error(resp, 400, "invalid_ref").await;
        assert!(body["hint"].is_string());
    }
    let resp = t
        .admin(Method::POST, "/platform/v1/projects")
        .json(&json!({"ref": 42}))
        .send()
        .await
        .unwrap();
    expect_error(resp, 422, "invalid_body").await;
}

#[tokio::test]
async fn platform_endpoints_need_a_valid_admin_token() {
    let t = TestApp::spawn().await;
    let url = format!("{}/platform/v1/projects", t.url);
    expect_error(t.http.get(&url).send().await.unwrap(), 401, "missing_token").await;
    expect_error(
        t.http
            .get(&url)
            .bearer_auth("garbage")
            .send()
            .await
            .unwrap(),
        401,
        "invalid_token",
    )
    .await;
    // A project key is not an admin token.
    let p = t.create_project("not-admin").await;
    expect_error(
        t.http
            .get(&url)
            .bearer_auth(&p.service)
            .send()
            .await
            .unwrap(),
        401,
        "invalid_token",
    )
    .await;
}

#[tokio::test]
async fn health_metrics_openapi_request_ids_and_cors() {
    let t = TestApp::spawn().await;
    for (path, status) in [
        ("/health", "ok"),
        ("/health/live", "live"),
        ("/health/ready", "ready"),
    ] {
        let body: Value = t
            .http
            .get(format!("{}{path}", t.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(body["status"], status, "{path}");
    }
    // Request ids: generated, or accepted and echoed.
    let resp = t
        .http
        .get(format!("{}/health", t.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"].to_str().unwrap().len(), 36);
    let resp = t
        .http
        .get(format!("{}/health", t.url))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "abc-123");

    let metrics = t.metrics().await;
    assert!(metrics.contains("http_requests_total"), "{metrics}");
    assert!(metrics.contains("route=\"/health\""));
    assert!(metrics.contains("http_request_duration_seconds_bucket"));
    assert!(metrics.contains("ferrobase_project_pools_open"));

    let spec: Value = t
        .http
        .get(format!("{}/openapi.json", t.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    assert!(spec["paths"]["/platform/v1/projects"]["post"].is_object());
    // Every capability's routes are in the reference, not only the core's.
    for (path, method) in [
        ("/p/{ref}/admin/v1/functions", "post"),
        (
            "/p/{ref}/admin/v1/functions/{slug}/versions/{version}/activate",
            "post",
        ),
        ("/p/{ref}/functions/v1/{slug}", "post"),
        ("/p/{ref}/admin/v1/webhooks", "post"),
        ("/p/{ref}/ai/v1/chat/completions", "post"),
        ("/p/{ref}/realtime/v1/messages", "post"),
    ] {
        assert!(
            spec["paths"][path][method].is_object(),
            "{method} {path} is missing from /openapi.json"
        );
    }
    let docs = t
        .http
        .get(format!("{}/docs", t.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(docs.contains("/platform/v1/projects"));

    let resp = t
        .http
        .request(Method::OPTIONS, format!("{}/platform/v1/projects", t.url))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    // `*` (the default) allows every origin; the origin is echoed, with `Vary: origin`.
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    assert!(
        resp.headers()
            .get_all("vary")
            .iter()
            .any(|v| v.to_str().unwrap_or("").contains("origin")),
        "{:?}",
        resp.headers()
    );
}

#[tokio::test]
async fn unknown_routes_and_methods_get_the_json_envelope() {
    let t = TestApp::spawn().await;
    expect_error(
        t.http.get(format!("{}/nope", t.url)).send().await.unwrap(),
        404,
        "not_found",
    )
    .await;
    expect_error(
        t.http
            .put(format!("{}/health", t.url))
            .send()
            .await
            .unwrap(),
        405,
        "method_not_allowed",
    )
    .await;
    expect_error(
        t.http
            .get(format!(
                "{}/p/unknown-project/auth/v1/.well-known/jwks.json",
                t.url
            ))
            .send()
            .await
            .unwrap(),
        404,
        "project_not_found",
    )
    .await;
    expect_error(
        t.http
            .get(format!(
                "{}/p/BAD..REF/auth/v1/.well-known/jwks.json",
                t.url
            ))
            .send()
            .await
            .unwrap(),
        404,
        "project_not_found",
    )
    .await;
}

#[tokio::test]
async fn host_routing_reaches_the_same_project_as_the_path() {
    let t = TestApp::spawn_with(|c| c.base_domain = Some("ferrobase.test".into())).await;
    let p = t.create_project("by-host").await;
    let by_path: Value = t
        .http
        .get(format!("{}/auth/v1/.well-known/jwks.json", p.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let by_host: Value = t
        .http
        .get(format!("{}/auth/v1/.well-known/jwks.json", t.url))
        .header("host", "by-host.ferrobase.test:8080")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(by_path, by_host);
    let resp = t
        .http
        .get(format!("{}/auth/v1/.well-known/jwks.json", t.url))
        .header("host", "nope.ferrobase.test")
        .send()
        .await
        .unwrap();
    expect_error(resp, 404, "project_not_found").await;
    // Platform routes still work on the bare domain.
    let resp = t
        .http
        .get(format!("{}/health", t.url))
        .header("host", "ferrobase.test")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}
