//! Tenancy on the data plane: which project a request is for, and who is calling.
//!
//! - [`ProjectRegistry`] caches what the data plane needs per project
//!   (connection settings, verification keys), loaded from the control plane
//!   on first use and refreshed after a short TTL.
//! - [`resolve_project`] is the middleware of every `/p/{ref}/…` route: it
//!   finds the project (404 when unknown) and stores it in the request.
//! - [`Caller`] verifies the `apikey` header and the `Authorization: Bearer`
//!   token against the project's keys and yields the role and claims that
//!   [`crate::db::begin_as`] switches to.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use serde_json::{Value, json};

use crate::crypto::JwtError;
use crate::error::{ApiError, ApiResult};
use crate::platform::projects::{self, LoadedProject, ProjectRef};
use crate::state::{App, AppState};

pub mod read_cache;

/// A project as the data plane sees it.
#[derive(Debug)]
pub struct Tenant {
    /// What was loaded from the control plane.
    pub project: LoadedProject,
    /// The public keys, as served at `/auth/v1/.well-known/jwks.json`.
    pub jwks: Value,
    /// The project's own allowed CORS origins; `None`: the server-wide list.
    pub cors: Option<crate::platform::cors::CorsOrigins>,
    /// Tokens already verified, with their claims: apps send the same anon key
    /// or session token on every request, and an ES256 check is the most
    /// expensive step of a small request. Entries are used only until `exp`.
    verified: Mutex<HashMap<String, Arc<Verified>>>,
    /// `GET /auth/v1/user` bodies by (user id, session id); the auth routes
    /// invalidate it after every write (see [`read_cache`]). Shared by every
    /// `Tenant` of the project alive on this node, so a write seen through an
    /// older copy (loaded before a refresh) still invalidates what a newer
    /// copy keeps.
    pub users: Arc<UserCache>,
}

/// A verified token's claims, shared by every request that sends the token.
#[derive(Debug)]
pub struct Verified {
    /// The verified claims.
    pub claims: Value,
    /// `claims` as JSON text (what `request.jwt.claims` is set to), serialised
    /// once per token rather than once per request.
    pub claims_json: Arc<str>,
    /// The claims' `role` (`anon` when absent).
    pub role: String,
    /// `exp` (seconds since the epoch), when the token has one.
    exp: Option<u64>,
}

impl Verified {
    fn new(claims: Value) -> Verified {
        Verified {
            claims_json: claims.to_string().into(),
            role: claims["role"].as_str().unwrap_or("anon").to_owned(),
            exp: claims["exp"].as_u64(),
            claims,
        }
    }

    /// The caller these claims make.
    pub fn caller(&self) -> Caller {
        Caller {
            role: self.role.clone(),
            claims: self.claims.clone(),
        }
    }
}

/// The cache of `GET /auth/v1/user` answers: by (user id, session id).
pub type UserCache = read_cache::ReadCache<(uuid::Uuid, uuid::Uuid)>;

/// Bound on [`Tenant::verified`]; the cache is simply cleared when full.
const VERIFIED_CACHE_MAX: usize = 4096;

impl Tenant {
    /// Builds the data-plane view of a loaded project.
    pub fn new(project: LoadedProject, users: Arc<UserCache>) -> Self {
        let keys: Vec<Value> = project
            .keys
            .iter()
            .filter_map(|k| serde_json::to_value(k.public_jwk()).ok())
            .collect();
        let cors = project
            .cors_origins
            .as_deref()
            .map(crate::platform::cors::CorsOrigins::from_normalized);
        Self {
            project,
            jwks: json!({ "keys": keys }),
            cors,
            verified: Mutex::new(HashMap::new()),
            users,
        }
    }

    fn cached_claims(&self, token: &str) -> Option<Arc<Verified>> {
        let now = crate::crypto::unix_now();
        let cache = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .get(token)
            .filter(|v| v.exp.is_some_and(|exp| exp > now))
            .cloned()
    }

