//! Projects: each one is its own Postgres database owned by its own
//! non-superuser login role, with the API roles `anon`, `authenticated` and
//! `service_role`, an ES256 signing key and the anon and service-role keys.
//!
//! Creation first claims the ref with a `creating` row (so two concurrent
//! creations of the same ref cannot both provision), then provisions, then
//! marks the row `ready`. A failure undoes what was provisioned.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use tokio_postgres::config::Host;
use uuid::Uuid;

use super::Platform;
use super::clusters::{self, ClusterError, Placement};
use crate::crypto::{CryptoError, JwtError, SigningKey, random_hex};
use crate::db::{quote_ident, quote_literal};
use crate::error::ApiError;

mod project_migrations {
    refinery::embed_migrations!("../migrations/project");
}

/// Validity of API keys (anon, service role): ten years, as in Supabase.
const API_KEY_TTL_SECS: u64 = 10 * 365 * 24 * 3600;

/// A validated project ref: 3–40 of `a-z`, `0-9` and `-`, not starting or ending with `-`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProjectRef(String);

impl ProjectRef {
    /// Parses and validates a ref.
    pub fn parse(s: &str) -> Result<Self, ProjectError> {
        let ok_chars = s
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        let reason = if !(3..=40).contains(&s.len()) {
            Some("must be 3 to 40 characters long")
        } else if !ok_chars {
            Some("may contain only lowercase letters, digits and '-'")
        } else if s.starts_with('-') || s.ends_with('-') {
            Some("must not start or end with '-'")
        } else {
            None
        };
        match reason {
            Some(r) => Err(ProjectError::InvalidRef(format!("Project ref {s:?} {r}."))),
            None => Ok(Self(s.to_owned())),
        }
    }

