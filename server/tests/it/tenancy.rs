//! Tenant isolation: keys, tokens, databases and pools of one project never
//! reach another; restarts keep projects and keys; role switching and RLS.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::{TestApp, TestProject, expect_error};

const NOTES: &str = "
create table notes (id serial primary key, owner text not null, body text not null);
alter table notes enable row level security;
create policy public_notes on notes for select to anon, authenticated using (owner = 'public');
insert into notes (owner, body) values ('public', 'hello'), ('private', 'secret');";

async fn notes(t: &TestApp, p: &TestProject, key: &str) -> reqwest::Response {
    t.http
        .get(format!("{}/rest/v1/notes?select=body&order=id", p.url))
        .header("apikey", key)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn requests_run_as_the_callers_role_under_rls() {
    let t = TestApp::spawn().await;
    let p = t.create_project("roles").await;
    t.owner_sql(&p, NOTES).await;
    let anon: Value = notes(&t, &p, &p.anon).await.json().await.unwrap();
    assert_eq!(anon, serde_json::json!([{"body": "hello"}]));
    let service: Value = notes(&t, &p, &p.service).await.json().await.unwrap();
    assert_eq!(
        service,
        serde_json::json!([{"body": "hello"}, {"body": "secret"}])
    );
}

#[tokio::test]
async fn keys_and_tokens_of_one_project_are_refused_by_another() {
    let t = TestApp::spawn().await;
    let a = t.create_project("tenant-a").await;
    let b = t.create_project("tenant-b").await;
    t.owner_sql(&a, NOTES).await;
    t.owner_sql(&b, NOTES).await;
    assert_eq!(notes(&t, &b, &b.anon).await.status(), StatusCode::OK);
    for key in [&a.anon, &a.service] {
        expect_error(notes(&t, &b, key).await, 401, "invalid_token").await;
    }
    // Both headers are checked: a valid apikey does not launder a foreign bearer token.
    let resp = t
        .http
        .get(format!("{}/rest/v1/notes", b.url))
        .header("apikey", &b.anon)
        .bearer_auth(&a.service)
        .send()
        .await
        .unwrap();
    expect_error(resp, 401, "invalid_token").await;
}

#[tokio::test]
async fn an_owner_role_cannot_reach_other_databases() {
    let t = TestApp::spawn().await;
    let a = t.create_project("iso-a").await;
    let b = t.create_project("iso-b").await;
    t.owner_sql(
        &b,
        "create table secrets (v text); insert into secrets values ('b-only');",
    )
    .await;

    let a_cfg: tokio_postgres::Config = a.db_url.parse().unwrap();
    let b_cfg: tokio_postgres::Config = b.db_url.parse().unwrap();
    // A's credentials against B's database, the control plane and the maintenance DB.
    let control_db = t.config.database_url.clone().unwrap();
    let control_db = control_db.rsplit("dbname=").next().unwrap().to_owned();
    for db in [
        b_cfg.get_dbname().unwrap(),
        control_db.as_str(),
        "postgres",
        "template1",
    ] {
        let mut cfg = a_cfg.clone();
        cfg.dbname(db);
        let err = ferrobase_server::db::connect(&cfg).await.err();
        let err = err.unwrap_or_else(|| panic!("project A's owner connected to {db}"));
        assert_eq!(err.code().map(|c| c.code()), Some("42501"), "{db}: {err}");
    }
    // Inside its own database, it cannot become another project's owner or a superuser,
    // nor read server files.
    let client = ferrobase_server::db::connect(&a_cfg).await.unwrap();
    let b_role = b_cfg.get_user().unwrap();
    for sql in [
        format!("set role \"{b_role}\""),
        "set role ferrobase".to_owned(),
        "set session authorization ferrobase".to_owned(),
        "select pg_read_file('/etc/passwd')".to_owned(),
        "create extension dblink".to_owned(),
        "alter role anon superuser".to_owned(),
        format!("alter role \"{b_role}\" password 'x'"),
    ] {
        assert!(
            client.batch_execute(&sql).await.is_err(),
            "owner A could run: {sql}"
        );
    }
    // B's data is intact.
    let b_client = ferrobase_server::db::connect(&b_cfg).await.unwrap();
    let v: String = b_client
        .query_one("select v from secrets", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, "b-only");
}

#[tokio::test]
async fn restart_keeps_projects_and_keys() {
    let t = TestApp::spawn().await;
    let p = t.create_project("survivor").await;
    t.owner_sql(&p, NOTES).await;
    let config = t.stop().await;
    let t2 = TestApp::start(config).await;
    let got: Value = t2
        .admin(reqwest::Method::GET, "/platform/v1/projects/survivor")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["anon_key"], p.anon);
    assert_eq!(got["service_role_key"], p.service);
    let p2 = TestProject {
        url: got["url"].as_str().unwrap().to_owned(),
        ..p.clone()
    };
    assert_eq!(
        notes(&t2, &p2, &p.anon).await.status(),
        StatusCode::OK,
        "old keys still work"
    );
}

