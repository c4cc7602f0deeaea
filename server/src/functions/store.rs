//! Control-plane rows of edge functions: `functions` (settings and the
//! active version), `function_versions` (immutable code, one per deploy) and
//! `function_secrets` (AES-256-GCM, bound to project and name).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::bundle::{Bundle, SecretName, Slug, sha256_hex};
use super::runtime::Deployment;
use super::{FunctionsError, Settings};
use crate::platform::{Platform, ProjectRef};

/// A function as listed to admins.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FunctionInfo {
    /// Its name in URLs.
    pub slug: String,
    /// The version invocations run.
    pub active_version: Option<i32>,
    /// Settings.
    #[serde(flatten)]
    pub settings: Settings,
    /// Number of versions.
    pub version_count: i64,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change of settings or active version.
    pub updated_at: DateTime<Utc>,
    /// Every version, newest first (only on the single-function answer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub versions: Option<Vec<VersionInfo>>,
}

/// One deployed version.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct VersionInfo {
    /// 1, 2, 3, … in deploy order.
    pub version: i32,
    /// SHA-256 of the bundle (see [`Bundle::checksum`]).
    pub checksum: String,
    /// Size of the files, in bytes.
    pub size_bytes: i32,
    /// The file that is run.
    pub entrypoint: String,
    /// The import map, if any.
    pub import_map: Option<String>,
    /// Who deployed it.
    pub created_by: String,
    /// When.
    pub created_at: DateTime<Utc>,
    /// Whether invocations run it now.
    pub active: bool,
    /// The files (only on the single-version answer).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub files: Option<BTreeMap<String, String>>,
}

/// Settings to change; absent fields keep their value (or the default on create).
#[derive(Debug, Default, Clone, Deserialize, utoipa::ToSchema)]
pub struct SettingsPatch {
    /// Require a valid key or token to invoke (default true).
    pub verify_jwt: Option<bool>,
    /// Wall-clock limit per invocation, 100-900000 ms (default 60000).
    pub timeout_ms: Option<i32>,
    /// Heap limit, 16-4096 MiB (default 256).
    pub memory_mb: Option<i32>,
    /// Invocations at once, 1-10000 (default 64).
    pub concurrency: Option<i32>,
}

impl SettingsPatch {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<(), FunctionsError> {
        let check = |v: Option<i32>, name: &str, lo: i32, hi: i32| match v {
            Some(v) if !(lo..=hi).contains(&v) => Err(FunctionsError::Invalid(format!(
                "{name} must be between {lo} and {hi} (got {v})."
            ))),
            _ => Ok(()),
        };
        check(self.timeout_ms, "timeout_ms", 100, 900_000)?;
        check(self.memory_mb, "memory_mb", 16, 4096)?;
        check(self.concurrency, "concurrency", 1, 10_000)
    }
}

const FUNCTION_COLUMNS: &str = "f.slug, f.active_version, f.verify_jwt, f.timeout_ms, f.memory_mb, \
     f.concurrency, f.created_at, f.updated_at, \
     (select count(*) from function_versions v where v.function_id = f.id) as version_count";

fn function_from_row(row: &tokio_postgres::Row) -> FunctionInfo {
    FunctionInfo {
        slug: row.get("slug"),
        active_version: row.get("active_version"),
        settings: Settings {
            verify_jwt: row.get("verify_jwt"),
            timeout_ms: row.get("timeout_ms"),
            memory_mb: row.get("memory_mb"),
            concurrency: row.get("concurrency"),
        },
        version_count: row.get("version_count"),
        created_at: row.get("created_at"),
        updated_at: row.get("updated_at"),
        versions: None,
    }
}

fn not_found(slug: &Slug) -> FunctionsError {
    FunctionsError::NotFound(format!("No function {:?} in this project.", slug.as_str()))
}

/// Every function of a project, by slug.
pub async fn list(
    platform: &Platform,
    project_id: Uuid,
) -> Result<Vec<FunctionInfo>, FunctionsError> {
    let client = platform.control().get().await?;
    let rows = client
        .query(
            &format!(
                "select {FUNCTION_COLUMNS} from functions f where f.project_id = $1 order by f.slug"
            ),
            &[&project_id],
        )
        .await?;
    Ok(rows.iter().map(function_from_row).collect())
}

/// One function with its versions.
pub async fn get(
    platform: &Platform,
    project_id: Uuid,
    slug: &Slug,
) -> Result<FunctionInfo, FunctionsError> {
    let client = platform.control().get().await?;
    let row = client
        .query_opt(
            &format!("select f.id, {FUNCTION_COLUMNS} from functions f where f.project_id = $1 and f.slug = $2"),
            &[&project_id, &slug.as_str()],
        )
        .await?
        .ok_or_else(|| not_found(slug))?;
    let mut info = function_from_row(&row);
    let id: Uuid = row.get("id");
    let versions = client
        .query(
            "select version, checksum, size_bytes, entrypoint, import_map, created_by, created_at \
             from function_versions where function_id = $1 order by version desc",
            &[&id],
        )
        .await?;
    info.versions = Some(
        versions
            .iter()
            .map(|v| version_from_row(v, info.active_version))
            .collect(),
    );
    Ok(info)
}