    /// The ref text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ProjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Errors of project management.
#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    /// The ref is not valid.
    #[error("{0}")]
    InvalidRef(String),
    /// A project with that ref exists.
    #[error("A project with ref {0:?} already exists.")]
    Exists(String),
    /// No project with that ref.
    #[error("No project with ref {0:?}.")]
    NotFound(String),
    /// A setting has an invalid value.
    #[error("{0}")]
    InvalidSettings(String),
    /// A database statement failed.
    #[error("database error: {0}")]
    Db(#[from] tokio_postgres::Error),
    /// No connection could be had.
    #[error("database unavailable: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// A stored secret could not be decrypted.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// A key could not be made or read.
    #[error(transparent)]
    Jwt(#[from] JwtError),
    /// The project migrations failed.
    #[error("project migration failed: {0}")]
    Migration(#[from] refinery::Error),
    /// Placement on a cluster failed (bad or unreachable URL, unknown or
    /// full cluster); messages never repeat a connection string.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
}

impl From<ProjectError> for ApiError {
    fn from(e: ProjectError) -> Self {
        match e {
            ProjectError::InvalidRef(m) => ApiError::bad_request("invalid_ref", m)
                .with_hint("Use 3-40 lowercase letters, digits or '-', e.g. \"my-app\"."),
            ProjectError::Exists(_) => ApiError::conflict("project_exists", e.to_string()),
            ProjectError::InvalidSettings(m) => ApiError::bad_request("invalid_settings", m),
            ProjectError::NotFound(_) => ApiError::not_found("project_not_found", e.to_string()),
            ProjectError::Cluster(c) => c.into(),
            ProjectError::Db(db) => db.into(),
            ProjectError::Pool(p) => p.into(),
            other => ApiError::internal(&other),
        }
    }
}

/// A project as listed to admins.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Project {
    /// The project ref (its name in URLs).
    #[serde(rename = "ref")]
    pub project_ref: String,
    /// Display name.
    pub name: String,
    /// `creating`, `ready` or `deleting`.
    pub status: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Base URL of the project's APIs.
    pub url: String,
    /// Schemas served by the data API (the first is the default).
    pub exposed_schemas: Vec<String>,
    /// Origins browsers may call the project's APIs from (`*`, exact origins
    /// or `https://*.example.com`); `null`: the server-wide
    /// `FERROBASE_CORS_ORIGINS` applies.
    pub cors_origins: Option<Vec<String>>,
    /// Bytes of objects the project may store across its buckets (0: no
    /// limit); `null`: the server-wide `FERROBASE_STORAGE_MAX_PROJECT_BYTES` applies.
    pub storage_max_bytes: Option<i64>,
}

/// A project with its keys and database connection string (admins only).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ProjectDetails {
    /// The project.
    #[serde(flatten)]
    pub project: Project,
    /// Key for anonymous access (role `anon`); safe to ship in apps.
    pub anon_key: String,
    /// Key that bypasses Row Level Security (role `service_role`); keep it server-side.
    pub service_role_key: String,
    /// Connection string of the project's owner role.
    pub db_url: String,
}

/// What the data plane needs to serve a project.
#[derive(Debug, Clone)]
pub struct LoadedProject {
    /// Control-plane id.
    pub id: Uuid,
    /// The ref.
    pub project_ref: String,
    /// Connection settings of the owner role.
    pub db_config: tokio_postgres::Config,
    /// Keys whose tokens are accepted (the first one signs).
    pub keys: Vec<SigningKey>,
    /// Schemas served by the data API (the first is the default).
    pub exposed_schemas: Vec<String>,
    /// Optional legacy HS256 secret: tokens signed with it are accepted too.
    pub legacy_jwt_secret: Option<Vec<u8>>,
    /// No other project has the same legacy secret: only then is a legacy
    /// token without a `ref` claim accepted (it cannot say which project it
    /// was made for, so the secret must).
    pub legacy_jwt_exclusive: bool,
    /// The project's allowed CORS origins (normalised), or `None` for the
    /// server-wide list.
    pub cors_origins: Option<Vec<String>>,
    /// The project's storage quota in bytes (0: none), or `None` for the
    /// server-wide default.
    pub storage_max_bytes: Option<i64>,
}

/// Context of legacy secret fingerprints.
const LEGACY_FINGERPRINT: &str = "legacy_jwt_fingerprint";

/// Name of the optional legacy HS256 secret in `project_secrets`.
const LEGACY_SECRET: &str = "legacy_jwt_secret";
/// Shortest accepted legacy secret (HS256 wants at least 256 bits).
const LEGACY_SECRET_MIN_LEN: usize = 32;

pub(crate) fn conn_context(id: Uuid) -> String {
    format!("project:{id}:db_conn")
}

pub(crate) fn cluster_context(id: Uuid) -> String {
    format!("project:{id}:cluster_conn")
}

/// Parses and checks the admin connection string of another cluster.
pub(crate) async fn connect_cluster(
    url: &str,
) -> Result<(tokio_postgres::Config, tokio_postgres::Client), ProjectError> {
    Ok(clusters::connect_admin(url).await?)
}

/// The admin connection settings of the cluster project `id` lives on, when
/// it is not the control plane's.
pub async fn project_cluster(
    platform: &Platform,
    id: Uuid,
) -> Result<Option<tokio_postgres::Config>, ProjectError> {
    let client = platform.control().get().await?;
    let enc: Option<String> = client
        .query_opt(
            "select cluster_conn_enc from projects where id = $1",
            &[&id],
        )
        .await?
        .and_then(|r| r.get(0));
    enc.map(|enc| {
        let url = platform.secrets().decrypt_str(&cluster_context(id), &enc)?;
        url.parse::<tokio_postgres::Config>()
            .map_err(|_| ProjectError::Crypto(CryptoError::Decrypt))
    })
    .transpose()
}

pub(crate) fn secret_context(id: Uuid, name: &str) -> String {
    format!("project:{id}:{name}")
}

/// A libpq-style connection URL for `user` on the cluster described by `cluster`.
pub(crate) fn connection_url(
    cluster: &tokio_postgres::Config,
    user: &str,
    password: &str,
    db: &str,
) -> String {
    // Percent-encode everything but RFC 3986 unreserved characters.
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    char::from(b).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    let host = match cluster.get_hosts().first() {
        Some(Host::Tcp(h)) if h.contains(':') => format!("[{h}]"),
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(path)) => enc(&path.to_string_lossy()),
        None => "localhost".to_owned(),
    };
    let port = cluster.get_ports().first().copied().unwrap_or(5432);
    format!(
        "postgresql://{}:{}@{host}:{port}/{}",
        enc(user),
        enc(password),
        enc(db)
    )
}

/// Creates the roles the API switches to, once per cluster. Tolerates a
/// concurrent creation by another node or test.
pub(crate) const API_ROLES_SQL: &str = "
do $$ begin create role anon nologin noinherit;
exception when duplicate_object or unique_violation then null; end $$;
do $$ begin create role authenticated nologin noinherit;
exception when duplicate_object or unique_violation then null; end $$;
do $$ begin create role service_role nologin noinherit bypassrls;
exception when duplicate_object or unique_violation then null; end $$;";

/// Creates project `r`: database, owner role, migrations, keys.
pub async fn create(
    platform: &Platform,
    r: &ProjectRef,
    name: Option<&str>,
    actor: &str,
) -> Result<ProjectDetails, ProjectError> {
    create_on(platform, r, name, actor, Placement::Auto).await
}

