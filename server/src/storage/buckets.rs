//! `/storage/v1/bucket`: create, list, get, update, empty and delete
//! buckets. Every statement runs as the caller, so RLS on `storage.buckets`
//! decides (no policy exists by default: only the service role may manage
//! buckets until the project adds policies).

use axum::Json;
use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::names::BucketId;
use super::{Ctx, IdPath, Message, Params, StorageError, StorageResult, owner_of};
use crate::db::begin_as;
use crate::error::AppJson;

/// A bucket, as Supabase Storage describes it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Bucket {
    /// Id (also its name).
    pub id: String,
    /// Name (same as id).
    pub name: String,
    /// User that created it (`""` when none: clients expect a string).
    #[serde(serialize_with = "owner_string")]
    #[schema(value_type = String)]
    pub owner: Option<Uuid>,
    /// Whether objects are readable without a key at `/object/public/…`.
    pub public: bool,
    /// Largest object accepted, in bytes (`null`: the global limit).
    pub file_size_limit: Option<i64>,
    /// Accepted content types (`image/*` wildcards); `null`: any.
    pub allowed_mime_types: Option<Vec<String>>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

fn owner_string<S: serde::Serializer>(owner: &Option<Uuid>, s: S) -> Result<S::Ok, S::Error> {
    match owner {
        Some(u) => s.collect_str(u),
        None => s.serialize_str(""),
    }
}

const COLUMNS: &str =
    "id, name, owner, public, file_size_limit, allowed_mime_types, created_at, updated_at";

impl Bucket {
    fn from_row(row: &tokio_postgres::Row) -> Self {
        Self {
            id: row.get(0),
            name: row.get(1),
            owner: row.get(2),
            public: row.get(3),
            file_size_limit: row.get(4),
            allowed_mime_types: row.get(5),
            created_at: row.get(6),
            updated_at: row.get(7),
        }
    }

    /// The effective upload limit: the bucket's, capped by the global one.
    pub fn limit(&self, global: u64) -> u64 {
        match self.file_size_limit {
            Some(l) if l >= 0 => (l as u64).min(global),
            _ => global,
        }
    }
}

/// Loads a bucket as the owner (settings are not secret to the data plane:
/// object operations need them whatever the caller may see).
pub async fn load(client: &tokio_postgres::Client, id: &str) -> StorageResult<Bucket> {
    let row = client
        .query_opt(
            &format!("select {COLUMNS} from storage.buckets where id = $1"),
            &[&id],
        )
        .await?
        .ok_or(StorageError::BucketNotFound)?;
    Ok(Bucket::from_row(&row))
}

/// A size limit: a number of bytes, or a string such as `"20MB"`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum SizeLimit {
    /// Bytes.
    Bytes(i64),
    /// With a unit: B, KB, MB, GB (powers of 1024).
    Text(String),
    /// Explicit null: no bucket limit.
    None,
}

fn parse_size(limit: &Option<SizeLimit>) -> StorageResult<Option<i64>> {
    let Some(limit) = limit else { return Ok(None) };
    let bad = || {
        StorageError::InvalidRequest(
            "file_size_limit must be a number of bytes or a size like \"20MB\".".into(),
        )
    };
    match limit {
        SizeLimit::None => Ok(None),
        SizeLimit::Bytes(n) if *n >= 0 => Ok(Some(*n)),
        SizeLimit::Bytes(_) => Err(bad()),
        SizeLimit::Text(t) => {
            let t = t.trim().to_ascii_uppercase();
            let digits: String = t.chars().take_while(|c| c.is_ascii_digit()).collect();
            let unit = t[digits.len()..].trim();
            let n: i64 = digits.parse().map_err(|_| bad())?;
            let mul: i64 = match unit {
                "" | "B" => 1,
                "K" | "KB" => 1 << 10,
                "M" | "MB" => 1 << 20,
                "G" | "GB" => 1 << 30,
                _ => return Err(bad()),
            };
            n.checked_mul(mul).map(Some).ok_or_else(bad)
        }
    }
}

fn check_mimes(m: &Option<Vec<String>>) -> StorageResult<()> {
    for t in m.iter().flatten() {
        let ok = t.len() <= 255
            && t.split_once('/').is_some_and(|(a, b)| {
                !a.is_empty()
                    && !b.is_empty()
                    && t.bytes().all(|c| c.is_ascii_graphic() && c != b',')
            });
        if !ok {
            return Err(StorageError::InvalidRequest(format!(
                "allowed_mime_types: {t:?} is not a mime type such as \"image/png\" or \"image/*\"."
            )));
        }
    }
    Ok(())
}

/// Body of `POST /bucket`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct CreateBucket {
    /// Bucket id (defaults to `name`).
    pub id: Option<String>,
    /// Bucket name.
    pub name: Option<String>,
    /// Public read access.
    #[serde(default)]
    pub public: bool,
    /// Size limit.
    pub file_size_limit: Option<SizeLimit>,
    /// Allowed content types.
    pub allowed_mime_types: Option<Vec<String>>,
}

