//! The invocation path: `ANY /p/{ref}/functions/v1/{slug}[/…]`.
//!
//! 1. The function's active [`Deployment`] is looked up (short per-node cache).
//! 2. With `verify_jwt` on, the caller must present a valid project key or
//!    user token (`apikey` / `Authorization: Bearer`, verified like every
//!    other project API); with it off, a valid token is still passed on.
//! 3. The request goes to the provider with its method, path below the
//!    function (`/{slug}/…?query`), headers and a streaming body, limited in
//!    size and, from the start of the invocation, in time (a body that fails
//!    is the caller's fault: 413, 408 or 400, and the function's process is
//!    left alone). Headers the function can trust are set by the server and
//!    any client-sent `x-ferrobase-*` header is removed first:
//!    `x-ferrobase-claims` (base64 of the verified JWT claims, JSON),
//!    `x-ferrobase-role`, `x-ferrobase-invocation-id`, `x-request-id`.
//! 4. The response streams back; the invocation record (status, duration,
//!    version, request id) is queued when its body ends. An uncaught error
//!    (the host's 500 `function_error`) keeps its message for the service
//!    role; other callers get a generic one with a hint to the logs, which
//!    have it in full. The same goes for a crash or a failed start, whose
//!    message carries the process's stderr tail: it is logged under the
//!    invocation and answered in full to the service role only.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use base64::Engine as _;
use bytes::Bytes;
use serde_json::Value;
use uuid::Uuid;

use super::Functions;
use super::bundle::Slug;
use super::logs::{InvocationRecord, LogLine, LogSink};
use super::runtime::{Deployment, InvokeError, RequestBody};
use crate::error::ApiError;
use crate::state::AppState;
use crate::tenant::{ProjectCtx, authenticate};

/// Headers that describe one hop, never forwarded.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// `ANY /p/{ref}/functions/v1/{slug}`.
#[utoipa::path(post, path = "/p/{ref}/functions/v1/{slug}", tag = "functions",
    params(("ref" = String, Path, description = "Project ref"), ("slug" = String, Path, description = "Function slug")),
    request_body(content = String, description = "Any body; passed to the function as is"),
    responses(
        (status = 200, description = "Whatever the function answers (any status, headers, streaming body)"),
        (status = 401, body = ApiError, description = "verify_jwt is on and no valid key or token was sent"),
        (status = 404, body = ApiError), (status = 413, body = ApiError),
        (status = 429, body = ApiError, description = "The function's concurrency limit is reached"),
        (status = 502, body = ApiError, description = "The function crashed, ran out of memory or failed to start"),
        (status = 503, body = ApiError, description = "No runtime (Deno not installed)"),
        (status = 504, body = ApiError, description = "The function timed out")))]
pub async fn invoke_root(state: State<AppState>, ctx: ProjectCtx, req: Request) -> Response {
    invoke(state, ctx, req).await
}

/// `ANY /p/{ref}/functions/v1/{slug}/{*rest}`: the same, with a sub-path.
pub async fn invoke_path(state: State<AppState>, ctx: ProjectCtx, req: Request) -> Response {
    invoke(state, ctx, req).await
}

async fn invoke(
    State(app): State<AppState>,
    ProjectCtx(tenant): ProjectCtx,
    req: Request,
) -> Response {
    // Nesting strips `/p/{ref}`: the path is `/functions/v1/{slug}[/rest]`.
    let path = req.uri().path().to_owned();
    let below = path.strip_prefix("/functions/v1/").unwrap_or_default();
    let (slug, rest) = match below.split_once('/') {
        Some((s, r)) => (s, format!("/{r}")),
        None => (below, String::new()),
    };
    let Ok(slug) = Slug::parse(slug) else {
        return ApiError::not_found(
            "function_not_found",
            format!(
                "No function {:?} in this project.",
                slug.chars().take(80).collect::<String>()
            ),
        )
        .into_response();
    };
    let functions = &app.functions;
    let d = match functions
        .deployment(tenant.project.id, &tenant.project.project_ref, &slug)
        .await
    {
        Ok(d) => d,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let headers = req.headers();
    let claims = if d.settings.verify_jwt {
        match authenticate(&tenant, headers) {
            Ok(c) => Some(c.claims),
            Err(e) => return e.with_hint("This function has verify_jwt on: send the project's anon key or a user's access token.").into_response(),
        }
    } else if headers.contains_key("apikey") || headers.contains_key(header::AUTHORIZATION) {
        authenticate(&tenant, headers).ok().map(|c| c.claims)
    } else {
        None
    };
    let max = app.platform.config().max_body_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("The request body is larger than {max} bytes."),
        )
        .into_response();
    }
    let request_id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let query = req
        .uri()
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let target = format!("/{}{rest}{query}", slug.as_str());
    let proto = functions.proto;
    let (parts, body) = req.into_parts();
    let body = RequestBody::new(body, max);
    dispatch(
        functions,
        d,
        parts.method,
        &target,
        parts.headers,
        body,
        Invocation {
            trigger: "http",
            request_id,
            claims,
            proto,
        },
    )
    .await
}