/// Like [`create`], placing the database as `placement` says: on the
/// cluster reached with a superuser connection string (`--database-url`), on
/// a registered cluster by name, or automatically (see [`clusters`]). The
/// cluster's connection string is stored encrypted and never shown.
pub async fn create_on(
    platform: &Platform,
    r: &ProjectRef,
    name: Option<&str>,
    actor: &str,
    placement: Placement<'_>,
) -> Result<ProjectDetails, ProjectError> {
    let chosen = clusters::choose(platform, placement).await?;
    let url = match placement {
        Placement::Url(url) => Some(url.to_owned()),
        _ => chosen.as_ref().map(|c| c.url.clone()),
    };
    let remote = match url {
        Some(url) => {
            let connected = connect_cluster(&url).await?;
            Some((url, connected))
        }
        None => None,
    };
    let mut client = platform.control().get().await?;
    let id = Uuid::new_v4();
    let db_name = format!("fb_{}_{}", r.as_str().replace('-', "_"), random_hex(4));
    let password = random_hex(24);
    let cluster_cfg = remote
        .as_ref()
        .map_or_else(|| platform.cluster().clone(), |(_, (cfg, _))| cfg.clone());
    let db_url = connection_url(&cluster_cfg, &db_name, &password, &db_name);
    let db_conn_enc = platform.secrets().encrypt_str(&conn_context(id), &db_url);
    let cluster_conn_enc = remote
        .as_ref()
        .map(|(url, _)| platform.secrets().encrypt_str(&cluster_context(id), url));
    let name = name
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .unwrap_or(r.as_str());
    let cluster_id = chosen.as_ref().map(|c| c.id);
    let tx = client.transaction().await?;
    if let Some(chosen) = &chosen {
        clusters::claim_slot(&tx, chosen).await?;
    }
    let claimed = tx
        .execute(
            "insert into projects (id, ref, name, db_name, db_role, db_conn_enc, cluster_conn_enc, cluster_id) \
             values ($1, $2, $3, $4, $4, $5, $6, $7) on conflict (ref) do nothing",
            &[
                &id,
                &r.as_str(),
                &name,
                &db_name,
                &db_conn_enc,
                &cluster_conn_enc,
                &cluster_id,
            ],
        )
        .await?;
    if claimed == 0 {
        return Err(ProjectError::Exists(r.to_string()));
    }
    tx.commit().await?;
    let cluster_name = chosen.as_ref().map(|c| c.name.as_str());
    tracing::info!(project = %r, db = %db_name, remote = remote.is_some(), cluster = cluster_name, "creating project");
    let cluster_client: &tokio_postgres::Client = match &remote {
        Some((_, (_, c))) => c,
        None => &client,
    };
    let provisioned = provision(
        platform,
        cluster_client,
        &cluster_cfg,
        id,
        r,
        &db_name,
        &password,
        &db_url,
    )
    .await;
    match provisioned {
        Ok(()) => {
            platform
                .audit(
                    actor,
                    "project.create",
                    r.as_str(),
                    json!({ "db": db_name, "cluster": cluster_name }),
                )
                .await;
            get_details(platform, r).await
        }
        Err(e) => {
            tracing::error!(project = %r, error = %e, "project creation failed; cleaning up");
            drop_database_and_role(cluster_client, &db_name).await;
            let _ = client
                .execute("delete from projects where id = $1", &[&id])
                .await;
            Err(e)
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn provision(
    platform: &Platform,
    client: &tokio_postgres::Client,
    cluster: &tokio_postgres::Config,
    id: Uuid,
    r: &ProjectRef,
    db_name: &str,
    password: &str,
    db_url: &str,
) -> Result<(), ProjectError> {
    let role = quote_ident(db_name);
    client.batch_execute(API_ROLES_SQL).await?;
    client
        .batch_execute(&format!(
            "create role {role} login password {} nosuperuser nocreatedb nocreaterole inherit",
            quote_literal(password)
        ))
        .await?;
    client
        .batch_execute(&format!(
            "grant anon, authenticated, service_role to {role}"
        ))
        .await?;
    // CREATE DATABASE cannot run in a transaction: one statement per call.
    client
        .batch_execute(&format!("create database {role} owner {role}"))
        .await?;
    client
        .batch_execute(&format!(
            "revoke connect, temporary on database {role} from public"
        ))
        .await?;

    // Migrations run as the owner, so the owner owns what they create.
    let db_config: tokio_postgres::Config = db_url
        .parse()
        .map_err(|_| ProjectError::Crypto(CryptoError::Decrypt))?;
    migrate_project(&db_config).await?;
    install_ddl_trigger_on(cluster, db_name).await?;

    let mut conn = platform.control().get().await?;
    let tx = conn.transaction().await?;
    mint_keys(platform, &tx, id, r).await?;
    tx.execute("update projects set status = 'ready' where id = $1", &[&id])
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Makes project `id` a new ES256 signing key and the anon and service-role
/// API keys signed with it, stores them through `tx` (replacing stored API
/// keys) and returns `(anon, service_role)`. Project creation, key rotation
/// and restore under a new ref all mint keys here.
pub(crate) async fn mint_keys(
    platform: &Platform,
    tx: &impl deadpool_postgres::GenericClient,
    id: Uuid,
    r: &ProjectRef,
) -> Result<(String, String), ProjectError> {
    let key = SigningKey::generate()?;
    let anon = api_key(&key, r, "anon")?;
    let service = api_key(&key, r, "service_role")?;
    let secrets = platform.secrets();
    let key_enc = secrets.encrypt(&secret_context(id, key.kid()), key.pkcs8());
    let jwk = serde_json::to_value(key.public_jwk()).unwrap_or_default();
    tx.execute(
        "insert into project_signing_keys (kid, project_id, private_key_enc, public_jwk) values ($1, $2, $3, $4)",
        &[&key.kid(), &id, &key_enc, &jwk],
    )
    .await?;
    for (name, value) in [("anon_key", &anon), ("service_role_key", &service)] {
        tx.execute(
            "insert into project_secrets (project_id, name, value_enc) values ($1, $2, $3) \
             on conflict (project_id, name) do update set value_enc = excluded.value_enc, \
             created_at = now()",
            &[
                &id,
                &name,
                &secrets.encrypt_str(&secret_context(id, name), value),
            ],
        )
        .await?;
    }
    Ok((anon, service))
}

/// A project's new keys after [`rotate_keys`]: shown once in the answer
/// (the API keys can be read again with the project; the legacy secret cannot).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RotatedKeys {
    /// The new anon key.
    pub anon_key: String,
    /// The new service-role key.
    pub service_role_key: String,
    /// The new legacy HS256 secret, when the project had one (write-only: never shown again).
    pub legacy_jwt_secret: Option<String>,
}

/// Rotates project `r`'s keys: a new signing key with new anon and
/// service-role keys, and a new legacy HS256 secret if it has one. The old
/// signing keys are deleted, so every token they signed (the old API keys,
/// users' access tokens) stops being accepted; users keep their sessions
/// through their refresh tokens. Returns the project id and the new keys.
pub async fn rotate_keys(
    platform: &Platform,
    r: &ProjectRef,
    actor: &str,
) -> Result<(Uuid, RotatedKeys), ProjectError> {
    let mut conn = platform.control().get().await?;
    let tx = conn.transaction().await?;
    let id: Uuid = tx
        .query_opt(
            "select id from projects where ref = $1 and status = 'ready' for update",
            &[&r.as_str()],
        )
        .await?
        .ok_or_else(|| ProjectError::NotFound(r.to_string()))?
        .get(0);
    tx.execute(
        "delete from project_signing_keys where project_id = $1",
        &[&id],
    )
    .await?;
    let (anon_key, service_role_key) = mint_keys(platform, &tx, id, r).await?;
    let has_legacy = tx
        .query_opt(
            "select 1 from project_secrets where project_id = $1 and name = $2",
            &[&id, &LEGACY_SECRET],
        )
        .await?
        .is_some();
    let legacy_jwt_secret = if has_legacy {
        // 256 random bits, as 64 hex characters.
        let secret = random_hex(32);
        let secrets = platform.secrets();
        let fp = secrets.fingerprint(LEGACY_FINGERPRINT, secret.as_bytes());
        tx.execute(
            "update project_secrets set value_enc = $3, created_at = now() \
             where project_id = $1 and name = $2",
            &[
                &id,
                &LEGACY_SECRET,
                &secrets.encrypt_str(&secret_context(id, LEGACY_SECRET), &secret),
            ],
        )
        .await?;
        tx.execute(
            "update projects set legacy_jwt_fingerprint = $2 where id = $1",
            &[&id, &fp],
        )
        .await?;
        Some(secret)
    } else {
        None
    };
    notify_changed(&tx, r).await?;
    tx.commit().await?;
    platform
        .audit(
            actor,
            "project.rotate_keys",
            r.as_str(),
            json!({ "legacy_jwt_secret": has_legacy }),
        )
        .await;
    Ok((
        id,
        RotatedKeys {
            anon_key,
            service_role_key,
            legacy_jwt_secret,
        },
    ))
}

/// A project API key for `role` (`anon` or `service_role`): a long-lived JWT
/// `{iss, ref, role, iat, exp}` signed with the project's `key` (see
/// [`mint_keys`]).
fn api_key(
    key: &SigningKey,
    r: &ProjectRef,
    role: &str,
) -> Result<String, crate::crypto::JwtError> {
    let now = crate::crypto::unix_now();
    key.sign(&json!({
        "iss": "ferrobase",
        "ref": r.as_str(),
        "role": role,
        "iat": now,
        "exp": now + API_KEY_TTL_SECS,
    }))
}

/// Applies `migrations/project` to one project database as its owner.
pub async fn migrate_project(db_config: &tokio_postgres::Config) -> Result<usize, ProjectError> {
    let mut client = crate::db::connect(db_config).await?;
    client
        .batch_execute(
            "create schema if not exists _ferrobase; \
             revoke all on schema _ferrobase from public; \
             select pg_advisory_lock(7202);",
        )
        .await?;
    let result = project_migrations::migrations::runner()
        .set_migration_table_name("_ferrobase.schema_history")
        .run_async(&mut client)
        .await;
    client
        .batch_execute("select pg_advisory_unlock(7202)")
        .await?;
    Ok(result?.applied_migrations().len())
}

/// Installs the event trigger that bumps `_ferrobase.schema_version` on every
/// DDL statement. Event triggers need a superuser: when the control-plane role
/// is not one, this is skipped with a warning and the data API falls back to
/// reloading its schema cache when a request misses.
pub async fn install_ddl_trigger(platform: &Platform, db_name: &str) -> Result<(), ProjectError> {
    install_ddl_trigger_on(platform.cluster(), db_name).await
}

/// [`install_ddl_trigger`] on the cluster reached with `cluster`.
pub async fn install_ddl_trigger_on(
    cluster: &tokio_postgres::Config,
    db_name: &str,
) -> Result<(), ProjectError> {
    let mut cfg = cluster.clone();
    cfg.dbname(db_name);
    let client = crate::db::connect(&cfg).await?;
    let result = client
        .batch_execute(
            "do $$ begin
               if not exists (select 1 from pg_event_trigger where evtname = 'ferrobase_schema_version') then
                 create event trigger ferrobase_schema_version on ddl_command_end
                   execute function _ferrobase.bump_schema_version();
               end if;
             end $$",
        )
        .await;
    match result {
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) => {
            tracing::warn!(
                db = db_name,
                "not a superuser: schema changes are picked up on cache misses only"
            );
            Ok(())
        }
        other => Ok(other?),
    }
}

async fn drop_database_and_role(client: &tokio_postgres::Client, db_name: &str) {
    let ident = quote_ident(db_name);
    for sql in [
        format!("drop database if exists {ident} with (force)"),
        format!("drop role if exists {ident}"),
    ] {
        if let Err(error) = client.batch_execute(&sql).await {
            tracing::error!(%error, db = db_name, "cleanup statement failed");
        }
    }
}

fn project_from_row(platform: &Platform, row: &tokio_postgres::Row) -> Project {
    let project_ref: String = row.get("ref");
    Project {
        url: platform.config().project_url(&project_ref),
        project_ref,
        name: row.get("name"),
        status: row.get("status"),
        created_at: row.get("created_at"),
        exposed_schemas: row.get("exposed_schemas"),
        cors_origins: row.get("cors_origins"),
        storage_max_bytes: row.get("storage_max_bytes"),
    }
}

/// All projects, oldest first.
pub async fn list(platform: &Platform) -> Result<Vec<Project>, ProjectError> {
    let client = platform.control().get().await?;
    let rows = client
        .query(
            "select ref, name, status, created_at, exposed_schemas, cors_origins, storage_max_bytes \
             from projects \
             order by created_at, ref",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| project_from_row(platform, r)).collect())
}

/// One project with its keys and connection string.
pub async fn get_details(
    platform: &Platform,
    r: &ProjectRef,
) -> Result<ProjectDetails, ProjectError> {
    let client = platform.control().get().await?;
    let row = client
        .query_opt(
            "select id, ref, name, status, created_at, exposed_schemas, cors_origins, storage_max_bytes, \
               db_conn_enc \
             from projects \
             where ref = $1 and status = 'ready'",
            &[&r.as_str()],
        )
        .await?
        .ok_or_else(|| ProjectError::NotFound(r.to_string()))?;
    let id: Uuid = row.get("id");
    let secrets = platform.secrets();
    let db_url = secrets.decrypt_str(&conn_context(id), row.get("db_conn_enc"))?;
    let mut anon_key = String::new();
    let mut service_role_key = String::new();
    for s in client
        .query(
            "select name, value_enc from project_secrets where project_id = $1",
            &[&id],
        )
        .await?
    {
        let name: &str = s.get(0);
        let value = secrets.decrypt_str(&secret_context(id, name), s.get(1))?;
        match name {
            "anon_key" => anon_key = value,
            "service_role_key" => service_role_key = value,
            _ => {}
        }
    }
    Ok(ProjectDetails {
        project: project_from_row(platform, &row),
        anon_key,
        service_role_key,
        db_url,
    })
}

/// What the data plane needs to serve project `r`, or `None` when there is no such ready project.
pub async fn load(platform: &Platform, r: &str) -> Result<Option<LoadedProject>, ProjectError> {
    let client = platform.control().get().await?;
    let Some(row) = client
        .query_opt(
            "select id, ref, db_conn_enc, exposed_schemas, cors_origins, storage_max_bytes from projects \
             where ref = $1 and status = 'ready'",
            &[&r],
        )
        .await?
    else {
        return Ok(None);
    };
    let id: Uuid = row.get("id");
    let secrets = platform.secrets();
    let db_url = secrets.decrypt_str(&conn_context(id), row.get("db_conn_enc"))?;
    let mut db_config: tokio_postgres::Config = db_url
        .parse()
        .map_err(|_| ProjectError::Crypto(CryptoError::Decrypt))?;
    db_config.application_name("ferrobase-api");
    let mut keys = Vec::new();
    for k in client
        .query(
            "select kid, private_key_enc from project_signing_keys \
             where project_id = $1 and active order by created_at desc",
            &[&id],
        )
        .await?
    {
        let kid: String = k.get(0);
        let der = secrets.decrypt(&secret_context(id, &kid), k.get(1))?;
        keys.push(SigningKey::from_pkcs8(kid, &der)?);
    }
    let legacy_jwt_secret = match client
        .query_opt(
            "select value_enc from project_secrets where project_id = $1 and name = $2",
            &[&id, &LEGACY_SECRET],
        )
        .await?
    {
        Some(r) => Some(secrets.decrypt(&secret_context(id, LEGACY_SECRET), r.get(0))?),
        None => None,
    };
    let legacy_jwt_exclusive = match &legacy_jwt_secret {
        Some(secret) => {
            // Fingerprints of secrets set before fingerprints existed are
            // filled in first, so a shared secret is seen from either side.
            let missing = client
                .query(
                    "select p.id, s.value_enc from projects p join project_secrets s \
                     on s.project_id = p.id and s.name = $1 where p.legacy_jwt_fingerprint is null",
                    &[&LEGACY_SECRET],
                )
                .await?;
            for m in missing {
                let pid: Uuid = m.get(0);
                if let Ok(other) = secrets.decrypt(&secret_context(pid, LEGACY_SECRET), m.get(1)) {
                    let fp = secrets.fingerprint(LEGACY_FINGERPRINT, &other);
                    client
                        .execute(
                            "update projects set legacy_jwt_fingerprint = $2 where id = $1",
                            &[&pid, &fp],
                        )
                        .await?;
                }
            }
            let fp = secrets.fingerprint(LEGACY_FINGERPRINT, secret);
            client
                .execute(
                    "update projects set legacy_jwt_fingerprint = $2 where id = $1 \
                     and legacy_jwt_fingerprint is distinct from $2",
                    &[&id, &fp],
                )
                .await?;
            let shared: bool = client
                .query_one(
                    "select exists (select 1 from projects where legacy_jwt_fingerprint = $1 and id <> $2)",
                    &[&fp, &id],
                )
                .await?
                .get(0);
            if shared {
                tracing::warn!(project = %row.get::<_, String>("ref"),
                    "legacy JWT secret shared with another project: tokens without ref are refused");
            }
            !shared
        }
        None => false,
    };
    Ok(Some(LoadedProject {
        id,
        project_ref: row.get("ref"),
        db_config,
        keys,
        exposed_schemas: row.get("exposed_schemas"),
        legacy_jwt_secret,
        legacy_jwt_exclusive,
        cors_origins: row.get("cors_origins"),
        storage_max_bytes: row.get("storage_max_bytes"),
    }))
}

/// Schemas that can never be exposed through the data API: the platform's
/// own (exposed, their tables would be written around the checks of the
/// features that own them, e.g. a realtime message with a forged sender,
/// past the channel rules and rate limits) and the system's.
const UNEXPOSABLE: &[&str] = &[
    "_ferrobase",
    "auth",
    "storage",
    "realtime",
    "webhooks",
    "ai",
    "information_schema",
    "pg_catalog",
    "pg_toast",
];

/// Validates a list of schemas to expose: 1-16 distinct identifiers, none of
/// them platform-owned or system schemas.
pub fn parse_exposed_schemas(schemas: &[String]) -> Result<Vec<String>, ProjectError> {
    let invalid = |m: String| Err(ProjectError::InvalidSettings(m));
    if schemas.is_empty() || schemas.len() > 16 {
        return invalid("exposed_schemas must list 1 to 16 schemas.".into());
    }
    let mut seen = std::collections::HashSet::new();
    for s in schemas {
        let ident = !s.is_empty()
            && s.len() <= 63
            && s.bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$');
        if !ident {
            return invalid(format!("{s:?} is not a valid schema name."));
        }
        if UNEXPOSABLE.contains(&s.as_str()) || s.starts_with("pg_") {
            return invalid(format!(
                "Schema {s:?} belongs to the platform and cannot be exposed."
            ));
        }
        if !seen.insert(s.as_str()) {
            return invalid(format!("Schema {s:?} is listed twice."));
        }
    }
    Ok(schemas.to_vec())
}

/// Changes to a project's settings; `None` leaves a setting as it is.
#[derive(Debug, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectChanges {
    /// New display name.
    pub name: Option<String>,
    /// Schemas served by the data API, the first being the default (e.g. `["public", "api"]`).
    pub exposed_schemas: Option<Vec<String>>,
    /// A legacy HS256 secret (at least 32 characters) whose tokens the project also
    /// accepts, e.g. when migrating from another platform; `""` removes it. Write-only.
    pub legacy_jwt_secret: Option<String>,
    /// Origins browsers may call the project's APIs from: `["*"]`, exact origins
    /// (`https://app.example.com`) or one-label wildcards (`https://*.example.com`);
    /// `[]` allows none; `null` goes back to the server-wide `FERROBASE_CORS_ORIGINS`.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Vec<String>>, nullable)]
    pub cors_origins: Option<Option<Vec<String>>>,
    /// Bytes of objects the project may store across its buckets (0: no limit;
    /// lowering it below what is stored refuses new uploads, deletes still
    /// work); `null` goes back to the server-wide `FERROBASE_STORAGE_MAX_PROJECT_BYTES`.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>, nullable, minimum = 0)]
    pub storage_max_bytes: Option<Option<i64>>,
}

