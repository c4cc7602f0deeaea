//! Exposed schemas (per project, chosen per request with Accept-Profile /
//! Content-Profile) and the schema cache at scale.

use std::time::Instant;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::admin_sql::sql_ok;
use crate::support::{TestApp, TestProject, expect_error};

const API_SCHEMA: &str = "
create schema api;
grant usage on schema api to anon, authenticated, service_role;
create table api.things (id int primary key, label text);
grant all on api.things to anon, authenticated, service_role;
insert into api.things values (1, 'from api');
create table public.things (id int primary key, label text);
insert into public.things values (1, 'from public');";

#[tokio::test]
async fn exposed_schemas_are_configurable_and_chosen_per_request() {
    let t = TestApp::spawn().await;
    let p = t.create_project("schemas").await;
    t.owner_sql(&p, API_SCHEMA).await;
    let get = |profile: Option<&'static str>| {
        let mut req = t
            .http
            .get(format!("{}/rest/v1/things?select=label", p.url))
            .header("apikey", &p.service);
        if let Some(s) = profile {
            req = req.header("accept-profile", s);
        }
        req.send()
    };
    // Only `public` by default.
    let body: Value = get(None).await.unwrap().json().await.unwrap();
    assert_eq!(body, json!([{"label": "from public"}]));
    expect_error(get(Some("api")).await.unwrap(), 406, "PGRST106").await;

    // Expose `api` as the default, `public` second.
    let resp = t
        .admin(Method::PATCH, "/platform/v1/projects/schemas")
        .json(&json!({"exposed_schemas": ["api", "public"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let details: Value = resp.json().await.unwrap();
    assert_eq!(details["exposed_schemas"], json!(["api", "public"]));
    let body: Value = get(None).await.unwrap().json().await.unwrap();
    assert_eq!(body, json!([{"label": "from api"}]));
    let resp = get(Some("public")).await.unwrap();
    assert_eq!(resp.headers()["content-profile"], "public");
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!([{"label": "from public"}])
    );
    // Writes pick the schema with Content-Profile.
    let resp = t
        .http
        .post(format!("{}/rest/v1/things", p.url))
        .header("apikey", &p.service)
        .header("content-profile", "public")
        .header("prefer", "return=representation")
        .json(&json!({"id": 2, "label": "written to public"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let body: Value = get(Some("public")).await.unwrap().json().await.unwrap();
    assert_eq!(body.as_array().map(Vec::len), Some(2));
    expect_error(get(Some("storage")).await.unwrap(), 406, "PGRST106").await;

    // Bad settings are refused and change nothing.
    for bad in [
        json!({"exposed_schemas": []}),
        json!({"exposed_schemas": ["auth"]}),
        json!({"exposed_schemas": ["_ferrobase"]}),
        json!({"exposed_schemas": ["public", "realtime"]}),
        json!({"exposed_schemas": ["webhooks"]}),
        json!({"exposed_schemas": ["ai"]}),
        json!({"exposed_schemas": ["pg_catalog"]}),
        json!({"exposed_schemas": ["public", "public"]}),
        json!({"exposed_schemas": ["bad name; drop schema api"]}),
    ] {
        let resp = t
            .admin(Method::PATCH, "/platform/v1/projects/schemas")
            .json(&bad)
            .send()
            .await
            .unwrap();
        expect_error(resp, 400, "invalid_settings").await;
    }
    let resp = t
        .admin(Method::PATCH, "/platform/v1/projects/schemas")
        .json(&json!({"exposed": ["api"]}))
        .send()
        .await
        .unwrap();
    expect_error(resp, 422, "invalid_body").await;
    let resp = t
        .admin(Method::PATCH, "/platform/v1/projects/nope")
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    expect_error(resp, 404, "project_not_found").await;
    let body: Value = get(None).await.unwrap().json().await.unwrap();
    assert_eq!(body, json!([{"label": "from api"}]), "settings unchanged");

    // The SDK sets them too.
    let admin = ferrobase::AdminClient::with_token(&t.url, &t.admin_token).unwrap();
    let d = admin
        .update_project("schemas", Some("Renamed"), Some(&["public"]))
        .await
        .unwrap();
    assert_eq!(d.project.name, "Renamed");
    let body: Value = get(None).await.unwrap().json().await.unwrap();
    assert_eq!(body[0]["label"], "from public");
}

#[tokio::test]
async fn a_schema_of_5000_tables_loads_and_serves() {
    let t = TestApp::spawn().await;
    let p = t.create_project("wide").await;
    t.owner_sql(
        &p,
        "do $$ begin
           for i in 1..5000 loop
             execute format('create table t_%s (id int primary key, name text, parent int%s)',
               i, case when i > 1 then format(' references t_%s', i - 1) else '' end);
           end loop;
         end $$;
         insert into t_5000 (id, name) values (1, 'last');",
    )
    .await;
    let started = Instant::now();
    let resp = t
        .http
        .get(format!("{}/rest/v1/t_5000?select=name", p.url))
        .header("apikey", &p.service)
        .send()
        .await
        .unwrap();
    // Printed for information only (timings are measured in benches, not asserted).
    eprintln!(
        "first request with a 5,000-table schema: {:?}",
        started.elapsed()
    );
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!([{"name": "last"}])
    );
    // Relationships across the whole schema are known: embed the parent.
    let resp = t
        .http
        .get(format!("{}/rest/v1/t_5000?select=name,t_4999(id)", p.url))
        .header("apikey", &p.service)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!([{"name": "last", "t_4999": null}])
    );
}

/// `ferrobase_rest_schema_loads_total` from `/metrics` (0 before the first load).
async fn schema_loads(t: &TestApp) -> u64 {
    t.metrics()
        .await
        .lines()
        .find_map(|l| l.strip_prefix("ferrobase_rest_schema_loads_total "))
        .map_or(0, |v| v.trim().parse().expect("a counter value"))
}

/// `n` reads of `column` at once, each of which must see it.
async fn concurrent_reads(t: &TestApp, p: &TestProject, column: &str, n: usize) {
    let reads = (0..n).map(|_| {
        t.http
            .get(format!("{}/rest/v1/herd?select={column}", p.url))
            .header("apikey", &p.anon)
            .send()
    });
    for resp in futures_util::future::join_all(reads).await {
        let resp = resp.expect("read");
        assert_eq!(resp.status(), StatusCode::OK);
        let body: Value = resp.json().await.expect("json");
        assert_eq!(body, json!([{ column: 1 }]));
    }
}

/// A schema change, or a project's first requests, find the cache wanting in
/// every request in flight at once: one of them introspects the catalog and
/// the others take its result, rather than each running the same queries
/// (16 loads at once, each holding a pooled connection, before).
#[tokio::test]
async fn concurrent_requests_share_one_schema_load() {
    const AT_ONCE: usize = 16;
    let t = TestApp::spawn().await;
    let p = t.create_project("herd").await;
    t.owner_sql(
        &p,
        "create table herd (a int); insert into herd values (1);
         grant select on herd to anon;",
    )
    .await;

    // First requests of the project.
    let before = schema_loads(&t).await;
    concurrent_reads(&t, &p, "a", AT_ONCE).await;
    assert_eq!(schema_loads(&t).await - before, 1, "first use");

    // A change made behind the server's back: every request is stale.
    let before = schema_loads(&t).await;
    t.owner_sql(&p, "alter table herd add column b int default 1")
        .await;
    concurrent_reads(&t, &p, "b", AT_ONCE).await;
    assert_eq!(schema_loads(&t).await - before, 1, "after a change in SQL");

    // A change through admin SQL, which drops the cache.
    sql_ok(&t, &p, "alter table herd add column c int default 1").await;
    let before = schema_loads(&t).await;
    concurrent_reads(&t, &p, "c", AT_ONCE).await;
    assert_eq!(schema_loads(&t).await - before, 1, "after admin SQL");
}
