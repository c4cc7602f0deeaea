//! [`StorageClient`]: buckets and objects under `{project}/storage/v1`
//! (Supabase Storage-compatible), from [`Client::storage`].
//!
//! ```no_run
//! # async fn demo(client: ferrobase::Client) -> ferrobase::Result<()> {
//! let storage = client.storage();
//! storage.create_bucket("avatars", ferrobase::BucketOptions { public: true, ..Default::default() }).await?;
//! let avatars = storage.from("avatars");
//! avatars.upload("me.png", vec![0x89, b'P', b'N', b'G'], ferrobase::FileOptions::content_type("image/png")).await?;
//! let bytes = avatars.download("me.png").await?;
//! let link = avatars.create_signed_url("me.png", 60).await?;
//! # let _ = (bytes, link); Ok(()) }
//! ```

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use url::Url;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::http;

impl Client {
    /// The storage API of this project.
    pub fn storage(&self) -> StorageClient {
        StorageClient {
            client: self.clone(),
        }
    }
}

/// Bucket administration and access to one bucket's objects ([`StorageClient::from`]).
#[derive(Debug, Clone)]
pub struct StorageClient {
    client: Client,
}

/// A bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    /// Id (also its name).
    pub id: String,
    /// Name.
    pub name: String,
    /// Readable without a key through public URLs.
    pub public: bool,
    /// Largest object, in bytes.
    pub file_size_limit: Option<i64>,
    /// Accepted content types (`image/*` wildcards).
    pub allowed_mime_types: Option<Vec<String>>,
    /// Creator.
    pub owner: Option<String>,
    /// Created (RFC 3339).
    pub created_at: String,
    /// Last changed (RFC 3339).
    pub updated_at: String,
}

/// Settings of [`StorageClient::create_bucket`] and [`StorageClient::update_bucket`].
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BucketOptions {
    /// Readable without a key.
    pub public: bool,
    /// Largest object in bytes (`None`: the server's global limit).
    pub file_size_limit: Option<i64>,
    /// Accepted content types (`None`: any).
    pub allowed_mime_types: Option<Vec<String>>,
}

/// Options of an upload.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FileOptions {
    /// Content type (default `application/octet-stream`).
    pub content_type: Option<String>,
    /// `Cache-Control` max-age in seconds served with the object.
    pub cache_control: Option<u64>,
    /// Overwrite an existing object.
    pub upsert: bool,
    /// Arbitrary JSON object stored with the object.
    pub metadata: Option<Value>,
}

impl FileOptions {
    /// Options with just a content type.
    pub fn content_type(mime: impl Into<String>) -> FileOptions {
        FileOptions {
            content_type: Some(mime.into()),
            ..FileOptions::default()
        }
    }

    /// Sets [`FileOptions::upsert`].
    #[must_use]
    pub fn upsert(mut self, upsert: bool) -> FileOptions {
        self.upsert = upsert;
        self
    }
}

/// The answer of an upload.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Uploaded {
    /// Row id of the object.
    #[serde(rename = "Id", default)]
    pub id: Option<String>,
    /// `bucket/path`.
    #[serde(rename = "Key")]
    pub key: String,
}

/// An entry of [`BucketApi::list`]: an object, or a folder (`id` is `None`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct FileObject {
    /// Name within the listed folder.
    pub name: String,
    /// Object id (`None` for folders).
    pub id: Option<String>,
    /// Last change.
    pub updated_at: Option<String>,
    /// Creation.
    pub created_at: Option<String>,
    /// `{size, mimetype, eTag, cacheControl, lastModified, …}` (`None` for folders).
    pub metadata: Option<Value>,
}

impl FileObject {
    /// Whether this entry is a folder.
    pub fn is_folder(&self) -> bool {
        self.id.is_none()
    }
}

/// Options of [`BucketApi::list`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListOptions {
    /// At most this many entries (server default 100).
    pub limit: Option<u32>,
    /// Skip this many.
    pub offset: Option<u32>,
    /// Sort column (`name`, `created_at`, `updated_at`, `last_accessed_at`) and
    /// whether descending.
    pub sort_by: Option<(String, bool)>,
    /// Only names starting with this (case-insensitive).
    pub search: Option<String>,
}

/// One result of [`BucketApi::create_signed_urls`].
#[derive(Debug, Clone, PartialEq)]
pub struct SignedUrl {
    /// The object.
    pub path: String,
    /// The absolute URL, or the reason there is none.
    pub url: std::result::Result<String, String>,
}

