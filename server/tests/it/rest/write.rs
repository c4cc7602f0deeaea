//! POST / PATCH / DELETE / PUT: representations, upserts, CSV bodies,
//! `columns`, `missing=default`, `tx=rollback`. Each table runs in order
//! against one project, so later cases see earlier writes.

use serde_json::json;

use super::{Fx, case, get, post};

const REP: &str = "return=representation";
const OBJ: &str = "application/vnd.pgrst.object+json";

#[tokio::test]
async fn insert() {
    let fx = Fx::fixture("write-insert").await;
    fx.run(vec![
        post("one object, representation", "tags?select=id,name", r#"{"id":10,"name":"new"}"#).prefer(REP)
            .is(201, json!([{"id":10,"name":"new"}])).header("preference-applied", REP),
        post("many, minimal by default", "tags", r#"[{"id":11,"name":"a"},{"id":12,"name":"b"}]"#).text(201, ""),
        get("they are there", "tags?select=id&id=in.(10,11,12)&order=id").is(200, super::ids(&[10, 11, 12])),
        post("return=minimal", "tags", r#"{"id":9,"name":"m"}"#).prefer("return=minimal").text(201, "")
            .header("preference-applied", "return=minimal")
            .no_header("location"),
        post("defaults, generated columns and typed values", "todos?select=title,done,title_upper,priority,tags,during",
            r#"{"title":"x","priority":"1.10","tags":["a","b"],"during":"[1,3)"}"#).prefer(REP)
            .is(201, json!([{"title":"x","done":false,"title_upper":"X","priority":1.10,"tags":["a","b"],"during":"[1,3)"}])),
        post("embedding in the representation", "todos?select=owner:users!owner_id(name)", r#"{"title":"y","owner_id":2}"#).prefer(REP)
            .is(201, json!([{"owner":{"name":"Bob"}}])),
        post("headers-only gives Location", "tags", r#"{"id":13,"name":"c"}"#).prefer("return=headers-only")
            .text(201, "").header("location", "/tags?id=eq.13"),
        post("unknown column", "tags", r#"{"id":14,"nope":1}"#)
            .is(400, json!({"code":"PGRST204","message":"Could not find the 'nope' column of 'tags' in the schema cache","details":null,"hint":null})),
        post("columns= ignores the rest", "tags?columns=id,name&select=id,name", r#"[{"id":14,"name":"d","nope":1}]"#).prefer(REP)
            .is(201, json!([{"id":14,"name":"d"}])),
        post("columns= with an unknown column", "tags?columns=id,nope", r#"{"id":15}"#).err(400, "PGRST204"),
        post("malformed JSON", "tags", "{").err(400, "PGRST102"),
        post("a scalar body", "tags", "3").err(400, "PGRST102"),
        post("array of mixed keys", "tags", r#"[{"id":16,"name":"e"},{"id":17}]"#).err(400, "23502"),
        post("wrong type", "tags", r#"{"id":"abc","name":"x"}"#).err(400, "22P02"),
        post("duplicate key → 409", "tags", r#"{"id":1,"name":"dup"}"#).err(409, "23505"),
        post("not null → 400", "tags", r#"{"id":50}"#).err(400, "23502"),
        post("foreign key → 409", "todos", r#"{"title":"z","owner_id":999}"#).err(409, "23503"),
        post("empty array", "tags", "[]").prefer(REP).is(201, json!([])),
        post("CSV body", "tags?select=id,name", "id,name\n20,\"x, y\"\n21,z\n").h("Content-Type", "text/csv").prefer(REP)
            .is(201, json!([{"id":20,"name":"x, y"},{"id":21,"name":"z"}])),
        post("CSV with NULL", "users?select=id,email", "id,name,email\n40,Zed,NULL\n").h("Content-Type", "text/csv").prefer(REP)
            .is(201, json!([{"id":40,"email":null}])),
        post("unsupported content type", "tags", "<a/>").h("Content-Type", "application/xml").err(415, "PGRST107"),
        post("object accept with 2 rows → 406 and rolled back", "tags", r#"[{"id":30,"name":"a"},{"id":31,"name":"b"}]"#)
            .h("Accept", OBJ).prefer(REP).err(406, "PGRST116"),
        get("nothing was written", "tags?id=in.(30,31)").is(200, json!([])),
        post("object accept with 1 row", "tags", r#"{"id":30,"name":"a"}"#).h("Accept", OBJ).prefer(REP)
            .is(201, json!({"id":30,"name":"a"})),
        post("tx=rollback", "tags?select=id", r#"{"id":70,"name":"r"}"#).prefer("tx=rollback, return=representation")
            .is(201, json!([{"id":70}])).header("preference-applied", "tx=rollback, return=representation"),
        get("rolled back", "tags?id=eq.70").is(200, json!([])),
        post("a view is insertable", "todo_titles?select=title", r#"{"title":"via view"}"#).prefer(REP)
            .is(201, json!([{"title":"via view"}])),
    ])
    .await;
}

#[tokio::test]
async fn upsert_and_missing_default() {
    let fx = Fx::fixture("write-upsert").await;
    let two = r#"[{"title":"a","done":true},{"title":"b"}]"#;
    fx.run(vec![
        post(
            "missing keys are null without missing=default",
            "todos",
            two,
        )
        .err(400, "23502"),
        post("missing=default", "todos?select=title,done", two)
            .prefer("missing=default, return=representation")
            .is(
                201,
                json!([{"title":"a","done":true},{"title":"b","done":false}]),
            )
            .header(
                "preference-applied",
                "missing=default, return=representation",
            ),
        post(
            "merge-duplicates",
            "tags?select=id,name",
            r#"[{"id":1,"name":"URGENT"},{"id":40,"name":"new"}]"#,
        )
        .prefer("resolution=merge-duplicates,return=representation")
        .is(
            201,
            json!([{"id":1,"name":"URGENT"},{"id":40,"name":"new"}]),
        ),
        post(
            "ignore-duplicates",
            "tags?select=id,name",
            r#"[{"id":1,"name":"ignored"},{"id":41,"name":"new"}]"#,
        )
        .prefer("resolution=ignore-duplicates,return=representation")
        .is(201, json!([{"id":41,"name":"new"}])),
        get("ignored row unchanged", "tags?select=name&id=eq.1")
            .is(200, json!([{"name":"URGENT"}])),
        post(
            "on_conflict on a unique column",
            "users?on_conflict=email&select=id,name",
            r#"{"id":1,"email":"alice@x.io","name":"Alicia"}"#,
        )
        .prefer("resolution=merge-duplicates,return=representation")
        .is(201, json!([{"id":1,"name":"Alicia"}])),
        post(
            "on_conflict on an unknown column",
            "users?on_conflict=nope",
            r#"{"id":1}"#,
        )
        .prefer("resolution=merge-duplicates")
        .status(400),
        post(
            "on_conflict without a unique index",
            "users?on_conflict=name",
            r#"{"id":1,"name":"x"}"#,
        )
        .prefer("resolution=merge-duplicates")
        .err(400, "42P10"),
        post(
            "composite key upsert",
            "todo_tags?select=todo_id,tag_id",
            r#"{"todo_id":1,"tag_id":1}"#,
        )
        .prefer("resolution=ignore-duplicates,return=representation")
        .is(201, json!([])),
        case("PUT replaces", "PUT", "tags?id=eq.1&select=id,name")
            .body(r#"{"id":1,"name":"put"}"#)
            .prefer(REP)
            .is(200, json!([{"id":1,"name":"put"}])),
        case("PUT inserts", "PUT", "tags?id=eq.77")
            .body(r#"{"id":77,"name":"put-new"}"#)
            .text(204, ""),
        get("PUT result", "tags?select=name&id=in.(1,77)&order=id")
            .is(200, json!([{"name":"put"},{"name":"put-new"}])),
        case("PUT with a mismatched key", "PUT", "tags?id=eq.1")
            .body(r#"{"id":2,"name":"x"}"#)
            .err(400, "PGRST115"),
        case("PUT without a pk filter", "PUT", "tags?name=eq.x")
            .body(r#"{"id":2,"name":"x"}"#)
            .err(405, "PGRST105"),
        case("PUT with many rows", "PUT", "tags?id=eq.1")
            .body(r#"[{"id":1,"name":"a"},{"id":1,"name":"b"}]"#)
            .refused(),
    ])
    .await;
}

#[tokio::test]
async fn update_and_delete() {
    let fx = Fx::fixture("write-update").await;
    fx.run(vec![
        case(
            "PATCH by filter",
            "PATCH",
            "todos?done=eq.false&select=id,done&order=id",
        )
        .body(r#"{"done":true}"#)
        .prefer(REP)
        .is(
            200,
            json!([{"id":1,"done":true},{"id":3,"done":true},{"id":4,"done":true}]),
        )
        .header("content-range", "0-2/*"),
        case("PATCH minimal", "PATCH", "todos?id=eq.1")
            .body(r#"{"title":"renamed"}"#)
            .text(204, "")
            .header("content-range", "0-0/*"),
        get(
            "renamed, generated column follows",
            "todos?select=title,title_upper&id=eq.1",
        )
        .is(200, json!([{"title":"renamed","title_upper":"RENAMED"}])),
        case("PATCH nothing matches", "PATCH", "todos?id=eq.999")
            .body(r#"{"title":"x"}"#)
            .prefer(REP)
            .is(200, json!([])),
        case("PATCH unknown column", "PATCH", "todos?id=eq.1")
            .body(r#"{"nope":1}"#)
            .err(400, "PGRST204"),
        case("PATCH wrong type", "PATCH", "todos?id=eq.1")
            .body(r#"{"done":"maybe"}"#)
            .err(400, "22P02"),
        case(
            "PATCH with embedding in the representation",
            "PATCH",
            "todos?id=eq.3&select=id,users!owner_id(name)",
        )
        .body(r#"{"owner_id":1}"#)
        .prefer(REP)
        .is(200, json!([{"id":3,"users":{"name":"Alice"}}])),
        case("PATCH an empty object", "PATCH", "tags?id=eq.1")
            .body("{}")
            .prefer(REP)
            .status(200),
        case(
            "DELETE with representation",
            "DELETE",
            "todos?id=eq.2&select=id,title",
        )
        .prefer(REP)
        .is(200, json!([{"id":2,"title":"Write report"}])),
        case("DELETE nothing", "DELETE", "tags?id=gt.100")
            .text(204, "")
            .header("content-range", "*/*"),
        case("max-affected exceeded", "PATCH", "tags?id=gt.0")
            .body(r#"{"name":"all"}"#)
            .prefer("handling=strict, max-affected=1")
            .is(400, json!({"code":"PGRST124","message":"Query result exceeds max-affected preference constraint","details":"The query affects 3 rows","hint":null})),
        get("rolled back", "tags?select=name&id=eq.1").is(200, json!([{"name":"urgent"}])),
        case("max-affected respected", "PATCH", "tags?id=eq.1")
            .body(r#"{"name":"one"}"#)
            .prefer("handling=strict, max-affected=1")
            .text(204, "")
            .header("preference-applied", "handling=strict, max-affected=1"),
        case("max-affected on DELETE", "DELETE", "todo_tags?tag_id=gt.0")
            .prefer("handling=strict, max-affected=1, return=representation")
            .err(400, "PGRST124"),
        case("max-affected is ignored when lenient", "PATCH", "tags?id=in.(1,2)")
            .body(r#"{"name":"x"}"#)
            .prefer("max-affected=1")
            .text(204, ""),
        get("strict with unknown preferences", "tags")
            .prefer("handling=strict, foo, bar")
            .is(400, json!({"code":"PGRST122","message":"Invalid preferences given with handling=strict","details":"Invalid preferences: foo, bar","hint":null})),
        get("lenient ignores unknown preferences", "tags?select=id&id=eq.3")
            .prefer("foo, count=exact")
            .is(200, json!([{"id":3}]))
            .header("preference-applied", "count=exact"),
        case("DELETE with tx=rollback", "DELETE", "tags?id=eq.3")
            .prefer("tx=rollback")
            .text(204, "")
            .header("preference-applied", "tx=rollback"),
        get("still there", "tags?id=eq.3").is(200, json!([{"id":3,"name":"later"}])),
        case("DELETE cascades", "DELETE", "todos?id=eq.1").text(204, ""),
        get("junction rows gone", "todo_tags?todo_id=eq.1").is(200, json!([])),
        case("DELETE referenced row → 409", "DELETE", "tags?id=eq.2").err(409, "23503"),
        case(
            "DELETE everything with a filter on all",
            "DELETE",
            "people?id=gte.0",
        )
        .status(204),
    ])
    .await;
}
