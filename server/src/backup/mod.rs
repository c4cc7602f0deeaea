//! Backups of whole projects (`ferrobase backup`, `ferrobase restore`).
//!
//! A project's backup is one directory, `{to}/{ref}/`:
//!
//! | file | what |
//! |---|---|
//! | `database.dump` | `pg_dump --format=custom` of the project database (as its owner) |
//! | `control.json` | its control-plane rows: `projects` and every table with a `project_id` column; sealed values (`*_enc`) stay encrypted with the platform key |
//! | `storage/…` | every stored object of the project, as files (any backend: local disk or S3) |
//! | `manifest.json` | format, ref, project id, time, and the size and SHA-256 of every file above; written last |
//!
//! - [`create`]: [`create::backup_project`] (and `--all`).
//! - [`restore`]: [`restore::restore_project`], which checks the manifest
//!   and every checksum before touching anything, then restores under the
//!   same ref (refused while a project has it) or a new one (`--ref NEW`).
//!
//! Restoring needs the same platform key (`FERROBASE_SECRET_KEY` /
//! the data dir's key): the backup's secrets are sealed with it.

pub mod create;
pub mod handlers;
pub mod restore;
pub mod schedule;
pub mod target;

use std::io::Read as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::Config;
use crate::crypto::{CryptoError, JwtError};
use crate::platform::projects::ProjectError;

/// Name of the manifest in a project's backup directory.
pub const MANIFEST: &str = "manifest.json";
/// Name of the database dump.
pub const DATABASE: &str = "database.dump";
/// Name of the control-plane rows.
pub const CONTROL: &str = "control.json";
/// Directory of the storage objects.
pub const STORAGE: &str = "storage";
/// Version of the layout; a restore refuses other versions.
pub const FORMAT: u32 = 1;

/// `manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// Layout version ([`FORMAT`]).
    pub format: u32,
    /// The project's ref when it was backed up.
    #[serde(rename = "ref")]
    pub project_ref: String,
    /// Its control-plane id (the context its secrets are sealed with).
    pub project_id: Uuid,
    /// Its database (and owner role) name.
    pub db_name: String,
    /// When the backup was taken.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// Version of the server that wrote it.
    pub ferrobase_version: String,
    /// Every file of the backup with its size and checksum.
    pub files: Vec<FileEntry>,
}

/// One file of a backup.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileEntry {
    /// Path relative to the backup directory, `/`-separated.
    pub path: String,
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256, hex.
    pub sha256: String,
}

