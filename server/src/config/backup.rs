//! Backup settings (a group flattened into [`super::Config`]): the S3
//! destination of `ferrobase backup --to s3://…` and scheduled backups, and
//! how often the backup scheduler looks for due schedules.

use clap::Args;
use secrecy::SecretString;

/// Backup settings (`FERROBASE_BACKUP_*`). Every unset `FERROBASE_BACKUP_S3_*`
/// falls back to the storage backend's `FERROBASE_S3_*` setting.
#[derive(Debug, Clone, Args)]
pub struct BackupConfig {
    /// S3 endpoint of backup destinations (S3-compatible servers); unset: `FERROBASE_S3_ENDPOINT`, else AWS.
    #[arg(long, env = "FERROBASE_BACKUP_S3_ENDPOINT")]
    pub backup_s3_endpoint: Option<String>,

    /// S3 region of backup destinations; unset: `FERROBASE_S3_REGION`, else `us-east-1`.
    #[arg(long, env = "FERROBASE_BACKUP_S3_REGION")]
    pub backup_s3_region: Option<String>,

    /// S3 access key id of backup destinations; unset: `FERROBASE_S3_ACCESS_KEY_ID`.
    #[arg(
        long,
        env = "FERROBASE_BACKUP_S3_ACCESS_KEY_ID",
        hide_env_values = true
    )]
    pub backup_s3_access_key_id: Option<String>,

    /// S3 secret access key of backup destinations; unset: `FERROBASE_S3_SECRET_ACCESS_KEY`.
    #[arg(
        long,
        env = "FERROBASE_BACKUP_S3_SECRET_ACCESS_KEY",
        hide_env_values = true
    )]
    pub backup_s3_secret_access_key: Option<SecretString>,

    /// Path-style S3 URLs for backup destinations; unset: `FERROBASE_S3_FORCE_PATH_STYLE`.
    #[arg(long, env = "FERROBASE_BACKUP_S3_FORCE_PATH_STYLE",
          action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub backup_s3_force_path_style: Option<bool>,

    /// How often each node looks for due backup schedules, in milliseconds.
    #[arg(
        long,
        env = "FERROBASE_BACKUP_SCHEDULE_INTERVAL_MS",
        default_value_t = 5_000
    )]
    pub backup_schedule_interval_ms: u64,
}

impl BackupConfig {
    /// Settings for tests: nothing external, a short scheduler interval.
    pub fn for_tests() -> Self {
        Self {
            backup_s3_endpoint: None,
            backup_s3_region: None,
            backup_s3_access_key_id: None,
            backup_s3_secret_access_key: None,
            backup_s3_force_path_style: None,
            backup_schedule_interval_ms: 200,
        }
    }
}
