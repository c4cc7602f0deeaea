//! GET/HEAD on tables, views and materialized views: select, filters, order,
//! limits, ranges, counts, output media, OpenAPI, types and error shapes.

use serde_json::json;

use super::{Fx, USER_1, Who, case, get, ids};

#[tokio::test]
async fn select_aliases_casts_and_json_paths() {
    let fx = Fx::fixture("read-select").await;
    fx.run(vec![
        get("columns", "users?select=id,name&order=id")
            .is(
                200,
                json!([{"id":1,"name":"Alice"},{"id":2,"name":"Bob"},{"id":3,"name":"Carol"}]),
            )
            .header("content-type", "application/json; charset=utf-8"),
        get("star default", "tags?id=eq.1").is(200, json!([{"id":1,"name":"urgent"}])),
        get(
            "alias + cast",
            "users?select=uid:id,n:name,idt:id::text&id=eq.1",
        )
        .is(200, json!([{"uid":1,"n":"Alice","idt":"1"}])),
        get(
            "json path",
            "users?select=id,data->address->>city,age:data->age,data->pets->0&id=eq.1",
        )
        .is(200, json!([{"id":1,"city":"Paris","age":30,"0":"cat"}])),
        get(
            "json negative index",
            "users?select=last:data->pets->-1&id=eq.1",
        )
        .is(200, json!([{"last":"cat"}])),
        get("json path cast", "users?select=age:data->>age::int&id=eq.2")
            .is(200, json!([{"age":25}])),
        get(
            "json path filter",
            "users?select=id&data->address->>city=eq.Berlin",
        )
        .is(200, ids(&[2])),
        get("json path filter jsonb", "users?select=id&data->age=gt.26").is(200, ids(&[1])),
        get("quoted column", "kinds?select=\"weird \"\"col\"\"\"")
            .is(200, json!([{"weird \"col\"": "w"}])),
        get("quoted alias", "users?select=\"a\"\"b\":id&id=eq.1").is(200, json!([{"a\"b":1}])),
        get("view", "todo_titles?select=title&id=eq.3").is(200, json!([{"title":"Walk the dog"}])),
        get(
            "materialized view",
            "todo_counts?select=owner_id,n&order=owner_id.nullsfirst",
        )
        .is(
            200,
            json!([{"owner_id":null,"n":1},{"owner_id":1,"n":2},{"owner_id":2,"n":1}]),
        ),
        get("generated column", "todos?select=title_upper&id=eq.1")
            .is(200, json!([{"title_upper":"BUY MILK"}])),
        get("count()", "todos?select=count()").is(200, json!([{"count":4}])),
        get("grouped count", "todos?select=done,n:count()&order=done")
            .is(200, json!([{"done":false,"n":3},{"done":true,"n":1}])),
        get("url-encoded plus", "todos?select=id&title=eq.Buy+milk").is(200, ids(&[1])),
        get("percent-encoded", "todos?select=id&title=eq.Buy%20milk").is(200, ids(&[1])),
        case("HEAD has no body", "HEAD", "todos?select=id").text(200, ""),
    ])
    .await;
}

