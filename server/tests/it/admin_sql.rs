//! Admin SQL (`POST /p/{ref}/admin/v1/sql`): bound parameters, limits,
//! EXPLAIN, Postgres errors, who may call it, tenant isolation, and a table
//! of hostile statements that must be refused and leave no trace.

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{TestApp, TestProject, expect_error};

/// `POST {project}/admin/v1/sql` with the service-role key.
pub async fn sql(t: &TestApp, p: &TestProject, body: Value) -> reqwest::Response {
    t.http
        .post(format!("{}/admin/v1/sql", p.url))
        .header("apikey", &p.service)
        .bearer_auth(&p.service)
        .json(&body)
        .send()
        .await
        .expect("sql request")
}

/// Runs `query` and returns the (single-statement) result, asserting 200.
pub async fn sql_ok(t: &TestApp, p: &TestProject, query: &str) -> Value {
    let resp = sql(t, p, json!({ "query": query })).await;
    let status = resp.status();
    let body: Value = resp.json().await.expect("json");
    assert_eq!(status, 200, "{query}: {body}");
    body
}

/// A single boolean from the owner's point of view (bypassing the API).
async fn owner_bool(p: &TestProject, query: &str) -> bool {
    let cfg: tokio_postgres::Config = p.db_url.parse().expect("db_url");
    let client = ferrobase_server::db::connect(&cfg).await.expect("connect");
    client
        .query_one(query, &[])
        .await
        .unwrap_or_else(|e| panic!("{query}: {e}"))
        .get(0)
}

#[tokio::test]
async fn params_are_bound_and_values_typed() {
    let t = TestApp::spawn().await;
    let p = t.create_project("sqlparams").await;
    sql_ok(&t, &p, "create table notes (id serial primary key, body text, n numeric, big int8, data jsonb, tags text[], ok bool, at timestamptz)").await;
    let hostile = "'); drop table notes; --";
    let resp = sql(
        &t,
        &p,
        json!({
            "query": "insert into notes (body, n, big, data, tags, ok, at) values ($1, $2, $3, $4, $5, $6, $7) returning *",
            "params": [hostile, "12345678901234567890.5", 9007199254740993_i64, {"a": [1, 2]}, "{x,y}", true, "2024-01-02T03:04:05Z"]
        }),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["command"], "INSERT");
    assert_eq!(body["row_count"], 1);
    let row = &body["rows"][0];
    assert_eq!(
        row["body"], hostile,
        "an injection attempt in a param is data"
    );
    assert_eq!(row["n"], "12345678901234567890.5", "numeric stays exact");
    assert_eq!(row["big"], 9007199254740993_i64);
    assert_eq!(row["data"], json!({"a": [1, 2]}));
    assert_eq!(row["tags"], json!(["x", "y"]));
    assert_eq!(row["ok"], true);
    let cols: Vec<&str> = body["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        cols,
        [
            "int4",
            "text",
            "numeric",
            "int8",
            "jsonb",
            "_text",
            "bool",
            "timestamptz"
        ]
    );
    // The table survived and a param used in a WHERE clause is a value, not SQL.
    let resp = sql(&t, &p, json!({"query": "select count(*) as c from notes where body = $1", "params": ["x' or '1'='1"]})).await;
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["rows"][0]["c"], 0);
    let body = sql_ok(&t, &p, "select count(*) as c from notes").await;
    assert_eq!(body["rows"][0]["c"], 1);
    // Too few params → 400.
    let resp = sql(&t, &p, json!({"query": "select $1::int + $2::int"})).await;
    expect_error(resp, 400, "sql_params").await;
}

