//! HTTP glue of the data API: mounts [`crate::rest`] at `/p/{ref}/rest/v1`,
//! runs each request in a role-switched transaction, and keeps one schema
//! cache per project.
//!
//! The schema cache is loaded on first use. When a request names a table,
//! column, relationship or function the cache does not know (or Postgres says
//! a cached object is gone), the cache is reloaded and the request retried
//! once, so DDL done through any path is picked up on the next request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use uuid::Uuid;

use crate::app::AppState;
use crate::db::begin_as;
use crate::http::{ApiError, body_rejection};
use crate::rest::{RestError, RestRequest, SchemaCache, execute};
use crate::tenant::{Caller, ProjectCtx};

/// Minimum age of a cache before a miss may reload it (bounds reload storms
/// caused by requests for tables that really do not exist).
const MIN_RELOAD_INTERVAL: Duration = Duration::from_millis(500);

/// Schema caches by project id.
#[derive(Default)]
pub struct SchemaCaches {
    caches: Mutex<HashMap<Uuid, (Arc<SchemaCache>, Instant)>>,
}

impl SchemaCaches {
    fn get(&self, id: Uuid) -> Option<(Arc<SchemaCache>, Instant)> {
        self.caches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned()
    }

    fn put(&self, id: Uuid, cache: Arc<SchemaCache>) {
        self.caches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, (cache, Instant::now()));
    }

    /// Forgets a project's cache (after delete).
    pub fn remove(&self, id: Uuid) {
        self.caches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }
}

/// Routes of the data API, relative to a project.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/rest/v1", any(handle))
        .route("/rest/v1/", any(handle))
        .route("/rest/v1/{*path}", any(handle))
}

/// Whether `e` may come from a stale schema cache.
fn is_cache_miss(e: &RestError) -> bool {
    matches!(
        e.code.as_str(),
        "PGRST200" | "PGRST202" | "PGRST204" | "PGRST205" | "42P01" | "42703" | "42883"
    )
}

fn rest_error(e: RestError, caller: &Caller) -> Response {
    let e = e.for_role(caller.role == "anon");
    if e.status.is_server_error() && e.status != axum::http::StatusCode::SERVICE_UNAVAILABLE {
        tracing::error!(code = %e.code, message = %e.message, "data API error");
    }
    let mut resp = (e.status, axum::Json(e.to_json())).into_response();
    if e.status == axum::http::StatusCode::SERVICE_UNAVAILABLE {
        resp.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from(1),
        );
    }
    resp
}

async fn handle(
    State(app): State<AppState>,
    ProjectCtx(tenant): ProjectCtx,
    caller: Caller,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => return body_rejection(e.status(), e.body_text()).into_response(),
    };
    // Nesting has stripped `/p/{ref}`: the path is `/rest/v1/…`.
    let path = uri
        .path()
        .strip_prefix("/rest/v1")
        .unwrap_or_default()
        .trim_start_matches('/')
        .to_owned();
    let request = RestRequest {
        method,
        path,
        query: uri.query().unwrap_or_default().to_owned(),
        headers,
        body,
    };
    match run(&app, &tenant, &caller, request).await {
        Ok(resp) => resp,
        Err(Failure::Rest(e)) => rest_error(e, &caller),
        Err(Failure::Api(e)) => e.into_response(),
    }
}

enum Failure {
    Rest(RestError),
    Api(ApiError),
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Self {
        Failure::Api(e)
    }
}

impl From<RestError> for Failure {
    fn from(e: RestError) -> Self {
        Failure::Rest(e)
    }
}

impl From<tokio_postgres::Error> for Failure {
    fn from(e: tokio_postgres::Error) -> Self {
        Failure::Api(e.into())
    }
}

async fn run(
    app: &AppState,
    tenant: &crate::tenant::Tenant,
    caller: &Caller,
    request: RestRequest,
) -> Result<Response, Failure> {
    let id = tenant.project.id;
    let schemas = vec!["public".to_owned()];
    let pool = app.project_pool(tenant);
    let mut client = pool.get().await.map_err(ApiError::from)?;
    let timeout = app.platform.config().statement_timeout_ms;

    let (mut cache, mut loaded_at) = match app.schema_caches.get(id) {
        Some(c) => c,
        None => {
            let c = Arc::new(SchemaCache::load(&**client, &schemas).await?);
            app.schema_caches.put(id, c.clone());
            (c, Instant::now())
        }
    };
    let mut retried = false;
    loop {
        let tx = begin_as(&mut client, &caller.role, &caller.claims, timeout).await?;
        match execute(&tx, &cache, &schemas, request.clone()).await {
            Ok(outcome) => {
                if outcome.rollback {
                    tx.rollback().await?;
                } else {
                    tx.commit().await?;
                }
                let r = outcome.response;
                let mut resp = (r.status, r.body).into_response();
                resp.headers_mut().extend(r.headers);
                return Ok(resp);
            }
            Err(e) => {
                let _ = tx.rollback().await;
                if retried || !is_cache_miss(&e) || loaded_at.elapsed() < MIN_RELOAD_INTERVAL {
                    return Err(e.into());
                }
                retried = true;
                tracing::debug!(code = %e.code, "schema cache miss; reloading");
                cache = Arc::new(SchemaCache::load(&**client, &schemas).await?);
                loaded_at = Instant::now();
                app.schema_caches.put(id, cache.clone());
            }
        }
    }
}
