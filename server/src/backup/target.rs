//! Where backups go and come from: a local directory, or an S3 prefix
//! (`s3://bucket/prefix`) reached with the storage backend's S3 client
//! ([`crate::storage::s3_client`]) and the `FERROBASE_BACKUP_S3_*` settings
//! (each falling back to the storage backend's `FERROBASE_S3_*`).
//!
//! An S3 backup has the layout of a directory backup, one object per file
//! under `{prefix}/{ref}/`, `manifest.json` last. Writing one, the backup is
//! taken into a private staging directory (`pg_dump` writes a file) and each
//! file is streamed up with multipart uploads (bounded memory), then the
//! staging copy is removed. Restoring, the manifest is read first and only
//! the files it lists (checked to be safe relative paths) are streamed down
//! into a staging directory, where the usual checks run before anything is
//! restored.

use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use futures_util::StreamExt as _;
use object_store::ObjectStore;
use object_store::ObjectStoreExt as _;
use object_store::buffered::BufWriter;
use object_store::path::Path as ObjectPath;
use tokio::io::AsyncWriteExt as _;

use super::{BackupError, MANIFEST, Manifest, io};
use crate::config::Config;

/// Longest accepted target, in bytes.
const MAX_TARGET: usize = 1024;

/// A backup destination or source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A local directory.
    Dir(PathBuf),
    /// An S3 bucket and a key prefix (no leading or trailing `/`; may be empty).
    S3 {
        /// Bucket name.
        bucket: String,
        /// Key prefix.
        prefix: String,
    },
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Dir(d) => write!(f, "{}", d.display()),
            Target::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            Target::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

fn invalid(msg: impl Into<String>) -> BackupError {
    BackupError::Target(msg.into())
}

impl Target {
    /// Parses `s3://bucket[/prefix]` or a directory path. A directory may be
    /// relative (the CLI resolves it against the working directory) unless
    /// `absolute` is asked (the admin API: the server has no useful working
    /// directory). `..` components are refused either way.
    pub fn parse(text: &str, absolute: bool) -> Result<Target, BackupError> {
        if text.is_empty() {
            return Err(invalid("The backup target is empty."));
        }
        if text.len() > MAX_TARGET {
            return Err(invalid(format!(
                "The backup target is longer than {MAX_TARGET} bytes."
            )));
        }
        if text.chars().any(char::is_control) {
            return Err(invalid("The backup target contains control characters."));
        }
        if let Some(rest) = text.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let bucket_ok = (3..=63).contains(&bucket.len())
                && bucket.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'
                })
                && !bucket.starts_with(['-', '.'])
                && !bucket.ends_with(['-', '.']);
            if !bucket_ok {
                return Err(invalid(format!(
                    "{bucket:?} is not an S3 bucket name (3-63 lowercase letters, digits, '-' or '.')."
                )));
            }
            let prefix = prefix.trim_end_matches('/');
            if !prefix.is_empty()
                && prefix
                    .split('/')
                    .any(|p| p.is_empty() || p == "." || p == "..")
            {
                return Err(invalid(format!(
                    "The S3 prefix {prefix:?} has an empty, '.' or '..' segment."
                )));
            }
            return Ok(Target::S3 {
                bucket: bucket.to_owned(),
                prefix: prefix.to_owned(),
            });
        }
        if text.contains("://") {
            return Err(invalid(format!(
                "{text:?}: only directories and s3://bucket/prefix are supported."
            )));
        }
        let path = PathBuf::from(text);
        if path.components().any(|c| matches!(c, Component::ParentDir)) {
            return Err(invalid(format!(
                "The backup directory {text:?} contains '..'; give it without."
            )));
        }
        if absolute && !path.is_absolute() {
            return Err(invalid(format!(
                "The backup directory {text:?} is relative; give an absolute path."
            )));
        }
        Ok(Target::Dir(path))
    }

    /// This target with `segment` appended (a directory or a key prefix).
    pub fn join(&self, segment: &str) -> Target {
        match self {
            Target::Dir(d) => Target::Dir(d.join(segment)),
            Target::S3 { bucket, prefix } => Target::S3 {
                bucket: bucket.clone(),
                prefix: if prefix.is_empty() {
                    segment.to_owned()
                } else {
                    format!("{prefix}/{segment}")
                },
            },
        }
    }

    /// Removes everything under this target (pruning an old backup). A
    /// missing target is not an error.
    pub async fn remove_all(&self, config: &Config) -> Result<(), BackupError> {
        match self {
            Target::Dir(d) => match tokio::fs::remove_dir_all(d).await {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(io(format!("removing {}", d.display()))(e)),
            },
            Target::S3 { bucket, prefix } => {
                let store = s3_store(config, bucket)?;
                let root = ObjectPath::from(prefix.as_str());
                let mut listing = store.list(Some(&root));
                let mut keys = Vec::new();
                while let Some(meta) = listing.next().await {
                    match meta {
                        Ok(meta) => keys.push(meta.location),
                        Err(object_store::Error::NotFound { .. }) => break,
                        Err(e) => return Err(BackupError::Storage(e.to_string())),
                    }
                }
                for key in keys {
                    match store.delete(&key).await {
                        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                        Err(e) => return Err(BackupError::Storage(e.to_string())),
                    }
                }
                Ok(())
            }
        }
    }
}

