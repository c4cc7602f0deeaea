//! Typed configuration, read once at start-up from environment variables
//! (every variable also has a command-line flag; see `ferrobase --help`).
//!
//! Tests build [`Config`] directly with [`Config::for_tests`] instead of
//! touching the process environment.

mod ai;
mod backup;
mod functions;
mod realtime;
mod storage;
mod webhooks;

pub use ai::AiConfig;
pub use backup::BackupConfig;
pub use functions::FunctionsConfig;
pub use realtime::RealtimeConfig;
pub use storage::StorageConfig;
pub use webhooks::{RetrySchedule, WebhooksConfig};

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use secrecy::{ExposeSecret as _, SecretString};

/// The text of an optional secret setting (`None` when unset). Secrets are
/// [`SecretString`]s so that `Debug` (and so any log of the configuration)
/// shows them redacted; reading one goes through this function.
pub fn exposed(secret: &Option<SecretString>) -> Option<&str> {
    secret.as_ref().map(|s| s.expose_secret())
}

/// Deployment mode: production refuses weak or missing secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Environment {
    /// Local development: missing secrets are generated and kept in the data dir.
    Development,
    /// Production: every secret must be given explicitly.
    Production,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Pretty when stderr is a terminal, JSON otherwise.
    Auto,
    /// One JSON object per line.
    Json,
    /// Human-readable, coloured.
    Pretty,
}

/// Where edge functions run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FunctionsProvider {
    /// Deno processes supervised by this server (needs `deno`).
    Local,
    /// Deno Deploy (v2 API), with `FERROBASE_DENO_DEPLOY_TOKEN`.
    DenoDeploy,
}

