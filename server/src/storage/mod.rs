//! Storage: buckets and objects, compatible with Supabase Storage
//! (`/storage/v1/…`), so `@supabase/storage-js`, Python `storage3` and
//! `tus-js-client` work unchanged.
//!
//! - [`names`]: bucket ids and object names, parsed at the edge.
//! - [`backend`]: the object store (local disk or S3), key layout,
//!   streaming writes, and the bookkeeping that keeps bytes and rows consistent.
//! - [`buckets`]: `/bucket` admin (RLS on `storage.buckets`).
//! - [`objects`]: upload, download, info, list, move, copy, delete (RLS on
//!   `storage.objects`); [`signed`]: signed download and upload URLs.
//! - [`tus`]: resumable uploads (`/upload/resumable`, TUS 1.0.0).
//! - [`transform`]: image transforms (`/render/image/…`).
//! - [`quota`]: the per-project storage quota.
//!
//! Metadata lives in the project database (`storage.buckets`,
//! `storage.objects`, migration V4); every statement about objects runs in a
//! role-switched transaction ([`crate::db::begin_as`]) so the project's RLS
//! policies decide who may read, upload, overwrite, delete and list. Bucket
//! settings (public flag, limits) are read as the owner. Bytes never pass
//! through memory whole: request bodies stream into the backend and
//! responses stream out of it.

mod backend;
pub mod buckets;
mod error;
pub mod names;
pub mod objects;
pub mod quota;
pub mod signed;
pub mod transform;
pub mod tus;

use std::sync::Arc;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

pub use backend::{PART_BYTES, S3Settings, Storage, s3_client};
pub use error::{StorageError, StorageResult};

use crate::state::AppState;
use crate::tenant::{Caller, Tenant};

/// The storage backend as configured, or why it could not be opened (then
/// every storage request answers 503 and the reason is logged).
#[derive(Clone)]
pub struct StorageHandle(pub Arc<Result<Storage, String>>);

impl StorageHandle {
    /// Opens the backend the configuration names.
    pub fn from_config(config: &crate::config::Config) -> Self {
        let storage = Storage::from_config(config);
        match &storage {
            Ok(s) => tracing::info!(backend = %s.describe, "storage backend ready"),
            Err(e) => tracing::error!(error = %e, "storage backend unavailable"),
        }
        StorageHandle(Arc::new(storage))
    }

    /// Why the backend could not be opened, if it could not.
    pub fn error(&self) -> Option<&str> {
        self.0.as_ref().as_ref().err().map(String::as_str)
    }

    /// Deletes every object of a project (after the project is deleted);
    /// failures are logged, the reaper does not cover a deleted project.
    pub async fn purge_project(&self, project: Uuid) {
        if let Ok(storage) = self.0.as_ref() {
            match storage.purge_project(project).await {
                Ok(n) => tracing::info!(%project, objects = n, "purged project storage"),
                Err(error) => tracing::error!(%project, %error, "could not purge project storage"),
            }
        }
    }
}

/// Routes of the storage API, relative to a project, on the app's backend.
pub fn routes(app: &AppState) -> Router<AppState> {
    routes_with(app.storage.clone())
}

/// [`routes`] with a given backend.
pub fn routes_with(storage: StorageHandle) -> Router<AppState> {
    use objects as o;
    let api = Router::new()
        .route("/bucket", get(buckets::list).post(buckets::create))
        .route("/bucket/", get(buckets::list).post(buckets::create))
        .route(
            "/bucket/{id}",
            get(buckets::get)
                .put(buckets::update)
                .delete(buckets::delete),
        )
        .route("/bucket/{id}/empty", post(buckets::empty))
        .route("/object/list/{bucket}", post(o::list))
        .route("/object/move", post(o::move_object))
        .route("/object/copy", post(o::copy_object))
        .route("/object/info/{bucket}/{*path}", get(o::info))
        .route("/object/info/authenticated/{bucket}/{*path}", get(o::info))
        .route(
            "/object/public/{bucket}/{*path}",
            get(o::download_public).head(o::download_public),
        )
        .route(
            "/object/authenticated/{bucket}/{*path}",
            get(o::download).head(o::download),
        )
        .route("/object/sign/{bucket}", post(signed::sign_many))
        .route(
            "/object/sign/{bucket}/{*path}",
            post(signed::sign).get(signed::download_signed),
        )
        .route(
            "/object/upload/sign/{bucket}/{*path}",
            post(signed::sign_upload).put(signed::upload_signed),
        )
        .route(
            "/render/image/authenticated/{bucket}/{*path}",
            get(transform::render_authenticated),
        )
        .route(
            "/render/image/public/{bucket}/{*path}",
            get(transform::render_public),
        )
        .route(
            "/render/image/sign/{bucket}/{*path}",
            get(transform::render_signed),
        )
        .route("/object/{bucket}", axum::routing::delete(o::delete_many))
        .route(
            "/object/{bucket}/{*path}",
            post(o::upload)
                .put(o::upload)
                .get(o::download)
                .head(o::download)
                .delete(o::delete_one),
        )
        .route("/upload/resumable", post(tus::create).options(tus::options))
        .route(
            "/upload/resumable/",
            post(tus::create).options(tus::options),
        )
        .route(
            "/upload/resumable/{id}",
            axum::routing::head(tus::head)
                .patch(tus::patch)
                .delete(tus::terminate)
                .options(tus::options),
        )
        // Uploads take the raw `Body`, which the router-wide body limit does
        // not apply to: they stream with their own limits (bucket and
        // global). JSON bodies keep the router-wide limit.
        .layer(axum::Extension(storage));
    Router::new().nest("/storage/v1", api)
}