#[tokio::test]
async fn every_filter_operator() {
    let fx = Fx::fixture("read-filters").await;
    let g = |n, t: &str| get(n, t);
    fx.run(vec![
        g("eq", "todos?select=id&done=eq.true").is(200, ids(&[2])),
        g("neq", "todos?select=id&done=neq.true&order=id").is(200, ids(&[1, 3, 4])),
        g("gt + lte", "todos?select=id&id=gt.1&id=lte.3&order=id").is(200, ids(&[2, 3])),
        g("gte", "todos?select=id&priority=gte.3&order=id").is(200, ids(&[2, 4])),
        g("lt", "todos?select=id&priority=lt.2").is(200, ids(&[1])),
        g("like", "todos?select=id&title=like.*o*&order=id").is(200, ids(&[2, 3, 4])),
        g("like with %", "todos?select=id&title=like.Buy%25").is(200, ids(&[1])),
        g("ilike", "todos?select=id&title=ilike.buy*").is(200, ids(&[1])),
        g("match", "todos?select=id&title=match.^W&order=id").is(200, ids(&[2, 3])),
        g("imatch", "todos?select=id&title=imatch.^w.*dog$").is(200, ids(&[3])),
        g("in", "todos?select=id&id=in.(1,3,99)&order=id").is(200, ids(&[1, 3])),
        g(
            "in quoted",
            "users?select=id&name=in.(\"Alice\",\"Bob, Jr\")",
        )
        .is(200, ids(&[1])),
        g("in empty", "todos?select=id&id=in.()").is(200, ids(&[])),
        g("not in", "todos?select=id&id=not.in.(1,2)&order=id").is(200, ids(&[3, 4])),
        g("is null", "todos?select=id&owner_id=is.null").is(200, ids(&[4])),
        g("not is null", "users?select=id&email=not.is.null&order=id").is(200, ids(&[1, 2])),
        g("is true", "todos?select=id&done=is.true").is(200, ids(&[2])),
        g("is false", "todos?select=id&done=is.false&order=id").is(200, ids(&[1, 3, 4])),
        g("is unknown", "todos?select=id&done=is.unknown").is(200, ids(&[])),
        g(
            "isdistinct",
            "todos?select=id&reviewer_id=isdistinct.1&order=id",
        )
        .is(200, ids(&[1, 2, 4])),
        g("fts tsvector", "todos?select=id&tsv=fts.milk").is(200, ids(&[1])),
        g(
            "fts lang on text",
            "todos?select=id&title=fts(english).walking",
        )
        .is(200, ids(&[3])),
        g("plfts", "todos?select=id&tsv=plfts.buy milk").is(200, ids(&[1])),
        g("phfts", "todos?select=id&tsv=phfts(english).the dog").is(200, ids(&[3])),
        g(
            "wfts",
            "todos?select=id&tsv=wfts(english).\"write report\" or milk&order=id",
        )
        .is(200, ids(&[1, 2])),
        g("not fts", "todos?select=id&tsv=not.fts.milk&order=id").is(200, ids(&[2, 3, 4])),
        g("cs array", "todos?select=id&tags=cs.{food}&order=id").is(200, ids(&[1, 4])),
        g("cd array", "todos?select=id&tags=cd.{food,shop,x}&order=id").is(200, ids(&[1, 3, 4])),
        g("ov array", "todos?select=id&tags=ov.{work,shop}&order=id").is(200, ids(&[1, 2])),
        g("cs jsonb", "users?select=id&data=cs.{\"age\":25}").is(200, ids(&[2])),
        g(
            "cd jsonb",
            "users?select=id&data=cd.{\"age\":25,\"address\":{\"city\":\"Berlin\"},\"x\":1}",
        )
        .is(200, ids(&[2])),
        g("ov range", "todos?select=id&during=ov.[4,11)&order=id").is(200, ids(&[1, 2, 4])),
        g(
            "cs range element",
            "todos?select=id&during=cs.[4,4]&order=id",
        )
        .is(200, ids(&[1, 4])),
        g("sl", "todos?select=id&during=sl.[6,7)").is(200, ids(&[1])),
        g("sr", "todos?select=id&during=sr.[1,2)&order=id").is(200, ids(&[2, 4])),
        g("nxr", "todos?select=id&during=nxr.[0,6)&order=id").is(200, ids(&[1])),
        g("nxl", "todos?select=id&during=nxl.[9,10)").is(200, ids(&[2])),
        g("adj", "todos?select=id&during=adj.[5,6)").is(200, ids(&[1])),
        g(
            "like any",
            "todos?select=id&title=like(any).{Buy*,Cook*}&order=id",
        )
        .is(200, ids(&[1, 4])),
        g(
            "ilike all",
            "todos?select=id&title=ilike(all).{*o*,*k*}&order=id",
        )
        .is(200, ids(&[3, 4])),
        g("eq any", "todos?select=id&id=eq(any).{2,3}&order=id").is(200, ids(&[2, 3])),
        g("gt all", "todos?select=id&id=gt(all).{1,2}&order=id").is(200, ids(&[3, 4])),
        g(
            "not eq any",
            "todos?select=id&id=not.eq(any).{2,3}&order=id",
        )
        .is(200, ids(&[1, 4])),
        g(
            "or",
            "todos?select=id&or=(id.eq.1,and(done.is.true,priority.gt.100))&order=id",
        )
        .is(200, ids(&[1, 2])),
        g("and", "todos?select=id&and=(id.gte.2,id.lte.3)&order=id").is(200, ids(&[2, 3])),
        g(
            "not.or",
            "todos?select=id&not.or=(id.eq.1,id.eq.2)&order=id",
        )
        .is(200, ids(&[3, 4])),
        g(
            "not.and",
            "todos?select=id&not.and=(id.gte.2,id.lte.3)&order=id",
        )
        .is(200, ids(&[1, 4])),
        g(
            "or with not and in",
            "todos?select=id&or=(id.not.in.(1,2,3),title.ilike.*milk*)&order=id",
        )
        .is(200, ids(&[1, 4])),
        g(
            "or with any",
            "todos?select=id&or=(id.eq(any).{1,2},done.is.true)&order=id",
        )
        .is(200, ids(&[1, 2])),
        g(
            "or on json path",
            "users?select=id&or=(data->>age.eq.25,name.eq.Carol)&order=id",
        )
        .is(200, ids(&[2, 3])),
        g(
            "nested or in and",
            "todos?select=id&and=(or(id.eq.1,id.eq.4),done.is.false)&order=id",
        )
        .is(200, ids(&[1, 4])),
        g(
            "several filters on one column",
            "todos?select=id&id=gte.2&id=lt.4&order=id",
        )
        .is(200, ids(&[2, 3])),
    ])
    .await;
}