/// What the invocation path knows besides the request.
pub struct Invocation {
    /// `http` or `schedule`.
    pub trigger: &'static str,
    /// The request id (`x-request-id`).
    pub request_id: Option<String>,
    /// The caller's verified claims, if any.
    pub claims: Option<Value>,
    /// `http` or `https`, for the URL the function sees.
    pub proto: &'static str,
}

/// Runs one invocation of `d` and returns the response (an error envelope
/// when the function could not answer); the invocation record is queued
/// when the response body ends.
pub async fn dispatch(
    functions: &Functions,
    d: Arc<Deployment>,
    method: Method,
    target: &str,
    headers: HeaderMap,
    body: RequestBody,
    inv: Invocation,
) -> Response {
    let started = Instant::now();
    let id = Uuid::new_v4();
    let id_header = {
        let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
        HeaderValue::from_bytes(id.hyphenated().encode_lower(&mut buf).as_bytes())
            .unwrap_or_else(|_| HeaderValue::from_static(""))
    };
    let host = headers.get(header::HOST).cloned();
    let mut fwd = forwardable(headers);
    if let Some(host) = host {
        fwd.insert(HeaderName::from_static("x-forwarded-host"), host);
    }
    fwd.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static(inv.proto),
    );
    fwd.insert(
        HeaderName::from_static("x-ferrobase-invocation-id"),
        id_header.clone(),
    );
    set(&mut fwd, "x-ferrobase-trigger", inv.trigger);
    if let Some(claims) = &inv.claims {
        let json = claims.to_string();
        set(
            &mut fwd,
            "x-ferrobase-claims",
            &base64::engine::general_purpose::STANDARD.encode(json),
        );
        if let Some(role) = claims["role"].as_str() {
            set(&mut fwd, "x-ferrobase-role", role);
        }
    }
    if let Some(rid) = &inv.request_id {
        set(&mut fwd, "x-request-id", rid);
    }
    let mut record = InvocationRecord {
        id,
        project_id: d.project_id,
        slug: d.slug.clone(),
        version: Some(d.version),
        request_id: inv.request_id,
        trigger: inv.trigger,
        method: method.to_string(),
        path: target
            .split('?')
            .next()
            .unwrap_or_default()
            .chars()
            .take(500)
            .collect(),
        status: 0,
        error: None,
        duration_ms: 0,
        started_at: chrono::Utc::now(),
    };
    let mut builder = axum::http::Request::builder().method(method).uri(target);
    if let Some(h) = builder.headers_mut() {
        *h = fwd;
    }
    let Ok(req) = builder.body(body) else {
        return ApiError::bad_request("invalid_request", "The request path is not valid.")
            .into_response();
    };
    let version = d.version;
    let request = req.body().progress();
    let service_role = inv
        .claims
        .as_ref()
        .is_some_and(|c| c["role"] == "service_role");
    match functions.runtime.invoke(d, req).await {
        Ok(resp) => {
            let (mut parts, mut body) = resp.into_parts();
            for h in HOP_BY_HOP {
                parts.headers.remove(*h);
            }
            let uncaught = parts.headers.remove("x-ferrobase-error").is_some();
            if uncaught {
                record.error = Some("uncaught".to_owned());
            }
            record.status = i32::from(parts.status.as_u16());
            if uncaught && !service_role {
                // The message of an uncaught error may show internals (a
                // query, a path, a secret): only the service role gets it;
                // the host logged it in full. The function's answer is
                // dropped unread (that connection is not reused).
                (parts, body) = ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "function_error",
                    "The function failed with an uncaught error.",
                )
                .with_hint(format!(
                    "Its message is in the function's logs: {}",
                    logs_query(&record)
                ))
                .into_response()
                .into_parts();
            }
            parts.headers.insert(
                HeaderName::from_static("x-ferrobase-invocation-id"),
                id_header,
            );
            parts.headers.insert(
                HeaderName::from_static("x-ferrobase-function-version"),
                HeaderValue::from(version),
            );
            let body = Recorded {
                inner: body,
                recorder: Recorder {
                    sink: functions.logs.clone(),
                    record: Some(record),
                    started,
                    failed: false,
                },
            };
            Response::from_parts(parts, Body::new(body))
        }
        Err(e) => {
            record.status = i32::from(e.status().as_u16());
            record.error = Some(e.code().to_owned());
            record.duration_ms = elapsed_ms(started);
            // The rest of a failed or unfinished request body is not read:
            // end the connection.
            let close = matches!(e, InvokeError::Body(_)) || !request.received();
            let err = match e.public_message() {
                Some(public) => {
                    // The message carries the process's output (its stderr
                    // tail), which may show a secret: it goes to the logs
                    // under this invocation, and to the service role; other
                    // callers learn where to look.
                    functions.logs.log(LogLine {
                        project_id: record.project_id,
                        slug: record.slug.clone(),
                        version: record.version,
                        invocation_id: Some(id),
                        level: "error".to_owned(),
                        message: format!("{}: {e}", e.code()),
                        at: chrono::Utc::now(),
                    });
                    let hint = format!(
                        "The reason is in the function's logs: {}",
                        logs_query(&record)
                    );
                    if service_role {
                        ApiError::from(e).with_hint(hint)
                    } else {
                        ApiError::new(e.status(), e.code(), public).with_hint(hint)
                    }
                }
                None => ApiError::from(e),
            };
            functions.logs.invocation(record);
            let mut resp = err.into_response();
            resp.headers_mut().insert(
                HeaderName::from_static("x-ferrobase-invocation-id"),
                id_header,
            );
            if close {
                resp.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            resp
        }
    }
}

