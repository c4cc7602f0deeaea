//! Start-up: open the control plane (starting the embedded cluster when no
//! `DATABASE_URL` is given), run migrations, make sure a platform admin and
//! the default project exist, and report what a developer needs to start.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use super::{Inner, Platform, ProjectDetails, admins, projects};
use crate::config::{Config, Environment};
use crate::crypto::{CryptoError, JwtError, SecretBox, SigningKey};
use crate::db::embedded::{EmbeddedError, EmbeddedPostgres, find_bin_dir};

mod platform_migrations {
    refinery::embed_migrations!("../migrations/platform");
}

/// Name of the control-plane database inside the embedded cluster.
pub const CONTROL_DB: &str = "ferrobase";
/// Known-weak admin passwords refused in production.
const WEAK_PASSWORDS: &[&str] = &[
    "admin",
    "password",
    "changeme",
    "ferrobase",
    "secret",
    "123456",
];
/// Encryption keys that are public (our test key), refused in production.
const PUBLIC_KEYS: &[&str] = &["MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="];

/// Why the platform could not start.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    /// A setting is missing or unsafe.
    #[error("{0}")]
    Config(String),
    /// The embedded cluster could not be prepared.
    #[error(transparent)]
    Embedded(#[from] EmbeddedError),
    /// A control-plane statement failed.
    #[error("control-plane database error: {0}")]
    Db(#[from] tokio_postgres::Error),
    /// No control-plane connection could be had.
    #[error("could not connect to the control-plane database: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// A migration failed.
    #[error("migration failed: {0}")]
    Migration(#[from] refinery::Error),
    /// A stored secret could not be decrypted.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// A signing key could not be made or read.
    #[error(transparent)]
    Jwt(#[from] JwtError),
    /// Reading or writing the data dir failed.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    /// Creating the first admin or default project failed.
    #[error("{0}")]
    Setup(String),
}

/// Secrets generated once for a development setup, kept in `{data_dir}/secrets.json` (mode 0600).
#[derive(Debug, Serialize, Deserialize)]
struct DevSecrets {
    encryption_key: String,
    postgres_password: String,
}

impl DevSecrets {
    fn load_or_create(data_dir: &Path) -> Result<Self, PlatformError> {
        let path = data_dir.join("secrets.json");
        let io = |what: &str| {
            let what = format!("{what} {}", path.display());
            move |e| PlatformError::Io(what, e)
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map_err(|e| PlatformError::Config(format!("{} is corrupt: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let secrets = Self {
                    encryption_key: SecretBox::generate_key_text(),
                    postgres_password: crate::crypto::random_hex(24),
                };
                let text = serde_json::to_string_pretty(&secrets)
                    .map_err(|e| PlatformError::Config(e.to_string()))?;
                use std::io::Write as _;
                use std::os::unix::fs::OpenOptionsExt as _;
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .and_then(|mut f| f.write_all(text.as_bytes()))
                    .map_err(io("writing"))?;
                Ok(secrets)
            }
            Err(e) => Err(io("reading")(e)),
        }
    }
}

/// Refuses to run production with missing or default secrets, naming the variable.
pub fn check_production(config: &Config) -> Result<(), PlatformError> {
    if config.env != Environment::Production {
        return Ok(());
    }
    match crate::config::exposed(&config.encryption_key) {
        None | Some("") => {
            return Err(PlatformError::Config(
                "FERROBASE_ENCRYPTION_KEY must be set in production (32 random bytes, base64; \
                 e.g. `openssl rand -base64 32`)"
                    .into(),
            ));
        }
        Some(k) if PUBLIC_KEYS.contains(&k.trim()) || SecretBox::from_key_text(k).is_err() => {
            return Err(PlatformError::Config(
                "FERROBASE_ENCRYPTION_KEY is a default or invalid key; generate a new one \
                 (32 random bytes, base64)"
                    .into(),
            ));
        }
        Some(_) => {}
    }
    match crate::config::exposed(&config.admin_password) {
        None | Some("") => Err(PlatformError::Config(
            "FERROBASE_ADMIN_PASSWORD must be set in production".into(),
        )),
        Some(p) if p.chars().count() < 12 || WEAK_PASSWORDS.contains(&p.to_lowercase().as_str()) => {
            Err(PlatformError::Config(
                "FERROBASE_ADMIN_PASSWORD is a default or weak password; use at least 12 characters"
                    .into(),
            ))
        }
        Some(_) => Ok(()),
    }
}

impl Platform {
    /// Opens the control plane: checks settings, starts the embedded cluster
    /// if needed, runs the platform migrations and loads the platform key.
    pub async fn open(config: Config) -> Result<Platform, PlatformError> {
        check_production(&config)?;
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            PlatformError::Io(
                format!("creating data dir {}", config.data_dir.display()),
                e,
            )
        })?;
        let needs_dev_secrets = config.encryption_key.is_none() || config.database_url.is_none();
        let dev = if needs_dev_secrets {
            Some(DevSecrets::load_or_create(&config.data_dir)?)
        } else {
            None
        };
        let key_text = match (crate::config::exposed(&config.encryption_key), &dev) {
            (Some(k), _) => k.to_owned(),
            (None, Some(d)) => d.encryption_key.clone(),
            (None, None) => unreachable!("dev secrets are loaded when the key is missing"),
        };
        let secrets = SecretBox::from_key_text(&key_text).map_err(|_| {
            PlatformError::Config(
                "FERROBASE_ENCRYPTION_KEY must be 32 bytes, as base64 or 64 hex characters".into(),
            )
        })?;

        let (cluster, embedded) = match (&config.database_url, &dev) {
            (Some(url), _) => {
                let cfg: tokio_postgres::Config = url.parse().map_err(|e| {
                    PlatformError::Config(format!(
                        "DATABASE_URL is not a valid connection string: {e}"
                    ))
                })?;
                (cfg, None)
            }
            (None, Some(dev)) => {
                let bin = find_bin_dir(config.pg_bin.as_deref())?;
                let pg =
                    EmbeddedPostgres::init(&config.data_dir, bin, &dev.postgres_password).await?;
                pg.start().await?;
                ensure_control_db(&pg).await?;
                (pg.superuser_config(CONTROL_DB), Some(pg))
            }
            (None, None) => unreachable!("dev secrets are loaded when DATABASE_URL is missing"),
        };

        // Requests queue for the control plane as for their project's pool
        // (a burst of first requests to many projects loads each of them
        // from here at once): the same wait, and never less than 5 s.
        let control_wait = Duration::from_millis(config.pool_acquire_timeout_ms.max(5000));
        let control = crate::db::make_pool(cluster.clone(), 16, control_wait);
        migrate_control_plane(&control).await?;
        harden_cluster(&control).await?;
        let platform_key = load_platform_key(&control, &secrets).await?;
        Ok(Platform {
            inner: Arc::new(Inner {
                config,
                control,
                secrets,
                platform_key,
                cluster,
                embedded,
            }),
        })
    }

    /// Where new project databases are created.
    pub(crate) fn cluster(&self) -> &tokio_postgres::Config {
        &self.inner.cluster
    }

    /// Makes sure the first platform admin and the default project exist.
    pub async fn ensure_defaults(&self) -> Result<BootstrapReport, PlatformError> {
        let config = self.config();
        let generated_admin_password = admins::ensure_first_admin(
            self,
            &config.admin_email,
            crate::config::exposed(&config.admin_password),
        )
        .await
        .map_err(|e| PlatformError::Setup(format!("creating the first admin: {e}")))?;
        let default_project = if config.default_project.is_empty() {
            None
        } else {
            let r = projects::ProjectRef::parse(&config.default_project)
                .map_err(|e| PlatformError::Config(format!("FERROBASE_DEFAULT_PROJECT: {e}")))?;
            let details = match projects::get_details(self, &r).await {
                Ok(d) => d,
                Err(projects::ProjectError::NotFound(_)) => {
                    projects::create(self, &r, None, "bootstrap")
                        .await
                        .map_err(|e| {
                            PlatformError::Setup(format!("creating the default project: {e}"))
                        })?
                }
                Err(e) => return Err(PlatformError::Setup(e.to_string())),
            };
            Some(details)
        };
        Ok(BootstrapReport {
            public_url: config.public_url(),
            admin_email: config.admin_email.clone(),
            generated_admin_password,
            default_project,
            parts: optional_parts(config, self.embedded()),
        })
    }
}

/// Creates the control-plane database in a fresh embedded cluster and closes
/// the maintenance databases to non-superusers.
async fn ensure_control_db(pg: &EmbeddedPostgres) -> Result<(), PlatformError> {
    let client = crate::db::connect(&pg.superuser_config("postgres")).await?;
    let exists = client
        .query_opt(
            "select 1 from pg_database where datname = $1",
            &[&CONTROL_DB],
        )
        .await?
        .is_some();
    if !exists {
        client
            .batch_execute(&format!(
                "create database {}",
                crate::db::quote_ident(CONTROL_DB)
            ))
            .await?;
    }
    Ok(())
}

/// Project owner roles may connect only to their own database: close the
/// cluster's maintenance databases to `PUBLIC`. Needs the privilege to do so
/// (superuser or database owner); without it, warn and go on, because an
/// operator may have locked the cluster down already.
async fn harden_cluster(control: &deadpool_postgres::Pool) -> Result<(), PlatformError> {
    let client = control.get().await?;
    let rows = client
        .query(
            "select datname from pg_database where datname in ('postgres', 'template1') \
             and has_database_privilege('public', oid, 'connect')",
            &[],
        )
        .await?;
    for row in rows {
        let db: &str = row.get(0);
        let sql = format!(
            "revoke connect, temporary on database {} from public",
            crate::db::quote_ident(db)
        );
        if let Err(error) = client.batch_execute(&sql).await {
            tracing::warn!(%error, database = db, "could not revoke CONNECT from PUBLIC; \
                project roles can connect to this maintenance database");
        }
    }
    Ok(())
}

/// Applies `migrations/platform`, serialised across nodes with an advisory lock.
async fn migrate_control_plane(control: &deadpool_postgres::Pool) -> Result<(), PlatformError> {
    let mut conn = control.get().await?;
    let client: &mut tokio_postgres::Client = &mut conn;
    client.execute("select pg_advisory_lock(7201)", &[]).await?;
    let result = platform_migrations::migrations::runner()
        .set_migration_table_name("platform_schema_history")
        .run_async(client)
        .await;
    client
        .execute("select pg_advisory_unlock(7201)", &[])
        .await?;
    let report = result?;
    for m in report.applied_migrations() {
        tracing::info!(migration = %m, "applied control-plane migration");
    }
    Ok(())
}

/// Loads the key that signs platform admin tokens, creating it on first start.
async fn load_platform_key(
    control: &deadpool_postgres::Pool,
    secrets: &SecretBox,
) -> Result<SigningKey, PlatformError> {
    const NAME: &str = "platform_signing_key";
    let client = control.get().await?;
    let candidate = SigningKey::generate()?;
    let sealed = secrets.encrypt_str(
        NAME,
        &format!("{}.{}", candidate.kid(), STANDARD.encode(candidate.pkcs8())),
    );
    client
        .execute(
            "insert into platform_secrets (name, value_enc) values ($1, $2) on conflict do nothing",
            &[&NAME, &sealed],
        )
        .await?;
    let row = client
        .query_one(
            "select value_enc from platform_secrets where name = $1",
            &[&NAME],
        )
        .await?;
    let text = secrets.decrypt_str(NAME, row.get(0))?;
    let (kid, der) = text.split_once('.').ok_or(CryptoError::Decrypt)?;
    let der = STANDARD.decode(der).map_err(|_| CryptoError::Decrypt)?;
    Ok(SigningKey::from_pkcs8(kid.to_owned(), &der)?)
}

/// What a developer needs after start-up; printed by `ferrobase serve`.
#[derive(Debug, Clone)]
pub struct BootstrapReport {
    /// The server's base URL.
    pub public_url: String,
    /// Email of the first admin.
    pub admin_email: String,
    /// The admin password, when it was generated by this start (shown once).
    pub generated_admin_password: Option<String>,
    /// The default project and its keys.
    pub default_project: Option<ProjectDetails>,
    /// The state of each optional part: `(name, what it does now and how to change it)`.
    pub parts: Vec<(&'static str, String)>,
}

/// What the optional parts do with this configuration, and how to turn them on.
pub fn optional_parts(
    config: &Config,
    embedded: Option<&EmbeddedPostgres>,
) -> Vec<(&'static str, String)> {
    let mut parts = Vec::new();
    parts.push((
        "postgres",
        match (&config.database_url, embedded) {
            (Some(_), _) => "DATABASE_URL".to_owned(),
            (None, Some(pg)) => match pg.relocated() {
                Some(dir) => format!(
                    "embedded, in {} (the postgres user cannot reach the data dir)",
                    dir.display()
                ),
                None => format!(
                    "embedded, in {}",
                    config.data_dir.join("postgres").display()
                ),
            },
            (None, None) => "embedded".to_owned(),
        },
    ));
    parts.push((
        "email",
        if config.smtp_url.is_some() {
            "sent through FERROBASE_SMTP_URL".to_owned()
        } else {
            "captured, not sent (read them at {project}/auth/v1/admin/mail); set FERROBASE_SMTP_URL to send"
                .to_owned()
        },
    ));
    parts.push((
        "storage",
        match &config.storage.storage_url {
            Some(url) if url.starts_with("s3://") => format!("S3 ({url})"),
            _ => format!(
                "local disk under {}; set FERROBASE_STORAGE_URL=s3://bucket for S3",
                config.data_dir.join("storage").display()
            ),
        },
    ));
    parts
}

impl BootstrapReport {
    /// The banner printed at start-up: where everything is, a request and a
    /// program that work as printed, and which optional parts are off.
    pub fn banner(&self) -> String {
        let url = &self.public_url;
        let mut out = format!(
            "\n  Ferrobase is ready\n\n  URL        {url}\n  Dashboard  {url}/dashboard\n  API docs   {url}/docs\n\n  Admin      {email}\n",
            email = self.admin_email
        );
        match &self.generated_admin_password {
            Some(p) => out.push_str(&format!(
                "  Password   {p}\n             (generated now and shown once; change it with `ferrobase admin reset-password`)\n"
            )),
            None => out.push_str(
                "  Password   (set earlier; reset it with `ferrobase admin reset-password EMAIL`)\n",
            ),
        }
        if let Some(p) = &self.default_project {
            let purl = &p.project.url;
            out.push_str(&format!(
                "\n  Project    {}\n  URL        {purl}\n  anon key   {}\n  service key {}\n",
                p.project.project_ref, p.anon_key, p.service_role_key
            ));
            out.push_str(&format!(
                "\n  Try it: create a table with admin SQL, then read it through the data API\n\n\
                 curl -X POST '{purl}/admin/v1/sql' -H 'apikey: {service}' \\\n  \
                 -H 'content-type: application/json' \\\n  \
                 -d '{{\"query\":\"create table notes (id serial primary key, body text); insert into notes (body) values ($$hello$$)\"}}'\n\
                 curl '{purl}/rest/v1/notes?select=*' -H 'apikey: {anon}'\n",
                service = p.service_role_key,
                anon = p.anon_key,
            ));
            out.push_str(&format!(
                "\n  From Rust (crate `ferrobase` in sdk/; add tokio and serde_json):\n\n\
                 #[tokio::main]\n\
                 async fn main() -> Result<(), ferrobase::Error> {{\n    \
                 let client = ferrobase::Client::new(\"{purl}\", \"{anon}\")?;\n    \
                 let notes: Vec<serde_json::Value> = client.from(\"notes\").select(\"*\").fetch().await?;\n    \
                 println!(\"{{notes:?}}\");\n    \
                 Ok(())\n\
                 }}\n",
                anon = p.anon_key,
            ));
        }
        if !self.parts.is_empty() {
            out.push_str("\n  Optional parts\n");
            for (name, state) in &self.parts {
                out.push_str(&format!("  {name:<10} {state}\n"));
            }
        }
        out
    }
}
