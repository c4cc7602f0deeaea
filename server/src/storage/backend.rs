//! Where the bytes live: an [`ObjectStore`] (local disk or S3-compatible),
//! the key layout, streaming writes with a size limit, and the orphan
//! bookkeeping that keeps bytes and metadata rows consistent.
//!
//! # Key layout
//!
//! `{project_id}/{bucket_id}/{version[0..2]}/{version}`: every project has
//! its own prefix, so projects never see each other's bytes. The object name
//! is *not* part of the key: a new upload writes a new, never-seen version
//! key and a metadata row points at it. Readers therefore never see
//! half-written bytes, overwrites are atomic (the row switches versions in
//! one transaction), and a rename within a bucket is a metadata update.
//! Resumable (TUS) parts live under `{project_id}/{bucket_id}/_resumable/`.
//!
//! # Consistency
//!
//! `storage.orphans` lists bytes no row may reference: before writing, an
//! upload records its key as `upload`; when a row stops pointing at a key
//! (delete, overwrite, move across buckets) a trigger records it as
//! `replaced` in the same transaction. After the change commits the server
//! deletes those bytes and the entries ([`Storage::drain`]); the reaper
//! ([`Storage::reap`]) finishes what a crash interrupted. So a failed upload
//! leaves no row, and a deleted row leaves no bytes behind for long.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    BackoffConfig, ClientOptions, GetOptions, GetResult, ObjectStore, ObjectStoreExt, PutPayload,
    RetryConfig, WriteMultipart,
};
use uuid::Uuid;

use super::{StorageError, StorageResult};
use crate::config::Config;

/// Size of the parts of multipart uploads (S3's minimum part size is 5 MiB),
/// and of the buffer that decides between one `PUT` and a multipart upload.
pub const PART_BYTES: usize = 8 * 1024 * 1024;

/// Parts uploaded concurrently per upload; bounds memory to about
/// `PART_BYTES * (MAX_IN_FLIGHT + 1)` per upload whatever the file size.
const MAX_IN_FLIGHT: usize = 2;

/// In-flight uploads older than this are presumed dead by the reaper.
const UPLOAD_GRACE: Duration = Duration::from_secs(24 * 3600);

/// How often one project is reaped at most.
const REAP_INTERVAL: Duration = Duration::from_secs(300);

/// The storage service: the object store plus limits.
pub struct Storage {
    store: Box<dyn ObjectStore>,
    /// What backend this is (for logs), e.g. `local:/data/storage`.
    pub describe: String,
    /// Global upload limit in bytes (`FERROBASE_STORAGE_MAX_FILE_BYTES`).
    pub max_file_bytes: u64,
    /// Default per-project quota in bytes, 0 = none (`FERROBASE_STORAGE_MAX_PROJECT_BYTES`).
    pub max_project_bytes: u64,
    /// Lifetime of unfinished resumable uploads.
    pub resumable_expiry: Duration,
    last_reaped: Mutex<HashMap<Uuid, Instant>>,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("backend", &self.describe)
            .finish_non_exhaustive()
    }
}

fn setting(query: &HashMap<String, String>, env: &Option<String>, key: &str) -> Option<String> {
    env.clone()
        .filter(|v| !v.is_empty())
        .or_else(|| query.get(key).cloned())
}

impl Storage {
    /// Opens the backend chosen by `config`: `FERROBASE_STORAGE_URL` unset
    /// (local disk under `{data_dir}/storage`), `file:///dir`, or `s3://bucket?…`.
    pub fn from_config(config: &Config) -> Result<Self, String> {
        let (store, describe): (Box<dyn ObjectStore>, String) = match config
            .storage
            .storage_url
            .as_deref()
            .filter(|u| !u.is_empty())
        {
            None => local(&config.data_dir.join("storage"))?,
            Some(url) => {
                let parsed = url::Url::parse(url)
                    .map_err(|e| format!("FERROBASE_STORAGE_URL is not a URL: {e}"))?;
                match parsed.scheme() {
                    "file" => {
                        let dir = parsed.to_file_path().map_err(|()| {
                            "FERROBASE_STORAGE_URL: file:// needs an absolute path".to_owned()
                        })?;
                        local(&dir)?
                    }
                    "s3" => s3(config, &parsed)?,
                    other => {
                        return Err(format!(
                            "FERROBASE_STORAGE_URL: unsupported scheme {other:?} (use file:// or s3://)"
                        ));
                    }
                }
            }
        };
        Ok(Self {
            store,
            describe,
            max_file_bytes: config.storage.storage_max_file_bytes,
            max_project_bytes: config.storage.storage_max_project_bytes,
            resumable_expiry: Duration::from_secs(config.storage.storage_resumable_expiry_secs),
            last_reaped: Mutex::default(),
        })
    }

