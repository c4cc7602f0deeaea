//! Exposed schemas (per project, chosen per request with Accept-Profile /
//! Content-Profile) and the schema cache at scale.

use std::time::Instant;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{TestApp, expect_error};

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
