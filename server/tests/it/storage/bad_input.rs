//! Bad input gets a clear 4xx and writes nothing: path traversal (plain,
//! encoded, double-encoded, absolute, backslashes, NUL), invalid bucket
//! names, malformed bodies, truncated uploads, expired or forged signed URLs.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Backend, Env};
use crate::support::expect_error;

/// Sends one raw HTTP/1.1 request (so no client normalises `..` away) and
/// returns the status and body.
async fn raw(env: &Env, head: &str, body: &[u8], close_early: bool) -> (u16, String) {
    let addr = env.t.url.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    if close_early {
        // Half-close: the server sees the body end before Content-Length.
        stream.shutdown().await.unwrap();
    }
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

fn upload_head(env: &Env, target: &str, len: usize) -> String {
    let r = env.project_ref();
    format!(
        "POST /p/{r}/storage/v1{target} HTTP/1.1\r\nHost: x\r\napikey: {k}\r\nAuthorization: Bearer {k}\r\n\
         Content-Type: text/plain\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n",
        k = env.p.service
    )
}

#[tokio::test]
async fn traversal_and_bad_names_are_refused_and_write_nothing() {
    let env = Env::new(Backend::Local).await;
    env.bucket(json!({"name": "b"})).await;
    for target in [
        "/object/b/../x",
        "/object/b/../../etc/passwd",
        "/object/b/a/../../x",
        "/object/b/%2e%2e/x",
        "/object/b/%2E%2E%2Fx",
        "/object/b/..%2F..%2Fetc%2Fpasswd",
        "/object/b/%252e%252e/x",
        "/object/b/%252e%252e%252fx",
        "/object/b//etc/passwd",
        "/object/b/%2Fetc%2Fpasswd",
        "/object/b/..%5Cwin",
        "/object/b/a%5Cb",
        "/object/b/a%00b",
        "/object/b/a%2500b",
        "/object/b/a%0Ab",
        "/object/b/a//b",
        "/object/b/a/./b",
        "/object/b/%FF%FE",
    ] {
        let (status, text) = raw(&env, &upload_head(&env, target, 4), b"evil", false).await;
        assert_eq!(status, 400, "{target}: {text}");
        assert!(text.contains("\"statusCode\":\"400\""), "{target}: {text}");
    }
    let too_long = format!("/object/b/{}", "x".repeat(1100));
    let (status, _) = raw(&env, &upload_head(&env, &too_long, 4), b"evil", false).await;
    assert_eq!(status, 400);
    // The same names in JSON bodies and TUS metadata.
    for bad in ["../x", "/abs", "a\\b", "a\u{0}b", "%2e%2e/x", "a//b"] {
        let resp = env
            .service(Method::POST, "/object/move")
            .json(&json!({"bucketId": "b", "sourceKey": "x", "destinationKey": bad}))
            .send()
            .await
            .unwrap();
        expect_error(resp, 400, "InvalidKey").await;
        let resp = env
            .service(Method::DELETE, "/object/b")
            .json(&json!({"prefixes": [bad]}))
            .send()
            .await
            .unwrap();
        expect_error(resp, 400, "InvalidKey").await;
        // A list prefix may start with '/' (clients send "/folder"); the rest is refused.
        let resp = env
            .service(Method::POST, "/object/list/b")
            .json(&json!({"prefix": bad}))
            .send()
            .await
            .unwrap();
        let expected = if bad == "/abs" { 200 } else { 400 };
        assert_eq!(resp.status(), expected, "list prefix {bad:?}");
    }
    assert_eq!(env.rows().await, 0);
    assert!(env.keys().await.is_empty(), "{:?}", env.keys().await);
    // Nothing escaped the storage directory either.
    assert!(!env.t.config.data_dir.join("x").exists());
}

#[tokio::test]
async fn invalid_buckets_and_bodies_are_4xx() {
    let env = Env::new(Backend::Local).await;
    for name in [
        "",
        "a/b",
        ".hidden",
        "list",
        "sign",
        "has space",
        "é",
        &"b".repeat(101),
    ] {
        let resp = env
            .service(Method::POST, "/bucket")
            .json(&json!({"name": name}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "bucket {name:?}");
    }
    let bad_bodies: [(&str, Value); 4] = [
        ("/bucket", json!({"name": "x", "file_size_limit": "lots"})),
        ("/bucket", json!({"name": "x", "file_size_limit": -1})),
        (
            "/bucket",
            json!({"name": "x", "allowed_mime_types": ["not a mime"]}),
        ),
        ("/bucket", json!({"name": "x", "public": "yes"})),
    ];
    for (path, body) in bad_bodies {
        let resp = env
            .service(Method::POST, path)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_client_error(), "{body}: {}", resp.status());
    }
    // JSON bodies keep the router-wide limit (1 MiB in tests); uploads do not.
    let resp = env
        .service(Method::POST, "/object/list/b")
        .header("content-type", "application/json")
        .body(format!(
            "{{\"prefix\": \"{}\"}}",
            "x".repeat(2 * 1024 * 1024)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    let resp = env
        .service(Method::POST, "/bucket")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    expect_error(resp, 400, "invalid_json").await;
    env.bucket(json!({"name": "b"})).await;
    let resp = env
        .service(Method::POST, "/object/b/x.txt")
        .header("content-type", "multipart/form-data; boundary=zzz")
        .body("--zzz\r\nContent-Disposition: form-data; name=\"\"; filename=\"x\"\r\n\r\nunterminated")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = env
        .service(Method::POST, "/object/b/x.txt")
        .header("x-metadata", "not base64!")
        .body("x")
        .send()
        .await
        .unwrap();
    expect_error(resp, 400, "InvalidRequest").await;
    let resp = env
        .service(Method::POST, "/object/sign/b/x.txt")
        .json(&json!({"expiresIn": -5}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(env.rows().await, 0);
    assert!(env.keys().await.is_empty());
}

#[tokio::test]
async fn truncated_uploads_leave_no_row_and_no_bytes() {
    let env = Env::new(Backend::Local).await;
    env.bucket(json!({"name": "b"})).await;
    // Small (single PUT path) and large (multipart path) truncations.
    for (declared, sent) in [
        (1000usize, 10usize),
        (20 * 1024 * 1024, 9 * 1024 * 1024 + 7),
    ] {
        let body = vec![b'x'; sent];
        let (status, text) = raw(
            &env,
            &upload_head(&env, "/object/b/cut.bin", declared),
            &body,
            true,
        )
        .await;
        assert!(
            status == 400 || status == 0,
            "truncated upload: {status} {text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(env.rows().await, 0);
        assert!(env.keys().await.is_empty(), "{:?}", env.keys().await);
    }
    // The name is still free and works.
    assert_eq!(
        env.put(&env.p.service, "b", "cut.bin", b"whole", "text/plain")
            .await,
        200
    );
}

#[tokio::test]
async fn expired_forged_and_misused_signed_urls_are_refused() {
    let env = Env::new(Backend::Local).await;
    env.bucket(json!({"name": "b"})).await;
    assert_eq!(
        env.put(&env.p.service, "b", "secret.txt", b"s", "text/plain")
            .await,
        200
    );
    let r = env.project_ref();
    let now = chrono::Utc::now().timestamp();
    let expired = env
        .sign(&json!({"url": "b/secret.txt", "typ": "storage.sign", "ref": r, "exp": now - 120}))
        .await;
    let resp = env
        .http
        .get(env.url(&format!("/object/sign/b/secret.txt?token={expired}")))
        .send()
        .await
        .unwrap();
    let body = expect_error(resp, 400, "InvalidSignature").await;
    assert!(
        body["message"].as_str().unwrap().contains("expired"),
        "{body}"
    );

    let valid = env
        .sign(&json!({"url": "b/secret.txt", "typ": "storage.sign", "ref": r, "exp": now + 120}))
        .await;
    // Tampered payload (claims another object), same signature.
    let mut parts: Vec<String> = valid.split('.').map(str::to_owned).collect();
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    parts[1] = b64.encode(
        json!({"url": "b/other.txt", "typ": "storage.sign", "ref": r, "exp": now + 120})
            .to_string(),
    );
    let tampered = parts.join(".");
    // Another project's key.
    let other = env.t.create_project("st-other").await;
    let foreign_key = ferrobase_server::platform::projects::load(&env.t.app.platform, "st-other")
        .await
        .unwrap()
        .unwrap()
        .keys[0]
        .sign(&json!({"url": "b/secret.txt", "typ": "storage.sign", "ref": r, "exp": now + 120}))
        .unwrap();
    for token in [
        tampered.as_str(),
        foreign_key.as_str(),
        "garbage",
        env.p.anon.as_str(),
        other.service.as_str(),
    ] {
        let resp = env
            .http
            .get(env.url(&format!("/object/sign/b/secret.txt?token={token}")))
            .send()
            .await
            .unwrap();
        expect_error(resp, 400, "InvalidSignature").await;
    }
    let resp = env
        .http
        .get(env.url("/object/sign/b/secret.txt"))
        .send()
        .await
        .unwrap();
    expect_error(resp, 400, "InvalidSignature").await;
    // A signed-URL token is not an API key.
    let resp = env
        .req(Method::GET, "/object/b/secret.txt", &valid)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    // An expired upload token writes nothing.
    let up = env
        .sign(&json!({"url": "b/new.txt", "typ": "storage.upload", "ref": r, "exp": now - 120, "upsert": false}))
        .await;
    let resp = env
        .http
        .put(env.url(&format!("/object/upload/sign/b/new.txt?token={up}")))
        .body("x")
        .send()
        .await
        .unwrap();
    expect_error(resp, 400, "InvalidSignature").await;
    assert_eq!(env.rows().await, 1);
    assert_eq!(env.keys().await.len(), 1);
}
