//! `ferrobase backup --to s3://…` and `ferrobase restore s3://…` against a
//! real S3-compatible server (moto, the storage tests' peer), with the
//! `FERROBASE_BACKUP_S3_*` settings while project files stay on local disk:
//! backup, drop, restore, data and files equal; an existing backup is not
//! overwritten; a damaged object and a prefix without a backup are refused.

use ferrobase::Client;
use ferrobase_server::backup::restore::RestoreOptions;
use ferrobase_server::backup::target::{Target, s3_store};
use ferrobase_server::backup::{self, BackupError};
use ferrobase_server::platform::ProjectRef;
use futures_util::StreamExt as _;
use object_store::ObjectStoreExt as _;
use reqwest::Method;
use serde_json::json;

use super::{FILE, notes, seed, user};
use crate::storage::Moto;
use crate::support::TestApp;

#[tokio::test]
async fn backup_to_s3_drop_and_restore_from_s3() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let t = TestApp::spawn_with(|c| {
        c.backup.backup_s3_endpoint = Some(moto.endpoint.clone());
        c.backup.backup_s3_region = Some("us-east-1".into());
        c.backup.backup_s3_access_key_id = Some("testing".into());
        c.backup.backup_s3_secret_access_key = Some("testing".into());
        c.backup.backup_s3_force_path_style = Some(true);
    })
    .await;
    let p = t.create_project("bk-s3").await;
    seed(&t, &p).await;
    let r = ProjectRef::parse("bk-s3").expect("ref");
    let to = Target::parse(&format!("s3://{}/nightly/", moto.bucket), false).expect("target");
    let written = backup::backup_to(&t.app.platform, Some(&r), &to, &backup::Quiet)
        .await
        .expect("backup to s3");
    assert_eq!(written.len(), 1);
    let location = written[0].location.clone();
    assert_eq!(
        location.to_string(),
        format!("s3://{}/nightly/bk-s3", moto.bucket)
    );
    assert!(written[0].bytes > 0);

    // The objects are in the bucket, the manifest among them.
    let store = s3_store(&t.config, &moto.bucket).expect("s3 client");
    let mut keys = Vec::new();
    let prefix = object_store::path::Path::from("nightly/bk-s3");
    let mut listing = store.list(Some(&prefix));
    while let Some(meta) = listing.next().await {
        keys.push(meta.expect("list").location.to_string());
    }
    for expected in [
        "nightly/bk-s3/manifest.json",
        "nightly/bk-s3/database.dump",
        "nightly/bk-s3/control.json",
    ] {
        assert!(keys.iter().any(|k| k == expected), "{expected} in {keys:?}");
    }
    assert_eq!(
        keys.iter().filter(|k| k.contains("/storage/")).count(),
        1,
        "{keys:?}"
    );

    // A second backup to the same place is refused, not overwritten.
    let again = backup::backup_to(&t.app.platform, Some(&r), &to, &backup::Quiet).await;
    assert!(
        matches!(&again, Err(BackupError::Invalid(m)) if m.contains("already holds a backup")),
        "{again:?}"
    );

    // Drop the project, restore it from S3: the same keys, rows and bytes.
    let resp = t
        .admin(Method::DELETE, "/platform/v1/projects/bk-s3")
        .send()
        .await
        .expect("delete");
    assert!(resp.status().is_success(), "{}", resp.status());
    let d = backup::restore_from(
        &t.app.platform,
        &location,
        &RestoreOptions::default(),
        &backup::Quiet,
    )
    .await
    .expect("restore from s3");
    assert_eq!(d.anon_key, p.anon);
    let ada = user(&p.url, &p.anon, &p.service, false).await;
    assert_eq!(
        notes(&ada).await,
        vec![
            json!({"body": "first", "tags": ["a", "b"]}),
            json!({"body": "second", "tags": []})
        ]
    );
    let bytes = Client::new(&p.url, &p.service)
        .expect("service")
        .storage()
        .from("docs")
        .download("2026/q3.bin")
        .await
        .expect("download restored file");
    assert_eq!(bytes, FILE);

    // A damaged object is refused before anything is created.
    store
        .put(
            &object_store::path::Path::from("nightly/bk-s3/database.dump"),
            object_store::PutPayload::from(b"not a dump".to_vec()),
        )
        .await
        .expect("overwrite the dump");
    let copy = RestoreOptions {
        new_ref: Some(ProjectRef::parse("bk-s3-copy").expect("ref")),
        ..Default::default()
    };
    let e = backup::restore_from(&t.app.platform, &location, &copy, &backup::Quiet)
        .await
        .expect_err("damaged dump");
    assert!(e.to_string().contains("does not match its checksum"), "{e}");
    // A prefix that holds no backup.
    let empty = Target::parse(&format!("s3://{}/nothing/here", moto.bucket), false).expect("t");
    let e = backup::restore_from(&t.app.platform, &empty, &copy, &backup::Quiet)
        .await
        .expect_err("no backup there");
    assert!(e.to_string().contains("is not a project backup"), "{e}");
    let listed = t
        .admin(Method::GET, "/platform/v1/projects")
        .send()
        .await
        .expect("list")
        .text()
        .await
        .expect("text");
    assert!(!listed.contains("bk-s3-copy"), "nothing left behind");
}