/// The logs query that finds what `record`'s invocation logged: by request
/// id when it has one (the caller knows it), else by invocation id.
fn logs_query(record: &InvocationRecord) -> String {
    let find = match &record.request_id {
        Some(rid) => format!("request_id={rid}"),
        None => format!("invocation_id={}", record.id),
    };
    format!("GET /admin/v1/functions/{}/logs?{find}", record.slug)
}

/// Whether a client-sent header is not passed to the function.
fn dropped(name: &HeaderName) -> bool {
    let n = name.as_str();
    HOP_BY_HOP.contains(&n) || n.starts_with("x-ferrobase-") || n.starts_with("x-forwarded-")
}

/// The client's headers without the dropped ones: the same map when there
/// is nothing to drop (the usual case), else a copy without them.
fn forwardable(headers: HeaderMap) -> HeaderMap {
    if !headers.keys().any(dropped) {
        return headers;
    }
    let mut fwd = HeaderMap::with_capacity(headers.len() + 6);
    for (name, value) in &headers {
        if !dropped(name) {
            fwd.append(name.clone(), value.clone());
        }
    }
    fwd
}

fn set(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(HeaderName::from_static(name), v);
    }
}

fn elapsed_ms(started: Instant) -> i32 {
    i32::try_from(started.elapsed().as_millis()).unwrap_or(i32::MAX)
}

/// Queues the invocation record when dropped (the body ended, failed or the
/// client went away).
struct Recorder {
    sink: LogSink,
    record: Option<InvocationRecord>,
    started: Instant,
    failed: bool,
}

impl Recorder {
    /// Queues the record (once).
    fn finish(&mut self) {
        if let Some(mut r) = self.record.take() {
            r.duration_ms = elapsed_ms(self.started);
            if self.failed && r.error.is_none() {
                r.error = Some("stream_error".to_owned());
            }
            self.sink.invocation(r);
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.finish();
    }
}

/// The response body as the function sends it, recording the invocation
/// when it ends (polled directly: no stream adapter).
struct Recorded {
    inner: Body,
    recorder: Recorder,
}

impl hyper::body::Body for Recorded {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Err(_))) => this.recorder.failed = true,
            // The body ended: record now rather than when the connection lets go of it.
            Poll::Ready(None) => this.recorder.finish(),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}
