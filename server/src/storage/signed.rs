//! Signed URLs: time-limited download links and one-shot upload links.
//!
//! A token is an ES256 JWT signed with the project's key, with claims
//! `{url: "bucket/name", typ, ref, iat, exp}` (upload tokens add `owner`,
//! `upsert` and a random `jti`). An upload token is one-shot: its `jti` is
//! claimed in `storage.used_upload_tokens` when an upload through it starts
//! (a replay, even a concurrent one, is refused), released if that upload
//! fails so the client may retry, and kept until the token expires. `typ` keeps the two kinds apart, and the missing `role`
//! claim means a signed-URL token is never accepted as an API key. Creating
//! a link requires the caller to be allowed the operation (RLS); using it
//! then needs no key.

use axum::Json;
use axum::body::Body;
use axum::extract::Query;
use axum::http::{HeaderMap, Method};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use super::buckets;
use super::objects::{self, DownloadQuery, ObjectRow, Uploaded, parse_target, select_as_owner};
use super::{BucketPath, Ctx, ObjectPath, Params, StorageError, StorageResult, now_secs, owner_of};
use crate::crypto::{JwtError, SigningKey};
use crate::db::begin_as;
use crate::error::AppJson;
use crate::tenant::Tenant;

/// `typ` of download tokens.
pub(crate) const SIGN: &str = "storage.sign";
const UPLOAD: &str = "storage.upload";

/// Longest validity of a signed URL (one year).
const MAX_EXPIRES_IN: i64 = 365 * 24 * 3600;

/// Validity of signed upload URLs (two hours, as in Supabase).
const UPLOAD_EXPIRES_IN: i64 = 2 * 3600;

fn sign_token(tenant: &Tenant, claims: &Value) -> StorageResult<String> {
    let key = tenant
        .project
        .keys
        .first()
        .ok_or_else(|| StorageError::Unavailable("the project has no signing key".into()))?;
    key.sign(claims)
        .map_err(|e| StorageError::Unavailable(format!("cannot sign: {e}")))
}

/// Verifies a signed-URL token of kind `typ` for `url` (`bucket/name`).
pub fn verify(tenant: &Tenant, token: &str, typ: &str, url: &str) -> StorageResult<Value> {
    let claims: Value = SigningKey::verify_any(&tenant.project.keys, token).map_err(|e| {
        StorageError::InvalidSignature(match e {
            JwtError::Expired => "The signed URL has expired.".to_owned(),
            other => format!("The signed URL token is invalid: {other}."),
        })
    })?;
    let ok = claims["ref"].as_str() == Some(tenant.project.project_ref.as_str())
        && claims["typ"].as_str() == Some(typ)
        && claims["url"].as_str() == Some(url);
    if !ok {
        return Err(StorageError::InvalidSignature(
            "The signed URL token does not match this object.".into(),
        ));
    }
    Ok(claims)
}

fn expires_in(v: &Value) -> StorageResult<i64> {
    let n = v
        .as_i64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()));
    match n {
        Some(n) if (1..=MAX_EXPIRES_IN).contains(&n) => Ok(n),
        _ => Err(StorageError::InvalidRequest(format!(
            "expiresIn must be a number of seconds between 1 and {MAX_EXPIRES_IN}."
        ))),
    }
}

fn signed_download(tenant: &Tenant, row: &ObjectRow, secs: i64) -> StorageResult<String> {
    let url = format!("{}/{}", row.bucket_id, row.name);
    let now = now_secs();
    let token = sign_token(
        tenant,
        &json!({"url": url, "typ": SIGN, "ref": tenant.project.project_ref, "iat": now, "exp": now + secs}),
    )?;
    Ok(format!("/object/sign/{url}?token={token}"))
}

/// Body of `POST /object/sign/{bucket}/{path}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct SignBody {
    /// Validity in seconds.
    #[serde(rename = "expiresIn")]
    #[schema(value_type = i64)]
    pub expires_in: Value,
    /// An image transform baked into the URL (`/render/image/sign/…`).
    pub transform: Option<super::transform::Transform>,
}

/// `POST /storage/v1/object/sign/{bucket}/{path}`: a signed download URL
/// for an object the caller may read.
#[utoipa::path(post, path = "/p/{ref}/storage/v1/object/sign/{bucket}/{path}", tag = "storage",
    params(("ref" = String, Path, description = "Project ref"), ("bucket" = String, Path, description = "Bucket id"),
        ("path" = String, Path, description = "Object name")), request_body = SignBody,
    responses((status = 200, description = "`{signedURL}`, relative to /storage/v1"),
        (status = 404, description = "No such object (or not visible)")))]