fn version_from_row(v: &tokio_postgres::Row, active: Option<i32>) -> VersionInfo {
    let version: i32 = v.get("version");
    VersionInfo {
        version,
        checksum: v.get("checksum"),
        size_bytes: v.get("size_bytes"),
        entrypoint: v.get("entrypoint"),
        import_map: v.get("import_map"),
        created_by: v.get("created_by"),
        created_at: v.get("created_at"),
        active: active == Some(version),
        files: None,
    }
}

/// One version with its files.
pub async fn get_version(
    platform: &Platform,
    project_id: Uuid,
    slug: &Slug,
    version: i32,
) -> Result<VersionInfo, FunctionsError> {
    let client = platform.control().get().await?;
    let row = client
        .query_opt(
            "select v.version, v.checksum, v.size_bytes, v.entrypoint, v.import_map, v.created_by, \
                    v.created_at, v.files, f.active_version \
             from functions f join function_versions v on v.function_id = f.id \
             where f.project_id = $1 and f.slug = $2 and v.version = $3",
            &[&project_id, &slug.as_str(), &version],
        )
        .await?
        .ok_or_else(|| {
            FunctionsError::NotFound(format!(
                "Function {:?} has no version {version}.",
                slug.as_str()
            ))
        })?;
    let mut info = version_from_row(&row, row.get("active_version"));
    let files: serde_json::Value = row.get("files");
    info.files = serde_json::from_value(files).ok();
    Ok(info)
}

/// The files of one version (for a provider that needs them again).
pub async fn version_bundle(
    platform: &Platform,
    function_id: Uuid,
    version: i32,
) -> Result<Bundle, FunctionsError> {
    let client = platform.control().get().await?;
    let row = client
        .query_opt(
            "select files, entrypoint, import_map from function_versions where function_id = $1 and version = $2",
            &[&function_id, &version],
        )
        .await?
        .ok_or_else(|| FunctionsError::NotFound(format!("version {version} is gone")))?;
    let files: serde_json::Value = row.get("files");
    Ok(Bundle {
        files: serde_json::from_value(files)
            .map_err(|e| FunctionsError::Invalid(format!("stored files are not valid: {e}")))?,
        entrypoint: row.get("entrypoint"),
        import_map: row.get("import_map"),
    })
}

/// Creates function `slug` with `bundle` as version 1 (active). 409 when it exists.
pub async fn create(
    platform: &Platform,
    project_id: Uuid,
    slug: &Slug,
    bundle: &Bundle,
    settings: &SettingsPatch,
    actor: &str,
) -> Result<i32, FunctionsError> {
    settings.validate()?;
    let mut client = platform.control().get().await?;
    let tx = client.transaction().await?;
    let id: Option<Uuid> = tx
        .query_opt(
            "insert into functions (project_id, slug, verify_jwt, timeout_ms, memory_mb, concurrency) \
             values ($1, $2, coalesce($3, true), coalesce($4, 60000), coalesce($5, 256), coalesce($6, 64)) \
             on conflict (project_id, slug) do nothing returning id",
            &[
                &project_id,
                &slug.as_str(),
                &settings.verify_jwt,
                &settings.timeout_ms,
                &settings.memory_mb,
                &settings.concurrency,
            ],
        )
        .await?
        .map(|r| r.get(0));
    let Some(id) = id else {
        return Err(FunctionsError::Conflict(format!(
            "Function {:?} already exists; deploy a new version with PUT /admin/v1/functions/{}.",
            slug.as_str(),
            slug.as_str()
        )));
    };
    insert_version(&tx, id, 1, bundle, actor).await?;
    tx.execute(
        "update functions set active_version = 1 where id = $1",
        &[&id],
    )
    .await?;
    tx.commit().await?;
    Ok(1)
}

async fn insert_version(
    tx: &tokio_postgres::Transaction<'_>,
    function_id: Uuid,
    version: i32,
    bundle: &Bundle,
    actor: &str,
) -> Result<(), FunctionsError> {
    let files =
        serde_json::to_value(&bundle.files).map_err(|e| FunctionsError::Invalid(e.to_string()))?;
    let size = i32::try_from(bundle.size()).unwrap_or(i32::MAX);
    tx.execute(
        "insert into function_versions (function_id, version, entrypoint, import_map, files, checksum, size_bytes, created_by) \
         values ($1, $2, $3, $4, $5, $6, $7, $8)",
        &[
            &function_id,
            &version,
            &bundle.entrypoint,
            &bundle.import_map,
            &files,
            &bundle.checksum(),
            &size,
            &actor,
        ],
    )
    .await?;
    Ok(())
}

