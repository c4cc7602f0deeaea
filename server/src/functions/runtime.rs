//! The provider boundary: what a function runs ([`Deployment`]) and the
//! [`Runtime`] trait that the local Deno supervisor and Deno Deploy both
//! implement, so the admin API and the invocation path never know which one
//! runs the code.

use std::future::Future as _;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::StatusCode;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use uuid::Uuid;

use super::Settings;
use super::bundle::Bundle;
use crate::error::ApiError;

/// One function version as it runs: code identity, settings and environment.
pub struct Deployment {
    /// The project.
    pub project_id: Uuid,
    /// The project's ref.
    pub project_ref: String,
    /// The function row.
    pub function_id: Uuid,
    /// The function's slug.
    pub slug: String,
    /// The active version.
    pub version: i32,
    /// The version's checksum.
    pub checksum: String,
    /// The file that is run.
    pub entrypoint: String,
    /// The import map among the files, if any.
    pub import_map: Option<String>,
    /// The function's settings.
    pub settings: Settings,
    /// Environment variables: `FERROBASE_URL`, the project keys, the secrets.
    pub env: Vec<(String, String)>,
    /// Changes whenever the code, the settings or the environment change: a
    /// warm process serving another fingerprint is replaced.
    pub fingerprint: String,
}

impl std::fmt::Debug for Deployment {
    // Never print the environment: it holds the secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deployment")
            .field("project_ref", &self.project_ref)
            .field("slug", &self.slug)
            .field("version", &self.version)
            .field("checksum", &self.checksum)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Why the caller's request body could not be passed on whole: the
/// caller's doing, never a reason to restart the function's process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// More bytes than the limit (`FERROBASE_MAX_BODY_BYTES`).
    #[error("The request body is larger than {0} bytes.")]
    TooLarge(usize),
    /// The caller did not send it before the invocation's deadline.
    #[error("The request body was not received in time.")]
    TimedOut,
    /// The caller broke it off or sent a malformed one.
    #[error("The request body could not be read.")]
    Broken,
}

impl BodyError {
    /// The stable code of the error envelope (the same as for other routes' bodies).
    pub fn code(self) -> &'static str {
        match self {
            Self::TooLarge(_) => "payload_too_large",
            Self::TimedOut => "request_timeout",
            Self::Broken => "invalid_body",
        }
    }

    /// The status answered.
    pub fn status(self) -> StatusCode {
        match self {
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::TimedOut => StatusCode::REQUEST_TIMEOUT,
            Self::Broken => StatusCode::BAD_REQUEST,
        }
    }
}

/// States of a [`RequestBody`], shared with its [`BodyProgress`].
const READING: u8 = 0;
const WAITING_FOR_CALLER: u8 = 1;
const RECEIVED: u8 = 2;
const TOO_LARGE: u8 = 3;
const TIMED_OUT: u8 = 4;
const BROKEN: u8 = 5;

/// What became of a [`RequestBody`], readable by the provider while the
/// body is owned by its HTTP client.
#[derive(Debug, Clone)]
pub struct BodyProgress {
    state: Arc<AtomicU8>,
    limit: usize,
}

impl BodyProgress {
    /// Whether the whole body was read from the caller.
    pub fn received(&self) -> bool {
        self.state.load(Ordering::Acquire) == RECEIVED
    }

    /// The caller's fault when sending the request failed (`timed_out`: at
    /// the invocation's deadline): the body's failure, or at the deadline a
    /// body last seen waiting for bytes from the caller (rather than for the
    /// function to read what it has). `None`: the function's fault.
    pub fn blame(&self, timed_out: bool) -> Option<BodyError> {
        let waiting = self.state.load(Ordering::Acquire) == WAITING_FOR_CALLER;
        self.failure()
            .or((timed_out && waiting).then_some(BodyError::TimedOut))
    }

