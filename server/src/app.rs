//! The application state shared by every handler, and the server loop.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use deadpool_postgres::Pool;
use metrics_exporter_prometheus::PrometheusHandle;
use tower::Layer as _;

use crate::db::pools::ProjectPools;
use crate::http::middleware::rewrite_host;
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
    pub schema_caches: crate::http::rest::SchemaCaches,
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
            metrics: crate::http::metrics::handle(),
            schema_caches: Default::default(),
            storage,
            functions,
            ai,
            throttles,
            realtime: crate::realtime::Hub::new(app.clone(), realtime_config),
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

/// Serves `app` on `listener` until `shutdown` resolves, then drains
/// in-flight requests and closes the project pools. Also runs the tasks that
/// close idle project pools and keep the metrics exporter's memory bounded.
pub async fn serve(
    app: AppState,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let idle = Duration::from_secs(app.platform.config().pool_idle_timeout_secs);
    app.size_connection_budget().await;
    let reaper = {
        let app = app.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(
                (idle / 2).clamp(Duration::from_secs(1), Duration::from_secs(30)),
            );
            loop {
                tick.tick().await;
                let closed = app.pools.close_idle(idle);
                if closed > 0 {
                    tracing::debug!(closed, "closed idle project pools");
                }
            }
        })
    };
    let scheduler = tokio::spawn(crate::functions::schedule::run_scheduler(app.clone()));
    // Histogram samples are only drained when `/metrics` renders or the
    // exporter's upkeep runs: without a scraper they would pile up for ever.
    let upkeep = {
        let app = app.clone();
        let every = Duration::from_millis(app.platform.config().metrics_upkeep_ms.max(10));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                app.metrics.run_upkeep();
            }
        })
    };
    // Webhook deliveries: every node runs a dispatcher (see `webhooks::worker`).
    let webhooks = crate::webhooks::worker::spawn(app.clone());
    let base_domain = app.platform.config().base_domain.clone();
    let router = crate::http::router::build(app.clone());
    let service = tower::util::MapRequestLayer::new(move |req: Request| {
        rewrite_host(req, base_domain.as_deref())
    })
    .layer(router);
    // The connection loop gives handlers the client address (auth's per-IP
    // limits) and cuts off clients that trickle their headers.
    let header_timeout = Duration::from_millis(app.platform.config().header_read_timeout_ms);
    // Realtime sockets are closed as soon as shutdown starts: a pending
    // long-poll would otherwise hold the drain for a whole ping interval.
    // Readiness turns false first, while the node still serves, so load
    // balancers stop sending it new work before its socket closes.
    let drain_delay = Duration::from_millis(app.platform.config().drain_delay_ms);
    let grace = Duration::from_secs(app.platform.config().shutdown_grace_secs);
    let drain_app = app.clone();
    let shutdown = async move {
        shutdown.await;
        drain_app
            .draining
            .store(true, std::sync::atomic::Ordering::SeqCst);
        tracing::info!(
            drain_delay_ms = drain_delay.as_millis() as u64,
            grace_secs = grace.as_secs(),
            "shutting down: readiness is off, in-flight requests may finish"
        );
        tokio::time::sleep(drain_delay).await;
        drain_app.realtime.shutdown().await;
    };
    let result = crate::http::server::run(listener, service, shutdown, header_timeout, grace).await;
    reaper.abort();
    scheduler.abort();
    webhooks.abort();
    upkeep.abort();
    app.pools.close_all();
    result
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}
