//! The per-project storage quota: uploads (declared or chunked), copies and
//! resumable uploads that would take a project past it are refused with 413
//! `QuotaExceeded` and leave no bytes behind; concurrent uploads cannot
//! squeeze past it together; deletes free room; the quota is set per
//! project by the platform admin (or the server default) and one project's
//! usage never counts against another's.

use futures_util::StreamExt as _;
use reqwest::Method;
use serde_json::{Value, json};

use super::{Backend, Env, bytes};
use crate::support::expect_error;

/// Sets the project's `storage_max_bytes` through the platform API.
async fn set_quota(env: &Env, quota: Value) -> reqwest::Response {
    env.t
        .admin(
            Method::PATCH,
            &format!("/platform/v1/projects/{}", env.project_ref()),
        )
        .json(&json!({ "storage_max_bytes": quota }))
        .send()
        .await
        .expect("patch project")
}

/// `GET /admin/v1/storage/usage` with `key`.
async fn usage_report(env: &Env, key: &str) -> reqwest::Response {
    env.http
        .get(format!("{}/admin/v1/storage/usage", env.p.url))
        .header("apikey", key)
        .bearer_auth(key)
        .send()
        .await
        .expect("usage report")
}

/// Creates a resumable upload of `len` bytes into `b`.
async fn resumable(env: &Env, name: &str, len: u64) -> reqwest::Response {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    env.http
        .post(env.url("/upload/resumable"))
        .bearer_auth(&env.p.service)
        .header("tus-resumable", "1.0.0")
        .header("upload-length", len.to_string())
        .header(
            "upload-metadata",
            format!("bucketName {},objectName {}", b64("b"), b64(name)),
        )
        .send()
        .await
        .expect("tus create")
}

/// Uploads with the service key and answers the response.
async fn upload(env: &Env, name: &str, body: Vec<u8>) -> reqwest::Response {
    env.service(Method::POST, &format!("/object/b/{name}"))
        .header("content-type", "application/octet-stream")
        .body(body)
        .send()
        .await
        .expect("upload")
}

/// Uploads a body of unknown length (chunked), in small pieces.
async fn upload_chunked(env: &Env, name: &str, body: Vec<u8>) -> reqwest::Response {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        body.chunks(1000).map(|c| Ok(c.to_vec())).collect();
    env.service(Method::POST, &format!("/object/b/{name}"))
        .header("content-type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .expect("chunked upload")
}

/// The usage the project database counts, and the sum of its object sizes.
async fn usage(env: &Env) -> (i64, i64) {
    let cfg: tokio_postgres::Config = env.p.db_url.parse().expect("db url");
    let client = ferrobase_server::db::connect(&cfg).await.expect("connect");
    let row = client
        .query_one(
            "select (select bytes from storage.usage), \
               (select coalesce(sum((metadata->>'size')::bigint), 0)::bigint from storage.objects)",
            &[],
        )
        .await
        .expect("usage");
    (row.get(0), row.get(1))
}

async fn refused(resp: reqwest::Response) {
    let body = expect_error(resp, 413, "QuotaExceeded").await;
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("10000 bytes")),
        "the message names the quota: {body}"
    );
}