#[tokio::test]
async fn order_limit_range_count() {
    let fx = Fx::fixture("read-paging").await;
    let g = |n, t: &str| get(n, t);
    fx.run(vec![
        g(
            "order desc nullslast",
            "todos?select=id&order=priority.desc.nullslast",
        )
        .is(200, ids(&[2, 4, 1, 3])),
        g(
            "order asc nullsfirst",
            "todos?select=id&order=priority.asc.nullsfirst",
        )
        .is(200, ids(&[3, 1, 4, 2])),
        g("order multi", "todos?select=id&order=done,id.desc").is(200, ids(&[4, 3, 1, 2])),
        g(
            "order json path",
            "users?select=id&order=data->>age&data=not.is.null",
        )
        .is(200, ids(&[2, 1])),
        g("limit offset", "todos?select=id&order=id&limit=2&offset=1").is(200, ids(&[2, 3])),
        g("exact count with limit", "todos?select=id&order=id&limit=2")
            .prefer("count=exact")
            .is(206, ids(&[1, 2]))
            .header("content-range", "0-1/4")
            .header("preference-applied", "count=exact"),
        g("range header", "todos?select=id&order=id")
            .h("Range", "1-2")
            .h("Range-Unit", "items")
            .is(200, ids(&[2, 3]))
            .header("content-range", "1-2/*"),
        g(
            "range intersects limit/offset",
            "todos?select=id&order=id&offset=1&limit=10",
        )
        .h("Range", "0-1")
        .is(200, ids(&[2])),
        g("open range", "todos?select=id&order=id")
            .h("Range", "2-")
            .is(200, ids(&[3, 4]))
            .header("content-range", "2-3/*"),
        g("full count", "todos?select=id")
            .prefer("count=exact")
            .status(200)
            .header("content-range", "0-3/4"),
        g("count of nothing", "todos?id=eq.999")
            .prefer("count=exact")
            .is(200, json!([]))
            .header("content-range", "*/0"),
        g("offset past the end", "todos?offset=10")
            .prefer("count=exact")
            .err(416, "PGRST103"),
        g("estimated count (small table: exact)", "todos?select=id")
            .prefer("count=estimated")
            .status(200)
            .header("content-range", "0-3/4"),
        case("HEAD with count", "HEAD", "todos?select=id")
            .prefer("count=exact")
            .text(200, "")
            .header("content-range", "0-3/4"),
        g("no count: no total", "todos?select=id&limit=1")
            .status(200)
            .header("content-range", "0-0/*"),
        g("bad range", "users").h("Range", "5-1").status(416),
        g(
            "huge limit and offset",
            "users?select=id&limit=9223372036854775807&offset=9223372036854775807",
        )
        .h("Range", "0-9223372036854775807")
        .is(200, json!([])),
    ])
    .await;

    // planned: a number from the planner, not `*`.
    let resp = fx
        .request(
            reqwest::Method::GET,
            "todos?select=id&limit=1",
            &Who::User(USER_1),
        )
        .await
        .header("Prefer", "count=planned")
        .send()
        .await
        .unwrap();
    let range = resp.headers()["content-range"].to_str().unwrap().to_owned();
    assert!(
        range.starts_with("0-0/") && !range.ends_with('*'),
        "{range}"
    );
}