/// A signed upload URL ([`BucketApi::create_signed_upload_url`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SignedUpload {
    /// Absolute URL to `PUT` the bytes to.
    pub url: String,
    /// The token alone (for [`BucketApi::upload_to_signed_url`]).
    pub token: String,
    /// The object.
    pub path: String,
}

/// A project's stored bytes against its storage quota ([`StorageClient::usage`]).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct StorageUsage {
    /// Bytes of the objects stored.
    pub used_bytes: u64,
    /// Bytes reserved by unfinished resumable uploads.
    pub reserved_bytes: u64,
    /// The quota in bytes; `None`: no quota. Uploads past it fail with
    /// HTTP 413, code `QuotaExceeded`.
    pub quota_bytes: Option<u64>,
}

impl StorageClient {
    fn endpoint(&self, segments: &[&str]) -> Url {
        let mut all = vec!["storage", "v1"];
        all.extend_from_slice(segments);
        self.client.endpoint(all)
    }

    async fn send_json<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<Value>,
    ) -> Result<T> {
        self.send_json_to(method, self.endpoint(segments), body)
            .await
    }

    async fn send_json_to<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        body: Option<Value>,
    ) -> Result<T> {
        let mut req = self
            .client
            .http_client()
            .request(method, url)
            .headers(self.client.auth_headers()?);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let response = self
            .client
            .execute(req.build()?)
            .await?
            .error_for_status()?;
        http::decode_json(&response.body)
    }

    /// The project's stored bytes against its storage quota (needs the
    /// service-role key or a platform admin token).
    pub async fn usage(&self) -> Result<StorageUsage> {
        let url = self.client.endpoint(["admin", "v1", "storage", "usage"]);
        self.send_json_to(Method::GET, url, None).await
    }

    /// All buckets the caller may see.
    pub async fn list_buckets(&self) -> Result<Vec<Bucket>> {
        self.send_json(Method::GET, &["bucket"], None).await
    }

    /// One bucket.
    pub async fn get_bucket(&self, id: &str) -> Result<Bucket> {
        self.send_json(Method::GET, &["bucket", id], None).await
    }

    /// Creates a bucket.
    pub async fn create_bucket(&self, id: &str, options: BucketOptions) -> Result<()> {
        let body = json!({"id": id, "name": id, "public": options.public,
            "file_size_limit": options.file_size_limit, "allowed_mime_types": options.allowed_mime_types});
        self.send_json::<Value>(Method::POST, &["bucket"], Some(body))
            .await
            .map(drop)
    }

    /// Replaces a bucket's settings.
    pub async fn update_bucket(&self, id: &str, options: BucketOptions) -> Result<()> {
        let body = json!({"public": options.public, "file_size_limit": options.file_size_limit,
            "allowed_mime_types": options.allowed_mime_types});
        self.send_json::<Value>(Method::PUT, &["bucket", id], Some(body))
            .await
            .map(drop)
    }

    /// Deletes every object of a bucket (that the caller may delete).
    pub async fn empty_bucket(&self, id: &str) -> Result<()> {
        self.send_json::<Value>(Method::POST, &["bucket", id, "empty"], Some(json!({})))
            .await
            .map(drop)
    }

    /// Deletes an empty bucket.
    pub async fn delete_bucket(&self, id: &str) -> Result<()> {
        self.send_json::<Value>(Method::DELETE, &["bucket", id], None)
            .await
            .map(drop)
    }

    /// The objects of bucket `id`.
    pub fn from(&self, id: impl Into<String>) -> BucketApi {
        BucketApi {
            storage: self.clone(),
            bucket: id.into(),
        }
    }
}

/// The objects of one bucket.
#[derive(Debug, Clone)]
pub struct BucketApi {
    storage: StorageClient,
    bucket: String,
}

fn segments(path: &str) -> Vec<&str> {
    path.split('/').filter(|s| !s.is_empty()).collect()
}

impl BucketApi {
    fn object_url(&self, prefix: &[&str], path: &str) -> Url {
        let mut all: Vec<&str> = prefix.to_vec();
        all.push(&self.bucket);
        all.extend(segments(path));
        self.storage.endpoint(&all)
    }

