//! Objects: upload (raw body or multipart form, `x-upsert`/PUT to
//! overwrite), download (authenticated or public, `Range`, `ETag`), info,
//! list, move, copy and delete. Row statements run as the caller, so RLS on
//! `storage.objects` decides; bytes stream between the client and the
//! backend without being held in memory.

use axum::Json;
use axum::body::Body;
use axum::extract::Query;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use base64::Engine as _;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::{Stream, StreamExt};
use object_store::{GetOptions, GetRange, GetResultPayload};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use super::buckets::{self, Bucket};
use super::names::{BucketId, ObjectName, mime_allowed};
use super::{
    BucketPath, Ctx, Message, ObjectPath, Params, Storage, StorageError, StorageResult, http_date,
    owner_of,
};
use crate::db::begin_as;
use crate::error::AppJson;
use crate::tenant::Caller;

/// Content type recorded when the client sends none.
const DEFAULT_MIME: &str = "application/octet-stream";

/// Largest number of names in one delete or sign request.
const MAX_BATCH: usize = 1000;

/// An object row.
#[derive(Debug, Clone)]
pub struct ObjectRow {
    /// Row id.
    pub id: Uuid,
    /// Bucket.
    pub bucket_id: String,
    /// Name (path) in the bucket.
    pub name: String,
    /// User that uploaded it.
    pub owner: Option<Uuid>,
    /// Generation of the bytes (the backend key).
    pub version: String,
    /// `{size, mimetype, eTag, cacheControl, lastModified, …}`.
    pub metadata: Value,
    /// Metadata given by the uploader.
    pub user_metadata: Option<Value>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last overwritten or moved.
    pub updated_at: DateTime<Utc>,
    /// Last accessed.
    pub last_accessed_at: DateTime<Utc>,
}

pub(crate) const ROW_COLUMNS: &str = "id, bucket_id, name, owner, version, metadata, user_metadata, \
     created_at, updated_at, last_accessed_at";

impl ObjectRow {
    pub(crate) fn from_row(row: &tokio_postgres::Row) -> Self {
        Self {
            id: row.get(0),
            bucket_id: row.get(1),
            name: row.get(2),
            owner: row.get(3),
            version: row.get(4),
            metadata: row.get::<_, Option<Value>>(5).unwrap_or(Value::Null),
            user_metadata: row.get(6),
            created_at: row.get(7),
            updated_at: row.get(8),
            last_accessed_at: row.get(9),
        }
    }

    fn size(&self) -> u64 {
        self.metadata["size"].as_u64().unwrap_or(0)
    }

    fn mimetype(&self) -> &str {
        self.metadata["mimetype"].as_str().unwrap_or(DEFAULT_MIME)
    }

    fn etag(&self) -> String {
        self.metadata["eTag"]
            .as_str()
            .map_or_else(|| format!("\"{}\"", self.version), str::to_owned)
    }

    fn cache_control(&self) -> &str {
        self.metadata["cacheControl"].as_str().unwrap_or("no-cache")
    }

    /// The Supabase shape of a listed or deleted object.
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "name": self.name,
            "bucket_id": self.bucket_id,
            "owner": self.owner,
            "owner_id": self.owner,
            "version": self.version,
            "metadata": self.metadata,
            "user_metadata": self.user_metadata,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "last_accessed_at": self.last_accessed_at,
        })
    }
}

/// Parses the bucket and object name of a path.
pub(crate) fn parse_target(bucket: &str, path: &str) -> StorageResult<(BucketId, ObjectName)> {
    Ok((BucketId::parse(bucket)?, ObjectName::parse(path)?))
}

/// The object `name` of `bucket` if the caller may read it (RLS).
pub(crate) async fn select_visible(
    ctx: &Ctx,
    caller: &Caller,
    bucket: &str,
    name: &str,
) -> StorageResult<ObjectRow> {
    let mut client = ctx.owner().await?;
    let tx = begin_as(&mut client, &caller.role, &caller.claims, ctx.timeout_ms()).await?;
    let row = tx
        .query_opt(
            &format!(
                "select {ROW_COLUMNS} from storage.objects where bucket_id = $1 and name = $2"
            ),
            &[&bucket, &name],
        )
        .await?;
    tx.commit().await?;
    row.map(|r| ObjectRow::from_row(&r))
        .ok_or(StorageError::ObjectNotFound)
}

/// Loads a row as the owner (public buckets, signed URLs).
pub(crate) async fn select_as_owner(
    ctx: &Ctx,
    bucket: &str,
    name: &str,
) -> StorageResult<ObjectRow> {
    let client = ctx.owner().await?;
    let row = client
        .query_opt(
            &format!(
                "select {ROW_COLUMNS} from storage.objects where bucket_id = $1 and name = $2"
            ),
            &[&bucket, &name],
        )
        .await?;
    row.map(|r| ObjectRow::from_row(&r))
        .ok_or(StorageError::ObjectNotFound)
}

// ---------------------------------------------------------------- uploads

/// Everything an upload needs besides the bytes.
pub(crate) struct UploadSpec {
    pub bucket: Bucket,
    pub name: ObjectName,
    pub content_type: String,
    pub cache_control: String,
    pub user_metadata: Option<Value>,
    pub upsert: bool,
    /// Role and claims the row is written with (RLS decides).
    pub role: String,
    pub claims: Value,
}

/// The row metadata of fresh bytes.
fn metadata(size: u64, spec: &UploadSpec, version: &str) -> Value {
    json!({
        "eTag": format!("\"{version}\""),
        "size": size,
        "mimetype": spec.content_type,
        "cacheControl": spec.cache_control,
        "lastModified": Utc::now(),
        "contentLength": size,
        "httpStatusCode": 200,
    })
}

