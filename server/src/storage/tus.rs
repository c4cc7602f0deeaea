//! Resumable uploads with the TUS 1.0.0 protocol at
//! `/storage/v1/upload/resumable` (core + creation, creation-with-upload,
//! termination, expiration), as Supabase Storage serves them to
//! `tus-js-client`.
//!
//! Each `PATCH` streams its chunk into its own part object
//! (`…/_resumable/{id}/{n}`), so any backend works and nothing is held in
//! memory; the progress lives in `storage.resumable_uploads`, so any server
//! node can take the next chunk. When the last byte arrives the parts are
//! streamed, in order, into an ordinary upload (multipart to S3 underneath
//! for large objects): the metadata row is written with the creator's
//! claims (RLS decides once more), then the parts are deleted. Unfinished
//! uploads expire (`FERROBASE_STORAGE_RESUMABLE_EXPIRY_SECS`) and the
//! reaper removes them.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use futures_util::{StreamExt, TryStreamExt, stream};
use object_store::GetOptions;
use serde_json::Value;
use uuid::Uuid;

use super::buckets;
use super::names::{BucketId, ObjectName, mime_allowed};
use super::objects::{UploadSpec, store_object};
use super::{Ctx, IdPath, Params, Storage, StorageError, StorageResult, http_date};

const VERSION: &str = "1.0.0";

fn tus_headers(resp: &mut Response) {
    let h = resp.headers_mut();
    h.insert("tus-resumable", HeaderValue::from_static(VERSION));
    h.insert("cache-control", HeaderValue::from_static("no-store"));
}

fn set(resp: &mut Response, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().insert(name, v);
    }
}

/// Any failure, with the TUS version header.
#[derive(Debug)]
pub struct Tus(StorageError);

impl From<StorageError> for Tus {
    fn from(e: StorageError) -> Self {
        Tus(e)
    }
}

impl From<tokio_postgres::Error> for Tus {
    fn from(e: tokio_postgres::Error) -> Self {
        Tus(e.into())
    }
}

impl IntoResponse for Tus {
    fn into_response(self) -> Response {
        let mut resp = self.0.into_response();
        tus_headers(&mut resp);
        resp
    }
}

/// Result of the TUS handlers.
pub type TusResult = Result<Response, Tus>;

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn check_version(headers: &HeaderMap) -> Result<(), Tus> {
    match header(headers, "tus-resumable") {
        Some(VERSION) => Ok(()),
        _ => Err(Tus(StorageError::InvalidRequest(
            "Tus-Resumable: 1.0.0 is required.".into(),
        ))),
    }
}

/// `Upload-Metadata`: `key base64,key base64…`.
fn parse_metadata(raw: Option<&str>) -> StorageResult<std::collections::HashMap<String, String>> {
    let mut out = std::collections::HashMap::new();
    for pair in raw
        .unwrap_or_default()
        .split(',')
        .filter(|p| !p.trim().is_empty())
    {
        let mut it = pair.trim().splitn(2, ' ');
        let key = it.next().unwrap_or_default().to_owned();
        let value = match it.next() {
            Some(v) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(v.trim())
                    .map_err(|_| {
                        StorageError::InvalidRequest(format!(
                            "Upload-Metadata: {key} is not base64."
                        ))
                    })?;
                String::from_utf8(bytes).map_err(|_| {
                    StorageError::InvalidRequest(format!("Upload-Metadata: {key} is not UTF-8."))
                })?
            }
            None => String::new(),
        };
        out.insert(key, value);
    }
    Ok(out)
}

/// `OPTIONS`: what this server supports.
pub async fn options(ctx: Ctx) -> Response {
    let mut resp = StatusCode::NO_CONTENT.into_response();
    tus_headers(&mut resp);
    set(&mut resp, "tus-version", VERSION);
    set(
        &mut resp,
        "tus-extension",
        "creation,creation-with-upload,termination,expiration",
    );
    if let Ok(s) = ctx.store() {
        set(&mut resp, "tus-max-size", &s.max_file_bytes.to_string());
    }
    resp
}