/// What every storage handler needs: the app, the project, the backend.
pub struct Ctx {
    /// Shared state.
    pub app: AppState,
    /// The project.
    pub tenant: Arc<Tenant>,
    /// The backend.
    pub storage: Arc<Result<Storage, String>>,
}

impl Ctx {
    /// The backend, or 503 when it is misconfigured.
    pub fn store(&self) -> StorageResult<&Storage> {
        self.storage
            .as_ref()
            .as_ref()
            .map_err(|e| StorageError::Unavailable(e.clone()))
    }

    /// The project id (the key prefix).
    pub fn project_id(&self) -> Uuid {
        self.tenant.project.id
    }

    /// An owner connection to the project database.
    pub async fn owner(&self) -> StorageResult<deadpool_postgres::Object> {
        Ok(self.app.project_pool(&self.tenant).get().await?)
    }

    /// The statement timeout of data-plane requests.
    pub fn timeout_ms(&self) -> u64 {
        self.app.platform.config().statement_timeout_ms
    }

    /// Verifies `apikey`/`Authorization` (errors in the storage shape).
    pub fn caller(&self, headers: &HeaderMap) -> StorageResult<Caller> {
        Ok(crate::tenant::authenticate(&self.tenant, headers)?)
    }

    /// The body of an upload as a stream that fails when the client pauses
    /// longer than the body read timeout between two chunks, so a slow
    /// client cannot keep an upload (and its task) open for ever. No pooled
    /// connection is held while it is read (see `objects::store_object`).
    pub(crate) fn body_stream(
        &self,
        body: axum::body::Body,
    ) -> impl futures_util::Stream<Item = Result<bytes::Bytes, String>> + Unpin + Send + use<> {
        use futures_util::StreamExt as _;
        let idle =
            std::time::Duration::from_millis(self.app.platform.config().body_read_timeout_ms);
        Box::pin(futures_util::stream::unfold(
            (body.into_data_stream(), false),
            move |(mut s, done)| async move {
                if done {
                    return None;
                }
                match tokio::time::timeout(idle, s.next()).await {
                    Ok(Some(Ok(b))) => Some((Ok(b), (s, false))),
                    Ok(Some(Err(e))) => Some((Err(e.to_string()), (s, true))),
                    Ok(None) => None,
                    Err(_) => Some((
                        Err(format!("no data for {} ms", idle.as_millis())),
                        (s, true),
                    )),
                }
            },
        ))
    }

    /// Runs the reaper for this project in the background when it is due.
    fn maybe_reap(&self) {
        let Ok(storage) = self.store() else { return };
        let project = self.project_id();
        if !storage.reap_due(project) {
            return;
        }
        let handle = self.storage.clone();
        let pool = self.app.project_pool(&self.tenant);
        tokio::spawn(async move {
            let Ok(storage) = handle.as_ref() else { return };
            let result = async {
                let client = pool.get().await?;
                storage.reap(&client, project).await
            }
            .await;
            match result {
                Ok(0) => {}
                Ok(n) => tracing::info!(%project, deleted = n, "storage reaper removed leftovers"),
                Err(e) => tracing::warn!(%project, error = %e, "storage reaper failed"),
            }
        });
    }
}

impl FromRequestParts<AppState> for Ctx {
    type Rejection = StorageError;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let tenant = parts
            .extensions
            .get::<Arc<Tenant>>()
            .cloned()
            .ok_or_else(|| StorageError::Unavailable("storage route without a project".into()))?;
        let storage = parts
            .extensions
            .get::<StorageHandle>()
            .map(|h| h.0.clone())
            .ok_or_else(|| StorageError::Unavailable("storage routes not set up".into()))?;
        let ctx = Ctx {
            app: app.clone(),
            tenant,
            storage,
        };
        ctx.maybe_reap();
        Ok(ctx)
    }
}

/// Path parameters, with rejections (bad percent-encoding…) in our error shape.
/// Named fields, because the `/p/{ref}` prefix contributes a parameter too.
pub struct Params<T>(pub T);

impl<T, S> FromRequestParts<S> for Params<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = StorageError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(t)) => Ok(Params(t)),
            Err(e) => Err(StorageError::InvalidKey(format!(
                "Invalid path: {}",
                e.body_text()
            ))),
        }
    }
}

/// `{bucket}/{*path}`.
#[derive(Debug, serde::Deserialize)]
pub struct ObjectPath {
    /// Bucket id.
    pub bucket: String,
    /// Object name.
    pub path: String,
}

/// `{bucket}`.
#[derive(Debug, serde::Deserialize)]
pub struct BucketPath {
    /// Bucket id.
    pub bucket: String,
}

/// `{id}`.
#[derive(Debug, serde::Deserialize)]
pub struct IdPath {
    /// Bucket or upload id.
    pub id: String,
}

/// The user id of a caller (`sub` when it is a UUID), recorded as owner.
pub fn owner_of(caller: &Caller) -> Option<Uuid> {
    caller.claims["sub"]
        .as_str()
        .and_then(|s| Uuid::parse_str(s).ok())
}

/// Seconds since the Unix epoch.
pub(crate) fn now_secs() -> i64 {
    Utc::now().timestamp()
}

/// A `{message}` answer, as Supabase Storage sends for admin operations.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Message {
    /// What happened.
    pub message: String,
}

impl Message {
    pub(crate) fn json(m: &str) -> axum::Json<Message> {
        axum::Json(Message {
            message: m.to_owned(),
        })
    }
}

/// HTTP date (`Last-Modified`).
pub(crate) fn http_date(t: DateTime<Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}