    fn remember(&self, token: &str, verified: &Arc<Verified>) {
        if verified.exp.is_none() {
            return;
        }
        let mut cache = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= VERIFIED_CACHE_MAX {
            cache.clear();
        }
        cache.insert(token.to_owned(), verified.clone());
    }
}

/// How long a loaded project is trusted before it is re-read. Changes made
/// through the platform API reach every node at once (see [`watch_changes`]);
/// the TTL bounds staleness while a node's change listener is reconnecting,
/// and for changes made straight in the control-plane database.
const TTL: Duration = Duration::from_secs(10);

/// Cache of loaded projects by ref.
#[derive(Default)]
pub struct ProjectRegistry {
    cache: Mutex<HashMap<String, (Arc<Tenant>, Instant)>>,
    /// Bumped by every invalidation: a load that started before one is not
    /// cached (it may have read the row as it was before the change).
    epoch: std::sync::atomic::AtomicU64,
    loading: crate::throttle::SingleFlight<String>,
    /// Each project's [`UserCache`], while a `Tenant` of it lives.
    user_caches: Mutex<HashMap<uuid::Uuid, std::sync::Weak<UserCache>>>,
}

impl ProjectRegistry {
    /// The project `r`, loaded on a cache miss; `None` if there is no such ready project.
    pub async fn get(&self, app: &App, r: &str) -> ApiResult<Option<Arc<Tenant>>> {
        if let Some(t) = self.cached(r) {
            return Ok(Some(t));
        }
        // One load per project at a time: when a busy project's entry
        // expires, its concurrent requests wait for one load instead of each
        // taking a control-plane connection (1,000 busy projects emptied
        // that pool and got 503s).
        let key = r.to_owned();
        let _flight = self.loading.begin(&key).await;
        if let Some(t) = self.cached(r) {
            return Ok(Some(t));
        }
        let epoch = self.epoch.load(std::sync::atomic::Ordering::SeqCst);
        let Some(project) = projects::load(&app.platform, r).await? else {
            self.invalidate(r);
            return Ok(None);
        };
        let users = self.user_cache(project.id);
        let tenant = Arc::new(Tenant::new(project, users));
        let mut cache = self.lock();
        if self.epoch.load(std::sync::atomic::Ordering::SeqCst) == epoch {
            cache.insert(r.to_owned(), (tenant.clone(), Instant::now()));
        }
        Ok(Some(tenant))
    }

    /// The user cache of project `id`: the one its live `Tenant`s share, or a new one.
    fn user_cache(&self, id: uuid::Uuid) -> Arc<UserCache> {
        let mut caches = self.user_caches.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(cache) = caches.get(&id).and_then(std::sync::Weak::upgrade) {
            return cache;
        }
        if caches.len() >= VERIFIED_CACHE_MAX {
            caches.retain(|_, c| c.strong_count() > 0);
        }
        let cache = Arc::new(UserCache::default());
        caches.insert(id, Arc::downgrade(&cache));
        cache
    }

    /// Forgets project `r` (after a change or delete).
    pub fn invalidate(&self, r: &str) {
        let mut cache = self.lock();
        self.epoch.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        cache.remove(r);
    }

    /// Forgets every project (when changes may have been missed).
    pub fn invalidate_all(&self) {
        let mut cache = self.lock();
        self.epoch.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        cache.clear();
    }