struct Upload {
    id: String,
    bucket_id: String,
    name: String,
    role: String,
    claims: Value,
    length: i64,
    offset: i64,
    parts: i32,
    content_type: String,
    cache_control: String,
    user_metadata: Option<Value>,
    upsert: bool,
    expires_at: DateTime<Utc>,
}

const UPLOAD_COLUMNS: &str = "id, bucket_id, name, role, claims, upload_length, upload_offset, parts, \
     content_type, cache_control, user_metadata, upsert, expires_at";

impl Upload {
    fn from_row(r: &tokio_postgres::Row) -> Self {
        Self {
            id: r.get(0),
            bucket_id: r.get(1),
            name: r.get(2),
            role: r.get(3),
            claims: r.get(4),
            length: r.get(5),
            offset: r.get(6),
            parts: r.get(7),
            content_type: r.get(8),
            cache_control: r.get(9),
            user_metadata: r.get(10),
            upsert: r.get(11),
            expires_at: r.get(12),
        }
    }
}

/// Loads an unexpired upload of the same caller (role and subject).
async fn load(ctx: &Ctx, headers: &HeaderMap, id: &str) -> Result<Upload, Tus> {
    let caller = ctx.caller(headers)?;
    let client = ctx.owner().await.map_err(Tus)?;
    let row = client
        .query_opt(
            &format!("select {UPLOAD_COLUMNS} from storage.resumable_uploads where id = $1 and expires_at > now()"),
            &[&id],
        )
        .await?;
    let upload = row
        .map(|r| Upload::from_row(&r))
        .ok_or(Tus(StorageError::ObjectNotFound))?;
    if upload.role != caller.role || upload.claims["sub"] != caller.claims["sub"] {
        return Err(Tus(StorageError::ObjectNotFound));
    }
    Ok(upload)
}

/// `POST /storage/v1/upload/resumable`: creates an upload (metadata
/// `bucketName`, `objectName`, `contentType`, `cacheControl`, `metadata`),
/// optionally with its first chunk.
#[utoipa::path(post, path = "/p/{ref}/storage/v1/upload/resumable", tag = "storage",
    params(("ref" = String, Path, description = "Project ref"),
        ("Upload-Length" = u64, Header, description = "Total size"),
        ("Upload-Metadata" = String, Header, description = "bucketName, objectName, contentType, cacheControl (base64)")),
    responses((status = 201, description = "Created; `Location` names the upload"), (status = 403, description = "Refused by RLS"),
        (status = 413, description = "Too large"), (status = 415, description = "Mime type not allowed")))]
