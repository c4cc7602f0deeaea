//! `GET /metrics`: the Prometheus text rendering of the recorder
//! ([`crate::telemetry`]) plus pool gauges read at scrape time.
//!
//! Histogram samples are buffered until they are drained, which happens on a
//! render or on the exporter's upkeep. `crate::app::serve` runs the upkeep
//! every `FERROBASE_METRICS_UPKEEP_MS`, so memory stays flat when nobody
//! scrapes `/metrics` (the embedded default).

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::state::AppState;

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