/// Tells a field given as `null` (`Some(None)`) from a missing one (`None`).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    <Option<T> as serde::Deserialize>::deserialize(d).map(Some)
}

/// The control-plane channel on which a change to a project is announced
/// (payload: its ref), so every node drops its cached copy at once
/// (`tenant::watch_changes`).
pub const CHANGES_CHANNEL: &str = "ferrobase_projects";

/// Announces that project `r` changed (when `tx` commits, for a transaction).
async fn notify_changed(
    tx: &impl deadpool_postgres::GenericClient,
    r: &ProjectRef,
) -> Result<(), ProjectError> {
    tx.execute("select pg_notify($1, $2)", &[&CHANGES_CHANNEL, &r.as_str()])
        .await?;
    Ok(())
}

/// Changes a project's name, exposed schemas, CORS origins, storage quota or
/// legacy JWT secret.
pub async fn update(
    platform: &Platform,
    r: &ProjectRef,
    changes: &ProjectChanges,
    actor: &str,
) -> Result<ProjectDetails, ProjectError> {
    let schemas = changes
        .exposed_schemas
        .as_deref()
        .map(parse_exposed_schemas)
        .transpose()?;
    if let Some(secret) = changes.legacy_jwt_secret.as_deref()
        && !secret.is_empty()
        && secret.len() < LEGACY_SECRET_MIN_LEN
    {
        return Err(ProjectError::InvalidSettings(format!(
            "legacy_jwt_secret must be at least {LEGACY_SECRET_MIN_LEN} characters (or \"\" to remove it)."
        )));
    }
    let name = changes
        .name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty());
    let cors = match &changes.cors_origins {
        Some(Some(list)) => Some(Some(
            super::cors::validate(list).map_err(ProjectError::InvalidSettings)?,
        )),
        other => other.clone(),
    };
    if changes.storage_max_bytes.flatten().is_some_and(|n| n < 0) {
        return Err(ProjectError::InvalidSettings(
            "storage_max_bytes must be 0 (no limit) or a positive number of bytes, or null for the server default.".into(),
        ));
    }
    let mut conn = platform.control().get().await?;
    let tx = conn.transaction().await?;
    let row = tx
        .query_opt(
            "update projects set name = coalesce($2, name), \
             exposed_schemas = coalesce($3, exposed_schemas), \
             cors_origins = case when $4 then $5 else cors_origins end, \
             storage_max_bytes = case when $6 then $7 else storage_max_bytes end \
             where ref = $1 and status = 'ready' returning id",
            &[
                &r.as_str(),
                &name,
                &schemas,
                &cors.is_some(),
                &cors.clone().flatten(),
                &changes.storage_max_bytes.is_some(),
                &changes.storage_max_bytes.flatten(),
            ],
        )
        .await?
        .ok_or_else(|| ProjectError::NotFound(r.to_string()))?;
    let id: Uuid = row.get(0);
    match changes.legacy_jwt_secret.as_deref() {
        None => {}
        Some("") => {
            tx.execute(
                "delete from project_secrets where project_id = $1 and name = $2",
                &[&id, &LEGACY_SECRET],
            )
            .await?;
            tx.execute(
                "update projects set legacy_jwt_fingerprint = null where id = $1",
                &[&id],
            )
            .await?;
        }
        Some(secret) => {
            // One legacy secret, one project: a token without `ref` must
            // not be good for two projects.
            let fp = platform
                .secrets()
                .fingerprint(LEGACY_FINGERPRINT, secret.as_bytes());
            let taken = tx
                .query_opt(
                    "select 1 from projects where legacy_jwt_fingerprint = $1 and id <> $2",
                    &[&fp, &id],
                )
                .await?
                .is_some();
            if taken {
                return Err(ProjectError::InvalidSettings(
                    "This legacy_jwt_secret is already used by another project; each project needs its own.".into(),
                ));
            }
            tx.execute(
                "update projects set legacy_jwt_fingerprint = $2 where id = $1",
                &[&id, &fp],
            )
            .await?;
            let sealed = platform
                .secrets()
                .encrypt_str(&secret_context(id, LEGACY_SECRET), secret);
            tx.execute(
                "insert into project_secrets (project_id, name, value_enc) values ($1, $2, $3) \
                 on conflict (project_id, name) do update set value_enc = excluded.value_enc",
                &[&id, &LEGACY_SECRET, &sealed],
            )
            .await?;
        }
    }
    notify_changed(&tx, r).await?;
    tx.commit().await?;
    // Never the secret itself: only whether it was set or removed.
    let legacy = changes
        .legacy_jwt_secret
        .as_deref()
        .map(|s| if s.is_empty() { "removed" } else { "set" });
    platform
        .audit(
            actor,
            "project.update",
            r.as_str(),
            json!({ "name": name, "exposed_schemas": schemas, "legacy_jwt_secret": legacy,
                    "cors_origins": cors, "storage_max_bytes": changes.storage_max_bytes }),
        )
        .await;
    get_details(platform, r).await
}