/// Deletes the versions of function `id` older than its newest `keep`,
/// except the active one (still running, and the target of a rollback).
async fn prune_versions(
    tx: &tokio_postgres::Transaction<'_>,
    id: Uuid,
    keep: i64,
) -> Result<(), FunctionsError> {
    let pruned = tx
        .execute(
            "delete from function_versions v using functions f \
             where f.id = $1 and v.function_id = $1 \
               and v.version is distinct from f.active_version \
               and v.version <= (select version from function_versions \
                                 where function_id = $1 order by version desc offset $2 limit 1)",
            &[&id, &keep],
        )
        .await?;
    if pruned > 0 {
        tracing::debug!(pruned, "deleted old function versions");
    }
    Ok(())
}

/// Updates an existing function: a new version when `bundle` is given
/// (activated unless `activate` is false), and the settings in `patch`.
/// Returns the new version, if one was made.
pub async fn update(
    platform: &Platform,
    project_id: Uuid,
    slug: &Slug,
    bundle: Option<&Bundle>,
    patch: &SettingsPatch,
    activate: bool,
    actor: &str,
) -> Result<Option<i32>, FunctionsError> {
    patch.validate()?;
    let mut client = platform.control().get().await?;
    let tx = client.transaction().await?;
    // Locks the function row: concurrent deploys number versions one by one.
    let id: Uuid = tx
        .query_opt(
            "select id from functions where project_id = $1 and slug = $2 for update",
            &[&project_id, &slug.as_str()],
        )
        .await?
        .ok_or_else(|| not_found(slug))?
        .get(0);
    let mut made = None;
    if let Some(bundle) = bundle {
        let next: i32 = tx
            .query_one(
                "select coalesce(max(version), 0) + 1 from function_versions where function_id = $1",
                &[&id],
            )
            .await?
            .get(0);
        insert_version(&tx, id, next, bundle, actor).await?;
        if activate {
            tx.execute(
                "update functions set active_version = $2, updated_at = now() where id = $1",
                &[&id, &next],
            )
            .await?;
        }
        let keep = platform.config().functions.functions_max_versions;
        if keep > 0 {
            prune_versions(&tx, id, i64::from(keep)).await?;
        }
        made = Some(next);
    }
    tx.execute(
        "update functions set verify_jwt = coalesce($2, verify_jwt), timeout_ms = coalesce($3, timeout_ms), \
         memory_mb = coalesce($4, memory_mb), concurrency = coalesce($5, concurrency), updated_at = now() \
         where id = $1",
        &[
            &id,
            &patch.verify_jwt,
            &patch.timeout_ms,
            &patch.memory_mb,
            &patch.concurrency,
        ],
    )
    .await?;
    tx.commit().await?;
    Ok(made)
}

/// Makes `version` the one invocations run (rollback or roll forward).
pub async fn activate(
    platform: &Platform,
    project_id: Uuid,
    slug: &Slug,
    version: i32,
) -> Result<(), FunctionsError> {
    let client = platform.control().get().await?;
    let n = client
        .execute(
            "update functions f set active_version = $3, updated_at = now() \
             where f.project_id = $1 and f.slug = $2 \
               and exists (select 1 from function_versions v where v.function_id = f.id and v.version = $3)",
            &[&project_id, &slug.as_str(), &version],
        )
        .await?;
    if n == 0 {
        return Err(FunctionsError::NotFound(format!(
            "Function {:?} has no version {version}.",
            slug.as_str()
        )));
    }
    Ok(())
}

/// Deletes a function with its versions and schedules (its logs stay until
/// the project is deleted).
pub async fn delete(
    platform: &Platform,
    project_id: Uuid,
    slug: &Slug,
) -> Result<(), FunctionsError> {
    let client = platform.control().get().await?;
    let n = client
        .execute(
            "delete from functions where project_id = $1 and slug = $2",
            &[&project_id, &slug.as_str()],
        )
        .await?;
    if n == 0 {
        return Err(not_found(slug));
    }
    Ok(())
}

fn secret_context(project_id: Uuid, name: &str) -> String {
    format!("function-secret:{project_id}:{name}")
}

/// A secret as listed: never its value, only a digest prefix to tell versions apart.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SecretInfo {
    /// The variable name.
    pub name: String,
    /// First 16 hex digits of the value's SHA-256.
    pub digest: String,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// Every secret name of a project.