pub async fn create(ctx: Ctx, headers: HeaderMap, body: Body) -> TusResult {
    check_version(&headers)?;
    let caller = ctx.caller(&headers)?;
    let storage = ctx.store()?;
    if header(&headers, "upload-defer-length").is_some() {
        return Err(Tus(StorageError::InvalidRequest(
            "Upload-Defer-Length is not supported: send Upload-Length.".into(),
        )));
    }
    let length: i64 = header(&headers, "upload-length")
        .and_then(|v| v.parse().ok())
        .filter(|n: &i64| *n >= 0)
        .ok_or_else(|| {
            Tus(StorageError::InvalidRequest(
                "Upload-Length must be a non-negative integer.".into(),
            ))
        })?;
    let meta = parse_metadata(header(&headers, "upload-metadata"))?;
    let bucket_id = BucketId::parse(meta.get("bucketName").map_or("", String::as_str))?;
    let name = ObjectName::parse(meta.get("objectName").map_or("", String::as_str))?;
    let content_type = meta
        .get("contentType")
        .filter(|c| !c.is_empty())
        .cloned()
        .unwrap_or_else(|| "application/octet-stream".into());
    let cache_control = match meta.get("cacheControl").map(|c| c.trim()) {
        None | Some("") => "no-cache".to_owned(),
        Some(c) if c.bytes().all(|b| b.is_ascii_digit()) => format!("max-age={c}"),
        Some(c) => c.chars().filter(|c| !c.is_control()).take(200).collect(),
    };
    let user_metadata = match meta.get("metadata") {
        Some(m) if !m.is_empty() => Some(
            serde_json::from_str::<Value>(m)
                .ok()
                .filter(Value::is_object)
                .ok_or_else(|| {
                    Tus(StorageError::InvalidRequest(
                        "metadata must be a JSON object.".into(),
                    ))
                })?,
        ),
        _ => None,
    };
    let upsert = header(&headers, "x-upsert").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let mut client = ctx.owner().await?;
    let bucket = buckets::load(&client, bucket_id.as_str()).await?;
    if !mime_allowed(bucket.allowed_mime_types.as_deref(), &content_type) {
        return Err(Tus(StorageError::MimeNotAllowed(content_type)));
    }
    let limit = bucket.limit(storage.max_file_bytes);
    if length as u64 > limit {
        return Err(Tus(StorageError::TooLarge(limit)));
    }
    // Refuse now (RLS, conflict) rather than after the upload.
    super::objects::may_write(
        &mut client,
        ctx.timeout_ms(),
        &caller,
        bucket_id.as_str(),
        name.as_str(),
        upsert,
    )
    .await?;
    let id = crate::crypto::random_hex(16);
    let expiry_secs = storage.resumable_expiry.as_secs_f64();
    let tx = client.transaction().await?;
    super::quota::reserve_resumable(&tx, ctx.quota_bytes(), length as u64).await?;
    let row = tx
        .query_one(
            "insert into storage.resumable_uploads (id, bucket_id, name, role, claims, upload_length, \
               content_type, cache_control, user_metadata, upsert, expires_at) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, now() + make_interval(secs => $11)) \
             returning expires_at",
            &[
                &id,
                &bucket_id.as_str(),
                &name.as_str(),
                &caller.role,
                &caller.claims,
                &length,
                &content_type,
                &cache_control,
                &user_metadata,
                &upsert,
                &expiry_secs,
            ],
        )
        .await?;
    tx.commit().await?;
    drop(client);
    let expires: DateTime<Utc> = row.get(0);
    let location = format!(
        "{}/storage/v1/upload/resumable/{id}",
        ctx.app
            .platform
            .config()
            .project_url(&ctx.tenant.project.project_ref)
    );
    let with_data = header(&headers, "content-type")
        .is_some_and(|c| c.eq_ignore_ascii_case("application/offset+octet-stream"));
    let mut offset = 0;
    if length == 0 {
        let upload = load(&ctx, &headers, &id).await?;
        finish(&ctx, &upload).await?;
    } else if with_data {
        let upload = load(&ctx, &headers, &id).await?;
        offset = append(&ctx, &upload, body).await?;
    }
    let mut resp = StatusCode::CREATED.into_response();
    tus_headers(&mut resp);
    set(&mut resp, "location", &location);
    set(&mut resp, "upload-offset", &offset.to_string());
    set(&mut resp, "upload-expires", &http_date(expires));
    Ok(resp)
}

/// `HEAD /storage/v1/upload/resumable/{id}`: the current offset.
#[utoipa::path(head, path = "/p/{ref}/storage/v1/upload/resumable/{id}", tag = "storage",
    params(("ref" = String, Path, description = "Project ref"), ("id" = String, Path, description = "Upload id")),
    responses((status = 200, description = "`Upload-Offset` and `Upload-Length` headers"),
        (status = 404, description = "No such upload (or expired)")))]
pub async fn head(
    ctx: Ctx,
    Params(IdPath { id }): Params<IdPath>,
    headers: HeaderMap,
) -> TusResult {
    let upload = load(&ctx, &headers, &id).await?;
    let mut resp = StatusCode::OK.into_response();
    tus_headers(&mut resp);
    set(&mut resp, "upload-offset", &upload.offset.to_string());
    set(&mut resp, "upload-length", &upload.length.to_string());
    set(&mut resp, "upload-expires", &http_date(upload.expires_at));
    Ok(resp)
}