#[tokio::test]
async fn the_quota_bounds_uploads_copies_and_resumable_uploads() {
    let env = Env::new(Backend::Local).await;
    env.bucket(json!({"name": "b"})).await;
    let resp = set_quota(&env, json!(10_000)).await;
    assert_eq!(resp.status(), 200);
    let project: Value = resp.json().await.expect("project");
    assert_eq!(project["storage_max_bytes"], 10_000);

    assert_eq!(upload(&env, "a", bytes(6000, 1)).await.status(), 200);
    // Declared too big for what is left: refused before any byte is written.
    refused(upload(&env, "big", bytes(5000, 2)).await).await;
    // Of unknown length: cut off once past what is left, nothing kept.
    refused(upload_chunked(&env, "big", bytes(5000, 3)).await).await;
    // A copy would double the bytes.
    let resp = env
        .service(Method::POST, "/object/copy")
        .json(&json!({"bucketId": "b", "sourceKey": "a", "destinationKey": "a2"}))
        .send()
        .await
        .expect("copy");
    refused(resp).await;
    // A resumable upload reserves its whole length when it is created.
    refused(resumable(&env, "r", 5000).await).await;
    assert_eq!(env.rows().await, 1, "only the first object has a row");
    assert_eq!(env.keys().await.len(), 1, "no refused bytes stay behind");
    let metrics = env.t.metrics().await;
    let refusals: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("ferrobase_storage_quota_refused_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    assert_eq!(refusals, 4.0, "each refusal is counted");

    // Exactly up to the quota fits; one byte more does not.
    assert_eq!(upload(&env, "c", bytes(4000, 4)).await.status(), 200);
    refused(upload(&env, "d", vec![1]).await).await;
    assert_eq!(usage(&env).await, (10_000, 10_000));
    // The admin report says the same, to the service role only.
    let report: Value = usage_report(&env, &env.p.service)
        .await
        .json()
        .await
        .expect("report");
    assert_eq!(
        report,
        json!({"used_bytes": 10_000, "reserved_bytes": 0, "quota_bytes": 10_000})
    );
    let resp = usage_report(&env, &env.p.anon).await;
    assert!(
        [401, 403].contains(&resp.status().as_u16()),
        "anon gets no report: {}",
        resp.status()
    );

    // A delete frees room.
    let resp = env
        .service(Method::DELETE, "/object/b/a")
        .send()
        .await
        .expect("delete");
    assert_eq!(resp.status(), 200);
    assert_eq!(usage(&env).await, (4000, 4000));
    assert_eq!(
        upload_chunked(&env, "e", bytes(5000, 5)).await.status(),
        200
    );

    // Lowered below what is stored: new bytes are refused, deletes still work.
    assert_eq!(usage(&env).await, (9000, 9000));
    assert_eq!(set_quota(&env, json!(8000)).await.status(), 200);
    let resp = upload(&env, "f", vec![1]).await;
    assert_eq!(resp.status(), 413);
    let resp = env
        .service(Method::DELETE, "/object/b/e")
        .send()
        .await
        .expect("delete");
    assert_eq!(resp.status(), 200);

    // null: back to the server default (none in tests); 0: no limit.
    for quota in [Value::Null, json!(0)] {
        let resp = set_quota(&env, quota.clone()).await;
        assert_eq!(resp.status(), 200);
        let project: Value = resp.json().await.expect("project");
        assert_eq!(project["storage_max_bytes"], quota);
        let name = format!("free-{}", quota.is_null());
        assert_eq!(upload(&env, &name, bytes(20_000, 6)).await.status(), 200);
    }
    let (counted, summed) = usage(&env).await;
    assert_eq!(counted, summed, "the counter follows every write");
    assert_eq!(counted, 4000 + 2 * 20_000);
}

#[tokio::test]
async fn concurrent_uploads_cannot_squeeze_past_the_quota_together() {
    let env = Env::new(Backend::Local).await;
    env.bucket(json!({"name": "b"})).await;
    assert_eq!(set_quota(&env, json!(10_000)).await.status(), 200);
    // Ten uploads of 3000 bytes start while all of the quota looks free.
    let statuses: Vec<u16> = futures_util::stream::iter(0..10u8)
        .map(|i| {
            let env = &env;
            async move {
                upload(env, &format!("o{i}"), bytes(3000, i))
                    .await
                    .status()
                    .as_u16()
            }
        })
        .buffer_unordered(10)
        .collect()
        .await;
    let stored = statuses.iter().filter(|s| **s == 200).count();
    assert_eq!(stored, 3, "three fit in 10000 bytes: {statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 413),
        "{statuses:?}"
    );
    assert_eq!(usage(&env).await, (9000, 9000));
    assert_eq!(env.rows().await, 3);
    // Refused uploads leave no bytes (deleted at once or by the reaper).
    for _ in 0..50 {
        if env.keys().await.len() == 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(env.keys().await.len(), 3);
}

#[tokio::test]
async fn the_server_default_applies_per_project_and_bad_settings_are_refused() {
    let env = Env::with(Backend::Local, |c| {
        c.storage.storage_max_project_bytes = 10_000
    })
    .await;
    env.bucket(json!({"name": "b"})).await;
    assert_eq!(upload(&env, "a", bytes(8000, 1)).await.status(), 200);
    refused(upload(&env, "b", bytes(8000, 2)).await).await;
    // Unfinished resumable uploads hold their room until they finish or expire.
    assert_eq!(resumable(&env, "r1", 1000).await.status(), 201);
    refused(resumable(&env, "r2", 1500).await).await;
    let report: Value = usage_report(&env, &env.p.service)
        .await
        .json()
        .await
        .expect("report");
    assert_eq!(
        report,
        json!({"used_bytes": 8000, "reserved_bytes": 1000, "quota_bytes": 10_000})
    );

    // Another project on the same server has its own 10000 bytes.
    let other = env.t.create_project("st-quota-other").await;
    let service = |m: Method, path: &str| {
        env.http
            .request(m, format!("{}/storage/v1{path}", other.url))
            .bearer_auth(&other.service)
    };
    let resp = service(Method::POST, "/bucket")
        .json(&json!({"name": "b"}))
        .send()
        .await
        .expect("bucket");
    assert_eq!(resp.status(), 200);
    let resp = service(Method::POST, "/object/b/x")
        .body(bytes(8000, 3))
        .send()
        .await
        .expect("upload");
    assert_eq!(resp.status(), 200, "the other project's quota is its own");

    // Bad settings: a clear 4xx, nothing changed.
    expect_error(set_quota(&env, json!(-1)).await, 400, "invalid_settings").await;
    for bad in [json!("lots"), json!(1.5), json!([1])] {
        let resp = set_quota(&env, bad.clone()).await;
        assert_eq!(resp.status(), 422, "{bad}");
        let body: Value = resp.json().await.expect("the JSON envelope");
        assert!(body["code"].is_string(), "{body}");
    }
    refused(upload(&env, "b", bytes(8000, 2)).await).await;
}
