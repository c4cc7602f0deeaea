//! Edge functions settings (a group flattened into [`super::Config`]).

use std::path::PathBuf;

use clap::Args;

use super::FunctionsProvider;
use secrecy::SecretString;

/// Edge functions settings: the local Deno runtime and Deno Deploy.
#[derive(Debug, Clone, Args)]
pub struct FunctionsConfig {
    /// Where edge functions run: `local` (Deno processes on this node) or `deno-deploy`.
    #[arg(
        long,
        env = "FERROBASE_FUNCTIONS_PROVIDER",
        value_enum,
        default_value = "local"
    )]
    pub functions_provider: FunctionsProvider,

    /// The `deno` binary for local functions (default: `deno` on PATH).
    #[arg(long, env = "FERROBASE_DENO_BIN")]
    pub deno_bin: Option<PathBuf>,

    /// Extra hosts local functions may reach, comma separated (`api.stripe.com,x.io:8443`),
    /// or `*` for any host. This server's own host is always allowed.
    #[arg(long, env = "FERROBASE_FUNCTIONS_ALLOW_NET")]
    pub functions_allow_net: Option<String>,

    /// Stop a warm function process after this many seconds without invocations.
    #[arg(long, env = "FERROBASE_FUNCTIONS_IDLE_SECS", default_value_t = 300)]
    pub functions_idle_secs: u64,

    /// Longest wait for a function process to start (first `npm:` downloads included), in ms.
    #[arg(
        long,
        env = "FERROBASE_FUNCTIONS_COLD_START_TIMEOUT_MS",
        default_value_t = 30_000
    )]
    pub functions_cold_start_timeout_ms: u64,

    /// How long a node trusts what it loaded about a function (deploys on other nodes
    /// show up within this delay), in ms.
    #[arg(long, env = "FERROBASE_FUNCTIONS_CACHE_TTL_MS", default_value_t = 2000)]
    pub functions_cache_ttl_ms: u64,

    /// How often each node looks for due function schedules, in ms.
    #[arg(
        long,
        env = "FERROBASE_FUNCTIONS_SCHEDULE_INTERVAL_MS",
        default_value_t = 1000
    )]
    pub functions_schedule_interval_ms: u64,

    /// Function log lines, invocation records and schedule runs older than this many
    /// days are deleted (0: no age limit).
    #[arg(
        long,
        env = "FERROBASE_FUNCTIONS_LOG_RETENTION_DAYS",
        default_value_t = 7
    )]
    pub functions_log_retention_days: u32,

    /// At most this many log lines and this many invocation records are kept per
    /// function, and this many runs per schedule; older ones are deleted (0: no cap).
    #[arg(
        long,
        env = "FERROBASE_FUNCTIONS_LOG_MAX_ROWS",
        default_value_t = 10_000
    )]
    pub functions_log_max_rows: u32,

    /// Versions kept per function: a deploy deletes those older than the
    /// newest this many, except the active one (0: all are kept). Each
    /// version holds its whole code in the control database.
    #[arg(long, env = "FERROBASE_FUNCTIONS_MAX_VERSIONS", default_value_t = 100)]
    pub functions_max_versions: u32,

    /// How often each node deletes its files of function versions pruned by a deploy
    /// and of functions deleted on another node, in ms.
    #[arg(
        long,
        env = "FERROBASE_FUNCTIONS_SWEEP_INTERVAL_MS",
        default_value_t = 600_000
    )]
    pub functions_sweep_interval_ms: u64,

    /// Successful invocations of one function recorded one by one per second and node;
    /// beyond that, those that printed nothing are counted per second instead
    /// (`/admin/v1/functions/{slug}/invocation-counts`). Errors, invocations with log
    /// lines and schedule runs are always recorded one by one. 0: record every one.
    #[arg(
        long,
        env = "FERROBASE_FUNCTIONS_RECORD_EACH_PER_SEC",
        default_value_t = 100
    )]
    pub functions_record_each_per_sec: u32,

    /// Most bytes of function log lines waiting to be stored, per node; beyond it new
    /// lines are dropped and counted (`ferrobase_function_log_dropped_total`). Lines
    /// may use seven eighths of it: the last eighth is kept for invocation records.
    #[arg(
        long,
        env = "FERROBASE_FUNCTIONS_LOG_QUEUE_BYTES",
        default_value_t = 64 * 1024 * 1024
    )]
    pub functions_log_queue_bytes: usize,

    /// How often function logs are pruned, in ms (one node at a time does it).
    #[arg(
        long,
        env = "FERROBASE_FUNCTIONS_LOG_PRUNE_INTERVAL_MS",
        default_value_t = 600_000
    )]
    pub functions_log_prune_interval_ms: u64,

    /// Deno Deploy v2 API base URL.
    #[arg(
        long,
        env = "FERROBASE_DENO_DEPLOY_API_URL",
        default_value = "https://api.deno.com/v2"
    )]
    pub deno_deploy_api_url: String,

    /// Deno Deploy organization access token (`ddo_…`).
    #[arg(long, env = "FERROBASE_DENO_DEPLOY_TOKEN", hide_env_values = true)]
    pub deno_deploy_token: Option<SecretString>,

    /// URL of a Deno Deploy app, `{app}` is replaced by the app slug.
    #[arg(
        long,
        env = "FERROBASE_DENO_DEPLOY_APP_URL",
        default_value = "https://{app}.deno.net"
    )]
    pub deno_deploy_app_url: String,

    /// How often a Deno Deploy revision's build status is polled, in ms.
    #[arg(long, env = "FERROBASE_DENO_DEPLOY_POLL_MS", default_value_t = 1000)]
    pub deno_deploy_poll_ms: u64,
}

impl FunctionsConfig {
    /// Settings for tests: short intervals, nothing external.
    pub fn for_tests() -> Self {
        Self {
            functions_provider: FunctionsProvider::Local,
            deno_bin: None,
            functions_allow_net: None,
            functions_idle_secs: 300,
            functions_cold_start_timeout_ms: 30_000,
            functions_cache_ttl_ms: 2000,
            functions_schedule_interval_ms: 1000,
            functions_log_retention_days: 7,
            functions_log_max_rows: 10_000,
            functions_max_versions: 100,
            functions_sweep_interval_ms: 600_000,
            functions_log_prune_interval_ms: 600_000,
            functions_record_each_per_sec: 100,
            functions_log_queue_bytes: 64 * 1024 * 1024,
            deno_deploy_api_url: "https://api.deno.com/v2".into(),
            deno_deploy_token: None,
            deno_deploy_app_url: "https://{app}.deno.net".into(),
            deno_deploy_poll_ms: 1000,
        }
    }
}