/// Checks, before any byte is written, that the caller may write the row
/// (RLS, and a conflict when not overwriting): a dry run of the insert,
/// rolled back. The real write checks again.
pub(crate) async fn may_write(
    client: &mut tokio_postgres::Client,
    timeout_ms: u64,
    writer: &Caller,
    bucket: &str,
    name: &str,
    upsert: bool,
) -> StorageResult<()> {
    let owner = owner_of(writer);
    let tx = begin_as(client, &writer.role, &writer.claims, timeout_ms).await?;
    let sql = if upsert {
        "insert into storage.objects (bucket_id, name, owner, version) values ($1, $2, $3, 'dry-run') \
         on conflict (bucket_id, name) do update set version = excluded.version, owner = excluded.owner"
    } else {
        "insert into storage.objects (bucket_id, name, owner, version) values ($1, $2, $3, 'dry-run')"
    };
    tx.execute(sql, &[&bucket, &name, &owner]).await?;
    tx.rollback().await?;
    Ok(())
}

/// Writes bytes under a fresh version, then the row (as the caller), then
/// forgets the in-flight entry and deletes whatever bytes the row replaced.
/// On any failure nothing stays: no row, and the bytes are deleted.
pub(crate) async fn store_object<S, E>(
    ctx: &Ctx,
    spec: &UploadSpec,
    body: S,
    declared: Option<u64>,
) -> StorageResult<Uuid>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let storage = ctx.store()?;
    if !mime_allowed(
        spec.bucket.allowed_mime_types.as_deref(),
        &spec.content_type,
    ) {
        return Err(StorageError::MimeNotAllowed(spec.content_type.clone()));
    }
    let file_limit = spec.bucket.limit(storage.max_file_bytes);
    if declared.is_some_and(|n| n > file_limit) {
        return Err(StorageError::TooLarge(file_limit));
    }
    let quota = ctx.quota_bytes();
    let project = ctx.project_id();
    let bucket = spec.bucket.id.as_str();
    let version = Storage::new_version();
    let key = Storage::key(project, bucket, &version);
    let mut limit = file_limit;
    // A pooled connection only for the statements: it goes back to the pool
    // while the bytes stream (a slow client must not starve the project).
    {
        let mut client = ctx.owner().await?;
        let writer = Caller {
            role: spec.role.clone(),
            claims: spec.claims.clone(),
        };
        may_write(
            &mut client,
            ctx.timeout_ms(),
            &writer,
            bucket,
            spec.name.as_str(),
            spec.upsert,
        )
        .await?;
        // What the quota leaves, so bytes that cannot fit are not written.
        if let Some(left) = super::quota::remaining(&client, quota).await?
            && left < file_limit
        {
            limit = left;
        }
        if let Some(quota) = quota
            && declared.is_some_and(|n| n > limit)
        {
            return Err(super::quota::exceeded(quota));
        }
        storage
            .begin_upload(&client, bucket, &version, spec.name.as_str())
            .await?;
    }
    let size = match storage.write(&key, body, limit).await {
        Ok(size) => size,
        Err(e) => {
            let e = match (e, quota) {
                (StorageError::TooLarge(_), Some(quota)) if limit < file_limit => {
                    super::quota::exceeded(quota)
                }
                (e, _) => e,
            };
            // Without a connection now, the reaper deletes the bytes later.
            if let Ok(client) = ctx.owner().await {
                storage
                    .abandon_upload(&client, project, bucket, &version)
                    .await;
            }
            return Err(e);
        }
    };
    let mut client = ctx.owner().await?;
    let meta = metadata(size, spec, &version);
    let written = write_row(&mut client, ctx.timeout_ms(), quota, spec, &version, &meta).await;
    match written {
        Ok(id) => {
            storage.commit_upload(&client, bucket, &version).await?;
            storage.drain(&client, project, bucket).await?;
            Ok(id)
        }
        Err(e) => {
            storage
                .abandon_upload(&client, project, bucket, &version)
                .await;
            Err(e)
        }
    }
}

