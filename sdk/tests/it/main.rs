//! SDK tests against a scripted HTTP server on a real socket (port 0): they
//! check what goes over the wire and how responses are decoded, without a
//! Ferrobase server. End-to-end tests against the real server live in the
//! server crate.

mod fake_server;

use ferrobase::{AdminClient, Client, Count, Error, Order};
use serde::Deserialize;
use serde_json::json;

use fake_server::{FakeServer, Reply};

#[derive(Debug, Deserialize, PartialEq)]
struct Todo {
    id: i64,
    title: String,
}

#[tokio::test]
async fn admin_flow() {
    let server = FakeServer::start(|req| match (req.method.as_str(), req.target.as_str()) {
        ("POST", "/platform/v1/auth/login") => {
            let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
            if body["password"] == "right" {
                Reply::json(
                    200,
                    json!({"access_token": "tok", "token_type": "bearer", "expires_in": 3600,
                           "admin": {"id": "00000000-0000-0000-0000-000000000001", "email": "a@b.c"}}),
                )
            } else {
                Reply::json(
                    401,
                    json!({"code": "invalid_credentials", "message": "Invalid email or password"}),
                )
            }
        }
        (_, path) if path.starts_with("/platform/") && req.header("authorization") != Some("Bearer tok") => {
            Reply::json(401, json!({"code": "unauthorized", "message": "no"}))
        }
        ("GET", "/platform/v1/projects") => Reply::json(
            200,
            json!([{"ref": "a", "name": "A", "created_at": "2025-01-01T00:00:00Z", "url": "http://x/p/a"}]),
        ),
        ("POST", "/platform/v1/projects") => Reply::json(
            201,
            json!({"ref": "b", "name": "b", "created_at": "2025-01-01T00:00:00Z", "url": "http://x/p/b",
                   "anon_key": "anon", "service_role_key": "svc", "db_url": "postgres://x"}),
        ),
        ("GET", "/platform/v1/projects/nope") => Reply::json(
            404,
            json!({"code": "project_not_found", "message": "Project not found", "details": null, "hint": null}),
        ),
        ("DELETE", "/platform/v1/projects/b") => Reply::empty(204),
        _ => Reply::text(500, "unexpected request"),
    })
    .await;

    let err = AdminClient::login(server.url(), "a@b.c", "wrong")
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(401));
    assert_eq!(err.code(), Some("invalid_credentials"));

    let admin = AdminClient::login(server.url(), "a@b.c", "right")
        .await
        .unwrap();
    assert_eq!(admin.access_token(), "tok");
    assert_eq!(admin.admin().unwrap().email, "a@b.c");

    let projects = admin.list_projects().await.unwrap();
    assert_eq!(projects[0].project_ref, "a");

    let created = admin.create_project("b", None).await.unwrap();
    assert_eq!(created.service_role_key, "svc");
    let create = server.requests().into_iter().last().unwrap();
    assert_eq!(create.json(), json!({"ref": "b"}));
    assert_eq!(create.header("content-type"), Some("application/json"));

    let err = admin.get_project("nope").await.unwrap_err();
    assert_eq!(err.status(), Some(404));
    assert_eq!(err.code(), Some("project_not_found"));

    admin.delete_project("b").await.unwrap();

    let client = admin.project_client(&created, true).unwrap();
    assert_eq!(client.api_key(), "svc");
    assert_eq!(client.project_url().as_str(), "http://x/p/b/");
}

