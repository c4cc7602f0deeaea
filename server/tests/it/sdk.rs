//! The Rust SDK (`ferrobase` crate) end to end against a real server:
//! platform admin calls, then the PostgREST query builder on a project, with
//! typed results and typed errors.

use ferrobase::{AdminClient, Count, Error, Order};
use serde::Deserialize;
use serde_json::json;

use crate::rest::{FIXTURE, USER_1};
use crate::support::{TestApp, TestProject};

#[derive(Debug, Deserialize, PartialEq)]
struct Owner {
    name: String,
}

#[derive(Debug, Deserialize, PartialEq)]
struct Todo {
    id: i64,
    title: String,
    owner: Option<Owner>,
}

#[derive(Debug, Deserialize, PartialEq)]
struct Tag {
    id: i32,
    name: String,
}

fn api_error(e: Error) -> (u16, String) {
    match e {
        Error::Api { status, code, .. } => (status, code),
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn admin_client_manages_projects() {
    let t = TestApp::spawn().await;
    let wrong = AdminClient::login(&t.url, &t.config.admin_email, "wrong password").await;
    assert_eq!(
        api_error(wrong.unwrap_err()),
        (401, "invalid_credentials".to_owned())
    );

    let admin = AdminClient::login(
        &t.url,
        &t.config.admin_email,
        ferrobase_server::config::exposed(&t.config.admin_password).expect("admin password"),
    )
    .await
    .expect("login");
    assert!(admin.admin().is_some());
    assert!(admin.ready().await.expect("ready"));

    let p = admin
        .create_project("sdk-admin", Some("SDK admin"))
        .await
        .expect("create");
    assert_eq!(p.project.project_ref, "sdk-admin");
    assert_eq!(p.project.name, "SDK admin");
    let dup = admin.create_project("sdk-admin", None).await.unwrap_err();
    assert_eq!(api_error(dup), (409, "project_exists".to_owned()));
    let bad = admin.create_project("Bad Ref!", None).await.unwrap_err();
    assert_eq!(api_error(bad).0, 400);

    let list = admin.list_projects().await.expect("list");
    assert!(
        list.iter().any(|x| x.project_ref == "sdk-admin"),
        "{list:?}"
    );
    let got = admin.get_project("sdk-admin").await.expect("get");
    assert_eq!(got.anon_key, p.anon_key);
    assert_eq!(got.service_role_key, p.service_role_key);

    // A token carried over from the login works the same.
    let again = AdminClient::with_token(&t.url, admin.access_token()).expect("with_token");
    assert_eq!(again.list_projects().await.expect("list").len(), list.len());

    admin.delete_project("sdk-admin").await.expect("delete");
    let gone = admin.get_project("sdk-admin").await.unwrap_err();
    assert_eq!(api_error(gone), (404, "project_not_found".to_owned()));
}

#[tokio::test]
async fn query_builder_against_a_project() {
    let t = TestApp::spawn().await;
    let admin = AdminClient::login(
        &t.url,
        &t.config.admin_email,
        ferrobase_server::config::exposed(&t.config.admin_password).expect("admin password"),
    )
    .await
    .expect("login");
    let p = admin
        .create_project("sdk-query", None)
        .await
        .expect("create");
    let tp = TestProject {
        url: p.project.url.clone(),
        anon: p.anon_key.clone(),
        service: p.service_role_key.clone(),
        db_url: p.db_url.clone(),
    };
    t.owner_sql(&tp, FIXTURE).await;
    let db = admin.project_client(&p, false).expect("anon client");
    let service = admin.project_client(&p, true).expect("service client");

    // select + embedding + filters + order + limit.
    let todos: Vec<Todo> = db
        .from("todos")
        .select("id, title, owner:users!owner_id(name)")
        .eq("done", false)
        .order("id", Order::desc())
        .limit(2)
        .fetch()
        .await
        .expect("select");
    assert_eq!(
        todos,
        vec![
            Todo {
                id: 4,
                title: "Cook dinner".into(),
                owner: None
            },
            Todo {
                id: 3,
                title: "Walk the dog".into(),
                owner: Some(Owner { name: "Bob".into() })
            },
        ]
    );
    let more: Vec<serde_json::Value> = db
        .from("todos")
        .select("id")
        .in_("id", [1, 2, 3])
        .or("title.ilike.*milk*,priority.gt.100")
        .ilike("title", "%i%")
        .is_not_null("owner_id")
        .order("id", Order::asc())
        .fetch()
        .await
        .expect("filters");
    assert_eq!(more, vec![json!({"id": 1}), json!({"id": 2})]);

    // count (with and without rows).
    let counted = db
        .from("todos")
        .select("id")
        .count(Count::Exact)
        .range(0, 0)
        .execute::<Vec<serde_json::Value>>()
        .await
        .expect("count");
    assert_eq!(
        (counted.count, counted.data.len(), counted.status),
        (Some(4), 1, 206)
    );
    let head = db
        .from("todos")
        .select("*")
        .count(Count::Exact)
        .head()
        .execute::<()>()
        .await
        .expect("head");
    assert_eq!(head.count, Some(4));

    // single / maybe_single.
    let one: Tag = db
        .from("tags")
        .select("id,name")
        .eq("id", 1)
        .single()
        .fetch()
        .await
        .expect("single");
    assert_eq!(
        one,
        Tag {
            id: 1,
            name: "urgent".into()
        }
    );
    let many = db
        .from("tags")
        .select("*")
        .single()
        .fetch::<Tag>()
        .await
        .unwrap_err();
    assert_eq!(api_error(many), (406, "PGRST116".to_owned()));
    let none: Option<Tag> = db
        .from("tags")
        .select("*")
        .eq("id", 99)
        .maybe_single()
        .fetch()
        .await
        .expect("maybe none");
    assert_eq!(none, None);
    let some: Option<Tag> = db
        .from("tags")
        .select("id,name")
        .eq("id", 2)
        .maybe_single()
        .fetch()
        .await
        .expect("maybe one");
    assert_eq!(
        some,
        Some(Tag {
            id: 2,
            name: "home".into()
        })
    );
    let too_many = db
        .from("tags")
        .select("*")
        .maybe_single()
        .fetch::<Tag>()
        .await
        .unwrap_err();
    assert_eq!(api_error(too_many).1, "PGRST116");

    // insert (one, many with differing keys), upsert, update, delete.
    let inserted: Vec<Tag> = db
        .from("tags")
        .insert(json!({"id": 10, "name": "ten"}))
        .fetch()
        .await
        .expect("insert");
    assert_eq!(
        inserted,
        vec![Tag {
            id: 10,
            name: "ten".into()
        }]
    );
    let bulk: Vec<serde_json::Value> = db
        .from("todos")
        .insert(json!([{"title": "a"}, {"title": "b", "done": true}]))
        .missing_default()
        .select("title, done")
        .fetch()
        .await
        .expect("bulk insert");
    assert_eq!(
        bulk,
        vec![
            json!({"title": "a", "done": false}),
            json!({"title": "b", "done": true})
        ]
    );
    db.from("tags")
        .insert(json!({"id": 11, "name": "eleven"}))
        .returning_minimal()
        .execute::<()>()
        .await
        .expect("minimal");
    let upserted: Vec<Tag> = db
        .from("tags")
        .upsert(json!([{"id": 1, "name": "URGENT"}, {"id": 12, "name": "twelve"}]))
        .fetch()
        .await
        .expect("upsert");
    assert_eq!(upserted.len(), 2);
    let ignored: Vec<Tag> = db
        .from("users")
        .upsert(json!({"id": 50, "name": "Dup", "email": "alice@x.io"}))
        .on_conflict("email")
        .ignore_duplicates()
        .fetch()
        .await
        .expect("upsert ignore");
    assert!(ignored.is_empty());
    let updated: Vec<Tag> = db
        .from("tags")
        .update(json!({"name": "renamed"}))
        .eq("id", 10)
        .fetch()
        .await
        .expect("update");
    assert_eq!(
        updated,
        vec![Tag {
            id: 10,
            name: "renamed".into()
        }]
    );
    let deleted: Vec<Tag> = db
        .from("tags")
        .delete()
        .in_("id", [10, 11, 12])
        .order("id", Order::asc())
        .fetch()
        .await
        .expect("delete");
    assert_eq!(
        deleted.iter().map(|t| t.id).collect::<Vec<_>>(),
        vec![10, 11, 12]
    );

    // rpc: scalar, set-returning with filters, with a user's token.
    let sum: i64 = db
        .rpc("add", json!({"a": 1, "b": 2}))
        .fetch()
        .await
        .expect("rpc");
    assert_eq!(sum, 3);
    let done: Vec<serde_json::Value> = db
        .rpc("todos_of", json!({"uid": 1}))
        .select("id")
        .eq("done", true)
        .fetch()
        .await
        .expect("rpc set");
    assert_eq!(done, vec![json!({"id": 2})]);
    let project = ferrobase_server::platform::projects::load(&t.app.platform, "sdk-query")
        .await
        .expect("load")
        .expect("exists");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let token = project.keys[0]
        .sign(
            &json!({"ref": "sdk-query", "role": "authenticated", "sub": USER_1, "exp": now + 600}),
        )
        .expect("sign");
    let user = db.clone().with_access_token(token);
    let me: String = user.rpc("whoami", json!({})).fetch().await.expect("whoami");
    assert_eq!(me, USER_1);

    // Typed errors.
    let e = db
        .from("nope")
        .select("*")
        .fetch::<serde_json::Value>()
        .await
        .unwrap_err();
    assert_eq!(api_error(e), (404, "PGRST205".to_owned()));
    let e = db
        .from("tags")
        .insert(json!({"id": 1, "name": "dup"}))
        .fetch::<serde_json::Value>()
        .await
        .unwrap_err();
    assert_eq!(api_error(e), (409, "23505".to_owned()));
    let e = db
        .from("readonly_t")
        .select("*")
        .fetch::<serde_json::Value>()
        .await
        .unwrap_err();
    assert_eq!(api_error(e), (401, "42501".to_owned()));
    let ok: serde_json::Value = service
        .from("readonly_t")
        .select("*")
        .fetch()
        .await
        .expect("service_role");
    assert_eq!(ok, json!([]));
    match db
        .rpc("fail_it", json!({}))
        .fetch::<serde_json::Value>()
        .await
        .unwrap_err()
    {
        Error::Api {
            status,
            code,
            message,
            details,
            hint,
        } => {
            assert_eq!(
                (status, code.as_str(), message.as_str()),
                (400, "P0001", "boom")
            );
            assert_eq!(
                (details.as_deref(), hint.as_deref()),
                (Some("det"), Some("hin"))
            );
        }
        other => panic!("{other:?}"),
    }
}
