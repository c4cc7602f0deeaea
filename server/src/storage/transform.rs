//! Image transforms on download (`/render/image/{authenticated|public|sign}/…`,
//! as Supabase Storage serves them): `width`, `height`, `resize`
//! (`cover`, `contain`, `fill`), `quality` (JPEG), `format` (`origin`,
//! `webp`, `png`, `jpeg`), with the `image` crate.
//!
//! Decoding needs the whole image in memory, so sources are limited to
//! [`MAX_SOURCE_BYTES`], decoding to [`MAX_SOURCE_PIXELS_SIDE`] pixels a side,
//! [`MAX_SOURCE_PIXELS`] in all and 256 MiB of allocations (decompression
//! bombs), and outputs to [`MAX_OUTPUT_SIDE`] pixels a side and
//! [`MAX_OUTPUT_BYTES`]. No step makes an image larger than its source or its
//! output: `cover` crops the source to the output's aspect ratio first, then
//! resizes (resizing first, as `resize_to_fill` does, would make a
//! 10000×1 source into a 25-million-pixel-wide intermediate). The work runs
//! on the blocking pool, at most `FERROBASE_IMAGE_TRANSFORM_CONCURRENCY` at
//! once per node; a request that waits longer than the pool acquire timeout
//! for its turn gets 503.

use std::io::Cursor;

use axum::body::Body;
use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use futures_util::TryStreamExt;
use image::imageops::FilterType;
use image::{DynamicImage, ImageFormat};
use object_store::GetOptions;
use serde::{Deserialize, Serialize};

use super::buckets;
use super::objects::{ObjectRow, parse_target, select_as_owner, select_visible};
use super::{Ctx, ObjectPath, Params, Storage, StorageError, StorageResult};

/// Largest source image, in bytes.
pub const MAX_SOURCE_BYTES: u64 = 25 * 1024 * 1024;
/// Largest source width or height.
pub const MAX_SOURCE_PIXELS_SIDE: u32 = 10_000;
/// Largest output width or height.
pub const MAX_OUTPUT_SIDE: u32 = 2_500;
/// Most pixels a source may have (width × height).
pub const MAX_SOURCE_PIXELS: u64 = 40_000_000;
/// Largest encoded output, in bytes.
pub const MAX_OUTPUT_BYTES: usize = 32 * 1024 * 1024;

/// Transform parameters (query string, or baked into a signed URL).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Transform {
    /// Output width in pixels.
    pub width: Option<u32>,
    /// Output height in pixels.
    pub height: Option<u32>,
    /// `cover` (default: fill the box, crop), `contain` (fit inside), `fill` (stretch).
    pub resize: Option<String>,
    /// JPEG quality 20–100 (default 80).
    pub quality: Option<u8>,
    /// `origin` (default), `webp` (lossless), `png` or `jpeg`.
    pub format: Option<String>,
}

/// Query of `/render/image/…` (flat: `serde(flatten)` cannot parse numbers
/// out of a query string).
#[derive(Debug, Default, Deserialize)]
pub struct RenderQuery {
    /// See [`Transform::width`].
    pub width: Option<u32>,
    /// See [`Transform::height`].
    pub height: Option<u32>,
    /// See [`Transform::resize`].
    pub resize: Option<String>,
    /// See [`Transform::quality`].
    pub quality: Option<u8>,
    /// See [`Transform::format`].
    pub format: Option<String>,
    /// Signed URL token (`/render/image/sign/…`).
    pub token: Option<String>,
}

impl RenderQuery {
    fn transform(&self) -> Transform {
        Transform {
            width: self.width,
            height: self.height,
            resize: self.resize.clone(),
            quality: self.quality,
            format: self.format.clone(),
        }
    }
}

fn query(q: Result<Query<RenderQuery>, QueryRejection>) -> StorageResult<RenderQuery> {
    q.map(|Query(q)| q).map_err(|e| {
        StorageError::InvalidRequest(format!("Invalid transform parameters: {}", e.body_text()))
    })
}