    fn cached(&self, r: &str) -> Option<Arc<Tenant>> {
        self.lock()
            .get(r)
            .filter(|(_, at)| at.elapsed() < TTL)
            .map(|(t, _)| t.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Arc<Tenant>, Instant)>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Keeps this node's [`ProjectRegistry`] in step with the control plane: a
/// dedicated connection `LISTEN`s on [`projects::CHANGES_CHANNEL`], where
/// every project change (settings, CORS, key rotation, deletion) is announced
/// in the changing transaction, and drops the named project from the cache.
/// While the connection is down (and right after it is back) the whole cache
/// is dropped, since announcements may have been missed. Runs until aborted.
pub async fn watch_changes(app: AppState) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match listen_changes(&app).await {
            Ok(()) => backoff = Duration::from_millis(100),
            Err(error) => tracing::warn!(%error, "project change listener failed; reconnecting"),
        }
        app.projects.invalidate_all();
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// One life of the change listener: returns when its connection ends.
async fn listen_changes(app: &App) -> Result<(), tokio_postgres::Error> {
    use futures_util::StreamExt as _;
    let (client, mut connection) = app
        .platform
        .control_config()
        .connect(tokio_postgres::NoTls)
        .await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let reader = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(m) = messages.next().await {
            match m {
                Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                    if tx.send(n.payload().to_owned()).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::debug!(%error, "project change listener connection closed");
                    break;
                }
            }
        }
    });
    client
        .batch_execute(&format!("LISTEN {}", projects::CHANGES_CHANNEL))
        .await?;
    // Anything changed before LISTEN took effect is re-read.
    app.projects.invalidate_all();
    while let Some(r) = rx.recv().await {
        app.projects.invalidate(&r);
    }
    reader.abort();
    Ok(())
}

/// Middleware for `/p/{ref}/…`: resolves the project or answers 404.
pub async fn resolve_project(
    State(app): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    use axum::response::IntoResponse as _;
    // Nesting strips `/p/{ref}` from the URI; the original keeps it.
    let path = match req.extensions().get::<axum::extract::OriginalUri>() {
        Some(original) => original.path(),
        None => req.uri().path(),
    };
    let r = path
        .strip_prefix("/p/")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_default()
        .to_owned();
    let not_found = || {
        ApiError::not_found("project_not_found", format!("No project with ref {r:?}."))
            .with_hint("Check the project URL: /p/{ref}/… or {ref}.{base domain}.")
            .into_response()
    };
    if ProjectRef::parse(&r).is_err() {
        return not_found();
    }
    match app.projects.get(&app, &r).await {
        Ok(Some(tenant)) => {
            req.extensions_mut().insert(tenant);
            next.run(req).await
        }
        Ok(None) => not_found(),
        Err(e) => e.into_response(),
    }
}

/// Extractor of the project a request is for (set by [`resolve_project`]).
#[derive(Debug, Clone)]
pub struct ProjectCtx(pub Arc<Tenant>);

impl<S: Send + Sync> FromRequestParts<S> for ProjectCtx {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Arc<Tenant>>()
            .cloned()
            .map(ProjectCtx)
            .ok_or_else(|| ApiError::internal(&"project route without resolve_project"))
    }
}

/// The verified caller of a project request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// `anon`, `authenticated` or `service_role`.
    pub role: String,
    /// The verified claims, exposed to SQL as `request.jwt.claims`.
    pub claims: Value,
}

/// Roles a token may ask for.
const API_ROLES: &[&str] = &["anon", "authenticated", "service_role"];

/// The bearer token of a request; a malformed header is a 401.
fn bearer(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    crate::crypto::bearer_token(headers).map_err(|_| {
        ApiError::unauthorized(
            "invalid_token",
            "The Authorization header must be `Bearer <token>`.",
        )
    })
}

fn jwt_error(e: JwtError, what: &str) -> ApiError {
    let code = match e {
        JwtError::Expired => "token_expired",
        _ => "invalid_token",
    };
    ApiError::unauthorized(code, format!("The {what} was refused: {e}."))
}

/// Verifies one token of project `tenant` and returns its claims.
pub fn verify_token(tenant: &Tenant, token: &str, what: &str) -> ApiResult<Value> {
    verify_shared(tenant, token, what).map(|v| v.claims.clone())
}