/// Deletes project `r`: drops its database and role, then its control-plane rows.
/// Returns the project id so callers can close its pool.
pub async fn delete(
    platform: &Platform,
    r: &ProjectRef,
    actor: &str,
) -> Result<Uuid, ProjectError> {
    let client = platform.control().get().await?;
    let row = client
        .query_opt(
            "update projects set status = 'deleting' where ref = $1 and status <> 'creating' returning id, db_name",
            &[&r.as_str()],
        )
        .await?
        .ok_or_else(|| ProjectError::NotFound(r.to_string()))?;
    let id: Uuid = row.get(0);
    let db_name: String = row.get(1);
    tracing::info!(project = %r, db = %db_name, "deleting project");
    let ident = quote_ident(&db_name);
    let remote = match project_cluster(platform, id).await? {
        Some(mut cfg) => {
            if cfg.get_dbname().is_none() {
                cfg.dbname("postgres");
            }
            Some(crate::db::connect(&cfg).await?)
        }
        None => None,
    };
    let cluster: &tokio_postgres::Client = remote.as_ref().unwrap_or(&client);
    cluster
        .batch_execute(&format!("drop database if exists {ident} with (force)"))
        .await?;
    cluster
        .batch_execute(&format!("drop role if exists {ident}"))
        .await?;
    client
        .execute("delete from projects where id = $1", &[&id])
        .await?;
    notify_changed(&client, r).await?;
    platform
        .audit(
            actor,
            "project.delete",
            r.as_str(),
            json!({ "db": db_name }),
        )
        .await;
    Ok(id)
}

