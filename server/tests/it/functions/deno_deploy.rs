//! The Deno Deploy provider against a fake of the documented v2 API (the
//! real service cannot be reached from CI): apps (`GET/POST /v2/apps`,
//! `DELETE /v2/apps/{app}`), revisions (`POST /v2/apps/{app}/deploy` →
//! 202 `queued`, then `building`, then `succeeded` or `failed` with a
//! `failure_reason` on `GET /v2/revisions/{id}`), runtime logs
//! (`GET /v2/apps/{app}/logs?start=…&end=…` → `{logs: [...]}`), bearer
//! auth, the `Error` shape `{error, code}`, the slug pattern
//! `^[a-z][a-z0-9-]{2,62}$`, env var keys and values as documented. The
//! fake's "app URL" answers like a deployed app that echoes what it got.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use reqwest::Method;
use serde_json::{Value, json};

use super::{Fx, expect_error};

const TOKEN: &str = "ddo_test_token";

#[derive(Default)]
struct Fake {
    apps: HashMap<String, Value>,
    revisions: HashMap<String, Value>,
    /// Revision id → GET polls seen (drives queued → building → succeeded).
    polls: HashMap<String, u32>,
    production: HashMap<String, String>,
    logs: Vec<Value>,
    deleted: Vec<String>,
    /// Where redirects point (another origin), when set.
    elsewhere: String,
}

type Shared = Arc<Mutex<Fake>>;

fn err(status: StatusCode, msg: &str) -> Response {
    (
        status,
        Json(json!({"error": msg, "code": status.as_u16().to_string()})),
    )
        .into_response()
}

fn authorized(h: &HeaderMap) -> bool {
    h.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {TOKEN}"))
}

