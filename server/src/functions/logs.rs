//! Invocation records and log lines of functions.
//!
//! Writes never sit on the request path: [`LogSink`] queues events on a
//! bounded channel and one background task inserts them in batches (each
//! batch is what queued while the previous insert ran plus `LINGER` more,
//! so a busy node writes few, large prepared statements). When the
//! queue is full, events are dropped and counted rather than slowing
//! invocations (`ferrobase_function_log_dropped_total`).
//!
//! Growth is bounded by [`prune`], run every
//! `FERROBASE_FUNCTIONS_LOG_PRUNE_INTERVAL_MS` by [`run_pruner`] on every
//! node; a transaction-scoped advisory lock makes one node at a time do the
//! work (the others skip that pass). It deletes log lines, invocation records
//! and schedule runs older than `FERROBASE_FUNCTIONS_LOG_RETENTION_DAYS`, and
//! beyond the newest `FERROBASE_FUNCTIONS_LOG_MAX_ROWS` per function (runs:
//! per schedule).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::FunctionsError;
use crate::platform::Platform;

/// Events queued before new ones are dropped.
const QUEUE: usize = 20_000;
/// Most events in one insert.
const BATCH: usize = 1000;

/// One line of function output.
#[derive(Debug, Clone)]
pub struct LogLine {
    /// The project.
    pub project_id: Uuid,
    /// The function.
    pub slug: String,
    /// Its version.
    pub version: Option<i32>,
    /// The invocation that printed it, when known.
    pub invocation_id: Option<Uuid>,
    /// `log`, `info`, `warn`, `error`, `debug`.
    pub level: String,
    /// The text.
    pub message: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// One finished invocation.
#[derive(Debug, Clone)]
pub struct InvocationRecord {
    /// Its id (also sent to the caller as `x-ferrobase-invocation-id`).
    pub id: Uuid,
    /// The project.
    pub project_id: Uuid,
    /// The function.
    pub slug: String,
    /// The version that ran.
    pub version: Option<i32>,
    /// The request id of the HTTP request (`x-request-id`).
    pub request_id: Option<String>,
    /// `http` or `schedule`.
    pub trigger: &'static str,
    /// HTTP method.
    pub method: String,
    /// Path below the function (`/{slug}/…`).
    pub path: String,
    /// Status answered.
    pub status: i32,
    /// Error code when the function did not answer normally.
    pub error: Option<String>,
    /// Duration until the response body ended, in ms.
    pub duration_ms: i32,
    /// Start time.
    pub started_at: DateTime<Utc>,
}

enum Event {
    Log(LogLine),
    Invocation(InvocationRecord),
}

/// Queue of records and log lines, written by a background task.
#[derive(Clone)]
pub struct LogSink {
    tx: mpsc::Sender<Event>,
}

impl LogSink {
    /// Starts the writer task on the current Tokio runtime.
    pub fn start(platform: Platform) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(write_loop(platform, rx));
        Self { tx }
    }

    /// Queues a log line (dropped when the queue is full).
    pub fn log(&self, line: LogLine) {
        self.push(Event::Log(line));
    }

    /// Queues an invocation record (dropped when the queue is full).
    pub fn invocation(&self, record: InvocationRecord) {
        self.push(Event::Invocation(record));
    }

    fn push(&self, event: Event) {
        if self.tx.try_send(event).is_err() {
            metrics::counter!("ferrobase_function_log_dropped_total").increment(1);
        }
    }
}

/// How long the writer waits for more events after the first of a batch:
/// under load, one insert (and one commit) per this interval instead of one
/// per handful of invocations.
const LINGER: Duration = Duration::from_millis(25);

async fn write_loop(platform: Platform, mut rx: mpsc::Receiver<Event>) {
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        if batch.len() < BATCH {
            tokio::time::sleep(LINGER).await;
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(event) => batch.push(event),
                    Err(_) => break,
                }
            }
        }
        if let Err(error) = write_batch(&platform, &batch).await {
            tracing::warn!(%error, events = batch.len(), "could not store function logs");
        }
        batch.clear();
    }
}

