//! Schema management (`/p/{ref}/admin/v1/tables`, …): create with every
//! option, alter each way, policies enforced through `/rest/v1`, invalid
//! definitions, and who may call it.

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{TestApp, TestProject, expect_error};

async fn call(
    t: &TestApp,
    p: &TestProject,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut req = t
        .http
        .request(method, format!("{}/admin/v1/{path}", p.url))
        .header("apikey", &p.service)
        .bearer_auth(&p.service);
    if let Some(b) = body {
        req = req.json(&b);
    }
    req.send().await.expect("admin request")
}

async fn ok(resp: reqwest::Response, status: u16) -> Value {
    let s = resp.status().as_u16();
    let body: Value = if s == 204 {
        Value::Null
    } else {
        resp.json().await.expect("json")
    };
    assert_eq!(s, status, "{body}");
    body
}

async fn user_token(t: &TestApp, r: &str, sub: uuid::Uuid) -> String {
    let project = ferrobase_server::platform::projects::load(&t.app.platform, r)
        .await
        .unwrap()
        .unwrap();
    let now = chrono::Utc::now().timestamp();
    project.keys[0]
        .sign(&json!({"ref": r, "role": "authenticated", "sub": sub, "exp": now + 3600}))
        .unwrap()
}

/// `METHOD {project}/rest/v1/{path}` with `apikey` and an optional bearer.
async fn rest(
    t: &TestApp,
    p: &TestProject,
    method: Method,
    path: &str,
    key: &str,
    bearer: Option<&str>,
    body: Option<Value>,
) -> reqwest::Response {
    let mut req = t
        .http
        .request(method, format!("{}/rest/v1/{path}", p.url))
        .header("apikey", key)
        .bearer_auth(bearer.unwrap_or(key))
        .header("Prefer", "return=representation");
    if let Some(b) = body {
        req = req.json(&b);
    }
    req.send().await.expect("rest request")
}

