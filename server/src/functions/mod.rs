//! Edge functions: TypeScript/JavaScript next to the project's data, deployed
//! through `/admin/v1/functions` and invoked at `/functions/v1/{slug}`.
//!
//! - [`bundle`]: slugs, source bundles (files, entrypoint, import map) and
//!   their checksum, secret names; all parsed at the edge.
//! - [`store`]: the control-plane rows (`functions`, immutable
//!   `function_versions`, encrypted `function_secrets`).
//! - [`runtime`]: the [`Runtime`](runtime::Runtime) trait every provider
//!   implements and the [`Deployment`](runtime::Deployment) it runs.
//! - [`local`]: the default provider, Deno processes supervised by this
//!   server (one warm process per function version, restricted permissions).
//! - [`deno_deploy`]: the cloud provider, Deno Deploy's v2 API.
//! - [`invoke`]: the invocation path (verify the caller, pick the
//!   deployment, proxy the request, record the invocation).
//! - [`logs`]: invocation records and log lines, written in batches off the
//!   request path, and their queries.
//! - [`schedule`]: cron schedules, run once per tick across nodes.
//! - [`handlers`]: the HTTP glue of the admin API.
//!
//! Policy: core functions return [`FunctionsError`]; handlers turn it into
//! the JSON envelope.

pub mod bundle;
pub mod deno_deploy;
pub mod handlers;
pub mod invoke;
pub mod local;
pub mod logs;
pub mod runtime;
pub mod schedule;
pub mod store;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::{any, get, post, put};
use uuid::Uuid;

use crate::error::ApiError;
use crate::platform::Platform;
use crate::state::AppState;

pub use runtime::{Deployment, Runtime};

/// Cached deployments by project then slug (looked up without allocating),
/// with when they were loaded.
type DeploymentKey = (Uuid, String);
type DeploymentCache = HashMap<Uuid, HashMap<String, (Arc<Deployment>, Instant)>>;