/// Inserts (or with `upsert`, overwrites) the row of fresh bytes as the
/// caller, refused when it takes the project over `quota`.
async fn write_row(
    client: &mut tokio_postgres::Client,
    timeout_ms: u64,
    quota: Option<u64>,
    spec: &UploadSpec,
    version: &str,
    meta: &Value,
) -> StorageResult<Uuid> {
    let owner = spec.claims["sub"]
        .as_str()
        .and_then(|s| Uuid::parse_str(s).ok());
    let tx = begin_as(client, &spec.role, &spec.claims, timeout_ms).await?;
    super::quota::arm(&tx, quota).await?;
    let sql = if spec.upsert {
        "insert into storage.objects (bucket_id, name, owner, metadata, user_metadata, version) \
         values ($1, $2, $3, $4, $5, $6) \
         on conflict (bucket_id, name) do update set owner = excluded.owner, metadata = excluded.metadata, \
           user_metadata = excluded.user_metadata, version = excluded.version, \
           updated_at = now(), last_accessed_at = now() \
         returning id"
    } else {
        "insert into storage.objects (bucket_id, name, owner, metadata, user_metadata, version) \
         values ($1, $2, $3, $4, $5, $6) returning id"
    };
    let row = tx
        .query_one(
            sql,
            &[
                &spec.bucket.id,
                &spec.name.as_str(),
                &owner,
                meta,
                &spec.user_metadata,
                &version,
            ],
        )
        .await?;
    tx.commit().await?;
    Ok(row.get(0))
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn is_true(v: Option<&str>) -> bool {
    v.is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// `cacheControl` as clients send it: seconds (`"3600"`) or a full header value.
fn cache_control(v: Option<&str>) -> String {
    match v.map(str::trim).filter(|v| !v.is_empty()) {
        None => "no-cache".into(),
        Some(v) if v.bytes().all(|b| b.is_ascii_digit()) => format!("max-age={v}"),
        Some(v) => v.chars().filter(|c| !c.is_control()).take(200).collect(),
    }
}

fn user_metadata_json(text: &str) -> StorageResult<Value> {
    let v: Value = serde_json::from_str(text)
        .map_err(|_| StorageError::InvalidRequest("The metadata must be a JSON object.".into()))?;
    if !v.is_object() {
        return Err(StorageError::InvalidRequest(
            "The metadata must be a JSON object.".into(),
        ));
    }
    Ok(v)
}

/// `x-metadata`: base64 of a JSON object.
fn header_metadata(headers: &HeaderMap) -> StorageResult<Option<Value>> {
    let Some(raw) = header_str(headers, "x-metadata") else {
        return Ok(None);
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(raw.trim())
        .map_err(|_| StorageError::InvalidRequest("x-metadata must be base64 JSON.".into()))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| StorageError::InvalidRequest("x-metadata must be base64 JSON.".into()))?;
    user_metadata_json(&text).map(Some)
}

/// Reads an upload request (raw body or `multipart/form-data`) and stores it.
pub(crate) async fn upload_request(
    ctx: &Ctx,
    bucket: Bucket,
    name: ObjectName,
    writer: Caller,
    upsert: bool,
    headers: &HeaderMap,
    body: Body,
) -> StorageResult<Uuid> {
    let Caller { role, claims } = writer;
    let content_type = header_str(headers, "content-type")
        .unwrap_or(DEFAULT_MIME)
        .to_owned();
    let declared = header_str(headers, "content-length").and_then(|v| v.parse::<u64>().ok());
    if let Ok(boundary) = multer::parse_boundary(&content_type)
        && content_type
            .to_ascii_lowercase()
            .starts_with("multipart/form-data")
    {
        let limits = multer::SizeLimit::new()
            .for_field("cacheControl", 1024)
            .for_field("metadata", 64 * 1024)
            .for_field("contentType", 1024);
        let mut form = multer::Multipart::with_constraints(
            ctx.body_stream(body),
            boundary,
            multer::Constraints::new().size_limit(limits),
        );
        let mut cache = header_str(headers, "cache-control").map(str::to_owned);
        let mut meta = header_metadata(headers)?;
        let mut mime: Option<String> = None;
        loop {
            let field = form.next_field().await.map_err(|e| {
                StorageError::InvalidRequest(format!("The multipart body is malformed: {e}"))
            })?;
            let Some(field) = field else {
                return Err(StorageError::InvalidRequest(
                    "The multipart body has no file part.".into(),
                ));
            };
            let fname = field.name().unwrap_or_default().to_owned();
            let is_file = field.file_name().is_some() || fname.is_empty() || fname == "file";
            if !is_file {
                let text = field.text().await.map_err(|e| {
                    StorageError::InvalidRequest(format!(
                        "The multipart field {fname:?} is invalid: {e}"
                    ))
                })?;
                match fname.as_str() {
                    "cacheControl" => cache = Some(text),
                    "metadata" => meta = Some(user_metadata_json(&text)?),
                    "contentType" => mime = Some(text),
                    _ => {}
                }
                continue;
            }
            let content_type = field
                .content_type()
                .map(ToString::to_string)
                .or(mime)
                .unwrap_or_else(|| DEFAULT_MIME.to_owned());
            let spec = UploadSpec {
                bucket,
                name,
                content_type,
                cache_control: cache_control(cache.as_deref()),
                user_metadata: meta,
                upsert,
                role,
                claims,
            };
            return store_object(ctx, &spec, field, None).await;
        }
    }
    let spec = UploadSpec {
        bucket,
        name,
        content_type,
        cache_control: cache_control(header_str(headers, "cache-control")),
        user_metadata: header_metadata(headers)?,
        upsert,
        role,
        claims,
    };
    store_object(ctx, &spec, ctx.body_stream(body), declared).await
}

/// `{Id, Key}` answer of an upload.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Uploaded {
    /// Row id.
    #[serde(rename = "Id")]
    pub id: Uuid,
    /// `bucket/name`.
    #[serde(rename = "Key")]
    pub key: String,
}

/// `POST|PUT /storage/v1/object/{bucket}/{path}`: uploads an object. POST
/// creates (409 when it exists) unless `x-upsert: true`; PUT overwrites.
#[utoipa::path(method(post, put), path = "/p/{ref}/storage/v1/object/{bucket}/{path}", tag = "storage",
    params(("ref" = String, Path, description = "Project ref"), ("bucket" = String, Path, description = "Bucket id"),
        ("path" = String, Path, description = "Object name"),
        ("x-upsert" = Option<String>, Header, description = "`true` to overwrite")),
    request_body(content = Vec<u8>, description = "The bytes (raw, or multipart/form-data with a file part)", content_type = "application/octet-stream"),
    responses((status = 200, body = Uploaded), (status = 400, description = "Invalid name or body"),
        (status = 403, description = "Refused by RLS"), (status = 404, description = "No such bucket"),
        (status = 409, description = "Exists"), (status = 413, description = "Too large"),
        (status = 415, description = "Mime type not allowed")))]