async fn write_batch(platform: &Platform, batch: &[Event]) -> Result<(), FunctionsError> {
    let client = platform.control().get().await?;
    let lines: Vec<&LogLine> = batch
        .iter()
        .filter_map(|e| match e {
            Event::Log(l) => Some(l),
            Event::Invocation(_) => None,
        })
        .collect();
    let inv: Vec<&InvocationRecord> = batch
        .iter()
        .filter_map(|e| match e {
            Event::Invocation(r) => Some(r),
            Event::Log(_) => None,
        })
        .collect();
    if !inv.is_empty() {
        let ids: Vec<Uuid> = inv.iter().map(|r| r.id).collect();
        let projects: Vec<Uuid> = inv.iter().map(|r| r.project_id).collect();
        let slugs: Vec<&str> = inv.iter().map(|r| r.slug.as_str()).collect();
        let versions: Vec<Option<i32>> = inv.iter().map(|r| r.version).collect();
        let requests: Vec<Option<&str>> = inv.iter().map(|r| r.request_id.as_deref()).collect();
        let triggers: Vec<&str> = inv.iter().map(|r| r.trigger).collect();
        let methods: Vec<&str> = inv.iter().map(|r| r.method.as_str()).collect();
        let paths: Vec<&str> = inv.iter().map(|r| r.path.as_str()).collect();
        let statuses: Vec<i32> = inv.iter().map(|r| r.status).collect();
        let errors: Vec<Option<&str>> = inv.iter().map(|r| r.error.as_deref()).collect();
        let durations: Vec<i32> = inv.iter().map(|r| r.duration_ms).collect();
        let starts: Vec<DateTime<Utc>> = inv.iter().map(|r| r.started_at).collect();
        // Only rows of projects that still exist (a deleted project's late records are dropped).
        let insert = client
            .prepare_cached(
                "insert into function_invocations \
                   (id, project_id, slug, version, request_id, trigger, method, path, status, error, duration_ms, started_at) \
                 select u.* from unnest($1::uuid[], $2::uuid[], $3::text[], $4::int[], $5::text[], $6::text[], \
                                        $7::text[], $8::text[], $9::int[], $10::text[], $11::int[], $12::timestamptz[]) \
                   as u(id, project_id, slug, version, request_id, trigger, method, path, status, error, duration_ms, started_at) \
                 where exists (select 1 from projects p where p.id = u.project_id) \
                 on conflict (id) do nothing",
            )
            .await?;
        client
            .execute(
                &insert,
                &[
                    &ids, &projects, &slugs, &versions, &requests, &triggers, &methods, &paths,
                    &statuses, &errors, &durations, &starts,
                ],
            )
            .await?;
    }
    if !lines.is_empty() {
        let projects: Vec<Uuid> = lines.iter().map(|l| l.project_id).collect();
        let slugs: Vec<&str> = lines.iter().map(|l| l.slug.as_str()).collect();
        let versions: Vec<Option<i32>> = lines.iter().map(|l| l.version).collect();
        let invocations: Vec<Option<Uuid>> = lines.iter().map(|l| l.invocation_id).collect();
        let levels: Vec<&str> = lines.iter().map(|l| l.level.as_str()).collect();
        let messages: Vec<&str> = lines.iter().map(|l| l.message.as_str()).collect();
        let ats: Vec<DateTime<Utc>> = lines.iter().map(|l| l.at).collect();
        let insert = client
            .prepare_cached(
                // Ids follow the order lines were written in (listings sort by
                // id): the join may reorder rows, `order by n` restores it.
                "insert into function_logs (project_id, slug, version, invocation_id, level, message, at) \
                 select u.project_id, u.slug, u.version, u.invocation_id, u.level, u.message, u.at \
                 from unnest($1::uuid[], $2::text[], $3::int[], $4::uuid[], $5::text[], $6::text[], $7::timestamptz[]) \
                   with ordinality as u(project_id, slug, version, invocation_id, level, message, at, n) \
                 where exists (select 1 from projects p where p.id = u.project_id) \
                 order by u.n",
            )
            .await?;
        client
            .execute(
                &insert,
                &[
                    &projects,
                    &slugs,
                    &versions,
                    &invocations,
                    &levels,
                    &messages,
                    &ats,
                ],
            )
            .await?;
    }
    Ok(())
}