/// Like [`verify_token`], returning the cached entry itself (no copy of
/// the claims, and their JSON text serialised once per token).
pub fn verify_shared(tenant: &Tenant, token: &str, what: &str) -> ApiResult<Arc<Verified>> {
    if let Some(verified) = tenant.cached_claims(token) {
        return Ok(verified);
    }
    let legacy =
        tenant.project.legacy_jwt_secret.as_deref().filter(|_| {
            crate::crypto::token_algorithm(token) == Some(jsonwebtoken::Algorithm::HS256)
        });
    let claims: Value = match legacy {
        // The project's own legacy secret binds the token to it (when no
        // other project shares it); `ref`, when present, must still name
        // this project.
        Some(secret) => crate::crypto::verify_hs256(secret, token),
        None => crate::crypto::SigningKey::verify_any(&tenant.project.keys, token),
    }
    .map_err(|e| jwt_error(e, what))?;
    // A token without `ref` only counts when the legacy secret that signed
    // it belongs to this project alone.
    let ref_ok = match claims["ref"].as_str() {
        Some(r) => r == tenant.project.project_ref,
        None => legacy.is_some() && tenant.project.legacy_jwt_exclusive,
    };
    if !ref_ok {
        return Err(ApiError::unauthorized(
            "invalid_token",
            format!("The {what} belongs to another project."),
        ));
    }
    if !claims["role"]
        .as_str()
        .is_some_and(|r| API_ROLES.contains(&r))
    {
        return Err(ApiError::unauthorized(
            "invalid_token",
            format!("The {what} asks for a role that is not allowed."),
        ));
    }
    let verified = Arc::new(Verified::new(claims));
    tenant.remember(token, &verified);
    Ok(verified)
}

/// Resolves the caller from `apikey` and `Authorization` (both verified when
/// both are sent; the bearer token decides the role).
pub fn authenticate(tenant: &Tenant, headers: &HeaderMap) -> ApiResult<Caller> {
    authenticate_shared(tenant, headers).map(|v| v.caller())
}

/// Like [`authenticate`], returning the shared verified entry (see
/// [`verify_shared`]): the data API's hot path copies no claims.
pub fn authenticate_shared(tenant: &Tenant, headers: &HeaderMap) -> ApiResult<Arc<Verified>> {
    let apikey = match headers.get("apikey") {
        Some(v) => Some(v.to_str().map_err(|_| {
            ApiError::unauthorized("invalid_api_key", "The apikey header is not valid text.")
        })?),
        None => None,
    };
    let apikey_claims = apikey
        .map(|k| verify_shared(tenant, k.trim(), "API key"))
        .transpose()?;
    let claims = match bearer(headers)? {
        Some(token) if Some(token) == apikey => apikey_claims,
        Some(token) => Some(verify_shared(tenant, token, "access token")?),
        None => apikey_claims,
    };
    claims.ok_or_else(|| {
        ApiError::unauthorized("missing_api_key", "No API key found in the request.")
            .with_hint("Send the project's anon key in the `apikey` header or as `Authorization: Bearer <key>`.")
    })
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let ProjectCtx(tenant) = ProjectCtx::from_request_parts(parts, state).await?;
        authenticate(&tenant, &parts.headers)
    }
}

/// Extractor of the verified caller as the shared cache entry (see
/// [`authenticate_shared`]).
#[derive(Debug, Clone)]
pub struct SharedCaller(pub Arc<Verified>);

impl<S: Send + Sync> FromRequestParts<S> for SharedCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let ProjectCtx(tenant) = ProjectCtx::from_request_parts(parts, state).await?;
        authenticate_shared(&tenant, &parts.headers).map(SharedCaller)
    }
}

/// `GET /p/{ref}/auth/v1/.well-known/jwks.json`: the project's public signing keys.
#[utoipa::path(get, path = "/p/{ref}/auth/v1/.well-known/jwks.json", tag = "project",
    params(("ref" = String, Path, description = "Project ref")),
    responses((status = 200, description = "JSON Web Key Set"), (status = 404, body = ApiError)))]
pub async fn jwks(ProjectCtx(tenant): ProjectCtx) -> Json<Value> {
    Json(tenant.jwks.clone())
}