pub async fn upload(
    ctx: Ctx,
    method: Method,
    Params(ObjectPath { bucket, path }): Params<ObjectPath>,
    headers: HeaderMap,
    body: Body,
) -> StorageResult<Json<Uploaded>> {
    let caller = ctx.caller(&headers)?;
    let (bucket_id, name) = parse_target(&bucket, &path)?;
    let bucket = {
        let client = ctx.owner().await?;
        buckets::load(&client, bucket_id.as_str()).await?
    };
    let upsert = method == Method::PUT || is_true(header_str(&headers, "x-upsert"));
    let key = format!("{}/{}", bucket_id.as_str(), name.as_str());
    let id = upload_request(&ctx, bucket, name, caller, upsert, &headers, body).await?;
    Ok(Json(Uploaded { id, key }))
}

// -------------------------------------------------------------- downloads

/// Query of downloads: `?download` or `?download=name.ext` asks for an attachment.
#[derive(Debug, Default, Deserialize)]
pub struct DownloadQuery {
    /// Attachment file name (empty: the object's own).
    pub download: Option<String>,
    /// Signed URL token.
    pub token: Option<String>,
}

/// A single byte range, inclusive, or `None` for the whole object.
/// Unparseable or multi-range headers are ignored (RFC 9110 allows it).
fn parse_range(value: Option<&str>, size: u64) -> StorageResult<Option<(u64, u64)>> {
    let Some(spec) = value.and_then(|v| v.trim().strip_prefix("bytes=")) else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Ok(None);
    };
    let (a, b) = (a.trim(), b.trim());
    let range = if a.is_empty() {
        let Ok(n) = b.parse::<u64>() else {
            return Ok(None);
        };
        if n == 0 || size == 0 {
            return Err(StorageError::RangeNotSatisfiable(size));
        }
        (size.saturating_sub(n), size - 1)
    } else {
        let Ok(start) = a.parse::<u64>() else {
            return Ok(None);
        };
        let end = if b.is_empty() {
            u64::MAX
        } else {
            match b.parse::<u64>() {
                Ok(e) if e >= start => e,
                _ => return Ok(None),
            }
        };
        if start >= size {
            return Err(StorageError::RangeNotSatisfiable(size));
        }
        (start, end.min(size - 1))
    };
    Ok(Some(range))
}

fn etag_matches(if_none_match: &str, etag: &str) -> bool {
    let bare = etag.trim_start_matches("W/");
    if_none_match
        .split(',')
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t == bare)
}

fn set(resp: &mut Response, name: header::HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().insert(name, v);
    }
}

/// Answers a download of `row`: `ETag`/`If-None-Match` (304), `Range`
/// (206/416), `Cache-Control`, `Content-Disposition`; the body streams from
/// the backend.
pub(crate) async fn serve(
    ctx: &Ctx,
    row: &ObjectRow,
    method: &Method,
    headers: &HeaderMap,
    download: Option<&str>,
) -> StorageResult<Response> {
    let storage = ctx.store()?;
    let size = row.size();
    let etag = row.etag();
    let mut base = Response::new(Body::empty());
    set(&mut base, header::ETAG, &etag);
    set(&mut base, header::CACHE_CONTROL, row.cache_control());
    set(&mut base, header::LAST_MODIFIED, &http_date(row.updated_at));
    set(&mut base, header::ACCEPT_RANGES, "bytes");
    // User content is served from the API's origin: never sniffed, and an
    // HTML or SVG object opened directly runs no script (images still display).
    set(&mut base, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(
        &mut base,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; img-src 'self' data:; media-src 'self'; style-src 'unsafe-inline'; sandbox",
    );
    if let Some(inm) = header_str(headers, "if-none-match")
        && etag_matches(inm, &etag)
    {
        *base.status_mut() = StatusCode::NOT_MODIFIED;
        return Ok(base);
    }
    set(&mut base, header::CONTENT_TYPE, row.mimetype());
    if let Some(name) = download {
        let fallback = row.name.rsplit('/').next().unwrap_or("download");
        let file = if name.is_empty() { fallback } else { name };
        let encoded =
            percent_encoding::utf8_percent_encode(file, percent_encoding::NON_ALPHANUMERIC);
        set(
            &mut base,
            header::CONTENT_DISPOSITION,
            &format!("attachment; filename*=UTF-8''{encoded}"),
        );
    }
    let range = parse_range(header_str(headers, "range"), size)?;
    let (status, len, get_range) = match range {
        Some((a, b)) => {
            set(
                &mut base,
                header::CONTENT_RANGE,
                &format!("bytes {a}-{b}/{size}"),
            );
            (
                StatusCode::PARTIAL_CONTENT,
                b - a + 1,
                Some(GetRange::Bounded(a..b + 1)),
            )
        }
        None => (StatusCode::OK, size, None),
    };
    *base.status_mut() = status;
    set(&mut base, header::CONTENT_LENGTH, &len.to_string());
    if method == Method::HEAD || len == 0 {
        return Ok(base);
    }
    let key = Storage::key(ctx.project_id(), &row.bucket_id, &row.version);
    let result = storage
        .get(
            &key,
            GetOptions {
                range: get_range,
                ..GetOptions::default()
            },
        )
        .await?;
    let body = match result.payload {
        GetResultPayload::File(file, _) => local_file_body(file, result.range),
        GetResultPayload::Stream(stream) => {
            Body::from_stream(stream.map(|r| r.map_err(std::io::Error::other)))
        }
    };
    let (parts, _) = base.into_parts();
    Ok(Response::from_parts(parts, body))
}

/// Read size for local files. object_store streams them in 8 KiB reads,
/// which caps a download at a fraction of the disk's speed.
const LOCAL_READ_CHUNK: u64 = 256 * 1024;

/// Streams `range` of a local file in large reads (never the whole file in memory).
fn local_file_body(file: std::fs::File, range: std::ops::Range<u64>) -> Body {
    use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
    let file = tokio::fs::File::from_std(file);
    let state = (file, range.start, range.end, false);
    let stream =
        futures_util::stream::try_unfold(state, |(mut file, pos, end, seeked)| async move {
            if pos >= end {
                return Ok::<_, std::io::Error>(None);
            }
            if !seeked {
                file.seek(std::io::SeekFrom::Start(pos)).await?;
            }
            let want = usize::try_from((end - pos).min(LOCAL_READ_CHUNK)).unwrap_or(64 * 1024);
            let mut buf = vec![0u8; want];
            let n = file.read(&mut buf).await?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "stored object is shorter than its metadata",
                ));
            }
            buf.truncate(n);
            Ok(Some((Bytes::from(buf), (file, pos + n as u64, end, true))))
        });
    Body::from_stream(stream)
}

