//! Retention of function logs: rows older than the age limit and beyond the
//! per-function (per-schedule) cap are deleted, by one node at a time, and
//! the background pass does it on its own. Plain SQL fixtures: no Deno needed.

use std::time::Duration;

use ferrobase_server::functions::logs::{Pruned, Retention, prune};
use reqwest::Method;
use serde_json::Value;
use uuid::Uuid;

use crate::support::TestApp;

/// One function `noisy` with 5 recent and 2 old log lines, 5 recent and 1 old
/// invocations, a schedule with 5 recent and 1 old runs, and an old line of a
/// deleted function `gone`. Returns the project id. Log lines are capped by
/// id, so the old lines are inserted first, as they would have been: the
/// other way round, a background pass that caps after the insert but ages
/// out before it would keep the old lines and drop recent ones.
async fn fixtures(t: &TestApp, project_ref: &str) -> Uuid {
    t.create_project(project_ref).await;
    let client = t.app.platform.control().get().await.expect("control");
    let project: Uuid = client
        .query_one("select id from projects where ref = $1", &[&project_ref])
        .await
        .expect("project")
        .get(0);
    client
        .execute(
            "with f as (insert into functions (project_id, slug) values ($1, 'noisy') returning id), \
             s as (insert into function_schedules (project_id, function_id, name, cron, enabled, next_run_at) \
                   select $1, f.id, 'nightly', '0 3 * * *', false, now() + interval '1 day' from f returning id), \
             logs as (insert into function_logs (project_id, slug, level, message, at) \
                   select $1, 'noisy', 'log', 'old ' || n, now() - interval '3 days' from generate_series(1, 2) n \
                   union all select $1, 'gone', 'log', 'old gone', now() - interval '3 days' \
                   union all select $1, 'noisy', 'log', 'recent ' || n, now() - make_interval(secs => 10 - n) \
                   from generate_series(1, 5) n returning 1), \
             inv as (insert into function_invocations (id, project_id, slug, method, path, status, duration_ms, started_at) \
                   select gen_random_uuid(), $1, 'noisy', 'GET', '/noisy', 200, 1, now() - make_interval(secs => 10 - n) \
                   from generate_series(1, 5) n \
                   union all select gen_random_uuid(), $1, 'noisy', 'GET', '/noisy', 200, 1, now() - interval '3 days' \
                   returning 1) \
             insert into function_schedule_runs (schedule_id, tick_at, node, started_at) \
             select s.id, now() - make_interval(mins => 10 - n), 'n1', now() - make_interval(mins => 10 - n) \
             from s, generate_series(1, 5) n \
             union all select s.id, now() - interval '3 days', 'n1', now() - interval '3 days' from s",
            &[&project],
        )
        .await
        .expect("fixtures");
    project
}

async fn counts(t: &TestApp, project: Uuid) -> (i64, i64, i64) {
    let client = t.app.platform.control().get().await.expect("control");
    let row = client
        .query_one(
            "select (select count(*) from function_logs where project_id = $1), \
                    (select count(*) from function_invocations where project_id = $1), \
                    (select count(*) from function_schedule_runs r join function_schedules s on s.id = r.schedule_id \
                     where s.project_id = $1)",
            &[&project],
        )
        .await
        .expect("counts");
    (row.get(0), row.get(1), row.get(2))
}

#[tokio::test]
async fn old_and_excess_function_logs_are_pruned_by_one_node_at_a_time() {
    // The background pass runs once at start (nothing to do yet), then not for an hour.
    let t = TestApp::spawn_with(|c| c.functions.functions_log_prune_interval_ms = 3_600_000).await;
    let project = fixtures(&t, "fn-retention").await;
    assert_eq!(counts(&t, project).await, (8, 6, 6));
    let keep = Retention {
        days: 2,
        max_rows: 3,
    };

    // Another node holds the pruning lock: this one skips the pass.
    let mut other = t.app.platform.control().get().await.expect("control");
    let tx = other.transaction().await.expect("tx");
    tx.execute("select pg_advisory_xact_lock(7203)", &[])
        .await
        .expect("lock");
    assert_eq!(prune(&t.app.platform, keep).await.expect("prune"), None);
    assert_eq!(counts(&t, project).await, (8, 6, 6));
    tx.rollback().await.expect("release");

    let pruned = prune(&t.app.platform, keep).await.expect("prune");
    assert_eq!(
        pruned,
        Some(Pruned {
            logs: 5,
            invocations: 3,
            runs: 3
        })
    );
    assert_eq!(counts(&t, project).await, (3, 3, 3));
    // The newest three lines are the ones kept, and the API shows them.
    let resp = t
        .http
        .get(format!(
            "{}/p/fn-retention/admin/v1/functions/noisy/logs",
            t.url
        ))
        .bearer_auth(&t.admin_token)
        .send()
        .await
        .expect("logs");
    assert_eq!(resp.status(), 200);
    let logs: Value = resp.json().await.expect("json");
    let messages: Vec<&str> = logs
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|l| l["message"].as_str())
        .collect();
    assert_eq!(messages, ["recent 5", "recent 4", "recent 3"], "{logs}");
    // A second pass finds nothing; no limits at all deletes nothing.
    assert_eq!(
        prune(&t.app.platform, keep).await.expect("prune"),
        Some(Pruned::default())
    );
    let unlimited = Retention {
        days: 0,
        max_rows: 0,
    };
    assert_eq!(
        prune(&t.app.platform, unlimited).await.expect("prune"),
        Some(Pruned::default())
    );
    assert_eq!(counts(&t, project).await, (3, 3, 3));
}

#[tokio::test]
async fn the_background_pass_prunes_with_the_configured_limits() {
    let t = TestApp::spawn_with(|c| {
        c.functions.functions_log_prune_interval_ms = 100;
        c.functions.functions_log_retention_days = 2;
        c.functions.functions_log_max_rows = 4;
    })
    .await;
    let project = fixtures(&t, "fn-retention-bg").await;
    let started = std::time::Instant::now();
    loop {
        let now = counts(&t, project).await;
        if now == (4, 4, 4) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "not pruned to 4 per function: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The function's logs stay readable through the admin API.
    let resp = t
        .admin(
            Method::GET,
            "/p/fn-retention-bg/admin/v1/functions/noisy/invocations",
        )
        .send()
        .await
        .expect("invocations");
    assert_eq!(resp.status(), 200);
}
