//! Middleware, outermost first (see [`crate::app::router::build`]):
//!
//! 1. host routing — `{ref}.{base_domain}/x` is rewritten to `/p/{ref}/x`
//!    *before* routing, so both styles reach the same handlers;
//! 2. request id — `x-request-id` accepted or generated, echoed on the response;
//! 3. trace span carrying the request id, so every log line has it;
//! 4. CORS; 5. the request log ([`RequestLogLayer`]); 6. body limit; then
//!    the router, whose routes each record their metrics
//!    ([`crate::telemetry::TrackLayer`]: it needs the route template).
//!
//! All but the metrics wrap the router once, as plain `tower` services: no
//! boxed future or boxed copy of the route per request (see
//! [`crate::app::router::build`]).
//!
//! Around the routes that take a whole body (platform, auth, data API,
//! admin), [`buffer_body`] reads it first, within the body read timeout, so
//! no handler or extractor holds a pooled connection while a slow client
//! trickles its body. Storage uploads stream instead (with an idle timeout
//! per chunk, see `storage::Ctx::body_stream`).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt as _;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};
use tower_http::request_id::{MakeRequestId, RequestId};

/// The request-id header.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Generates the request id of a request that came without one: a random
/// UUID (v4, hyphenated, lower case) like `tower_http`'s `MakeRequestUuid`,
/// formatted in place rather than through a `String`.
#[derive(Debug, Clone, Copy, Default)]
pub struct FastRequestId;

impl MakeRequestId for FastRequestId {
    fn make_request_id<B>(&mut self, _request: &Request<B>) -> Option<RequestId> {
        let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let id = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
        HeaderValue::from_str(id).ok().map(RequestId::new)
    }
}

/// Rewrites `Host: {ref}.{base_domain}` requests to the `/p/{ref}` prefix.
pub fn rewrite_host(mut req: Request<Body>, base_domain: Option<&str>) -> Request<Body> {
    let Some(base) = base_domain else { return req };
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| {
            h.rsplit_once(':').map_or(h, |(name, port)| {
                if port.bytes().all(|b| b.is_ascii_digit()) {
                    name
                } else {
                    h
                }
            })
        })
        .map(str::to_ascii_lowercase);
    let Some(host) = host else { return req };
    let Some(project_ref) = host.strip_suffix(base).and_then(|s| s.strip_suffix('.')) else {
        return req;
    };
    if project_ref.is_empty() || project_ref.contains('.') {
        return req;
    }
    let path_and_query = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    if let Ok(uri) = format!("/p/{project_ref}{path_and_query}").parse::<Uri>() {
        *req.uri_mut() = uri;
    }
    req
}