/// Applies pending project migrations to every ready project (`ferrobase migrate`).
pub async fn migrate_all(platform: &Platform) -> Result<Vec<(String, usize)>, ProjectError> {
    let refs: Vec<String> = {
        let client = platform.control().get().await?;
        client
            .query(
                "select ref from projects where status = 'ready' order by ref",
                &[],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    let mut applied = Vec::new();
    let total = refs.len();
    for (i, r) in refs.into_iter().enumerate() {
        if let Some(p) = load(platform, &r).await? {
            let n = migrate_project(&p.db_config).await?;
            if let Some(db) = p.db_config.get_dbname() {
                match project_cluster(platform, p.id).await? {
                    Some(cluster) => install_ddl_trigger_on(&cluster, db).await?,
                    None => install_ddl_trigger(platform, db).await?,
                }
            }
            if n > 0 || (i + 1) % 100 == 0 || i + 1 == total {
                tracing::info!(project = %r, applied = n, progress = format!("{}/{total}", i + 1), "project migrations");
            }
            applied.push((r, n));
        }
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs() {
        for ok in ["abc", "my-app", "a1b2", &"x".repeat(40)] {
            assert!(ProjectRef::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ab",
            "-abc",
            "abc-",
            "ABC",
            "a_b",
            "a b",
            "",
            "ü-ab",
            &"x".repeat(41),
            "a/../b",
        ] {
            assert!(ProjectRef::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn urls() {
        let mut unix = tokio_postgres::Config::new();
        unix.host_path("/tmp/x y/run").port(5432);
        let url = connection_url(&unix, "fb_a", "pw", "fb_a");
        assert_eq!(url, "postgresql://fb_a:pw@%2Ftmp%2Fx%20y%2Frun:5432/fb_a");
        let parsed: tokio_postgres::Config = url.parse().unwrap();
        assert_eq!(parsed.get_hosts(), &[Host::Unix("/tmp/x y/run".into())]);
        let mut tcp = tokio_postgres::Config::new();
        tcp.host("db.internal").port(6543);
        assert_eq!(
            connection_url(&tcp, "u", "p", "d"),
            "postgresql://u:p@db.internal:6543/d"
        );
    }
}