/// What can go wrong backing up or restoring.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The backup directory is not a valid backup (manifest, checksums).
    #[error("{0}")]
    Invalid(String),
    /// No such ready project.
    #[error("No ready project with ref {0:?}.")]
    NotFound(String),
    /// Restoring under a ref that is taken.
    #[error(
        "A project with ref {0:?} exists; pass --force to replace it (its data is deleted first), or restore under another ref (--ref NEW)."
    )]
    Exists(String),
    /// A backup target (directory or `s3://` URL) that is not acceptable.
    #[error("{0}")]
    Target(String),
    /// Bad input to the backup API (name, cron, retention, filter).
    #[error("{0}")]
    Input(String),
    /// A backup schedule with that name exists.
    #[error("{0}")]
    Conflict(String),
    /// No such backup schedule.
    #[error("{0}")]
    Missing(String),
    /// `pg_dump` / `pg_restore` failed or is missing.
    #[error("{tool}: {message}")]
    Tool {
        /// Which tool.
        tool: &'static str,
        /// Its last error lines.
        message: String,
    },
    /// A file could not be read or written.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// Control-plane problem.
    #[error(transparent)]
    Project(#[from] ProjectError),
    /// A database statement failed.
    #[error("database error: {0}")]
    Db(#[from] tokio_postgres::Error),
    /// The control-plane pool failed.
    #[error("database unavailable: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// The storage backend failed.
    #[error("storage: {0}")]
    Storage(String),
    /// A sealed value did not open (another platform key?).
    #[error(
        "cannot open the backup's secrets (is this the platform key they were sealed with?): {0}"
    )]
    Crypto(#[from] CryptoError),
    /// Signing new keys failed.
    #[error(transparent)]
    Jwt(#[from] JwtError),
}

/// An I/O error with what was being done.
pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BackupError {
    let what = what.into();
    move |source| BackupError::Io { what, source }
}

/// Progress lines (`ferrobase backup` prints them on stderr).
pub trait Progress: Send + Sync {
    /// One step done or started.
    fn step(&self, line: &str);
}

/// Prints progress on stderr.
#[derive(Debug, Default)]
pub struct Stderr;

impl Progress for Stderr {
    fn step(&self, line: &str) {
        eprintln!("{line}");
    }
}

/// Discards progress.
#[derive(Debug, Default)]
pub struct Quiet;

impl Progress for Quiet {
    fn step(&self, _line: &str) {}
}

/// `pg_dump` / `pg_restore`: next to the cluster's `initdb` (as the embedded
/// cluster finds it: `FERROBASE_PG_BIN`, PATH, `/usr/lib/postgresql/*/bin`),
/// else on PATH.
pub fn pg_tool(config: &Config, name: &'static str) -> Result<PathBuf, BackupError> {
    if let Ok(dir) = crate::db::embedded::find_bin_dir(config.pg_bin.as_deref()) {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or(BackupError::Tool {
            tool: name,
            message: format!(
                "{name} was not found next to initdb or on PATH (install the PostgreSQL client tools, or set FERROBASE_PG_BIN)"
            ),
        })
}

/// libpq arguments and password for `config` (the password goes in
/// `PGPASSWORD`, never on the command line).
pub(crate) fn libpq_args(config: &tokio_postgres::Config) -> (Vec<String>, Option<String>) {
    let mut args = Vec::new();
    match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => args.push(format!("--host={h}")),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(p)) => {
            args.push(format!("--host={}", p.to_string_lossy()));
        }
        None => {}
    }
    if let Some(port) = config.get_ports().first() {
        args.push(format!("--port={port}"));
    }
    if let Some(user) = config.get_user() {
        args.push(format!("--username={user}"));
    }
    if let Some(db) = config.get_dbname() {
        args.push(format!("--dbname={db}"));
    }
    let password = config
        .get_password()
        .map(|p| String::from_utf8_lossy(p).into_owned());
    (args, password)
}

/// Runs a Postgres tool; on failure, its last stderr lines.
pub(crate) async fn run_tool(
    tool: &'static str,
    program: &Path,
    args: &[String],
    password: Option<&str>,
) -> Result<Vec<u8>, BackupError> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args).kill_on_drop(true);
    if let Some(p) = password {
        cmd.env("PGPASSWORD", p);
    }
    let out = cmd.output().await.map_err(|e| BackupError::Tool {
        tool,
        message: e.to_string(),
    })?;
    if out.status.success() {
        return Ok(out.stdout);
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
    Err(BackupError::Tool {
        tool,
        message: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
    })
}

/// Size and SHA-256 (hex) of a file, read in chunks.
pub fn file_digest(path: &Path) -> Result<(u64, String), BackupError> {
    let mut file = std::fs::File::open(path).map_err(io(format!("reading {}", path.display())))?;
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = file
            .read(&mut buf)
            .map_err(io(format!("reading {}", path.display())))?;
        if n == 0 {
            break;
        }
        total += n as u64;
        ctx.update(&buf[..n]);
    }
    let hex = ctx
        .finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((total, hex))
}

/// Human-readable size.
pub(crate) fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / f64::from(1u32 << 30)),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / f64::from(1u32 << 20)),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

/// Reads and checks a backup directory: the manifest parses, has this
/// format, lists only safe relative paths, and every file is there with
/// its size and checksum (so nothing is restored from a damaged backup).
pub fn verify(dir: &Path) -> Result<Manifest, BackupError> {
    let manifest = read_manifest(dir)?;
    for f in &manifest.files {
        let (bytes, sha) = file_digest(&dir.join(&f.path)).map_err(|e| match e {
            BackupError::Io { source, .. } => {
                BackupError::Invalid(format!("{} is missing or unreadable: {source}", f.path))
            }
            other => other,
        })?;
        if bytes != f.bytes || sha != f.sha256 {
            return Err(BackupError::Invalid(format!(
                "{} does not match its checksum in {MANIFEST} (damaged backup)",
                f.path
            )));
        }
    }
    Ok(manifest)
}

