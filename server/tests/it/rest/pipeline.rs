//! The pipelined per-request transaction (issue 11): BEGIN, the role/claims
//! prologue and the first statement travel together, statements are prepared
//! once per connection, and the schema version is checked optimistically.
//! None of that may let a request run with another request's role or claims:
//! with a pool of two connections, many concurrent requests of mixed roles,
//! interleaved with failing and cancelled ones, each see exactly their own
//! role and claims. A single-statement request goes further: its prologue and
//! statement share one `Sync` and commit implicitly (no `BEGIN`/`COMMIT`), so
//! the same checks run through table reads, and commit-time failures must
//! still reach the caller.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use super::{Fx, Who};
use crate::support::TestApp;

const SQL: &str = "
create function whoami() returns json language sql stable as $$
  select json_build_object('role', current_user,
    'claims', nullif(current_setting('request.jwt.claims', true), '')::json)
$$;
create function boom() returns int language plpgsql volatile as $$
  begin raise exception 'boom'; end $$;
create function slow() returns int language sql volatile as
  'select 1 from pg_sleep(2)';
create function shape() returns int language sql stable as 'select 1';
create function dealloc() returns int language plpgsql volatile as $$
  begin execute 'deallocate all'; return 1; end $$;
create function stick() returns int language plpgsql volatile as $$
  begin perform set_config('role', current_user, false); return 1; end $$;
create table notes (id int primary key, body text);
insert into notes values (1, 'one');
create view whoami_view as select current_user::text as role,
  nullif(current_setting('request.jwt.claims', true), '')::json as claims;
create view slow_view as select 1 as one from pg_sleep(2);
grant select on whoami_view, slow_view to anon, authenticated, service_role;
create table parents (id int primary key);
create table children (id int primary key,
  parent_id int references parents (id) deferrable initially deferred);
";

async fn fixture(r: &str) -> Fx {
    // Two connections: every request reuses a connection another one used.
    let t = TestApp::spawn_with(|c| c.pool_max_size = 2).await;
    let p = t.create_project(r).await;
    t.owner_sql(&p, SQL).await;
    Fx {
        t,
        p,
        project_ref: r.to_owned(),
    }
}

/// What `whoami` must return for `who`.
fn expected(who: &Who) -> (&'static str, Option<&'static str>) {
    match who {
        Who::Anon | Who::Nobody => ("anon", None),
        Who::Service => ("service_role", None),
        Who::User(sub) => ("authenticated", Some(sub)),
    }
}

async fn whoami(fx: &Fx, who: &Who) -> Result<(), String> {
    let resp = fx
        .request(Method::POST, "rpc/whoami", who)
        .await
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .map_err(|e| format!("send: {e}"))?;
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.map_err(|e| format!("json: {e}"))?;
    let (role, sub) = expected(who);
    if status != 200 || body["role"] != json!(role) || body["claims"]["role"] != json!(role) {
        return Err(format!("{who:?}: got {status} {body}"));
    }
    if body["claims"]["sub"].as_str() != sub {
        return Err(format!("{who:?}: claims of another caller: {body}"));
    }
    // The same through a table read: one statement, so prologue and
    // statement go under one Sync in an implicit transaction.
    let resp = fx
        .request(Method::GET, "whoami_view", who)
        .await
        .send()
        .await
        .map_err(|e| format!("send: {e}"))?;
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.map_err(|e| format!("json: {e}"))?;
    let row = &body[0];
    if status != 200 || row["role"] != json!(role) || row["claims"]["role"] != json!(role) {
        return Err(format!("{who:?} (read): got {status} {body}"));
    }
    if row["claims"]["sub"].as_str() != sub {
        return Err(format!("{who:?} (read): claims of another caller: {body}"));
    }
    Ok(())
}