/// Body of `PUT /bucket/{id}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct UpdateBucket {
    /// Public read access (unchanged when absent).
    pub public: Option<bool>,
    /// Size limit (unchanged when absent, removed when null).
    #[serde(default, deserialize_with = "some_or_null")]
    pub file_size_limit: Option<Option<SizeLimit>>,
    /// Allowed content types (unchanged when absent, removed when null).
    #[serde(default, deserialize_with = "some_or_null")]
    pub allowed_mime_types: Option<Option<Vec<String>>>,
}

fn some_or_null<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// `{name}` answer of bucket creation.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Created {
    /// The new bucket's id.
    pub name: String,
}

/// `GET /storage/v1/bucket`: buckets the caller may see.
#[utoipa::path(get, path = "/p/{ref}/storage/v1/bucket", tag = "storage",
    params(("ref" = String, Path, description = "Project ref")),
    responses((status = 200, body = Vec<Bucket>), (status = 401, description = "No or bad key")))]
pub async fn list(ctx: Ctx, headers: HeaderMap) -> StorageResult<Json<Vec<Bucket>>> {
    let caller = ctx.caller(&headers)?;
    let mut client = ctx.owner().await?;
    let tx = begin_as(&mut client, &caller.role, &caller.claims, ctx.timeout_ms()).await?;
    let rows = tx
        .query(
            &format!("select {COLUMNS} from storage.buckets order by id"),
            &[],
        )
        .await?;
    tx.commit().await?;
    Ok(Json(rows.iter().map(Bucket::from_row).collect()))
}

/// `GET /storage/v1/bucket/{id}`.
#[utoipa::path(get, path = "/p/{ref}/storage/v1/bucket/{id}", tag = "storage",
    params(("ref" = String, Path, description = "Project ref"), ("id" = String, Path, description = "Bucket id")),
    responses((status = 200, body = Bucket), (status = 404, description = "No such bucket")))]
pub async fn get(
    ctx: Ctx,
    Params(IdPath { id }): Params<IdPath>,
    headers: HeaderMap,
) -> StorageResult<Json<Bucket>> {
    let caller = ctx.caller(&headers)?;
    let id = BucketId::parse(&id)?;
    let mut client = ctx.owner().await?;
    let tx = begin_as(&mut client, &caller.role, &caller.claims, ctx.timeout_ms()).await?;
    let row = tx
        .query_opt(
            &format!("select {COLUMNS} from storage.buckets where id = $1"),
            &[&id.as_str()],
        )
        .await?
        .ok_or(StorageError::BucketNotFound)?;
    tx.commit().await?;
    Ok(Json(Bucket::from_row(&row)))
}

/// `POST /storage/v1/bucket`: creates a bucket.
#[utoipa::path(post, path = "/p/{ref}/storage/v1/bucket", tag = "storage",
    params(("ref" = String, Path, description = "Project ref")), request_body = CreateBucket,
    responses((status = 200, body = Created), (status = 400, description = "Invalid name or settings"),
        (status = 403, description = "Refused by RLS"), (status = 409, description = "Exists")))]
pub async fn create(
    ctx: Ctx,
    headers: HeaderMap,
    body: Result<AppJson<CreateBucket>, crate::error::ApiError>,
) -> StorageResult<Json<Created>> {
    let caller = ctx.caller(&headers)?;
    let AppJson(body) = body?;
    let raw =
        body.id.as_deref().or(body.name.as_deref()).ok_or_else(|| {
            StorageError::InvalidRequest("The bucket needs an id or a name.".into())
        })?;
    let id = BucketId::parse(raw)?;
    if let Some(name) = &body.name
        && name != id.as_str()
    {
        return Err(StorageError::InvalidRequest(
            "The bucket name must equal its id.".into(),
        ));
    }
    let limit = parse_size(&body.file_size_limit)?;
    check_mimes(&body.allowed_mime_types)?;
    let mut client = ctx.owner().await?;
    let tx = begin_as(&mut client, &caller.role, &caller.claims, ctx.timeout_ms()).await?;
    let result = tx
        .execute(
            "insert into storage.buckets (id, name, owner, public, file_size_limit, allowed_mime_types) \
             values ($1, $1, $2, $3, $4, $5)",
            &[&id.as_str(), &owner_of(&caller), &body.public, &limit, &body.allowed_mime_types],
        )
        .await;
    match result {
        Ok(_) => {}
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) => {
            return Err(StorageError::BucketExists);
        }
        Err(e) => return Err(e.into()),
    }
    tx.commit().await?;
    Ok(Json(Created {
        name: id.as_str().to_owned(),
    }))
}