/// What can go wrong in the functions core.
#[derive(Debug, thiserror::Error)]
pub enum FunctionsError {
    /// Bad input; the message names the problem.
    #[error("{0}")]
    Invalid(String),
    /// No such function, version, secret or schedule.
    #[error("{0}")]
    NotFound(String),
    /// The function already exists.
    #[error("{0}")]
    Conflict(String),
    /// The provider refused or failed a deploy.
    #[error("{0}")]
    Provider(String),
    /// A database statement failed.
    #[error("database error: {0}")]
    Db(#[from] tokio_postgres::Error),
    /// No connection could be had.
    #[error("database unavailable: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// A stored secret could not be decrypted.
    #[error(transparent)]
    Crypto(#[from] crate::crypto::CryptoError),
    /// The project's keys could not be loaded.
    #[error(transparent)]
    Project(#[from] crate::platform::projects::ProjectError),
}

impl From<FunctionsError> for ApiError {
    fn from(e: FunctionsError) -> Self {
        match e {
            FunctionsError::Invalid(m) => ApiError::bad_request("invalid_function", m),
            FunctionsError::NotFound(m) => ApiError::not_found("function_not_found", m),
            FunctionsError::Conflict(m) => ApiError::conflict("function_exists", m),
            FunctionsError::Provider(m) => ApiError::new(
                axum::http::StatusCode::BAD_GATEWAY,
                "function_deploy_failed",
                m,
            ),
            FunctionsError::Db(db) => db.into(),
            FunctionsError::Pool(p) => p.into(),
            FunctionsError::Project(p) => p.into(),
            other @ FunctionsError::Crypto(_) => ApiError::internal(&other),
        }
    }
}

/// Per-function settings (stored on the function, copied into each
/// [`Deployment`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Settings {
    /// Require a valid project key or user token to invoke (default on).
    pub verify_jwt: bool,
    /// Wall-clock limit of one invocation, in milliseconds.
    pub timeout_ms: i32,
    /// V8 heap limit of the function's process, in MiB.
    pub memory_mb: i32,
    /// Invocations running at once; more get 429.
    pub concurrency: i32,
}

/// The functions service of one node: the provider, the log sink and a short
/// cache of what each function runs.
pub struct Functions {
    platform: Platform,
    /// The provider running the code.
    pub runtime: Arc<dyn Runtime>,
    /// Where invocation records and log lines go.
    pub logs: logs::LogSink,
    cache: Mutex<DeploymentCache>,
    /// One loader per function at a time: when the cache entry expires under
    /// load, one request reloads it and the others wait for that load
    /// instead of each querying the control plane.
    loading: crate::throttle::SingleFlight<DeploymentKey>,
    cache_ttl: Duration,
    /// `http` or `https`: the scheme of the public URL, for the URL functions see.
    pub(crate) proto: &'static str,
}

impl Functions {
    /// Builds the service from the configuration (local Deno by default,
    /// Deno Deploy when `FERROBASE_FUNCTIONS_PROVIDER=deno-deploy`). Must be
    /// called inside a Tokio runtime (it starts the log writer).
    pub fn new(platform: &Platform) -> Arc<Self> {
        let config = platform.config();
        let logs = logs::LogSink::start(platform.clone());
        let runtime: Arc<dyn Runtime> = match config.functions.functions_provider {
            crate::config::FunctionsProvider::Local => {
                Arc::new(local::LocalRuntime::new(platform.clone(), logs.clone()))
            }
            crate::config::FunctionsProvider::DenoDeploy => {
                Arc::new(deno_deploy::DenoDeploy::new(config))
            }
        };
        Arc::new(Self {
            platform: platform.clone(),
            runtime,
            logs,
            cache: Mutex::new(HashMap::new()),
            loading: Default::default(),
            cache_ttl: Duration::from_millis(config.functions.functions_cache_ttl_ms),
            proto: if config.public_url().starts_with("https:") {
                "https"
            } else {
                "http"
            },
        })
    }

    /// What function `slug` of project `project_ref` runs now (cached for
    /// `FERROBASE_FUNCTIONS_CACHE_TTL_MS`, so deploys on another node are seen
    /// within that delay; this node's own changes invalidate at once).
    pub async fn deployment(
        &self,
        project_id: Uuid,
        project_ref: &str,
        slug: &bundle::Slug,
    ) -> Result<Arc<Deployment>, FunctionsError> {
        if let Some(d) = self.cached(project_id, slug.as_str()) {
            return Ok(d);
        }
        let key = (project_id, slug.as_str().to_owned());
        let _flight = self.loading.begin(&key).await;
        // Loaded by the request this one waited for.
        if let Some(d) = self.cached(project_id, slug.as_str()) {
            return Ok(d);
        }
        let d =
            Arc::new(store::load_deployment(&self.platform, project_id, project_ref, slug).await?);
        self.lock()
            .entry(project_id)
            .or_default()
            .insert(key.1, (d.clone(), Instant::now()));
        Ok(d)
    }

    fn cached(&self, project_id: Uuid, slug: &str) -> Option<Arc<Deployment>> {
        self.lock()
            .get(&project_id)
            .and_then(|per_project| per_project.get(slug))
            .filter(|(_, at)| at.elapsed() < self.cache_ttl)
            .map(|(d, _)| d.clone())
    }

    /// Forgets the cached deployment of one function, or of every function
    /// of the project (`slug` `None`, after a secrets change).
    pub fn invalidate(&self, project_id: Uuid, slug: Option<&str>) {
        let mut cache = self.lock();
        match slug {
            Some(slug) => {
                if let Some(per_project) = cache.get_mut(&project_id) {
                    per_project.remove(slug);
                }
            }
            None => {
                cache.remove(&project_id);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DeploymentCache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One line for the start-up banner: which provider runs functions, or why
/// none can and how to fix it.
pub fn banner_line(functions: &Functions) -> String {
    match (functions.runtime.name(), functions.runtime.unavailable()) {
        ("local", None) => "Edge functions: local Deno runtime.".to_owned(),
        ("local", Some(why)) => format!(
            "Edge functions: disabled ({why}). Install Deno (`pip install deno` or `npm i deno`) \
             and put it on PATH or set FERROBASE_DENO_BIN."
        ),
        (name, None) => format!("Edge functions: {name}."),
        (name, Some(why)) => format!("Edge functions: {name} unavailable ({why})."),
    }
}

/// The policy added to every function response. Functions answer from the
/// platform's own origin, the dashboard's: a page a project deploys must
/// not run as that origin, or it could script a dashboard window it opens,
/// or register a service worker over the whole origin that reads every later
/// dashboard and API request. `sandbox` without `allow-same-origin` gives the
/// page an opaque origin (scripts, forms, popups and downloads still work;
/// service workers cannot be registered). A policy the function sets is kept:
/// browsers enforce both.
pub const RESPONSE_CSP: &str =
    "sandbox allow-scripts allow-forms allow-popups allow-modals allow-downloads";

/// Sandboxes a function's response (see [`RESPONSE_CSP`]) and drops
/// `Service-Worker-Allowed`, which would let a worker script served by a
/// function claim a scope outside its own path.
async fn sandboxed(mut resp: axum::response::Response) -> axum::response::Response {
    let headers = resp.headers_mut();
    headers.remove("service-worker-allowed");
    headers.append(
        axum::http::header::CONTENT_SECURITY_POLICY,
        axum::http::HeaderValue::from_static(RESPONSE_CSP),
    );
    resp
}

/// Routes relative to a project: invocation and the admin API.
pub fn routes() -> Router<AppState> {
    use handlers as h;
    let invoke = Router::new()
        .route("/functions/v1/{slug}", any(invoke::invoke_root))
        .route("/functions/v1/{slug}/{*rest}", any(invoke::invoke_path))
        .layer(axum::middleware::map_response(sandboxed));
    Router::new()
        .merge(invoke)
        .route(
            "/admin/v1/functions",
            get(h::list_functions).post(h::create_function),
        )
        .route(
            "/admin/v1/functions/secrets",
            get(h::list_secrets).post(h::set_secrets),
        )
        .route(
            "/admin/v1/functions/secrets/{name}",
            axum::routing::delete(h::delete_secret),
        )
        .route(
            "/admin/v1/functions/{slug}",
            get(h::get_function)
                .put(h::update_function)
                .delete(h::delete_function),
        )
        .route(
            "/admin/v1/functions/{slug}/versions/{version}",
            get(h::get_version),
        )
        .route(
            "/admin/v1/functions/{slug}/versions/{version}/activate",
            post(h::activate_version),
        )
        .route("/admin/v1/functions/{slug}/logs", get(h::function_logs))
        .route(
            "/admin/v1/functions/{slug}/invocations",
            get(h::function_invocations),
        )
        .route(
            "/admin/v1/functions/{slug}/invocation-counts",
            get(h::function_invocation_counts),
        )
        .route(
            "/admin/v1/functions/{slug}/schedules",
            get(h::list_schedules).post(h::create_schedule),
        )
        .route(
            "/admin/v1/functions/{slug}/schedules/{name}",
            put(h::update_schedule).delete(h::delete_schedule),
        )
        .route(
            "/admin/v1/functions/{slug}/schedules/{name}/runs",
            get(h::schedule_runs),
        )
}
