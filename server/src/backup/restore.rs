//! Restoring a backup: check it whole first ([`super::verify`]), then the
//! control-plane row, the owner role and database, `pg_restore`, the other
//! control-plane rows and the stored objects. A failure removes what was
//! created, so a failed restore leaves no half project behind.
//!
//! Under the same ref the project keeps its id, so every sealed value (the
//! database password, signing keys, API keys, function secrets, AI provider
//! keys, and the secrets inside the project database such as MFA factors
//! and webhook signing secrets) opens as before, and the old API keys and
//! user sessions stay valid. Under a new ref the project gets a new id, a
//! new database, owner and password, a new signing key and new API keys
//! (tokens carry the ref); its data, users and files are restored, but the
//! control-plane state other than secrets (edge functions, AI providers and
//! settings, webhook worker state) is not copied, and secrets sealed inside
//! the database with the original id (MFA factors, webhook endpoint
//! secrets, SMTP/OAuth settings) must be set again.
//!
//! With [`RestoreOptions::force`] an existing project with the target ref is
//! deleted first (after the whole backup is checked, and after the target
//! cluster answers); without it the restore is refused. A project that lived
//! on another cluster (`--database-url` at creation) is restored onto the
//! cluster given by [`RestoreOptions::database_url`], else onto the control
//! plane's cluster: its own cluster may be the thing that was lost, and its
//! sealed admin connection string is never reused blindly.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use object_store::ObjectStoreExt as _;
use object_store::PutPayload;
use object_store::path::Path as ObjectPath;
use serde_json::{Value, json};
use uuid::Uuid;

use super::{
    BackupError, CONTROL, DATABASE, Manifest, Progress, STORAGE, io, libpq_args, pg_tool, run_tool,
    verify,
};
use crate::crypto::random_hex;
use crate::db::{quote_ident, quote_literal};
use crate::platform::projects::{
    self, API_ROLES_SQL, ProjectDetails, cluster_context, conn_context, connect_cluster,
    connection_url, install_ddl_trigger_on, secret_context,
};
use crate::platform::{Platform, ProjectRef};
use crate::storage::StorageHandle;

/// Foreign keys between control-plane tables (child, parent).
const FKS_SQL: &str = "
select cl.relname::text, fl.relname::text
from pg_constraint c
join pg_class cl on cl.oid = c.conrelid
join pg_class fl on fl.oid = c.confrelid
where c.contype = 'f' and cl.relnamespace = current_schema()::regnamespace";

/// How to restore.
#[derive(Clone, Default)]
pub struct RestoreOptions {
    /// Restore under this ref (default: the ref the backup was taken from).
    pub new_ref: Option<ProjectRef>,
    /// Replace a project that has the target ref (deleted first).
    pub force: bool,
    /// Superuser connection string of the cluster to restore the database
    /// onto (default: the control plane's cluster). Stored sealed.
    pub database_url: Option<String>,
}

impl std::fmt::Debug for RestoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestoreOptions")
            .field("new_ref", &self.new_ref)
            .field("force", &self.force)
            .field("database_url", &self.database_url.as_ref().map(|_| "…"))
            .finish()
    }
}

/// Another cluster to restore onto: its URL, settings and admin connection.
struct Cluster {
    url: String,
    config: tokio_postgres::Config,
    client: tokio_postgres::Client,
}

/// What a restore created, for the clean-up after a failure.
#[derive(Default)]
struct Created {
    project_id: Option<Uuid>,
    role: Option<String>,
    database: Option<String>,
    temporary_role: Option<String>,
}