    fn absolute(&self, relative: &str) -> Result<String> {
        // The server answers paths relative to /storage/v1, unencoded.
        let base = self.storage.endpoint(&[]);
        let joined = format!("{}{}", base.as_str().trim_end_matches('/'), relative);
        Url::parse(&joined)
            .map(String::from)
            .map_err(|e| Error::InvalidUrl(format!("{joined:?}: {e}")))
    }

    fn upload_headers(
        &self,
        opts: &FileOptions,
        upsert: bool,
    ) -> Result<reqwest::header::HeaderMap> {
        let mut headers = self.storage.client.auth_headers()?;
        let mut put = |name: &'static str, value: String| -> Result<()> {
            let v = reqwest::header::HeaderValue::from_str(&value)
                .map_err(|_| Error::Encode(format!("invalid {name} header")))?;
            headers.insert(name, v);
            Ok(())
        };
        put(
            "content-type",
            opts.content_type
                .clone()
                .unwrap_or_else(|| "application/octet-stream".into()),
        )?;
        if let Some(secs) = opts.cache_control {
            put("cache-control", format!("max-age={secs}"))?;
        }
        if upsert {
            put("x-upsert", "true".into())?;
        }
        if let Some(meta) = &opts.metadata {
            let mut b64 = String::new();
            base64_encode(meta.to_string().as_bytes(), &mut b64);
            put("x-metadata", b64)?;
        }
        Ok(headers)
    }

    async fn send_upload(
        &self,
        method: Method,
        url: Url,
        body: reqwest::Body,
        headers: reqwest::header::HeaderMap,
    ) -> Result<Uploaded> {
        let req = self
            .storage
            .client
            .http_client()
            .request(method, url)
            .headers(headers)
            .body(body)
            .build()?;
        let response = self.storage.client.execute(req).await?.error_for_status()?;
        http::decode_json(&response.body)
    }

    /// Uploads `body` (bytes, or a streaming `reqwest::Body`) to `path`;
    /// fails with 409 when it exists unless [`FileOptions::upsert`].
    pub async fn upload(
        &self,
        path: &str,
        body: impl Into<reqwest::Body>,
        options: FileOptions,
    ) -> Result<Uploaded> {
        let headers = self.upload_headers(&options, options.upsert)?;
        self.send_upload(
            Method::POST,
            self.object_url(&["object"], path),
            body.into(),
            headers,
        )
        .await
    }

    /// Replaces the object at `path`.
    pub async fn update(
        &self,
        path: &str,
        body: impl Into<reqwest::Body>,
        options: FileOptions,
    ) -> Result<Uploaded> {
        let headers = self.upload_headers(&options, true)?;
        self.send_upload(
            Method::PUT,
            self.object_url(&["object"], path),
            body.into(),
            headers,
        )
        .await
    }

    /// Downloads an object into memory.
    pub async fn download(&self, path: &str) -> Result<Vec<u8>> {
        let req = self
            .storage
            .client
            .http_client()
            .get(self.object_url(&["object", "authenticated"], path))
            .headers(self.storage.client.auth_headers()?)
            .build()?;
        Ok(self
            .storage
            .client
            .execute(req)
            .await?
            .error_for_status()?
            .body)
    }

    /// Starts a download and returns the response to read in chunks
    /// (`response.chunk().await`), so large objects never sit in memory.
    pub async fn download_stream(&self, path: &str) -> Result<reqwest::Response> {
        let response = self
            .storage
            .client
            .http_client()
            .get(self.object_url(&["object", "authenticated"], path))
            .headers(self.storage.client.auth_headers()?)
            .send()
            .await?;
        if !response.status().is_success() {
            let status = response.status();
            let body = response.bytes().await?;
            return Err(Error::from_response(status, &body));
        }
        Ok(response)
    }

    /// An object's metadata (`size`, `content_type`, `etag`, `metadata`, …).
    pub async fn info(&self, path: &str) -> Result<Value> {
        let mut all = vec!["object", "info", self.bucket.as_str()];
        all.extend(segments(path));
        self.storage.send_json(Method::GET, &all, None).await
    }

    /// Whether the object exists (and the caller may read it).
    pub async fn exists(&self, path: &str) -> Result<bool> {
        match self.info(path).await {
            Ok(_) => Ok(true),
            Err(e) if matches!(e.status(), Some(404 | 400)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// One folder level under `prefix` (`""`: the top): folders first, then objects.
    pub async fn list(&self, prefix: &str, options: ListOptions) -> Result<Vec<FileObject>> {
        let mut body = json!({"prefix": prefix});
        if let Some(l) = options.limit {
            body["limit"] = json!(l);
        }
        if let Some(o) = options.offset {
            body["offset"] = json!(o);
        }
        if let Some((column, desc)) = options.sort_by {
            body["sortBy"] = json!({"column": column, "order": if desc { "desc" } else { "asc" }});
        }
        if let Some(s) = options.search {
            body["search"] = json!(s);
        }
        self.storage
            .send_json(Method::POST, &["object", "list", &self.bucket], Some(body))
            .await
    }

    /// Deletes objects; returns the ones actually deleted.
    pub async fn remove(&self, paths: &[&str]) -> Result<Vec<Value>> {
        self.storage
            .send_json(
                Method::DELETE,
                &["object", &self.bucket],
                Some(json!({"prefixes": paths})),
            )
            .await
    }

    /// Renames an object within this bucket.
    pub async fn move_object(&self, from: &str, to: &str) -> Result<()> {
        self.storage
            .send_json::<Value>(
                Method::POST,
                &["object", "move"],
                Some(json!({"bucketId": self.bucket, "sourceKey": from, "destinationKey": to})),
            )
            .await
            .map(drop)
    }

    /// Copies an object within this bucket; returns the new `bucket/path`.
    pub async fn copy(&self, from: &str, to: &str) -> Result<String> {
        let v: Value = self
            .storage
            .send_json(
                Method::POST,
                &["object", "copy"],
                Some(json!({"bucketId": self.bucket, "sourceKey": from, "destinationKey": to})),
            )
            .await?;
        v["Key"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| Error::Decode(format!("copy answer without Key: {v}")))
    }

    /// A URL that downloads `path` without a key for `expires_in` seconds.
    pub async fn create_signed_url(&self, path: &str, expires_in: u64) -> Result<String> {
        let mut all = vec!["object", "sign", self.bucket.as_str()];
        all.extend(segments(path));
        let v: Value = self
            .storage
            .send_json(Method::POST, &all, Some(json!({"expiresIn": expires_in})))
            .await?;
        let rel = v["signedURL"]
            .as_str()
            .ok_or_else(|| Error::Decode(format!("sign answer without signedURL: {v}")))?;
        self.absolute(rel)
    }

    /// Signed URLs for several objects at once.
    pub async fn create_signed_urls(
        &self,
        paths: &[&str],
        expires_in: u64,
    ) -> Result<Vec<SignedUrl>> {
        let v: Vec<Value> = self
            .storage
            .send_json(
                Method::POST,
                &["object", "sign", &self.bucket],
                Some(json!({"expiresIn": expires_in, "paths": paths})),
            )
            .await?;
        v.into_iter()
            .map(|e| {
                let path = e["path"].as_str().unwrap_or_default().to_owned();
                let url = match e["signedURL"].as_str() {
                    Some(rel) => Ok(self.absolute(rel)?),
                    None => Err(e["error"].as_str().unwrap_or("not signed").to_owned()),
                };
                Ok(SignedUrl { path, url })
            })
            .collect()
    }

    /// A URL (valid two hours) through which anyone can upload `path` once.
    pub async fn create_signed_upload_url(&self, path: &str, upsert: bool) -> Result<SignedUpload> {
        let mut all = vec!["object", "upload", "sign", self.bucket.as_str()];
        all.extend(segments(path));
        let mut req = self
            .storage
            .client
            .http_client()
            .post(self.storage.endpoint(&all))
            .headers(self.storage.client.auth_headers()?);
        if upsert {
            req = req.header("x-upsert", "true");
        }
        let response = self
            .storage
            .client
            .execute(req.build()?)
            .await?
            .error_for_status()?;
        let v: Value = http::decode_json(&response.body)?;
        let token = v["token"].as_str().unwrap_or_default().to_owned();
        let url = self.absolute(v["url"].as_str().unwrap_or_default())?;
        Ok(SignedUpload {
            url,
            token,
            path: path.to_owned(),
        })
    }

    /// Uploads through a token from [`BucketApi::create_signed_upload_url`] (no key needed).
    pub async fn upload_to_signed_url(
        &self,
        path: &str,
        token: &str,
        body: impl Into<reqwest::Body>,
        options: FileOptions,
    ) -> Result<Uploaded> {
        let mut url = self.object_url(&["object", "upload", "sign"], path);
        url.query_pairs_mut().append_pair("token", token);
        let mut headers = self.upload_headers(&options, false)?;
        headers.remove("authorization");
        headers.remove("apikey");
        self.send_upload(Method::PUT, url, body.into(), headers)
            .await
    }

    /// The public URL of `path` (works when the bucket is public).
    pub fn get_public_url(&self, path: &str) -> String {
        self.object_url(&["object", "public"], path).into()
    }

    /// Uploads `len` bytes from `reader` with the resumable (TUS) protocol in
    /// chunks of `chunk_size` bytes, calling `progress(sent, total)` after each
    /// chunk. A failed chunk is retried once after asking the server for its
    /// offset. `reader` is read synchronously, one chunk at a time.
    pub async fn upload_resumable(
        &self,
        path: &str,
        mut reader: impl std::io::Read,
        len: u64,
        options: FileOptions,
        chunk_size: usize,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<()> {
        let b64 = |s: &str| {
            let mut out = String::new();
            base64_encode(s.as_bytes(), &mut out);
            out
        };
        let mut metadata = format!(
            "bucketName {},objectName {},contentType {}",
            b64(&self.bucket),
            b64(path),
            b64(options
                .content_type
                .as_deref()
                .unwrap_or("application/octet-stream"))
        );
        if let Some(c) = options.cache_control {
            metadata.push_str(&format!(",cacheControl {}", b64(&c.to_string())));
        }
        let http = self.storage.client.http_client();
        let auth = self.storage.client.auth_headers()?;
        let mut create = http
            .post(self.storage.endpoint(&["upload", "resumable"]))
            .headers(auth.clone())
            .header("tus-resumable", "1.0.0")
            .header("upload-length", len.to_string())
            .header("upload-metadata", metadata);
        if options.upsert {
            create = create.header("x-upsert", "true");
        }
        let response = self
            .storage
            .client
            .execute(create.build()?)
            .await?
            .error_for_status()?;
        let location = response
            .headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| Error::Decode("resumable upload created without Location".into()))?
            .to_owned();
        let chunk_size = chunk_size.max(1);
        let mut offset = 0u64;
        let mut buf = vec![0u8; chunk_size];
        while offset < len {
            let want = usize::try_from((len - offset).min(chunk_size as u64)).unwrap_or(chunk_size);
            reader
                .read_exact(&mut buf[..want])
                .map_err(|e| Error::Encode(format!("reading the upload: {e}")))?;
            let mut attempt = 0;
            loop {
                let patch = http
                    .patch(&location)
                    .headers(auth.clone())
                    .header("tus-resumable", "1.0.0")
                    .header("upload-offset", offset.to_string())
                    .header("content-type", "application/offset+octet-stream")
                    .body(buf[..want].to_vec())
                    .build()?;
                match self
                    .storage
                    .client
                    .execute(patch)
                    .await
                    .and_then(|r| r.error_for_status())
                {
                    Ok(_) => break,
                    Err(e) if attempt == 0 && !matches!(e.status(), Some(400..=499)) => {
                        attempt += 1;
                        // Did the chunk land before the failure?
                        let head = http
                            .head(&location)
                            .headers(auth.clone())
                            .header("tus-resumable", "1.0.0")
                            .build()?;
                        let h = self
                            .storage
                            .client
                            .execute(head)
                            .await?
                            .error_for_status()?;
                        let server = h
                            .headers
                            .get("upload-offset")
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.parse::<u64>().ok());
                        if server == Some(offset + want as u64) {
                            break;
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
            offset += want as u64;
            progress(offset, len);
        }
        if len == 0 {
            progress(0, 0);
        }
        Ok(())
    }
}

/// Standard base64 with padding (a few lines rather than a dependency).
fn base64_encode(input: &[u8], out: &mut String) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
        ] {
            let mut out = String::new();
            base64_encode(input.as_bytes(), &mut out);
            assert_eq!(out, expected);
        }
    }

    #[test]
    fn urls_encode_each_segment() {
        let client = Client::new("http://h/p/r", "k").unwrap();
        let b = client.storage().from("pics");
        assert_eq!(
            b.get_public_url("a b/c#d.png"),
            "http://h/p/r/storage/v1/object/public/pics/a%20b/c%23d.png"
        );
        assert_eq!(
            b.absolute("/object/sign/pics/a b.png?token=x.y.z").unwrap(),
            "http://h/p/r/storage/v1/object/sign/pics/a%20b.png?token=x.y.z"
        );
    }
}