    fn failure(&self) -> Option<BodyError> {
        match self.state.load(Ordering::Acquire) {
            TOO_LARGE => Some(BodyError::TooLarge(self.limit)),
            TIMED_OUT => Some(BodyError::TimedOut),
            BROKEN => Some(BodyError::Broken),
            _ => None,
        }
    }

    /// Moves on from reading (the first outcome stays).
    fn set(&self, state: u8) {
        let _ = self
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
                (s == READING || s == WAITING_FOR_CALLER).then_some(state)
            });
    }
}

/// The caller's request body on its way to the function, streamed: it fails
/// beyond `limit` bytes, when the caller's stream fails, and, once a
/// deadline is set, when the caller has not sent the rest by then (the timer
/// is only armed while waiting for the caller). Its [`BodyProgress`] tells
/// the provider which of these happened.
pub struct RequestBody {
    inner: Body,
    limit: usize,
    read: usize,
    deadline: Option<tokio::time::Instant>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    progress: BodyProgress,
}

impl RequestBody {
    /// Wraps `inner`, allowing at most `limit` bytes.
    pub fn new(inner: Body, limit: usize) -> Self {
        let progress = BodyProgress {
            state: Arc::new(AtomicU8::new(READING)),
            limit,
        };
        if hyper::body::Body::is_end_stream(&inner) {
            progress.set(RECEIVED);
        }
        Self {
            inner,
            limit,
            read: 0,
            deadline: None,
            sleep: None,
            progress,
        }
    }

    /// The body's progress, to read after handing it over.
    pub fn progress(&self) -> BodyProgress {
        self.progress.clone()
    }

    /// Fails the body if the caller has not sent it all by `deadline`.
    pub fn with_deadline(mut self, deadline: tokio::time::Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }

    fn fail(&mut self, state: u8) -> Poll<Option<Result<hyper::body::Frame<Bytes>, BodyError>>> {
        self.progress.set(state);
        self.sleep = None;
        match self.progress.failure() {
            Some(e) => Poll::Ready(Some(Err(e))),
            None => Poll::Ready(None),
        }
    }

    fn done(&self) -> bool {
        let state = self.progress.state.load(Ordering::Acquire);
        state != READING && state != WAITING_FOR_CALLER
    }
}

impl hyper::body::Body for RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        if this.done() {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.read = this.read.saturating_add(data.len());
                    if this.read > this.limit {
                        return this.fail(TOO_LARGE);
                    }
                }
                let state = if this.inner.is_end_stream() {
                    RECEIVED
                } else {
                    READING
                };
                this.progress.state.store(state, Ordering::Release);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => {
                this.progress.set(RECEIVED);
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(_))) => this.fail(BROKEN),
            Poll::Pending => {
                this.progress
                    .state
                    .store(WAITING_FOR_CALLER, Ordering::Release);
                if let Some(deadline) = this.deadline {
                    let sleep = this
                        .sleep
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                    if sleep.as_mut().poll(cx).is_ready() {
                        return this.fail(TIMED_OUT);
                    }
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done() || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        if self.done() {
            hyper::body::SizeHint::with_exact(0)
        } else {
            self.inner.size_hint()
        }
    }
}

/// Why an invocation produced no response from the function.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    /// No runtime is available (e.g. Deno is not installed).
    #[error("{0}")]
    Unavailable(String),
    /// The function already runs as many invocations as it may.
    #[error("the function is running {0} invocations, its concurrency limit")]
    Busy(i32),
    /// The function did not answer within its timeout.
    #[error("the function did not answer within {0} ms")]
    Timeout(i32),
    /// The function's process died (crash, `Deno.exit`) during the invocation.
    #[error("the function's process exited: {0}")]
    Crashed(String),
    /// The function's process ran out of memory.
    #[error("the function ran out of memory (limit {0} MiB)")]
    OutOfMemory(i32),
    /// The function could not be started (syntax error, failing import, …).
    #[error("the function could not start: {0}")]
    BootFailed(String),
    /// The provider failed in another way.
    #[error("{0}")]
    Provider(String),
    /// The caller's request body failed; the function's process is unharmed.
    #[error(transparent)]
    Body(#[from] BodyError),
}

