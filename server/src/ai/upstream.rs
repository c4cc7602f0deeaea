//! Calling upstreams: one async-openai client per provider on the shared
//! reqwest connection pool, `byot` calls with `serde_json::Value` (unknown
//! fields pass through both ways), and the gateway's own fallback.
//!
//! async-openai's default executor retries 429/5xx three times on its own;
//! it is replaced by a one-attempt service (`Transport`) so that every retry is a
//! decision made here: the next provider is tried on 429, 5xx, connection
//! failures and timeouts, and only while nothing has been sent to the client
//! (for a stream: until its first event arrived).

use std::future::Future;
use std::time::Duration;

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::middleware::HttpRequestFactory;
use axum::http::StatusCode;
use futures_util::Stream;
use serde_json::Value;

use super::error::{AiError, redact};
use super::settings::Upstream;
use crate::outbound::{OutboundPolicy, Redirects};

/// A parsed SSE stream of chunks from an upstream.
pub type ChunkStream = std::pin::Pin<Box<dyn Stream<Item = Result<Value, OpenAIError>> + Send>>;

/// The HTTP clients upstream calls go through: shared connection pools,
/// connect timeout, no redirects (an upstream has no business sending the
/// gateway's key elsewhere).
///
/// Providers a project configures go through the outbound SSRF guard (a
/// tenant must not reach the server's network through "its" upstream); the
/// operator's platform default (`FERROBASE_AI_BASE_URL`) is trusted, so it
/// may be a model server on a private network.
#[derive(Debug, Clone)]
pub struct HttpClients {
    /// For the platform default upstream.
    pub platform: reqwest::Client,
    /// For providers a project configured.
    pub project: reqwest::Client,
    /// Largest response body read from an upstream (a stream's whole body).
    pub max_response_bytes: usize,
}

impl HttpClients {
    /// Both clients, the project one guarded by `policy`; responses longer
    /// than `max_response_bytes` fail (`upstream_response_too_large`).
    pub fn new(
        connect_timeout: Duration,
        policy: &OutboundPolicy,
        max_response_bytes: usize,
    ) -> Self {
        let build = |builder: reqwest::ClientBuilder| {
            builder
                .connect_timeout(connect_timeout)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_else(|e| {
                    tracing::error!(error = %e, "could not build the AI HTTP client, using defaults");
                    reqwest::Client::new()
                })
        };
        HttpClients {
            platform: build(reqwest::Client::builder()),
            project: build(policy.client_builder(Redirects::None)),
            max_response_bytes,
        }
    }

    /// The client for `up`.
    pub fn for_upstream(&self, up: &Upstream) -> &reqwest::Client {
        if up.trusted {
            &self.platform
        } else {
            &self.project
        }
    }
}

/// An async-openai client for one upstream, without its retry layer.
pub fn client_for(http: &HttpClients, up: &Upstream) -> Result<Client<OpenAIConfig>, AiError> {
    let max_body = http.max_response_bytes;
    let http = http.for_upstream(up);
    // Org and project default to OPENAI_* environment variables: never send ours.
    let mut config = OpenAIConfig::new()
        .with_api_base(up.base_url.clone())
        .with_api_key(up.api_key.clone().unwrap_or_default())
        .with_org_id("")
        .with_project_id("");
    for (name, value) in &up.headers {
        let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| AiError::internal(&e))?;
        config = config
            .with_header(name, value.as_str())
            .map_err(|e| AiError::internal(&e))?;
    }
    let transport = Transport {
        http: http.clone(),
        max_body,
    };
    Ok(Client::build(http.clone(), config).with_http_service(transport))
}

/// The message of a response cut off at the size limit (found again by
/// [`classify`] in the error async-openai reports).
const TOO_LARGE: &str = "upstream response too large";