/// `PUT /storage/v1/bucket/{id}`: changes public, size limit, mime types.
#[utoipa::path(put, path = "/p/{ref}/storage/v1/bucket/{id}", tag = "storage",
    params(("ref" = String, Path, description = "Project ref"), ("id" = String, Path, description = "Bucket id")),
    request_body = UpdateBucket,
    responses((status = 200, body = Message), (status = 404, description = "No such bucket (or not visible)")))]
pub async fn update(
    ctx: Ctx,
    Params(IdPath { id }): Params<IdPath>,
    headers: HeaderMap,
    body: Result<AppJson<UpdateBucket>, crate::error::ApiError>,
) -> StorageResult<Json<Message>> {
    let caller = ctx.caller(&headers)?;
    let id = BucketId::parse(&id)?;
    let AppJson(body) = body?;
    let limit = body.file_size_limit.as_ref().map(parse_size).transpose()?;
    if let Some(m) = &body.allowed_mime_types {
        check_mimes(m)?;
    }
    let mut client = ctx.owner().await?;
    let tx = begin_as(&mut client, &caller.role, &caller.claims, ctx.timeout_ms()).await?;
    let n = tx
        .execute(
            "update storage.buckets set \
               public = coalesce($2, public), \
               file_size_limit = case when $3 then $4 else file_size_limit end, \
               allowed_mime_types = case when $5 then $6 else allowed_mime_types end, \
               updated_at = now() \
             where id = $1",
            &[
                &id.as_str(),
                &body.public,
                &limit.is_some(),
                &limit.flatten(),
                &body.allowed_mime_types.is_some(),
                &body.allowed_mime_types.clone().flatten(),
            ],
        )
        .await?;
    if n == 0 {
        return Err(StorageError::BucketNotFound);
    }
    tx.commit().await?;
    Ok(Message::json("Successfully updated"))
}

/// `POST /storage/v1/bucket/{id}/empty`: deletes the objects the caller may delete.
#[utoipa::path(post, path = "/p/{ref}/storage/v1/bucket/{id}/empty", tag = "storage",
    params(("ref" = String, Path, description = "Project ref"), ("id" = String, Path, description = "Bucket id")),
    responses((status = 200, body = Message), (status = 404, description = "No such bucket")))]
pub async fn empty(
    ctx: Ctx,
    Params(IdPath { id }): Params<IdPath>,
    headers: HeaderMap,
) -> StorageResult<Json<Message>> {
    let caller = ctx.caller(&headers)?;
    let id = BucketId::parse(&id)?;
    let storage = ctx.store()?;
    let mut client = ctx.owner().await?;
    let tx = begin_as(&mut client, &caller.role, &caller.claims, ctx.timeout_ms()).await?;
    let visible = tx
        .query_opt(
            "select 1 from storage.buckets where id = $1",
            &[&id.as_str()],
        )
        .await?;
    if visible.is_none() {
        return Err(StorageError::BucketNotFound);
    }
    tx.execute(
        "delete from storage.objects where bucket_id = $1",
        &[&id.as_str()],
    )
    .await?;
    tx.commit().await?;
    storage
        .drain(&client, ctx.project_id(), id.as_str())
        .await?;
    Ok(Message::json("Successfully emptied"))
}

/// `DELETE /storage/v1/bucket/{id}`: deletes an empty bucket.
#[utoipa::path(delete, path = "/p/{ref}/storage/v1/bucket/{id}", tag = "storage",
    params(("ref" = String, Path, description = "Project ref"), ("id" = String, Path, description = "Bucket id")),
    responses((status = 200, body = Message), (status = 404, description = "No such bucket"),
        (status = 409, description = "Not empty")))]
pub async fn delete(
    ctx: Ctx,
    Params(IdPath { id }): Params<IdPath>,
    headers: HeaderMap,
) -> StorageResult<Json<Message>> {
    let caller = ctx.caller(&headers)?;
    let id = BucketId::parse(&id)?;
    let storage = ctx.store()?;
    let mut client = ctx.owner().await?;
    let tx = begin_as(&mut client, &caller.role, &caller.claims, ctx.timeout_ms()).await?;
    let result = tx
        .execute("delete from storage.buckets where id = $1", &[&id.as_str()])
        .await;
    let n = match result {
        Ok(n) => n,
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::FOREIGN_KEY_VIOLATION) => {
            return Err(StorageError::BucketNotEmpty);
        }
        Err(e) => return Err(e.into()),
    };
    if n == 0 {
        return Err(StorageError::BucketNotFound);
    }
    tx.commit().await?;
    // Parts of unfinished resumable uploads and replaced bytes go too.
    storage
        .drain(&client, ctx.project_id(), id.as_str())
        .await?;
    super::tus::forget_bucket(storage, &client, ctx.project_id(), id.as_str()).await?;
    Ok(Message::json("Successfully deleted"))
}