pub async fn sign(
    ctx: Ctx,
    Params(ObjectPath { bucket, path }): Params<ObjectPath>,
    headers: HeaderMap,
    body: Result<AppJson<SignBody>, crate::error::ApiError>,
) -> StorageResult<Json<Value>> {
    let caller = ctx.caller(&headers)?;
    let (bucket, name) = parse_target(&bucket, &path)?;
    let AppJson(body) = body?;
    let secs = expires_in(&body.expires_in)?;
    let row = objects::select_visible(&ctx, &caller, bucket.as_str(), name.as_str()).await?;
    let url = match &body.transform {
        None => signed_download(&ctx.tenant, &row, secs)?,
        Some(t) => {
            t.validate()?;
            let url = format!("{}/{}", row.bucket_id, row.name);
            let now = now_secs();
            let token = sign_token(
                &ctx.tenant,
                &json!({"url": url, "typ": SIGN, "ref": ctx.tenant.project.project_ref,
                    "transform": t, "iat": now, "exp": now + secs}),
            )?;
            format!("/render/image/sign/{url}?token={token}")
        }
    };
    Ok(Json(json!({ "signedURL": url })))
}

/// Body of `POST /object/sign/{bucket}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct SignManyBody {
    /// Validity in seconds.
    #[serde(rename = "expiresIn")]
    #[schema(value_type = i64)]
    pub expires_in: Value,
    /// Object names.
    pub paths: Vec<String>,
}

/// `POST /storage/v1/object/sign/{bucket}`: signed URLs for several objects.
#[utoipa::path(post, path = "/p/{ref}/storage/v1/object/sign/{bucket}", tag = "storage",
    params(("ref" = String, Path, description = "Project ref"), ("bucket" = String, Path, description = "Bucket id")),
    request_body = SignManyBody,
    responses((status = 200, description = "`[{path, signedURL, error}]`")))]
pub async fn sign_many(
    ctx: Ctx,
    Params(BucketPath { bucket }): Params<BucketPath>,
    headers: HeaderMap,
    body: Result<AppJson<SignManyBody>, crate::error::ApiError>,
) -> StorageResult<Json<Vec<Value>>> {
    let caller = ctx.caller(&headers)?;
    let bucket = super::names::BucketId::parse(&bucket)?;
    let AppJson(body) = body?;
    let secs = expires_in(&body.expires_in)?;
    if body.paths.len() > 1000 {
        return Err(StorageError::InvalidRequest(
            "At most 1000 paths can be signed at once.".into(),
        ));
    }
    let mut client = ctx.owner().await?;
    let tx = begin_as(&mut client, &caller.role, &caller.claims, ctx.timeout_ms()).await?;
    let rows = tx
        .query(
            &format!(
                "select {} from storage.objects where bucket_id = $1 and name = any($2)",
                objects::ROW_COLUMNS
            ),
            &[&bucket.as_str(), &body.paths],
        )
        .await?;
    tx.commit().await?;
    let found: std::collections::HashMap<String, ObjectRow> = rows
        .iter()
        .map(ObjectRow::from_row)
        .map(|r| (r.name.clone(), r))
        .collect();
    let mut out = Vec::with_capacity(body.paths.len());
    for path in &body.paths {
        match found.get(path) {
            Some(row) => out.push(json!({
                "path": path, "error": null,
                "signedURL": signed_download(&ctx.tenant, row, secs)?,
            })),
            None => out.push(json!({
                "path": path, "signedURL": null,
                "error": "Either the object does not exist or you do not have access to it",
            })),
        }
    }
    Ok(Json(out))
}

/// `GET /storage/v1/object/sign/{bucket}/{path}?token=…`: downloads through
/// a signed URL (no key needed).
#[utoipa::path(get, path = "/p/{ref}/storage/v1/object/sign/{bucket}/{path}", tag = "storage",
    params(("ref" = String, Path, description = "Project ref"), ("bucket" = String, Path, description = "Bucket id"),
        ("path" = String, Path, description = "Object name"), ("token" = String, Query, description = "Signed URL token")),
    responses((status = 200, description = "The bytes"), (status = 400, description = "Invalid or expired token")))]
pub async fn download_signed(
    ctx: Ctx,
    method: Method,
    Params(ObjectPath { bucket, path }): Params<ObjectPath>,
    Query(q): Query<DownloadQuery>,
    headers: HeaderMap,
) -> StorageResult<Response> {
    let (bucket, name) = parse_target(&bucket, &path)?;
    let token = q
        .token
        .as_deref()
        .ok_or_else(|| StorageError::InvalidSignature("The signed URL has no token.".into()))?;
    verify(
        &ctx.tenant,
        token,
        SIGN,
        &format!("{}/{}", bucket.as_str(), name.as_str()),
    )?;
    let row = select_as_owner(&ctx, bucket.as_str(), name.as_str()).await?;
    objects::serve(&ctx, &row, &method, &headers, q.download.as_deref()).await
}

/// `POST /storage/v1/object/upload/sign/{bucket}/{path}`: a signed upload
/// URL (valid two hours), if the caller may create (or, with `x-upsert`,
/// overwrite) that object.
#[utoipa::path(post, path = "/p/{ref}/storage/v1/object/upload/sign/{bucket}/{path}", tag = "storage",
    params(("ref" = String, Path, description = "Project ref"), ("bucket" = String, Path, description = "Bucket id"),
        ("path" = String, Path, description = "Object name")),
    responses((status = 200, description = "`{url, token}`"), (status = 403, description = "Refused by RLS"),
        (status = 409, description = "Exists")))]
