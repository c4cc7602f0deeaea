//! `/admin/v1/realtime/*` and `POST /realtime/v1/messages`: happy paths,
//! authorization and bad input (always the JSON error envelope).

use reqwest::Method;
use serde_json::{Value, json};

use super::{admin_req, fixture};
use crate::rest::{USER_1, USER_2};
use crate::support::expect_error;

#[tokio::test]
async fn channel_admin_crud_and_bad_input() {
    let fx = fixture("rt-admin").await;
    let list: Value = admin_req(&fx, Method::GET, "/admin/v1/realtime/channels")
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(list.as_array().map(Vec::len), Some(4), "{list}");

    let created: Value = admin_req(&fx, Method::POST, "/admin/v1/realtime/channels")
        .json(&json!({"pattern": "game:%", "public": true, "retention_hours": 2, "description": "games"}))
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("json");
    assert_eq!(created["pattern"], "game:%");
    assert_eq!(created["retention_hours"], 2);
    let id = created["id"].as_str().expect("id").to_owned();
    let path = format!("/admin/v1/realtime/channels/{id}");

    let updated: Value = admin_req(&fx, Method::PATCH, &path)
        .json(&json!({"enabled": false}))
        .send()
        .await
        .expect("patch")
        .json()
        .await
        .expect("json");
    assert_eq!(updated["enabled"], false);
    assert_eq!(updated["public"], true);
    let got = admin_req(&fx, Method::GET, &path)
        .send()
        .await
        .expect("get");
    assert_eq!(got.status(), 200);

    // Bad input and conflicts.
    let dup = admin_req(&fx, Method::POST, "/admin/v1/realtime/channels")
        .json(&json!({"pattern": "game:%"}))
        .send()
        .await
        .expect("dup");
    expect_error(dup, 409, "channel_exists").await;
    for (body, code, status) in [
        (json!({"pattern": "has space"}), "invalid_pattern", 400),
        (json!({"pattern": "db:%"}), "invalid_pattern", 400),
        (json!({"pattern": "x".repeat(300)}), "invalid_pattern", 400),
        (json!({}), "invalid_pattern", 400),
        (
            json!({"pattern": "ok:%", "retention_hours": -1}),
            "invalid_retention",
            400,
        ),
    ] {
        let resp = admin_req(&fx, Method::POST, "/admin/v1/realtime/channels")
            .json(&body)
            .send()
            .await
            .expect("bad create");
        expect_error(resp, status, code).await;
    }
    let unknown_field = admin_req(&fx, Method::POST, "/admin/v1/realtime/channels")
        .json(&json!({"pattern": "a:%", "nope": 1}))
        .send()
        .await
        .expect("unknown field");
    assert_eq!(unknown_field.status(), 422);
    let not_uuid = admin_req(&fx, Method::GET, "/admin/v1/realtime/channels/not-a-uuid")
        .send()
        .await
        .expect("bad id");
    expect_error(not_uuid, 404, "channel_not_found").await;

    // Only admins: the anon key and a user token get 403, no key 401.
    let anon =
        fx.t.http
            .get(format!("{}/admin/v1/realtime/channels", fx.p.url))
            .header("apikey", &fx.p.anon)
            .send()
            .await
            .expect("anon");
    expect_error(anon, 403, "admin_required").await;
    let none =
        fx.t.http
            .get(format!("{}/admin/v1/realtime/channels", fx.p.url))
            .send()
            .await
            .expect("none");
    assert_eq!(none.status(), 401);

    let del = admin_req(&fx, Method::DELETE, &path)
        .send()
        .await
        .expect("delete");
    assert_eq!(del.status(), 204);
    let again = admin_req(&fx, Method::DELETE, &path)
        .send()
        .await
        .expect("delete again");
    expect_error(again, 404, "channel_not_found").await;
}

