//! One end-to-end suite, run on local disk and on S3 (moto): buckets,
//! uploads (raw, multipart, large/streaming, upsert), downloads (Range,
//! ETag, public, signed), info, list, move, copy, delete, limits, and that
//! bytes and rows stay consistent (no orphaned keys after overwrite/delete).

use reqwest::Method;
use serde_json::{Value, json};

use super::{Backend, Env, Moto, bytes};
use crate::support::expect_error;

#[tokio::test]
async fn storage_suite_on_local_disk() {
    let env = Env::new(Backend::Local).await;
    suite(&env).await;
}

#[tokio::test]
async fn storage_suite_on_s3() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let env = Env::new(Backend::S3(moto)).await;
    suite(&env).await;
}

#[tokio::test]
async fn s3_dying_mid_upload_is_a_clean_error_and_leaves_no_row() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let env = Env::new(Backend::S3(moto)).await;
    env.bucket(json!({"name": "b"})).await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(2);
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let request = env
        .service(Method::POST, "/object/b/doomed.bin")
        .body(reqwest::Body::wrap_stream(body))
        .send();
    let feeder = async {
        // Enough for the first multipart part to be under way, then kill S3.
        for _ in 0..10 {
            let _ = tx.send(Ok(vec![1u8; 1024 * 1024])).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        if let Backend::S3(m) = &env.backend {
            m.kill();
        }
        for _ in 0..20 {
            if tx.send(Ok(vec![2u8; 1024 * 1024])).await.is_err() {
                break;
            }
        }
        drop(tx);
    };
    let (resp, ()) = tokio::join!(request, feeder);
    if let Ok(resp) = resp {
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default();
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("StorageBackendError"), "{body}");
    }
    assert_eq!(env.rows().await, 0, "no row for a failed upload");
    // Reads fail cleanly too while S3 is down.
    let resp = env
        .service(Method::GET, "/object/b/doomed.bin")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
}

