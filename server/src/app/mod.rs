//! The top of the server: the router (the API's table of contents), the
//! middleware, health, metrics and OpenAPI endpoints, and the serve loop with
//! its background tasks and graceful drain. Capabilities never import this
//! module; it imports them.

pub mod health;
pub mod metrics;
pub mod middleware;
pub mod openapi;
pub mod router;
pub mod server;

use std::future::Future;
use std::time::Duration;

use axum::extract::Request;
use tower::Layer as _;

use crate::state::AppState;
use middleware::rewrite_host;

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
    // Project changes made on any node drop this node's cached copy at once.
    let project_changes = tokio::spawn(crate::tenant::watch_changes(app.clone()));
    let scheduler = tokio::spawn(crate::functions::schedule::run_scheduler(app.clone()));
    let log_pruner = tokio::spawn(crate::functions::logs::run_pruner(app.platform.clone()));
    let backups = tokio::spawn(crate::backup::schedule::run_scheduler(app.platform.clone()));
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
    // Shared, not copied: the service (and this closure) is cloned per request.
    let base_domain: Option<std::sync::Arc<str>> =
        app.platform.config().base_domain.as_deref().map(Into::into);
    let router = router::build(app.clone());
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
    let result = server::run(listener, service, shutdown, header_timeout, grace).await;
    reaper.abort();
    project_changes.abort();
    scheduler.abort();
    log_pruner.abort();
    backups.abort();
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
