//! TUS resumable uploads (`/storage/v1/upload/resumable`) on both backends:
//! creation (with and without data), HEAD offsets, PATCH chunks, offset
//! conflicts, termination, expiry and reaping, and access checks.

use std::time::Duration;

use base64::Engine as _;
use reqwest::Method;
use serde_json::json;
use uuid::Uuid;

use super::{Backend, Env, Moto, bytes};
use crate::support::expect_error;

fn meta(bucket: &str, name: &str, mime: &str) -> String {
    let b = base64::engine::general_purpose::STANDARD;
    format!(
        "bucketName {},objectName {},contentType {},cacheControl {}",
        b.encode(bucket),
        b.encode(name),
        b.encode(mime),
        b.encode("3600")
    )
}

async fn create(env: &Env, key: &str, name: &str, len: usize) -> reqwest::Response {
    env.http
        .post(env.url("/upload/resumable"))
        .bearer_auth(key)
        .header("tus-resumable", "1.0.0")
        .header("upload-length", len.to_string())
        .header(
            "upload-metadata",
            meta("b", name, "application/octet-stream"),
        )
        .send()
        .await
        .unwrap()
}

async fn patch(
    env: &Env,
    key: &str,
    location: &str,
    offset: usize,
    chunk: &[u8],
) -> reqwest::Response {
    env.http
        .patch(location)
        .bearer_auth(key)
        .header("tus-resumable", "1.0.0")
        .header("upload-offset", offset.to_string())
        .header("content-type", "application/offset+octet-stream")
        .body(chunk.to_vec())
        .send()
        .await
        .unwrap()
}

async fn head(env: &Env, key: &str, location: &str) -> reqwest::Response {
    env.http
        .head(location)
        .bearer_auth(key)
        .header("tus-resumable", "1.0.0")
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn resumable_uploads_on_local_disk() {
    let env = Env::new(Backend::Local).await;
    resumable(&env).await;
}

#[tokio::test]
async fn resumable_uploads_on_s3() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let env = Env::new(Backend::S3(moto)).await;
    resumable(&env).await;
}

async fn resumable(env: &Env) {
    env.bucket(json!({"name": "b"})).await;
    let key = env.p.service.clone();
    // (OPTIONS is answered by the CORS layer as a preflight; tus clients do not need it.)

    let data = bytes(13 * 1024 * 1024 + 5, 3);
    let resp = create(env, &key, "videos/movie.bin", data.len()).await;
    assert_eq!(resp.status(), 201);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.contains("/storage/v1/upload/resumable/"),
        "{location}"
    );
    let chunk = 6 * 1024 * 1024;
    let resp = patch(env, &key, &location, 0, &data[..chunk]).await;
    assert_eq!(resp.status(), 204);
    assert_eq!(resp.headers()["upload-offset"], chunk.to_string().as_str());
    // Wrong offset: conflict; the upload is unchanged.
    let resp = patch(env, &key, &location, 0, &data[..10]).await;
    assert_eq!(resp.status(), 409);
    let resp = head(env, &key, &location).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["upload-offset"], chunk.to_string().as_str());
    assert_eq!(
        resp.headers()["upload-length"],
        data.len().to_string().as_str()
    );
    // Another caller cannot see or continue it.
    let stranger = env.user_token(Uuid::new_v4()).await;
    assert_eq!(head(env, &stranger, &location).await.status(), 404);
    assert_eq!(
        patch(env, &stranger, &location, chunk, &data[chunk..])
            .await
            .status(),
        404
    );
    // Wrong content type.
    let resp = env
        .http
        .patch(&location)
        .bearer_auth(&key)
        .header("tus-resumable", "1.0.0")
        .header("upload-offset", chunk.to_string())
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);
    // Past the declared length.
    let mut too_much = data[chunk..].to_vec();
    too_much.extend_from_slice(b"extra");
    assert_eq!(
        patch(env, &key, &location, chunk, &too_much).await.status(),
        400
    );
    // Not visible as an object until complete.
    assert_eq!(env.rows().await, 0);
    let resp = patch(env, &key, &location, chunk, &data[chunk..2 * chunk]).await;
    assert_eq!(resp.status(), 204);
    let resp = patch(env, &key, &location, 2 * chunk, &data[2 * chunk..]).await;
    assert_eq!(resp.status(), 204);
    assert_eq!(
        resp.headers()["upload-offset"],
        data.len().to_string().as_str()
    );
    let got = env
        .service(Method::GET, "/object/b/videos/movie.bin")
        .send()
        .await
        .unwrap();
    assert_eq!(got.headers()["cache-control"], "max-age=3600");
    assert!(got.bytes().await.unwrap().as_ref() == data.as_slice());
    assert_eq!(
        head(env, &key, &location).await.status(),
        404,
        "finished uploads are forgotten"
    );
    assert_eq!(
        env.keys().await.len(),
        1,
        "parts deleted: {:?}",
        env.keys().await
    );

    // Creation with upload (tus-js-client's uploadDataDuringCreation).
    let resp = env
        .http
        .post(env.url("/upload/resumable"))
        .bearer_auth(&key)
        .header("tus-resumable", "1.0.0")
        .header("upload-length", "5")
        .header("upload-metadata", meta("b", "small.txt", "text/plain"))
        .header("content-type", "application/offset+octet-stream")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.headers()["upload-offset"], "5");
    let got = env
        .service(Method::GET, "/object/b/small.txt")
        .send()
        .await
        .unwrap();
    assert_eq!(got.text().await.unwrap(), "hello");
    // Existing object without x-upsert: refused at creation.
    assert_eq!(create(env, &key, "small.txt", 3).await.status(), 409);

    // Termination.
    let resp = create(env, &key, "gone.bin", 100).await;
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(patch(env, &key, &location, 0, &[1; 50]).await.status(), 204);
    let resp = env
        .http
        .delete(&location)
        .bearer_auth(&key)
        .header("tus-resumable", "1.0.0")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(head(env, &key, &location).await.status(), 404);
    assert_eq!(env.keys().await.len(), 2, "{:?}", env.keys().await);
    assert_eq!(env.rows().await, 2);
}