/// `GET|HEAD /storage/v1/object/{bucket}/{path}` (also `/object/authenticated/…`):
/// downloads an object the caller may read.
#[utoipa::path(method(get, head), path = "/p/{ref}/storage/v1/object/{bucket}/{path}", tag = "storage",
    params(("ref" = String, Path, description = "Project ref"), ("bucket" = String, Path, description = "Bucket id"),
        ("path" = String, Path, description = "Object name")),
    responses((status = 200, description = "The bytes"), (status = 206, description = "A range"),
        (status = 304, description = "Not modified"), (status = 404, description = "No such object (or not visible)"),
        (status = 416, description = "Range not satisfiable")))]
pub async fn download(
    ctx: Ctx,
    method: Method,
    Params(ObjectPath { bucket, path }): Params<ObjectPath>,
    Query(q): Query<DownloadQuery>,
    headers: HeaderMap,
) -> StorageResult<Response> {
    let caller = ctx.caller(&headers)?;
    let (bucket, name) = parse_target(&bucket, &path)?;
    let row = select_visible(&ctx, &caller, bucket.as_str(), name.as_str()).await?;
    serve(&ctx, &row, &method, &headers, q.download.as_deref()).await
}

/// `GET|HEAD /storage/v1/object/public/{bucket}/{path}`: downloads from a
/// public bucket, no key needed.
#[utoipa::path(method(get, head), path = "/p/{ref}/storage/v1/object/public/{bucket}/{path}", tag = "storage",
    params(("ref" = String, Path, description = "Project ref"), ("bucket" = String, Path, description = "Bucket id"),
        ("path" = String, Path, description = "Object name")),
    responses((status = 200, description = "The bytes"), (status = 404, description = "No such object or bucket not public")))]
pub async fn download_public(
    ctx: Ctx,
    method: Method,
    Params(ObjectPath { bucket, path }): Params<ObjectPath>,
    Query(q): Query<DownloadQuery>,
    headers: HeaderMap,
) -> StorageResult<Response> {
    let (bucket, name) = parse_target(&bucket, &path)?;
    let b = {
        let client = ctx.owner().await?;
        buckets::load(&client, bucket.as_str()).await?
    };
    if !b.public {
        return Err(StorageError::BucketNotFound);
    }
    let row = select_as_owner(&ctx, bucket.as_str(), name.as_str()).await?;
    serve(&ctx, &row, &method, &headers, q.download.as_deref()).await
}

/// `GET /storage/v1/object/info/{bucket}/{path}`: an object's metadata.
#[utoipa::path(get, path = "/p/{ref}/storage/v1/object/info/{bucket}/{path}", tag = "storage",
    params(("ref" = String, Path, description = "Project ref"), ("bucket" = String, Path, description = "Bucket id"),
        ("path" = String, Path, description = "Object name")),
    responses((status = 200, description = "Object info"), (status = 404, description = "No such object (or not visible)")))]
pub async fn info(
    ctx: Ctx,
    Params(ObjectPath { bucket, path }): Params<ObjectPath>,
    headers: HeaderMap,
) -> StorageResult<Json<Value>> {
    let caller = ctx.caller(&headers)?;
    let (bucket, name) = parse_target(&bucket, &path)?;
    let row = select_visible(&ctx, &caller, bucket.as_str(), name.as_str()).await?;
    Ok(Json(json!({
        "id": row.id,
        "name": row.name,
        "bucket_id": row.bucket_id,
        "version": row.version,
        "owner": row.owner,
        "size": row.size(),
        "content_type": row.mimetype(),
        "cache_control": row.cache_control(),
        "etag": row.etag(),
        "metadata": row.user_metadata,
        "last_modified": row.updated_at,
        "created_at": row.created_at,
    })))
}

// ------------------------------------------------------------------ list

/// `sortBy` of a list request.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct SortBy {
    /// `name`, `created_at`, `updated_at` or `last_accessed_at`.
    pub column: Option<String>,
    /// `asc` or `desc`.
    pub order: Option<String>,
}

/// Body of `POST /object/list/{bucket}`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct ListBody {
    /// Folder to list (`""`: the top level).
    #[serde(default)]
    pub prefix: Option<String>,
    /// At most this many entries (default 100, at most 1000).
    pub limit: Option<i64>,
    /// Skip this many.
    pub offset: Option<i64>,
    /// Sort order.
    #[serde(rename = "sortBy")]
    pub sort_by: Option<SortBy>,
    /// Only entries whose name starts with this (case-insensitive).
    pub search: Option<String>,
}

fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 1);
    for c in s.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// `POST /storage/v1/object/list/{bucket}`: one folder level, folders first