/// Advisory lock key of the pruning pass (7201: migrations, 7202: projects).
const PRUNE_LOCK: i64 = 7203;

/// How much of the function logs is kept.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Age limit in days (0: none).
    pub days: u32,
    /// Rows kept per function / per schedule (0: no cap).
    pub max_rows: u32,
}

impl Retention {
    /// The server's settings.
    pub fn from_config(config: &crate::config::Config) -> Self {
        Retention {
            days: config.functions.functions_log_retention_days,
            max_rows: config.functions.functions_log_max_rows,
        }
    }
}

/// Rows deleted by one [`prune`] pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Log lines.
    pub logs: u64,
    /// Invocation records.
    pub invocations: u64,
    /// Schedule runs.
    pub runs: u64,
}

/// Deletes what `keep` does not keep. `None` when another node holds the
/// pruning lock (it is doing this pass).
pub async fn prune(platform: &Platform, keep: Retention) -> Result<Option<Pruned>, FunctionsError> {
    let mut client = platform.control().get().await?;
    let tx = client.transaction().await?;
    let locked: bool = tx
        .query_one("select pg_try_advisory_xact_lock($1)", &[&PRUNE_LOCK])
        .await?
        .get(0);
    if !locked {
        return Ok(None);
    }
    let mut pruned = Pruned::default();
    if keep.days > 0 {
        let days = i32::try_from(keep.days).unwrap_or(i32::MAX);
        let cutoff = "now() - make_interval(days => $1)";
        pruned.logs += tx
            .execute(
                &format!("delete from function_logs where at < {cutoff}"),
                &[&days],
            )
            .await?;
        pruned.invocations += tx
            .execute(
                &format!("delete from function_invocations where started_at < {cutoff}"),
                &[&days],
            )
            .await?;
        pruned.runs += tx
            .execute(
                &format!("delete from function_schedule_runs where started_at < {cutoff}"),
                &[&days],
            )
            .await?;
    }
    if keep.max_rows > 0 {
        let cap = i64::from(keep.max_rows);
        // The newest row beyond the cap, found on the (project_id, slug, …) indexes.
        pruned.logs += tx
            .execute(
                "with cut as (select f.project_id, f.slug, \
                   (select l.id from function_logs l where l.project_id = f.project_id and l.slug = f.slug \
                    order by l.id desc offset $1 limit 1) as id from functions f) \
                 delete from function_logs l using cut \
                 where cut.id is not null and l.project_id = cut.project_id and l.slug = cut.slug and l.id <= cut.id",
                &[&cap],
            )
            .await?;
        pruned.invocations += tx
            .execute(
                "with cut as (select f.project_id, f.slug, \
                   (select i.started_at from function_invocations i where i.project_id = f.project_id and i.slug = f.slug \
                    order by i.started_at desc offset $1 limit 1) as at from functions f) \
                 delete from function_invocations i using cut \
                 where cut.at is not null and i.project_id = cut.project_id and i.slug = cut.slug and i.started_at <= cut.at",
                &[&cap],
            )
            .await?;
        pruned.runs += tx
            .execute(
                "with cut as (select s.id, \
                   (select r.tick_at from function_schedule_runs r where r.schedule_id = s.id \
                    order by r.tick_at desc offset $1 limit 1) as at from function_schedules s) \
                 delete from function_schedule_runs r using cut \
                 where cut.at is not null and r.schedule_id = cut.id and r.tick_at <= cut.at",
                &[&cap],
            )
            .await?;
    }
    tx.commit().await?;
    Ok(Some(pruned))
}

/// The pruning loop of one node (spawned by [`crate::app::serve`]).
pub async fn run_pruner(platform: Platform) {
    let config = platform.config();
    let keep = Retention::from_config(config);
    if keep.days == 0 && keep.max_rows == 0 {
        return;
    }
    let every = Duration::from_millis(config.functions.functions_log_prune_interval_ms.max(50));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match prune(&platform, keep).await {
            Ok(Some(p)) if p != Pruned::default() => tracing::debug!(
                logs = p.logs,
                invocations = p.invocations,
                runs = p.runs,
                "pruned function logs"
            ),
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "could not prune function logs"),
        }
    }
}

