//! Webhooks end to end: events written to `realtime.messages` (as the
//! realtime hub writes them) reach a real HTTP receiver, signed so that the
//! Python `standardwebhooks` package (an implementation nobody here wrote)
//! accepts them; failures, 410, timeouts and redirects; replay; rotation;
//! SSRF refusals; bad input; two nodes; and `kill -9` of a node.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, Query};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use reqwest::Method;
use serde_json::{Value, json};

use crate::auth::{missing_peer, python_with};
use crate::support::{TestApp, TestProject, expect_error, fresh_database, temp_dir};

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: HeaderMap,
    body: String,
}

/// A webhook receiver on 127.0.0.1. Paths choose the answer:
/// `/ok`, `/status/{code}` (`?retry_after=S`), `/sleep/{ms}`, `/redirect`.
#[derive(Clone)]
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    async fn start() -> Receiver {
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let record = got.clone();
        let target = format!("{url}/ok");
        let app = Router::new().route(
            "/{*path}",
            post(
                move |Path(path): Path<String>,
                      Query(q): Query<HashMap<String, String>>,
                      headers: HeaderMap,
                      body: String| {
                    let record = record.clone();
                    let target = target.clone();
                    async move {
                        record.lock().expect("lock").push(Received {
                            path: path.clone(),
                            headers,
                            body,
                        });
                        answer(&path, &q, &target).await
                    }
                },
            ),
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { url, got }
    }

    fn at(&self, path: &str) -> Vec<Received> {
        self.got
            .lock()
            .expect("lock")
            .iter()
            .filter(|r| r.path == path.trim_start_matches('/'))
            .cloned()
            .collect()
    }

    fn distinct_ids(&self, path: &str) -> HashSet<String> {
        self.at(path)
            .iter()
            .filter_map(|r| {
                r.headers
                    .get("webhook-id")?
                    .to_str()
                    .ok()
                    .map(str::to_owned)
            })
            .collect()
    }
}