fn names(list: &Value, key: &str) -> Vec<String> {
    list[key]
        .as_array()
        .unwrap_or(&vec![])
        .iter()
        .map(|c| c["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn create_table_with_every_option_and_use_it() {
    let t = TestApp::spawn().await;
    let p = t.create_project("schemacreate").await;
    ok(call(&t, &p, Method::POST, "tables", Some(json!({"name": "lists", "id": true, "columns": [{"name": "title", "type": "text", "not_null": true}]}))).await, 201).await;
    let def = json!({
        "name": "items",
        "id": true,
        "timestamps": true,
        "comment": "things to do",
        "columns": [
            {"name": "title", "type": "text", "not_null": true, "default": "'untitled'"},
            {"name": "slug", "type": "varchar(40)", "unique": true},
            {"name": "price", "type": "numeric(10,2)", "default": "0"},
            {"name": "tags", "type": "text[]"},
            {"name": "data", "type": "jsonb", "default": "'{}'::jsonb"},
            {"name": "list_id", "type": "uuid", "references": {"table": "lists", "on_delete": "cascade", "on_update": "restrict"}}
        ]
    });
    let table = ok(call(&t, &p, Method::POST, "tables", Some(def)).await, 201).await;
    assert_eq!(
        names(&table, "columns"),
        [
            "id",
            "title",
            "slug",
            "price",
            "tags",
            "data",
            "list_id",
            "created_at",
            "updated_at"
        ]
    );
    assert_eq!(table["primary_key"], json!(["id"]));
    assert_eq!(table["rls_enabled"], true, "RLS is on by default");
    assert_eq!(table["comment"], "things to do");
    let fk = &table["foreign_keys"][0];
    assert_eq!(
        (
            fk["target_table"].as_str(),
            fk["on_delete"].as_str(),
            fk["on_update"].as_str()
        ),
        (Some("lists"), Some("cascade"), Some("restrict"))
    );
    let title = &table["columns"][1];
    assert_eq!(
        (title["nullable"].as_bool(), title["default"].as_str()),
        (Some(false), Some("'untitled'::text"))
    );
    assert_eq!(table["columns"][2]["type"], "character varying(40)");
    assert!(
        table["indexes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["unique"] == true && i["columns"] == json!(["slug"])),
        "{table}"
    );
    // In the listing too.
    let list = ok(
        call(&t, &p, Method::GET, "tables?schema=public", None).await,
        200,
    )
    .await;
    let listed: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["items", "lists"]);
    let triggers = ok(
        call(&t, &p, Method::GET, "triggers?schema=public", None).await,
        200,
    )
    .await;
    assert_eq!(triggers[0]["name"], "items_updated_at");
    ok(call(&t, &p, Method::GET, "schemas", None).await, 200).await;
    // Usable through the data API (service role bypasses RLS).
    let list_row: Value = rest(
        &t,
        &p,
        Method::POST,
        "lists",
        &p.service,
        None,
        Some(json!({"title": "home"})),
    )
    .await
    .json()
    .await
    .unwrap();
    let list_id = list_row[0]["id"].as_str().unwrap().to_owned();
    let resp = rest(
        &t,
        &p,
        Method::POST,
        "items",
        &p.service,
        None,
        Some(json!({"slug": "milk", "list_id": list_id, "price": "1.50"})),
    )
    .await;
    assert_eq!(resp.status(), 201);
    let item: Value = resp.json().await.unwrap();
    assert_eq!(item[0]["title"], "untitled");
    assert_eq!(item[0]["data"], json!({}));
    let created = item[0]["updated_at"].as_str().unwrap().to_owned();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let patched: Value = rest(
        &t,
        &p,
        Method::PATCH,
        "items?slug=eq.milk",
        &p.service,
        None,
        Some(json!({"title": "oat milk"})),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_ne!(
        patched[0]["updated_at"].as_str().unwrap(),
        created,
        "the trigger refreshes updated_at"
    );
    // Unique, not null and FK hold.
    let dup = rest(
        &t,
        &p,
        Method::POST,
        "items",
        &p.service,
        None,
        Some(json!({"slug": "milk"})),
    )
    .await;
    assert_eq!(dup.status(), 409);
    // Cascade: deleting the list deletes its items.
    rest(
        &t,
        &p,
        Method::DELETE,
        &format!("lists?id=eq.{list_id}"),
        &p.service,
        None,
        None,
    )
    .await;
    let left: Value = rest(&t, &p, Method::GET, "items", &p.service, None, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(left, json!([]));
    // Anon sees nothing with RLS on and no policy.
    ok(
        call(&t, &p, Method::DELETE, "tables/lists?cascade=true", None).await,
        204,
    )
    .await;
    let resp = rest(&t, &p, Method::GET, "items", &p.anon, None, None).await;
    assert_eq!(resp.json::<Value>().await.unwrap(), json!([]));
    let fk_gone = ok(call(&t, &p, Method::GET, "tables/items", None).await, 200).await;
    assert_eq!(
        fk_gone["foreign_keys"],
        json!([]),
        "cascade dropped the foreign key"
    );
}

#[tokio::test]
async fn alter_table_each_way() {
    let t = TestApp::spawn().await;
    let p = t.create_project("schemaalter").await;
    ok(
        call(
            &t,
            &p,
            Method::POST,
            "tables",
            Some(json!({"name": "parents", "id": true})),
        )
        .await,
        201,
    )
    .await;
    ok(call(&t, &p, Method::POST, "tables", Some(json!({"name": "kids", "rls": false, "columns": [{"name": "id", "type": "int8", "primary_key": true}, {"name": "age", "type": "text"}, {"name": "old", "type": "text"}]}))).await, 201).await;
    type Check = fn(&Value) -> bool;
    let cases: Vec<(Value, Check)> = vec![
        (
            json!({"op": "add_column", "column": {"name": "nick", "type": "text", "default": "'kid'"}}),
            |t| t["columns"][3]["name"] == "nick",
        ),
        (json!({"op": "drop_column", "name": "old"}), |t| {
            !t["columns"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["name"] == "old")
        }),
        (
            json!({"op": "rename_column", "name": "nick", "to": "nickname"}),
            |t| t["columns"][2]["name"] == "nickname",
        ),
        (
            json!({"op": "alter_type", "name": "age", "type": "int4", "using": "nullif(age, '')::int4"}),
            |t| t["columns"][1]["type"] == "integer",
        ),
        (
            json!({"op": "set_default", "name": "age", "default": "1"}),
            |t| t["columns"][1]["default"] == "1",
        ),
        (json!({"op": "drop_default", "name": "age"}), |t| {
            t["columns"][1]["default"].is_null()
        }),
        (json!({"op": "set_not_null", "name": "nickname"}), |t| {
            t["columns"][2]["nullable"] == false
        }),
        (json!({"op": "drop_not_null", "name": "nickname"}), |t| {
            t["columns"][2]["nullable"] == true
        }),
        (
            json!({"op": "add_column", "column": {"name": "parent_id", "type": "uuid"}}),
            |t| t["columns"][3]["name"] == "parent_id",
        ),
        (
            json!({"op": "add_foreign_key", "name": "kids_parent", "columns": ["parent_id"], "references_table": "parents", "on_delete": "set_null"}),
            |t| {
                t["foreign_keys"][0]["name"] == "kids_parent"
                    && t["foreign_keys"][0]["on_delete"] == "set_null"
            },
        ),
        (
            json!({"op": "drop_constraint", "name": "kids_parent"}),
            |t| t["foreign_keys"] == json!([]),
        ),
        (json!({"op": "rename", "to": "children"}), |t| {
            t["name"] == "children"
        }),
    ];
    let mut table = "kids".to_owned();
    for (action, check) in cases {
        let resp = call(
            &t,
            &p,
            Method::PATCH,
            &format!("tables/{table}"),
            Some(json!({"actions": [action.clone()]})),
        )
        .await;
        let body = ok(resp, 200).await;
        assert!(check(&body), "{action}: {body}");
        table = body["name"].as_str().unwrap().to_owned();
        // The data API follows every change.
        let resp = rest(
            &t,
            &p,
            Method::GET,
            &format!("{table}?select=*"),
            &p.service,
            None,
            None,
        )
        .await;
        assert_eq!(resp.status(), 200, "{action}: data API after alter");
    }
    // Several actions in one request run in one transaction: a failure undoes all.
    let resp = call(
        &t,
        &p,
        Method::PATCH,
        "tables/children",
        Some(json!({"actions": [
            {"op": "add_column", "column": {"name": "z", "type": "text"}},
            {"op": "drop_column", "name": "nope"}
        ]})),
    )
    .await;
    expect_error(resp, 400, "42703").await;
    let body = ok(
        call(&t, &p, Method::GET, "tables/children", None).await,
        200,
    )
    .await;
    assert!(!names(&body, "columns").contains(&"z".to_owned()));
    // Indexes.
    let body = ok(
        call(
            &t,
            &p,
            Method::POST,
            "tables/children/indexes",
            Some(json!({"name": "children_nick", "columns": ["nickname", "age"], "unique": true})),
        )
        .await,
        201,
    )
    .await;
    assert!(
        body["indexes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["name"] == "children_nick"
                && i["unique"] == true
                && i["columns"] == json!(["nickname", "age"]))
    );
    ok(
        call(
            &t,
            &p,
            Method::POST,
            "tables/children/indexes",
            Some(json!({"columns": ["nickname"], "method": "hash"})),
        )
        .await,
        201,
    )
    .await;
    ok(
        call(&t, &p, Method::DELETE, "indexes/children_nick", None).await,
        204,
    )
    .await;
    let body = ok(
        call(&t, &p, Method::GET, "tables/children", None).await,
        200,
    )
    .await;
    assert!(
        !body["indexes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["name"] == "children_nick")
    );
    // RLS toggles.
    let body = ok(
        call(
            &t,
            &p,
            Method::PUT,
            "tables/children/rls",
            Some(json!({"enabled": true})),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(body["rls_enabled"], true);
    let body = ok(
        call(
            &t,
            &p,
            Method::PUT,
            "tables/children/rls",
            Some(json!({"enabled": false})),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(body["rls_enabled"], false);
    ok(
        call(&t, &p, Method::DELETE, "tables/children", None).await,
        204,
    )
    .await;
    expect_error(
        call(&t, &p, Method::GET, "tables/children", None).await,
        404,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn policies_are_enforced_through_the_data_api() {
    let t = TestApp::spawn().await;
    let p = t.create_project("schemapolicy").await;
    ok(
        call(
            &t,
            &p,
            Method::POST,
            "tables",
            Some(json!({"name": "notes", "id": true, "columns": [
                {"name": "owner", "type": "uuid", "default": "auth.uid()"},
                {"name": "body", "type": "text"}
            ]})),
        )
        .await,
        201,
    )
    .await;
    let (a, b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let (ta, tb) = (
        user_token(&t, "schemapolicy", a).await,
        user_token(&t, "schemapolicy", b).await,
    );
    let body = ok(
        call(
            &t,
            &p,
            Method::POST,
            "tables/notes/policies",
            Some(json!({
                "name": "own_rows", "command": "all", "roles": ["authenticated"],
                "using": "auth.uid() = owner", "with_check": "auth.uid() = owner"
            })),
        )
        .await,
        201,
    )
    .await;
    assert_eq!(body["policies"][0]["name"], "own_rows");
    assert_eq!(body["policies"][0]["roles"], json!(["authenticated"]));
    // Each user inserts a note (owner defaults to auth.uid()).
    for (tok, text) in [(&ta, "a's"), (&tb, "b's")] {
        let resp = rest(
            &t,
            &p,
            Method::POST,
            "notes",
            &p.anon,
            Some(tok),
            Some(json!({"body": text})),
        )
        .await;
        assert_eq!(resp.status(), 201);
    }
    // Writing a row owned by someone else is refused by WITH CHECK.
    let resp = rest(
        &t,
        &p,
        Method::POST,
        "notes",
        &p.anon,
        Some(&ta),
        Some(json!({"body": "x", "owner": b})),
    )
    .await;
    assert!(resp.status().is_client_error());
    let seen: Value = rest(
        &t,
        &p,
        Method::GET,
        "notes?select=body",
        &p.anon,
        Some(&ta),
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(seen, json!([{"body": "a's"}]));
    let seen: Value = rest(
        &t,
        &p,
        Method::GET,
        "notes?select=body",
        &p.anon,
        None,
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(seen, json!([]), "anon sees nothing");
    // A public read policy opens reads for anon.
    ok(call(&t, &p, Method::POST, "tables/notes/policies", Some(json!({"name": "public_read", "command": "select", "roles": ["anon"], "using": "true"}))).await, 201).await;
    let seen: Value = rest(
        &t,
        &p,
        Method::GET,
        "notes?select=body&order=body",
        &p.anon,
        None,
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(seen, json!([{"body": "a's"}, {"body": "b's"}]));
    ok(
        call(
            &t,
            &p,
            Method::DELETE,
            "tables/notes/policies/public_read",
            None,
        )
        .await,
        204,
    )
    .await;
    ok(
        call(
            &t,
            &p,
            Method::DELETE,
            "tables/notes/policies/own_rows",
            None,
        )
        .await,
        204,
    )
    .await;
    let seen: Value = rest(&t, &p, Method::GET, "notes", &p.anon, Some(&ta), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(seen, json!([]), "no policy, RLS on: nothing");
}

#[tokio::test]
async fn invalid_definitions_are_400_naming_the_problem() {
    let t = TestApp::spawn().await;
    let p = t.create_project("schemabad").await;
    ok(
        call(
            &t,
            &p,
            Method::POST,
            "tables",
            Some(json!({"name": "base", "id": true})),
        )
        .await,
        201,
    )
    .await;
    let col = |ty: &str| json!({"name": "t", "columns": [{"name": "c", "type": ty}]});
    let cases: Vec<(Value, u16, &str, &str)> = vec![
        (col("widget"), 400, "invalid_definition", "unknown type"),
        (
            col("int; drop table base"),
            400,
            "invalid_definition",
            "not a valid type",
        ),
        (
            col("text) ; drop table base; --"),
            400,
            "invalid_definition",
            "not a valid type",
        ),
        (
            json!({"name": "bad-name", "columns": [{"name": "c", "type": "text"}]}),
            400,
            "invalid_definition",
            "not a valid identifier",
        ),
        (
            json!({"name": "t", "columns": [{"name": "c\"; drop table base; --", "type": "text"}]}),
            400,
            "invalid_definition",
            "not a valid identifier",
        ),
        (
            json!({"name": "t", "columns": [{"name": "c", "type": "text"}, {"name": "c", "type": "int"}]}),
            400,
            "invalid_definition",
            "duplicate column",
        ),
        (
            json!({"name": "t", "id": true, "columns": [{"name": "id", "type": "int"}]}),
            400,
            "invalid_definition",
            "duplicate column",
        ),
        (
            json!({"name": "t", "columns": []}),
            400,
            "invalid_definition",
            "at least one column",
        ),
        (
            json!({"name": "t", "columns": [{"name": "c", "type": "uuid", "references": {"table": "missing"}}]}),
            400,
            "42P01",
            "missing",
        ),
        (
            json!({"name": "t", "columns": [{"name": "c", "type": "text", "default": "'x'; drop table base"}]}),
            400,
            "invalid_definition",
            "default",
        ),
        (
            json!({"name": "t", "columns": [{"name": "c", "type": "text", "default": "(select set_config('role', 'postgres', true))"}]}),
            400,
            "invalid_definition",
            "role",
        ),
        (
            json!({"name": "t", "schema": "auth", "columns": [{"name": "c", "type": "text"}]}),
            400,
            "invalid_definition",
            "owned by the platform",
        ),
        (
            json!({"name": "base", "columns": [{"name": "c", "type": "text"}]}),
            409,
            "42P07",
            "already exists",
        ),
        (
            json!({"name": "t", "columns": [{"name": "c", "type": "text"}], "surprise": 1}),
            422,
            "invalid_body",
            "expected shape",
        ),
    ];
    for (body, status, code, needle) in cases {
        let resp = call(&t, &p, Method::POST, "tables", Some(body.clone())).await;
        let err = expect_error(resp, status, code).await;
        let text = err.to_string();
        assert!(text.contains(needle), "{body}: {err}");
    }
    let bad_policies = [
        json!({"name": "p", "using": "true) with check (true"}),
        json!({"name": "p", "using": "true; drop table base"}),
        json!({"name": "p", "roles": ["postgres"], "using": "true"}),
        json!({"name": "p", "command": "truncate", "using": "true"}),
        json!({"name": "p"}),
    ];
    for body in bad_policies {
        let resp = call(
            &t,
            &p,
            Method::POST,
            "tables/base/policies",
            Some(body.clone()),
        )
        .await;
        expect_error(resp, 400, "invalid_definition").await;
    }
    let resp = call(
        &t,
        &p,
        Method::POST,
        "tables/base/indexes",
        Some(json!({"columns": ["id"], "method": "evil"})),
    )
    .await;
    expect_error(resp, 400, "invalid_definition").await;
    let resp = call(
        &t,
        &p,
        Method::PATCH,
        "tables/base",
        Some(json!({"actions": [{"op": "explode"}]})),
    )
    .await;
    expect_error(resp, 422, "invalid_body").await;
    let resp = call(&t, &p, Method::DELETE, "tables/base?schema=auth", None).await;
    expect_error(resp, 400, "invalid_definition").await;
    // Nothing was dropped along the way.
    ok(call(&t, &p, Method::GET, "tables/base", None).await, 200).await;
}

#[tokio::test]
async fn only_admins_manage_the_schema() {
    let t = TestApp::spawn().await;
    let p = t.create_project("schemaauth").await;
    let url = format!("{}/admin/v1/tables", p.url);
    let user = user_token(&t, "schemaauth", uuid::Uuid::new_v4()).await;
    expect_error(
        t.http.get(&url).send().await.unwrap(),
        401,
        "missing_api_key",
    )
    .await;
    expect_error(
        t.http
            .get(&url)
            .header("apikey", &p.anon)
            .send()
            .await
            .unwrap(),
        403,
        "admin_required",
    )
    .await;
    expect_error(
        t.http
            .get(&url)
            .header("apikey", &p.anon)
            .bearer_auth(&user)
            .send()
            .await
            .unwrap(),
        403,
        "admin_required",
    )
    .await;
    let resp = t
        .http
        .post(&url)
        .header("apikey", &p.anon)
        .json(&json!({"name": "t", "id": true}))
        .send()
        .await
        .unwrap();
    expect_error(resp, 403, "admin_required").await;
    let resp = t
        .admin(Method::GET, "/p/schemaauth/admin/v1/tables")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = t
        .admin(
            Method::GET,
            "/p/schemaauth/admin/v1/sql-functions?schema=auth",
        )
        .send()
        .await
        .unwrap();
    let funcs: Value = resp.json().await.unwrap();
    assert!(
        funcs.as_array().unwrap().iter().any(|f| f["name"] == "uid"),
        "{funcs}"
    );
    let resp = t
        .admin(Method::GET, "/p/schemaauth/admin/v1/views")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}