impl Transform {
    /// Checks the parameters (400 on nonsense).
    pub fn validate(&self) -> StorageResult<()> {
        let bad = |m: &str| Err(StorageError::InvalidRequest(m.to_owned()));
        for side in [self.width, self.height].into_iter().flatten() {
            if !(1..=MAX_OUTPUT_SIDE).contains(&side) {
                return bad("width and height must be between 1 and 2500.");
            }
        }
        if let Some(q) = self.quality
            && !(20..=100).contains(&q)
        {
            return bad("quality must be between 20 and 100.");
        }
        if let Some(r) = &self.resize
            && !matches!(r.as_str(), "cover" | "contain" | "fill")
        {
            return bad("resize must be cover, contain or fill.");
        }
        if let Some(f) = &self.format
            && !matches!(f.as_str(), "origin" | "webp" | "png" | "jpeg" | "jpg")
        {
            return bad("format must be origin, webp, png or jpeg.");
        }
        Ok(())
    }

    /// A stable text form (ETags, signed URL claims).
    fn key(&self) -> String {
        format!(
            "w{}h{}r{}q{}f{}",
            self.width.unwrap_or(0),
            self.height.unwrap_or(0),
            self.resize.as_deref().unwrap_or("cover"),
            self.quality.unwrap_or(80),
            self.format.as_deref().unwrap_or("origin")
        )
    }
}

/// Decodes, resizes and encodes; returns the bytes and their content type.
pub fn apply(source: &[u8], t: &Transform) -> StorageResult<(Vec<u8>, &'static str)> {
    let mut reader = image::ImageReader::new(Cursor::new(source))
        .with_guessed_format()
        .map_err(|e| StorageError::InvalidRequest(format!("The object is not an image: {e}")))?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SOURCE_PIXELS_SIDE);
    limits.max_image_height = Some(MAX_SOURCE_PIXELS_SIDE);
    limits.max_alloc = Some(256 * 1024 * 1024);
    reader.limits(limits);
    let source_format = reader.format();
    let (dw, dh) = image::ImageReader::new(Cursor::new(source))
        .with_guessed_format()
        .ok()
        .and_then(|r| r.into_dimensions().ok())
        .unwrap_or((0, 0));
    if u64::from(dw) * u64::from(dh) > MAX_SOURCE_PIXELS {
        return Err(StorageError::InvalidRequest(format!(
            "The image has more than {MAX_SOURCE_PIXELS} pixels and cannot be transformed."
        )));
    }
    let img = reader.decode().map_err(|e| {
        StorageError::InvalidRequest(format!("The image cannot be transformed: {e}"))
    })?;
    let (w0, h0) = (img.width().max(1), img.height().max(1));
    let (w, h) = match (t.width, t.height) {
        (Some(w), Some(h)) => (w, h),
        (Some(w), None) => (w, scale(h0, w, w0)),
        (None, Some(h)) => (scale(w0, h, h0), h),
        (None, None) => (w0.min(MAX_OUTPUT_SIDE), h0.min(MAX_OUTPUT_SIDE)),
    };
    let filter = FilterType::Lanczos3;
    let out: DynamicImage = if (w, h) == (w0, h0) {
        img
    } else {
        match t.resize.as_deref().unwrap_or("cover") {
            "contain" => img.resize(w, h, filter),
            "fill" => img.resize_exact(w, h, filter),
            _ => {
                let (x, y, cw, ch) = cover_crop(w0, h0, w, h);
                img.crop_imm(x, y, cw, ch).resize_exact(w, h, filter)
            }
        }
    };
    let format = match t.format.as_deref().unwrap_or("origin") {
        "webp" => ImageFormat::WebP,
        "png" => ImageFormat::Png,
        "jpeg" | "jpg" => ImageFormat::Jpeg,
        _ => match source_format {
            Some(f @ (ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::WebP)) => f,
            _ => ImageFormat::Png,
        },
    };
    let mut buf = Vec::new();
    let encoded = match format {
        ImageFormat::Jpeg => {
            let enc = image::codecs::jpeg::JpegEncoder::new_with_quality(
                &mut buf,
                t.quality.unwrap_or(80),
            );
            out.to_rgb8().write_with_encoder(enc)
        }
        ImageFormat::WebP => {
            let enc = image::codecs::webp::WebPEncoder::new_lossless(&mut buf);
            out.to_rgba8().write_with_encoder(enc)
        }
        _ => out.write_to(&mut Cursor::new(&mut buf), ImageFormat::Png),
    };
    encoded
        .map_err(|e| StorageError::InvalidRequest(format!("The image cannot be encoded: {e}")))?;
    if buf.len() > MAX_OUTPUT_BYTES {
        return Err(StorageError::InvalidRequest(format!(
            "The transformed image would be larger than {MAX_OUTPUT_BYTES} bytes; ask for a smaller size or another format."
        )));
    }
    Ok((buf, format.to_mime_type()))
}