impl InvokeError {
    /// A short code for invocation records and the error envelope.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unavailable(_) => "functions_unavailable",
            Self::Busy(_) => "function_concurrency_limit",
            Self::Timeout(_) => "function_timeout",
            Self::Crashed(_) => "function_crashed",
            Self::OutOfMemory(_) => "function_out_of_memory",
            Self::BootFailed(_) => "function_boot_failed",
            Self::Provider(_) => "function_provider_error",
            Self::Body(e) => e.code(),
        }
    }

    /// What a caller other than the service role is told instead of the
    /// message, when the message carries the process's own output (the
    /// stderr tail of a crash or a failed start, which may show secrets,
    /// tokens or paths); `None`: the message shows nothing of the function.
    pub fn public_message(&self) -> Option<&'static str> {
        match self {
            Self::Crashed(_) => Some("The function's process exited during the invocation."),
            Self::BootFailed(_) => Some("The function could not start."),
            _ => None,
        }
    }

    /// The status answered to the caller.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Busy(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::Crashed(_) | Self::OutOfMemory(_) | Self::BootFailed(_) | Self::Provider(_) => {
                StatusCode::BAD_GATEWAY
            }
            Self::Body(e) => e.status(),
        }
    }
}

impl From<InvokeError> for ApiError {
    fn from(e: InvokeError) -> Self {
        let mut err = ApiError::new(e.status(), e.code(), e.to_string());
        match &e {
            InvokeError::Unavailable(_) => {
                err = err.with_hint(
                    "Install Deno (`pip install deno` or `npm i deno`) and put it on PATH or set \
                     FERROBASE_DENO_BIN, then restart the server.",
                );
            }
            InvokeError::Busy(_) => err.retry_after = Some(1),
            InvokeError::Body(_) => {}
            InvokeError::Timeout(_) | InvokeError::OutOfMemory(_) => {
                err = err.with_hint(
                    "Raise the function's timeout_ms / memory_mb with PUT /admin/v1/functions/{slug}.",
                );
            }
            _ => {
                err = err.with_hint("See GET /admin/v1/functions/{slug}/logs.");
            }
        }
        err
    }
}

/// A function provider.
pub trait Runtime: Send + Sync {
    /// `local` or `deno-deploy`.
    fn name(&self) -> &'static str;

    /// `None` when invocations can run; otherwise why not (shown in the
    /// start-up banner and in 503 answers).
    fn unavailable(&self) -> Option<String>;

    /// Prepares a freshly stored version (the local runtime writes its
    /// files; Deno Deploy uploads a revision). Returns the provider's
    /// revision id, if it has one.
    fn deploy<'a>(
        &'a self,
        d: &'a Deployment,
        bundle: &'a Bundle,
    ) -> BoxFuture<'a, Result<Option<String>, String>>;

    /// Runs one invocation: `req` has the path `/{slug}/…` and the headers
    /// the function should see. The response body may stream. A failure of
    /// the request body is answered as [`InvokeError::Body`] (see
    /// [`RequestBody::progress`]), without harm to the function's process.
    fn invoke(
        &self,
        d: Arc<Deployment>,
        req: axum::http::Request<RequestBody>,
    ) -> BoxFuture<'_, Result<axum::http::Response<Body>, InvokeError>>;

    /// Log lines the provider keeps itself (Deno Deploy's app logs) since
    /// `since`; the local runtime's lines are already in the control plane.
    fn provider_logs<'a>(
        &'a self,
        _project_id: Uuid,
        _project_ref: &'a str,
        _slug: &'a str,
        _since: chrono::DateTime<chrono::Utc>,
    ) -> BoxFuture<'a, Result<Vec<super::logs::LogEntry>, String>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    /// Stops and forgets everything the provider runs for a function.
    fn remove<'a>(
        &'a self,
        project_id: Uuid,
        project_ref: &'a str,
        slug: &'a str,
    ) -> BoxFuture<'a, ()>;
}