pub async fn list_secrets(
    platform: &Platform,
    project_id: Uuid,
) -> Result<Vec<SecretInfo>, FunctionsError> {
    let client = platform.control().get().await?;
    let rows = client
        .query(
            "select name, digest, updated_at from function_secrets where project_id = $1 order by name",
            &[&project_id],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| SecretInfo {
            name: r.get(0),
            digest: r.get(1),
            updated_at: r.get(2),
        })
        .collect())
}

/// Sets (creates or replaces) secrets, all in one transaction.
pub async fn set_secrets(
    platform: &Platform,
    project_id: Uuid,
    secrets: &[(SecretName, String)],
) -> Result<(), FunctionsError> {
    let mut client = platform.control().get().await?;
    let tx = client.transaction().await?;
    for (name, value) in secrets {
        let enc = platform
            .secrets()
            .encrypt_str(&secret_context(project_id, name.as_str()), value);
        let digest = sha256_hex(value.as_bytes())[..16].to_owned();
        tx.execute(
            "insert into function_secrets (project_id, name, value_enc, digest) values ($1, $2, $3, $4) \
             on conflict (project_id, name) do update set value_enc = excluded.value_enc, \
             digest = excluded.digest, updated_at = now()",
            &[&project_id, &name.as_str(), &enc, &digest],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Deletes one secret.
pub async fn delete_secret(
    platform: &Platform,
    project_id: Uuid,
    name: &str,
) -> Result<(), FunctionsError> {
    let client = platform.control().get().await?;
    let n = client
        .execute(
            "delete from function_secrets where project_id = $1 and name = $2",
            &[&project_id, &name],
        )
        .await?;
    if n == 0 {
        return Err(FunctionsError::NotFound(format!(
            "No secret named {name:?}."
        )));
    }
    Ok(())
}

/// Everything needed to run function `slug` now: its active version,
/// settings and environment (project URL and keys, decrypted secrets).
pub async fn load_deployment(
    platform: &Platform,
    project_id: Uuid,
    project_ref: &str,
    slug: &Slug,
) -> Result<Deployment, FunctionsError> {
    let client = platform.control().get().await?;
    let row = client
        .query_opt(
            "select f.id, f.active_version, f.verify_jwt, f.timeout_ms, f.memory_mb, f.concurrency, \
                    v.checksum, v.entrypoint, v.import_map \
             from functions f join function_versions v on v.function_id = f.id and v.version = f.active_version \
             where f.project_id = $1 and f.slug = $2",
            &[&project_id, &slug.as_str()],
        )
        .await?
        .ok_or_else(|| not_found(slug))?;
    // `get_details` takes its own control-plane connection: holding this one
    // meanwhile would let concurrent loads exhaust the pool and wait on each
    // other until the acquire timeout.
    drop(client);
    let r = ProjectRef::parse(project_ref)?;
    let details = crate::platform::projects::get_details(platform, &r).await?;
    let client = platform.control().get().await?;
    let url = platform.config().project_url(project_ref);
    let mut env = vec![
        ("FERROBASE_URL".to_owned(), url.clone()),
        ("FERROBASE_ANON_KEY".to_owned(), details.anon_key.clone()),
        (
            "FERROBASE_SERVICE_ROLE_KEY".to_owned(),
            details.service_role_key.clone(),
        ),
        // The names Supabase functions read, so they port unchanged.
        ("SUPABASE_URL".to_owned(), url),
        ("SUPABASE_ANON_KEY".to_owned(), details.anon_key),
        (
            "SUPABASE_SERVICE_ROLE_KEY".to_owned(),
            details.service_role_key,
        ),
    ];
    for s in client
        .query(
            "select name, value_enc from function_secrets where project_id = $1 order by name",
            &[&project_id],
        )
        .await?
    {
        let name: String = s.get(0);
        let value = platform
            .secrets()
            .decrypt_str(&secret_context(project_id, &name), s.get(1))?;
        env.push((name, value));
    }
    let settings = Settings {
        verify_jwt: row.get("verify_jwt"),
        timeout_ms: row.get("timeout_ms"),
        memory_mb: row.get("memory_mb"),
        concurrency: row.get("concurrency"),
    };
    let version: i32 = row.get("active_version");
    let checksum: String = row.get("checksum");
    let mut fp = format!("{checksum}\n{settings:?}\n");
    for (k, v) in &env {
        fp.push_str(&format!("{k}={}\n", v.len()));
        fp.push_str(v);
    }
    Ok(Deployment {
        project_id,
        project_ref: project_ref.to_owned(),
        function_id: row.get("id"),
        slug: slug.as_str().to_owned(),
        version,
        checksum,
        entrypoint: row.get("entrypoint"),
        import_map: row.get("import_map"),
        settings,
        env,
        fingerprint: sha256_hex(fp.as_bytes()),
    })
}
