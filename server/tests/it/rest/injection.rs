//! Injection: hostile column names, filter values, `order`/`select`/
//! `on_conflict`/`columns` clauses, JSON keys and paths, aliases, casts,
//! embed hints, function and table names, profiles and headers are refused
//! (4xx) or treated as data. Afterwards the database is intact.

use serde_json::json;

use super::{Fx, Who, case, get, post};

const DROP: &str = "drop table users";

#[tokio::test]
async fn hostile_input_is_refused_or_treated_as_data() {
    let fx = Fx::fixture("inject").await;
    let deep_select = format!("users?select={}id{}", "a(".repeat(500), ")".repeat(500));
    let deep_or = format!("users?or=({}id.eq.1{})", "or(".repeat(500), ")".repeat(500));
    let long_value = format!("users?select=id&name=eq.{}", "x".repeat(60_000));
    let mut cases = vec![
        // select: columns, aliases, casts, JSON paths.
        get(
            "select with a statement",
            &format!("users?select=id;{DROP}"),
        )
        .refused(),
        get("select with a subquery", "users?select=id,(select 1)").refused(),
        get("select with a function call", "users?select=pg_sleep(1)").refused(),
        get(
            "select quoted hostile name",
            &format!("users?select=\"id\\\"; {DROP}; --\""),
        )
        .refused(),
        get("alias breaking out", "users?select=x\":id&id=eq.1").refused(),
        get(
            "alias with a statement is a JSON key",
            &format!("users?select=a;{DROP}:id&id=eq.1"),
        )
        .is(200, json!([{"a;drop table users": 1}])),
        get("cast breaking out", "users?select=id::text)from pg_roles--").refused(),
        get(
            "cast with a statement",
            &format!("users?select=id::int;{DROP}"),
        )
        .refused(),
        get("cast to an unknown type", "users?select=id::nosuchtype").refused(),
        get(
            "JSON key with a quote is data",
            "users?select=data->>'x&id=eq.1",
        )
        .is(200, json!([{"'x": null}])),
        get(
            "JSON key with a statement is data",
            &format!("users?select=v:data->>x';{DROP};--&id=eq.1"),
        )
        .is(200, json!([{"v": null}])),
        get(
            "JSON key closing a parenthesis",
            &format!("users?select=v:data->>x');{DROP};--&id=eq.1"),
        )
        .refused(),
        get(
            "JSON path filter key is data",
            &format!("users?select=id&data->>x'||({DROP})=eq.1"),
        )
        .is(200, json!([])),
        // Filters: columns, operators, values.
        get(
            "filter column with a statement",
            &format!("users?id;{DROP}=eq.1"),
        )
        .refused(),
        get("filter column quoted", "users?\"id\\\" or 1=1 --\"=eq.1").refused(),
        get(
            "operator with a statement",
            &format!("users?id=eq;{DROP}.1"),
        )
        .refused(),
        get(
            "value with quotes is data",
            &format!("users?select=id&name=eq.'; {DROP}; --"),
        )
        .is(200, json!([])),
        get(
            "value with or 1=1 is data",
            "users?select=id&name=eq.x' or '1'='1",
        )
        .is(200, json!([])),
        get(
            "like value with quotes is data",
            "users?select=id&name=like.*' or 1=1 --",
        )
        .is(200, json!([])),
        get(
            "in list breaking out",
            &format!("users?select=id&id=in.(1);{DROP}"),
        )
        .refused(),
        get(
            "in list quoted values are data",
            "users?select=id&name=in.(\"') or 1=1 --\")",
        )
        .is(200, json!([])),
        get(
            "fts config with a statement",
            &format!("todos?select=id&tsv=fts(english);{DROP}.milk"),
        )
        .refused(),
        get(
            "fts config unknown",
            "todos?select=id&tsv=fts(nosuchconfig).milk",
        )
        .refused(),
        get(
            "is with a statement",
            &format!("users?email=is.null;{DROP}"),
        )
        .refused(),
        get(
            "or tree with a statement",
            &format!("users?or=(id.eq.1);{DROP}"),
        )
        .refused(),
        get(
            "or tree with a subquery",
            "users?or=(id.in.(select id from users))",
        )
        .refused(),
        // order / limit / offset.
        get("order with a statement", &format!("users?order=id;{DROP}")).refused(),
        get("order by a subquery", "users?order=(select 1)").refused(),
        get("order by a function", "users?order=random()").refused(),
        get(
            "order direction hostile",
            &format!("users?order=id.desc;{DROP}"),
        )
        .refused(),
        get("limit hostile", &format!("users?limit=1;{DROP}")).refused(),
        get("offset hostile", "users?offset=1 or 1=1").refused(),
        // Embedding.
        get(
            "embed hint hostile",
            &format!("todos?select=id,users!owner_id;{DROP}(name)"),
        )
        .refused(),
        get(
            "embed name hostile",
            "todos?select=id,\"users\\\" x\"(name)",
        )
        .refused(),
        get("embed to a hidden schema", "todos?select=id,hidden(id)").refused(),
        // Names of tables, functions, schemas.
        get("table with a statement", &format!("users;{DROP}")).refused(),
        get("catalog table", "pg_catalog.pg_roles").refused(),
        get("qualified table", "private.hidden").refused(),
        get("path traversal", "../../platform/v1/projects").refused(),
        get("encoded traversal", "%2e%2e%2f%2e%2e%2fplatform").refused(),
        post(
            "function with a statement",
            &format!("rpc/add;{DROP}"),
            "{}",
        )
        .refused(),
        post("catalog function", "rpc/pg_sleep", r#"{"seconds":1}"#).refused(),
        post("qualified function", "rpc/pg_catalog.pg_sleep", "{}").refused(),
        post(
            "argument name with a quote",
            "rpc/add",
            r#"{"a\"; drop table users; --":1}"#,
        )
        .refused(),
        get("profile with a statement", "users")
            .h("Accept-Profile", &format!("public;{DROP}"))
            .refused(),
        get("catalog profile", "pg_roles")
            .h("Accept-Profile", "pg_catalog")
            .refused(),
        post("content profile hostile", "tags", r#"{"id":5,"name":"x"}"#)
            .h("Content-Profile", "private")
            .refused(),
        // Writes: JSON keys, columns, on_conflict, values.
        post(
            "JSON key with a statement",
            "tags",
            &format!("{{\"id\":5,\"name\\\"); {DROP}; --\":\"x\"}}"),
        )
        .refused(),
        post(
            "columns with a statement",
            &format!("tags?columns=id,name);{DROP};--"),
            r#"{"id":5,"name":"x"}"#,
        )
        .refused(),
        post(
            "on_conflict with a statement",
            &format!("tags?on_conflict=id);{DROP};--"),
            r#"{"id":5,"name":"x"}"#,
        )
        .prefer("resolution=merge-duplicates")
        .refused(),
        post(
            "on_conflict with an expression",
            "tags?on_conflict=(id)",
            r#"{"id":5,"name":"x"}"#,
        )
        .prefer("resolution=merge-duplicates")
        .refused(),
        post(
            "value is data",
            "tags?select=name",
            &format!("{{\"id\":6,\"name\":\"'); {DROP}; --\"}}"),
        )
        .prefer("return=representation")
        .is(201, json!([{"name": format!("'); {DROP}; --")}])),
        case("PATCH key with a statement", "PATCH", "tags?id=eq.6")
            .body(&format!("{{\"name = 'x'; {DROP}; --\":1}}"))
            .refused(),
        // Headers.
        get("Range hostile", "users?select=id")
            .h("Range", &format!("0-1;{DROP}"))
            .refused(),
        get("Prefer hostile is ignored", "users?select=id&id=eq.1")
            .prefer(&format!("count=exact;{DROP}"))
            .is(200, json!([{"id":1}])),
        // Resource exhaustion shapes.
        get("deeply nested select", &deep_select).refused(),
        get("deeply nested or", &deep_or).refused(),
        get("a 60 KB value", &long_value).status(200),
    ];
    // The same attacks with the service-role key must not do more.
    let privileged: Vec<_> = cases
        .iter()
        .filter(|c| c.status == super::REFUSED)
        .take(20)
        .map(|c| {
            let mut c = c.clone();
            c.name = "as service_role";
            c.who(Who::Service)
        })
        .collect();
    cases.extend(privileged);
    fx.run(cases).await;

    // Intact: every table and row is still there.
    assert_eq!(
        fx.service_get("users?select=count()").await,
        json!([{"count": 3}])
    );
    assert_eq!(
        fx.service_get("todos?select=count()").await,
        json!([{"count": 4}])
    );
    assert_eq!(
        fx.service_get("tags?select=id,name&order=id").await,
        json!([{"id":1,"name":"urgent"},{"id":2,"name":"home"},{"id":3,"name":"later"},{"id":6,"name":"'); drop table users; --"}])
    );
}