    /// A fresh version id (32 hex digits).
    pub fn new_version() -> String {
        Uuid::new_v4().simple().to_string()
    }

    /// The key of one version of an object.
    pub fn key(project: Uuid, bucket: &str, version: &str) -> Path {
        let shard = version.get(..2).unwrap_or("00");
        Path::from_iter([project.to_string().as_str(), bucket, shard, version])
    }

    /// The key of one part of a resumable upload.
    pub fn part_key(project: Uuid, bucket: &str, upload: &str, part: i32) -> Path {
        Path::from_iter([
            project.to_string().as_str(),
            bucket,
            "_resumable",
            upload,
            &format!("{part:08}"),
        ])
    }

    /// Streams `body` to `key`, refusing (and writing nothing) once more than
    /// `limit` bytes arrive. Small bodies are one `PUT`; larger ones a
    /// multipart upload with bounded memory. Returns the size.
    pub async fn write<S, E>(&self, key: &Path, mut body: S, limit: u64) -> StorageResult<u64>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let mut first: Vec<Bytes> = Vec::new();
        let mut buffered = 0usize;
        let mut total = 0u64;
        let mut ended = false;
        while buffered < PART_BYTES {
            match body.next().await {
                None => {
                    ended = true;
                    break;
                }
                Some(chunk) => {
                    let chunk = chunk.map_err(interrupted)?;
                    total += chunk.len() as u64;
                    if total > limit {
                        return Err(StorageError::TooLarge(limit));
                    }
                    buffered += chunk.len();
                    first.push(chunk);
                }
            }
        }
        if ended {
            self.store
                .put(key, first.into_iter().collect::<PutPayload>())
                .await?;
            return Ok(total);
        }
        let upload = self.store.put_multipart(key).await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        for chunk in first {
            writer.put(chunk);
        }
        let result: StorageResult<()> = async {
            loop {
                writer.wait_for_capacity(MAX_IN_FLIGHT).await?;
                let Some(chunk) = body.next().await else {
                    return Ok(());
                };
                let chunk = chunk.map_err(interrupted)?;
                total += chunk.len() as u64;
                if total > limit {
                    return Err(StorageError::TooLarge(limit));
                }
                writer.put(chunk);
            }
        }
        .await;
        match result {
            Ok(()) => {
                writer.finish().await?;
                Ok(total)
            }
            Err(e) => {
                if let Err(abort) = writer.abort().await {
                    tracing::warn!(error = %abort, %key, "could not abort a multipart upload");
                }
                Err(e)
            }
        }
    }

    /// Reads `key` (optionally a range).
    /// The underlying object store (backups read and write whole projects).
    pub fn object_store(&self) -> &dyn ObjectStore {
        &*self.store
    }

    pub async fn get(&self, key: &Path, options: GetOptions) -> StorageResult<GetResult> {
        Ok(self.store.get_opts(key, options).await?)
    }

    /// Server-side copy of bytes.
    pub async fn copy(&self, from: &Path, to: &Path) -> StorageResult<()> {
        Ok(self.store.copy(from, to).await?)
    }

    /// Deletes `key`; a missing key is not an error.
    pub async fn delete(&self, key: &Path) -> StorageResult<()> {
        match self.store.delete(key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes the resumable-upload parts of a bucket (after the bucket is gone).
    pub async fn delete_prefix(&self, project: Uuid, bucket: &str) -> StorageResult<()> {
        let prefix = Path::from_iter([project.to_string().as_str(), bucket, "_resumable"]);
        let mut listing = self.store.list(Some(&prefix));
        while let Some(meta) = listing.next().await {
            match meta {
                Ok(meta) => self.delete(&meta.location).await?,
                Err(object_store::Error::NotFound { .. }) => break,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Deletes every byte a project has (after the project is deleted).
    pub async fn purge_project(&self, project: Uuid) -> StorageResult<usize> {
        let prefix = Path::from(project.to_string());
        let mut listing = self.store.list(Some(&prefix));
        let mut deleted = 0;
        while let Some(meta) = listing.next().await {
            match meta {
                Ok(meta) => {
                    self.delete(&meta.location).await?;
                    deleted += 1;
                }
                Err(object_store::Error::NotFound { .. }) => break,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(deleted)
    }

    /// Records `version` as an upload in flight (before its bytes are written).
    pub async fn begin_upload(
        &self,
        client: &tokio_postgres::Client,
        bucket: &str,
        version: &str,
        name: &str,
    ) -> StorageResult<()> {
        client
            .execute(
                "insert into storage.orphans (bucket_id, version, name, reason) \
                 values ($1, $2, $3, 'upload')",
                &[&bucket, &version, &name],
            )
            .await?;
        Ok(())
    }

    /// After an upload's row committed: its bytes are referenced, forget the entry.
    pub async fn commit_upload(
        &self,
        client: &tokio_postgres::Client,
        bucket: &str,
        version: &str,
    ) -> StorageResult<()> {
        client
            .execute(
                "delete from storage.orphans where bucket_id = $1 and version = $2 and reason = 'upload'",
                &[&bucket, &version],
            )
            .await?;
        Ok(())
    }

    /// After a failed upload: delete its bytes and its entry.
    pub async fn abandon_upload(
        &self,
        client: &tokio_postgres::Client,
        project: Uuid,
        bucket: &str,
        version: &str,
    ) {
        let key = Self::key(project, bucket, version);
        if let Err(e) = self.delete(&key).await {
            tracing::warn!(error = %e, %key, "could not delete the bytes of a failed upload; the reaper will");
            return;
        }
        if let Err(e) = client
            .execute(
                "delete from storage.orphans where bucket_id = $1 and version = $2 and reason = 'upload'",
                &[&bucket, &version],
            )
            .await
        {
            tracing::warn!(error = %e, "could not forget a failed upload; the reaper will");
        }
    }

    /// Deletes the bytes that rows of `bucket` stopped referencing (after a
    /// delete, overwrite or move committed), then their entries.
    pub async fn drain(
        &self,
        client: &tokio_postgres::Client,
        project: Uuid,
        bucket: &str,
    ) -> StorageResult<usize> {
        const BATCH: i64 = 1000;
        let mut total = 0;
        loop {
            let rows = client
                .query(
                    "select version from storage.orphans where bucket_id = $1 and reason = 'replaced' limit $2",
                    &[&bucket, &BATCH],
                )
                .await?;
            let n = rows.len();
            total += self.delete_entries(client, project, bucket, rows).await?;
            if (n as i64) < BATCH {
                return Ok(total);
            }
        }
    }

    async fn delete_entries(
        &self,
        client: &tokio_postgres::Client,
        project: Uuid,
        bucket: &str,
        rows: Vec<tokio_postgres::Row>,
    ) -> StorageResult<usize> {
        let mut done: Vec<String> = Vec::with_capacity(rows.len());
        for row in rows {
            let version: String = row.get(0);
            self.delete(&Self::key(project, bucket, &version)).await?;
            done.push(version);
        }
        if !done.is_empty() {
            client
                .execute(
                    "delete from storage.orphans where bucket_id = $1 and version = any($2)",
                    &[&bucket, &done],
                )
                .await?;
        }
        Ok(done.len())
    }

    /// Whether project `project` is due for [`Storage::reap`] (at most every
    /// few minutes per project per node).
    pub fn reap_due(&self, project: Uuid) -> bool {
        let mut last = self.last_reaped.lock().unwrap_or_else(|e| e.into_inner());
        let due = last
            .get(&project)
            .is_none_or(|at| at.elapsed() >= REAP_INTERVAL);
        if due {
            last.insert(project, Instant::now());
        }
        due
    }

    /// Finishes interrupted work of one project: deletes bytes no row
    /// references (replaced, or uploads older than a day that never
    /// committed), and expired resumable uploads with their parts. Returns
    /// how many keys were deleted.
    pub async fn reap(
        &self,
        client: &tokio_postgres::Client,
        project: Uuid,
    ) -> StorageResult<usize> {
        self.reap_older_than(client, project, UPLOAD_GRACE).await
    }

    /// [`Storage::reap`] with an explicit grace period for in-flight uploads.
    pub async fn reap_older_than(
        &self,
        client: &tokio_postgres::Client,
        project: Uuid,
        grace: Duration,
    ) -> StorageResult<usize> {
        let grace_secs = grace.as_secs_f64();
        // Uploads whose row did commit only lost their bookkeeping.
        client
            .execute(
                "delete from storage.orphans o where reason = 'upload' \
                 and exists (select 1 from storage.objects b where b.bucket_id = o.bucket_id and b.version = o.version)",
                &[],
            )
            .await?;
        let rows = client
            .query(
                "select bucket_id, version from storage.orphans \
                 where reason = 'replaced' or created_at < now() - make_interval(secs => $1) \
                 order by bucket_id limit 10000",
                &[&grace_secs],
            )
            .await?;
        let mut by_bucket: HashMap<String, Vec<tokio_postgres::Row>> = HashMap::new();
        for row in rows {
            by_bucket.entry(row.get(0)).or_default().push(row);
        }
        let mut deleted = 0;
        for (bucket, rows) in by_bucket {
            // Re-map rows so `delete_entries` reads the version in column 0.
            let versions: Vec<String> = rows.iter().map(|r| r.get::<_, String>(1)).collect();
            for version in &versions {
                self.delete(&Self::key(project, &bucket, version)).await?;
            }
            client
                .execute(
                    "delete from storage.orphans where bucket_id = $1 and version = any($2)",
                    &[&bucket, &versions],
                )
                .await?;
            deleted += versions.len();
        }
        deleted += super::tus::reap_expired(self, client, project).await?;
        Ok(deleted)
    }
}

fn interrupted(e: impl std::fmt::Display) -> StorageError {
    StorageError::InvalidRequest(format!(
        "The upload was interrupted before the body was complete: {e}"
    ))
}

fn local(dir: &std::path::Path) -> Result<(Box<dyn ObjectStore>, String), String> {
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("cannot create the storage directory {}: {e}", dir.display()))?;
    let fs = LocalFileSystem::new_with_prefix(dir)
        .map_err(|e| format!("cannot use the storage directory {}: {e}", dir.display()))?
        .with_automatic_cleanup(true)
        // Bytes must be durable before the row that points at them commits.
        .with_fsync(true);
    Ok((Box::new(fs), format!("local:{}", dir.display())))
}

fn s3(config: &Config, url: &url::Url) -> Result<(Box<dyn ObjectStore>, String), String> {
    let bucket = url
        .host_str()
        .filter(|b| !b.is_empty())
        .ok_or("FERROBASE_STORAGE_URL: s3:// needs a bucket name, e.g. s3://my-bucket")?;
    let query: HashMap<String, String> = url.query_pairs().into_owned().collect();
    let endpoint = setting(&query, &config.storage.s3_endpoint, "endpoint");
    let region =
        setting(&query, &config.storage.s3_region, "region").unwrap_or_else(|| "us-east-1".into());
    let path_style = config.storage.s3_force_path_style
        || query
            .get("force_path_style")
            .is_some_and(|v| matches!(v.as_str(), "true" | "1" | "yes"));
    let store = s3_client(S3Settings {
        bucket: bucket.to_owned(),
        endpoint: endpoint.clone(),
        region,
        path_style,
        access_key_id: config.storage.s3_access_key_id.clone(),
        secret_access_key: crate::config::exposed(&config.storage.s3_secret_access_key)
            .map(str::to_owned),
    })
    .map_err(|e| format!("FERROBASE_STORAGE_URL: cannot configure S3: {e}"))?;
    Ok((
        Box::new(store),
        format!("s3:{bucket}@{}", endpoint.as_deref().unwrap_or("aws")),
    ))
}

/// How to reach one S3 (or S3-compatible) bucket.
#[derive(Clone)]
pub struct S3Settings {
    /// Bucket name.
    pub bucket: String,
    /// Endpoint of an S3-compatible server; `None` = AWS.
    pub endpoint: Option<String>,
    /// Region.
    pub region: String,
    /// Path-style URLs (`endpoint/bucket/key`).
    pub path_style: bool,
    /// Access key id (`None`: the usual AWS environment and instance credentials).
    pub access_key_id: Option<String>,
    /// Secret access key.
    pub secret_access_key: Option<String>,
}

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// The S3 client used by the storage backend (and by backups to `s3://`):
/// bounded retries and timeouts, plain HTTP only for an `http://` endpoint.
pub fn s3_client(s: S3Settings) -> Result<object_store::aws::AmazonS3, String> {
    let mut builder = AmazonS3Builder::from_env()
        .with_bucket_name(&s.bucket)
        .with_region(&s.region)
        .with_virtual_hosted_style_request(!s.path_style)
        .with_retry(RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: 3,
            retry_timeout: Duration::from_secs(15),
        })
        .with_client_options(
            ClientOptions::new()
                .with_connect_timeout(Duration::from_secs(5))
                .with_timeout(Duration::from_secs(120)),
        );
    if let Some(endpoint) = &s.endpoint {
        builder = builder
            .with_endpoint(endpoint)
            .with_allow_http(endpoint.starts_with("http://"));
    }
    if let Some(id) = &s.access_key_id {
        builder = builder.with_access_key_id(id);
    }
    if let Some(secret) = &s.secret_access_key {
        builder = builder.with_secret_access_key(secret);
    }
    builder.build().map_err(|e| e.to_string())
}