#[tokio::test]
async fn limits_explain_errors_and_multi_statements() {
    let t = TestApp::spawn().await;
    let p = t.create_project("sqllimits").await;
    // Row limit.
    let resp = sql(
        &t,
        &p,
        json!({"query": "select g from generate_series(1, 50) g", "max_rows": 10}),
    )
    .await;
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["rows"].as_array().unwrap().len(), 10);
    assert_eq!(body["truncated"], true);
    let body = sql_ok(&t, &p, "select g from generate_series(1, 5) g").await;
    assert_eq!(body["truncated"], false);
    assert_eq!(body["row_count"], 5);
    // Timeout.
    let started = std::time::Instant::now();
    let resp = sql(
        &t,
        &p,
        json!({"query": "select pg_sleep(10)", "timeout_ms": 300}),
    )
    .await;
    let err = expect_error(resp, 400, "statement_timeout").await;
    assert!(err["message"].as_str().unwrap().contains("300 ms"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    for bad in [
        json!({"query": "select 1", "timeout_ms": 600000}),
        json!({"query": "select 1", "max_rows": 0}),
    ] {
        let resp = sql(&t, &p, bad).await;
        assert_eq!(resp.status(), 400);
    }
    // EXPLAIN ANALYZE runs in a rolled-back transaction.
    sql_ok(&t, &p, "create table ex (id int)").await;
    let resp = sql(
        &t,
        &p,
        json!({"query": "insert into ex values (1)", "explain": true}),
    )
    .await;
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["command"], "EXPLAIN");
    let plan = &body["rows"][0]["QUERY PLAN"][0]["Plan"];
    assert_eq!(plan["Node Type"], "ModifyTable", "{body}");
    let body = sql_ok(&t, &p, "select count(*) as c from ex").await;
    assert_eq!(
        body["rows"][0]["c"], 0,
        "explain must not leave rows behind"
    );
    // Multi-statement: an array, one transaction.
    let resp = sql(&t, &p, json!({"query": "insert into ex values (1); insert into ex values (2) returning id; select count(*) from ex"})).await;
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body.as_array().map(Vec::len), Some(3), "{body}");
    assert_eq!(body[2]["rows"][0]["count"], 2);
    let resp = sql(
        &t,
        &p,
        json!({"query": "insert into ex values (3); select * from missing"}),
    )
    .await;
    let err = expect_error(resp, 400, "42P01").await;
    assert!(
        err["details"]
            .as_str()
            .unwrap()
            .contains("Statement 2, position 15"),
        "{err}"
    );
    let body = sql_ok(&t, &p, "select count(*) as c from ex").await;
    assert_eq!(
        body["rows"][0]["c"], 2,
        "a failing request is rolled back as a whole"
    );
    // Syntax errors, empty queries, malformed bodies.
    expect_error(sql(&t, &p, json!({"query": "selec 1"})).await, 400, "42601").await;
    expect_error(
        sql(&t, &p, json!({"query": " ; -- nothing"})).await,
        400,
        "sql_empty",
    )
    .await;
    expect_error(sql(&t, &p, json!({"query": 5})).await, 422, "invalid_body").await;
    // Postgres errors carry the SQLSTATE.
    expect_error(
        sql(&t, &p, json!({"query": "select 1/0"})).await,
        400,
        "22012",
    )
    .await;
    // SHOW goes through the text fallback.
    let body = sql_ok(&t, &p, "show statement_timeout").await;
    assert_eq!(body["rows"][0]["statement_timeout"], "15s");
}