/// Every setting of the platform. The README's configuration table mirrors this struct.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// `development` or `production`.
    #[arg(long, env = "FERROBASE_ENV", value_enum, default_value = "development")]
    pub env: Environment,

    /// Address the HTTP server listens on.
    #[arg(long, env = "FERROBASE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Public base URL of this server (used in project URLs). Defaults to `http://{listen}`.
    #[arg(long, env = "FERROBASE_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// Base domain for host routing: `{ref}.{base_domain}` reaches project `ref`.
    #[arg(long, env = "FERROBASE_BASE_DOMAIN")]
    pub base_domain: Option<String>,

    /// Where the embedded Postgres cluster, generated secrets and local files live.
    #[arg(long, env = "FERROBASE_DATA_DIR", default_value = "./ferrobase-data")]
    pub data_dir: PathBuf,

    /// Control-plane Postgres. When unset, an embedded cluster is run under the data dir.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Directory holding `initdb`, `pg_ctl` and `postgres` (default: PATH, then /usr/lib/postgresql/*/bin).
    #[arg(long, env = "FERROBASE_PG_BIN")]
    pub pg_bin: Option<PathBuf>,

    /// How often the server checks that the embedded Postgres is up (and
    /// restarts it when it died), in milliseconds.
    #[arg(
        long,
        env = "FERROBASE_PG_SUPERVISE_INTERVAL_MS",
        default_value_t = 2000
    )]
    pub pg_supervise_interval_ms: u64,

    /// 32-byte key (base64 or hex) encrypting per-project secrets with AES-256-GCM.
    #[arg(long, env = "FERROBASE_ENCRYPTION_KEY", hide_env_values = true)]
    pub encryption_key: Option<SecretString>,

    /// Email of the first platform admin.
    #[arg(
        long,
        env = "FERROBASE_ADMIN_EMAIL",
        default_value = "admin@ferrobase.local"
    )]
    pub admin_email: String,

    /// Password of the first platform admin (generated and printed once when unset in development).
    #[arg(long, env = "FERROBASE_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<SecretString>,

    /// Ref of the project created on first start (empty: none).
    #[arg(long, env = "FERROBASE_DEFAULT_PROJECT", default_value = "default")]
    pub default_project: String,

    /// Allowed CORS origins, comma separated, or `*`.
    #[arg(long, env = "FERROBASE_CORS_ORIGINS", default_value = "*")]
    pub cors_origins: String,

    /// Largest accepted request body, in bytes.
    #[arg(long, env = "FERROBASE_MAX_BODY_BYTES", default_value_t = 10 * 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Maximum connections per project pool.
    #[arg(long, env = "FERROBASE_POOL_MAX_SIZE", default_value_t = 10)]
    pub pool_max_size: usize,

    /// Close a project pool after this many seconds without use.
    #[arg(long, env = "FERROBASE_POOL_IDLE_TIMEOUT_SECS", default_value_t = 300)]
    pub pool_idle_timeout_secs: u64,

    /// How long a request waits for a pooled connection before a 503.
    #[arg(
        long,
        env = "FERROBASE_POOL_ACQUIRE_TIMEOUT_MS",
        default_value_t = 5000
    )]
    pub pool_acquire_timeout_ms: u64,

    /// Most connections this node opens to project databases, across all
    /// projects (0: the cluster's `max_connections` minus reserved slots,
    /// `FERROBASE_DB_RESERVED_CONNECTIONS` and the control-plane pool). With
    /// several nodes on one cluster, give each its share.
    #[arg(long, env = "FERROBASE_DB_MAX_CONNECTIONS", default_value_t = 0)]
    pub db_max_connections: usize,

    /// Connections left free for operators, migrations and LISTEN connections
    /// when the budget is derived from `max_connections`.
    #[arg(long, env = "FERROBASE_DB_RESERVED_CONNECTIONS", default_value_t = 10)]
    pub db_reserved_connections: usize,

    /// Statement timeout for data-plane requests, in milliseconds.
    #[arg(long, env = "FERROBASE_STATEMENT_TIMEOUT_MS", default_value_t = 8000)]
    pub statement_timeout_ms: u64,

    /// Roles that may ask the data API for query plans (`Accept:
    /// application/vnd.pgrst.plan+json`), comma-separated; empty turns plans off.
    #[arg(
        long,
        env = "FERROBASE_REST_PLAN_ROLES",
        default_value = "service_role"
    )]
    pub rest_plan_roles: String,

    /// Lifetime of platform admin tokens, in seconds.
    #[arg(long, env = "FERROBASE_ADMIN_TOKEN_TTL_SECS", default_value_t = 3600)]
    pub admin_token_ttl_secs: u64,

    /// Default of the per-project auth setting `mailer_autoconfirm`: sign-ups get a
    /// session without confirming their email (GoTrue `MAILER_AUTOCONFIRM`).
    #[arg(long, env = "FERROBASE_AUTH_AUTOCONFIRM", default_value_t = false, action = clap::ArgAction::Set)]
    pub auth_autoconfirm: bool,

    /// How long one node answers `GET /auth/v1/user` for a (user, session)
    /// from memory, in milliseconds. This node's own auth writes (logout,
    /// user updates, admin changes, …) and admin SQL drop it at once; a
    /// change made on another node or straight in SQL shows within this
    /// time. 0 turns the cache off.
    #[arg(long, env = "FERROBASE_AUTH_USER_CACHE_MS", default_value_t = 1000)]
    pub auth_user_cache_ms: u64,

    /// Trust the first `X-Forwarded-For` address as the client IP (auth rate
    /// limits). Enable only behind a proxy that sets it.
    #[arg(long, env = "FERROBASE_TRUST_FORWARDED_FOR", default_value_t = false, action = clap::ArgAction::Set)]
    pub trust_forwarded_for: bool,

    /// SMTP server for auth mail, e.g. `smtps://user:pass@mail.example.com:465` or
    /// `smtp://host:587?tls=starttls`. Unset: mail is captured in the project database.
    #[arg(long, env = "FERROBASE_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,

    /// Sender of auth mail.
    #[arg(
        long,
        env = "FERROBASE_SMTP_FROM",
        default_value = "Ferrobase <noreply@ferrobase.local>"
    )]
    pub smtp_from: String,

    /// Let outgoing requests (OAuth, AI upstreams, webhooks, …) reach loopback,
    /// private, link-local, CGNAT and ULA addresses. Development and tests only;
    /// cloud metadata addresses stay refused. See `outbound`.
    #[arg(long, env = "FERROBASE_OUTBOUND_ALLOW_PRIVATE", default_value_t = false,
          action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub outbound_allow_private: bool,

    /// Networks outgoing requests may reach even though they are private
    /// (comma-separated CIDRs, e.g. one internal SMTP relay `10.0.0.25/32`).
    #[arg(long, env = "FERROBASE_OUTBOUND_ALLOW_NETS", value_delimiter = ',')]
    pub outbound_allow_nets: Vec<ipnet::IpNet>,

    /// A client must send a request's headers within this many milliseconds
    /// (slow-header clients are cut off).
    #[arg(
        long,
        env = "FERROBASE_HEADER_READ_TIMEOUT_MS",
        default_value_t = 30_000
    )]
    pub header_read_timeout_ms: u64,

    /// On shutdown, answer readiness with 503 for this long (still serving)
    /// before the listener closes, so load balancers stop routing here first.
    #[arg(long, env = "FERROBASE_DRAIN_DELAY_MS", default_value_t = 0)]
    pub drain_delay_ms: u64,

    /// On shutdown, how long in-flight requests and streams may run on before
    /// their connections are closed, in seconds.
    #[arg(long, env = "FERROBASE_SHUTDOWN_GRACE_SECS", default_value_t = 30)]
    pub shutdown_grace_secs: u64,

    /// A buffered request body (auth, data API, admin, platform) must arrive
    /// within this many milliseconds, and a streamed upload may not pause
    /// longer than this between two chunks; else 408. No project connection
    /// is held while a body is read.
    #[arg(long, env = "FERROBASE_BODY_READ_TIMEOUT_MS", default_value_t = 30_000)]
    pub body_read_timeout_ms: u64,

    /// Platform admin logins per client IP per 5 minutes.
    #[arg(long, env = "FERROBASE_PLATFORM_LOGIN_PER_IP", default_value_t = 30)]
    pub platform_login_per_ip: u32,

    /// Failed platform admin logins in a row that lock the account.
    #[arg(
        long,
        env = "FERROBASE_PLATFORM_LOGIN_MAX_ATTEMPTS",
        default_value_t = 5
    )]
    pub platform_login_max_attempts: u32,

    /// How long a locked platform admin account stays locked, in seconds.
    #[arg(
        long,
        env = "FERROBASE_PLATFORM_LOGIN_LOCKOUT_SECS",
        default_value_t = 900
    )]
    pub platform_login_lockout_secs: u64,

    /// Image transforms run at once on this node (more wait briefly, then 503).
    #[arg(
        long,
        env = "FERROBASE_IMAGE_TRANSFORM_CONCURRENCY",
        default_value_t = 2
    )]
    pub image_transform_concurrency: usize,

    /// Admin SQL requests run at once per project on this node (more get 429).
    #[arg(long, env = "FERROBASE_ADMIN_SQL_CONCURRENCY", default_value_t = 2)]
    pub admin_sql_concurrency: usize,

    /// Largest admin SQL answer, in bytes of row data: rows past it are not
    /// read (`truncated: true`).
    #[arg(long, env = "FERROBASE_ADMIN_SQL_MAX_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub admin_sql_max_bytes: usize,

    /// How often the metrics exporter drains recorded histogram samples, in
    /// milliseconds (memory stays bounded when nobody scrapes `/metrics`).
    #[arg(long, env = "FERROBASE_METRICS_UPKEEP_MS", default_value_t = 5_000)]
    pub metrics_upkeep_ms: u64,

    /// Log format: auto, json or pretty (filter with `RUST_LOG`).
    #[arg(long, env = "FERROBASE_LOG_FORMAT", value_enum, default_value = "auto")]
    pub log_format: LogFormat,

    /// Realtime hub settings (`FERROBASE_REALTIME_*`).
    #[command(flatten)]
    pub realtime: RealtimeConfig,

    /// Object storage settings (`FERROBASE_STORAGE_*`, `FERROBASE_S3_*`).
    #[command(flatten)]
    pub storage: StorageConfig,

    /// Edge functions settings: the local Deno runtime and Deno Deploy.
    #[command(flatten)]
    pub functions: FunctionsConfig,

    /// AI gateway settings (`FERROBASE_AI_*`).
    #[command(flatten)]
    pub ai: AiConfig,

    /// Outgoing webhook settings (`FERROBASE_WEBHOOK_*`).
    #[command(flatten)]
    pub webhooks: WebhooksConfig,

    /// Backup settings (`FERROBASE_BACKUP_*`).
    #[command(flatten)]
    pub backup: BackupConfig,
}