/// Filters of `GET /admin/v1/functions/{slug}/logs` and `/invocations`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
pub struct LogQuery {
    /// Only this invocation.
    pub invocation_id: Option<Uuid>,
    /// Only the invocation(s) of this request id (`x-request-id`).
    pub request_id: Option<String>,
    /// Only this level (`log`, `info`, `warn`, `error`, `debug`).
    pub level: Option<String>,
    /// Only this HTTP status (invocations).
    pub status: Option<i32>,
    /// Only entries at or after this time (RFC 3339).
    pub since: Option<DateTime<Utc>>,
    /// Only messages containing this text.
    pub search: Option<String>,
    /// At most this many, newest first (default 100, at most 1000).
    pub limit: Option<i64>,
}

/// One stored log line.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LogEntry {
    /// Monotonic id.
    pub id: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// Level.
    pub level: String,
    /// Text.
    pub message: String,
    /// The invocation, when the line belongs to one.
    pub invocation_id: Option<Uuid>,
    /// The version that printed it.
    pub version: Option<i32>,
}

/// One stored invocation.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InvocationEntry {
    /// Invocation id.
    pub id: Uuid,
    /// Request id.
    pub request_id: Option<String>,
    /// Version.
    pub version: Option<i32>,
    /// `http` or `schedule`.
    pub trigger: String,
    /// Method.
    pub method: String,
    /// Path.
    pub path: String,
    /// Status.
    pub status: i32,
    /// Error code, if any.
    pub error: Option<String>,
    /// Duration in ms.
    pub duration_ms: i32,
    /// Start.
    pub started_at: DateTime<Utc>,
}

fn limit(q: &LogQuery) -> i64 {
    q.limit.unwrap_or(100).clamp(1, 1000)
}

/// Log lines of one function, newest first.
pub async fn query_logs(
    platform: &Platform,
    project_id: Uuid,
    slug: &str,
    q: &LogQuery,
) -> Result<Vec<LogEntry>, FunctionsError> {
    let client = platform.control().get().await?;
    let rows = client
        .query(
            "select l.id, l.at, l.level, l.message, l.invocation_id, l.version from function_logs l \
             where l.project_id = $1 and l.slug = $2 \
               and ($3::uuid is null or l.invocation_id = $3) \
               and ($4::text is null or l.invocation_id in \
                    (select i.id from function_invocations i where i.project_id = $1 and i.request_id = $4)) \
               and ($5::text is null or l.level = $5) \
               and ($6::timestamptz is null or l.at >= $6) \
               and ($7::text is null or strpos(l.message, $7) > 0) \
             order by l.id desc limit $8",
            &[
                &project_id,
                &slug,
                &q.invocation_id,
                &q.request_id,
                &q.level,
                &q.since,
                &q.search,
                &limit(q),
            ],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| LogEntry {
            id: r.get(0),
            at: r.get(1),
            level: r.get(2),
            message: r.get(3),
            invocation_id: r.get(4),
            version: r.get(5),
        })
        .collect())
}

/// Invocations of one function, newest first.
pub async fn query_invocations(
    platform: &Platform,
    project_id: Uuid,
    slug: &str,
    q: &LogQuery,
) -> Result<Vec<InvocationEntry>, FunctionsError> {
    let client = platform.control().get().await?;
    let rows = client
        .query(
            "select id, request_id, version, trigger, method, path, status, error, duration_ms, started_at \
             from function_invocations \
             where project_id = $1 and slug = $2 \
               and ($3::uuid is null or id = $3) \
               and ($4::text is null or request_id = $4) \
               and ($5::int is null or status = $5) \
               and ($6::timestamptz is null or started_at >= $6) \
             order by started_at desc limit $7",
            &[
                &project_id,
                &slug,
                &q.invocation_id,
                &q.request_id,
                &q.status,
                &q.since,
                &limit(q),
            ],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| InvocationEntry {
            id: r.get(0),
            request_id: r.get(1),
            version: r.get(2),
            trigger: r.get(3),
            method: r.get(4),
            path: r.get(5),
            status: r.get(6),
            error: r.get(7),
            duration_ms: r.get(8),
            started_at: r.get(9),
        })
        .collect())
}