/// The centred region of a `w0`×`h0` source with the aspect ratio of `w`×`h`
/// (what `cover` keeps): `(x, y, width, height)`, never larger than the source.
fn cover_crop(w0: u32, h0: u32, w: u32, h: u32) -> (u32, u32, u32, u32) {
    let (w0_, h0_, w_, h_) = (
        u64::from(w0),
        u64::from(h0),
        u64::from(w.max(1)),
        u64::from(h.max(1)),
    );
    let (cw, ch) = if w0_ * h_ > h0_ * w_ {
        // The source is wider: keep its full height.
        ((h0_ * w_).div_ceil(h_).clamp(1, w0_), h0_)
    } else {
        (w0_, (w0_ * h_).div_ceil(w_).clamp(1, h0_))
    };
    let cw = u32::try_from(cw).unwrap_or(w0);
    let ch = u32::try_from(ch).unwrap_or(h0);
    ((w0 - cw) / 2, (h0 - ch) / 2, cw, ch)
}

fn scale(other: u32, target: u32, side: u32) -> u32 {
    let v = (u64::from(other) * u64::from(target) / u64::from(side)).max(1);
    u32::try_from(v)
        .unwrap_or(MAX_OUTPUT_SIDE)
        .min(MAX_OUTPUT_SIDE)
}

/// Reads the source (bounded), transforms it, answers the image.
async fn render(
    ctx: &Ctx,
    row: &ObjectRow,
    t: &Transform,
    headers: &HeaderMap,
) -> StorageResult<Response> {
    t.validate()?;
    let storage = ctx.store()?;
    let size = row.metadata["size"].as_u64().unwrap_or(0);
    if size > MAX_SOURCE_BYTES {
        return Err(StorageError::TooLarge(MAX_SOURCE_BYTES));
    }
    let etag = format!("\"{}-{}\"", row.version, t.key());
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    {
        let mut resp = Response::new(Body::empty());
        *resp.status_mut() = StatusCode::NOT_MODIFIED;
        insert(&mut resp, header::ETAG, &etag);
        return Ok(resp);
    }
    // One turn per transform (taken before the source is read, so waiting
    // requests hold no image in memory).
    let wait = std::time::Duration::from_millis(ctx.app.platform.config().pool_acquire_timeout_ms);
    let Some(_permit) = ctx.app.throttles.transform(wait).await else {
        return Err(StorageError::Unavailable(
            "Too many image transforms are running; retry shortly.".into(),
        ));
    };
    let key = Storage::key(ctx.project_id(), &row.bucket_id, &row.version);
    let source: Vec<Bytes> = storage
        .get(&key, GetOptions::default())
        .await?
        .into_stream()
        .try_collect()
        .await?;
    let source = source.concat();
    let t = t.clone();
    let (bytes, mime) = tokio::task::spawn_blocking(move || apply(&source, &t))
        .await
        .map_err(|e| StorageError::Unavailable(format!("transform task failed: {e}")))??;
    let mut resp = Response::new(Body::from(bytes));
    insert(&mut resp, header::CONTENT_TYPE, mime);
    insert(&mut resp, header::ETAG, &etag);
    insert(
        &mut resp,
        header::CACHE_CONTROL,
        row.metadata["cacheControl"].as_str().unwrap_or("no-cache"),
    );
    Ok(resp)
}

