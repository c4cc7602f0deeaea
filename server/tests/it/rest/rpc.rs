//! `/rpc/{function}`: GET for stable/immutable functions, POST, named
//! arguments, a single unnamed json argument, set-returning functions with
//! filters, `select` and embedding.

use serde_json::json;

use super::{Fx, USER_1, case, get, post};

#[tokio::test]
async fn rpc() {
    let fx = Fx::fixture("rpc").await;
    fx.run(vec![
        post("named arguments", "rpc/add", r#"{"a":1,"b":2}"#).is(200, json!(3)),
        post("default argument", "rpc/add", r#"{"a":1}"#).is(200, json!(11)),
        get("GET immutable", "rpc/add?a=5&b=6").is(200, json!(11)),
        post(
            "single unnamed json argument",
            "rpc/echo",
            r#"{"x":[1,2.50]}"#,
        )
        .is(200, json!({"x":[1,2.50]})),
        post(
            "named json argument needs its name",
            "rpc/echo_named",
            r#"{"a":1}"#,
        )
        .err(404, "PGRST202"),
        post("params=single-object", "rpc/echo_named", r#"{"a":1}"#)
            .prefer("params=single-object")
            .is(200, json!({"a":1}))
            .header("preference-applied", "params=single-object"),
        post("set of scalars", "rpc/nums", r#"{"n":3}"#).is(200, json!([1, 2, 3])),
        get("set with limit/offset", "rpc/nums?n=5&limit=2&offset=1").is(200, json!([2, 3])),
        post("claims reach the function", "rpc/whoami", "").is(200, json!(USER_1)),
        get(
            "setof table with select and order",
            "rpc/todos_of?uid=1&select=id,title&order=id.desc",
        )
        .is(
            200,
            json!([{"id":2,"title":"Write report"},{"id":1,"title":"Buy milk"}]),
        ),
        post(
            "POST with filters in the query",
            "rpc/todos_of?select=id&done=eq.true",
            r#"{"uid":1}"#,
        )
        .is(200, json!([{"id":2}])),
        get(
            "embedding on a function result",
            "rpc/todos_of?uid=1&select=id,owner:users!owner_id(name)&limit=1&order=id",
        )
        .is(200, json!([{"id":1,"owner":{"name":"Alice"}}])),
        get("returns table with filters", "rpc/pairs?b=neq.y&order=a")
            .is(200, json!([{"a":1,"b":"x"},{"a":3,"b":"z"}])),
        get("count on a function", "rpc/pairs")
            .prefer("count=exact")
            .status(200)
            .header("content-range", "0-2/3"),
        get("single composite", "rpc/user_one?uid=2&select=name").is(200, json!({"name":"Bob"})),
        post("array argument", "rpc/sum_arr", r#"{"xs":[1,2,3]}"#).is(200, json!(6)),
        get("overload by argument name (int)", "rpc/over?a=1").is(200, json!("int")),
        get("overload by argument name (text)", "rpc/over?b=x").is(200, json!("text")),
        post("numeric result stays exact", "rpc/big_num", "{}").status(200),
        post(
            "void function",
            "rpc/add_tag",
            r#"{"tid":90,"tname":"rpc"}"#,
        )
        .text(204, ""),
        get("the void function wrote", "tags?id=eq.90").is(200, json!([{"id":90,"name":"rpc"}])),
        // As PostgREST: GET runs read-only, so a volatile function fails with 25006.
        get("GET on a volatile function", "rpc/add_tag?tid=91&tname=x").err(405, "25006"),
        post("raise with detail and hint", "rpc/fail_it", "").is(
            400,
            json!({"code":"P0001","message":"boom","details":"det","hint":"hin"}),
        ),
        post("unknown function", "rpc/nope", r#"{"a":1}"#).err(404, "PGRST202"),
        post("unknown argument", "rpc/add", r#"{"zzz":1}"#).err(404, "PGRST202"),
        post("wrong argument type", "rpc/add", r#"{"a":"x"}"#).err(400, "22P02"),
        post("malformed body", "rpc/add", "{").err(400, "PGRST102"),
        case("PATCH on rpc", "PATCH", "rpc/add").status(405),
        get("object accept", "rpc/user_one?uid=1&select=id")
            .h("Accept", "application/vnd.pgrst.object+json")
            .is(200, json!({"id":1})),
        post(
            "tx=rollback on rpc",
            "rpc/add_tag",
            r#"{"tid":92,"tname":"rb"}"#,
        )
        .prefer("tx=rollback")
        .text(204, ""),
        get("rolled back", "tags?id=eq.92").is(200, json!([])),
    ])
    .await;

    // The numeric result is the exact text Postgres produced.
    let resp = fx
        .request(reqwest::Method::POST, "rpc/big_num", &super::Who::Anon)
        .await
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.text().await.unwrap(),
        "123456789012345678901234567890.5"
    );
}
