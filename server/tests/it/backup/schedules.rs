//! Scheduled backups through `/platform/v1/backups`: admin only, bad input
//! answered 4xx in the error envelope, and a per-second schedule run by two
//! nodes sharing one control plane: every tick once, each run in its own
//! directory, retention prunes beyond `keep_last`, a kept run restores, and
//! a failing target is recorded as a failed run with its error.

use std::time::{Duration, Instant};

use ferrobase_server::backup::restore::RestoreOptions;
use ferrobase_server::backup::{self};
use ferrobase_server::platform::ProjectRef;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{TestApp, expect_error, temp_dir};

#[tokio::test]
async fn schedule_api_is_admin_only_and_checks_its_input() {
    let t = TestApp::spawn().await;
    let p = t.create_project("bks-api").await;
    let url = format!("{}/platform/v1/backups/schedules", t.url);
    let good = json!({"name": "nightly", "cron": "0 2 * * *", "target": "/var/backups/fb"});

    // No token, a project's keys, a forged token: 401, nothing created.
    let resp = t.http.post(&url).json(&good).send().await.expect("post");
    expect_error(resp, 401, "missing_token").await;
    for key in [&p.service, &p.anon, &"not.a.token".to_owned()] {
        let resp = t
            .http
            .post(&url)
            .bearer_auth(key)
            .json(&good)
            .send()
            .await
            .expect("post");
        expect_error(resp, 401, "invalid_token").await;
        let resp = t
            .http
            .get(format!("{}/platform/v1/backups", t.url))
            .bearer_auth(key)
            .send()
            .await
            .expect("get");
        expect_error(resp, 401, "invalid_token").await;
    }
    let resp = t
        .http
        .delete(format!("{url}/nightly"))
        .header("apikey", &p.service)
        .send()
        .await
        .expect("delete");
    assert_eq!(resp.status(), 401);

    // Bad input.
    let cases = [
        (
            json!({"name": "a", "cron": "61 * * * *", "target": "/b"}),
            400,
            "invalid_backup_schedule",
        ),
        (
            json!({"name": "a", "cron": "nope", "target": "/b"}),
            400,
            "invalid_backup_schedule",
        ),
        (
            json!({"name": "a", "cron": "* ".repeat(200), "target": "/b"}),
            400,
            "invalid_backup_schedule",
        ),
        (
            json!({"name": "a", "cron": "0 2 * * *", "target": "relative/dir"}),
            400,
            "invalid_backup_target",
        ),
        (
            json!({"name": "a", "cron": "0 2 * * *", "target": "/var/backups/../../etc"}),
            400,
            "invalid_backup_target",
        ),
        (
            json!({"name": "a", "cron": "0 2 * * *", "target": "s3://bucket/a/../../b"}),
            400,
            "invalid_backup_target",
        ),
        (
            json!({"name": "a", "cron": "0 2 * * *", "target": "s3://Bad_Bucket/x"}),
            400,
            "invalid_backup_target",
        ),
        (
            json!({"name": "a", "cron": "0 2 * * *", "target": "ftp://host/x"}),
            400,
            "invalid_backup_target",
        ),
        (
            json!({"name": "a", "cron": "0 2 * * *", "target": "/b\u{0}c"}),
            400,
            "invalid_backup_target",
        ),
        (
            json!({"name": "a", "cron": "0 2 * * *", "target": format!("/{}", "x".repeat(2000))}),
            400,
            "invalid_backup_target",
        ),
        (
            json!({"name": "Bad Name", "cron": "0 2 * * *", "target": "/b"}),
            400,
            "invalid_backup_schedule",
        ),
        (
            json!({"name": "a", "cron": "0 2 * * *", "target": "/b", "keep_last": 0}),
            400,
            "invalid_backup_schedule",
        ),
        (
            json!({"name": "a", "cron": "0 2 * * *", "target": "/b", "keep_days": -1}),
            400,
            "invalid_backup_schedule",
        ),
        (
            json!({"name": "a", "cron": "0 2 * * *", "target": "/b", "ref": "no-such-project"}),
            404,
            "project_not_found",
        ),
        (
            json!({"name": "a", "cron": "0 2 * * *", "target": "/b", "ref": "NOT A REF"}),
            400,
            "invalid_backup_schedule",
        ),
        (
            json!({"name": "a", "cron": "0 2 * * *", "target": "/b", "extra": 1}),
            422,
            "invalid_body",
        ),
        (json!({"name": "a", "target": "/b"}), 422, "invalid_body"),
    ];
    for (body, status, code) in cases {
        let resp = t
            .admin(Method::POST, "/platform/v1/backups/schedules")
            .json(&body)
            .send()
            .await
            .expect("post");
        let got = resp.status().as_u16();
        let text = resp.text().await.expect("text");
        assert_eq!(got, status, "{body}: {text}");
        let err: Value = serde_json::from_str(&text).expect("error JSON");
        assert_eq!(err["code"], code, "{body}: {text}");
        assert!(err["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let listed: Value = t
        .admin(Method::GET, "/platform/v1/backups/schedules")
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(listed, json!([]), "no bad input was stored");

    // Create, conflict, list, delete, delete again.
    let resp = t
        .admin(Method::POST, "/platform/v1/backups/schedules")
        .json(
            &json!({"name": "nightly", "cron": "0 2 * * *", "target": "s3://my-backups/fb",
                       "ref": "bks-api", "keep_last": 7, "keep_days": 30}),
        )
        .send()
        .await
        .expect("create");
    assert_eq!(resp.status(), 201);
    let created: Value = resp.json().await.expect("json");
    assert_eq!(created["target"], "s3://my-backups/fb");
    assert_eq!(created["ref"], "bks-api");
    assert_eq!(created["keep_last"], 7);
    let resp = t
        .admin(Method::POST, "/platform/v1/backups/schedules")
        .json(&good)
        .send()
        .await
        .expect("dup");
    expect_error(resp, 409, "backup_schedule_exists").await;
    let listed: Value = t
        .admin(Method::GET, "/platform/v1/backups/schedules")
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
    for bad in ["?limit=0", "?limit=5000", "?limit=abc", "?nope=1"] {
        let resp = t
            .admin(Method::GET, &format!("/platform/v1/backups{bad}"))
            .send()
            .await
            .expect("runs");
        assert_eq!(resp.status(), 400, "{bad}");
    }
    let resp = t
        .admin(Method::DELETE, "/platform/v1/backups/schedules/nightly")
        .send()
        .await
        .expect("delete");
    assert_eq!(resp.status(), 204);
    let resp = t
        .admin(Method::DELETE, "/platform/v1/backups/schedules/nightly")
        .send()
        .await
        .expect("delete again");
    expect_error(resp, 404, "backup_schedule_not_found").await;
}

async fn runs(t: &TestApp, schedule: &str) -> Vec<Value> {
    t.admin(
        Method::GET,
        &format!("/platform/v1/backups?schedule={schedule}&limit=1000"),
    )
    .send()
    .await
    .expect("runs")
    .json::<Vec<Value>>()
    .await
    .expect("runs json")
}

#[tokio::test]
async fn scheduled_backups_run_once_per_tick_across_nodes_and_prune() {
    let t = TestApp::spawn().await;
    // A second node on the same control plane.
    let t2 = TestApp::start(t.config.clone()).await;
    let p = t.create_project("bks-run").await;
    t.owner_sql(
        &p,
        "create table public.items (id int primary key, name text not null);
         insert into public.items values (1, 'one'), (2, 'two');
         grant select on public.items to anon;",
    )
    .await;
    let target = temp_dir("backup-sched");
    let blocker = temp_dir("backup-blocked").join("a-file");
    std::fs::write(&blocker, b"not a directory").expect("write");
    for (name, to) in [
        ("every-second", target.display().to_string()),
        ("broken", blocker.join("sub").display().to_string()),
    ] {
        let resp = t
            .admin(Method::POST, "/platform/v1/backups/schedules")
            .json(&json!({"name": name, "cron": "* * * * * *", "target": to,
                           "ref": "bks-run", "keep_last": 2}))
            .send()
            .await
            .expect("create");
        assert_eq!(resp.status(), 201, "{name}");
    }

    // Wait for enough finished runs that retention must have pruned.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = runs(&t2, "every-second").await;
        let done = r
            .iter()
            .filter(|r| r["status"] == "succeeded" || r["status"] == "pruned")
            .count();
        let failed = runs(&t, "broken").await;
        if done >= 4 && failed.iter().any(|r| r["status"] == "failed") {
            break;
        }
        assert!(Instant::now() < deadline, "runs so far: {r:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Pause both (white-box: the API has no update), then let running ones finish.
    t.app
        .platform
        .control()
        .get()
        .await
        .expect("control")
        .execute("update backup_schedules set enabled = false", &[])
        .await
        .expect("pause");
    let deadline = Instant::now() + Duration::from_secs(60);
    let every = loop {
        let r = runs(&t, "every-second").await;
        if r.iter().all(|r| r["status"] != "running") {
            break r;
        }
        assert!(Instant::now() < deadline, "still running: {r:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    // One run per tick, whichever node took it.
    let mut ticks: Vec<&str> = every.iter().filter_map(|r| r["tick_at"].as_str()).collect();
    let n = ticks.len();
    ticks.sort_unstable();
    ticks.dedup();
    assert_eq!(ticks.len(), n, "a tick ran twice: {every:?}");
    assert!(every.iter().all(|r| r["status"] != "failed"), "{every:?}");
    // Retention: the newest two successful runs are kept, the rest pruned.
    let kept: Vec<&Value> = every
        .iter()
        .filter(|r| r["status"] == "succeeded")
        .collect();
    assert_eq!(kept.len(), 2, "{every:?}");
    let on_disk: Vec<String> = std::fs::read_dir(&target)
        .expect("read target")
        .map(|e| e.expect("entry").path().display().to_string())
        .collect();
    assert_eq!(on_disk.len(), 2, "{on_disk:?}");
    for r in &kept {
        let location = r["location"].as_str().expect("location");
        assert!(on_disk.iter().any(|d| d == location), "{location} kept");
        assert!(r["bytes"].as_i64().is_some_and(|b| b > 0), "{r}");
        assert_eq!(r["projects"], 1);
        assert!(r["duration_ms"].as_i64().is_some(), "{r}");
        assert!(r["error"].is_null(), "{r}");
    }
    for r in every.iter().filter(|r| r["status"] == "pruned") {
        let location = r["location"].as_str().expect("location");
        assert!(
            !std::path::Path::new(location).exists(),
            "{location} pruned"
        );
    }
    // The failing target: failed runs with the reason, nothing crashed.
    let broken = runs(&t, "broken").await;
    let failed = broken
        .iter()
        .find(|r| r["status"] == "failed")
        .expect("a failed run");
    assert!(
        failed["error"]
            .as_str()
            .is_some_and(|e| e.contains("creating")),
        "{failed}"
    );

    // A kept run restores like any backup.
    let location = kept[0]["location"].as_str().expect("location");
    let d = backup::restore::restore_project(
        &t.app.platform,
        &std::path::Path::new(location).join("bks-run"),
        &RestoreOptions {
            new_ref: Some(ProjectRef::parse("bks-run-copy").expect("ref")),
            ..Default::default()
        },
        &backup::Quiet,
    )
    .await
    .expect("restore a scheduled backup");
    assert_eq!(
        super::items(&d.project.url, &d.anon_key).await,
        vec![
            json!({"id": 1, "name": "one"}),
            json!({"id": 2, "name": "two"})
        ]
    );
    drop(t2);
}