fn insert(resp: &mut Response, name: header::HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().insert(name, v);
    }
}

/// `GET /storage/v1/render/image/authenticated/{bucket}/{path}`: a transformed
/// image the caller may read.
#[utoipa::path(get, path = "/p/{ref}/storage/v1/render/image/authenticated/{bucket}/{path}", tag = "storage",
    params(("ref" = String, Path, description = "Project ref"), ("bucket" = String, Path, description = "Bucket id"),
        ("path" = String, Path, description = "Object name"),
        ("width" = Option<u32>, Query, description = "1-2500"), ("height" = Option<u32>, Query, description = "1-2500"),
        ("resize" = Option<String>, Query, description = "cover, contain or fill"),
        ("quality" = Option<u8>, Query, description = "20-100"), ("format" = Option<String>, Query, description = "origin, webp, png, jpeg")),
    responses((status = 200, description = "The image"), (status = 400, description = "Bad parameters or not an image"),
        (status = 404, description = "No such object"), (status = 413, description = "Source too large")))]
pub async fn render_authenticated(
    ctx: Ctx,
    Params(ObjectPath { bucket, path }): Params<ObjectPath>,
    q: Result<Query<RenderQuery>, QueryRejection>,
    headers: HeaderMap,
) -> StorageResult<Response> {
    let caller = ctx.caller(&headers)?;
    let q = query(q)?;
    let (bucket, name) = parse_target(&bucket, &path)?;
    let row = select_visible(&ctx, &caller, bucket.as_str(), name.as_str()).await?;
    render(&ctx, &row, &q.transform(), &headers).await
}

/// `GET /storage/v1/render/image/public/{bucket}/{path}`: from a public bucket.
#[utoipa::path(get, path = "/p/{ref}/storage/v1/render/image/public/{bucket}/{path}", tag = "storage",
    params(("ref" = String, Path, description = "Project ref"), ("bucket" = String, Path, description = "Bucket id"),
        ("path" = String, Path, description = "Object name")),
    responses((status = 200, description = "The image"), (status = 404, description = "No such object or bucket not public")))]
pub async fn render_public(
    ctx: Ctx,
    Params(ObjectPath { bucket, path }): Params<ObjectPath>,
    q: Result<Query<RenderQuery>, QueryRejection>,
    headers: HeaderMap,
) -> StorageResult<Response> {
    let q = query(q)?;
    let (bucket, name) = parse_target(&bucket, &path)?;
    let b = {
        let client = ctx.owner().await?;
        buckets::load(&client, bucket.as_str()).await?
    };
    if !b.public {
        return Err(StorageError::BucketNotFound);
    }
    let row = select_as_owner(&ctx, bucket.as_str(), name.as_str()).await?;
    render(&ctx, &row, &q.transform(), &headers).await
}

/// `GET /storage/v1/render/image/sign/{bucket}/{path}?token=…`: through a
/// signed URL whose transform is baked into the token.
#[utoipa::path(get, path = "/p/{ref}/storage/v1/render/image/sign/{bucket}/{path}", tag = "storage",
    params(("ref" = String, Path, description = "Project ref"), ("bucket" = String, Path, description = "Bucket id"),
        ("path" = String, Path, description = "Object name"), ("token" = String, Query, description = "Signed URL token")),
    responses((status = 200, description = "The image"), (status = 400, description = "Invalid or expired token")))]