/// The CORS policy. A request routed to a project (`/p/{ref}/…`, host
/// routing included: the host is rewritten before this layer) is judged by
/// that project's `cors_origins`, read through the project registry (cached,
/// and dropped on every node when the project changes); without a project
/// list, and for platform routes, `FERROBASE_CORS_ORIGINS` applies. Allowed
/// origins are echoed (with `Vary: origin`), refused ones get no
/// `Access-Control-Allow-Origin`, so the browser keeps the answer from the page.
pub fn cors(app: crate::AppState) -> CorsLayer {
    let global = std::sync::Arc::new(crate::platform::cors::CorsOrigins::from_env(
        &app.platform.config().cors_origins,
    ));
    let allow_origin = AllowOrigin::async_predicate(
        move |origin: HeaderValue, parts: &axum::http::request::Parts| {
            let project = parts
                .uri
                .path()
                .strip_prefix("/p/")
                .and_then(|rest| rest.split('/').next())
                .filter(|r| crate::platform::ProjectRef::parse(r).is_ok())
                .map(str::to_owned);
            let (app, global) = (app.clone(), global.clone());
            async move {
                let Some(r) = project else {
                    return global.allows(origin.as_bytes());
                };
                match app.projects.get(&app, &r).await {
                    Ok(Some(tenant)) => tenant
                        .cors
                        .as_ref()
                        .unwrap_or(&global)
                        .allows(origin.as_bytes()),
                    // No such project: the route answers 404 (readable by allowed origins).
                    Ok(None) => global.allows(origin.as_bytes()),
                    // The project's list cannot be read: refuse rather than guess.
                    Err(error) => {
                        tracing::debug!(?error, "CORS: project lookup failed");
                        false
                    }
                }
            }
        },
    );
    CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods([
            Method::GET,
            Method::HEAD,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers(Any)
        .expose_headers(
            [
                "content-range",
                "location",
                "x-request-id",
                "preference-applied",
                "etag",
                "content-disposition",
                // TUS resumable uploads from browsers (tus-js-client).
                "upload-offset",
                "upload-length",
                "upload-expires",
                "tus-resumable",
                "tus-version",
                "tus-extension",
                "tus-max-size",
            ]
            .map(HeaderName::from_static),
        )
        .max_age(std::time::Duration::from_secs(3600))
}

/// The span every request's logs are recorded in.
pub fn span_for(req: &Request<Body>) -> tracing::Span {
    let request_id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    tracing::info_span!(
        "request",
        request_id = %request_id,
        method = %req.method(),
        path = %req.uri().path(),
    )
}

/// Logs each finished request in its span (request id, method, path) with
/// status and latency, under this crate's log target so the default filter
/// (third-party crates at `warn`) keeps request logs.
pub fn log_response<B>(
    res: &axum::http::Response<B>,
    latency: std::time::Duration,
    _span: &tracing::Span,
) {
    tracing::info!(
        status = res.status().as_u16(),
        latency_ms = latency.as_secs_f64() * 1000.0,
        "finished request"
    );
}

/// Reads the request body completely before the handler runs, within
/// `FERROBASE_BODY_READ_TIMEOUT_MS` (else 408 and the connection is closed).
/// At most one byte more than the body limit is read: the handler's own
/// extractor then answers 413 in its module's error shape.
pub async fn buffer_body(State(app): State<crate::AppState>, req: Request, next: Next) -> Response {
    // Nothing to wait for (a GET, `Content-Length: 0`): no timer, no copy.
    if axum::body::HttpBody::is_end_stream(req.body()) {
        return next.run(req).await;
    }
    let config = app.platform.config();
    let limit = config.max_body_bytes;
    let deadline = Duration::from_millis(config.body_read_timeout_ms);
    let (parts, body) = req.into_parts();
    match tokio::time::timeout(deadline, read_capped(body, limit)).await {
        Ok(Ok(bytes)) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Ok(Err(_)) => crate::error::ApiError::bad_request(
            "invalid_body",
            "The request body could not be read.",
        )
        .into_response(),
        Err(_) => {
            tracing::info!(
                timeout_ms = config.body_read_timeout_ms,
                "request body not received in time"
            );
            let mut resp = crate::error::ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "The request body was not received in time.",
            )
            .into_response();
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            resp
        }
    }
}

/// The body's bytes, stopping once more than `limit` were read.
async fn read_capped(body: Body, limit: usize) -> Result<Bytes, axum::Error> {
    let mut stream = body.into_data_stream();
    let mut buf = Vec::new();
    while let Some(chunk) = stream.next().await {
        buf.extend_from_slice(&chunk?);
        if buf.len() > limit {
            break;
        }
    }
    Ok(Bytes::from(buf))
}

/// Records every finished request in the node's request log
/// ([`crate::logs::requests`]), as a plain service: no boxed future or boxed
/// copy of the inner service per request, as `from_fn` middleware has.
#[derive(Debug, Clone)]
pub struct RequestLogLayer(pub crate::logs::requests::RequestLog);

impl<S> tower::Layer<S> for RequestLogLayer {
    type Service = RequestLogService<S>;

    fn layer(&self, inner: S) -> RequestLogService<S> {
        RequestLogService {
            inner,
            log: self.0.clone(),
        }
    }
}

/// The service of [`RequestLogLayer`].
#[derive(Debug, Clone)]
pub struct RequestLogService<S> {
    inner: S,
    log: crate::logs::requests::RequestLog,
}

impl<S, B> tower::Service<Request> for RequestLogService<S>
where
    S: tower::Service<Request, Response = axum::http::Response<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = RequestLogFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let pending = crate::logs::requests::begin(&req).map(|p| (p, self.log.clone()));
        RequestLogFuture {
            inner: self.inner.call(req),
            pending,
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`RequestLogService`].
    pub struct RequestLogFuture<F> {
        #[pin]
        inner: F,
        pending: Option<(crate::logs::requests::Pending, crate::logs::requests::RequestLog)>,
    }
}

impl<F, B, E> Future for RequestLogFuture<F>
where
    F: Future<Output = Result<axum::http::Response<B>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let out = std::task::ready!(this.inner.poll(cx));
        if let (Ok(resp), Some((pending, log))) = (&out, this.pending.take()) {
            pending.finish(&log, resp.status().as_u16());
        }
        Poll::Ready(out)
    }
}
