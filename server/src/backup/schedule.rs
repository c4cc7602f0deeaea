//! Scheduled backups with retention (`/platform/v1/backups`).
//!
//! A schedule (`backup_schedules`) backs up one project, or every ready
//! project, on a cron (UTC) to a directory or an `s3://` prefix. Each run
//! writes into its own `{target}/{tick as 20261130T020000Z}/{ref}/`, so runs
//! never overwrite each other and a run restores like any backup
//! (`ferrobase restore {location}/{ref}`).
//!
//! Every node runs [`run_scheduler`]; the claim transaction shared with
//! function schedules ([`crate::db::cron::claim_due`]) makes each tick run
//! on exactly one node (the `(schedule_id, tick_at)` key of `backup_runs` is
//! the lease). After a successful run, that schedule's successful runs
//! beyond `keep_last` (newest first) or older than `keep_days` are deleted
//! from the target and marked `pruned`; a failed run's partial output is
//! removed at once. Runs are recorded with their status, size, duration and
//! error.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::target::Target;
use super::{BackupError, Progress, backup_to};
use crate::db::cron;
use crate::platform::{Platform, ProjectRef};

/// Most schedules claimed per pass.
const CLAIM_BATCH: i64 = 20;
/// Longest recorded error, in characters.
const MAX_ERROR: usize = 2000;
/// Most runs listed at once.
const MAX_LIST: i64 = 1000;

/// Body of schedule creation.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleRequest {
    /// Name, unique (`[a-z0-9][a-z0-9_-]*`, at most 63 characters).
    pub name: String,
    /// Cron expression, 5 fields (minute precision) or 6 (with seconds), UTC.
    pub cron: String,
    /// An absolute directory on the server, or `s3://bucket/prefix`; each run
    /// writes into `{target}/{tick}/{ref}/`.
    pub target: String,
    /// The project to back up; absent: every ready project.
    #[serde(default, rename = "ref")]
    pub project_ref: Option<String>,
    /// Keep this many successful runs (newest), prune older ones.
    #[serde(default)]
    pub keep_last: Option<i32>,
    /// Prune successful runs older than this many days.
    #[serde(default)]
    pub keep_days: Option<i32>,
    /// Paused when false (default true).
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// A backup schedule.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ScheduleInfo {
    /// Name.
    pub name: String,
    /// Cron expression (UTC).
    pub cron: String,
    /// Directory or `s3://` prefix.
    pub target: String,
    /// The project, or null for every ready project.
    #[serde(rename = "ref")]
    pub project_ref: Option<String>,
    /// Successful runs kept.
    pub keep_last: Option<i32>,
    /// Age in days after which successful runs are pruned.
    pub keep_days: Option<i32>,
    /// Whether it runs.
    pub enabled: bool,
    /// Next tick.
    pub next_run_at: DateTime<Utc>,
    /// Who created it.
    pub created_by: String,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// One run of a backup schedule.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RunInfo {
    /// Run id.
    pub id: Uuid,
    /// Its schedule.
    pub schedule: String,
    /// The tick it ran for.
    pub tick_at: DateTime<Utc>,
    /// The node that ran it.
    pub node: String,
    /// `running`, `succeeded`, `failed` or `pruned` (deleted by retention).
    pub status: String,
    /// Where it wrote (`{target}/{tick}`; each project under `/{ref}`).
    pub location: Option<String>,
    /// Projects backed up.
    pub projects: Option<i32>,
    /// Bytes written.
    pub bytes: Option<i64>,
    /// Why it failed.
    pub error: Option<String>,
    /// Start.
    pub started_at: DateTime<Utc>,
    /// End.
    pub finished_at: Option<DateTime<Utc>>,
    /// Duration in milliseconds, once finished.
    pub duration_ms: Option<i64>,
}

/// Filter of the runs list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RunFilter {
    /// Only the runs of this schedule.
    pub schedule: Option<String>,
    /// At most this many, newest first (default 100, at most 1000).
    pub limit: Option<i64>,
}

fn check_name(name: &str) -> Result<(), BackupError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        && !name.starts_with(['_', '-']);
    if ok {
        Ok(())
    } else {
        Err(BackupError::Input(format!(
            "{:?} is not a valid schedule name: use 1-63 lowercase letters, digits, '_' or '-'.",
            name.chars().take(80).collect::<String>()
        )))
    }
}

