//! Liveness and readiness: `/health`, `/health/live`, `/health/ready`.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;

use crate::state::AppState;

/// Health report.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok`, `live`, `ready` or `unavailable`.
    pub status: &'static str,
    /// Server version.
    pub version: &'static str,
    /// Per-dependency results (readiness only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checks: Option<serde_json::Value>,
}

fn health(status: &'static str) -> Health {
    Health {
        status,
        version: env!("CARGO_PKG_VERSION"),
        checks: None,
    }
}

/// General health: the process answers.
#[utoipa::path(get, path = "/health", tag = "operations", responses((status = 200, body = Health)))]
pub async fn root() -> Json<Health> {
    Json(health("ok"))
}

/// Liveness: the process answers (never checks dependencies).
#[utoipa::path(get, path = "/health/live", tag = "operations", responses((status = 200, body = Health)))]
pub async fn live() -> Json<Health> {
    Json(health("live"))
}

/// Readiness: the node is not shutting down and the control-plane database
/// answers within two seconds.
#[utoipa::path(get, path = "/health/ready", tag = "operations",
    responses((status = 200, body = Health), (status = 503, body = Health)))]
pub async fn ready(State(app): State<AppState>) -> (StatusCode, Json<Health>) {
    if app.draining.load(std::sync::atomic::Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(health("draining")));
    }
    let check = async {
        let client = app
            .platform
            .control()
            .get()
            .await
            .map_err(|e| e.to_string())?;
        client
            .simple_query("select 1")
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    let result = tokio::time::timeout(Duration::from_secs(2), check)
        .await
        .unwrap_or_else(|_| Err("timed out".into()));
    match result {
        Ok(()) => {
            let mut h = health("ready");
            h.checks = Some(serde_json::json!({ "control_plane": "ok" }));
            (StatusCode::OK, Json(h))
        }
        Err(error) => {
            tracing::warn!(%error, "readiness check failed");
            let mut h = health("unavailable");
            h.checks = Some(serde_json::json!({ "control_plane": "unavailable" }));
            (StatusCode::SERVICE_UNAVAILABLE, Json(h))
        }
    }
}
