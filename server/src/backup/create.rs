//! Taking a backup: the database with `pg_dump`, the control-plane rows,
//! the storage objects, then the manifest (last, so a directory without one
//! is an unfinished backup).

use std::path::{Path, PathBuf};

use futures_util::StreamExt as _;
use object_store::ObjectStoreExt as _;
use object_store::path::Path as ObjectPath;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;
use uuid::Uuid;

use super::{
    BackupError, CONTROL, DATABASE, FORMAT, FileEntry, MANIFEST, Manifest, Progress, STORAGE,
    file_digest, io, libpq_args, pg_tool, run_tool, size,
};
use crate::platform::projects::conn_context;
use crate::platform::{Platform, ProjectRef};
use crate::storage::StorageHandle;

/// Control-plane tables holding per-project rows (a `project_id` column),
/// besides `projects` itself.
const PROJECT_TABLES_SQL: &str = "
select c.table_name::text
from information_schema.columns c
join information_schema.tables t on t.table_schema = c.table_schema and t.table_name = c.table_name
where c.table_schema = current_schema() and c.column_name = 'project_id' and t.table_type = 'BASE TABLE'
order by 1";

/// The connection `pg_dump` reads the project database with: the cluster's
/// admin role when it may bypass Row Level Security, else the project's
/// owner (who owns everything in it). The owner is not enough for a table
/// with `FORCE ROW LEVEL SECURITY`: its policies then hide rows from the
/// owner too, and `pg_dump` refuses to dump such a table rather than dump it
/// partially.
async fn dump_role(
    platform: &Platform,
    id: Uuid,
    db_name: &str,
    owner: tokio_postgres::Config,
) -> Result<tokio_postgres::Config, BackupError> {
    let mut admin = match crate::platform::projects::project_cluster(platform, id).await? {
        Some(cluster) => cluster,
        None => platform.cluster().clone(),
    };
    admin.dbname(db_name);
    let bypasses = async {
        let client = crate::db::connect(&admin).await?;
        let row = client
            .query_one(
                "select rolsuper or rolbypassrls from pg_roles where rolname = current_user",
                &[],
            )
            .await?;
        row.try_get::<_, bool>(0)
    }
    .await;
    match bypasses {
        Ok(true) => Ok(admin),
        Ok(false) => Ok(owner),
        Err(error) => {
            tracing::warn!(%error, "backup: the cluster's admin role is not usable; dumping as the project owner");
            Ok(owner)
        }
    }
}

/// Says what to do when `pg_dump`, run as the owner, met a table whose
/// forced Row Level Security hides rows from it.
fn explain_forced_rls(e: BackupError) -> BackupError {
    match e {
        BackupError::Tool { tool, message } if message.contains("row-level security") => {
            BackupError::Tool {
                tool,
                message: format!(
                    "{message}\nA table forces Row Level Security, so the project's owner cannot read all \
                     of it; back up with a platform database role that may bypass RLS (a superuser, \
                     or ALTER ROLE … BYPASSRLS)."
                ),
            }
        }
        other => other,
    }
}