fn slug_ok(s: &str) -> bool {
    let b = s.as_bytes();
    (3..=63).contains(&b.len())
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// A redirect to `{elsewhere}/{path}`.
fn redirect(s: &Shared, status: StatusCode, path: &str) -> Response {
    let to = format!("{}/{path}", s.lock().expect("lock").elsewhere);
    (status, [(axum::http::header::LOCATION, to)]).into_response()
}

async fn get_app(State(s): State<Shared>, Path(app): Path<String>, h: HeaderMap) -> Response {
    if !authorized(&h) {
        return err(StatusCode::UNAUTHORIZED, "invalid token");
    }
    // An API that moved (or was taken over): every call is sent elsewhere.
    if app.contains("-moved-") {
        return redirect(
            &s,
            StatusCode::TEMPORARY_REDIRECT,
            &format!("v2/apps/{app}"),
        );
    }
    match s.lock().expect("lock").apps.get(&app) {
        Some(a) => Json(a.clone()).into_response(),
        None => err(StatusCode::NOT_FOUND, "app not found"),
    }
}

async fn create_app(State(s): State<Shared>, h: HeaderMap, Json(body): Json<Value>) -> Response {
    if !authorized(&h) {
        return err(StatusCode::UNAUTHORIZED, "invalid token");
    }
    let Some(slug) = body["slug"].as_str().filter(|s| slug_ok(s)) else {
        return err(StatusCode::BAD_REQUEST, "invalid slug");
    };
    let mut s = s.lock().expect("lock");
    if s.apps.contains_key(slug) {
        return err(StatusCode::CONFLICT, "slug taken");
    }
    let app = json!({"id": uuid::Uuid::new_v4(), "slug": slug, "labels": body["labels"], "created_at": "2026-11-30T00:00:00Z"});
    s.apps.insert(slug.to_owned(), app.clone());
    Json(app).into_response()
}

async fn delete_app(State(s): State<Shared>, Path(app): Path<String>, h: HeaderMap) -> Response {
    if !authorized(&h) {
        return err(StatusCode::UNAUTHORIZED, "invalid token");
    }
    let mut s = s.lock().expect("lock");
    if s.apps.remove(&app).is_none() {
        return err(StatusCode::NOT_FOUND, "app not found");
    }
    s.deleted.push(app);
    StatusCode::NO_CONTENT.into_response()
}

async fn deploy(
    State(s): State<Shared>,
    Path(app): Path<String>,
    h: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if !authorized(&h) {
        return err(StatusCode::UNAUTHORIZED, "invalid token");
    }
    let mut s = s.lock().expect("lock");
    if !s.apps.contains_key(&app) {
        return err(StatusCode::NOT_FOUND, "app not found");
    }
    let Some(assets) = body["assets"].as_object().filter(|a| !a.is_empty()) else {
        return err(StatusCode::BAD_REQUEST, "assets required");
    };
    for (path, asset) in assets {
        let ok = asset["kind"] == "file"
            && matches!(asset["encoding"].as_str(), Some("utf-8" | "base64"))
            && asset["content"].is_string();
        if !ok || path.starts_with('/') {
            return err(StatusCode::BAD_REQUEST, &format!("invalid asset {path}"));
        }
    }
    let entry = body["config"]["runtime"]["entrypoint"]
        .as_str()
        .unwrap_or_default();
    if body["config"]["runtime"]["type"] != "dynamic" || !assets.contains_key(entry) {
        return err(
            StatusCode::BAD_REQUEST,
            "config.runtime.entrypoint must name an asset",
        );
    }
    for var in body["env_vars"].as_array().into_iter().flatten() {
        let key = var["key"].as_str().unwrap_or_default();
        let key_ok = !key.is_empty()
            && key.len() <= 128
            && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !key_ok || var["value"].as_str().is_none_or(|v| v.len() > 4096) {
            return err(StatusCode::BAD_REQUEST, &format!("invalid env var {key}"));
        }
    }
    let id = format!("rev_{}", s.revisions.len() + 1);
    let fails = assets[entry]["content"]
        .as_str()
        .is_some_and(|c| c.contains("BUILD_FAIL"));
    let revision = json!({
        "id": id, "status": "queued", "app": app, "labels": body["labels"],
        "env_vars": body["env_vars"], "assets": body["assets"], "fails": fails,
        "production": body["production"].as_bool().unwrap_or(true),
    });
    s.revisions.insert(id.clone(), revision.clone());
    (
        StatusCode::ACCEPTED,
        Json(json!({"id": id, "status": "queued"})),
    )
        .into_response()
}

async fn get_revision(State(s): State<Shared>, Path(id): Path<String>, h: HeaderMap) -> Response {
    if !authorized(&h) {
        return err(StatusCode::UNAUTHORIZED, "invalid token");
    }
    let mut s = s.lock().expect("lock");
    let polls = {
        let n = s.polls.entry(id.clone()).or_insert(0);
        *n += 1;
        *n
    };
    let Some(rev) = s.revisions.get(&id).cloned() else {
        return err(StatusCode::NOT_FOUND, "revision not found");
    };
    let status = match (polls, rev["fails"].as_bool().unwrap_or(false)) {
        (1, _) => "building",
        (_, true) => "failed",
        (_, false) => "succeeded",
    };
    if status == "succeeded" && rev["production"] == true {
        let app = rev["app"].as_str().unwrap_or_default().to_owned();
        s.production.insert(app, id.clone());
    }
    let mut out = json!({"id": id, "status": status, "labels": rev["labels"]});
    if status == "failed" {
        out["failure_reason"] = json!("build error: BUILD_FAIL marker found");
    }
    Json(out).into_response()
}

async fn app_logs(
    State(s): State<Shared>,
    Path(app): Path<String>,
    h: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if !authorized(&h) {
        return err(StatusCode::UNAUTHORIZED, "invalid token");
    }
    if !q.contains_key("start") {
        return err(StatusCode::BAD_REQUEST, "start is required");
    }
    let s = s.lock().expect("lock");
    let logs: Vec<Value> = s
        .logs
        .iter()
        .filter(|l| l["app"] == app.as_str())
        .cloned()
        .collect();
    Json(json!({"logs": logs})).into_response()
}

/// The deployed app: echoes the request and which revision served it.
async fn serve_app(
    State(s): State<Shared>,
    Path((app, rest)): Path<(String, String)>,
    req: Request,
) -> Response {
    if rest.ends_with("/redirect") {
        return redirect(&s, StatusCode::FOUND, "landing");
    }
    let method = req.method().to_string();
    let query = req
        .uri()
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let claims = req.headers().get("x-ferrobase-claims").is_some();
    let body = axum::body::to_bytes(req.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    let mut s = s.lock().expect("lock");
    let Some(rev_id) = s.production.get(&app).cloned() else {
        return err(StatusCode::NOT_FOUND, "no production revision");
    };
    let rev = s.revisions.get(&rev_id).cloned().unwrap_or_default();
    let env_keys: Vec<&str> = rev["env_vars"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["key"].as_str())
        .collect();
    let secret_everywhere = rev["env_vars"]
        .as_array()
        .into_iter()
        .flatten()
        .all(|v| v["secret"] == true);
    let answer = json!({
        "revision": rev_id, "version": rev["labels"]["ferrobase_version"], "method": method,
        "path": format!("/{rest}{query}"), "body": String::from_utf8_lossy(&body),
        "env_keys": env_keys, "secret_everywhere": secret_everywhere, "claims": claims,
    });
    s.logs.push(json!({"app": app, "level": "info", "message": format!("served {rest}"), "revision_id": rev_id, "timestamp": "2026-11-30T00:00:01Z"}));
    Json(answer).into_response()
}

/// A server on another origin that records every request it gets.
async fn start_elsewhere() -> (String, Arc<Mutex<Vec<String>>>) {
    let hits: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = hits.clone();
    let router = axum::Router::new().fallback(any(move |req: Request| {
        let seen = seen.clone();
        async move {
            seen.lock()
                .expect("lock")
                .push(format!("{} {}", req.method(), req.uri()));
            Json(json!({"id": "rev_elsewhere", "status": "succeeded"}))
        }
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind elsewhere");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (format!("http://{addr}"), hits)
}

async fn start_fake() -> (String, Shared) {
    let state: Shared = Arc::default();
    let router = axum::Router::new()
        .route("/v2/apps", post(create_app))
        .route("/v2/apps/{app}", get(get_app).delete(delete_app))
        .route("/v2/apps/{app}/deploy", post(deploy))
        .route("/v2/apps/{app}/logs", get(app_logs))
        .route("/v2/revisions/{id}", get(get_revision))
        .route("/app/{app}/{*rest}", any(serve_app))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind fake");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (format!("http://{addr}"), state)
}

#[tokio::test]
async fn deno_deploy_provider_follows_the_v2_contract() {
    let (fake, state) = start_fake().await;
    let api = format!("{fake}/v2");
    let app_url = format!("{fake}/app/{{app}}");
    // No Deno needed: the code runs "in the cloud".
    let t = crate::support::TestApp::spawn_with(|c| {
        c.functions.functions_provider = ferrobase_server::config::FunctionsProvider::DenoDeploy;
        c.functions.deno_deploy_api_url = api;
        c.functions.deno_deploy_token = Some(TOKEN.into());
        c.functions.deno_deploy_app_url = app_url;
        c.functions.deno_deploy_poll_ms = 10;
    })
    .await;
    let p = t.create_project("fn-cloud").await;
    let fx = Fx {
        t,
        p,
        project_ref: "fn-cloud".into(),
    };

    fx.deploy("hello", "Deno.serve(() => new Response('v1'));")
        .await;
    let app = {
        let s = state.lock().expect("lock");
        let (slug, app) = s.apps.iter().next().expect("an app was created");
        assert_eq!(app["labels"]["ferrobase_project"], "fn-cloud");
        assert_eq!(app["labels"]["ferrobase_function"], "hello");
        slug.clone()
    };
    let invoke = || async {
        let resp = fx
            .call(Method::POST, "hello/sub?q=1")
            .body("ping")
            .send()
            .await
            .expect("invoke");
        assert_eq!(resp.status(), 200);
        resp.json::<Value>().await.expect("json")
    };
    let v = invoke().await;
    assert_eq!(v["version"], "1");
    assert_eq!(v["method"], "POST");
    assert_eq!(v["path"], "/hello/sub?q=1");
    assert_eq!(v["body"], "ping");
    assert_eq!(v["claims"], true);
    assert_eq!(v["secret_everywhere"], true);
    let keys = v["env_keys"].to_string();
    assert!(
        keys.contains("FERROBASE_URL") && keys.contains("FERROBASE_SERVICE_ROLE_KEY"),
        "{keys}"
    );

    // Update → revision 2; rollback → a new revision with version 1's code.
    let resp = fx
        .admin(Method::PUT, "functions/hello")
        .json(&json!({"code": "Deno.serve(() => new Response('v2'));"}))
        .send()
        .await
        .expect("update");
    assert_eq!(resp.status(), 200);
    assert_eq!(invoke().await["version"], "2");
    let resp = fx
        .admin(Method::POST, "functions/hello/versions/1/activate")
        .send()
        .await
        .expect("rollback");
    assert_eq!(resp.status(), 200);
    let v = invoke().await;
    assert_eq!(v["version"], "1");
    assert_eq!(v["revision"], "rev_3");

    // A failed build: the error carries the failure reason and the previous version stays active.
    let resp = fx
        .admin(Method::PUT, "functions/hello")
        .json(&json!({"code": "// BUILD_FAIL\nDeno.serve(() => new Response('broken'));"}))
        .send()
        .await
        .expect("failing deploy");
    let e = expect_error(resp, 502, "function_deploy_failed").await;
    assert!(
        e["message"]
            .as_str()
            .is_some_and(|m| m.contains("BUILD_FAIL marker")),
        "{e}"
    );
    let f: Value = fx
        .admin(Method::GET, "functions/hello")
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(f["active_version"], 1, "{f}");
    assert_eq!(invoke().await["version"], "1");

    // App logs come from the provider.
    let logs: Value = fx
        .admin(Method::GET, "functions/hello/logs")
        .send()
        .await
        .expect("logs")
        .json()
        .await
        .expect("json");
    assert!(logs.to_string().contains("served hello/sub"), "{logs}");

    // Delete removes the app.
    let resp = fx
        .admin(Method::DELETE, "functions/hello")
        .send()
        .await
        .expect("delete");
    assert_eq!(resp.status(), 204);
    assert_eq!(state.lock().expect("lock").deleted, [app]);
}

#[tokio::test]
async fn deno_deploy_refusals_are_clear_errors() {
    let (fake, _state) = start_fake().await;
    let t = crate::support::TestApp::spawn_with(|c| {
        c.functions.functions_provider = ferrobase_server::config::FunctionsProvider::DenoDeploy;
        c.functions.deno_deploy_api_url = format!("{fake}/v2");
        c.functions.deno_deploy_token = Some("ddo_wrong".into());
        c.functions.deno_deploy_app_url = format!("{fake}/app/{{app}}");
    })
    .await;
    let p = t.create_project("fn-cloud-bad").await;
    let resp = t
        .http
        .post(format!("{}/admin/v1/functions", p.url))
        .bearer_auth(&p.service)
        .json(&json!({"slug": "hello", "code": "Deno.serve(() => new Response('x'));"}))
        .send()
        .await
        .expect("deploy");
    let e = expect_error(resp, 502, "function_deploy_failed").await;
    assert!(
        e["message"].as_str().is_some_and(|m| m.contains("401")),
        "{e}"
    );
    // The failed create leaves nothing behind.
    let list: Value = t
        .http
        .get(format!("{}/admin/v1/functions", p.url))
        .bearer_auth(&p.service)
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(list, json!([]));
}

/// Neither the API client nor the invocation proxy follows redirects: an API
/// answer that redirects (a moved or hijacked endpoint) fails the deploy
/// instead of re-sending the request, with the environment's secrets in its
/// body, to another origin; a function's own redirect reaches its caller as
/// is instead of being fetched by the server.
#[tokio::test]
async fn deno_deploy_redirects_are_not_followed() {
    let (elsewhere, hits) = start_elsewhere().await;
    let (fake, state) = start_fake().await;
    state.lock().expect("lock").elsewhere = elsewhere.clone();
    let t = crate::support::TestApp::spawn_with(|c| {
        c.functions.functions_provider = ferrobase_server::config::FunctionsProvider::DenoDeploy;
        c.functions.deno_deploy_api_url = format!("{fake}/v2");
        c.functions.deno_deploy_token = Some(TOKEN.into());
        c.functions.deno_deploy_app_url = format!("{fake}/app/{{app}}");
        c.functions.deno_deploy_poll_ms = 10;
    })
    .await;
    let p = t.create_project("fn-cloud-redir").await;
    let fx = Fx {
        t,
        p,
        project_ref: "fn-cloud-redir".into(),
    };

    fx.deploy("hello", "Deno.serve(() => new Response('v1'));")
        .await;
    // (This test's client does not follow redirects either.)
    let resp = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .get(format!("{}/functions/v1/hello/redirect", fx.p.url))
        .bearer_auth(&fx.p.anon)
        .send()
        .await
        .expect("invoke");
    assert_eq!(resp.status(), 302);
    assert_eq!(
        resp.headers()["location"],
        format!("{elsewhere}/landing").as_str()
    );

    let resp = fx
        .admin(Method::POST, "functions")
        .json(&json!({"slug": "moved", "code": "Deno.serve(() => new Response('x'));"}))
        .send()
        .await
        .expect("deploy");
    let e = expect_error(resp, 502, "function_deploy_failed").await;
    assert!(
        e["message"].as_str().is_some_and(|m| m.contains("307")),
        "{e}"
    );
    assert_eq!(*hits.lock().expect("lock"), Vec::<String>::new());
}