/// The S3 client of backup destinations in `bucket`.
pub fn s3_store(config: &Config, bucket: &str) -> Result<Arc<dyn ObjectStore>, BackupError> {
    let b = &config.backup;
    let s = &config.storage;
    let pick = |own: &Option<String>, shared: &Option<String>| {
        own.clone()
            .filter(|v| !v.is_empty())
            .or_else(|| shared.clone().filter(|v| !v.is_empty()))
    };
    let settings = crate::storage::S3Settings {
        bucket: bucket.to_owned(),
        endpoint: pick(&b.backup_s3_endpoint, &s.s3_endpoint),
        region: pick(&b.backup_s3_region, &s.s3_region).unwrap_or_else(|| "us-east-1".into()),
        path_style: b
            .backup_s3_force_path_style
            .unwrap_or(s.s3_force_path_style),
        access_key_id: pick(&b.backup_s3_access_key_id, &s.s3_access_key_id),
        secret_access_key: crate::config::exposed(&b.backup_s3_secret_access_key)
            .or_else(|| crate::config::exposed(&s.s3_secret_access_key))
            .filter(|v| !v.is_empty())
            .map(str::to_owned),
    };
    let store = crate::storage::s3_client(settings)
        .map_err(|e| BackupError::Storage(format!("cannot configure the backup S3 client: {e}")))?;
    Ok(Arc::new(store))
}

/// A private staging directory, removed on drop.
pub(crate) struct Staging(pub PathBuf);

impl Staging {
    /// Creates `{tmp}/ferrobase-{what}-{random}` (mode 0700: a dump holds
    /// every row of a project).
    pub(crate) fn new(what: &str) -> Result<Staging, BackupError> {
        let dir =
            std::env::temp_dir().join(format!("ferrobase-{what}-{}", crate::crypto::random_hex(8)));
        let mut builder = std::fs::DirBuilder::new();
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt as _;
            builder.mode(0o700);
        }
        builder
            .create(&dir)
            .map_err(io(format!("creating {}", dir.display())))?;
        Ok(Staging(dir))
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_dir_all(&self.0) {
            tracing::warn!(%error, dir = %self.0.display(), "could not remove a backup staging directory");
        }
    }
}

fn key(prefix: &str, rel: &str) -> ObjectPath {
    if prefix.is_empty() {
        ObjectPath::from(rel)
    } else {
        ObjectPath::from(format!("{prefix}/{rel}"))
    }
}

/// Whether `{prefix}/manifest.json` exists in the bucket.
pub(crate) async fn s3_has_manifest(
    store: &Arc<dyn ObjectStore>,
    prefix: &str,
) -> Result<bool, BackupError> {
    match store.head(&key(prefix, MANIFEST)).await {
        Ok(_) => Ok(true),
        Err(object_store::Error::NotFound { .. }) => Ok(false),
        Err(e) => Err(BackupError::Storage(e.to_string())),
    }
}

