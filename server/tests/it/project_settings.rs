//! Project settings that every node must apply at once: per-project CORS
//! origins and API key rotation, each changed through one node of two and
//! checked on the other (the cached project is dropped through a Postgres
//! notification, not after its 10 s TTL).

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{TestApp, expect_error, temp_dir};

/// Two nodes on one control plane.
async fn two_nodes(cors: &str) -> (TestApp, TestApp) {
    let cors = cors.to_owned();
    let a = TestApp::spawn_with(|c| c.cors_origins = cors).await;
    let mut config = a.config.clone();
    config.data_dir = temp_dir("fbt-node-b");
    let b = TestApp::start(config).await;
    (a, b)
}

/// Polls `f` until it is true, for at most 3 s (a node that only waits for
/// its cache's 10 s TTL fails).
async fn soon<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = Instant::now() + Duration::from_secs(3);
    loop {
        if f().await {
            return;
        }
        assert!(Instant::now() < end, "not within 3 s: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `Access-Control-Allow-Origin` of a preflight for `POST url` from `origin`.
async fn preflight(t: &TestApp, url: &str, origin: &str) -> Option<String> {
    let resp = t
        .http
        .request(Method::OPTIONS, url)
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "apikey,content-type")
        .send()
        .await
        .expect("preflight");
    assert!(resp.status().is_success(), "preflight {}", resp.status());
    resp.headers()
        .get("access-control-allow-origin")
        .map(|v| v.to_str().unwrap_or_default().to_owned())
}

/// A simple `GET` from `origin` with the key: its status and `Access-Control-Allow-Origin`.
async fn simple(t: &TestApp, url: &str, key: &str, origin: &str) -> (StatusCode, Option<String>) {
    let resp = t
        .http
        .get(url)
        .header("origin", origin)
        .header("apikey", key)
        .send()
        .await
        .expect("get");
    let acao = resp
        .headers()
        .get("access-control-allow-origin")
        .map(|v| v.to_str().unwrap_or_default().to_owned());
    (resp.status(), acao)
}

async fn patch(t: &TestApp, r: &str, body: Value) -> reqwest::Response {
    t.admin(Method::PATCH, &format!("/platform/v1/projects/{r}"))
        .json(&body)
        .send()
        .await
        .expect("patch")
}

#[tokio::test]
async fn per_project_cors_origins_hold_on_every_node() {
    let (a, b) = two_nodes("https://global.example").await;
    let p = a.create_project("cors-app").await;
    let rest_b = format!("{}/p/cors-app/rest/v1/", b.url);
    let auth_b = format!("{}/p/cors-app/auth/v1/settings", b.url);

    // No project list: the server-wide one applies, on both nodes (this also
    // puts the project in node B's cache).
    for t in [&a, &b] {
        let url = format!("{}/p/cors-app/rest/v1/", t.url);
        assert_eq!(
            preflight(t, &url, "https://global.example")
                .await
                .as_deref(),
            Some("https://global.example")
        );
        assert_eq!(preflight(t, &url, "https://app.example").await, None);
    }
    let (status, acao) = simple(&b, &auth_b, &p.anon, "https://global.example").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(acao.as_deref(), Some("https://global.example"));

    // Set the project's own list on node A (normalised in the answer).
    let resp = patch(
        &a,
        "cors-app",
        json!({"cors_origins": ["https://App.example/", "https://*.preview.example"]}),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let details: Value = resp.json().await.expect("json");
    assert_eq!(
        details["cors_origins"],
        json!(["https://app.example", "https://*.preview.example"])
    );

    // Node B applies it at once: the listed origins are allowed, the
    // server-wide one no longer is, for preflights and simple requests.
    soon("node B allows the project's origin", || async {
        preflight(&b, &rest_b, "https://app.example")
            .await
            .as_deref()
            == Some("https://app.example")
    })
    .await;
    assert_eq!(
        preflight(&b, &rest_b, "https://pr-12.preview.example")
            .await
            .as_deref(),
        Some("https://pr-12.preview.example")
    );
    for refused in [
        "https://global.example",
        "https://evil.example",
        "https://app.example.evil.example",
        "https://a.b.preview.example",
        "null",
    ] {
        assert_eq!(preflight(&b, &rest_b, refused).await, None, "{refused}");
        // The request itself is answered; without the header the browser
        // keeps the answer from the calling page.
        let (_, acao) = simple(&b, &auth_b, &p.anon, refused).await;
        assert_eq!(acao, None, "{refused}");
    }
    let (status, acao) = simple(&b, &auth_b, &p.anon, "https://app.example").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(acao.as_deref(), Some("https://app.example"));

    // Platform routes keep the server-wide list.
    let platform = format!("{}/platform/v1/projects", b.url);
    assert_eq!(preflight(&b, &platform, "https://app.example").await, None);
    assert_eq!(
        preflight(&b, &platform, "https://global.example")
            .await
            .as_deref(),
        Some("https://global.example")
    );

    // Another project on the same node is not affected.
    b.create_project("cors-other").await;
    let other = format!("{}/p/cors-other/rest/v1/", b.url);
    assert_eq!(preflight(&b, &other, "https://app.example").await, None);
    assert_eq!(
        preflight(&b, &other, "https://global.example")
            .await
            .as_deref(),
        Some("https://global.example")
    );

    // `[]` allows no other origin at all; `null` goes back to the server-wide list.
    assert_eq!(
        patch(&a, "cors-app", json!({"cors_origins": []}))
            .await
            .status(),
        StatusCode::OK
    );
    soon("node B refuses every origin", || async {
        preflight(&b, &rest_b, "https://app.example")
            .await
            .is_none()
    })
    .await;
    assert_eq!(preflight(&b, &rest_b, "https://global.example").await, None);
    let resp = patch(&a, "cors-app", json!({"cors_origins": null})).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.json::<Value>().await.expect("json")["cors_origins"],
        Value::Null
    );
    soon("node B is back on the server-wide list", || async {
        preflight(&b, &rest_b, "https://global.example")
            .await
            .as_deref()
            == Some("https://global.example")
    })
    .await;
    // `*` allows any origin (echoed).
    patch(&a, "cors-app", json!({"cors_origins": ["*"]})).await;
    soon("node B allows any origin", || async {
        preflight(&b, &rest_b, "https://anything.example")
            .await
            .as_deref()
            == Some("https://anything.example")
    })
    .await;
    // Leaving the field out leaves it as it is.
    let resp = patch(&a, "cors-app", json!({"name": "Renamed"})).await;
    assert_eq!(
        resp.json::<Value>().await.expect("json")["cors_origins"],
        json!(["*"])
    );
}

#[tokio::test]
async fn bad_cors_settings_are_refused() {
    let t = TestApp::spawn().await;
    t.create_project("cors-bad").await;
    let too_many: Vec<String> = (0..101).map(|i| format!("https://a{i}.example")).collect();
    for bad in [
        json!(["null"]),
        json!(["example.com"]),
        json!(["https://*.com"]),
        json!(["*", "https://a.example"]),
        json!(["https://a.example/path"]),
        json!(["javascript:alert(1)"]),
        json!(["https://a.example', 'x"]),
        json!([format!("https://{}.example", "a".repeat(300))]),
        json!(too_many),
    ] {
        expect_error(
            patch(&t, "cors-bad", json!({ "cors_origins": bad })).await,
            400,
            "invalid_settings",
        )
        .await;
    }
    // Not a list, or a list of something else: refused by the body parser.
    for bad in [json!("https://a.example"), json!([1, 2]), json!({"a": 1})] {
        let resp = patch(&t, "cors-bad", json!({ "cors_origins": bad })).await;
        assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        let body: Value = resp.json().await.expect("the JSON envelope");
        assert!(
            body["code"].is_string() && body["message"].is_string(),
            "{body}"
        );
    }
    // Nothing was stored.
    let got: Value = t
        .admin(Method::GET, "/platform/v1/projects/cors-bad")
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(got["cors_origins"], Value::Null);
    // Only platform admins may change it.
    let resp = t
        .http
        .patch(format!("{}/platform/v1/projects/cors-bad", t.url))
        .json(&json!({"cors_origins": ["*"]}))
        .send()
        .await
        .expect("patch");
    expect_error(resp, 401, "missing_token").await;
}

fn hs256(secret: &str, claims: Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("encode")
}

/// Status of `GET /auth/v1/settings` on node `t` with `key` as the apikey.
async fn rest_status(t: &TestApp, r: &str, key: &str) -> StatusCode {
    t.http
        .get(format!("{}/p/{r}/auth/v1/settings", t.url))
        .header("apikey", key)
        .send()
        .await
        .expect("get")
        .status()
}

/// Status of reading the data API as the token's role.
async fn data_status(t: &TestApp, r: &str, token: &str) -> StatusCode {
    t.http
        .get(format!("{}/p/{r}/rest/v1/notes?select=id", t.url))
        .bearer_auth(token)
        .send()
        .await
        .expect("get")
        .status()
}

#[tokio::test]
async fn rotating_keys_retires_the_old_ones_on_every_node() {
    let (a, b) = two_nodes("*").await;
    let p = a.create_project("rotate-app").await;
    a.owner_sql(
        &p,
        "create table notes (id int primary key); insert into notes values (1);",
    )
    .await;
    let old_legacy = "an-old-legacy-secret-of-at-least-32-characters";
    assert_eq!(
        patch(&a, "rotate-app", json!({"legacy_jwt_secret": old_legacy}))
            .await
            .status(),
        StatusCode::OK
    );
    let exp = ferrobase_server::crypto::unix_now() + 600;
    let old_legacy_token = hs256(old_legacy, json!({"role": "service_role", "exp": exp}));
    // A signed-in user: their access token is signed with the project key.
    let auth = |t: &TestApp, path: &str| {
        t.http
            .post(format!("{}/p/rotate-app/auth/v1{path}", t.url))
            .header("apikey", &p.service)
            .bearer_auth(&p.service)
    };
    let resp = auth(&a, "/admin/users")
        .json(&json!({"email": "rot@example.com", "password": "rotation-pass-1", "email_confirm": true}))
        .send()
        .await
        .expect("create user");
    assert_eq!(resp.status(), StatusCode::OK);
    let session: Value = a
        .http
        .post(format!(
            "{}/p/rotate-app/auth/v1/token?grant_type=password",
            a.url
        ))
        .header("apikey", &p.anon)
        .json(&json!({"email": "rot@example.com", "password": "rotation-pass-1"}))
        .send()
        .await
        .expect("sign in")
        .json()
        .await
        .expect("json");
    let access = session["access_token"].as_str().expect("access").to_owned();
    let refresh = session["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_owned();

    // Everything works on both nodes (and is cached there).
    for t in [&a, &b] {
        assert_eq!(rest_status(t, "rotate-app", &p.anon).await, StatusCode::OK);
        assert_eq!(
            data_status(t, "rotate-app", &p.service).await,
            StatusCode::OK
        );
        assert_eq!(
            data_status(t, "rotate-app", &old_legacy_token).await,
            StatusCode::OK
        );
        assert_eq!(data_status(t, "rotate-app", &access).await, StatusCode::OK);
    }

    // Attackers: no token, a bad ref, an unknown project.
    let resp = a
        .http
        .post(format!(
            "{}/platform/v1/projects/rotate-app/keys/rotate",
            a.url
        ))
        .send()
        .await
        .expect("rotate");
    expect_error(resp, 401, "missing_token").await;
    let resp = a
        .http
        .post(format!(
            "{}/platform/v1/projects/rotate-app/keys/rotate",
            a.url
        ))
        .bearer_auth(&p.service)
        .send()
        .await
        .expect("rotate");
    expect_error(resp, 401, "invalid_token").await;
    for r in ["no-such-project", "BAD_REF", "a"] {
        let resp = a
            .admin(
                Method::POST,
                &format!("/platform/v1/projects/{r}/keys/rotate"),
            )
            .send()
            .await
            .expect("rotate");
        expect_error(resp, 404, "project_not_found").await;
    }

    // Rotate on node A: new keys, shown in an answer that is not cached.
    let resp = a
        .admin(Method::POST, "/platform/v1/projects/rotate-app/keys/rotate")
        .send()
        .await
        .expect("rotate");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let keys: Value = resp.json().await.expect("json");
    let anon = keys["anon_key"].as_str().expect("anon").to_owned();
    let service = keys["service_role_key"]
        .as_str()
        .expect("service")
        .to_owned();
    let legacy = keys["legacy_jwt_secret"]
        .as_str()
        .expect("legacy")
        .to_owned();
    assert!(anon != p.anon && service != p.service);
    assert_eq!(legacy.len(), 64, "256 random bits as hex");
    assert!(legacy.bytes().all(|c| c.is_ascii_hexdigit()));
    let new_legacy_token = hs256(&legacy, json!({"role": "service_role", "exp": exp}));

    // Node B: the old keys and tokens stop working at once, the new ones work.
    soon("node B refuses the old anon key", || async {
        rest_status(&b, "rotate-app", &p.anon).await == StatusCode::UNAUTHORIZED
    })
    .await;
    for t in [&a, &b] {
        assert_eq!(
            rest_status(t, "rotate-app", &p.anon).await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            data_status(t, "rotate-app", &p.service).await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            data_status(t, "rotate-app", &old_legacy_token).await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            data_status(t, "rotate-app", &access).await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(rest_status(t, "rotate-app", &anon).await, StatusCode::OK);
        assert_eq!(data_status(t, "rotate-app", &service).await, StatusCode::OK);
        assert_eq!(
            data_status(t, "rotate-app", &new_legacy_token).await,
            StatusCode::OK
        );
    }
    // The user keeps the session: the refresh token gives a token that works.
    let refreshed: Value = b
        .http
        .post(format!(
            "{}/p/rotate-app/auth/v1/token?grant_type=refresh_token",
            b.url
        ))
        .header("apikey", &anon)
        .json(&json!({"refresh_token": refresh}))
        .send()
        .await
        .expect("refresh")
        .json()
        .await
        .expect("json");
    let new_access = refreshed["access_token"]
        .as_str()
        .expect("new access token");
    assert_eq!(
        data_status(&b, "rotate-app", new_access).await,
        StatusCode::OK
    );

    // The project shows the new API keys; the JWKS lists only the new key.
    let details: Value = b
        .admin(Method::GET, "/platform/v1/projects/rotate-app")
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(details["anon_key"], anon);
    assert_eq!(details["service_role_key"], service);
    assert!(
        !details.to_string().contains(&legacy),
        "the legacy secret is write-only"
    );
    let jwks: Value = b
        .http
        .get(format!(
            "{}/p/rotate-app/auth/v1/.well-known/jwks.json",
            b.url
        ))
        .send()
        .await
        .expect("jwks")
        .json()
        .await
        .expect("json");
    assert_eq!(jwks["keys"].as_array().map(Vec::len), Some(1), "{jwks}");

    // The audit log records the rotation, never a secret.
    let audit = a
        .admin(
            Method::GET,
            "/platform/v1/logs/audit?action=project.rotate_keys",
        )
        .send()
        .await
        .expect("audit")
        .text()
        .await
        .expect("text");
    assert!(audit.contains("project.rotate_keys"), "{audit}");
    for secret in [&anon, &service, &legacy] {
        assert!(
            !audit.contains(secret.as_str()),
            "a secret in the audit log"
        );
    }

    // Without a legacy secret, none is made.
    patch(&a, "rotate-app", json!({"legacy_jwt_secret": ""})).await;
    let keys: Value = a
        .admin(Method::POST, "/platform/v1/projects/rotate-app/keys/rotate")
        .send()
        .await
        .expect("rotate")
        .json()
        .await
        .expect("json");
    assert_eq!(keys["legacy_jwt_secret"], Value::Null);
    let newest = keys["anon_key"].as_str().expect("anon");
    soon("node B takes the newest anon key", || async {
        rest_status(&b, "rotate-app", newest).await == StatusCode::OK
    })
    .await;
    assert_eq!(
        rest_status(&b, "rotate-app", &anon).await,
        StatusCode::UNAUTHORIZED
    );
}