const COLUMNS: &str = "name, cron, target, project_ref, keep_last, keep_days, enabled, next_run_at, created_by, created_at";

fn info(r: &tokio_postgres::Row) -> Result<ScheduleInfo, tokio_postgres::Error> {
    Ok(ScheduleInfo {
        name: r.try_get(0)?,
        cron: r.try_get(1)?,
        target: r.try_get(2)?,
        project_ref: r.try_get(3)?,
        keep_last: r.try_get(4)?,
        keep_days: r.try_get(5)?,
        enabled: r.try_get(6)?,
        next_run_at: r.try_get(7)?,
        created_by: r.try_get(8)?,
        created_at: r.try_get(9)?,
    })
}

/// Every schedule, by name.
pub async fn list(platform: &Platform) -> Result<Vec<ScheduleInfo>, BackupError> {
    let client = platform.control().get().await?;
    let rows = client
        .query(
            &format!("select {COLUMNS} from backup_schedules order by name"),
            &[],
        )
        .await?;
    Ok(rows.iter().map(info).collect::<Result<_, _>>()?)
}

/// Creates a schedule after checking every field.
pub async fn create(
    platform: &Platform,
    req: &ScheduleRequest,
    actor: &str,
) -> Result<ScheduleInfo, BackupError> {
    check_name(&req.name)?;
    let parsed = cron::parse(&req.cron).map_err(BackupError::Input)?;
    let next = cron::next_after(&parsed, Utc::now()).map_err(BackupError::Input)?;
    let target = Target::parse(req.target.trim(), true)?;
    if let Some(n) = req.keep_last
        && !(1..=10_000).contains(&n)
    {
        return Err(BackupError::Input(
            "`keep_last` must be between 1 and 10000.".into(),
        ));
    }
    if let Some(n) = req.keep_days
        && !(1..=36_500).contains(&n)
    {
        return Err(BackupError::Input(
            "`keep_days` must be between 1 and 36500.".into(),
        ));
    }
    let client = platform.control().get().await?;
    if let Some(r) = &req.project_ref {
        let r = ProjectRef::parse(r).map_err(|e| BackupError::Input(e.to_string()))?;
        let exists = client
            .query_opt(
                "select 1 from projects where ref = $1 and status = 'ready'",
                &[&r.as_str()],
            )
            .await?;
        if exists.is_none() {
            return Err(BackupError::NotFound(r.to_string()));
        }
    }
    let row = client
        .query_opt(
            &format!(
                "insert into backup_schedules (name, cron, target, project_ref, keep_last, keep_days, enabled, next_run_at, created_by) \
                 values ($1, $2, $3, $4, $5, $6, coalesce($7, true), $8, $9) on conflict (name) do nothing returning {COLUMNS}"
            ),
            &[
                &req.name,
                &req.cron.trim(),
                &target.to_string(),
                &req.project_ref,
                &req.keep_last,
                &req.keep_days,
                &req.enabled,
                &next,
                &actor,
            ],
        )
        .await?
        .ok_or_else(|| {
            BackupError::Conflict(format!("A backup schedule named {:?} exists.", req.name))
        })?;
    let created = info(&row)?;
    platform
        .audit(
            actor,
            "backup.schedule.create",
            &created.name,
            serde_json::json!({"cron": created.cron, "target": created.target, "ref": created.project_ref}),
        )
        .await;
    Ok(created)
}

/// Deletes a schedule and its run history (the backups it wrote stay).
pub async fn delete(platform: &Platform, name: &str, actor: &str) -> Result<(), BackupError> {
    let client = platform.control().get().await?;
    let n = client
        .execute("delete from backup_schedules where name = $1", &[&name])
        .await?;
    if n == 0 {
        return Err(BackupError::Missing(format!(
            "No backup schedule named {:?}.",
            name.chars().take(80).collect::<String>()
        )));
    }
    platform
        .audit(
            actor,
            "backup.schedule.delete",
            name,
            serde_json::Value::Null,
        )
        .await;
    Ok(())
}