/// Backs up project `r` into `{to}/{ref}/` (which must not hold a backup
/// already); returns that directory.
pub async fn backup_project(
    platform: &Platform,
    r: &ProjectRef,
    to: &Path,
    progress: &dyn Progress,
) -> Result<PathBuf, BackupError> {
    let dir = to.join(r.as_str());
    if dir.join(MANIFEST).exists() {
        return Err(BackupError::Invalid(format!(
            "{} already holds a backup; choose another --to",
            dir.display()
        )));
    }
    std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
    let control = platform.control().get().await?;
    let row = control
        .query_opt(
            "select to_jsonb(p), id, db_name, db_conn_enc from projects p where ref = $1 and status = 'ready'",
            &[&r.as_str()],
        )
        .await?
        .ok_or_else(|| BackupError::NotFound(r.to_string()))?;
    let project: Value = row.try_get(0)?;
    let id: Uuid = row.try_get(1)?;
    let db_name: String = row.try_get(2)?;
    let db_url = platform
        .secrets()
        .decrypt_str(&conn_context(id), row.try_get(3)?)?;
    let started = std::time::Instant::now();
    progress.step(&format!("backup {r}: [1/4] database (pg_dump)"));

    // 1. The database.
    let db_config: tokio_postgres::Config = db_url.parse().map_err(|_| {
        BackupError::Invalid("the project's connection string does not parse".into())
    })?;
    let dumper = dump_role(platform, id, &db_name, db_config).await?;
    let (mut args, password) = libpq_args(&dumper);
    let dump = dir.join(DATABASE);
    args.extend([
        "--format=custom".to_owned(),
        "--no-password".to_owned(),
        format!("--file={}", dump.display()),
    ]);
    let pg_dump = pg_tool(platform.config(), "pg_dump")?;
    run_tool("pg_dump", &pg_dump, &args, password.as_deref())
        .await
        .map_err(explain_forced_rls)?;
    let mut files = vec![entry(&dir, DATABASE)?];
    progress.step(&format!(
        "backup {r}: [1/4] database: {}",
        size(files[0].bytes)
    ));

    // 2. The control-plane rows (sealed values stay sealed).
    let mut tables = serde_json::Map::new();
    for t in control.query(PROJECT_TABLES_SQL, &[]).await? {
        let table: String = t.try_get(0)?;
        let rows: Value = control
            .query_one(
                &format!(
                    "select coalesce(jsonb_agg(to_jsonb(t)), '[]') from {} t where project_id = $1",
                    crate::db::quote_ident(&table)
                ),
                &[&id],
            )
            .await?
            .try_get(0)?;
        tables.insert(table, rows);
    }
    let state = json!({"projects": project, "tables": tables});
    let text = serde_json::to_vec_pretty(&state)
        .map_err(|e| BackupError::Invalid(format!("encoding {CONTROL}: {e}")))?;
    std::fs::write(dir.join(CONTROL), text).map_err(io(format!("writing {CONTROL}")))?;
    files.push(entry(&dir, CONTROL)?);
    progress.step(&format!(
        "backup {r}: [2/4] control plane: {} tables",
        tables.len()
    ));

    // 3. The stored objects, under `{project id}/…` in the backend.
    let storage = StorageHandle::from_config(platform.config());
    let mut objects = 0u64;
    let mut object_bytes = 0u64;
    if let Ok(store) = storage.0.as_ref().as_ref() {
        let store = store.object_store();
        let prefix = ObjectPath::from(id.to_string());
        let mut listing = store.list(Some(&prefix));
        let mut locations = Vec::new();
        while let Some(meta) = listing.next().await {
            match meta {
                Ok(meta) => locations.push(meta.location),
                Err(object_store::Error::NotFound { .. }) => break,
                Err(e) => return Err(BackupError::Storage(e.to_string())),
            }
        }
        for location in locations {
            let Some(rel) = location
                .as_ref()
                .strip_prefix(&format!("{id}/"))
                .map(str::to_owned)
            else {
                continue;
            };
            let rel_path = format!("{STORAGE}/{rel}");
            let target = dir.join(&rel_path);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(io(format!("creating {}", parent.display())))?;
            }
            let got = store
                .get(&location)
                .await
                .map_err(|e| BackupError::Storage(e.to_string()))?;
            let mut stream = got.into_stream();
            let mut file = tokio::fs::File::create(&target)
                .await
                .map_err(io(format!("writing {rel_path}")))?;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| BackupError::Storage(e.to_string()))?;
                file.write_all(&chunk)
                    .await
                    .map_err(io(format!("writing {rel_path}")))?;
            }
            file.flush()
                .await
                .map_err(io(format!("writing {rel_path}")))?;
            let e = entry(&dir, &rel_path)?;
            objects += 1;
            object_bytes += e.bytes;
            files.push(e);
            if objects.is_multiple_of(100) {
                progress.step(&format!("backup {r}: [3/4] storage: {objects} objects…"));
            }
        }
    }
    progress.step(&format!(
        "backup {r}: [3/4] storage: {objects} objects, {}",
        size(object_bytes)
    ));

    // 4. The manifest, last.
    let manifest = Manifest {
        format: FORMAT,
        project_ref: r.to_string(),
        project_id: id,
        db_name,
        created_at: chrono::Utc::now(),
        ferrobase_version: env!("CARGO_PKG_VERSION").to_owned(),
        files,
    };
    let text = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| BackupError::Invalid(format!("encoding {MANIFEST}: {e}")))?;
    let tmp = dir.join(format!("{MANIFEST}.tmp"));
    std::fs::write(&tmp, text).map_err(io(format!("writing {MANIFEST}")))?;
    std::fs::rename(&tmp, dir.join(MANIFEST)).map_err(io(format!("writing {MANIFEST}")))?;
    progress.step(&format!(
        "backup {r}: [4/4] done in {:.1}s -> {}",
        started.elapsed().as_secs_f64(),
        dir.display()
    ));
    Ok(dir)
}

fn entry(dir: &Path, rel: &str) -> Result<FileEntry, BackupError> {
    let (bytes, sha256) = file_digest(&dir.join(rel))?;
    Ok(FileEntry {
        path: rel.to_owned(),
        bytes,
        sha256,
    })
}

#[cfg(test)]
mod tests {
    use super::{BackupError, explain_forced_rls};

    #[test]
    fn a_dump_refused_by_forced_rls_says_what_to_do() {
        let refused = BackupError::Tool {
            tool: "pg_dump",
            message: "ERROR:  query would be affected by row-level security policy for table \"t\""
                .into(),
        };
        let text = explain_forced_rls(refused).to_string();
        assert!(text.contains("BYPASSRLS"), "{text}");
        let other = BackupError::Tool {
            tool: "pg_dump",
            message: "connection refused".into(),
        };
        assert_eq!(
            explain_forced_rls(other).to_string(),
            "pg_dump: connection refused"
        );
    }
}
