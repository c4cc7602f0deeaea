//! Object storage settings (a group flattened into [`super::Config`]).

use clap::Args;
use secrecy::SecretString;

/// Object storage settings (`FERROBASE_STORAGE_*`, `FERROBASE_S3_*`).
#[derive(Debug, Clone, Args)]
pub struct StorageConfig {
    /// Where object bytes live: unset = local disk under `{data_dir}/storage`;
    /// `file:///abs/dir`; or `s3://bucket?endpoint=…&region=…&force_path_style=true`
    /// (the `FERROBASE_S3_*` settings override the query).
    #[arg(long, env = "FERROBASE_STORAGE_URL")]
    pub storage_url: Option<String>,

    /// S3 endpoint URL for S3-compatible servers (MinIO, R2, …); unset = AWS.
    #[arg(long, env = "FERROBASE_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,

    /// S3 region (default `us-east-1`).
    #[arg(long, env = "FERROBASE_S3_REGION")]
    pub s3_region: Option<String>,

    /// S3 access key id (unset: the usual AWS environment and instance credentials).
    #[arg(long, env = "FERROBASE_S3_ACCESS_KEY_ID", hide_env_values = true)]
    pub s3_access_key_id: Option<String>,

    /// S3 secret access key.
    #[arg(long, env = "FERROBASE_S3_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub s3_secret_access_key: Option<SecretString>,

    /// Use path-style S3 URLs (`endpoint/bucket/key`), as most S3-compatible servers need.
    #[arg(long, env = "FERROBASE_S3_FORCE_PATH_STYLE", default_value_t = false,
          action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub s3_force_path_style: bool,

    /// Largest object accepted by storage, in bytes (bucket limits can only lower it).
    #[arg(long, env = "FERROBASE_STORAGE_MAX_FILE_BYTES", default_value_t = 5 * 1024 * 1024 * 1024)]
    pub storage_max_file_bytes: u64,

    /// Bytes of objects one project may store, across all its buckets (0 = no
    /// limit); a project's own `storage_max_bytes` setting overrides it.
    #[arg(long, env = "FERROBASE_STORAGE_MAX_PROJECT_BYTES", default_value_t = 10 * 1024 * 1024 * 1024)]
    pub storage_max_project_bytes: u64,

    /// Seconds an unfinished resumable (TUS) upload is kept.
    #[arg(long, env = "FERROBASE_STORAGE_RESUMABLE_EXPIRY_SECS", default_value_t = 24 * 3600)]
    pub storage_resumable_expiry_secs: u64,
}

impl StorageConfig {
    /// Settings for tests: short intervals, nothing external.
    pub fn for_tests() -> Self {
        Self {
            storage_url: None,
            s3_endpoint: None,
            s3_region: None,
            s3_access_key_id: None,
            s3_secret_access_key: None,
            s3_force_path_style: false,
            storage_max_file_bytes: 50 * 1024 * 1024,
            storage_max_project_bytes: 0,
            storage_resumable_expiry_secs: 3600,
        }
    }
}