/// Runs, newest first.
pub async fn runs(platform: &Platform, filter: &RunFilter) -> Result<Vec<RunInfo>, BackupError> {
    let limit = filter.limit.unwrap_or(100);
    if !(1..=MAX_LIST).contains(&limit) {
        return Err(BackupError::Input(format!(
            "`limit` must be between 1 and {MAX_LIST}."
        )));
    }
    let client = platform.control().get().await?;
    let rows = client
        .query(
            "select r.id, s.name, r.tick_at, r.node, r.status, r.location, r.projects, r.bytes, r.error, \
                    r.started_at, r.finished_at, \
                    (extract(epoch from (r.finished_at - r.started_at)) * 1000)::bigint \
             from backup_runs r join backup_schedules s on s.id = r.schedule_id \
             where $1::text is null or s.name = $1 \
             order by r.started_at desc, r.tick_at desc limit $2",
            &[&filter.schedule, &limit],
        )
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        out.push(RunInfo {
            id: r.try_get(0)?,
            schedule: r.try_get(1)?,
            tick_at: r.try_get(2)?,
            node: r.try_get(3)?,
            status: r.try_get(4)?,
            location: r.try_get(5)?,
            projects: r.try_get(6)?,
            bytes: r.try_get(7)?,
            error: r.try_get(8)?,
            started_at: r.try_get(9)?,
            finished_at: r.try_get(10)?,
            duration_ms: r.try_get(11)?,
        });
    }
    Ok(out)
}

/// A tick claimed by this node.
struct Claimed {
    schedule_id: Uuid,
    tick_at: DateTime<Utc>,
    target: String,
    project_ref: Option<String>,
}

async fn claim(platform: &Platform, node: &str) -> Result<Vec<Claimed>, BackupError> {
    let mut client = platform.control().get().await?;
    let won = cron::claim_due(
        &mut client,
        cron::Tables {
            schedules: "backup_schedules",
            runs: "backup_runs",
        },
        "select s.id, s.cron, s.next_run_at, s.target, s.project_ref from backup_schedules s \
         where s.enabled and s.next_run_at <= now() \
         order by s.next_run_at limit $1 for update of s skip locked",
        CLAIM_BATCH,
        node,
    )
    .await?;
    let mut out = Vec::with_capacity(won.len());
    for row in won {
        out.push(Claimed {
            schedule_id: row.try_get(0)?,
            tick_at: row.try_get(2)?,
            target: row.try_get(3)?,
            project_ref: row.try_get(4)?,
        });
    }
    Ok(out)
}

/// Progress of scheduled runs goes to the log.
struct Log;

impl Progress for Log {
    fn step(&self, line: &str) {
        tracing::info!("{line}");
    }
}

/// Where the run for `tick_at` of a schedule writes.
fn run_location(target: &str, tick_at: DateTime<Utc>) -> Result<Target, BackupError> {
    Ok(Target::parse(target, true)?.join(&tick_at.format("%Y%m%dT%H%M%SZ").to_string()))
}

/// Runs one claimed tick: the backup, its record, then retention.
async fn run_tick(platform: Platform, tick: Claimed) {
    let outcome = async {
        let location = run_location(&tick.target, tick.tick_at)?;
        let r = tick
            .project_ref
            .as_deref()
            .map(ProjectRef::parse)
            .transpose()?;
        let result = backup_to(&platform, r.as_ref(), &location, &Log).await;
        if result.is_err()
            && let Err(error) = location.remove_all(platform.config()).await
        {
            tracing::warn!(%error, %location, "could not remove a failed backup's output");
        }
        let written = result?;
        Ok::<_, BackupError>((location, written))
    }
    .await;
    let (status, location, projects, bytes, error) = match outcome {
        Ok((location, written)) => (
            "succeeded",
            Some(location.to_string()),
            Some(i32::try_from(written.len()).unwrap_or(i32::MAX)),
            Some(i64::try_from(written.iter().map(|w| w.bytes).sum::<u64>()).unwrap_or(i64::MAX)),
            None,
        ),
        Err(e) => {
            tracing::warn!(error = %e, "scheduled backup failed");
            let location = run_location(&tick.target, tick.tick_at)
                .ok()
                .map(|l| l.to_string());
            (
                "failed",
                location,
                None,
                None,
                Some(e.to_string().chars().take(MAX_ERROR).collect::<String>()),
            )
        }
    };
    let recorded = async {
        let client = platform.control().get().await?;
        client
            .execute(
                "update backup_runs set status = $3, location = $4, projects = $5, bytes = $6, error = $7, finished_at = now() \
                 where schedule_id = $1 and tick_at = $2",
                &[&tick.schedule_id, &tick.tick_at, &status, &location, &projects, &bytes, &error],
            )
            .await?;
        Ok::<_, BackupError>(())
    }
    .await;
    if let Err(error) = recorded {
        tracing::warn!(%error, "could not record a backup run");
    }
    if status == "succeeded"
        && let Err(error) = prune(&platform, tick.schedule_id).await
    {
        tracing::warn!(%error, "backup retention failed");
    }
}