/// (`id: null`), then objects the caller may read.
#[utoipa::path(post, path = "/p/{ref}/storage/v1/object/list/{bucket}", tag = "storage",
    params(("ref" = String, Path, description = "Project ref"), ("bucket" = String, Path, description = "Bucket id")),
    request_body = ListBody,
    responses((status = 200, description = "Entries"), (status = 400, description = "Invalid input")))]
pub async fn list(
    ctx: Ctx,
    Params(BucketPath { bucket }): Params<BucketPath>,
    headers: HeaderMap,
    body: Result<AppJson<ListBody>, crate::error::ApiError>,
) -> StorageResult<Json<Vec<Value>>> {
    let caller = ctx.caller(&headers)?;
    let bucket = BucketId::parse(&bucket)?;
    let AppJson(body) = body?;
    let mut prefix = body.prefix.unwrap_or_default();
    let trimmed = prefix.trim_start_matches('/').to_owned();
    prefix = trimmed;
    if !prefix.is_empty() {
        ObjectName::parse(prefix.trim_end_matches('/'))?;
        if !prefix.ends_with('/') {
            prefix.push('/');
        }
    }
    let levels = prefix.matches('/').count() as i32 + 1;
    let limit = body.limit.unwrap_or(100).clamp(1, 1000);
    let offset = body.offset.unwrap_or(0).max(0);
    let sort = body.sort_by.unwrap_or_default();
    let column = match sort.column.as_deref().unwrap_or("name") {
        "name" => "name",
        "created_at" => "created_at",
        "updated_at" => "updated_at",
        "last_accessed_at" => "last_accessed_at",
        other => {
            return Err(StorageError::InvalidRequest(format!(
                "sortBy.column {other:?} is not one of name, created_at, updated_at, last_accessed_at."
            )));
        }
    };
    let order = match sort
        .order
        .as_deref()
        .unwrap_or("asc")
        .to_ascii_lowercase()
        .as_str()
    {
        "asc" => "asc",
        "desc" => "desc",
        _ => {
            return Err(StorageError::InvalidRequest(
                "sortBy.order must be asc or desc.".into(),
            ));
        }
    };
    let search = like_escape(body.search.as_deref().unwrap_or(""));
    // Identifiers come from the whitelists above; values are bound.
    let sql = format!(
        "with matches as ( \
           select path_tokens, id, updated_at, created_at, last_accessed_at, metadata \
           from storage.objects \
           where bucket_id = $1 and starts_with(name, $2) and path_tokens[$3] ilike $4 \
         ), entries as ( \
           select distinct path_tokens[$3] as name, null::uuid as id, null::timestamptz as updated_at, \
                  null::timestamptz as created_at, null::timestamptz as last_accessed_at, null::jsonb as metadata, 0 as kind \
           from matches where array_length(path_tokens, 1) > $3 \
           union all \
           select path_tokens[$3], id, updated_at, created_at, last_accessed_at, metadata, 1 \
           from matches where array_length(path_tokens, 1) = $3 \
         ) \
         select name, id, updated_at, created_at, last_accessed_at, metadata from entries \
         order by kind, {column} {order} nulls last, name {order} \
         limit $5 offset $6"
    );
    let mut client = ctx.owner().await?;
    let tx = begin_as(&mut client, &caller.role, &caller.claims, ctx.timeout_ms()).await?;
    let rows = tx
        .query(
            &sql,
            &[&bucket.as_str(), &prefix, &levels, &search, &limit, &offset],
        )
        .await?;
    tx.commit().await?;
    Ok(Json(
        rows.iter()
            .map(|r| {
                json!({
                    "name": r.get::<_, String>(0),
                    "id": r.get::<_, Option<Uuid>>(1),
                    "updated_at": r.get::<_, Option<DateTime<Utc>>>(2),
                    "created_at": r.get::<_, Option<DateTime<Utc>>>(3),
                    "last_accessed_at": r.get::<_, Option<DateTime<Utc>>>(4),
                    "metadata": r.get::<_, Option<Value>>(5),
                })
            })
            .collect(),
    ))
}

// ----------------------------------------------------- move, copy, delete

/// Body of `/object/move` and `/object/copy`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct MoveBody {
    /// Source bucket.
    #[serde(rename = "bucketId")]
    pub bucket_id: String,
    /// Source name.
    #[serde(rename = "sourceKey")]
    pub source_key: String,
    /// Destination name.
    #[serde(rename = "destinationKey")]
    pub destination_key: String,
    /// Destination bucket (default: the source bucket).
    #[serde(rename = "destinationBucket")]
    pub destination_bucket: Option<String>,
}

struct Transfer {
    src_bucket: BucketId,
    src: ObjectName,
    dst_bucket: BucketId,
    dst: ObjectName,
}

fn parse_transfer(b: &MoveBody) -> StorageResult<Transfer> {
    let src_bucket = BucketId::parse(&b.bucket_id)?;
    let dst_bucket = match &b.destination_bucket {
        Some(d) if !d.is_empty() => BucketId::parse(d)?,
        _ => src_bucket.clone(),
    };
    Ok(Transfer {
        src: ObjectName::parse(&b.source_key)?,
        dst: ObjectName::parse(&b.destination_key)?,
        src_bucket,
        dst_bucket,
    })
}

