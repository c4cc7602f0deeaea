//! AI gateway settings (a group flattened into [`super::Config`]).

use clap::Args;
use secrecy::SecretString;

/// AI gateway settings (`FERROBASE_AI_*`).
#[derive(Debug, Clone, Args)]
pub struct AiConfig {
    /// Platform default AI upstream (OpenAI-compatible API base URL) for `/ai/v1`.
    #[arg(
        long,
        env = "FERROBASE_AI_BASE_URL",
        default_value = "https://openrouter.ai/api/v1"
    )]
    pub ai_base_url: String,

    /// API key of the platform default AI upstream (unset: only per-project providers).
    #[arg(long, env = "FERROBASE_AI_API_KEY", hide_env_values = true)]
    pub ai_api_key: Option<SecretString>,

    /// How long the AI gateway waits for an upstream's first byte (headers, or the
    /// first event of a stream) before trying the next provider, in milliseconds.
    #[arg(long, env = "FERROBASE_AI_TIMEOUT_MS", default_value_t = 60_000)]
    pub ai_timeout_ms: u64,

    /// A stream whose upstream sends nothing for this long ends with an error event, in milliseconds.
    #[arg(
        long,
        env = "FERROBASE_AI_STREAM_IDLE_TIMEOUT_MS",
        default_value_t = 60_000
    )]
    pub ai_stream_idle_timeout_ms: u64,

    /// Largest answer read from an upstream, in bytes (a stream's whole
    /// body); a longer one fails with 502 `upstream_response_too_large`, so
    /// a provider cannot make the gateway buffer without bound.
    #[arg(
        long,
        env = "FERROBASE_AI_MAX_RESPONSE_BYTES",
        default_value_t = 32 * 1024 * 1024
    )]
    pub ai_max_response_bytes: usize,

    /// Rows of a project's `ai.usage` (one per gateway call) older than this
    /// many days are deleted (`0`: kept for ever). Each node prunes a
    /// project at most once an hour, on one of its calls.
    #[arg(long, env = "FERROBASE_AI_USAGE_RETENTION_DAYS", default_value_t = 90)]
    pub ai_usage_retention_days: u32,
}

impl AiConfig {
    /// Settings for tests: short intervals, nothing external.
    pub fn for_tests() -> Self {
        Self {
            ai_base_url: "http://127.0.0.1:9/v1".into(),
            ai_api_key: None,
            ai_timeout_ms: 5_000,
            ai_stream_idle_timeout_ms: 5_000,
            ai_max_response_bytes: 32 * 1024 * 1024,
            ai_usage_retention_days: 90,
        }
    }
}