#[tokio::test]
async fn a_burst_on_one_project_does_not_starve_another() {
    let t = TestApp::spawn_with(|c| {
        c.pool_max_size = 3;
        c.pool_acquire_timeout_ms = 500;
    })
    .await;
    let busy = t.create_project("busy").await;
    let calm = t.create_project("calm").await;
    t.owner_sql(&busy, NOTES).await;
    t.owner_sql(&calm, NOTES).await;
    // Exhaust busy's pool by holding every connection.
    let tenant = t.app.projects.get(&t.app, "busy").await.unwrap().unwrap();
    let pool = t.app.project_pool(&tenant);
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(pool.get().await.unwrap());
    }
    // busy is saturated: its requests get a 503 with Retry-After, not a hang.
    let resp = notes(&t, &busy, &busy.anon).await;
    assert_eq!(resp.headers()["retry-after"], "1");
    expect_error(resp, 503, "service_unavailable").await;
    // calm is unaffected.
    for _ in 0..10 {
        assert_eq!(notes(&t, &calm, &calm.anon).await.status(), StatusCode::OK);
    }
    drop(held);
    assert_eq!(notes(&t, &busy, &busy.anon).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn idle_pools_are_closed() {
    let t = TestApp::spawn().await;
    let p = t.create_project("idle").await;
    t.owner_sql(&p, NOTES).await;
    assert_eq!(notes(&t, &p, &p.anon).await.status(), StatusCode::OK);
    assert_eq!(t.app.pools.totals().pools, 1);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(t.app.pools.close_idle(Duration::from_millis(10)), 1);
    assert_eq!(t.app.pools.totals().pools, 0);
    // A later request reopens it.
    assert_eq!(notes(&t, &p, &p.anon).await.status(), StatusCode::OK);
    assert_eq!(t.app.pools.totals().pools, 1);
}

#[tokio::test]
async fn ddl_from_any_connection_is_seen_by_the_next_request() {
    let t = TestApp::spawn().await;
    let p = t.create_project("ddl").await;
    t.owner_sql(
        &p,
        "create table things (id int primary key); insert into things values (1);",
    )
    .await;
    let get = |q: &'static str| {
        t.http
            .get(format!("{}/rest/v1/things?{q}", p.url))
            .header("apikey", &p.service)
            .send()
    };
    let rows: Value = get("select=*").await.unwrap().json().await.unwrap();
    assert_eq!(rows, serde_json::json!([{"id": 1}]));
    // Immediately after DDL on a direct connection: `*` includes the new column.
    t.owner_sql(
        &p,
        "alter table things add column label text default 'new';",
    )
    .await;
    let rows: Value = get("select=*").await.unwrap().json().await.unwrap();
    assert_eq!(rows, serde_json::json!([{"id": 1, "label": "new"}]));
    // Renamed and dropped objects too.
    t.owner_sql(&p, "alter table things rename column label to title;")
        .await;
    let rows: Value = get("select=title").await.unwrap().json().await.unwrap();
    assert_eq!(rows, serde_json::json!([{"title": "new"}]));
    t.owner_sql(&p, "drop table things;").await;
    assert_eq!(
        get("select=*").await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_cancelled_request_never_leaks_its_transaction_or_role() {
    let t = TestApp::spawn_with(|c| c.pool_max_size = 1).await;
    let p = t.create_project("cancel").await;
    t.owner_sql(
        &p,
        "create function whoami() returns text language sql as $$ select current_user::text $$;
         create function slow() returns int language sql as $$ select 1 from pg_sleep(2) $$;",
    )
    .await;
    // The service-role request is abandoned by its client mid-statement.
    let abandoned = t
        .http
        .post(format!("{}/rest/v1/rpc/slow", p.url))
        .header("apikey", &p.service)
        .json(&serde_json::json!({}))
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(abandoned.is_err(), "the client gave up");
    // The pool's only connection is not handed over still inside that
    // transaction: the next caller runs as itself.
    let resp = t
        .http
        .post(format!("{}/rest/v1/rpc/whoami", p.url))
        .header("apikey", &p.anon)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.json::<Value>().await.unwrap(), "anon");
}

#[tokio::test]
async fn an_optional_legacy_hs256_secret_is_accepted_only_where_configured() {
    let t = TestApp::spawn().await;
    let p = t.create_project("legacy").await;
    let other = t.create_project("legacy-other").await;
    t.owner_sql(&p, NOTES).await;
    t.owner_sql(&other, NOTES).await;
    let secret = "a-legacy-secret-of-at-least-32-characters";
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let hs = |secret: &str, claims: Value| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    };
    let token = hs(
        secret,
        serde_json::json!({"role": "service_role", "exp": exp}),
    );
    // Not configured: refused.
    expect_error(notes(&t, &p, &token).await, 401, "invalid_token").await;

    let set = |body: Value| {
        t.admin(reqwest::Method::PATCH, "/platform/v1/projects/legacy")
            .json(&body)
            .send()
    };
    expect_error(
        set(serde_json::json!({"legacy_jwt_secret": "short"}))
            .await
            .unwrap(),
        400,
        "invalid_settings",
    )
    .await;
    let resp = set(serde_json::json!({"legacy_jwt_secret": secret}))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.text().await.unwrap();
    assert!(!body.contains(secret), "the secret is write-only");
    t.app.projects.invalidate("legacy");

    let rows: Value = notes(&t, &p, &token).await.json().await.unwrap();
    assert_eq!(
        rows.as_array().map(Vec::len),
        Some(2),
        "service_role via the legacy secret: {rows}"
    );
    // Wrong secret, another project's ref, another project, a disallowed role: refused.
    let wrong = hs(
        "another-secret-that-is-also-long-enough!",
        serde_json::json!({"role": "anon", "exp": exp}),
    );
    expect_error(notes(&t, &p, &wrong).await, 401, "invalid_token").await;
    let foreign = hs(
        secret,
        serde_json::json!({"role": "anon", "ref": "legacy-other", "exp": exp}),
    );
    expect_error(notes(&t, &p, &foreign).await, 401, "invalid_token").await;
    expect_error(notes(&t, &other, &token).await, 401, "invalid_token").await;
    let superuser = hs(secret, serde_json::json!({"role": "postgres", "exp": exp}));
    expect_error(notes(&t, &p, &superuser).await, 401, "invalid_token").await;
    let expired = hs(
        secret,
        serde_json::json!({"role": "anon", "exp": exp - 7200}),
    );
    expect_error(notes(&t, &p, &expired).await, 401, "token_expired").await;
    // ES256 keys keep working; removing the secret turns HS256 off again.
    assert_eq!(notes(&t, &p, &p.anon).await.status(), StatusCode::OK);
    assert_eq!(
        set(serde_json::json!({"legacy_jwt_secret": ""}))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    t.app.projects.invalidate("legacy");
    let fresh = hs(secret, serde_json::json!({"role": "anon", "exp": exp + 1}));
    expect_error(notes(&t, &p, &fresh).await, 401, "invalid_token").await;
}