/// Reads the manifest of the backup in `dir` and checks its format and that
/// it lists the required files under safe relative paths only (not the
/// files themselves: see [`verify`]).
pub fn read_manifest(dir: &Path) -> Result<Manifest, BackupError> {
    let path = dir.join(MANIFEST);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        BackupError::Invalid(format!(
            "{} is not a project backup: cannot read {MANIFEST} ({e})",
            dir.display()
        ))
    })?;
    let manifest: Manifest = serde_json::from_str(&text)
        .map_err(|e| BackupError::Invalid(format!("{MANIFEST} is damaged: {e}")))?;
    if manifest.format != FORMAT {
        return Err(BackupError::Invalid(format!(
            "{MANIFEST} has format {}, this server reads format {FORMAT}",
            manifest.format
        )));
    }
    for required in [DATABASE, CONTROL] {
        if !manifest.files.iter().any(|f| f.path == required) {
            return Err(BackupError::Invalid(format!(
                "{MANIFEST} does not list {required}"
            )));
        }
    }
    for f in &manifest.files {
        let safe = !f.path.is_empty()
            && !f.path.starts_with('/')
            && f.path
                .split('/')
                .all(|p| !p.is_empty() && p != "." && p != "..");
        if !safe {
            return Err(BackupError::Invalid(format!(
                "{MANIFEST} lists an unsafe path {:?}",
                f.path
            )));
        }
    }
    Ok(manifest)
}

/// One project's backup written by [`backup_to`].
#[derive(Debug, Clone)]
pub struct Written {
    /// The project.
    pub project_ref: String,
    /// Where its backup is (`{target}/{ref}`).
    pub location: target::Target,
    /// Bytes of its files.
    pub bytes: u64,
}

/// Backs up project `r` (every ready project when `None`) to `to`, a
/// directory or an S3 prefix, as `{to}/{ref}/`.
pub async fn backup_to(
    platform: &crate::platform::Platform,
    r: Option<&crate::platform::ProjectRef>,
    to: &target::Target,
    progress: &dyn Progress,
) -> Result<Vec<Written>, BackupError> {
    let refs = match r {
        Some(r) => vec![r.clone()],
        None => {
            let mut refs = Vec::new();
            for p in crate::platform::projects::list(platform).await? {
                if p.status == "ready" {
                    refs.push(crate::platform::ProjectRef::parse(&p.project_ref)?);
                }
            }
            refs
        }
    };
    let mut done = Vec::new();
    for r in refs {
        let location = to.join(r.as_str());
        let bytes = match to {
            target::Target::Dir(dir) => {
                let written = create::backup_project(platform, &r, dir, progress).await?;
                read_manifest(&written)?.files.iter().map(|f| f.bytes).sum()
            }
            target::Target::S3 { bucket, .. } => {
                let target::Target::S3 { prefix, .. } = &location else {
                    continue;
                };
                let store = target::s3_store(platform.config(), bucket)?;
                if target::s3_has_manifest(&store, prefix).await? {
                    return Err(BackupError::Invalid(format!(
                        "{location} already holds a backup; choose another --to"
                    )));
                }
                let staging = target::Staging::new("backup")?;
                let written = create::backup_project(platform, &r, &staging.0, progress).await?;
                let manifest = read_manifest(&written)?;
                progress.step(&format!("backup {r}: uploading to {location}"));
                target::upload(&store, &written, &manifest, prefix).await?;
                manifest.files.iter().map(|f| f.bytes).sum()
            }
        };
        done.push(Written {
            project_ref: r.to_string(),
            location,
            bytes,
        });
    }
    Ok(done)
}

/// Restores the project backup at `from` (a backup directory or the S3
/// prefix of one, `s3://bucket/prefix/{ref}`).
pub async fn restore_from(
    platform: &crate::platform::Platform,
    from: &target::Target,
    options: &restore::RestoreOptions,
    progress: &dyn Progress,
) -> Result<crate::platform::projects::ProjectDetails, BackupError> {
    match from {
        target::Target::Dir(dir) => {
            restore::restore_project(platform, dir, options, progress).await
        }
        target::Target::S3 { bucket, prefix } => {
            let store = target::s3_store(platform.config(), bucket)?;
            let staging = target::Staging::new("restore")?;
            progress.step(&format!("restore: downloading {from}"));
            target::fetch(&store, prefix, &staging.0).await?;
            restore::restore_project(platform, &staging.0, options, progress).await
        }
    }
}
