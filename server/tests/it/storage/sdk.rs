//! The Rust SDK's storage client against a real server.

use ferrobase::{BucketOptions, FileOptions, ListOptions};
use serde_json::json;

use super::{Backend, Env, bytes};

#[tokio::test]
async fn sdk_storage_round_trip() {
    let env = Env::new(Backend::Local).await;
    let client = ferrobase::Client::new(&env.p.url, &env.p.service).unwrap();
    let storage = client.storage();
    storage
        .create_bucket(
            "docs",
            BucketOptions {
                public: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(storage.list_buckets().await.unwrap()[0].id, "docs");
    storage
        .update_bucket(
            "docs",
            BucketOptions {
                public: true,
                file_size_limit: Some(30 * 1024 * 1024),
                allowed_mime_types: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        storage.get_bucket("docs").await.unwrap().file_size_limit,
        Some(30 * 1024 * 1024)
    );

    let docs = storage.from("docs");
    let opts = FileOptions {
        content_type: Some("text/plain".into()),
        cache_control: Some(60),
        metadata: Some(json!({"a": 1})),
        upsert: false,
    };
    let up = docs
        .upload("dir/a b.txt", "hello", opts.clone())
        .await
        .unwrap();
    assert_eq!(up.key, "docs/dir/a b.txt");
    let err = docs
        .upload("dir/a b.txt", "again", opts.clone())
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(409));
    docs.upload("dir/a b.txt", "HELLO", opts.clone().upsert(true))
        .await
        .unwrap();
    assert_eq!(docs.download("dir/a b.txt").await.unwrap(), b"HELLO");
    let mut stream = docs.download_stream("dir/a b.txt").await.unwrap();
    let mut got = Vec::new();
    while let Some(chunk) = stream.chunk().await.unwrap() {
        got.extend_from_slice(&chunk);
    }
    assert_eq!(got, b"HELLO");
    let info = docs.info("dir/a b.txt").await.unwrap();
    assert_eq!(info["metadata"], json!({"a": 1}));
    assert_eq!(info["cache_control"], "max-age=60");
    assert!(docs.exists("dir/a b.txt").await.unwrap());
    assert!(!docs.exists("nope").await.unwrap());

    let listed = docs.list("", ListOptions::default()).await.unwrap();
    assert!(listed[0].is_folder() && listed[0].name == "dir");
    let listed = docs
        .list(
            "dir",
            ListOptions {
                search: Some("a".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);

    assert_eq!(
        docs.copy("dir/a b.txt", "copy.txt").await.unwrap(),
        "docs/copy.txt"
    );
    docs.move_object("copy.txt", "moved.txt").await.unwrap();
    let public = reqwest::get(docs.get_public_url("moved.txt"))
        .await
        .unwrap();
    assert_eq!(public.text().await.unwrap(), "HELLO");
    let signed = docs.create_signed_url("dir/a b.txt", 60).await.unwrap();
    assert_eq!(
        reqwest::get(&signed).await.unwrap().text().await.unwrap(),
        "HELLO"
    );
    let many = docs
        .create_signed_urls(&["moved.txt", "missing"], 60)
        .await
        .unwrap();
    assert!(many[0].url.is_ok() && many[1].url.is_err());

    let link = docs
        .create_signed_upload_url("linked.txt", false)
        .await
        .unwrap();
    let anon = ferrobase::Client::new(&env.p.url, &env.p.anon).unwrap();
    anon.storage()
        .from("docs")
        .upload_to_signed_url(
            "linked.txt",
            &link.token,
            "via link",
            FileOptions::content_type("text/plain"),
        )
        .await
        .unwrap();
    assert_eq!(docs.download("linked.txt").await.unwrap(), b"via link");

    // Resumable upload with progress.
    let data = bytes(13 * 1024 * 1024, 9);
    let mut seen = Vec::new();
    docs.upload_resumable(
        "big.bin",
        data.as_slice(),
        data.len() as u64,
        FileOptions::default(),
        6 * 1024 * 1024,
        |sent, total| {
            seen.push((sent, total));
        },
    )
    .await
    .unwrap();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen.last(), Some(&(data.len() as u64, data.len() as u64)));
    assert!(docs.download("big.bin").await.unwrap() == data);

    let removed = docs
        .remove(&["moved.txt", "linked.txt", "big.bin", "dir/a b.txt"])
        .await
        .unwrap();
    assert_eq!(removed.len(), 4);
    storage.empty_bucket("docs").await.unwrap();
    storage.delete_bucket("docs").await.unwrap();
    assert!(storage.list_buckets().await.unwrap().is_empty());
    assert!(env.keys().await.is_empty());
}

/// The SDK reads the project's usage against its quota and sees a refusal
/// past it as HTTP 413 `QuotaExceeded`.
#[tokio::test]
async fn sdk_reads_the_storage_usage_and_sees_the_quota() {
    let env = Env::new(Backend::Local).await;
    let resp = env
        .t
        .admin(
            reqwest::Method::PATCH,
            &format!("/platform/v1/projects/{}", env.project_ref()),
        )
        .json(&json!({"storage_max_bytes": 1000}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let service = ferrobase::Client::new(&env.p.url, &env.p.service).unwrap();
    let storage = service.storage();
    storage
        .create_bucket("b", BucketOptions::default())
        .await
        .unwrap();
    let b = storage.from("b");
    b.upload("a.bin", bytes(600, 1), FileOptions::default())
        .await
        .unwrap();
    let over = b
        .upload("b.bin", bytes(600, 2), FileOptions::default())
        .await
        .expect_err("past the quota");
    match over {
        ferrobase::Error::Api { status, code, .. } => {
            assert_eq!((status, code.as_str()), (413, "QuotaExceeded"));
        }
        other => panic!("not an API error: {other}"),
    }
    assert_eq!(
        storage.usage().await.unwrap(),
        ferrobase::StorageUsage {
            used_bytes: 600,
            reserved_bytes: 0,
            quota_bytes: Some(1000),
        }
    );
    // Only for admins: the anon key is refused.
    let anon = ferrobase::Client::new(&env.p.url, &env.p.anon).unwrap();
    assert!(anon.storage().usage().await.is_err());
}