/// Streams the files of the backup in `dir` (listed by `manifest`) to
/// `{prefix}/…`, the manifest last.
pub(crate) async fn upload(
    store: &Arc<dyn ObjectStore>,
    dir: &Path,
    manifest: &Manifest,
    prefix: &str,
) -> Result<(), BackupError> {
    let files = manifest
        .files
        .iter()
        .map(|f| f.path.as_str())
        .chain([MANIFEST]);
    for rel in files {
        let mut file = tokio::fs::File::open(dir.join(rel))
            .await
            .map_err(io(format!("reading {rel}")))?;
        let mut writer = BufWriter::with_capacity(
            Arc::clone(store),
            key(prefix, rel),
            crate::storage::PART_BYTES,
        );
        let copied = tokio::io::copy(&mut file, &mut writer).await;
        match copied {
            Ok(_) => writer
                .shutdown()
                .await
                .map_err(|e| BackupError::Storage(format!("uploading {rel}: {e}")))?,
            Err(e) => {
                let _ = writer.abort().await;
                return Err(BackupError::Storage(format!("uploading {rel}: {e}")));
            }
        }
    }
    Ok(())
}

async fn download(
    store: &Arc<dyn ObjectStore>,
    prefix: &str,
    rel: &str,
    to: &Path,
) -> Result<(), BackupError> {
    let got = match store.get(&key(prefix, rel)).await {
        Ok(got) => got,
        Err(object_store::Error::NotFound { .. }) => {
            return Err(BackupError::Invalid(format!(
                "{rel} is missing from s3 prefix {prefix:?}"
            )));
        }
        Err(e) => return Err(BackupError::Storage(format!("downloading {rel}: {e}"))),
    };
    if let Some(parent) = to.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(io(format!("creating {}", parent.display())))?;
    }
    let mut file = tokio::fs::File::create(to)
        .await
        .map_err(io(format!("writing {}", to.display())))?;
    let mut stream = got.into_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| BackupError::Storage(format!("downloading {rel}: {e}")))?;
        file.write_all(&chunk)
            .await
            .map_err(io(format!("writing {}", to.display())))?;
    }
    file.flush()
        .await
        .map_err(io(format!("writing {}", to.display())))?;
    Ok(())
}

/// Streams the backup at `{prefix}/` into `dir`: the manifest first, then
/// only the safe relative paths it lists (the caller verifies checksums).
pub(crate) async fn fetch(
    store: &Arc<dyn ObjectStore>,
    prefix: &str,
    dir: &Path,
) -> Result<(), BackupError> {
    if !s3_has_manifest(store, prefix).await? {
        return Err(BackupError::Invalid(format!(
            "s3 prefix {prefix:?} is not a project backup: it has no {MANIFEST}"
        )));
    }
    download(store, prefix, MANIFEST, &dir.join(MANIFEST)).await?;
    let manifest = super::read_manifest(dir)?;
    for f in &manifest.files {
        download(store, prefix, &f.path, &dir.join(&f.path)).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_or_are_refused() {
        assert_eq!(
            Target::parse("s3://my-bucket/nightly/", true).expect("s3"),
            Target::S3 {
                bucket: "my-bucket".into(),
                prefix: "nightly".into()
            }
        );
        assert_eq!(
            Target::parse("s3://my-bucket", true)
                .expect("s3 root")
                .join("a")
                .to_string(),
            "s3://my-bucket/a"
        );
        assert_eq!(
            Target::parse("/backups/x", true).expect("dir"),
            Target::Dir("/backups/x".into())
        );
        assert!(Target::parse("rel/dir", false).is_ok());
        for bad in [
            "",
            "rel/dir",
            "/backups/../etc",
            "../x",
            "s3://",
            "s3://UPPER/x",
            "s3://ab/x",
            "s3://bucket/a/../b",
            "s3://bucket//b",
            "http://example.com/x",
            "/a\nb",
        ] {
            assert!(Target::parse(bad, true).is_err(), "{bad:?}");
        }
    }
}