#[tokio::test]
async fn only_the_service_role_or_a_platform_admin() {
    let t = TestApp::spawn().await;
    let p = t.create_project("sqlauth").await;
    let url = format!("{}/admin/v1/sql", p.url);
    let body = json!({"query": "select 1 as one"});
    let project = ferrobase_server::platform::projects::load(&t.app.platform, "sqlauth")
        .await
        .unwrap()
        .unwrap();
    let now = chrono::Utc::now().timestamp();
    let user = project.keys[0]
        .sign(&json!({"ref": "sqlauth", "role": "authenticated", "sub": uuid::Uuid::new_v4(), "exp": now + 3600}))
        .unwrap();
    let resp = t.http.post(&url).json(&body).send().await.unwrap();
    expect_error(resp, 401, "missing_api_key").await;
    let resp = t
        .http
        .post(&url)
        .header("apikey", "nope")
        .json(&body)
        .send()
        .await
        .unwrap();
    expect_error(resp, 401, "invalid_token").await;
    let resp = t
        .http
        .post(&url)
        .header("apikey", &p.anon)
        .json(&body)
        .send()
        .await
        .unwrap();
    expect_error(resp, 403, "admin_required").await;
    let resp = t
        .http
        .post(&url)
        .header("apikey", &p.anon)
        .bearer_auth(&user)
        .json(&body)
        .send()
        .await
        .unwrap();
    expect_error(resp, 403, "admin_required").await;
    let resp = t
        .admin(Method::POST, "/p/sqlauth/admin/v1/sql")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = sql(&t, &p, body).await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn hostile_statements_are_refused_and_have_no_effect() {
    let t = TestApp::spawn().await;
    let p = t.create_project("sqlguard").await;
    sql_ok(
        &t,
        &p,
        "create table victim (id int primary key, v text); insert into victim values (1, 'safe')",
    )
    .await;
    let cases: &[&str] = &[
        "SELECT 1; DROP ROLE fb_evil",
        "select 1; create role fb_evil",
        "/* harmless */ CREATE ROLE fb_evil LOGIN SUPERUSER",
        "create user fb_evil",
        "create group fb_evil",
        "alter role current_user createrole",
        "alter user current_user superuser",
        "drop role if exists anon",
        "grant service_role to current_user",
        "WITH x AS (DELETE FROM auth.users RETURNING 1) SELECT * FROM x",
        "with x as (insert into _ferrobase.t values (1) returning 1) select * from x",
        "DO $$ BEGIN EXECUTE 'ALTER ROLE ' || current_user || ' SUPERUSER'; END $$",
        "do $$ begin perform set_config('role', 'service_role', false); end $$",
        "do language plpython3u $$ import os $$",
        "CREATE FUNCTION evil() RETURNS void LANGUAGE plpgsql AS $$ BEGIN EXECUTE 'DROP TABLE victim'; END $$",
        "create function evil() returns void language plpgsql as $$ declare r record; begin for r in execute 'select 1' loop end loop; end $$",
        "create function evil() returns void language sql as $$ delete from auth.users $$",
        "create function evil() returns trigger language plpgsql as $$ begin execute 'drop table victim'; return new; end $$",
        "create function evil() returns text language c as 'libc', 'system'",
        "COPY victim TO PROGRAM 'id'",
        "COPY victim FROM '/etc/passwd'",
        "copy victim to '/tmp/fb_evil'",
        "copy (select 1) to stdout",
        "SELECT set_config('role', 'service_role', false)",
        "select set_config('session_authorization', 'postgres', false)",
        "select set_config(lower('ROLE'), 'service_role', false)",
        "select set_config('statement_timeout', '0', false)",
        "ALTER SYSTEM SET log_statement = 'none'",
        "LOAD 'auto_explain'",
        "CREATE EXTENSION plpython3u",
        "create extension dblink",
        "create extension postgres_fdw",
        "create extension pgcrypto schema auth",
        "CREATE LANGUAGE plperlu",
        "SET SESSION AUTHORIZATION postgres",
        "set role service_role",
        "set local role anon",
        "reset role",
        "reset all",
        "set statement_timeout = 0",
        "ALTER DATABASE postgres SET work_mem = '1GB'",
        "create database fb_evil",
        "drop database postgres",
        "create tablespace fb_evil location '/tmp'",
        "insert into _ferrobase.projects values (1)",
        "create schema _ferrobase",
        "create table auth.evil (id int)",
        "create or replace function auth.uid() returns uuid language sql as $$ select null::uuid $$",
        "drop function auth.uid()",
        "alter function auth.uid() rename to uid2",
        "update storage.objects set name = 'x'",
        "drop schema auth cascade",
        "alter table victim set schema auth",
        "grant all on schema auth to anon",
        "set search_path = auth, public",
        "select set_config('search_path', 'auth', false)",
        "select query_to_xml('drop table victim', true, true, '')",
        "select pg_read_file('/etc/passwd')",
        "select dblink_exec('dbname=postgres', 'drop table victim')",
        "select lo_import('/etc/passwd')",
        "create server fb_evil foreign data wrapper postgres_fdw",
        "alter table victim owner to anon",
        "create schema fb_evil authorization anon",
        "begin; drop table victim; commit",
        "checkpoint",
        "create event trigger fb_evil on ddl_command_start execute function evil()",
        "prepare x as delete from auth.users",
        "create rule r as on insert to victim do also delete from auth.users",
        "discard all",
        "create view auth.v as select 1",
    ];
    assert!(cases.len() >= 30);
    for query in cases {
        let resp = sql(&t, &p, json!({ "query": query })).await;
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap();
        assert_eq!(status, 400, "{query} was not refused: {body}");
        assert_eq!(body["code"], "sql_refused", "{query}: {body}");
        assert!(
            body["message"].as_str().unwrap().contains("refused: "),
            "{query}: {body}"
        );
    }
    // Nothing happened.
    for check in [
        "select not exists (select 1 from pg_roles where rolname = 'fb_evil')",
        "select (select count(*) from victim) = 1",
        "select (select v from victim) = 'safe'",
        "select not exists (select 1 from pg_namespace where nspname = 'fb_evil')",
        "select not exists (select 1 from pg_class c join pg_namespace n on n.oid = c.relnamespace where n.nspname = '_ferrobase' and c.relname not like 'schema_history%' and c.relname <> 'schema_version')",
        "select not exists (select 1 from pg_class c join pg_namespace n on n.oid = c.relnamespace where n.nspname = 'auth' and c.relname in ('evil', 'v'))",
        "select not exists (select 1 from pg_proc where proname in ('evil', 'uid2'))",
        "select exists (select 1 from pg_proc p join pg_namespace n on n.oid = p.pronamespace where n.nspname = 'auth' and proname = 'uid' and prosrc like '%sub%')",
        "select not exists (select 1 from pg_extension where extname in ('plpython3u', 'dblink', 'postgres_fdw', 'pgcrypto'))",
        "select not exists (select 1 from pg_rewrite where rulename = 'r')",
        "select not has_schema_privilege('anon', 'auth', 'create')",
        "select (select relowner from pg_class where relname = 'victim') = (select oid from pg_roles where rolname = current_user)",
    ] {
        assert!(owner_bool(&p, check).await, "after the refusals: {check}");
    }
    // Refusals are audited (without params).
    let audit = t.app.platform.control().get().await.unwrap();
    let n: i64 = audit
        .query_one(
            "select count(*) from audit_log where action = 'sql.refused'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(n >= cases.len() as i64, "{n} refusals audited");
}

#[tokio::test]
async fn allowed_statements_work_and_the_data_api_sees_them() {
    let t = TestApp::spawn().await;
    let p = t.create_project("sqlallow").await;
    for query in [
        "create extension if not exists pgcrypto",
        "create extension if not exists \"uuid-ossp\"",
        "create table todos (id uuid primary key default gen_random_uuid(), title text not null, owner uuid default auth.uid(), hash text)",
        "alter table todos enable row level security",
        "create policy read_all on todos for select to anon, authenticated using (true)",
        "create function add_one(x int) returns int language sql immutable as $$ select x + 1 $$",
        "create function touch() returns trigger language plpgsql as $$ begin new.title := trim(new.title); return new; end $$",
        "create trigger todos_touch before insert on todos for each row execute function touch()",
        "do $$ begin perform 1; end $$",
        "select count(*) from auth.users_that_do_not_exist_yet_but_reading_is_allowed",
    ] {
        let resp = sql(&t, &p, json!({ "query": query })).await;
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap();
        if query.contains("do_not_exist") {
            assert_eq!(
                body["code"], "42P01",
                "reads of auth pass the guard: {body}"
            );
        } else {
            assert_eq!(status, 200, "{query}: {body}");
        }
    }
    let body = sql_ok(&t, &p, "insert into todos (title, hash) values ('  milk ', encode(digest('x', 'sha256'), 'hex')) returning title, add_one(41) as answer").await;
    assert_eq!(body["rows"][0]["title"], "milk");
    assert_eq!(body["rows"][0]["answer"], 42);
    // The data API sees the new table right away.
    let resp = t
        .http
        .get(format!("{}/rest/v1/todos?select=title", p.url))
        .header("apikey", &p.anon)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let rows: Value = resp.json().await.unwrap();
    assert_eq!(rows, json!([{"title": "milk"}]));
}

#[tokio::test]
async fn admin_sql_cannot_reach_another_project() {
    let t = TestApp::spawn().await;
    let a = t.create_project("isola").await;
    let b = t.create_project("isolb").await;
    t.owner_sql(
        &b,
        "create table secret (v text); insert into secret values ('b-only')",
    )
    .await;
    let resp = sql(&t, &a, json!({"query": "select * from secret"})).await;
    expect_error(resp, 400, "42P01").await;
    let cfg: tokio_postgres::Config = b.db_url.parse().unwrap();
    let b_db = cfg.get_dbname().unwrap().to_owned();
    let resp = sql(
        &t,
        &a,
        json!({"query": format!("select * from \"{b_db}\".public.secret")}),
    )
    .await;
    expect_error(resp, 400, "0A000").await;
    let resp = sql(&t, &a, json!({"query": "create extension dblink"})).await;
    expect_error(resp, 400, "sql_refused").await;
    // A's key cannot be used on B's admin API.
    let resp = t
        .http
        .post(format!("{}/admin/v1/sql", b.url))
        .header("apikey", &a.service)
        .json(&json!({"query": "select * from secret"}))
        .send()
        .await
        .unwrap();
    expect_error(resp, 401, "invalid_token").await;
}

#[tokio::test]
async fn the_sdk_runs_admin_sql_and_manages_the_schema() {
    let t = TestApp::spawn().await;
    let p = t.create_project("sqlsdk").await;
    let client = ferrobase::Client::new(&p.url, &p.service).unwrap();
    let admin = client.schema_admin();
    let table = admin
        .create_table(&json!({"name": "todos", "id": true, "timestamps": true,
            "columns": [{"name": "title", "type": "text", "not_null": true}]}))
        .await
        .unwrap();
    assert_eq!(table["rls_enabled"], true);
    admin
        .create_policy(
            "todos",
            &json!({"name": "read", "command": "select", "roles": ["anon"], "using": "true"}),
        )
        .await
        .unwrap();
    admin
        .alter_table("todos", &json!([{"op": "add_column", "column": {"name": "done", "type": "bool", "default": "false"}}]))
        .await
        .unwrap();
    let results = client
        .admin_sql(
            "insert into todos (title) values ($1) returning title, done",
            &[json!("milk")],
        )
        .await
        .unwrap();
    assert_eq!(results[0].rows[0]["title"], "milk");
    assert_eq!(results[0].rows[0]["done"], false);
    let anon = ferrobase::Client::new(&p.url, &p.anon).unwrap();
    let rows: Vec<Value> = anon.from("todos").select("title").fetch().await.unwrap();
    assert_eq!(rows, vec![json!({"title": "milk"})]);
    let err = client.admin_sql("create role x", &[]).await.unwrap_err();
    assert_eq!(err.code(), Some("sql_refused"));
    assert!(anon.admin_sql("select 1", &[]).await.is_err());
    let tables = admin.tables(Some("public")).await.unwrap();
    assert_eq!(tables.as_array().map(Vec::len), Some(1));
    admin.drop_table("todos", false).await.unwrap();
}

/// Storage access is decided by policies on `storage.objects`: a project
/// writes them through admin SQL (as in Supabase's SQL editor), and that is
/// the only change admin SQL may make in a platform schema.
#[tokio::test]
async fn storage_policies_can_be_written_and_nothing_else_there() {
    let t = TestApp::spawn().await;
    let p = t.create_project("sqlstorpol").await;
    sql_ok(
        &t,
        &p,
        "create policy avatars_read on storage.objects for select to anon using (bucket_id = 'avatars')",
    )
    .await;
    sql_ok(
        &t,
        &p,
        "alter policy avatars_read on storage.objects using (bucket_id = 'avatars2')",
    )
    .await;
    assert!(
        owner_bool(
            &p,
            "select exists (select 1 from pg_policies where schemaname = 'storage' \
             and tablename = 'objects' and policyname = 'avatars_read' and qual like '%avatars2%')"
        )
        .await
    );
    sql_ok(&t, &p, "drop policy avatars_read on storage.objects").await;
    for query in [
        "create policy p on auth.users using (true)",
        "drop policy if exists p on auth.users",
        "alter table storage.objects disable row level security",
        "create policy p on storage.objects using ((select count(*) from auth.refresh_tokens) > 0 and pg_read_file('/etc/passwd') <> '')",
    ] {
        let resp = sql(&t, &p, json!({ "query": query })).await;
        expect_error(resp, 400, "sql_refused").await;
    }
    assert!(
        !owner_bool(
            &p,
            "select exists (select 1 from pg_policies where schemaname in ('storage', 'auth') \
             and policyname in ('avatars_read', 'p'))"
        )
        .await
    );
}