/// Whether the successful run at position `index` (0 = newest) that started
/// at `started` falls outside the retention.
pub fn expired(
    index: usize,
    started: DateTime<Utc>,
    keep_last: Option<i32>,
    keep_days: Option<i32>,
    now: DateTime<Utc>,
) -> bool {
    let by_count = keep_last.is_some_and(|k| index >= usize::try_from(k).unwrap_or(usize::MAX));
    let by_age = keep_days.is_some_and(|d| started < now - chrono::Duration::days(i64::from(d)));
    by_count || by_age
}

/// Deletes the successful runs of a schedule beyond its retention.
pub async fn prune(platform: &Platform, schedule_id: Uuid) -> Result<usize, BackupError> {
    let client = platform.control().get().await?;
    let Some(s) = client
        .query_opt(
            "select keep_last, keep_days from backup_schedules where id = $1",
            &[&schedule_id],
        )
        .await?
    else {
        return Ok(0);
    };
    let keep_last: Option<i32> = s.try_get(0)?;
    let keep_days: Option<i32> = s.try_get(1)?;
    if keep_last.is_none() && keep_days.is_none() {
        return Ok(0);
    }
    let rows = client
        .query(
            "select id, started_at from backup_runs where schedule_id = $1 and status = 'succeeded' \
             order by tick_at desc",
            &[&schedule_id],
        )
        .await?;
    let now = Utc::now();
    let mut pruned = 0;
    for (i, row) in rows.iter().enumerate() {
        let started: DateTime<Utc> = row.try_get(1)?;
        if !expired(i, started, keep_last, keep_days, now) {
            continue;
        }
        let id: Uuid = row.try_get(0)?;
        // Claim it first, so two nodes never prune the same run twice.
        let Some(claimed) = client
            .query_opt(
                "update backup_runs set status = 'pruned' where id = $1 and status = 'succeeded' returning location",
                &[&id],
            )
            .await?
        else {
            continue;
        };
        let location: Option<String> = claimed.try_get(0)?;
        if let Some(location) = location {
            let removed = match Target::parse(&location, true) {
                Ok(t) => t.remove_all(platform.config()).await,
                Err(e) => Err(e),
            };
            if let Err(e) = removed {
                let msg = format!("pruning failed: {e}");
                client
                    .execute(
                        "update backup_runs set error = $2 where id = $1",
                        &[&id, &msg],
                    )
                    .await?;
                continue;
            }
        }
        pruned += 1;
    }
    Ok(pruned)
}

/// The backup scheduler loop of one node (spawned by [`crate::app::serve`]).
pub async fn run_scheduler(platform: Platform) {
    let interval =
        Duration::from_millis(platform.config().backup.backup_schedule_interval_ms.max(50));
    let node: Arc<str> = format!("{}-{}", std::process::id(), crate::crypto::random_hex(4)).into();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match claim(&platform, &node).await {
            Ok(claimed) => {
                for t in claimed {
                    tokio::spawn(run_tick(platform.clone(), t));
                }
            }
            Err(error) => tracing::debug!(%error, "backup schedule pass failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_by_count_and_age() {
        let now = Utc::now();
        let old = now - chrono::Duration::days(10);
        assert!(!expired(0, old, None, None, now));
        assert!(!expired(1, now, Some(2), None, now));
        assert!(expired(2, now, Some(2), None, now));
        assert!(expired(0, old, None, Some(7), now));
        assert!(!expired(0, old, None, Some(30), now));
        assert!(expired(5, old, Some(10), Some(7), now));
    }

    #[test]
    fn names() {
        assert!(check_name("nightly_all-1").is_ok());
        for bad in ["", "-x", "Nightly", "a/b", &"a".repeat(64)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn run_locations_are_per_tick() {
        let t = DateTime::parse_from_rfc3339("2026-11-30T02:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        assert_eq!(
            run_location("s3://b-1/nightly", t)
                .expect("loc")
                .to_string(),
            "s3://b-1/nightly/20261130T020000Z"
        );
        assert_eq!(
            run_location("/backups", t).expect("loc").to_string(),
            "/backups/20261130T020000Z"
        );
    }
}