async fn answer(path: &str, q: &HashMap<String, String>, redirect_to: &str) -> Response {
    let mut parts = path.split('/');
    match (parts.next(), parts.next()) {
        (Some("ok"), _) => (StatusCode::OK, "thanks").into_response(),
        (Some("status"), Some(code)) => {
            let code = code.parse().ok().and_then(|c| StatusCode::from_u16(c).ok());
            let code = code.unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut resp = (code, "boom: receiver says no").into_response();
            if let Some(ra) = q.get("retry_after").and_then(|v| v.parse().ok()) {
                resp.headers_mut().insert(header::RETRY_AFTER, ra);
            }
            resp
        }
        (Some("sleep"), Some(ms)) => {
            let ms = ms.parse().unwrap_or(100);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            (StatusCode::OK, "slept").into_response()
        }
        (Some("redirect"), _) => (
            StatusCode::TEMPORARY_REDIRECT,
            [(header::LOCATION, redirect_to.to_owned())],
        )
            .into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Polls `cond` every 25 ms until it holds or `secs` pass.
async fn wait_until(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn service(req: reqwest::RequestBuilder, p: &TestProject) -> reqwest::RequestBuilder {
    req.header("apikey", &p.service).bearer_auth(&p.service)
}

async fn api(
    app: &TestApp,
    p: &TestProject,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut req = service(app.http.request(method, format!("{}{path}", p.url)), p);
    if let Some(b) = body {
        req = req.json(&b);
    }
    req.send().await.expect("request")
}

async fn create_endpoint(app: &TestApp, p: &TestProject, url: &str, events: &[&str]) -> Value {
    let resp = api(
        app,
        p,
        Method::POST,
        "/admin/v1/webhooks",
        Some(json!({"url": url, "events": events})),
    )
    .await;
    assert_eq!(resp.status(), 201, "create endpoint");
    resp.json().await.expect("json")
}

async fn owner(p: &TestProject) -> tokio_postgres::Client {
    let cfg: tokio_postgres::Config = p.db_url.parse().expect("db_url");
    ferrobase_server::db::connect(&cfg)
        .await
        .expect("connect as owner")
}

/// Writes an event as the realtime hub does: a row of `realtime.messages`.
async fn publish(db: &tokio_postgres::Client, topic: &str, event: &str, payload: Value) {
    db.execute(
        "insert into realtime.messages (topic, event, payload) values ($1, $2, $3)",
        &[&topic, &event, &payload],
    )
    .await
    .expect("insert message");
}

/// Verifies `r` with the Python `standardwebhooks` package; None = peer missing.
fn python_verify(secret: &str, r: &Received) -> Option<bool> {
    let Some(py) = python_with("standardwebhooks") else {
        missing_peer("python standardwebhooks");
        return None;
    };
    let headers: HashMap<String, String> = ["webhook-id", "webhook-timestamp", "webhook-signature"]
        .iter()
        .map(|h| {
            let v = r
                .headers
                .get(*h)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            ((*h).to_owned(), v.to_owned())
        })
        .collect();
    let input = json!({"secret": secret, "body": r.body, "headers": headers}).to_string();
    let script = "import json,sys\nfrom standardwebhooks.webhooks import Webhook\n\
        d=json.load(sys.stdin)\ntry:\n  Webhook(d['secret']).verify(d['body'], d['headers'])\n  print('ok')\n\
        except Exception as e:\n  print('bad', e)\n";
    let mut child = std::process::Command::new(py)
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run python");
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(input.as_bytes()).expect("write stdin");
    }
    let out = child.wait_with_output().expect("python output");
    let text = String::from_utf8_lossy(&out.stdout);
    Some(text.trim() == "ok")
}

fn header<'a>(r: &'a Received, name: &str) -> &'a str {
    r.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

#[tokio::test]
async fn signed_deliveries_of_messages_changes_and_emitted_events() {
    let app = TestApp::spawn().await;
    let p = app.create_project("hooks-sign").await;
    let rx = Receiver::start().await;
    let ep = create_endpoint(
        &app,
        &p,
        &format!("{}/ok", rx.url),
        &["room:*", "db:public:orders", "auth.*"],
    )
    .await;
    let secret = ep["secret"].as_str().expect("secret shown once").to_owned();
    assert!(secret.starts_with("whsec_"));
    let id = ep["id"].as_str().expect("id").to_owned();
    // The secret is never shown again.
    let listed: Value = api(&app, &p, Method::GET, "/admin/v1/webhooks", None)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
    assert!(listed[0].get("secret").is_none() && !listed.to_string().contains(&secret));

    let db = owner(&p).await;
    publish(&db, "room:1", "chat", json!({"text": "hi"})).await;
    publish(&db, "elsewhere", "chat", json!({"text": "not subscribed"})).await;
    db.execute(
        "insert into realtime.messages (topic, event, payload, kind) values ('db:public:orders', 'INSERT', $1, 'db')",
        &[&json!({"schema": "public", "table": "orders", "type": "INSERT", "record": {"id": 7}, "old_record": null, "commit_timestamp": "2026-01-01T00:00:00Z"})],
    )
    .await
    .expect("db event");
    // Another capability emitting its own event in its transaction.
    let n: i32 = db
        .query_one(
            "select webhooks.emit('auth.user.created', '{\"id\": \"u1\"}')",
            &[],
        )
        .await
        .expect("emit")
        .get(0);
    assert_eq!(n, 1);
    // A rolled-back event is never delivered.
    db.batch_execute(
        "begin; insert into realtime.messages (topic, event) values ('room:2', 'ghost'); rollback;",
    )
    .await
    .expect("rollback");

    wait_until(20, "3 deliveries", || rx.at("ok").len() >= 3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = rx.at("ok");
    assert_eq!(
        got.len(),
        3,
        "exactly the subscribed, committed events: {got:?}"
    );
    let bodies: Vec<Value> = got
        .iter()
        .map(|r| serde_json::from_str(&r.body).expect("json body"))
        .collect();
    let by_type = |t: &str| {
        bodies
            .iter()
            .find(|b| b["type"] == t)
            .cloned()
            .unwrap_or_else(|| panic!("no {t} in {bodies:?}"))
    };
    let msg = by_type("realtime.message");
    assert_eq!(msg["data"]["channel"], "room:1");
    assert_eq!(msg["data"]["event"], "chat");
    assert_eq!(msg["data"]["payload"]["text"], "hi");
    assert!(msg["data"]["messageId"].is_i64());
    assert!(msg["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
    let change = by_type("db.insert");
    assert_eq!(change["data"]["table"], "orders");
    assert_eq!(change["data"]["record"]["id"], 7);
    assert_eq!(by_type("auth.user.created")["data"]["id"], "u1");

    for r in &got {
        assert!(header(r, "webhook-id").starts_with("msg_"));
        assert_eq!(header(r, "content-type"), "application/json");
        assert!(header(r, "webhook-signature").starts_with("v1,"));
        // The SDK's verifier, and the reference implementation.
        assert!(ferrobase::webhooks::verify(&secret, &r.headers, r.body.as_bytes()).is_ok());
        assert!(ferrobase::webhooks::verify(&secret, &r.headers, b"{\"tampered\":1}").is_err());
        if let Some(ok) = python_verify(&secret, r) {
            assert!(ok, "python standardwebhooks accepts {r:?}");
            let mut forged = r.clone();
            forged.body.push(' ');
            assert_eq!(
                python_verify(&secret, &forged),
                Some(false),
                "and rejects a changed body"
            );
        }
    }

    // The delivery log.
    let list: Value = api(
        &app,
        &p,
        Method::GET,
        &format!("/admin/v1/webhooks/{id}/deliveries"),
        None,
    )
    .await
    .json()
    .await
    .expect("json");
    let list = list.as_array().expect("array");
    assert_eq!(list.len(), 3);
    assert!(
        list.iter()
            .all(|d| d["status"] == "succeeded" && d["attempts"] == 1)
    );
    let one = list[0]["id"].as_str().expect("id");
    let detail: Value = api(
        &app,
        &p,
        Method::GET,
        &format!("/admin/v1/webhooks/{id}/deliveries/{one}"),
        None,
    )
    .await
    .json()
    .await
    .expect("json");
    let log = &detail["attempt_log"][0];
    assert_eq!(log["status_code"], 200);
    assert_eq!(log["response_excerpt"], "thanks");
    assert!(log["latency_ms"].is_i64());
    assert!(detail["body"]["type"].is_string());

    // Rotation: during the overlap both secrets verify; after a rotation
    // without overlap only the newest does.
    let rotated: Value = api(
        &app,
        &p,
        Method::POST,
        &format!("/admin/v1/webhooks/{id}/rotate-secret"),
        None,
    )
    .await
    .json()
    .await
    .expect("json");
    let new_secret = rotated["secret"].as_str().expect("new secret").to_owned();
    assert_ne!(new_secret, secret);
    assert!(rotated["previous_secret_expires_at"].is_string());
    publish(&db, "room:1", "after-rotation", json!({})).await;
    wait_until(20, "4th delivery", || rx.at("ok").len() >= 4).await;
    let r = rx.at("ok").pop().expect("delivery");
    assert_eq!(header(&r, "webhook-signature").split(' ').count(), 2);
    for s in [&secret, &new_secret] {
        assert!(ferrobase::webhooks::verify(s, &r.headers, r.body.as_bytes()).is_ok());
        if let Some(ok) = python_verify(s, &r) {
            assert!(ok, "both secrets verify during the overlap");
        }
    }
    let rotated: Value = api(
        &app,
        &p,
        Method::POST,
        &format!("/admin/v1/webhooks/{id}/rotate-secret"),
        Some(json!({"overlap_secs": 0})),
    )
    .await
    .json()
    .await
    .expect("json");
    let newest = rotated["secret"].as_str().expect("secret").to_owned();
    publish(&db, "room:1", "after-second-rotation", json!({})).await;
    wait_until(20, "5th delivery", || rx.at("ok").len() >= 5).await;
    let r = rx.at("ok").pop().expect("delivery");
    assert_eq!(header(&r, "webhook-signature").split(' ').count(), 1);
    assert!(ferrobase::webhooks::verify(&newest, &r.headers, r.body.as_bytes()).is_ok());
    assert!(ferrobase::webhooks::verify(&new_secret, &r.headers, r.body.as_bytes()).is_err());
    if let Some(ok) = python_verify(&new_secret, &r) {
        assert!(!ok, "the replaced secret no longer verifies");
    }
}

#[tokio::test]
async fn failures_retries_gone_timeouts_and_redirects() {
    let app = TestApp::spawn_with(|c| {
        c.webhooks.webhook_retry_schedule =
            ferrobase_server::webhooks::RetrySchedule::parse("100ms,100ms").expect("schedule");
        c.webhooks.webhook_timeout_ms = 500;
        c.webhooks.webhook_disable_after = 2;
    })
    .await;
    let p = app.create_project("hooks-fail").await;
    let rx = Receiver::start().await;
    let failing = create_endpoint(&app, &p, &format!("{}/status/500", rx.url), &["fail"]).await;
    let gone = create_endpoint(&app, &p, &format!("{}/status/410", rx.url), &["gone"]).await;
    let slow = create_endpoint(&app, &p, &format!("{}/sleep/3000", rx.url), &["slow"]).await;
    let redirect = create_endpoint(&app, &p, &format!("{}/redirect", rx.url), &["redirect"]).await;
    let limited = create_endpoint(
        &app,
        &p,
        &format!("{}/status/503?retry_after=1", rx.url),
        &["limited"],
    )
    .await;
    let db = owner(&p).await;
    for topic in ["fail", "gone", "slow", "redirect", "limited"] {
        publish(&db, topic, "e", json!({})).await;
    }

    // 500: the first attempt and two retries, then failed for good.
    wait_until(20, "3 attempts at /status/500", || {
        rx.at("status/500").len() >= 3
    })
    .await;
    // 410: one attempt, then the endpoint is disabled.
    wait_until(20, "410 attempt", || !rx.at("status/410").is_empty()).await;
    // A timeout is a failure like any other (3 attempts).
    wait_until(30, "3 attempts at /sleep", || {
        rx.at("sleep/3000").len() >= 3
    })
    .await;
    // 3xx is a failure, never followed.
    wait_until(20, "3 attempts at /redirect", || {
        rx.at("redirect").len() >= 3
    })
    .await;
    assert!(
        rx.at("ok").is_empty(),
        "the redirect target is never called"
    );
    // Retry-After: 1 s lengthens the 100 ms schedule.
    wait_until(20, "2 attempts at /status/503", || {
        rx.at("status/503").len() >= 2
    })
    .await;
    // Measured from the worker's own record of when it sent each attempt: the
    // receiver runs on the test's runtime, whose clock readings a loaded
    // machine can delay by any amount.
    let limited_id: uuid::Uuid = limited["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("endpoint id");
    let mut gap_ms = None;
    for _ in 0..400 {
        let row = db
            .query_one(
                "select (extract(epoch from max(started_at) filter (where attempt = 2) \
                   - min(started_at) filter (where attempt = 1)) * 1000)::float8 \
                 from webhooks.attempts where endpoint_id = $1",
                &[&limited_id],
            )
            .await
            .expect("attempts");
        gap_ms = row.get::<_, Option<f64>>(0);
        if gap_ms.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let gap_ms = gap_ms.expect("two attempts recorded at /status/503");
    assert!(gap_ms >= 950.0, "Retry-After honoured: {gap_ms} ms");

    let deliveries = |ep: &Value| {
        let id = ep["id"].as_str().expect("id").to_owned();
        let app = &app;
        let p = &p;
        async move {
            let v: Value = api(
                app,
                p,
                Method::GET,
                &format!("/admin/v1/webhooks/{id}/deliveries"),
                None,
            )
            .await
            .json()
            .await
            .expect("json");
            v
        }
    };
    let endpoint = |ep: &Value| {
        let id = ep["id"].as_str().expect("id").to_owned();
        let app = &app;
        let p = &p;
        async move {
            let v: Value = api(
                app,
                p,
                Method::GET,
                &format!("/admin/v1/webhooks/{id}"),
                None,
            )
            .await
            .json()
            .await
            .expect("json");
            v
        }
    };
    // Wait for the log to settle (the last attempt's result is written after the call).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let d = deliveries(&failing).await;
        if d[0]["status"] == "failed" {
            assert_eq!(d[0]["attempts"], 3);
            assert_eq!(d[0]["last_status"], 500);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "500 delivery never failed for good: {d}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let did = deliveries(&failing).await[0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let fid = failing["id"].as_str().expect("id");
    let detail: Value = api(
        &app,
        &p,
        Method::GET,
        &format!("/admin/v1/webhooks/{fid}/deliveries/{did}"),
        None,
    )
    .await
    .json()
    .await
    .expect("json");
    let log = detail["attempt_log"].as_array().expect("log");
    assert_eq!(log.len(), 3);
    assert!(
        log.iter()
            .all(|a| a["status_code"] == 500 && a["response_excerpt"] == "boom: receiver says no")
    );

    let g = endpoint(&gone).await;
    assert_eq!(g["enabled"], false);
    assert_eq!(g["disabled_reason"], "gone");
    assert_eq!(rx.at("status/410").len(), 1, "no retry after 410");
    // A disabled endpoint gets no new deliveries.
    publish(&db, "gone", "again", json!({})).await;

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let d = deliveries(&slow).await;
        if d[0]["status"] == "failed" {
            assert!(
                d[0]["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains("timed out")),
                "{d}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "slow delivery never failed: {d}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let d = deliveries(&redirect).await;
        if d[0]["status"] == "failed" {
            assert_eq!(d[0]["last_status"], 307);
            assert!(
                d[0]["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains("redirect")),
                "{d}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "redirect delivery never failed: {d}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Auto-disable: a second delivery failing for good reaches disable_after = 2.
    assert_eq!(endpoint(&failing).await["consecutive_failures"], 1);
    publish(&db, "fail", "e2", json!({})).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let e = endpoint(&failing).await;
        if e["enabled"] == false {
            assert_eq!(e["disabled_reason"], "failing");
            assert_eq!(e["consecutive_failures"], 2);
            break;
        }
        assert!(Instant::now() < deadline, "never auto-disabled: {e}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(deliveries(&gone).await.as_array().map(Vec::len), Some(1));
    let _ = limited;
}

#[tokio::test]
async fn replay_one_and_all_failed_since() {
    let app = TestApp::spawn_with(|c| {
        c.webhooks.webhook_retry_schedule =
            ferrobase_server::webhooks::RetrySchedule::parse("").expect("no retries");
        c.webhooks.webhook_disable_after = 100;
    })
    .await;
    let p = app.create_project("hooks-replay").await;
    let rx = Receiver::start().await;
    let ep = create_endpoint(&app, &p, &format!("{}/status/500", rx.url), &["r"]).await;
    let id = ep["id"].as_str().expect("id").to_owned();
    let since = chrono::Utc::now() - chrono::Duration::seconds(5);
    let db = owner(&p).await;
    for i in 0..3 {
        publish(&db, "r", "e", json!({"i": i})).await;
    }
    let failed = || {
        let (app, p, id) = (&app, &p, id.clone());
        async move {
            let v: Value = api(
                app,
                p,
                Method::GET,
                &format!("/admin/v1/webhooks/{id}/deliveries?status=failed"),
                None,
            )
            .await
            .json()
            .await
            .expect("json");
            v.as_array().cloned().unwrap_or_default()
        }
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while failed().await.len() < 3 {
        assert!(Instant::now() < deadline, "3 failed deliveries");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let first_ids = rx.distinct_ids("status/500");
    assert_eq!(first_ids.len(), 3);

    // The receiver is fixed: point the endpoint at a working path.
    let resp = api(
        &app,
        &p,
        Method::PATCH,
        &format!("/admin/v1/webhooks/{id}"),
        Some(json!({"url": format!("{}/ok", rx.url)})),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let one = failed().await[0]["id"].as_str().expect("id").to_owned();
    let resp = api(
        &app,
        &p,
        Method::POST,
        &format!("/admin/v1/webhooks/{id}/deliveries/{one}/replay"),
        None,
    )
    .await;
    assert_eq!(resp.status(), 202);
    wait_until(20, "replayed delivery", || rx.at("ok").len() == 1).await;
    // Same webhook-id as the failed attempts: receivers can dedupe.
    assert!(first_ids.contains(header(&rx.at("ok")[0], "webhook-id")));
    // Replaying a pending one conflicts; unknown ones are 404.
    let ghost = uuid::Uuid::new_v4();
    let resp = api(
        &app,
        &p,
        Method::POST,
        &format!("/admin/v1/webhooks/{id}/deliveries/{ghost}/replay"),
        None,
    )
    .await;
    expect_error(resp, 404, "delivery_not_found").await;

    let resp = api(
        &app,
        &p,
        Method::POST,
        &format!("/admin/v1/webhooks/{id}/replay"),
        Some(json!({"since": since.to_rfc3339()})),
    )
    .await;
    assert_eq!(resp.status(), 202);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["replayed"], 2);
    wait_until(20, "all replayed", || rx.distinct_ids("ok").len() == 3).await;
    assert_eq!(rx.distinct_ids("ok"), first_ids);
    // Nothing failed since a future time.
    let later = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let resp = api(
        &app,
        &p,
        Method::POST,
        &format!("/admin/v1/webhooks/{id}/replay"),
        Some(json!({"since": later})),
    )
    .await;
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["replayed"], 0);
}

#[tokio::test]
async fn ssrf_targets_are_refused() {
    let app = TestApp::spawn_with(|c| {
        c.webhooks.webhook_allow_private = false;
        c.outbound_allow_private = false;
    })
    .await;
    let p = app.create_project("hooks-ssrf").await;
    for (url, code) in [
        ("http://127.0.0.1:9/hook", "url_not_allowed"),
        ("http://localhost:9/hook", "url_not_allowed"),
        (
            "http://169.254.169.254/latest/meta-data/",
            "url_not_allowed",
        ),
        ("http://10.0.0.1/hook", "url_not_allowed"),
        ("http://[::1]/hook", "url_not_allowed"),
        ("http://2130706433/hook", "url_not_allowed"),
        ("ftp://example.com/hook", "invalid_url"),
        ("file:///etc/passwd", "invalid_url"),
        ("not a url", "invalid_url"),
        ("https://user:pass@example.com/hook", "invalid_url"),
    ] {
        let resp = api(
            &app,
            &p,
            Method::POST,
            "/admin/v1/webhooks",
            Some(json!({"url": url, "events": ["*"]})),
        )
        .await;
        expect_error(resp, 400, code).await;
    }
    // Changing a URL is checked the same way.
    let ok = api(
        &app,
        &p,
        Method::POST,
        "/admin/v1/webhooks",
        Some(json!({"url": "https://hooks.example.invalid/in", "events": ["*"]})),
    )
    .await;
    assert_eq!(
        ok.status(),
        201,
        "a public name that does not resolve yet is accepted"
    );
    let ok: Value = ok.json().await.expect("json");
    let id = ok["id"].as_str().expect("id");
    let resp = api(
        &app,
        &p,
        Method::PATCH,
        &format!("/admin/v1/webhooks/{id}"),
        Some(json!({"url": "http://192.168.1.1/"})),
    )
    .await;
    expect_error(resp, 400, "url_not_allowed").await;
}

#[tokio::test]
async fn bad_input_and_isolation() {
    let app = TestApp::spawn().await;
    let p = app.create_project("hooks-bad").await;
    let other = app.create_project("hooks-other").await;
    let rx = Receiver::start().await;
    let ep = create_endpoint(&app, &p, &format!("{}/ok", rx.url), &["*"]).await;
    let id = ep["id"].as_str().expect("id").to_owned();
    let long = "x".repeat(3000);
    let many: Vec<String> = (0..65).map(|i| format!("e{i}")).collect();
    let cases: Vec<(Method, String, Option<Value>, u16, &str)> = vec![
        (
            Method::POST,
            "/admin/v1/webhooks".into(),
            Some(json!({"events": ["*"]})),
            422,
            "invalid_body",
        ),
        (
            Method::POST,
            "/admin/v1/webhooks".into(),
            Some(json!({"url": rx.url, "events": ["*"], "extra": 1})),
            422,
            "invalid_body",
        ),
        (
            Method::POST,
            "/admin/v1/webhooks".into(),
            Some(json!({"url": rx.url, "events": []})),
            400,
            "invalid_events",
        ),
        (
            Method::POST,
            "/admin/v1/webhooks".into(),
            Some(json!({"url": rx.url, "events": many})),
            400,
            "invalid_events",
        ),
        (
            Method::POST,
            "/admin/v1/webhooks".into(),
            Some(json!({"url": rx.url, "events": [""]})),
            400,
            "invalid_events",
        ),
        (
            Method::POST,
            "/admin/v1/webhooks".into(),
            Some(json!({"url": rx.url, "events": ["a\nb"]})),
            400,
            "invalid_events",
        ),
        (
            Method::POST,
            "/admin/v1/webhooks".into(),
            Some(json!({"url": format!("{}/{long}", rx.url), "events": ["*"]})),
            400,
            "invalid_url",
        ),
        (
            Method::POST,
            "/admin/v1/webhooks".into(),
            Some(json!({"url": rx.url, "events": ["*"], "description": long})),
            400,
            "invalid_description",
        ),
        (
            Method::POST,
            "/admin/v1/webhooks".into(),
            Some(json!({"url": 5, "events": ["*"]})),
            422,
            "invalid_body",
        ),
        (
            Method::GET,
            "/admin/v1/webhooks/not-a-uuid".into(),
            None,
            400,
            "invalid_id",
        ),
        (
            Method::GET,
            format!("/admin/v1/webhooks/{}", uuid::Uuid::new_v4()),
            None,
            404,
            "webhook_not_found",
        ),
        (
            Method::PATCH,
            format!("/admin/v1/webhooks/{id}"),
            Some(json!({"enabled": "yes"})),
            422,
            "invalid_body",
        ),
        (
            Method::PATCH,
            format!("/admin/v1/webhooks/{id}"),
            Some(json!({"events": []})),
            400,
            "invalid_events",
        ),
        (
            Method::DELETE,
            format!("/admin/v1/webhooks/{}", uuid::Uuid::new_v4()),
            None,
            404,
            "webhook_not_found",
        ),
        (
            Method::POST,
            format!("/admin/v1/webhooks/{id}/rotate-secret"),
            Some(json!({"overlap_secs": 99999999})),
            400,
            "invalid_overlap",
        ),
        (
            Method::POST,
            format!("/admin/v1/webhooks/{id}/rotate-secret"),
            Some(json!({"overlap_secs": -1})),
            400,
            "invalid_body",
        ),
        (
            Method::GET,
            format!("/admin/v1/webhooks/{id}/deliveries?limit=0"),
            None,
            400,
            "invalid_limit",
        ),
        (
            Method::GET,
            format!("/admin/v1/webhooks/{id}/deliveries?status=bogus"),
            None,
            400,
            "invalid_status",
        ),
        (
            Method::GET,
            format!("/admin/v1/webhooks/{id}/deliveries?before=yesterday"),
            None,
            400,
            "invalid_before",
        ),
        (
            Method::GET,
            format!("/admin/v1/webhooks/{id}/deliveries/x"),
            None,
            400,
            "invalid_id",
        ),
        (
            Method::POST,
            format!("/admin/v1/webhooks/{id}/replay"),
            Some(json!({"since": "yesterday"})),
            422,
            "invalid_body",
        ),
        (
            Method::POST,
            format!("/admin/v1/webhooks/{id}/replay"),
            Some(json!({})),
            422,
            "invalid_body",
        ),
    ];
    for (method, path, body, status, code) in cases {
        let resp = api(&app, &p, method.clone(), &path, body).await;
        let got = resp.status().as_u16();
        let text = resp.text().await.expect("text");
        assert_eq!(got, status, "{method} {path}: {text}");
        let v: Value = serde_json::from_str(&text).expect("JSON error envelope");
        assert_eq!(v["code"], code, "{method} {path}: {text}");
    }
    let resp = service(app.http.post(format!("{}/admin/v1/webhooks", p.url)), &p)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("request");
    expect_error(resp, 400, "invalid_json").await;

    // Who may call: no key 401, the anon key 403, another project's service key 401.
    let resp = app
        .http
        .get(format!("{}/admin/v1/webhooks", p.url))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 401);
    let resp = app
        .http
        .get(format!("{}/admin/v1/webhooks", p.url))
        .header("apikey", &p.anon)
        .bearer_auth(&p.anon)
        .send()
        .await
        .expect("request");
    expect_error(resp, 403, "admin_required").await;
    let resp = service(
        app.http.get(format!("{}/admin/v1/webhooks/{id}", p.url)),
        &other,
    )
    .send()
    .await
    .expect("request");
    assert_eq!(resp.status(), 401, "another project's key");
    // The other project sees none of this project's endpoints.
    let resp = api(
        &app,
        &other,
        Method::GET,
        &format!("/admin/v1/webhooks/{id}"),
        None,
    )
    .await;
    expect_error(resp, 404, "webhook_not_found").await;
    // A platform admin token works too.
    let resp = app
        .admin(Method::GET, &format!("/p/hooks-bad/admin/v1/webhooks/{id}"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);

    // The API roles cannot read or write the webhooks schema (secrets live there).
    let resp = app
        .http
        .post(format!("{}/rest/v1/rpc/emit", p.url))
        .header("apikey", &p.anon)
        .header("Content-Profile", "webhooks")
        .json(&json!({"event_type": "x", "data": {}}))
        .send()
        .await
        .expect("request");
    assert!(resp.status().is_client_error());
    let db = owner(&p).await;
    let denied = db
        .batch_execute("set role anon; select * from webhooks.endpoints;")
        .await;
    assert!(denied.is_err(), "anon cannot read endpoints");
    let denied = db
        .batch_execute("reset role; set role authenticated; select webhooks.emit('x', '{}');")
        .await;
    assert!(denied.is_err(), "authenticated cannot emit");
    db.batch_execute("reset role").await.expect("reset");

    // Delete: 204, then 404.
    let resp = api(
        &app,
        &p,
        Method::DELETE,
        &format!("/admin/v1/webhooks/{id}"),
        None,
    )
    .await;
    assert_eq!(resp.status(), 204);
    let resp = api(
        &app,
        &p,
        Method::DELETE,
        &format!("/admin/v1/webhooks/{id}"),
        None,
    )
    .await;
    expect_error(resp, 404, "webhook_not_found").await;
}

#[tokio::test]
async fn two_nodes_never_make_the_same_attempt() {
    let first = TestApp::spawn().await;
    let second = TestApp::start(first.config.clone()).await;
    let p = first.create_project("hooks-two").await;
    let rx = Receiver::start().await;
    create_endpoint(&first, &p, &format!("{}/sleep/30", rx.url), &["load"]).await;
    let db = owner(&p).await;
    let n = 300;
    db.execute(
        "insert into realtime.messages (topic, event, payload) \
         select 'load', 'e', jsonb_build_object('i', i) from generate_series(1, $1) i",
        &[&n],
    )
    .await
    .expect("bulk insert");
    wait_until(60, "300 deliveries", || {
        rx.distinct_ids("sleep/30").len() == 300
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Every delivery was made exactly once (nothing failed, no lease ran out).
    assert_eq!(rx.at("sleep/30").len(), 300, "no delivery sent twice");
    let nodes: Vec<(String, i64)> = db
        .query(
            "select node, count(*) from webhooks.attempts group by node",
            &[],
        )
        .await
        .expect("attempts")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let total: i64 = nodes.iter().map(|(_, c)| c).sum();
    assert_eq!(total, 300, "one attempt per delivery: {nodes:?}");
    eprintln!("attempts per node: {nodes:?}");
    drop(second);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

#[tokio::test]
async fn kill_9_of_a_node_loses_no_delivery() {
    let db_url = fresh_database().await;
    let data = temp_dir("fbt-kill9");
    let config = ferrobase_server::Config::for_tests(db_url.clone(), data.clone());
    let port = free_port();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_ferrobase"))
        .env("DATABASE_URL", &db_url)
        .env("FERROBASE_DATA_DIR", &data)
        .env("FERROBASE_LISTEN", format!("127.0.0.1:{port}"))
        .env(
            "FERROBASE_ENCRYPTION_KEY",
            ferrobase_server::config::exposed(&config.encryption_key).unwrap_or_default(),
        )
        .env("FERROBASE_ADMIN_EMAIL", &config.admin_email)
        .env(
            "FERROBASE_ADMIN_PASSWORD",
            ferrobase_server::config::exposed(&config.admin_password).unwrap_or_default(),
        )
        .env("FERROBASE_DEFAULT_PROJECT", "")
        .env("FERROBASE_LOG_FORMAT", "json")
        .env("FERROBASE_WEBHOOK_ALLOW_PRIVATE", "true")
        .env(
            "FERROBASE_WEBHOOK_TIMEOUT_MS",
            config.webhooks.webhook_timeout_ms.to_string(),
        )
        .env("FERROBASE_WEBHOOK_POLL_MS", "50")
        .env("FERROBASE_WEBHOOK_IDLE_POLL_MS", "100")
        .env("FERROBASE_WEBHOOK_CONCURRENCY", "8")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn ferrobase");
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !http
        .get(format!("{url}/health/ready"))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
    {
        assert!(
            child.try_wait().ok().flatten().is_none(),
            "ferrobase exited early"
        );
        assert!(Instant::now() < deadline, "ferrobase not ready in 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let login: Value = http
        .post(format!("{url}/platform/v1/auth/login"))
        .json(&json!({"email": config.admin_email, "password": ferrobase_server::config::exposed(&config.admin_password)}))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("json");
    let token = login["access_token"].as_str().expect("token").to_owned();
    let created: Value = http
        .post(format!("{url}/platform/v1/projects"))
        .bearer_auth(&token)
        .json(&json!({"ref": "hooks-kill"}))
        .send()
        .await
        .expect("create project")
        .json()
        .await
        .expect("json");
    let service = created["service_role_key"]
        .as_str()
        .expect("key")
        .to_owned();
    let db_url_project = created["db_url"].as_str().expect("db_url").to_owned();
    let rx = Receiver::start().await;
    let resp = http
        .post(format!("{url}/p/hooks-kill/admin/v1/webhooks"))
        .header("apikey", &service)
        .bearer_auth(&service)
        .json(&json!({"url": format!("{}/sleep/100", rx.url), "events": ["k"]}))
        .send()
        .await
        .expect("create endpoint");
    assert_eq!(resp.status(), 201);

    let cfg: tokio_postgres::Config = db_url_project.parse().expect("db_url");
    let db = ferrobase_server::db::connect(&cfg).await.expect("owner");
    let n = 120;
    db.execute(
        "insert into realtime.messages (topic, event, payload) \
         select 'k', 'e', jsonb_build_object('i', i) from generate_series(1, $1) i",
        &[&n],
    )
    .await
    .expect("bulk insert");
    // Kill the node while it is delivering (8 at a time, 100 ms each).
    wait_until(60, "the node delivering", || rx.at("sleep/100").len() >= 16).await;
    child.start_kill().expect("kill -9");
    let _ = child.wait().await;
    let before = rx.distinct_ids("sleep/100").len();
    assert!(
        before < 120,
        "killed before it finished ({before} delivered)"
    );

    // Another node takes over: everything arrives (in-flight ones again once their lease runs out).
    let second = TestApp::start(config).await;
    wait_until(60, "all 120 deliveries after the kill", || {
        rx.distinct_ids("sleep/100").len() == 120
    })
    .await;
    let pending: i64 = db
        .query_one(
            "select count(*) from webhooks.deliveries where status <> 'succeeded'",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut pending = pending;
    while pending > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        pending = db
            .query_one(
                "select count(*) from webhooks.deliveries where status <> 'succeeded'",
                &[],
            )
            .await
            .expect("count")
            .get(0);
    }
    assert_eq!(pending, 0, "every delivery succeeded");
    eprintln!(
        "kill -9: {before} delivered before the kill, {} requests in all for 120 deliveries",
        rx.at("sleep/100").len()
    );
    drop(second);
    let _ = std::fs::remove_dir_all(&data);
}