/// Restores the backup in `dir` as [`RestoreOptions::new_ref`] (default:
/// the ref it was taken from). Returns the restored project with its keys.
pub async fn restore_project(
    platform: &Platform,
    dir: &Path,
    options: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<ProjectDetails, BackupError> {
    let manifest = verify(dir)?;
    progress.step(&format!(
        "restore: [1/5] backup of {} taken {} checked ({} files)",
        manifest.project_ref,
        manifest.created_at.to_rfc3339(),
        manifest.files.len()
    ));
    let target = match &options.new_ref {
        Some(r) => r.clone(),
        None => ProjectRef::parse(&manifest.project_ref)?,
    };
    let state: Value = serde_json::from_slice(
        &std::fs::read(dir.join(CONTROL)).map_err(io(format!("reading {CONTROL}")))?,
    )
    .map_err(|e| BackupError::Invalid(format!("{CONTROL} is damaged: {e}")))?;
    let cluster = match options
        .database_url
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty())
    {
        Some(url) => {
            let (config, client) = connect_cluster(url).await?;
            Some(Cluster {
                url: url.to_owned(),
                config,
                client,
            })
        }
        None => None,
    };
    if options.force {
        match projects::delete(platform, &target, "cli").await {
            Ok(old) => {
                StorageHandle::from_config(platform.config())
                    .purge_project(old)
                    .await;
                progress.step(&format!(
                    "restore {target}: --force: the existing project {target} was deleted"
                ));
            }
            Err(projects::ProjectError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let mut created = Created::default();
    match restore_into(
        platform,
        dir,
        &manifest,
        &state,
        &target,
        cluster.as_ref(),
        progress,
        &mut created,
    )
    .await
    {
        Ok(()) => {
            platform
                .audit(
                    "cli",
                    "project.restore",
                    target.as_str(),
                    json!({"from": manifest.project_ref, "taken": manifest.created_at, "force": options.force}),
                )
                .await;
            Ok(projects::get_details(platform, &target).await?)
        }
        Err(e) => {
            clean_up(platform, cluster.as_ref(), &created).await;
            Err(e)
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn restore_into(
    platform: &Platform,
    dir: &Path,
    manifest: &Manifest,
    state: &Value,
    target: &ProjectRef,
    cluster: Option<&Cluster>,
    progress: &dyn Progress,
    created: &mut Created,
) -> Result<(), BackupError> {
    let same = target.as_str() == manifest.project_ref;
    let control = platform.control().get().await?;
    let taken = control
        .query_opt(
            "select 1 from projects where ref = $1 or (id = $2 and $3)",
            &[&target.as_str(), &manifest.project_id, &same],
        )
        .await?;
    if taken.is_some() {
        return Err(BackupError::Exists(target.to_string()));
    }
    let mut row = state["projects"].clone();
    let Some(fields) = row.as_object_mut() else {
        return Err(BackupError::Invalid(format!(
            "{CONTROL} has no projects row"
        )));
    };
    // Where the database goes: the given cluster, else the control plane's
    // (a project that lived elsewhere included: see the module docs).
    let lived_elsewhere = fields.get("cluster_conn_enc").is_some_and(|v| !v.is_null());
    if lived_elsewhere && cluster.is_none() {
        progress.step(&format!(
            "restore {target}: the project lived on another cluster; restoring onto the control plane's (give --database-url to choose)"
        ));
    }
    let cluster_cfg = cluster.map_or_else(|| platform.cluster().clone(), |c| c.config.clone());
    let admin: &tokio_postgres::Client = match cluster {
        Some(c) => &c.client,
        None => &control,
    };

    // The identity of the restored project.
    let (id, db_name, db_url, db_conn_enc) = if same {
        let sealed = fields
            .get("db_conn_enc")
            .and_then(Value::as_str)
            .ok_or_else(|| BackupError::Invalid(format!("{CONTROL} has no db_conn_enc")))?
            .to_owned();
        let url = platform
            .secrets()
            .decrypt_str(&conn_context(manifest.project_id), &sealed)?;
        if lived_elsewhere || cluster.is_some() {
            // The same owner and password, on the cluster it goes to now.
            let old: tokio_postgres::Config = url.parse().map_err(|_| {
                BackupError::Invalid("the project's connection string does not parse".into())
            })?;
            let password = old
                .get_password()
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .unwrap_or_default();
            let url = connection_url(
                &cluster_cfg,
                &manifest.db_name,
                &password,
                &manifest.db_name,
            );
            let sealed = platform
                .secrets()
                .encrypt_str(&conn_context(manifest.project_id), &url);
            (manifest.project_id, manifest.db_name.clone(), url, sealed)
        } else {
            (manifest.project_id, manifest.db_name.clone(), url, sealed)
        }
    } else {
        let id = Uuid::new_v4();
        let db_name = format!("fb_{}_{}", target.as_str().replace('-', "_"), random_hex(4));
        let url = connection_url(&cluster_cfg, &db_name, &random_hex(24), &db_name);
        let sealed = platform.secrets().encrypt_str(&conn_context(id), &url);
        (id, db_name, url, sealed)
    };
    let cluster_conn_enc =
        cluster.map(|c| platform.secrets().encrypt_str(&cluster_context(id), &c.url));
    let db_config: tokio_postgres::Config = db_url.parse().map_err(|_| {
        BackupError::Invalid("the project's connection string does not parse".into())
    })?;
    let password = db_config
        .get_password()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .unwrap_or_default();
    fields.insert("id".into(), json!(id));
    fields.insert("ref".into(), json!(target.as_str()));
    fields.insert("db_name".into(), json!(db_name));
    fields.insert("db_role".into(), json!(db_name));
    fields.insert("db_conn_enc".into(), json!(db_conn_enc));
    fields.insert("cluster_conn_enc".into(), json!(cluster_conn_enc));
    // The restored project lives where `cluster` says (the control plane's
    // cluster or the one given), not on the registered cluster it came from.
    fields.insert("cluster_id".into(), Value::Null);
    fields.insert("status".into(), json!("creating"));
    control
        .execute(
            "insert into projects select * from jsonb_populate_record(null::projects, $1)",
            &[&row],
        )
        .await?;
    created.project_id = Some(id);

    // 2. The owner role and the database, as project creation makes them.
    progress.step(&format!("restore {target}: [2/5] database {db_name}"));
    let role = quote_ident(&db_name);
    admin.batch_execute(API_ROLES_SQL).await?;
    admin
        .batch_execute(&format!(
            "create role {role} login password {} nosuperuser nocreatedb nocreaterole inherit",
            quote_literal(&password)
        ))
        .await?;
    created.role = Some(db_name.clone());
    admin
        .batch_execute(&format!(
            "grant anon, authenticated, service_role to {role}"
        ))
        .await?;
    admin
        .batch_execute(&format!("create database {role} owner {role}"))
        .await?;
    created.database = Some(db_name.clone());
    admin
        .batch_execute(&format!(
            "revoke connect, temporary on database {role} from public"
        ))
        .await?;
    // The dump grants to its old owner role: it must exist while restoring.
    let old_role = manifest.db_name.clone();
    if old_role != db_name {
        let exists = admin
            .query_opt("select 1 from pg_roles where rolname = $1", &[&old_role])
            .await?
            .is_some();
        if !exists {
            admin
                .batch_execute(&format!("create role {} nologin", quote_ident(&old_role)))
                .await?;
            created.temporary_role = Some(old_role.clone());
        }
    }

    // pg_restore as the new owner, without the event trigger (a superuser
    // object, installed again below) and without the old owner.
    let pg_restore = pg_tool(platform.config(), "pg_restore")?;
    let dump = dir.join(DATABASE);
    let listing = run_tool(
        "pg_restore",
        &pg_restore,
        &["--list".to_owned(), dump.display().to_string()],
        None,
    )
    .await?;
    let renamed = old_role != db_name;
    let listing = String::from_utf8_lossy(&listing).into_owned();
    // Default privileges name their role (`FOR ROLE old`): under a new
    // owner they are restored separately, renamed (below).
    let keep =
        |l: &&str| !(l.contains(" EVENT TRIGGER ") || (renamed && l.contains(" DEFAULT ACL ")));
    let main_list: String = listing
        .lines()
        .filter(keep)
        .map(|l| format!("{l}\n"))
        .collect();
    let default_acls: String = listing
        .lines()
        .filter(|l| renamed && l.contains(" DEFAULT ACL "))
        .map(|l| format!("{l}\n"))
        .collect();
    let list_file = std::env::temp_dir().join(format!("ferrobase-restore-{}.list", random_hex(8)));
    std::fs::write(&list_file, main_list).map_err(io("writing the restore list"))?;
    let (mut args, _) = libpq_args(&db_config);
    args.extend([
        "--no-owner".to_owned(),
        "--exit-on-error".to_owned(),
        "--single-transaction".to_owned(),
        "--no-password".to_owned(),
        format!("--use-list={}", list_file.display()),
        dump.display().to_string(),
    ]);
    let restored = run_tool("pg_restore", &pg_restore, &args, Some(&password)).await;
    let _ = std::fs::remove_file(&list_file);
    restored?;
    if !default_acls.is_empty() {
        std::fs::write(&list_file, default_acls).map_err(io("writing the restore list"))?;
        let sql = run_tool(
            "pg_restore",
            &pg_restore,
            &[
                format!("--use-list={}", list_file.display()),
                "--file=-".to_owned(),
                dump.display().to_string(),
            ],
            None,
        )
        .await;
        let _ = std::fs::remove_file(&list_file);
        // pg_dump prints the role bare when it needs no quotes; psql
        // meta-commands (`\restrict …` in recent releases) are not SQL.
        let sql: String = String::from_utf8_lossy(&sql?)
            .lines()
            .filter(|l| !l.starts_with('\\'))
            .map(|l| format!("{l}\n"))
            .collect();
        let sql = sql
            .replace(
                &format!("FOR ROLE {} ", quote_ident(&old_role)),
                &format!("FOR ROLE {role} "),
            )
            .replace(
                &format!("FOR ROLE {old_role} "),
                &format!("FOR ROLE {role} "),
            );
        let owner = crate::db::connect(&db_config).await?;
        owner.batch_execute(&sql).await?;
    }
    if renamed {
        // Privileges the dump granted to the old owner go (in this database only).
        let mut in_db = cluster_cfg.clone();
        in_db.dbname(&db_name);
        let client = crate::db::connect(&in_db).await?;
        client
            .batch_execute(&format!("drop owned by {}", quote_ident(&old_role)))
            .await?;
        drop(client);
        if let Some(temp) = created.temporary_role.take() {
            admin
                .batch_execute(&format!("drop role if exists {}", quote_ident(&temp)))
                .await?;
        }
    }
    install_ddl_trigger_on(&cluster_cfg, &db_name).await?;

    // 3. The control-plane rows.
    if same {
        let tables = state["tables"].as_object().cloned().unwrap_or_default();
        let order = insert_order(&control, &tables).await?;
        for table in order {
            let rows = &tables[&table];
            if rows.as_array().is_none_or(Vec::is_empty) {
                continue;
            }
            let t = quote_ident(&table);
            control
                .execute(
                    &format!(
                        "insert into {t} select * from jsonb_populate_recordset(null::{t}, $1)"
                    ),
                    &[rows],
                )
                .await?;
        }
        progress.step(&format!(
            "restore {target}: [3/5] control plane: {} tables, secrets as they were",
            tables.len()
        ));
    } else {
        new_keys(platform, state, manifest.project_id, id, target).await?;
        progress.step(&format!(
            "restore {target}: [3/5] control plane: new signing key and API keys (functions, AI providers and webhook state are not copied under a new ref)"
        ));
    }

    // 4. The stored objects.
    let storage = StorageHandle::from_config(platform.config());
    let objects: Vec<_> = manifest
        .files
        .iter()
        .filter_map(|f| {
            f.path
                .strip_prefix(&format!("{STORAGE}/"))
                .map(|rel| (f, rel))
        })
        .collect();
    if !objects.is_empty() {
        let store = storage
            .0
            .as_ref()
            .as_ref()
            .map_err(|e| BackupError::Storage(e.clone()))?
            .object_store();
        for (file, rel) in &objects {
            let bytes = tokio::fs::read(dir.join(&file.path))
                .await
                .map_err(io(format!("reading {}", file.path)))?;
            let key = ObjectPath::from(format!("{id}/{rel}"));
            store
                .put(&key, PutPayload::from(bytes))
                .await
                .map_err(|e| BackupError::Storage(e.to_string()))?;
        }
    }
    progress.step(&format!(
        "restore {target}: [4/5] storage: {} objects",
        objects.len()
    ));

    control
        .execute("update projects set status = 'ready' where id = $1", &[&id])
        .await?;
    progress.step(&format!("restore {target}: [5/5] ready"));
    Ok(())
}

/// Parents before children (the `project_id` tables reference each other).
async fn insert_order(
    control: &deadpool_postgres::Object,
    tables: &serde_json::Map<String, Value>,
) -> Result<Vec<String>, BackupError> {
    let mut deps: BTreeMap<String, BTreeSet<String>> = tables
        .keys()
        .map(|t| (t.clone(), BTreeSet::new()))
        .collect();
    for row in control.query(FKS_SQL, &[]).await? {
        let child: String = row.try_get(0)?;
        let parent: String = row.try_get(1)?;
        if child != parent
            && tables.contains_key(&parent)
            && let Some(d) = deps.get_mut(&child)
        {
            d.insert(parent);
        }
    }
    let mut order = Vec::new();
    while !deps.is_empty() {
        let ready: Vec<String> = deps
            .iter()
            .filter(|(_, d)| d.iter().all(|p| order.contains(p)))
            .map(|(t, _)| t.clone())
            .collect();
        if ready.is_empty() {
            // A cycle: insert the rest in name order and let Postgres say.
            order.extend(deps.keys().cloned());
            break;
        }
        for t in ready {
            deps.remove(&t);
            order.push(t);
        }
    }
    Ok(order)
}

/// Under a new ref: a new signing key, new API keys for the new ref (minted
/// as at project creation), and the other project secrets sealed again for
/// the new id.
async fn new_keys(
    platform: &Platform,
    state: &Value,
    old_id: Uuid,
    id: Uuid,
    r: &ProjectRef,
) -> Result<(), BackupError> {
    let secrets = platform.secrets();
    let mut values = Vec::new();
    for s in state["tables"]["project_secrets"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let (Some(name), Some(sealed)) = (s["name"].as_str(), s["value_enc"].as_str()) else {
            continue;
        };
        if name == "anon_key" || name == "service_role_key" {
            continue;
        }
        let value = secrets.decrypt_str(&secret_context(old_id, name), sealed)?;
        values.push((name.to_owned(), value));
    }
    let mut conn = platform.control().get().await?;
    let tx = conn.transaction().await?;
    projects::mint_keys(platform, &tx, id, r).await?;
    for (name, value) in &values {
        tx.execute(
            "insert into project_secrets (project_id, name, value_enc) values ($1, $2, $3)",
            &[
                &id,
                &name,
                &secrets.encrypt_str(&secret_context(id, name), value),
            ],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Removes what a failed restore created.
async fn clean_up(platform: &Platform, cluster: Option<&Cluster>, created: &Created) {
    let Ok(control) = platform.control().get().await else {
        tracing::error!("restore failed and the control plane is unreachable: clean up by hand");
        return;
    };
    let admin: &tokio_postgres::Client = match cluster {
        Some(c) => &c.client,
        None => &control,
    };
    let mut statements = Vec::new();
    if let Some(db) = &created.database {
        statements.push(format!(
            "drop database if exists {} with (force)",
            quote_ident(db)
        ));
    }
    if let Some(role) = &created.role {
        statements.push(format!("drop role if exists {}", quote_ident(role)));
    }
    if let Some(role) = &created.temporary_role {
        statements.push(format!("drop role if exists {}", quote_ident(role)));
    }
    for sql in statements {
        if let Err(error) = admin.batch_execute(&sql).await {
            tracing::error!(%error, sql, "restore clean-up statement failed");
        }
    }
    if let Some(id) = created.project_id
        && let Err(error) = control
            .execute("delete from projects where id = $1", &[&id])
            .await
    {
        tracing::error!(%error, "restore clean-up: could not delete the project row");
    }
}