#[tokio::test]
async fn single_object_and_csv() {
    let fx = Fx::fixture("read-media").await;
    let obj = "application/vnd.pgrst.object+json";
    fx.run(vec![
        get("one row", "users?select=id,name&id=eq.1").h("Accept", obj).is(200, json!({"id":1,"name":"Alice"}))
            .header("content-type", "application/vnd.pgrst.object+json; charset=utf-8"),
        get("many rows: 406", "users").h("Accept", obj).err(406, "PGRST116"),
        get("many rows: details", "users").h("Accept", obj)
            .is(406, json!({"code":"PGRST116","message":"JSON object requested, multiple (or no) rows returned","details":"The result contains 3 rows","hint":null})),
        get("no row: 406", "users?id=eq.99").h("Accept", obj).err(406, "PGRST116"),
        get("csv", "users?select=id,name,email&order=id").h("Accept", "text/csv")
            .text(200, "id,name,email\n1,Alice,alice@x.io\n2,Bob,bob@x.io\n3,Carol,")
            .header("content-type", "text/csv; charset=utf-8"),
        get("csv quoting and arrays", "todos?select=id,title,tags&id=eq.3").h("Accept", "text/csv")
            .text(200, "id,title,tags\n3,\"Walk the dog\",{}"),
        get("unsupported accept", "users").h("Accept", "image/png").err(406, "PGRST107"),
        get("accept list picks json", "users?select=id&id=eq.1").h("Accept", "image/png, application/json").is(200, ids(&[1])),
    ])
    .await;
}