/// `response` with a body that fails once it passes `max` bytes, so a
/// provider cannot make the gateway buffer an unbounded answer.
fn limit_body(response: reqwest::Response, max: usize) -> reqwest::Response {
    use futures_util::StreamExt as _;
    let response = http::Response::from(response);
    let (parts, body) = response.into_parts();
    let mut seen = 0usize;
    let limited = http_body_util::BodyDataStream::new(body).map(move |chunk| {
        let chunk = chunk?;
        seen = seen.saturating_add(chunk.len());
        if seen > max {
            return Err(std::io::Error::other(format!("{TOO_LARGE} (over {max} bytes)")).into());
        }
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(chunk)
    });
    reqwest::Response::from(http::Response::from_parts(
        parts,
        reqwest::Body::wrap_stream(limited),
    ))
}

/// The HTTP service async-openai sends through instead of its default one
/// (which retries on its own): one attempt, and 4xx bodies normalised to
/// OpenAI's error JSON. async-openai reads a 4xx body only as that JSON; a
/// proxy's HTML 429 or an `error.code` given as a number would otherwise
/// lose its status, and with it the decision to fall back.
#[derive(Clone)]
struct Transport {
    http: reqwest::Client,
    /// Longest body read ([`limit_body`]).
    max_body: usize,
}

type TransportFuture =
    std::pin::Pin<Box<dyn Future<Output = Result<reqwest::Response, OpenAIError>> + Send>>;

impl tower::Service<HttpRequestFactory> for Transport {
    type Response = reqwest::Response;
    type Error = OpenAIError;
    type Future = TransportFuture;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, factory: HttpRequestFactory) -> Self::Future {
        let http = self.http.clone();
        let max_body = self.max_body;
        Box::pin(async move {
            let request = factory.build().await?;
            let response = limit_body(http.execute(request).await?, max_body);
            let status = response.status();
            if !status.is_client_error() {
                return Ok(response);
            }
            let bytes = response.bytes().await?;
            let parsed = serde_json::from_slice::<Value>(&bytes).ok();
            let error = parsed.as_ref().and_then(|v| v.get("error"));
            let text = |k: &str| error.and_then(|e| e.get(k)).and_then(Value::as_str);
            let message = text("message")
                .map(str::to_owned)
                .unwrap_or_else(|| match error {
                    Some(Value::String(s)) => s.clone(),
                    _ => String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned(),
                });
            let body = serde_json::json!({"error": {
                "message": message, "type": text("type"), "param": text("param"), "code": text("code"),
            }});
            let rebuilt = http::Response::builder()
                .status(status)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string())
                .map_err(|e| OpenAIError::InvalidArgument(e.to_string()))?;
            Ok(reqwest::Response::from(rebuilt))
        })
    }
}

/// Why one attempt failed, and whether the next provider may be tried.
#[derive(Debug)]
pub struct Failure {
    /// What the client gets if this is the last attempt.
    pub error: AiError,
    /// 429, 5xx, unreachable or timed out: try the next provider.
    pub retryable: bool,
}

