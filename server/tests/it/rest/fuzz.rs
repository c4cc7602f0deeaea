//! The query string fuzzed end to end: mutations of valid PostgREST queries
//! (and raw grammar soup) sent to a real server on reads, rpc and rolled-back
//! writes never produce a 5xx, and errors keep the PostgREST shape. The
//! parser alone is fuzzed much harder by the unit tests in
//! `server/src/rest/fuzz.rs`.

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use reqwest::Method;
use serde_json::Value;

use super::{Fx, USER_1, Who};

#[path = "../../../src/rest/fuzz_grammar.rs"]
mod grammar;
use grammar::{mutated, soup};

const SEEDS: &[&str] = &[
    "select=id,title&order=id",
    "select=id,owner:users!owner_id(name,data->>age)&id=in.(1,4)&order=id",
    "select=id,tags(name)&tags.order=id&tags.limit=1",
    "select=id,...users!owner_id(n:name)&users=not.is.null",
    "title=like(any).{Buy*,Cook*}&order=priority.desc.nullslast,id",
    "or=(id.eq.1,and(done.is.true,priority.gt.100))&limit=2&offset=1",
    "tsv=wfts(english).milk&tags=cs.{food}&during=ov.[1,3)",
    "select=done,n:count()&order=done",
    "select=id,priority::text&priority=gte.1.5&reviewer_id=isdistinct.1",
];

#[tokio::test]
async fn fuzzed_query_strings_never_cause_a_server_error() {
    let fx = Fx::fixture("fuzz").await;
    let mut runner = TestRunner::deterministic();
    // `#` would start a fragment: keep everything in the query.
    let strategy =
        prop_oneof![3 => mutated(SEEDS), 1 => soup(25)].prop_map(|q| q.replace('#', "%23"));
    let mut failures = Vec::new();
    let cases = 150;
    let mut sent = 0;
    for i in 0..cases {
        let q = strategy.new_tree(&mut runner).expect("generate").current();
        let (method, target, body) = match i % 5 {
            0 | 1 => (Method::GET, format!("todos?{q}"), None),
            2 => (Method::GET, format!("rpc/todos_of?uid=1&{q}"), None),
            3 => (
                Method::PATCH,
                format!("todos?{q}"),
                Some(r#"{"title":"fuzz"}"#),
            ),
            _ => (Method::DELETE, format!("todos?{q}"), None),
        };
        let mut req = fx
            .request(method.clone(), &target, &Who::User(USER_1))
            .await
            .header("Prefer", "tx=rollback, return=representation");
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                // reqwest refuses some URLs before sending; that is not the server's doing.
                if e.is_builder() {
                    continue;
                }
                panic!("{method} {target}: {e}");
            }
        };
        sent += 1;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        if status >= 500 {
            failures.push(format!("{method} {target} → {status} {text}"));
        } else if status >= 400 {
            let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            if !v["code"].is_string() || !v["message"].is_string() {
                failures.push(format!(
                    "{method} {target} → {status} without an error envelope: {text}"
                ));
            }
        }
    }
    assert!(
        sent > cases / 2,
        "only {sent} of {cases} requests could be sent"
    );
    assert!(
        failures.is_empty(),
        "{} of {cases}:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // Writes were all rolled back.
    assert_eq!(
        fx.service_get("todos?select=count()").await,
        serde_json::json!([{"count": 4}])
    );
    assert_eq!(
        fx.service_get("todos?select=title&id=eq.1").await,
        serde_json::json!([{"title": "Buy milk"}])
    );
}