#[tokio::test]
async fn types_round_trip_without_loss() {
    let fx = Fx::fixture("read-types").await;
    let resp = fx
        .request(
            reqwest::Method::GET,
            "kinds?select=id,big,num,m,b,u,j,jb,ts,tsl,d,arr,tarr,twice",
            &Who::User(USER_1),
        )
        .await
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.text().await.unwrap();
    // Exact text: bigint above 2^53 as a JSON number, numeric digits untouched, json verbatim.
    assert!(body.contains("\"big\":9007199254740993"), "{body}");
    assert!(
        body.contains("\"num\":123456789012345678901234567890.123456789"),
        "{body}"
    );
    assert!(
        body.contains("\"j\":{\"k\": [1, 2.50]}"),
        "json keeps its text: {body}"
    );
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let row = &v[0];
    assert_eq!(row["m"], "happy");
    assert_eq!(row["b"], "\\xdeadbeef");
    assert_eq!(row["u"], "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
    assert_eq!(row["jb"], json!({"a": {"b": [1, "x"]}}));
    assert_eq!(row["ts"], "2024-05-06T07:08:09.123456+00:00");
    assert_eq!(row["tsl"], "2024-05-06T07:08:09");
    assert_eq!(row["d"], "2024-05-06");
    assert_eq!(row["arr"], json!([1, 2, 3]));
    assert_eq!(row["tarr"], json!(["a b", "c,d", null]));
    assert_eq!(row["twice"], 2);

    fx.run(vec![
        get("filters on every type", "kinds?select=id&m=eq.happy&u=eq.a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11&ts=gt.2024-01-01&arr=cs.{2}&big=eq.9007199254740993&num=eq.123456789012345678901234567890.123456789&d=eq.2024-05-06")
            .is(200, ids(&[1])),
        get("timestamptz with zone", "kinds?select=id&ts=eq.2024-05-06T09:08:09.123456%2B02:00").is(200, ids(&[1])),
        get("bad enum", "kinds?select=id&m=eq.angry").err(400, "22P02"),
        get("bad uuid", "kinds?select=id&u=eq.nope").err(400, "22P02"),
        // Writes keep precision too.
        super::post("write exact values", "kinds?select=big,num,ts,b,u,m,arr,jb",
            r#"{"id":2,"big":9223372036854775807,"num":"0.1000000000000000000000000000001","ts":"2024-01-01T00:00:00+05:30","b":"\\x00ff","u":"00000000-0000-0000-0000-000000000000","m":"sad","arr":[4,5],"jb":{"deep":[{"x":null}]}}"#)
            .prefer("return=representation")
            .is(201, json!([{"big":9223372036854775807_i64,"num":0.1,"ts":"2023-12-31T18:30:00+00:00","b":"\\x00ff","u":"00000000-0000-0000-0000-000000000000","m":"sad","arr":[4,5],"jb":{"deep":[{"x":null}]}}])),
        get("exact numeric text back", "kinds?select=num::text&id=eq.2").is(200, json!([{"num":"0.1000000000000000000000000000001"}])),
        super::post("generated column refused", "kinds", r#"{"id":3,"twice":7}"#).err(400, "428C9"),
    ])
    .await;
}

#[tokio::test]
async fn openapi_root_describes_the_schema() {
    let fx = Fx::fixture("read-openapi").await;
    let resp = fx
        .request(reqwest::Method::GET, "", &Who::Anon)
        .await
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openapi+json")
    );
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["swagger"], "2.0");
    assert!(v["paths"]["/todos"]["get"].is_object());
    assert!(v["paths"]["/todos"]["post"].is_object());
    assert!(v["paths"]["/todo_titles"]["get"].is_object());
    assert!(v["paths"]["/rpc/add"]["get"].is_object());
    assert!(
        v["paths"]["/rpc/add_tag"]["get"].is_null(),
        "volatile: POST only"
    );
    assert!(v["paths"]["/things"].is_null(), "api2 is not exposed");
    assert!(v["paths"]["/hidden"].is_null());
    assert_eq!(v["definitions"]["users"]["required"], json!(["id", "name"]));
    assert_eq!(v["definitions"]["users"]["description"], "App users");
    assert!(
        v["definitions"]["todos"]["properties"]["id"]["description"]
            .as_str()
            .is_some_and(|d| d.contains("Primary Key")),
        "{}",
        v["definitions"]["todos"]
    );
}

#[tokio::test]
async fn errors_have_postgrest_shapes_and_statuses() {
    let fx = Fx::fixture("read-errors").await;
    let g = |n, t: &str| get(n, t);
    fx.run(vec![
        g("unknown table", "nope").is(404, json!({"code":"PGRST205","details":null,"hint":null,"message":"Could not find the table 'public.nope' in the schema cache"})),
        g("unknown column in select", "users?select=nope").is(400, json!({"code":"42703","details":null,"hint":null,"message":"column users.nope does not exist"})),
        g("unknown column in filter", "users?nope=eq.1").err(400, "42703"),
        g("unknown column in order", "users?order=nope").err(400, "42703"),
        g("bad operator", "users?id=xx.1").err(400, "PGRST100"),
        g("bad value for the type", "users?id=eq.abc").err(400, "22P02"),
        g("unbalanced select", "users?select=id,(name").err(400, "PGRST100"),
        g("bad limit", "users?limit=abc").err(400, "PGRST100"),
        g("negative limit", "users?limit=-1").err(400, "PGRST100"),
        g("limit overflow", "users?limit=99999999999999999999").err(400, "PGRST100"),
        g("bad order direction", "users?order=id.up").err(400, "PGRST100"),
        g("schema not exposed", "hidden").h("Accept-Profile", "private").err(406, "PGRST106"),
        g("api2 not exposed", "things").h("Accept-Profile", "api2").err(406, "PGRST106"),
        g("public profile", "tags?id=eq.1").h("Accept-Profile", "public").is(200, json!([{"id":1,"name":"urgent"}])),
        g("table outside the exposed schema", "things").err(404, "PGRST205"),
        g("permission denied: anon → 401", "readonly_t").who(Who::Anon).err(401, "42501"),
        g("permission denied: user → 403", "users").h("Accept-Profile", "public").status(200),
        super::post("permission denied: user insert → 403", "readonly_t", r#"{"id":1}"#).err(403, "42501"),
        g("permission granted", "readonly_t").is(200, json!([])),
        g("filter on an embed that is not selected", "users?todos.id=eq.1").err(400, "PGRST108"),
        g("nul byte", "users?name=eq.a%00b").status(400),
        case("unsupported method", "TRACE", "users").status(405),
        g("no credentials", "users").who(Who::Nobody).status(401),
    ])
    .await;
}