/// Maps an async-openai error of upstream `up` to the client's error.
pub fn classify(e: &OpenAIError, up: &Upstream) -> Failure {
    let key = up.api_key.as_deref();
    let retryable = |error: AiError| Failure {
        error,
        retryable: true,
    };
    let fatal = |error: AiError| Failure {
        error,
        retryable: false,
    };
    if cut_off(e) {
        tracing::warn!(upstream = %up.name, "upstream response over the size limit");
        return fatal(AiError::new(
            StatusCode::BAD_GATEWAY,
            "api_error",
            "upstream_response_too_large",
            format!(
                "The AI provider `{}` sent an answer larger than the gateway reads \
                 (FERROBASE_AI_MAX_RESPONSE_BYTES).",
                up.name
            ),
        ));
    }
    match e {
        OpenAIError::ApiError(resp) => {
            let status = resp.status_code.as_u16();
            let message = redact(&resp.api_error.message, key);
            tracing::warn!(upstream = %up.name, status, message = %message, "upstream error");
            match status {
                429 => retryable(
                    AiError::new(
                        StatusCode::TOO_MANY_REQUESTS,
                        "rate_limit_error",
                        "upstream_rate_limited",
                        format!(
                            "The AI provider `{}` is rate limiting requests: {message}",
                            up.name
                        ),
                    )
                    .with_retry_after(1),
                ),
                500..=599 => retryable(AiError::new(
                    StatusCode::BAD_GATEWAY,
                    "api_error",
                    "upstream_error",
                    format!("The AI provider `{}` failed (HTTP {status}).", up.name),
                )),
                401 | 403 => fatal(AiError::new(
                    StatusCode::BAD_GATEWAY,
                    "api_error",
                    "upstream_auth_failed",
                    format!(
                        "The AI provider `{}` refused the gateway's credentials; an admin must fix \
                         its key (PATCH /admin/v1/ai/providers/{}).",
                        up.name, up.name
                    ),
                )),
                _ => {
                    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
                    let mut err = AiError::new(
                        status,
                        if status == StatusCode::NOT_FOUND || status.is_client_error() {
                            "invalid_request_error"
                        } else {
                            "api_error"
                        },
                        resp.api_error
                            .code
                            .as_deref()
                            .unwrap_or("upstream_invalid_request"),
                        message,
                    );
                    err.param = resp.api_error.param.clone();
                    fatal(err)
                }
            }
        }
        OpenAIError::Reqwest(re) => {
            tracing::warn!(upstream = %up.name, error = %redact(&re.to_string(), key), "upstream unreachable");
            if re.is_timeout() {
                retryable(timeout_error(up))
            } else {
                retryable(AiError::new(
                    StatusCode::BAD_GATEWAY,
                    "api_error",
                    "upstream_unreachable",
                    format!("The AI provider `{}` could not be reached.", up.name),
                ))
            }
        }
        OpenAIError::StreamError(se) => {
            tracing::warn!(upstream = %up.name, error = %redact(&se.to_string(), key), "upstream stream failed");
            retryable(AiError::new(
                StatusCode::BAD_GATEWAY,
                "api_error",
                "upstream_error",
                format!("The AI provider `{}` sent a broken stream.", up.name),
            ))
        }
        other => {
            tracing::warn!(upstream = %up.name, error = %redact(&other.to_string(), key), "upstream answer unusable");
            fatal(AiError::new(
                StatusCode::BAD_GATEWAY,
                "api_error",
                "upstream_invalid_response",
                format!(
                    "The AI provider `{}` sent an answer that is not valid JSON.",
                    up.name
                ),
            ))
        }
    }
}

/// Whether `e` comes from a body cut off by [`limit_body`].
fn cut_off(e: &OpenAIError) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.to_string().starts_with(TOO_LARGE) {
            return true;
        }
        source = s.source();
    }
    false
}

/// 504 for an upstream that did not answer in time.
pub fn timeout_error(up: &Upstream) -> AiError {
    AiError::new(
        StatusCode::GATEWAY_TIMEOUT,
        "api_error",
        "upstream_timeout",
        format!("The AI provider `{}` did not answer in time.", up.name),
    )
}

/// Runs `call` on each upstream in order until one succeeds or fails for
/// good; each attempt is bounded by `timeout`. Returns the answer and the
/// provider that gave it, or the last failure with the provider tried last.
pub async fn with_fallback<'a, T, F, Fut>(
    http: &HttpClients,
    upstreams: &'a [Upstream],
    timeout: Duration,
    call: F,
) -> Result<(T, &'a Upstream), (AiError, Option<&'a Upstream>)>
where
    F: Fn(Client<OpenAIConfig>) -> Fut,
    Fut: Future<Output = Result<T, OpenAIError>>,
{
    let mut last: Option<(AiError, &Upstream)> = None;
    for up in upstreams {
        let client = client_for(http, up).map_err(|e| (e, Some(up)))?;
        let failure = match tokio::time::timeout(timeout, call(client)).await {
            Ok(Ok(answer)) => return Ok((answer, up)),
            Ok(Err(e)) => classify(&e, up),
            Err(_) => {
                tracing::warn!(upstream = %up.name, "upstream timed out");
                Failure {
                    error: timeout_error(up),
                    retryable: true,
                }
            }
        };
        if !failure.retryable {
            return Err((failure.error, Some(up)));
        }
        last = Some((failure.error, up));
    }
    Err(match last {
        Some((e, up)) => (e, Some(up)),
        None => (AiError::not_configured(), None),
    })
}
