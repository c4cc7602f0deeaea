//! The AI gateway: OpenAI's wire format under `/p/{ref}/ai/v1` in front of
//! any OpenAI-compatible upstream, so apps call models without shipping
//! provider keys to the browser.
//!
//! Layout (core first, HTTP glue last):
//! - [`settings`]: a project's settings (allow-list, aliases, anon access,
//!   quotas) and providers (base URL, encrypted key and headers, fallback
//!   order), stored in the control plane.
//! - [`upstream`]: async-openai clients on the shared HTTP client, without
//!   their retry layer; error mapping and the fallback loop.
//! - [`gateway`]: validate → resolve model → quota → call → meter; the
//!   streaming relay.
//! - [`meter`]: usage rows and quota counters in the project database
//!   (`ai.usage`, `ai.quota_counters`), token estimation with tiktoken.
//! - [`error`]: [`AiError`], OpenAI's error shape.
//! - [`handlers`] (`/ai/v1`) and [`admin`] (`/admin/v1/ai`): HTTP glue.

pub mod admin;
pub mod error;
pub mod gateway;
pub mod handlers;
pub mod meter;
pub mod settings;
pub mod upstream;

use std::time::Duration;

use axum::Router;
use axum::routing::{get, patch, post};

pub use error::{AiError, AiResult};
pub use gateway::Gateway;

use crate::config::Config;
use crate::state::AppState;

impl Gateway {
    /// The gateway with the server's settings.
    pub fn from_config(config: &Config) -> Self {
        let timeout = Duration::from_millis(config.ai.ai_timeout_ms.max(1));
        Gateway {
            http: upstream::HttpClients::new(
                timeout.min(Duration::from_secs(10)),
                &crate::outbound::OutboundPolicy::from_config(config),
                config.ai.ai_max_response_bytes,
            ),
            timeout,
            idle_timeout: Duration::from_millis(config.ai.ai_stream_idle_timeout_ms.max(1)),
            usage_retention_days: config.ai.ai_usage_retention_days,
            pruned: Default::default(),
        }
    }
}

/// Routes of the gateway and its admin API, relative to a project.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ai/v1/chat/completions", post(handlers::chat_completions))
        .route("/ai/v1/embeddings", post(handlers::embeddings))
        .route(
            "/ai/v1/images/generations",
            post(handlers::images_generations),
        )
        .route("/ai/v1/models", get(handlers::models))
        .route(
            "/ai/v1/{*rest}",
            get(handlers::not_found).post(handlers::not_found),
        )
        .route(
            "/admin/v1/ai/settings",
            get(admin::get_settings).put(admin::put_settings),
        )
        .route(
            "/admin/v1/ai/providers",
            get(admin::list_providers).post(admin::create_provider),
        )
        .route(
            "/admin/v1/ai/providers/{name}",
            patch(admin::update_provider).delete(admin::delete_provider),
        )
        .route("/admin/v1/ai/usage", get(admin::usage))
}