impl Config {
    /// The base URL clients use to reach this server.
    pub fn public_url(&self) -> String {
        match &self.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("http://{}", self.listen),
        }
    }

    /// The base URL of one project (path routing; always available).
    pub fn project_url(&self, project_ref: &str) -> String {
        format!("{}/p/{project_ref}", self.public_url())
    }

    /// A development config pointing at `database_url`, for tests.
    pub fn for_tests(database_url: String, data_dir: PathBuf) -> Self {
        Self {
            env: Environment::Development,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            public_url: None,
            base_domain: None,
            data_dir,
            database_url: Some(database_url),
            pg_bin: None,
            pg_supervise_interval_ms: 2000,
            encryption_key: Some("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".into()),
            admin_email: "admin@ferrobase.test".into(),
            admin_password: Some("correct horse battery staple".into()),
            default_project: String::new(),
            cors_origins: "*".into(),
            max_body_bytes: 1024 * 1024,
            pool_max_size: 5,
            pool_idle_timeout_secs: 300,
            pool_acquire_timeout_ms: 2000,
            db_max_connections: 0,
            db_reserved_connections: 10,
            statement_timeout_ms: 8000,
            rest_plan_roles: "service_role".into(),
            admin_token_ttl_secs: 3600,
            auth_autoconfirm: false,
            auth_user_cache_ms: 1000,
            trust_forwarded_for: false,
            smtp_url: None,
            smtp_from: "Ferrobase <noreply@ferrobase.test>".into(),
            log_format: LogFormat::Pretty,
            outbound_allow_private: false,
            outbound_allow_nets: Vec::new(),
            header_read_timeout_ms: 30_000,
            drain_delay_ms: 0,
            shutdown_grace_secs: 30,
            body_read_timeout_ms: 30_000,
            platform_login_per_ip: 30,
            platform_login_max_attempts: 5,
            platform_login_lockout_secs: 900,
            image_transform_concurrency: 2,
            admin_sql_concurrency: 2,
            admin_sql_max_bytes: 16 * 1024 * 1024,
            metrics_upkeep_ms: 5_000,
            realtime: RealtimeConfig::for_tests(),
            storage: StorageConfig::for_tests(),
            functions: FunctionsConfig::for_tests(),
            ai: AiConfig::for_tests(),
            webhooks: WebhooksConfig::for_tests(),
            backup: BackupConfig::for_tests(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_redacts_secrets() {
        let mut c = Config::for_tests("postgres://localhost/x".into(), PathBuf::from("/tmp/x"));
        c.ai.ai_api_key = Some("sk-ai-upstream-key".into());
        c.storage.s3_secret_access_key = Some("s3-secret-value".into());
        c.functions.deno_deploy_token = Some("ddo_deploy_token".into());
        let text = format!("{c:?}");
        for secret in [
            exposed(&c.encryption_key).expect("key"),
            exposed(&c.admin_password).expect("password"),
            "sk-ai-upstream-key",
            "s3-secret-value",
            "ddo_deploy_token",
        ] {
            assert!(!text.contains(secret), "{secret} appears in {text}");
        }
        assert!(text.contains("admin_email"), "{text}");
    }
}
