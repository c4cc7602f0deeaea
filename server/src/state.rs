//! The application state shared by every handler: the control plane, the
//! project registry and pools, and each capability's node-local state. Built
//! once by [`App::new`]; handlers receive it as [`AppState`].

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::db::pools::ProjectPools;
use crate::platform::Platform;
use crate::tenant::{ProjectRegistry, Tenant};

/// Everything a request may need. Built once; handlers get it as [`AppState`].
pub struct App {
    /// The control plane.
    pub platform: Platform,
    /// Loaded projects by ref.
    pub projects: ProjectRegistry,
    /// Open per-project connection pools.
    pub pools: ProjectPools,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// Data API schema caches by project.
    pub schema_caches: crate::rest::handlers::SchemaCaches,
    /// The object store behind `/storage/v1` (or why it could not be opened).
    pub storage: crate::storage::StorageHandle,
    /// Edge functions: the provider, the log sink, the deployment cache.
    pub functions: Arc<crate::functions::Functions>,
    /// The AI gateway (`/ai/v1`): upstream HTTP client and timeouts.
    pub ai: crate::ai::Gateway,
    /// Per-node bounds on image transforms and admin SQL.
    pub throttles: crate::throttle::Throttles,
    /// The Socket.IO realtime hub.
    pub realtime: crate::realtime::Hub,
    /// This node's recent requests (the dashboard's Logs page).
    pub request_log: crate::logs::RequestLog,
    /// Set when shutdown starts: readiness answers 503 from then on.
    pub draining: std::sync::atomic::AtomicBool,
}

/// Shared handle on [`App`].
pub type AppState = Arc<App>;

impl App {
    /// Builds the state around an opened platform.
    pub fn new(platform: Platform) -> AppState {
        let config = platform.config();
        let pools = ProjectPools::new(
            config.pool_max_size,
            Duration::from_millis(config.pool_acquire_timeout_ms),
            config.db_max_connections.max(config.pool_max_size),
        );
        let storage = crate::storage::StorageHandle::from_config(config);
        let functions = crate::functions::Functions::new(&platform);
        let ai = crate::ai::Gateway::from_config(config);
        let throttles = crate::throttle::Throttles::new(config);
        let realtime_config = config.realtime.clone();
        Arc::new_cyclic(|app| App {
            platform,
            projects: ProjectRegistry::default(),
            pools,
            metrics: crate::telemetry::handle(),
            schema_caches: Default::default(),
            storage,
            functions,
            ai,
            throttles,
            realtime: crate::realtime::Hub::new(app.clone(), realtime_config),
            request_log: crate::logs::RequestLog::default(),
            draining: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Deletes a project everywhere: its database and role, its stored
    /// objects, and this node's pool and caches of it.
    pub async fn delete_project(
        &self,
        r: &crate::platform::ProjectRef,
        actor: &str,
    ) -> Result<(), crate::platform::projects::ProjectError> {
        self.projects.invalidate(r.as_str());
        let id = crate::platform::projects::delete(&self.platform, r, actor).await?;
        self.pools.remove(id);
        self.schema_caches.remove(id);
        self.projects.invalidate(r.as_str());
        self.storage.purge_project(id).await;
        Ok(())
    }

    /// Sizes the node's connection budget from the cluster (see
    /// [`crate::db::pools::derive_budget`]); keeps the configured or minimal
    /// budget when the cluster cannot be asked.
    pub async fn size_connection_budget(&self) {
        let config = self.platform.config();
        match crate::db::pools::derive_budget(
            self.platform.control(),
            config.db_max_connections,
            config.db_reserved_connections,
        )
        .await
        {
            Ok(budget) => {
                tracing::info!(budget, "project connection budget");
                self.pools.set_budget(budget);
            }
            Err(error) => {
                tracing::warn!(%error, "could not read max_connections; keeping the configured budget");
            }
        }
    }

    /// The connection pool of a project (opened on first use).
    pub fn project_pool(&self, tenant: &Tenant) -> Pool {
        self.pools
            .get(tenant.project.id, || tenant.project.db_config.clone())
    }
}