#[tokio::test]
async fn no_request_sees_another_requests_role_or_claims() {
    let fx = fixture("pipeline-iso").await;
    let users: [&'static str; 3] = [
        "00000000-0000-4000-8000-00000000000a",
        "00000000-0000-4000-8000-00000000000b",
        "00000000-0000-4000-8000-00000000000c",
    ];
    let fx = &fx;
    let mut tasks = Vec::new();
    for i in 0..60 {
        let who = match i % 5 {
            0 => Who::Anon,
            1 => Who::Service,
            n => Who::User(users[n % 3]),
        };
        tasks.push(async move {
            let mut errors = Vec::new();
            // An error mid-pipeline, a cancelled request, then the check.
            match i % 3 {
                0 => {
                    let resp = fx
                        .request(Method::POST, "rpc/boom", &who)
                        .await
                        .header("content-type", "application/json")
                        .body("{}")
                        .send()
                        .await;
                    if let Ok(r) = resp
                        && r.status().as_u16() != 400
                    {
                        errors.push(format!("boom: {}", r.status()));
                    }
                    // A statement that fails under the single Sync.
                    let resp = fx
                        .request(Method::GET, "notes?id=eq.not-a-number", &who)
                        .await
                        .send()
                        .await;
                    if let Ok(r) = resp
                        && r.status().as_u16() != 400
                    {
                        errors.push(format!("bad read: {}", r.status()));
                    }
                }
                1 => {
                    // Cancelled while its statement runs: its connection must
                    // not come back to the pool inside the open transaction.
                    let _ = fx
                        .request(Method::POST, "rpc/slow", &who)
                        .await
                        .header("content-type", "application/json")
                        .body("{}")
                        .timeout(Duration::from_millis(150))
                        .send()
                        .await;
                    // The same for a read waiting on its single-Sync reply.
                    let _ = fx
                        .request(Method::GET, "slow_view", &who)
                        .await
                        .timeout(Duration::from_millis(150))
                        .send()
                        .await;
                }
                _ => {}
            }
            for _ in 0..3 {
                if let Err(e) = whoami(fx, &who).await {
                    errors.push(e);
                }
            }
            errors
        });
    }
    let errors: Vec<String> = futures_util::future::join_all(tasks)
        .await
        .into_iter()
        .flatten()
        .collect();
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    // RLS-relevant state after all that: a fresh anonymous request is anon.
    whoami(fx, &Who::Anon).await.expect("anon after the storm");
}

/// A request's SQL may leave session-level state behind on its connection,
/// here the session's role (`set_config('role', current_user, false)` as
/// anon). The next requests on that connection still run as their own role
/// with their own claims, and the prologue (whose privileges are checked as
/// whatever role the session is left in when it starts) still reads the
/// schema version.
#[tokio::test]
async fn session_state_left_by_a_request_does_not_leak() {
    let fx = fixture("pipeline-stick").await;
    for _ in 0..4 {
        let resp = fx
            .request(Method::POST, "rpc/stick", &Who::Anon)
            .await
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status().as_u16(), 200, "stick");
    }
    for who in [
        Who::Service,
        Who::User("00000000-0000-4000-8000-00000000000d"),
        Who::Anon,
        Who::Service,
    ] {
        whoami(&fx, &who).await.expect("own role after stick");
    }
    assert_eq!(
        fx.service_get("notes?select=id,body").await,
        json!([{"id": 1, "body": "one"}])
    );
}

#[tokio::test]
async fn prepared_statements_follow_schema_changes() {
    let fx = fixture("pipeline-ddl").await;
    // Warm both connections' statement caches.
    for _ in 0..4 {
        assert_eq!(fx.service_get("rpc/shape").await, json!(1));
        assert_eq!(
            fx.service_get("notes?select=id,body").await,
            json!([{"id": 1, "body": "one"}])
        );
    }
    // Same request text, different result type and columns.
    fx.t.owner_sql(
        &fx.p,
        "drop function shape(); create function shape() returns text language sql stable as $$ select 'two' $$;
         alter table notes add column extra int default 7;
         alter table notes rename column body to text_body; alter table notes add column body text default 'b';",
    )
    .await;
    // A function that drops the connection's prepared statements.
    for _ in 0..2 {
        let resp = fx
            .request(Method::POST, "rpc/dealloc", &Who::Service)
            .await
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .expect("send");
        assert!(resp.status().as_u16() < 500, "dealloc: {}", resp.status());
    }
    for _ in 0..4 {
        assert_eq!(fx.service_get("rpc/shape").await, json!("two"));
        assert_eq!(
            fx.service_get("notes?select=id,body").await,
            json!([{"id": 1, "body": "b"}])
        );
        assert_eq!(
            fx.service_get("notes").await,
            json!([{"id": 1, "text_body": "one", "extra": 7, "body": "b"}])
        );
    }
}

