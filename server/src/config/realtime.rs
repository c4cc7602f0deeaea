//! Settings of the realtime hub (a group flattened into [`super::Config`]).

use clap::Args;

/// Realtime settings, from `FERROBASE_REALTIME_*` environment variables.
#[derive(Debug, Clone, Args)]
pub struct RealtimeConfig {
    /// Largest message payload a client may publish, in bytes (JSON-encoded).
    /// Larger ones are refused with `realtime:error` (`payload_too_large`).
    #[arg(long, env = "FERROBASE_REALTIME_MAX_MESSAGE_BYTES", default_value_t = 64 * 1024)]
    pub realtime_max_message_bytes: usize,

    /// Seconds after which a presence member whose node stopped refreshing it
    /// (dead socket or dead node) is removed and `presence:leave` is sent.
    #[arg(
        long,
        env = "FERROBASE_REALTIME_PRESENCE_TIMEOUT_SECS",
        default_value_t = 30
    )]
    pub realtime_presence_timeout_secs: u64,

    /// Milliseconds between safety reads of the outbox when no NOTIFY came
    /// (a lost notification delays a message by at most this), and between
    /// token-expiry checks.
    #[arg(long, env = "FERROBASE_REALTIME_POLL_MS", default_value_t = 1000)]
    pub realtime_poll_ms: u64,

    /// Engine.IO ping interval in milliseconds (a dead client is detected
    /// after this plus the ping timeout).
    #[arg(
        long,
        env = "FERROBASE_REALTIME_PING_INTERVAL_MS",
        default_value_t = 25_000
    )]
    pub realtime_ping_interval_ms: u64,
}

impl RealtimeConfig {
    /// Short intervals for tests.
    pub fn for_tests() -> Self {
        Self {
            realtime_max_message_bytes: 64 * 1024,
            realtime_presence_timeout_secs: 3,
            realtime_poll_ms: 200,
            realtime_ping_interval_ms: 2_000,
        }
    }
}

impl Default for RealtimeConfig {
    fn default() -> Self {
        Self {
            realtime_max_message_bytes: 64 * 1024,
            realtime_presence_timeout_secs: 30,
            realtime_poll_ms: 1000,
            realtime_ping_interval_ms: 25_000,
        }
    }
}