/// `PATCH /storage/v1/upload/resumable/{id}`: appends a chunk at `Upload-Offset`.
#[utoipa::path(patch, path = "/p/{ref}/storage/v1/upload/resumable/{id}", tag = "storage",
    params(("ref" = String, Path, description = "Project ref"), ("id" = String, Path, description = "Upload id"),
        ("Upload-Offset" = u64, Header, description = "Where this chunk starts")),
    responses((status = 204, description = "Stored; `Upload-Offset` is the new offset"),
        (status = 404, description = "No such upload (or expired)"), (status = 409, description = "Offset mismatch")))]
pub async fn patch(
    ctx: Ctx,
    Params(IdPath { id }): Params<IdPath>,
    headers: HeaderMap,
    body: Body,
) -> TusResult {
    check_version(&headers)?;
    if !header(&headers, "content-type")
        .is_some_and(|c| c.eq_ignore_ascii_case("application/offset+octet-stream"))
    {
        let mut resp = StatusCode::UNSUPPORTED_MEDIA_TYPE.into_response();
        tus_headers(&mut resp);
        return Ok(resp);
    }
    let upload = load(&ctx, &headers, &id).await?;
    let offset: Option<i64> = header(&headers, "upload-offset").and_then(|v| v.parse().ok());
    if offset != Some(upload.offset) {
        return Err(Tus(StorageError::OffsetMismatch(format!(
            "Upload-Offset must be {} for this upload.",
            upload.offset
        ))));
    }
    let new_offset = append(&ctx, &upload, body).await?;
    let mut resp = StatusCode::NO_CONTENT.into_response();
    tus_headers(&mut resp);
    set(&mut resp, "upload-offset", &new_offset.to_string());
    set(&mut resp, "upload-expires", &http_date(upload.expires_at));
    Ok(resp)
}

/// Stores one chunk as the next part; finishes the upload when complete.
async fn append(ctx: &Ctx, upload: &Upload, body: Body) -> Result<i64, Tus> {
    let storage = ctx.store()?;
    let project = ctx.project_id();
    let key = Storage::part_key(project, &upload.bucket_id, &upload.id, upload.parts);
    let room = (upload.length - upload.offset).max(0) as u64;
    let written = storage
        .write(&key, ctx.body_stream(body), room)
        .await
        .map_err(|e| match e {
            StorageError::TooLarge(_) => Tus(StorageError::InvalidRequest(
                "The chunk goes past Upload-Length.".into(),
            )),
            other => Tus(other),
        })?;
    let client = ctx.owner().await?;
    let new_offset = upload.offset + written as i64;
    let n = client
        .execute(
            "update storage.resumable_uploads set upload_offset = $2, parts = parts + 1 \
             where id = $1 and upload_offset = $3 and parts = $4",
            &[&upload.id, &new_offset, &upload.offset, &upload.parts],
        )
        .await?;
    if n == 0 {
        // Another request appended first: this chunk is discarded.
        storage.delete(&key).await?;
        return Err(Tus(StorageError::OffsetMismatch(
            "A concurrent request changed this upload's offset.".into(),
        )));
    }
    drop(client);
    if new_offset == upload.length {
        let done = Upload {
            offset: new_offset,
            parts: upload.parts + 1,
            id: upload.id.clone(),
            bucket_id: upload.bucket_id.clone(),
            name: upload.name.clone(),
            role: upload.role.clone(),
            claims: upload.claims.clone(),
            length: upload.length,
            content_type: upload.content_type.clone(),
            cache_control: upload.cache_control.clone(),
            user_metadata: upload.user_metadata.clone(),
            upsert: upload.upsert,
            expires_at: upload.expires_at,
        };
        finish(ctx, &done).await?;
    }
    Ok(new_offset)
}