/// Copies the bytes of `row` to a fresh version in `dst_bucket` after
/// checking that bucket's limits; returns the new version (recorded in flight).
async fn copy_bytes(
    ctx: &Ctx,
    client: &tokio_postgres::Client,
    row: &ObjectRow,
    dst_bucket: &Bucket,
    dst: &ObjectName,
) -> StorageResult<String> {
    let storage = ctx.store()?;
    if !mime_allowed(dst_bucket.allowed_mime_types.as_deref(), row.mimetype()) {
        return Err(StorageError::MimeNotAllowed(row.mimetype().to_owned()));
    }
    let limit = dst_bucket.limit(storage.max_file_bytes);
    if row.size() > limit {
        return Err(StorageError::TooLarge(limit));
    }
    let quota = ctx.quota_bytes();
    if let (Some(quota), Some(left)) = (quota, super::quota::remaining(client, quota).await?)
        && row.size() > left
    {
        return Err(super::quota::exceeded(quota));
    }
    let project = ctx.project_id();
    let version = Storage::new_version();
    storage
        .begin_upload(client, &dst_bucket.id, &version, dst.as_str())
        .await?;
    let from = Storage::key(project, &row.bucket_id, &row.version);
    let to = Storage::key(project, &dst_bucket.id, &version);
    if let Err(e) = storage.copy(&from, &to).await {
        storage
            .abandon_upload(client, project, &dst_bucket.id, &version)
            .await;
        return Err(e);
    }
    Ok(version)
}

fn copied_metadata(row: &ObjectRow, version: &str) -> Value {
    let mut meta = row.metadata.clone();
    meta["eTag"] = json!(format!("\"{version}\""));
    meta["lastModified"] = json!(Utc::now());
    meta
}

/// `POST /storage/v1/object/move`: renames an object (within or across buckets).
#[utoipa::path(post, path = "/p/{ref}/storage/v1/object/move", tag = "storage",
    params(("ref" = String, Path, description = "Project ref")), request_body = MoveBody,
    responses((status = 200, body = Message), (status = 404, description = "No such object"),
        (status = 409, description = "Destination exists")))]
pub async fn move_object(
    ctx: Ctx,
    headers: HeaderMap,
    body: Result<AppJson<MoveBody>, crate::error::ApiError>,
) -> StorageResult<Json<Message>> {
    let caller = ctx.caller(&headers)?;
    let AppJson(body) = body?;
    let t = parse_transfer(&body)?;
    let storage = ctx.store()?;
    let project = ctx.project_id();
    if t.src_bucket == t.dst_bucket {
        let mut client = ctx.owner().await?;
        let tx = begin_as(&mut client, &caller.role, &caller.claims, ctx.timeout_ms()).await?;
        let n = tx
            .execute(
                "update storage.objects set name = $3, updated_at = now() where bucket_id = $1 and name = $2",
                &[&t.src_bucket.as_str(), &t.src.as_str(), &t.dst.as_str()],
            )
            .await?;
        if n == 0 {
            return Err(StorageError::ObjectNotFound);
        }
        tx.commit().await?;
        return Ok(Message::json("Successfully moved"));
    }
    let row = select_visible(&ctx, &caller, t.src_bucket.as_str(), t.src.as_str()).await?;
    let mut client = ctx.owner().await?;
    let dst_bucket = buckets::load(&client, t.dst_bucket.as_str()).await?;
    let version = copy_bytes(&ctx, &client, &row, &dst_bucket, &t.dst).await?;
    let meta = copied_metadata(&row, &version);
    let result: StorageResult<()> = async {
        let tx = begin_as(&mut client, &caller.role, &caller.claims, ctx.timeout_ms()).await?;
        let n = tx
            .execute(
                "update storage.objects set bucket_id = $3, name = $4, version = $5, metadata = $6, \
                 updated_at = now() where bucket_id = $1 and name = $2 and version = $7",
                &[
                    &t.src_bucket.as_str(),
                    &t.src.as_str(),
                    &t.dst_bucket.as_str(),
                    &t.dst.as_str(),
                    &version,
                    &meta,
                    &row.version,
                ],
            )
            .await?;
        if n == 0 {
            return Err(StorageError::ObjectNotFound);
        }
        tx.commit().await?;
        Ok(())
    }
    .await;
    if let Err(e) = result {
        storage
            .abandon_upload(&client, project, t.dst_bucket.as_str(), &version)
            .await;
        return Err(e);
    }
    storage
        .commit_upload(&client, t.dst_bucket.as_str(), &version)
        .await?;
    storage
        .drain(&client, project, t.src_bucket.as_str())
        .await?;
    Ok(Message::json("Successfully moved"))
}

/// `POST /storage/v1/object/copy`: copies an object (within or across buckets).
#[utoipa::path(post, path = "/p/{ref}/storage/v1/object/copy", tag = "storage",
    params(("ref" = String, Path, description = "Project ref")), request_body = MoveBody,
    responses((status = 200, description = "`{Key}` of the copy"), (status = 404, description = "No such object"),
        (status = 409, description = "Destination exists")))]
pub async fn copy_object(
    ctx: Ctx,
    headers: HeaderMap,
    body: Result<AppJson<MoveBody>, crate::error::ApiError>,
) -> StorageResult<Json<Value>> {
    let caller = ctx.caller(&headers)?;
    let AppJson(body) = body?;
    let t = parse_transfer(&body)?;
    let storage = ctx.store()?;
    let project = ctx.project_id();
    let upsert = is_true(header_str(&headers, "x-upsert"));
    let row = select_visible(&ctx, &caller, t.src_bucket.as_str(), t.src.as_str()).await?;
    let mut client = ctx.owner().await?;
    let dst_bucket = buckets::load(&client, t.dst_bucket.as_str()).await?;
    let version = copy_bytes(&ctx, &client, &row, &dst_bucket, &t.dst).await?;
    let spec = UploadSpec {
        bucket: dst_bucket,
        name: t.dst.clone(),
        content_type: row.mimetype().to_owned(),
        cache_control: row.cache_control().to_owned(),
        user_metadata: row.user_metadata.clone(),
        upsert,
        role: caller.role.clone(),
        claims: caller.claims.clone(),
    };
    let meta = copied_metadata(&row, &version);
    let quota = ctx.quota_bytes();
    match write_row(&mut client, ctx.timeout_ms(), quota, &spec, &version, &meta).await {
        Ok(id) => {
            storage
                .commit_upload(&client, t.dst_bucket.as_str(), &version)
                .await?;
            storage
                .drain(&client, project, t.dst_bucket.as_str())
                .await?;
            Ok(Json(json!({
                "Id": id,
                "Key": format!("{}/{}", t.dst_bucket.as_str(), t.dst.as_str()),
            })))
        }
        Err(e) => {
            storage
                .abandon_upload(&client, project, t.dst_bucket.as_str(), &version)
                .await;
            Err(e)
        }
    }
}