#[tokio::test]
async fn change_capture_admin() {
    let fx = fixture("rt-capture").await;
    fx.t.owner_sql(
        &fx.p,
        "create table nokey (x int); create table items (id int primary key, v text);",
    )
    .await;
    let list: Value = admin_req(&fx, Method::GET, "/admin/v1/realtime/changes")
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(list[0]["table"], "todos", "{list}");
    let no_pk = admin_req(&fx, Method::PUT, "/admin/v1/realtime/changes/public/nokey")
        .json(&json!({}))
        .send()
        .await
        .expect("no pk");
    expect_error(no_pk, 400, "primary_key_required").await;
    let missing = admin_req(
        &fx,
        Method::PUT,
        "/admin/v1/realtime/changes/public/missing",
    )
    .json(&json!({}))
    .send()
    .await
    .expect("missing");
    expect_error(missing, 404, "table_not_found").await;
    let reserved = admin_req(&fx, Method::PUT, "/admin/v1/realtime/changes/auth/users")
        .json(&json!({}))
        .send()
        .await
        .expect("reserved");
    expect_error(reserved, 400, "reserved_schema").await;
    let none = admin_req(&fx, Method::PUT, "/admin/v1/realtime/changes/public/items")
        .json(&json!({"insert": false, "update": false, "delete": false}))
        .send()
        .await
        .expect("none");
    expect_error(none, 400, "no_operations").await;
    let ok = admin_req(&fx, Method::PUT, "/admin/v1/realtime/changes/public/items")
        .json(&json!({"update": false}))
        .send()
        .await
        .expect("ok");
    assert_eq!(ok.status(), 200);
    // Only inserts and deletes are captured now: an update writes no outbox row.
    fx.t.owner_sql(
        &fx.p,
        "insert into items values (1, 'a'); update items set v = 'b'; delete from items; \
         do $$ begin if (select count(*) from realtime.messages where topic = 'db:public:items') <> 2 \
         then raise exception 'expected 2 change rows'; end if; end $$;",
    )
    .await;
    let del = admin_req(
        &fx,
        Method::DELETE,
        "/admin/v1/realtime/changes/public/items",
    )
    .send()
    .await
    .expect("delete");
    assert_eq!(del.status(), 204);
    fx.t.owner_sql(
        &fx.p,
        "insert into items values (2, 'c'); \
         do $$ begin if (select count(*) from realtime.messages where topic = 'db:public:items') <> 2 \
         then raise exception 'capture still on'; end if; end $$;",
    )
    .await;
}

#[tokio::test]
async fn http_publish() {
    let fx = fixture("rt-http").await;
    let url = format!("{}/realtime/v1/messages", fx.p.url);
    let user_a = fx.user_token(USER_1).await;
    let user_b = fx.user_token(USER_2).await;
    let room_a = format!("room:{USER_1}");
    let send = |token: Option<String>, body: Value| {
        let mut req =
            fx.t.http
                .post(&url)
                .header("apikey", &fx.p.anon)
                .json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    let ok = send(
        Some(fx.p.service.clone()),
        json!({"channel": room_a, "event": "note", "payload": {"a": 1}}),
    )
    .await
    .expect("service");
    assert_eq!(ok.status(), 201);
    let body: Value = ok.json().await.expect("json");
    assert!(body["messageId"].as_str().is_some(), "{body}");
    let own = send(
        Some(user_a.clone()),
        json!({"channel": room_a, "event": "note", "payload": {}}),
    )
    .await
    .expect("own room");
    assert_eq!(own.status(), 201);
    let other = send(
        Some(user_b),
        json!({"channel": room_a, "event": "note", "payload": {}}),
    )
    .await
    .expect("other room");
    expect_error(other, 403, "forbidden").await;
    let anon_public = send(None, json!({"channel": "public:x", "event": "e"}))
        .await
        .expect("anon public");
    assert_eq!(anon_public.status(), 201);
    for (body, status, code) in [
        (
            json!({"channel": "bad name", "event": "e"}),
            400,
            "invalid_channel",
        ),
        (
            json!({"channel": "public:x", "event": ""}),
            400,
            "invalid_event",
        ),
        (
            json!({"channel": "public:x", "event": "e", "payload": [1]}),
            400,
            "invalid_payload",
        ),
        (
            json!({"channel": "public:x", "event": "e", "payload": {"x": "y".repeat(70_000)}}),
            413,
            "payload_too_large",
        ),
        (
            json!({"channel": "nowhere", "event": "e"}),
            404,
            "channel_not_found",
        ),
        (
            json!({"channel": "off:1", "event": "e"}),
            403,
            "channel_disabled",
        ),
        (
            json!({"channel": "db:public:todos", "event": "e"}),
            403,
            "read_only_channel",
        ),
    ] {
        let resp = send(Some(user_a.clone()), body.clone()).await.expect("bad");
        expect_error(resp, status, code).await;
    }
    let no_key =
        fx.t.http
            .post(&url)
            .json(&json!({"channel": "public:x", "event": "e"}))
            .send()
            .await
            .expect("no key");
    assert_eq!(no_key.status(), 401);
    let not_json =
        fx.t.http
            .post(&url)
            .header("apikey", &fx.p.anon)
            .header("content-type", "application/json")
            .body("{")
            .send()
            .await
            .expect("not json");
    assert_eq!(not_json.status(), 400);
}
