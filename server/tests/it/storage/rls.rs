//! The RLS matrix: (anon, owner, another user, service key) × (public
//! bucket, private bucket) × (read, upload, overwrite, delete, list), with
//! policies in the Supabase style ("users manage files in their own folder").

use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use super::{Backend, Env};

const POLICIES: &str = r#"
create policy "read own" on storage.objects for select to authenticated
  using (owner = auth.uid());
create policy "insert into own folder" on storage.objects for insert to authenticated
  with check (owner = auth.uid() and (storage.foldername(name))[1] = auth.uid()::text);
create policy "update own" on storage.objects for update to authenticated
  using (owner = auth.uid()) with check (owner = auth.uid());
create policy "delete own" on storage.objects for delete to authenticated
  using (owner = auth.uid());
"#;

#[derive(Clone, Copy, Debug)]
enum Who {
    Anon,
    Owner,
    Other,
    Service,
}

/// Expected (read, upload, overwrite, delete, list-sees-the-file).
fn expected(who: Who, public: bool) -> (u16, u16, u16, u16, bool) {
    match who {
        // Public buckets are readable by anyone through /object/public.
        Who::Anon => (if public { 200 } else { 404 }, 403, 403, 404, false),
        Who::Owner => (200, 200, 200, 200, true),
        Who::Other => (if public { 200 } else { 404 }, 403, 403, 404, false),
        Who::Service => (200, 200, 200, 200, true),
    }
}

#[tokio::test]
async fn rls_decides_who_may_read_upload_overwrite_delete_and_list() {
    let env = Env::new(Backend::Local).await;
    env.sql(POLICIES).await;
    env.bucket(json!({"name": "pub", "public": true})).await;
    env.bucket(json!({"name": "priv", "public": false})).await;
    let owner = Uuid::new_v4();
    let owner_token = env.user_token(owner).await;
    let other_token = env.user_token(Uuid::new_v4()).await;
    let file = format!("{owner}/file.txt");

    for bucket in ["pub", "priv"] {
        let public = bucket == "pub";
        // The owner uploads through the policy (so `owner` is set).
        assert_eq!(
            env.put(&owner_token, bucket, &file, b"v1", "text/plain")
                .await,
            200
        );
        for who in [Who::Anon, Who::Owner, Who::Other, Who::Service] {
            let key = match who {
                Who::Anon => env.p.anon.clone(),
                Who::Owner => owner_token.clone(),
                Who::Other => other_token.clone(),
                Who::Service => env.p.service.clone(),
            };
            let (read, upload, overwrite, delete, lists) = expected(who, public);
            let ctx = format!("{who:?} on {bucket}");

            let read_path = if public {
                format!("/object/public/{bucket}/{file}")
            } else {
                format!("/object/authenticated/{bucket}/{file}")
            };
            let got = env.req(Method::GET, &read_path, &key).send().await.unwrap();
            assert_eq!(got.status().as_u16(), read, "read: {ctx}");
            if read == 200 {
                assert_eq!(got.bytes().await.unwrap().as_ref(), b"v1");
            }

            let rows = env.rows().await;
            let new = format!("{owner}/new-{who:?}.txt");
            let status = env.put(&key, bucket, &new, b"new", "text/plain").await;
            assert_eq!(status, upload, "upload: {ctx}");
            let expected_rows = if upload == 200 { rows + 1 } else { rows };
            assert_eq!(env.rows().await, expected_rows, "upload rows: {ctx}");

            let status = env
                .req(Method::PUT, &format!("/object/{bucket}/{file}"), &key)
                .header("content-type", "text/plain")
                .body("v1")
                .send()
                .await
                .unwrap()
                .status()
                .as_u16();
            assert_eq!(status, overwrite, "overwrite: {ctx}");

            let listed: Value = env
                .req(Method::POST, &format!("/object/list/{bucket}"), &key)
                .json(&json!({"prefix": owner.to_string()}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let sees = listed
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["name"] == "file.txt");
            assert_eq!(sees, lists, "list: {ctx} got {listed}");

            let status = env
                .req(Method::DELETE, &format!("/object/{bucket}/{file}"), &key)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16();
            assert_eq!(status, delete, "delete: {ctx}");
            if delete == 200 {
                // Put it back (as the owner) for the next caller.
                assert_eq!(
                    env.put(&owner_token, bucket, &file, b"v1", "text/plain")
                        .await,
                    200
                );
            } else {
                let still = env
                    .service(Method::HEAD, &format!("/object/{bucket}/{file}"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(still.status(), 200, "refused delete kept the object: {ctx}");
            }
        }
    }
    // Another user's own folder is theirs: RLS is per row, not per bucket.
    let other = Uuid::new_v4();
    let token = env.user_token(other).await;
    assert_eq!(
        env.put(
            &token,
            "priv",
            &format!("{other}/mine.txt"),
            b"x",
            "text/plain"
        )
        .await,
        200
    );
    // One key per row: refused writes left no bytes.
    assert_eq!(env.keys().await.len() as i64, env.rows().await);
}

#[tokio::test]
async fn bucket_admin_follows_rls_on_storage_buckets() {
    let env = Env::new(Backend::Local).await;
    let user = env.user_token(Uuid::new_v4()).await;
    let resp = env
        .req(Method::POST, "/bucket", &user)
        .json(&json!({"name": "b1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    env.sql(
        "create policy \"users create buckets\" on storage.buckets for insert to authenticated \
         with check (owner = auth.uid()); \
         create policy \"see own buckets\" on storage.buckets for select to authenticated \
         using (owner = auth.uid());",
    )
    .await;
    let resp = env
        .req(Method::POST, "/bucket", &user)
        .json(&json!({"name": "b1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let list: Value = env
        .req(Method::GET, "/bucket", &user)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    // No update/delete policy: the bucket is invisible to those statements.
    let resp = env
        .req(Method::DELETE, "/bucket/b1", &user)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let other = env.user_token(Uuid::new_v4()).await;
    let list: Value = env
        .req(Method::GET, "/bucket", &other)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list, json!([]));
}
