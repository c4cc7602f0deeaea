//! Shutdown as an orchestrator drives it (SIGTERM → `serve`'s shutdown
//! future): readiness turns false while the node still serves, in-flight
//! requests finish, and requests past the grace period are cut off.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{TestApp, TestProject};

/// Starts `select 42 as answer from pg_sleep(secs)` through admin SQL.
fn slow_request(
    t: &TestApp,
    p: &TestProject,
    secs: f64,
) -> tokio::task::JoinHandle<reqwest::Result<reqwest::Response>> {
    let request = t
        .http
        .post(format!("{}/admin/v1/sql", p.url))
        .header("apikey", &p.service)
        .bearer_auth(&p.service)
        .json(&json!({ "query": format!("select 42 as answer from pg_sleep({secs})") }));
    tokio::spawn(request.send())
}

#[tokio::test]
async fn shutdown_turns_readiness_off_first_and_lets_requests_finish() {
    let t = TestApp::spawn_with(|c| c.drain_delay_ms = 1_500).await;
    let p = t.create_project("drain").await;
    let (url, http) = (t.url.clone(), t.http.clone());
    let slow = slow_request(&t, &p, 2.5);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopping = tokio::spawn(t.stop());

    // Readiness says 503 "draining" while the node still answers.
    let mut draining = false;
    for _ in 0..100 {
        let resp = http
            .get(format!("{url}/health/ready"))
            .send()
            .await
            .expect("the node still serves during the drain delay");
        if resp.status() == 503 {
            let body: Value = resp.json().await.expect("health body");
            assert_eq!(body["status"], "draining", "{body}");
            draining = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(draining, "readiness never turned false");
    let live = http.get(format!("{url}/health/live")).send().await;
    assert_eq!(live.expect("live during the drain delay").status(), 200);

    // The request that was running when the signal came is answered in full.
    let resp = slow
        .await
        .expect("join")
        .expect("the in-flight request is answered");
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("sql body");
    assert_eq!(body["rows"][0]["answer"], 42, "{body}");

    stopping.await.expect("stop");
    let after = reqwest::Client::new()
        .get(format!("{url}/health/live"))
        .send()
        .await;
    assert!(after.is_err(), "the listener is closed after shutdown");
}

#[tokio::test]
async fn requests_past_the_grace_period_are_cut_off() {
    let t = TestApp::spawn_with(|c| {
        c.shutdown_grace_secs = 1;
        c.statement_timeout_ms = 60_000;
    })
    .await;
    let p = t.create_project("drain-grace").await;
    let slow = slow_request(&t, &p, 30.0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Without a deadline, stop would wait the whole 30 s for the query.
    tokio::time::timeout(Duration::from_secs(15), t.stop())
        .await
        .expect("shutdown ends after the grace period, not when the request does");
    let cut = slow.await.expect("join");
    assert!(cut.is_err(), "the request's connection was closed: {cut:?}");
}
