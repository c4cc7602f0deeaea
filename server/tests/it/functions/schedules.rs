//! Cron schedules: two nodes on one control plane run each tick exactly
//! once; runs and failures are visible.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use super::Fx;
use crate::support::{TestApp, temp_dir};

#[tokio::test]
async fn schedules_run_once_per_tick_across_two_nodes() {
    let Some(fx) = Fx::new("fn-cron").await else {
        return;
    };
    // A second node: same control plane, its own data dir and Deno processes.
    let mut config = fx.t.config.clone();
    config.data_dir = temp_dir("fbt-node2");
    let node2 = TestApp::start(config).await;

    fx.deploy(
        "job",
        r#"export default { async fetch(req: Request) {
            const body = await req.json();
            console.log("tick", JSON.stringify(body), req.headers.get("x-ferrobase-role"), req.headers.get("x-ferrobase-trigger"));
            if (body.fail) throw new Error("scheduled failure");
            return new Response("done");
        } };"#,
    )
    .await;
    for (name, body) in [
        ("every-second", json!({"hello": "cron"})),
        ("failing", json!({"fail": true})),
    ] {
        let resp = fx
            .admin(Method::POST, "functions/job/schedules")
            .json(&json!({"name": name, "cron": "* * * * * *", "body": body}))
            .send()
            .await
            .expect("schedule");
        assert_eq!(
            resp.status(),
            201,
            "{}",
            resp.text().await.unwrap_or_default()
        );
    }
    let dup = fx
        .admin(Method::POST, "functions/job/schedules")
        .json(&json!({"name": "failing", "cron": "* * * * *"}))
        .send()
        .await
        .expect("dup");
    assert_eq!(dup.status(), 409);

    tokio::time::sleep(Duration::from_millis(3500)).await;
    // Pause both, then let in-flight runs finish.
    for name in ["every-second", "failing"] {
        let resp = fx
            .admin(Method::PUT, &format!("functions/job/schedules/{name}"))
            .json(&json!({"cron": "* * * * * *", "enabled": false}))
            .send()
            .await
            .expect("pause");
        assert_eq!(resp.status(), 200);
    }
    let client = fx.t.app.platform.control().get().await.expect("control");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let (runs, invocations) = loop {
        let runs: i64 = client
            .query_one(
                "select count(*) from function_schedule_runs where finished_at is not null",
                &[],
            )
            .await
            .expect("runs")
            .get(0);
        let pending: i64 = client
            .query_one(
                "select count(*) from function_schedule_runs where finished_at is null",
                &[],
            )
            .await
            .expect("pending")
            .get(0);
        let invocations: i64 = client
            .query_one(
                "select count(*) from function_invocations where trigger = 'schedule'",
                &[],
            )
            .await
            .expect("invocations")
            .get(0);
        if (pending == 0 && runs == invocations) || tokio::time::Instant::now() > deadline {
            break (runs, invocations);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Two schedules × ~3 ticks; each tick ran once, on one node.
    assert!(runs >= 4, "only {runs} runs");
    assert_eq!(runs, invocations, "a tick was invoked more than once");
    let per_tick: i64 = client
        .query_one(
            "select coalesce(max(n), 0) from (select count(*) as n from function_invocations i \
             join function_schedule_runs r on r.invocation_id = i.id group by r.schedule_id, r.tick_at) t",
            &[],
        )
        .await
        .expect("per tick")
        .get(0);
    assert_eq!(per_tick, 1);

    // Run history: successes and failures with their reason.
    let ok: Value = fx
        .admin(Method::GET, "functions/job/schedules/every-second/runs")
        .send()
        .await
        .expect("runs")
        .json()
        .await
        .expect("json");
    let ok = ok.as_array().expect("array");
    assert!(ok.len() >= 2);
    assert!(
        ok.iter()
            .all(|r| r["status"] == 200 && r["error"].is_null()),
        "{ok:?}"
    );
    let failed: Value = fx
        .admin(Method::GET, "functions/job/schedules/failing/runs")
        .send()
        .await
        .expect("runs")
        .json()
        .await
        .expect("json");
    let failed = failed.as_array().expect("array");
    assert!(!failed.is_empty());
    assert!(
        failed.iter().all(|r| r["status"] == 500
            && r["error"]
                .as_str()
                .is_some_and(|e| e.contains("scheduled failure"))),
        "{failed:?}"
    );
    // The function got the body, as the service role, marked as a schedule.
    let logs = fx
        .poll("job", "logs", "search=hello", |v| {
            v.as_array().is_some_and(|a| !a.is_empty())
        })
        .await;
    assert!(
        logs[0]["message"].as_str().is_some_and(
            |m| m.contains(r#"{"hello":"cron"}"#) && m.contains("service_role schedule")
        ),
        "{logs}"
    );
    let list: Value = fx
        .admin(Method::GET, "functions/job/schedules")
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(list.as_array().map(Vec::len), Some(2));
    assert_eq!(list[0]["enabled"], false);
    let resp = fx
        .admin(Method::DELETE, "functions/job/schedules/failing")
        .send()
        .await
        .expect("delete");
    assert_eq!(resp.status(), 204);
    drop(node2);
}

/// A failing run's error quotes the function's answer: a NUL in it (which
/// Postgres text cannot hold) used to fail the run's update, leaving the
/// run unfinished forever; it is replaced now.
#[tokio::test]
async fn a_run_error_with_a_nul_is_recorded() {
    let Some(fx) = Fx::new("fn-cron-nul").await else {
        return;
    };
    fx.deploy(
        "nul",
        r#"export default { fetch: () => new Response("bad\u0000news", { status: 500 }) };"#,
    )
    .await;
    let resp = fx
        .admin(Method::POST, "functions/nul/schedules")
        .json(&json!({"name": "tick", "cron": "* * * * * *"}))
        .send()
        .await
        .expect("schedule");
    assert_eq!(resp.status(), 201);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let runs = loop {
        let runs: Value = fx
            .admin(Method::GET, "functions/nul/schedules/tick/runs")
            .send()
            .await
            .expect("runs")
            .json()
            .await
            .expect("json");
        let finished = runs
            .as_array()
            .is_some_and(|a| a.iter().any(|r| !r["finished_at"].is_null()));
        if finished || tokio::time::Instant::now() > deadline {
            break runs;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let run = runs
        .as_array()
        .and_then(|a| a.iter().find(|r| !r["finished_at"].is_null()))
        .unwrap_or_else(|| panic!("no run finished: {runs}"));
    assert_eq!(run["status"], 500, "{run}");
    assert_eq!(run["error"], "status 500: bad\u{FFFD}news", "{run}");
}