async fn json(resp: reqwest::Response) -> Value {
    let status = resp.status();
    let text = resp.text().await.unwrap();
    assert!(status.is_success(), "{status}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
}

async fn suite(env: &Env) {
    buckets(env).await;
    uploads_and_downloads(env).await;
    large_streaming_upload(env).await;
    list_move_copy(env).await;
    signed_urls(env).await;
    limits(env).await;
    deletes_leave_no_bytes(env).await;
}

async fn buckets(env: &Env) {
    env.bucket(json!({"id": "docs", "name": "docs", "public": false}))
        .await;
    env.bucket(
        json!({"name": "pics", "public": true, "file_size_limit": "1MB",
        "allowed_mime_types": ["image/*"]}),
    )
    .await;
    let resp = env
        .service(Method::POST, "/bucket")
        .json(&json!({"name": "docs"}))
        .send()
        .await
        .unwrap();
    expect_error(resp, 409, "BucketAlreadyExists").await;
    let list = json(env.service(Method::GET, "/bucket").send().await.unwrap()).await;
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["docs", "pics"]);
    let pics = json(
        env.service(Method::GET, "/bucket/pics")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(pics["public"], true);
    assert_eq!(pics["file_size_limit"], 1024 * 1024);
    assert_eq!(pics["allowed_mime_types"], json!(["image/*"]));
    let upd = env
        .service(Method::PUT, "/bucket/pics")
        .json(&json!({"public": true, "file_size_limit": 2048}))
        .send()
        .await
        .unwrap();
    assert_eq!(json(upd).await["message"], "Successfully updated");
    let pics = json(
        env.service(Method::GET, "/bucket/pics")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(pics["file_size_limit"], 2048);
    assert_eq!(
        pics["allowed_mime_types"],
        json!(["image/*"]),
        "absent fields are unchanged"
    );
    expect_error(
        env.service(Method::GET, "/bucket/nope")
            .send()
            .await
            .unwrap(),
        404,
        "NoSuchBucket",
    )
    .await;
    // Anon sees no bucket without a policy, and cannot create one.
    let anon = json(
        env.req(Method::GET, "/bucket", &env.p.anon)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(anon, json!([]));
    let resp = env
        .req(Method::POST, "/bucket", &env.p.anon)
        .json(&json!({"name": "mine"}))
        .send()
        .await
        .unwrap();
    expect_error(resp, 403, "AccessDenied").await;
    // No key at all.
    let resp = env.http.get(env.url("/bucket")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
}

async fn uploads_and_downloads(env: &Env) {
    let body = b"hello storage".to_vec();
    let resp = env
        .service(Method::POST, "/object/docs/a/hello.txt")
        .header("content-type", "text/plain")
        .header("cache-control", "max-age=60")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    let up = json(resp).await;
    assert_eq!(up["Key"], "docs/a/hello.txt");
    assert!(up["Id"].is_string());
    // Create again: conflict; x-upsert or PUT overwrite.
    let resp = env
        .service(Method::POST, "/object/docs/a/hello.txt")
        .body("x")
        .send()
        .await
        .unwrap();
    expect_error(resp, 409, "Duplicate").await;

    let get = env
        .service(Method::GET, "/object/docs/a/hello.txt")
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 200);
    assert_eq!(get.headers()["content-type"], "text/plain");
    assert_eq!(get.headers()["cache-control"], "max-age=60");
    assert_eq!(
        get.headers()["content-length"],
        body.len().to_string().as_str()
    );
    let etag = get.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(get.bytes().await.unwrap().to_vec(), body);

    let not_modified = env
        .service(Method::GET, "/object/docs/a/hello.txt")
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(not_modified.status(), 304);

    let range = env
        .service(Method::GET, "/object/authenticated/docs/a/hello.txt")
        .header("range", "bytes=6-12")
        .send()
        .await
        .unwrap();
    assert_eq!(range.status(), 206);
    assert_eq!(range.headers()["content-range"], "bytes 6-12/13");
    assert_eq!(range.bytes().await.unwrap().as_ref(), b"storage");
    let suffix = env
        .service(Method::GET, "/object/docs/a/hello.txt")
        .header("range", "bytes=-3")
        .send()
        .await
        .unwrap();
    assert_eq!(suffix.bytes().await.unwrap().as_ref(), b"age");
    let bad = env
        .service(Method::GET, "/object/docs/a/hello.txt")
        .header("range", "bytes=100-")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 416);
    assert_eq!(bad.headers()["content-range"], "bytes */13");

    let head = env
        .service(Method::HEAD, "/object/docs/a/hello.txt")
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-length"], "13");

    // Overwrite with x-upsert, then with PUT: new bytes, new ETag, one key.
    let resp = env
        .service(Method::POST, "/object/docs/a/hello.txt")
        .header("x-upsert", "true")
        .header("content-type", "text/plain")
        .body("second")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = env
        .service(Method::PUT, "/object/docs/a/hello.txt")
        .header("content-type", "text/markdown")
        .body("third version")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let get = env
        .service(Method::GET, "/object/docs/a/hello.txt")
        .send()
        .await
        .unwrap();
    assert_ne!(get.headers()["etag"].to_str().unwrap(), etag);
    assert_eq!(get.headers()["content-type"], "text/markdown");
    assert_eq!(get.text().await.unwrap(), "third version");
    assert_eq!(
        env.keys().await.len(),
        1,
        "replaced versions are deleted: {:?}",
        env.keys().await
    );

    // Multipart form, as storage-js sends a Blob and storage3 a file.
    let form = reqwest::multipart::Form::new()
        .text("cacheControl", "3600")
        .text("metadata", r#"{"lang":"en"}"#)
        .part(
            "",
            reqwest::multipart::Part::bytes(b"<p>hi</p>".to_vec())
                .file_name("x.html")
                .mime_str("text/html")
                .unwrap(),
        );
    let resp = env
        .service(Method::POST, "/object/docs/form.html")
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(json(resp).await["Key"], "docs/form.html");
    let info = json(
        env.service(Method::GET, "/object/info/docs/form.html")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(info["size"], 9);
    assert_eq!(info["content_type"], "text/html");
    assert_eq!(info["cache_control"], "max-age=3600");
    assert_eq!(info["metadata"], json!({"lang": "en"}));
    let get = env
        .service(Method::GET, "/object/docs/form.html?download")
        .send()
        .await
        .unwrap();
    assert_eq!(
        get.headers()["content-disposition"],
        "attachment; filename*=UTF-8''form%2Ehtml"
    );
    assert_eq!(get.text().await.unwrap(), "<p>hi</p>");

    // Public bucket: readable without any key; private: not.
    let png = [0x89, b'P', b'N', b'G'];
    assert_eq!(
        env.put(&env.p.service, "pics", "logo.png", &png, "image/png")
            .await,
        200
    );
    let public = env
        .http
        .get(env.url("/object/public/pics/logo.png"))
        .send()
        .await
        .unwrap();
    assert_eq!(public.status(), 200);
    // Served from the platform's origin (the dashboard's): never sniffed,
    // and a document opened from storage runs in an opaque origin.
    let header = |k: &str| {
        public
            .headers()
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(header("x-content-type-options"), "nosniff");
    let csp = header("content-security-policy");
    assert!(csp.split(';').any(|d| d.trim() == "sandbox"), "{csp:?}");
    assert_eq!(public.bytes().await.unwrap().as_ref(), &png);
    let private = env
        .http
        .get(env.url("/object/public/docs/form.html"))
        .send()
        .await
        .unwrap();
    assert_eq!(private.status(), 404);
    let missing = env
        .service(Method::GET, "/object/docs/nope.txt")
        .send()
        .await
        .unwrap();
    expect_error(missing, 404, "NoSuchKey").await;
}

async fn large_streaming_upload(env: &Env) {
    // Larger than one part: goes through a multipart upload, chunked (no Content-Length).
    let data = bytes(21 * 1024 * 1024 + 123, 7);
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        data.chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
    let resp = env
        .service(Method::POST, "/object/docs/big.bin")
        .header("content-type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let got = env
        .service(Method::GET, "/object/docs/big.bin")
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.headers()["content-length"],
        data.len().to_string().as_str()
    );
    let got = got.bytes().await.unwrap();
    assert!(got.as_ref() == data.as_slice(), "large object round-trips");
    let mid = env
        .service(Method::GET, "/object/docs/big.bin")
        .header("range", "bytes=10000000-10000099")
        .send()
        .await
        .unwrap();
    assert_eq!(
        mid.bytes().await.unwrap().as_ref(),
        &data[10_000_000..10_000_100]
    );
}

async fn list_move_copy(env: &Env) {
    for name in ["f/one.txt", "f/two.txt", "f/sub/three.txt", "f/Two-b.txt"] {
        assert_eq!(
            env.put(&env.p.service, "docs", name, name.as_bytes(), "text/plain")
                .await,
            200
        );
    }
    let list = |body: Value| async move {
        let v = json(
            env.service(Method::POST, "/object/list/docs")
                .json(&body)
                .send()
                .await
                .unwrap(),
        )
        .await;
        v.as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let folder = if e["id"].is_null() { "/" } else { "" };
                format!("{}{folder}", e["name"].as_str().unwrap())
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        list(json!({"prefix": "f"})).await,
        ["sub/", "Two-b.txt", "one.txt", "two.txt"]
    );
    assert_eq!(
        list(json!({"prefix": "f/", "search": "tw"})).await,
        ["Two-b.txt", "two.txt"]
    );
    assert_eq!(
        list(json!({"prefix": "f", "limit": 2, "offset": 1, "sortBy": {"column": "name", "order": "desc"}})).await,
        ["two.txt", "one.txt"]
    );
    let top = list(json!({"prefix": ""})).await;
    assert!(
        top.contains(&"a/".to_owned()) && top.contains(&"form.html".to_owned()),
        "{top:?}"
    );
    let entry = &json(
        env.service(Method::POST, "/object/list/docs")
            .json(&json!({"prefix": "f"}))
            .send()
            .await
            .unwrap(),
    )
    .await[1];
    assert_eq!(entry["metadata"]["size"], 11);
    let resp = env
        .service(Method::POST, "/object/list/docs")
        .json(&json!({"sortBy": {"column": "size; drop table x"}}))
        .send()
        .await
        .unwrap();
    expect_error(resp, 400, "InvalidRequest").await;

    // Move within a bucket (metadata only) and across buckets.
    let mv = env
        .service(Method::POST, "/object/move")
        .json(&json!({"bucketId": "docs", "sourceKey": "f/one.txt", "destinationKey": "g/1.txt"}))
        .send()
        .await
        .unwrap();
    assert_eq!(json(mv).await["message"], "Successfully moved");
    let get = env
        .service(Method::GET, "/object/docs/g/1.txt")
        .send()
        .await
        .unwrap();
    assert_eq!(get.text().await.unwrap(), "f/one.txt");
    assert_eq!(
        env.service(Method::GET, "/object/docs/f/one.txt")
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let clash = env
        .service(Method::POST, "/object/move")
        .json(&json!({"bucketId": "docs", "sourceKey": "g/1.txt", "destinationKey": "f/two.txt"}))
        .send()
        .await
        .unwrap();
    assert_eq!(clash.status(), 409);
    env.bucket(json!({"name": "archive"})).await;
    let mv = env
        .service(Method::POST, "/object/move")
        .json(
            &json!({"bucketId": "docs", "sourceKey": "g/1.txt", "destinationKey": "old/1.txt",
            "destinationBucket": "archive"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(mv.status(), 200);
    let get = env
        .service(Method::GET, "/object/archive/old/1.txt")
        .send()
        .await
        .unwrap();
    assert_eq!(get.text().await.unwrap(), "f/one.txt");

    let cp = env
        .service(Method::POST, "/object/copy")
        .json(&json!({"bucketId": "docs", "sourceKey": "f/two.txt", "destinationKey": "f/two-copy.txt"}))
        .send()
        .await
        .unwrap();
    assert_eq!(json(cp).await["Key"], "docs/f/two-copy.txt");
    let get = env
        .service(Method::GET, "/object/docs/f/two-copy.txt")
        .send()
        .await
        .unwrap();
    assert_eq!(get.text().await.unwrap(), "f/two.txt");
    // Copy into a bucket whose mime types do not allow it.
    let cp = env
        .service(Method::POST, "/object/copy")
        .json(
            &json!({"bucketId": "docs", "sourceKey": "f/two.txt", "destinationKey": "t.txt",
            "destinationBucket": "pics"}),
        )
        .send()
        .await
        .unwrap();
    expect_error(cp, 415, "InvalidMimeType").await;
}

async fn signed_urls(env: &Env) {
    let signed = json(
        env.service(Method::POST, "/object/sign/docs/f/two.txt")
            .json(&json!({"expiresIn": 60}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let path = signed["signedURL"].as_str().unwrap();
    assert!(
        path.starts_with("/object/sign/docs/f/two.txt?token="),
        "{path}"
    );
    let got = env.http.get(env.url(path)).send().await.unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.text().await.unwrap(), "f/two.txt");
    // The token is bound to its object.
    let token = path.split("token=").nth(1).unwrap();
    let other = env
        .http
        .get(env.url(&format!("/object/sign/docs/f/one.txt?token={token}")))
        .send()
        .await
        .unwrap();
    expect_error(other, 400, "InvalidSignature").await;

    let many = json(
        env.service(Method::POST, "/object/sign/docs")
            .json(&json!({"expiresIn": 60, "paths": ["f/two.txt", "nope"]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(many[0]["signedURL"].is_string() && many[0]["error"].is_null());
    assert!(many[1]["signedURL"].is_null() && many[1]["error"].is_string());

    // Signed upload URL: no key needed to use it.
    let up = json(
        env.service(Method::POST, "/object/upload/sign/docs/via-link.txt")
            .send()
            .await
            .unwrap(),
    )
    .await;
    let url = up["url"].as_str().unwrap();
    let put = env
        .http
        .put(env.url(url))
        .header("content-type", "text/plain")
        .body("linked")
        .send()
        .await
        .unwrap();
    assert_eq!(json(put).await["Key"], "docs/via-link.txt");
    let get = env
        .service(Method::GET, "/object/docs/via-link.txt")
        .send()
        .await
        .unwrap();
    assert_eq!(get.text().await.unwrap(), "linked");
    // Used again: the link is one-shot.
    let again = env
        .http
        .put(env.url(url))
        .body("again")
        .send()
        .await
        .unwrap();
    expect_error(again, 400, "InvalidSignature").await;
    // A download token cannot upload.
    let forged = env
        .http
        .put(env.url(&format!("/object/upload/sign/docs/f/two.txt?token={token}")))
        .body("x")
        .send()
        .await
        .unwrap();
    expect_error(forged, 400, "InvalidSignature").await;
}

async fn limits(env: &Env) {
    let before = env.keys().await.len();
    let rows = env.rows().await;
    // pics: 2048-byte limit, image/* only.
    assert_eq!(
        env.put(
            &env.p.service,
            "pics",
            "big.png",
            &bytes(4096, 1),
            "image/png"
        )
        .await,
        413
    );
    let chunked = env
        .service(Method::POST, "/object/pics/big2.png")
        .header("content-type", "image/png")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            (0..4).map(|_| Ok::<_, std::io::Error>(vec![0u8; 1024])),
        )))
        .send()
        .await
        .unwrap();
    expect_error(chunked, 413, "EntityTooLarge").await;
    assert_eq!(
        env.put(&env.p.service, "pics", "a.txt", b"text", "text/plain")
            .await,
        415
    );
    assert_eq!(
        env.put(&env.p.service, "pics", "a.jpg", b"jpeg", "image/jpeg")
            .await,
        200
    );
    // The global limit (50 MiB in tests) applies to buckets without one.
    let huge = env
        .service(Method::POST, "/object/docs/huge.bin")
        .header("content-length", (60u64 * 1024 * 1024).to_string())
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            (0..60).map(|_| Ok::<_, std::io::Error>(vec![0u8; 1024 * 1024])),
        )))
        .send()
        .await;
    if let Ok(resp) = huge {
        assert_eq!(resp.status(), 413);
    }
    assert_eq!(
        env.keys().await.len(),
        before + 1,
        "refused uploads leave no bytes"
    );
    assert_eq!(env.rows().await, rows + 1, "refused uploads leave no rows");
}

async fn deletes_leave_no_bytes(env: &Env) {
    let del = json(
        env.service(Method::DELETE, "/object/docs")
            .json(&json!({"prefixes": ["f/two.txt", "f/sub/three.txt", "not-there"]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let mut names: Vec<&str> = del
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["f/sub/three.txt", "f/two.txt"]);
    let one = env
        .service(Method::DELETE, "/object/docs/form.html")
        .send()
        .await
        .unwrap();
    assert_eq!(one.status(), 200);
    let again = env
        .service(Method::DELETE, "/object/docs/form.html")
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 404);
    assert_eq!(
        env.keys().await.len() as i64,
        env.rows().await,
        "one key per row: {:?}",
        env.keys().await
    );

    let resp = env
        .service(Method::DELETE, "/bucket/docs")
        .send()
        .await
        .unwrap();
    expect_error(resp, 409, "InvalidRequest").await;
    let resp = env
        .service(Method::POST, "/bucket/docs/empty")
        .send()
        .await
        .unwrap();
    assert_eq!(json(resp).await["message"], "Successfully emptied");
    let resp = env
        .service(Method::DELETE, "/bucket/docs")
        .send()
        .await
        .unwrap();
    assert_eq!(json(resp).await["message"], "Successfully deleted");
    for b in ["pics", "archive"] {
        env.service(Method::POST, &format!("/bucket/{b}/empty"))
            .send()
            .await
            .unwrap();
    }
    assert_eq!(env.rows().await, 0);
    assert!(
        env.keys().await.is_empty(),
        "no orphaned bytes: {:?}",
        env.keys().await
    );
}

fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbaImage::from_fn(w, h, |x, y| image::Rgba([x as u8, y as u8, 7, 255]));
    let mut buf = Vec::new();
    image::DynamicImage::ImageRgba8(img)
        .write_to(&mut std::io::Cursor::new(&mut buf), image::ImageFormat::Png)
        .unwrap();
    buf
}

#[tokio::test]
async fn image_transforms_authenticated_public_and_signed() {
    let env = Env::new(Backend::Local).await;
    env.bucket(json!({"name": "img", "public": true})).await;
    assert_eq!(
        env.put(&env.p.service, "img", "p.png", &png(300, 150), "image/png")
            .await,
        200
    );
    assert_eq!(
        env.put(&env.p.service, "img", "t.txt", b"text", "text/plain")
            .await,
        200
    );
    let dims = |b: &[u8]| {
        let i = image::load_from_memory(b).unwrap();
        (i.width(), i.height())
    };
    let resp = env
        .service(
            Method::GET,
            "/render/image/authenticated/img/p.png?width=100&height=100&resize=contain",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "image/png");
    let etag = resp.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(dims(&resp.bytes().await.unwrap()), (100, 50));
    let again = env
        .service(
            Method::GET,
            "/render/image/authenticated/img/p.png?width=100&height=100&resize=contain",
        )
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    let resp = env
        .http
        .get(env.url("/render/image/public/img/p.png?width=60&format=jpeg&quality=50"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "image/jpeg");
    assert_eq!(dims(&resp.bytes().await.unwrap()), (60, 30));
    // Signed with the transform baked in: query parameters cannot change it.
    let signed = json(
        env.service(Method::POST, "/object/sign/img/p.png")
            .json(&json!({"expiresIn": 60, "transform": {"width": 30, "height": 30, "format": "webp"}}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let path = signed["signedURL"].as_str().unwrap();
    assert!(
        path.starts_with("/render/image/sign/img/p.png?token="),
        "{path}"
    );
    let resp = env
        .http
        .get(env.url(&format!("{path}&width=2000")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "image/webp");
    assert_eq!(dims(&resp.bytes().await.unwrap()), (30, 30));
    // Plain signed tokens carry no transform.
    let plain = json(
        env.service(Method::POST, "/object/sign/img/p.png")
            .json(&json!({"expiresIn": 60}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let token = plain["signedURL"]
        .as_str()
        .unwrap()
        .split("token=")
        .nth(1)
        .unwrap()
        .to_owned();
    let resp = env
        .http
        .get(env.url(&format!("/render/image/sign/img/p.png?token={token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    // Bad parameters, non-images, missing objects.
    for q in [
        "width=0",
        "width=99999",
        "quality=1",
        "resize=zoom",
        "format=gif",
    ] {
        let resp = env
            .service(
                Method::GET,
                &format!("/render/image/authenticated/img/p.png?{q}"),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{q}");
    }
    let resp = env
        .service(
            Method::GET,
            "/render/image/authenticated/img/t.txt?width=10",
        )
        .send()
        .await
        .unwrap();
    expect_error(resp, 400, "InvalidRequest").await;
    let resp = env
        .service(Method::GET, "/render/image/authenticated/img/none.png")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let resp = env
        .req(
            Method::GET,
            "/render/image/authenticated/img/p.png",
            &env.p.anon,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404, "RLS applies to transforms");
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Flat memory for a large upload and download (1 GiB; opt in with
/// `FERROBASE_STORAGE_BIG_TEST=1`, it writes 1 GiB to disk).
#[tokio::test]
async fn large_objects_stream_with_flat_memory() {
    if std::env::var("FERROBASE_STORAGE_BIG_TEST").is_err() {
        eprintln!("skipped: set FERROBASE_STORAGE_BIG_TEST=1 to stream 1 GiB through storage");
        return;
    }
    let env = Env::with(Backend::Local, |c| {
        c.storage.storage_max_file_bytes = 2 << 30
    })
    .await;
    env.bucket(json!({"name": "big"})).await;
    let before = peak_rss_kib();
    let chunk = vec![5u8; 1024 * 1024];
    let chunks = (0..1024).map(move |_| Ok::<_, std::io::Error>(chunk.clone()));
    let resp = env
        .service(Method::POST, "/object/big/1g.bin")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut resp = env
        .service(Method::GET, "/object/big/1g.bin")
        .send()
        .await
        .unwrap();
    let mut total = 0u64;
    while let Some(c) = resp.chunk().await.unwrap() {
        total += c.len() as u64;
    }
    assert_eq!(total, 1 << 30);
    let grown_mib = (peak_rss_kib().saturating_sub(before)) / 1024;
    eprintln!("peak RSS grew by {grown_mib} MiB for a 1 GiB upload + download");
    assert!(
        grown_mib < 150,
        "memory must stay flat, grew {grown_mib} MiB"
    );
}
