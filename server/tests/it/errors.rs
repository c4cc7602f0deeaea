//! Bad input never gets a 500: malformed JSON, oversized bodies, and every
//! flavour of bad token get a 4xx in the JSON envelope.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ferrobase_server::crypto::{SigningKey, unix_now};
use ferrobase_server::platform::projects;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{TestApp, TestProject, expect_error};

#[tokio::test]
async fn malformed_and_oversized_bodies() {
    let t = TestApp::spawn_with(|c| c.max_body_bytes = 4096).await;
    let post = |body: Vec<u8>, ct: &'static str| {
        t.admin(Method::POST, "/platform/v1/projects")
            .header("content-type", ct)
            .body(body)
            .send()
    };
    expect_error(
        post(b"{\"ref\": ".to_vec(), "application/json")
            .await
            .unwrap(),
        400,
        "invalid_json",
    )
    .await;
    expect_error(
        post(b"ref=abc".to_vec(), "application/x-www-form-urlencoded")
            .await
            .unwrap(),
        415,
        "unsupported_media_type",
    )
    .await;
    expect_error(
        post(b"{\"name\": \"no ref\"}".to_vec(), "application/json")
            .await
            .unwrap(),
        422,
        "invalid_body",
    )
    .await;
    let big = format!("{{\"ref\": \"big\", \"name\": \"{}\"}}", "x".repeat(10_000)).into_bytes();
    expect_error(
        post(big, "application/json").await.unwrap(),
        413,
        "payload_too_large",
    )
    .await;
    let list: Vec<Value> = t
        .admin(Method::GET, "/platform/v1/projects")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(list.is_empty(), "nothing was created by bad requests");
}

/// Sends `token` to an authenticated project endpoint.
async fn call(
    t: &TestApp,
    p: &TestProject,
    apikey: Option<&str>,
    bearer: Option<&str>,
) -> reqwest::Response {
    let mut req = t.http.get(format!("{}/rest/v1/", p.url));
    if let Some(k) = apikey {
        req = req.header("apikey", k);
    }
    if let Some(b) = bearer {
        req = req.header("authorization", format!("Bearer {b}"));
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn missing_garbled_expired_and_forged_tokens_are_401() {
    let t = TestApp::spawn().await;
    let p = t.create_project("tokens").await;
    assert_eq!(
        call(&t, &p, Some(&p.anon), None).await.status(),
        200,
        "the anon key works"
    );

    expect_error(call(&t, &p, None, None).await, 401, "missing_api_key").await;
    expect_error(
        call(&t, &p, Some("garbage"), None).await,
        401,
        "invalid_token",
    )
    .await;
    expect_error(
        call(&t, &p, Some(&p.anon), Some("a.b.c")).await,
        401,
        "invalid_token",
    )
    .await;
    let resp = t
        .http
        .get(format!("{}/rest/v1/", p.url))
        .header("authorization", "Basic dXNlcjpwdw==")
        .send()
        .await
        .unwrap();
    expect_error(resp, 401, "invalid_token").await;

    // Signed by the project's own key, but expired / for another project / with a role that is not allowed.
    let loaded = projects::load(&t.app.platform, "tokens")
        .await
        .unwrap()
        .unwrap();
    let key = &loaded.keys[0];
    let expired = key
        .sign(&json!({"ref": "tokens", "role": "anon", "exp": unix_now() - 120}))
        .unwrap();
    expect_error(
        call(&t, &p, Some(&expired), None).await,
        401,
        "token_expired",
    )
    .await;
    let wrong_ref = key
        .sign(&json!({"ref": "other", "role": "anon", "exp": unix_now() + 60}))
        .unwrap();
    expect_error(
        call(&t, &p, Some(&wrong_ref), None).await,
        401,
        "invalid_token",
    )
    .await;
    let superuser = key
        .sign(&json!({"ref": "tokens", "role": "postgres", "exp": unix_now() + 60}))
        .unwrap();
    expect_error(
        call(&t, &p, Some(&superuser), None).await,
        401,
        "invalid_token",
    )
    .await;

    // Forged: another key (same kid, so only the signature differs), alg none, HS256 with the public key.
    let forged_key =
        SigningKey::from_pkcs8(key.kid().into(), SigningKey::generate().unwrap().pkcs8()).unwrap();
    let forged = forged_key
        .sign(&json!({"ref": "tokens", "role": "service_role", "exp": unix_now() + 60}))
        .unwrap();
    expect_error(
        call(&t, &p, Some(&forged), None).await,
        401,
        "invalid_token",
    )
    .await;
    let enc = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let claims = enc(json!({"ref": "tokens", "role": "service_role", "exp": unix_now() + 60}));
    let none = format!(
        "{}.{claims}.",
        enc(json!({"alg": "none", "typ": "JWT", "kid": key.kid()}))
    );
    expect_error(call(&t, &p, Some(&none), None).await, 401, "invalid_token").await;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(key.kid().into());
    let public = serde_json::to_vec(key.public_jwk()).unwrap();
    let hs = jsonwebtoken::encode(
        &header,
        &json!({"ref": "tokens", "role": "service_role", "exp": unix_now() + 60}),
        &jsonwebtoken::EncodingKey::from_secret(&public),
    )
    .unwrap();
    expect_error(
        call(&t, &p, Some(&p.anon), Some(&hs)).await,
        401,
        "invalid_token",
    )
    .await;
}