#[tokio::test]
async fn resumable_access_limits_and_expiry() {
    let env = Env::with(Backend::Local, |c| {
        c.storage.storage_resumable_expiry_secs = 1
    })
    .await;
    env.bucket(json!({"name": "b", "file_size_limit": 1000, "allowed_mime_types": ["image/*"]}))
        .await;
    // RLS: anon has no insert policy.
    let resp = env
        .http
        .post(env.url("/upload/resumable"))
        .bearer_auth(&env.p.anon)
        .header("tus-resumable", "1.0.0")
        .header("upload-length", "10")
        .header("upload-metadata", meta("b", "a.png", "image/png"))
        .send()
        .await
        .unwrap();
    expect_error(resp, 403, "AccessDenied").await;
    let service = env.p.service.clone();
    let post = |len: &str, m: String| {
        env.http
            .post(env.url("/upload/resumable"))
            .bearer_auth(&service)
            .header("tus-resumable", "1.0.0")
            .header("upload-length", len.to_owned())
            .header("upload-metadata", m)
            .send()
    };
    assert_eq!(
        post("5000", meta("b", "a.png", "image/png"))
            .await
            .unwrap()
            .status(),
        413
    );
    assert_eq!(
        post("10", meta("b", "a.txt", "text/plain"))
            .await
            .unwrap()
            .status(),
        415
    );
    assert_eq!(
        post("10", meta("b", "../a.png", "image/png"))
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(
        post("-1", meta("b", "a.png", "image/png"))
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(
        post("10", "bucketName !!!".into()).await.unwrap().status(),
        400
    );
    assert_eq!(
        post("10", meta("nope", "a.png", "image/png"))
            .await
            .unwrap()
            .status(),
        404
    );

    let resp = post("10", meta("b", "a.png", "image/png")).await.unwrap();
    assert_eq!(resp.status(), 201);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(
        patch(&env, &service, &location, 0, &[7; 4]).await.status(),
        204
    );
    assert_eq!(env.keys().await.len(), 1, "one part stored");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        head(&env, &service, &location).await.status(),
        404,
        "expired"
    );
    // The reaper removes the expired upload and its parts.
    let storage = ferrobase_server::storage::Storage::from_config(&env.t.config).unwrap();
    let cfg: tokio_postgres::Config = env.p.db_url.parse().unwrap();
    let client = ferrobase_server::db::connect(&cfg).await.unwrap();
    let reaped = storage.reap(&client, env.project_id).await.unwrap();
    assert_eq!(reaped, 1);
    assert!(env.keys().await.is_empty(), "{:?}", env.keys().await);
}