pub async fn render_signed(
    ctx: Ctx,
    Params(ObjectPath { bucket, path }): Params<ObjectPath>,
    q: Result<Query<RenderQuery>, QueryRejection>,
    headers: HeaderMap,
) -> StorageResult<Response> {
    let q = query(q)?;
    let (bucket, name) = parse_target(&bucket, &path)?;
    let token = q
        .token
        .as_deref()
        .ok_or_else(|| StorageError::InvalidSignature("The signed URL has no token.".into()))?;
    let claims = super::signed::verify(
        &ctx.tenant,
        token,
        super::signed::SIGN,
        &format!("{}/{}", bucket.as_str(), name.as_str()),
    )?;
    let transform: Transform = serde_json::from_value(claims["transform"].clone())
        .map_err(|_| StorageError::InvalidSignature("The signed URL has no transform.".into()))?;
    let row = select_as_owner(&ctx, bucket.as_str(), name.as_str()).await?;
    render(&ctx, &row, &transform, &headers).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbaImage::from_fn(w, h, |x, y| {
            image::Rgba([(x % 256) as u8, (y % 256) as u8, 0, 255])
        });
        let mut buf = Vec::new();
        DynamicImage::ImageRgba8(img)
            .write_to(&mut Cursor::new(&mut buf), ImageFormat::Png)
            .unwrap();
        buf
    }

    fn dims(bytes: &[u8]) -> (u32, u32) {
        let img = image::load_from_memory(bytes).unwrap();
        (img.width(), img.height())
    }

    #[test]
    fn resizes_and_converts() {
        let src = png(400, 200);
        let t = |w, h, r: &str, f: &str| Transform {
            width: w,
            height: h,
            resize: Some(r.into()),
            format: Some(f.into()),
            quality: None,
        };
        let (out, mime) = apply(&src, &t(Some(100), Some(100), "cover", "origin")).unwrap();
        assert_eq!((dims(&out), mime), ((100, 100), "image/png"));
        let (out, _) = apply(&src, &t(Some(100), Some(100), "contain", "png")).unwrap();
        assert_eq!(dims(&out), (100, 50));
        let (out, _) = apply(&src, &t(Some(100), Some(100), "fill", "png")).unwrap();
        assert_eq!(dims(&out), (100, 100));
        let (out, mime) = apply(&src, &t(Some(200), None, "cover", "jpeg")).unwrap();
        assert_eq!((dims(&out), mime), ((200, 100), "image/jpeg"));
        let (out, mime) = apply(&src, &t(None, Some(50), "cover", "webp")).unwrap();
        assert_eq!((dims(&out), mime), ((100, 50), "image/webp"));
    }

    #[test]
    fn cover_crops_before_resizing() {
        assert_eq!(cover_crop(400, 200, 100, 100), (100, 0, 200, 200));
        assert_eq!(cover_crop(200, 400, 100, 100), (0, 100, 200, 200));
        assert_eq!(cover_crop(10_000, 1, 2500, 2500), (4999, 0, 1, 1));
        assert_eq!(cover_crop(300, 300, 300, 300), (0, 0, 300, 300));
        // A thin strip to a square: no giant intermediate, just the output.
        let (out, _) = apply(
            &png(4000, 1),
            &Transform {
                width: Some(500),
                height: Some(500),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(dims(&out), (500, 500));
    }

    #[test]
    fn refuses_nonsense() {
        assert!(apply(b"not an image", &Transform::default()).is_err());
        for t in [
            Transform {
                width: Some(0),
                ..Default::default()
            },
            Transform {
                height: Some(5000),
                ..Default::default()
            },
            Transform {
                quality: Some(5),
                ..Default::default()
            },
            Transform {
                resize: Some("zoom".into()),
                ..Default::default()
            },
            Transform {
                format: Some("gif".into()),
                ..Default::default()
            },
        ] {
            assert!(t.validate().is_err(), "{t:?}");
        }
    }
}