/// Body of `DELETE /object/{bucket}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct DeleteMany {
    /// Object names to delete.
    pub prefixes: Vec<String>,
}

async fn delete_names(
    ctx: &Ctx,
    caller: &Caller,
    bucket: &BucketId,
    names: &[String],
) -> StorageResult<Vec<ObjectRow>> {
    let storage = ctx.store()?;
    let mut client = ctx.owner().await?;
    let tx = begin_as(&mut client, &caller.role, &caller.claims, ctx.timeout_ms()).await?;
    let rows = tx
        .query(
            &format!(
                "delete from storage.objects where bucket_id = $1 and name = any($2) returning {ROW_COLUMNS}"
            ),
            &[&bucket.as_str(), &names],
        )
        .await?;
    tx.commit().await?;
    storage
        .drain(&client, ctx.project_id(), bucket.as_str())
        .await?;
    Ok(rows.iter().map(ObjectRow::from_row).collect())
}

/// `DELETE /storage/v1/object/{bucket}`: deletes the named objects the
/// caller may delete; answers the deleted ones.
#[utoipa::path(delete, path = "/p/{ref}/storage/v1/object/{bucket}", tag = "storage",
    params(("ref" = String, Path, description = "Project ref"), ("bucket" = String, Path, description = "Bucket id")),
    request_body = DeleteMany,
    responses((status = 200, description = "Deleted objects"), (status = 400, description = "Invalid names")))]
pub async fn delete_many(
    ctx: Ctx,
    Params(BucketPath { bucket }): Params<BucketPath>,
    headers: HeaderMap,
    body: Result<AppJson<DeleteMany>, crate::error::ApiError>,
) -> StorageResult<Json<Vec<Value>>> {
    let caller = ctx.caller(&headers)?;
    let bucket = BucketId::parse(&bucket)?;
    let AppJson(body) = body?;
    if body.prefixes.len() > MAX_BATCH {
        return Err(StorageError::InvalidRequest(format!(
            "At most {MAX_BATCH} objects can be deleted at once."
        )));
    }
    for name in &body.prefixes {
        ObjectName::parse(name)?;
    }
    let rows = delete_names(&ctx, &caller, &bucket, &body.prefixes).await?;
    Ok(Json(rows.iter().map(ObjectRow::to_json).collect()))
}

/// `DELETE /storage/v1/object/{bucket}/{path}`: deletes one object.
#[utoipa::path(delete, path = "/p/{ref}/storage/v1/object/{bucket}/{path}", tag = "storage",
    params(("ref" = String, Path, description = "Project ref"), ("bucket" = String, Path, description = "Bucket id"),
        ("path" = String, Path, description = "Object name")),
    responses((status = 200, body = Message), (status = 404, description = "No such object (or not deletable)")))]
pub async fn delete_one(
    ctx: Ctx,
    Params(ObjectPath { bucket, path }): Params<ObjectPath>,
    headers: HeaderMap,
) -> StorageResult<Json<Message>> {
    let caller = ctx.caller(&headers)?;
    let (bucket, name) = parse_target(&bucket, &path)?;
    let rows = delete_names(&ctx, &caller, &bucket, &[name.as_str().to_owned()]).await?;
    if rows.is_empty() {
        return Err(StorageError::ObjectNotFound);
    }
    Ok(Message::json("Successfully deleted"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range(Some("bytes=0-9"), 100).unwrap(), Some((0, 9)));
        assert_eq!(parse_range(Some("bytes=90-"), 100).unwrap(), Some((90, 99)));
        assert_eq!(parse_range(Some("bytes=-10"), 100).unwrap(), Some((90, 99)));
        assert_eq!(
            parse_range(Some("bytes=-1000"), 100).unwrap(),
            Some((0, 99))
        );
        assert_eq!(
            parse_range(Some("bytes=50-5000"), 100).unwrap(),
            Some((50, 99))
        );
        assert_eq!(parse_range(Some("bytes=0-1,5-6"), 100).unwrap(), None);
        assert_eq!(parse_range(Some("items=0-1"), 100).unwrap(), None);
        assert_eq!(parse_range(Some("bytes=9-1"), 100).unwrap(), None);
        assert!(parse_range(Some("bytes=100-"), 100).is_err());
        assert!(parse_range(Some("bytes=-0"), 100).is_err());
        assert!(parse_range(Some("bytes=0-"), 0).is_err());
    }

    #[test]
    fn etags_and_like() {
        assert!(etag_matches("\"a\"", "\"a\""));
        assert!(etag_matches("W/\"a\", \"b\"", "\"a\""));
        assert!(etag_matches("*", "\"a\""));
        assert!(!etag_matches("\"b\"", "\"a\""));
        assert_eq!(like_escape("a_b%c\\"), "a\\_b\\%c\\\\%");
        assert_eq!(cache_control(Some("3600")), "max-age=3600");
        assert_eq!(cache_control(None), "no-cache");
    }
}