#[tokio::test]
async fn data_api_round_trips() {
    let server = FakeServer::start(|req| {
        assert_eq!(req.header("apikey"), Some("anon"));
        match (req.method.as_str(), req.target.as_str()) {
            ("GET", "/p/r/rest/v1/todos?select=id%2Ctitle&order=id.desc&offset=0&limit=2") => {
                Reply::json(200, json!([{"id": 2, "title": "b"}, {"id": 1, "title": "a"}]))
                    .header("content-range", "0-1/5")
            }
            ("GET", "/p/r/rest/v1/todos?select=*&id=eq.1") => {
                Reply::json(200, json!([{"id": 1, "title": "a"}]))
            }
            ("GET", "/p/r/rest/v1/todos?select=*&id=eq.9") => Reply::json(200, json!([])),
            ("HEAD", "/p/r/rest/v1/todos?select=*") => Reply::empty(200).header("content-range", "*/5"),
            ("POST", "/p/r/rest/v1/todos") if req.header("prefer") == Some("return=minimal") => {
                Reply::empty(201)
            }
            ("POST", "/p/r/rest/v1/todos") => {
                assert_eq!(req.header("prefer"), Some("return=representation"));
                let mut row = req.json();
                row["id"] = json!(3);
                Reply::json(201, json!([row]))
            }
            ("POST", "/p/r/rest/v1/rpc/add") => {
                let args = req.json();
                Reply::json(200, json!(args["a"].as_i64().unwrap() + args["b"].as_i64().unwrap()))
            }
            ("GET", "/p/r/auth/v1/.well-known/jwks.json") => Reply::json(
                200,
                json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "abc", "kid": "k1", "alg": "EdDSA"}]}),
            ),
            ("GET", "/p/r/rest/v1/broken?select=*") => {
                Reply::text(502, "<html>Bad Gateway</html>")
            }
            _ => Reply::json(
                400,
                json!({"code": "PGRST100", "message": format!("unexpected {} {}", req.method, req.target)}),
            ),
        }
    })
    .await;
    let client = Client::new(format!("{}/p/r/", server.url()), "anon").unwrap();

    let page = client
        .from("todos")
        .select("id, title")
        .order("id", Order::desc())
        .range(0, 1)
        .count(Count::Exact)
        .execute::<Vec<Todo>>()
        .await
        .unwrap();
    assert_eq!(page.data.len(), 2);
    assert_eq!(page.count, Some(5));
    assert_eq!(page.status, 200);

    let one: Option<Todo> = client
        .from("todos")
        .select("*")
        .eq("id", 1)
        .maybe_single()
        .fetch()
        .await
        .unwrap();
    assert_eq!(one.map(|t| t.title).as_deref(), Some("a"));
    let none: Option<Todo> = client
        .from("todos")
        .select("*")
        .eq("id", 9)
        .maybe_single()
        .fetch()
        .await
        .unwrap();
    assert_eq!(none, None);

    let head = client
        .from("todos")
        .select("*")
        .count(Count::Exact)
        .head()
        .execute::<()>()
        .await
        .unwrap();
    assert_eq!(head.count, Some(5));

    let inserted: Vec<Todo> = client
        .from("todos")
        .insert(json!({"title": "c"}))
        .fetch()
        .await
        .unwrap();
    assert_eq!(
        inserted,
        [Todo {
            id: 3,
            title: "c".into()
        }]
    );
    let minimal = client
        .from("todos")
        .insert(json!({"title": "d"}))
        .returning_minimal()
        .execute::<()>()
        .await
        .unwrap();
    assert_eq!(minimal.status, 201);

    let sum: i64 = client
        .rpc("add", json!({"a": 2, "b": 3}))
        .fetch()
        .await
        .unwrap();
    assert_eq!(sum, 5);

    let jwks = client.jwks().await.unwrap();
    assert_eq!(jwks.keys[0].kid.as_deref(), Some("k1"));

    let err = client
        .from("broken")
        .select("*")
        .fetch::<Vec<Todo>>()
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(502));
    assert_eq!(err.code(), Some("http_502"));
    assert!(err.to_string().contains("Bad Gateway"), "{err}");

    // A body of the wrong shape is a decode error, not a panic.
    let err = client
        .rpc("add", json!({"a": 1, "b": 1}))
        .fetch::<String>()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Decode(_)), "{err}");

    // Signed-in requests send the user's token as the bearer.
    let user = client.clone().with_access_token("user-jwt");
    let _ = user
        .from("todos")
        .select("*")
        .eq("id", 9)
        .fetch::<Vec<Todo>>()
        .await
        .unwrap();
    let last = server.requests().into_iter().last().unwrap();
    assert_eq!(last.header("authorization"), Some("Bearer user-jwt"));
    assert_eq!(last.header("apikey"), Some("anon"));
}

#[tokio::test]
async fn readiness_probe() {
    let server = FakeServer::start(|req| match req.target.as_str() {
        "/health/ready" => Reply::json(503, json!({"status": "starting"})),
        _ => Reply::empty(404),
    })
    .await;
    assert!(!ferrobase::server_ready(server.url()).await.unwrap());

    let server = FakeServer::start(|_| Reply::json(200, json!({"status": "ready"}))).await;
    assert!(ferrobase::server_ready(server.url()).await.unwrap());

    // Nothing listening: a transport error.
    let url = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let err = ferrobase::server_ready(url).await.unwrap_err();
    assert!(matches!(err, Error::Http(_)), "{err}");
}