pub async fn sign_upload(
    ctx: Ctx,
    Params(ObjectPath { bucket, path }): Params<ObjectPath>,
    headers: HeaderMap,
) -> StorageResult<Json<Value>> {
    let caller = ctx.caller(&headers)?;
    let (bucket, name) = parse_target(&bucket, &path)?;
    let upsert = headers
        .get("x-upsert")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let mut client = ctx.owner().await?;
    buckets::load(&client, bucket.as_str()).await?;
    // RLS and conflicts decide now, when the link is made.
    objects::may_write(
        &mut client,
        ctx.timeout_ms(),
        &caller,
        bucket.as_str(),
        name.as_str(),
        upsert,
    )
    .await?;
    let url = format!("{}/{}", bucket.as_str(), name.as_str());
    let now = now_secs();
    let token = sign_token(
        &ctx.tenant,
        &json!({
            "url": url, "typ": UPLOAD, "ref": ctx.tenant.project.project_ref,
            "owner": owner_of(&caller), "upsert": upsert, "iat": now, "exp": now + UPLOAD_EXPIRES_IN,
            "jti": crate::crypto::random_token(16),
        }),
    )?;
    Ok(Json(json!({
        "url": format!("/object/upload/sign/{url}?token={token}"),
        "token": token,
    })))
}

/// `PUT /storage/v1/object/upload/sign/{bucket}/{path}?token=…`: uploads
/// through a signed upload URL (no key needed).
#[utoipa::path(put, path = "/p/{ref}/storage/v1/object/upload/sign/{bucket}/{path}", tag = "storage",
    params(("ref" = String, Path, description = "Project ref"), ("bucket" = String, Path, description = "Bucket id"),
        ("path" = String, Path, description = "Object name"), ("token" = String, Query, description = "Upload token")),
    responses((status = 200, body = Uploaded), (status = 400, description = "Invalid, expired or already used token")))]
pub async fn upload_signed(
    ctx: Ctx,
    Params(ObjectPath { bucket, path }): Params<ObjectPath>,
    Query(q): Query<DownloadQuery>,
    headers: HeaderMap,
    body: Body,
) -> StorageResult<Json<Uploaded>> {
    let (bucket_id, name) = parse_target(&bucket, &path)?;
    let token = q
        .token
        .as_deref()
        .ok_or_else(|| StorageError::InvalidSignature("The signed URL has no token.".into()))?;
    let key = format!("{}/{}", bucket_id.as_str(), name.as_str());
    let claims = verify(&ctx.tenant, token, UPLOAD, &key)?;
    let jti = claims["jti"].as_str().unwrap_or_default().to_owned();
    let exp = claims["exp"].as_i64().unwrap_or_default();
    let bucket = {
        let client = ctx.owner().await?;
        let bucket = buckets::load(&client, bucket_id.as_str()).await?;
        claim_upload_token(&client, &jti, exp).await?;
        bucket
    };
    let upsert = claims["upsert"].as_bool().unwrap_or(false);
    // Allowed when the link was made; the row is written as the service
    // role on behalf of the link's creator.
    let mut row_claims = json!({"role": "service_role", "ref": ctx.tenant.project.project_ref});
    if let Some(owner) = claims["owner"].as_str() {
        row_claims["sub"] = json!(owner);
    }
    let uploaded = objects::upload_request(
        &ctx,
        bucket,
        name,
        crate::tenant::Caller {
            role: "service_role".into(),
            claims: row_claims,
        },
        upsert,
        &headers,
        body,
    )
    .await;
    match uploaded {
        Ok(id) => Ok(Json(Uploaded { id, key })),
        Err(e) => {
            // The upload did not happen: the link may be used again.
            if let Ok(client) = ctx.owner().await
                && let Err(db) = client
                    .execute(
                        "delete from storage.used_upload_tokens where jti = $1",
                        &[&jti],
                    )
                    .await
            {
                tracing::warn!(error = %db, "could not release a signed upload token");
            }
            Err(e)
        }
    }
}

/// Claims the one-shot upload token `jti` (valid until `exp`); refuses a
/// token that has no `jti` (made before links were one-shot) or was used.
async fn claim_upload_token(
    client: &tokio_postgres::Client,
    jti: &str,
    exp: i64,
) -> StorageResult<()> {
    let used = || StorageError::InvalidSignature("The signed upload URL was already used.".into());
    if jti.is_empty() {
        return Err(used());
    }
    let claimed = client
        .execute(
            "insert into storage.used_upload_tokens (jti, expires_at) values ($1, to_timestamp($2::float8)) \
             on conflict (jti) do nothing",
            &[&jti, &(exp as f64)],
        )
        .await?;
    if claimed == 0 {
        return Err(used());
    }
    // Forget expired claims now and then (about 1 upload in 64).
    if crate::crypto::random_bytes(1)[0] < 4 {
        client
            .execute(
                "delete from storage.used_upload_tokens where expires_at < now()",
                &[],
            )
            .await?;
    }
    Ok(())
}
