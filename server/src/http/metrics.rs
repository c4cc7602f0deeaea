//! Prometheus metrics: request counts and latency by route and status, and
//! pool gauges, rendered at `/metrics`.
//!
//! The recorder is process-global (the `metrics` facade allows one); it is
//! installed once and shared by every `App` in the process (tests build many).
//!
//! Histogram samples are buffered until they are drained, which happens on a
//! render or on the exporter's upkeep. `crate::app::serve` runs the upkeep
//! every `FERROBASE_METRICS_UPKEEP_MS`, so memory stays flat when nobody
//! scrapes `/metrics` (the embedded default).

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::app::AppState;

/// Latency buckets in seconds, from 0.5 ms to 10 s.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The process-wide recorder handle.
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("duration_seconds".into()), BUCKETS)
                .unwrap_or_else(|_| PrometheusBuilder::new());
            match builder.install_recorder() {
                Ok(h) => h,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder already installed; /metrics will be empty");
                    PrometheusBuilder::new().build_recorder().handle()
                }
            }
        })
        .clone()
}

/// Records `http_requests_total` and `http_request_duration_seconds` labelled
/// with the route template (not the raw path, to bound cardinality).
pub async fn track(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    let labels = [("method", method), ("route", route), ("status", status)];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels)
        .record(start.elapsed().as_secs_f64());
    response
}

/// `GET /metrics` in the Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn render(State(app): State<AppState>) -> impl IntoResponse {
    let totals = app.pools.totals();
    metrics::gauge!("ferrobase_project_pools_open").set(totals.pools as f64);
    metrics::gauge!("ferrobase_project_pool_connections", "state" => "idle")
        .set(totals.idle as f64);
    metrics::gauge!("ferrobase_project_pool_connections", "state" => "in_use")
        .set(totals.connections.saturating_sub(totals.idle) as f64);
    metrics::gauge!("ferrobase_db_connection_budget").set(totals.budget as f64);
    metrics::gauge!("ferrobase_db_connections_waiting").set(totals.waiting as f64);
    let control = app.platform.control().status();
    metrics::gauge!("ferrobase_control_pool_connections", "state" => "idle")
        .set(control.available as f64);
    metrics::gauge!("ferrobase_control_pool_connections", "state" => "in_use")
        .set(control.size.saturating_sub(control.available) as f64);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(),
    )
}
