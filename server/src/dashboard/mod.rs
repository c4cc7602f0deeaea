//! The admin web UI at `/dashboard`: the Vite build in `dashboard/dist`,
//! embedded in the binary at compile time (so `cargo run --release` needs no
//! Node), served with:
//!
//! - an SPA fallback: any `/dashboard/...` path that is not a file and has no
//!   extension answers `index.html`, so deep links work; a missing asset is 404;
//! - caching: `assets/*` have content-hashed names and are `immutable` for a
//!   year; `index.html` is `no-cache` (revalidated with its `ETag`), so a new
//!   build is picked up at once;
//! - precompressed gzip copies (written by the build) when the browser accepts gzip;
//! - a strict Content-Security-Policy: scripts only from this origin, no
//!   framing, no plugins. The dashboard keeps the admin token in memory only
//!   (see `dashboard/src/api/client.ts`), never in storage a served object
//!   could read.
//!
//! `dashboard/dist` is rebuilt with `cargo xtask dashboard`; the test
//! `dashboard::dist_is_fresh` fails when it is stale against the sources.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use crate::error::ApiError;
use crate::state::AppState;

/// The built dashboard (`dashboard/dist`), embedded.
#[derive(rust_embed::Embed)]
#[folder = "../dashboard/dist/"]
struct Dist;

/// The Content-Security-Policy of every dashboard response. Mantine sets
/// inline `style` attributes and CSS variables, hence `'unsafe-inline'` for
/// styles only; scripts are never inline.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data: blob:; media-src 'self' blob:; font-src 'self' data:; connect-src 'self'; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Routes of the dashboard: `/` and `/dashboard` redirect to `/dashboard/`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::temporary("/dashboard/") }))
        .route(
            "/dashboard",
            get(|| async { Redirect::temporary("/dashboard/") }),
        )
        .route("/dashboard/", get(index))
        .route("/dashboard/{*path}", get(asset))
}

async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    serve(&path, &headers)
}

/// Answers `path` from the build, falling back to `index.html` for app routes.
fn serve(path: &str, headers: &HeaderMap) -> Response {
    if Dist::get(path).is_some() && !path.ends_with(".gz") {
        return file_response(path, headers);
    }
    let last = path.rsplit('/').next().unwrap_or(path);
    if path.starts_with("assets/") || last.contains('.') {
        return ApiError::not_found("not_found", format!("No dashboard file {path}."))
            .into_response();
    }
    file_response("index.html", headers)
}

fn file_response(path: &str, headers: &HeaderMap) -> Response {
    let Some(file) = Dist::get(path) else {
        return ApiError::not_found(
            "dashboard_not_built",
            "The dashboard build is missing from this binary.",
        )
        .with_hint("Run `cargo xtask dashboard`, then rebuild the server.")
        .into_response();
    };
    let etag = format!("\"{}\"", hex(&file.metadata.sha256_hash()[..16]));
    let immutable = path.starts_with("assets/");
    let mut resp_headers = HeaderMap::new();
    let put = |h: &mut HeaderMap, name: header::HeaderName, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(name, v);
        }
    };
    put(&mut resp_headers, header::CONTENT_TYPE, content_type(path));
    put(
        &mut resp_headers,
        header::CACHE_CONTROL,
        if immutable {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        },
    );
    put(&mut resp_headers, header::ETAG, &etag);
    put(&mut resp_headers, header::VARY, "accept-encoding");
    put(&mut resp_headers, header::CONTENT_SECURITY_POLICY, CSP);
    put(&mut resp_headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    put(&mut resp_headers, header::X_FRAME_OPTIONS, "DENY");
    put(&mut resp_headers, header::REFERRER_POLICY, "no-referrer");

    let if_none_match = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok());
    if if_none_match.is_some_and(|v| v.split(',').any(|t| t.trim() == etag)) {
        return (StatusCode::NOT_MODIFIED, resp_headers).into_response();
    }
    if accepts_gzip(headers)
        && let Some(gz) = Dist::get(&format!("{path}.gz"))
    {
        put(&mut resp_headers, header::CONTENT_ENCODING, "gzip");
        return (resp_headers, gz.data.into_owned()).into_response();
    }
    (resp_headers, file.data.into_owned()).into_response()
}

/// Whether `Accept-Encoding` allows gzip (not refused with `q=0`).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';').map(str::trim);
            let name = parts.next().unwrap_or("");
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q == 0.0)
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        _ => "application/octet-stream",
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_negotiation() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
            accepts_gzip(&h)
        };
        assert!(with("gzip, deflate, br"));
        assert!(with("br;q=1.0, gzip;q=0.8"));
        assert!(with("*"));
        assert!(!with("gzip;q=0"));
        assert!(!with("br, identity"));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn content_types() {
        assert_eq!(
            content_type("assets/index-abc.js"),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("x"), "application/octet-stream");
    }
}