/// Streams the parts into the final object and forgets the upload.
async fn finish(ctx: &Ctx, upload: &Upload) -> Result<(), Tus> {
    let storage = ctx.store()?;
    let project = ctx.project_id();
    let client = ctx.owner().await?;
    let bucket = buckets::load(&client, &upload.bucket_id).await?;
    drop(client);
    let spec = UploadSpec {
        bucket,
        name: ObjectName::parse(&upload.name)?,
        content_type: upload.content_type.clone(),
        cache_control: upload.cache_control.clone(),
        user_metadata: upload.user_metadata.clone(),
        upsert: upload.upsert,
        role: upload.role.clone(),
        claims: upload.claims.clone(),
    };
    let keys: Vec<_> = (0..upload.parts)
        .map(|n| Storage::part_key(project, &upload.bucket_id, &upload.id, n))
        .collect();
    let handle = ctx.storage.clone();
    type Parts =
        futures_util::stream::BoxStream<'static, Result<bytes::Bytes, object_store::Error>>;
    let parts: Parts = stream::iter(keys.clone())
        .then(
            move |key| -> futures_util::future::BoxFuture<
                'static,
                Result<Parts, object_store::Error>,
            > {
                let handle = handle.clone();
                Box::pin(async move {
                    let storage =
                        handle
                            .as_ref()
                            .as_ref()
                            .map_err(|e| object_store::Error::Generic {
                                store: "storage",
                                source: e.clone().into(),
                            })?;
                    match storage.get(&key, GetOptions::default()).await {
                        Ok(r) => Ok(r.into_stream()),
                        Err(StorageError::Backend(e)) => Err(e),
                        Err(other) => Err(object_store::Error::Generic {
                            store: "storage",
                            source: other.to_string().into(),
                        }),
                    }
                })
            },
        )
        .try_flatten()
        .boxed();
    let result = store_object(ctx, &spec, parts, Some(upload.length as u64)).await;
    forget(ctx, storage, &upload.id, &keys).await?;
    result.map(|_| ()).map_err(Tus)
}

async fn forget(
    ctx: &Ctx,
    storage: &Storage,
    id: &str,
    keys: &[object_store::path::Path],
) -> StorageResult<()> {
    let client = ctx.owner().await?;
    client
        .execute(
            "delete from storage.resumable_uploads where id = $1",
            &[&id],
        )
        .await?;
    for key in keys {
        storage.delete(key).await?;
    }
    Ok(())
}

/// `DELETE /storage/v1/upload/resumable/{id}`: abandons an upload.
#[utoipa::path(delete, path = "/p/{ref}/storage/v1/upload/resumable/{id}", tag = "storage",
    params(("ref" = String, Path, description = "Project ref"), ("id" = String, Path, description = "Upload id")),
    responses((status = 204, description = "Abandoned; its bytes are deleted"),
        (status = 404, description = "No such upload (or expired)")))]
pub async fn terminate(
    ctx: Ctx,
    Params(IdPath { id }): Params<IdPath>,
    headers: HeaderMap,
) -> TusResult {
    check_version(&headers)?;
    let storage = ctx.store()?;
    let upload = load(&ctx, &headers, &id).await?;
    let keys: Vec<_> = (0..upload.parts)
        .map(|n| Storage::part_key(ctx.project_id(), &upload.bucket_id, &upload.id, n))
        .collect();
    forget(&ctx, storage, &upload.id, &keys).await?;
    let mut resp = StatusCode::NO_CONTENT.into_response();
    tus_headers(&mut resp);
    Ok(resp)
}

/// Deletes expired uploads and their parts (called by the reaper).
pub(crate) async fn reap_expired(
    storage: &Storage,
    client: &tokio_postgres::Client,
    project: Uuid,
) -> StorageResult<usize> {
    let rows = client
        .query(
            "select id, bucket_id, parts from storage.resumable_uploads where expires_at <= now() limit 1000",
            &[],
        )
        .await?;
    for row in &rows {
        let (id, bucket, parts): (String, String, i32) = (row.get(0), row.get(1), row.get(2));
        for n in 0..=parts {
            storage
                .delete(&Storage::part_key(project, &bucket, &id, n))
                .await?;
        }
        client
            .execute(
                "delete from storage.resumable_uploads where id = $1",
                &[&id],
            )
            .await?;
    }
    Ok(rows.len())
}

/// After a bucket is deleted: removes parts of its unfinished uploads (the
/// rows went with the bucket).
pub(crate) async fn forget_bucket(
    storage: &Storage,
    _client: &tokio_postgres::Client,
    project: Uuid,
    bucket: &str,
) -> StorageResult<()> {
    storage.delete_prefix(project, bucket).await
}
