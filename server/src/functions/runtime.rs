//! The provider boundary: what a function runs ([`Deployment`]) and the
//! [`Runtime`] trait that the local Deno supervisor and Deno Deploy both
//! implement, so the admin API and the invocation path never know which one
//! runs the code.

use axum::body::Body;
use axum::http::StatusCode;
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
    /// the function should see. The response body may stream.
    fn invoke(
        &self,
        d: std::sync::Arc<Deployment>,
        req: axum::http::Request<Body>,
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