#[tokio::test]
async fn writes_commit_and_roll_back_as_before() {
    let fx = fixture("pipeline-write").await;
    // POSTs `body` to `table` as the service role; the status and the body.
    let post_to = |table: &'static str, body: &'static str, prefer: &'static str| {
        let fx = &fx;
        async move {
            let resp = fx
                .request(Method::POST, table, &Who::Service)
                .await
                .header("content-type", "application/json")
                .header("prefer", prefer)
                .body(body)
                .send()
                .await
                .expect("send");
            let status = resp.status().as_u16();
            (status, resp.text().await.expect("text"))
        }
    };
    let post = |body, prefer| async move { post_to("notes", body, prefer).await.0 };
    assert_eq!(
        post(r#"{"id":2,"body":"two"}"#, "return=minimal").await,
        201
    );
    assert_eq!(
        post(r#"{"id":3,"body":"three"}"#, "return=minimal, tx=rollback").await,
        201
    );
    // Duplicate key: the error comes back, and the connection stays usable.
    assert_eq!(
        post(r#"{"id":2,"body":"again"}"#, "return=minimal").await,
        409
    );
    assert_eq!(
        fx.service_get("notes?select=id&order=id").await,
        json!([{"id": 1}, {"id": 2}])
    );

    // A deferred foreign key fails only when the transaction commits, which
    // for a one-statement write is the Sync after its statement: the
    // failure still reaches the caller, and nothing is written.
    let child = |body, prefer| post_to("children", body, prefer);
    let (status, body) = child(r#"{"id":1,"parent_id":42}"#, "return=minimal").await;
    assert_eq!(status, 409, "deferred FK violation at commit: {body}");
    assert!(body.contains("23503"), "{body}");
    // The same with the written row returned, which also commits with its
    // statement: the body must not be sent as if the write had stood.
    let (status, body) = child(r#"{"id":1,"parent_id":42}"#, "return=representation").await;
    assert_eq!(status, 409, "deferred FK violation at commit: {body}");
    assert_eq!(fx.service_get("children").await, json!([]));
    fx.t.owner_sql(&fx.p, "insert into parents values (42)")
        .await;
    let (status, body) = child(r#"{"id":1,"parent_id":42}"#, "return=representation").await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).expect("json"),
        json!([{"id": 1, "parent_id": 42}])
    );
    assert_eq!(
        fx.service_get("children").await,
        json!([{"id": 1, "parent_id": 42}])
    );
}

#[tokio::test]
async fn a_write_built_on_a_stale_cache_runs_once() {
    let fx = fixture("pipeline-stale").await;
    // Load the schema cache, then change the schema elsewhere: the next
    // request is built against the old version and finds out in its own
    // round trip, after its statement (and COMMIT) already ran.
    assert_eq!(fx.service_get("notes?select=id").await, json!([{"id": 1}]));
    for (i, ddl) in ["create table other1 (x int)", "create table other2 (x int)"]
        .iter()
        .enumerate()
    {
        fx.t.owner_sql(&fx.p, ddl).await;
        let status = fx
            .request(Method::POST, "notes", &Who::Service)
            .await
            .header("content-type", "application/json")
            .header("prefer", "return=minimal")
            .body(json!({"id": 10 + i, "body": "once"}).to_string())
            .send()
            .await
            .expect("send")
            .status()
            .as_u16();
        assert_eq!(status, 201, "POST after DDL {i}");
    }
    assert_eq!(
        fx.service_get("notes?select=id&body=eq.once&order=id")
            .await,
        json!([{"id": 10}, {"id": 11}])
    );
    // A read on a stale cache is replayed with the new one: the new table is
    // visible at once.
    fx.t.owner_sql(
        &fx.p,
        "create table other3 (x int); insert into other3 values (3)",
    )
    .await;
    assert_eq!(fx.service_get("other3").await, json!([{"x": 3}]));
}
