//! Invocation records and log lines of functions.
//!
//! Writes never sit on the request path: [`LogSink`] queues events on a
//! bounded channel and one background task inserts them in batches (each
//! batch is what queued while the previous insert ran plus `LINGER` more,
//! so a busy node writes few, large prepared statements). When the
//! queue is full (20 000 events, or `FERROBASE_FUNCTIONS_LOG_QUEUE_BYTES`
//! of them waiting or being inserted), events are dropped and counted
//! rather than slowing invocations or growing memory
//! (`ferrobase_function_log_dropped_total`, and a warning at most every
//! `DROP_WARN_EVERY`). Log lines may fill only the queue less an eighth of
//! it (`RESERVED`): that eighth is for invocation records alone, so a
//! flood of output drops lines, never the records of the invocations made
//! meanwhile (one per invocation, small: they only go when invocations
//! themselves outrun the writer). Text Postgres cannot store (NUL) is
//! replaced first ([`storable`]), so one odd line never fails a whole batch.
//!
//! **Invocation records under load.** Each function's first
//! `FERROBASE_FUNCTIONS_RECORD_EACH_PER_SEC` (100) invocations per second and
//! node are recorded one by one (`function_invocations`), and so is every
//! error (an error code or a status of 400 or more), every schedule run and
//! every invocation that printed a log line. Beyond that allowance, a
//! successful invocation is held for `HOLD` (1 s) waiting for log lines of
//! its own (lines and records travel separately); one that printed nothing
//! is then added to its (function, version, second, status) row of
//! `function_invocation_counts` (count, total and longest duration) instead
//! of a row of its own. So the per-invocation cost in Postgres stays bounded
//! under load while nothing a developer looks for disappears: failures,
//! anything with output (findable by request id through its lines), and
//! everything at low rates. A caller cannot hide a failure in the counts:
//! only a status below 400 without an error code is ever counted.
//!
//! Growth is bounded by [`prune`], run every
//! `FERROBASE_FUNCTIONS_LOG_PRUNE_INTERVAL_MS` by [`run_pruner`] on every
//! node; a transaction-scoped advisory lock makes one node at a time do the
//! work (the others skip that pass). It deletes log lines, invocation records
//! (and counts) and schedule runs older than `FERROBASE_FUNCTIONS_LOG_RETENTION_DAYS`, and
//! beyond the newest `FERROBASE_FUNCTIONS_LOG_MAX_ROWS` per function (runs:
//! per schedule).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::FunctionsError;
use crate::platform::Platform;

/// Events queued before new ones are dropped.
const QUEUE: usize = 20_000;
/// The part of the queue (in events and in bytes) that only invocation
/// records may use: log lines are dropped at `1 - 1/RESERVED` of it.
const RESERVED: usize = 8;
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

impl Event {
    /// About the memory the event holds, in bytes.
    fn size(&self) -> usize {
        match self {
            Event::Log(l) => 128 + l.slug.len() + l.level.len() + l.message.len(),
            Event::Invocation(r) => {
                256 + r.slug.len()
                    + r.method.len()
                    + r.path.len()
                    + r.request_id.as_ref().map_or(0, String::len)
                    + r.error.as_ref().map_or(0, String::len)
            }
        }
    }
}

/// `text` as Postgres can store it: NUL, which `text` cannot hold, becomes
/// U+FFFD (as invalid UTF-8 does when output is read).
pub fn storable(text: String) -> String {
    if text.contains('\0') {
        text.replace('\0', "\u{FFFD}")
    } else {
        text
    }
}

/// What the queue holds, shared by the sink's clones and the writer.
#[derive(Default)]
struct Queued {
    /// Bytes of events queued or in the batch being written.
    bytes: AtomicUsize,
    /// Events queued or in the batch being written (at least the channel's
    /// own count, so staying within the capacity means it has room).
    events: AtomicUsize,
    /// Events dropped since the start.
    dropped: AtomicU64,
}

/// Queue of records and log lines, written by a background task.
#[derive(Clone)]
pub struct LogSink {
    tx: mpsc::Sender<Event>,
    queued: Arc<Queued>,
    max_bytes: usize,
}

impl LogSink {
    /// Starts the writer task on the current Tokio runtime.
    pub fn start(platform: Platform) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let queued = Arc::new(Queued::default());
        let max_bytes = platform.config().functions.functions_log_queue_bytes;
        tokio::spawn(write_loop(platform, rx, queued.clone()));
        Self {
            tx,
            queued,
            max_bytes,
        }
    }

    /// Queues a log line (dropped when the queue, less the part kept for
    /// records, is full).
    pub fn log(&self, mut line: LogLine) {
        line.message = storable(line.message);
        let max_bytes = self.max_bytes - self.max_bytes / RESERVED;
        self.push(Event::Log(line), max_bytes, QUEUE - QUEUE / RESERVED);
    }

    /// Queues an invocation record (dropped when the whole queue is full).
    pub fn invocation(&self, record: InvocationRecord) {
        self.push(Event::Invocation(record), self.max_bytes, QUEUE);
    }

    /// Queues `event` if the queue then holds at most `max_bytes` and
    /// `max_events`.
    fn push(&self, event: Event, max_bytes: usize, max_events: usize) {
        let size = event.size();
        let bytes = self.queued.bytes.fetch_add(size, Ordering::AcqRel);
        let events = self.queued.events.fetch_add(1, Ordering::AcqRel);
        if bytes.saturating_add(size) > max_bytes
            || events >= max_events
            || self.tx.try_send(event).is_err()
        {
            self.queued.bytes.fetch_sub(size, Ordering::AcqRel);
            self.queued.events.fetch_sub(1, Ordering::AcqRel);
            self.queued.dropped.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("ferrobase_function_log_dropped_total").increment(1);
        }
    }
}

/// Least time between two warnings about dropped events.
const DROP_WARN_EVERY: Duration = Duration::from_secs(10);

/// How long the writer waits for more events after the first of a batch:
/// under load, one insert (and one commit) per this interval instead of one
/// per handful of invocations.
const LINGER: Duration = Duration::from_millis(25);
/// How long a record that may be summarised waits for log lines of its
/// invocation (lines and records travel separately: a line printed just
/// before the response ends may reach the writer after the record).
const HOLD: Duration = Duration::from_secs(1);
/// Most records held at once; beyond it the oldest are decided early.
const MAX_HELD: usize = 100_000;

/// Whether an invocation must be recorded one by one whatever the rate:
/// errors (an error code, or a 4xx/5xx status) and schedule runs.
fn always_recorded(r: &InvocationRecord) -> bool {
    r.error.is_some() || r.status >= 400 || r.trigger != "http"
}

/// What the per-second counters add up: (project, slug, version, second, status).
type CountKey = (Uuid, String, i32, i64, i32);

/// Summarised invocations of one [`CountKey`].
#[derive(Debug, Default, Clone, Copy)]
struct Count {
    count: i64,
    total_ms: i64,
    max_ms: i32,
}

/// The writer's memory between batches: per-function rates, records waiting
/// for their log lines, and which invocations printed something.
struct Recorder {
    /// Successful invocations recorded one by one per function, node and second.
    each_per_sec: u32,
    /// (second, invocations seen in it) by project and slug.
    rate: HashMap<Uuid, HashMap<String, (i64, u32)>>,
    /// Records past the allowance, in arrival order, with when they arrived.
    held: VecDeque<(Instant, InvocationRecord)>,
    /// Invocations that printed a line: this `HOLD` and the previous one.
    logged: [HashSet<Uuid>; 2],
    rotated: Instant,
}

/// What one pass of the writer stores.
#[derive(Default)]
struct Pass {
    lines: Vec<LogLine>,
    records: Vec<InvocationRecord>,
    counts: HashMap<CountKey, Count>,
}

impl Recorder {
    fn new(each_per_sec: u32) -> Self {
        Self {
            each_per_sec,
            rate: HashMap::new(),
            held: VecDeque::new(),
            logged: [HashSet::new(), HashSet::new()],
            rotated: Instant::now(),
        }
    }

    fn printed(&self, id: Uuid) -> bool {
        self.logged.iter().any(|s| s.contains(&id))
    }

    /// Counts `r` against its function's allowance for its second; `true`
    /// while within it.
    fn within_allowance(&mut self, r: &InvocationRecord) -> bool {
        if self.each_per_sec == 0 {
            return true;
        }
        let second = r.started_at.timestamp();
        let per_project = self.rate.entry(r.project_id).or_default();
        let slot = match per_project.get_mut(r.slug.as_str()) {
            Some(slot) => slot,
            None => per_project.entry(r.slug.clone()).or_insert((second, 0)),
        };
        if second > slot.0 {
            *slot = (second, 0);
        }
        slot.1 = slot.1.saturating_add(1);
        slot.1 <= self.each_per_sec
    }

    /// Sorts one batch of events into `pass`; records beyond the allowance
    /// are held.
    fn take(&mut self, batch: &mut Vec<Event>, pass: &mut Pass, now: Instant) {
        for event in batch.drain(..) {
            match event {
                Event::Log(line) => {
                    if let Some(id) = line.invocation_id {
                        self.logged[0].insert(id);
                    }
                    pass.lines.push(line);
                }
                Event::Invocation(r) => {
                    if always_recorded(&r) || self.within_allowance(&r) || self.printed(r.id) {
                        pass.records.push(r);
                    } else {
                        self.held.push_back((now, r));
                    }
                }
            }
        }
    }

    /// Decides the held records older than `HOLD` (all of them when
    /// `everything`): one by one if their invocation printed a line,
    /// otherwise added to the per-second counts.
    fn release(&mut self, pass: &mut Pass, now: Instant, everything: bool) {
        while let Some((at, _)) = self.held.front() {
            let due = everything
                || now.saturating_duration_since(*at) >= HOLD
                || self.held.len() > MAX_HELD;
            if !due {
                break;
            }
            let Some((_, r)) = self.held.pop_front() else {
                break;
            };
            if self.printed(r.id) {
                pass.records.push(r);
            } else {
                let key = (
                    r.project_id,
                    r.slug,
                    r.version.unwrap_or(0),
                    r.started_at.timestamp(),
                    r.status,
                );
                let c = pass.counts.entry(key).or_default();
                c.count += 1;
                c.total_ms += i64::from(r.duration_ms);
                c.max_ms = c.max_ms.max(r.duration_ms);
            }
        }
        if now.saturating_duration_since(self.rotated) >= HOLD {
            self.logged.swap(0, 1);
            self.logged[0].clear();
            self.rotated = now;
            let current = chrono::Utc::now().timestamp();
            for per_project in self.rate.values_mut() {
                per_project.retain(|_, (second, _)| *second >= current - 2);
            }
            self.rate.retain(|_, per_project| !per_project.is_empty());
        }
    }

    /// When the next held record is due.
    fn next_due(&self) -> Option<Instant> {
        self.held.front().map(|(at, _)| *at + HOLD)
    }
}

async fn write_loop(platform: Platform, mut rx: mpsc::Receiver<Event>, queued: Arc<Queued>) {
    let mut recorder = Recorder::new(platform.config().functions.functions_record_each_per_sec);
    let mut batch = Vec::with_capacity(BATCH);
    let mut reported = 0;
    let mut warned: Option<Instant> = None;
    loop {
        let open = match recorder.next_due() {
            Some(due) => {
                tokio::select! {
                    n = rx.recv_many(&mut batch, BATCH) => n > 0,
                    () = tokio::time::sleep_until(due.into()) => true,
                }
            }
            None => rx.recv_many(&mut batch, BATCH).await > 0,
        };
        if !batch.is_empty() && batch.len() < BATCH {
            tokio::time::sleep(LINGER).await;
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(event) => batch.push(event),
                    Err(_) => break,
                }
            }
        }
        let now = Instant::now();
        let bytes: usize = batch.iter().map(Event::size).sum();
        let taken = batch.len();
        let mut pass = Pass::default();
        recorder.take(&mut batch, &mut pass, now);
        recorder.release(&mut pass, now, !open);
        if let Err(error) = write_pass(&platform, &pass).await {
            let events = pass.lines.len() + pass.records.len() + pass.counts.len();
            tracing::warn!(%error, events, "could not store function logs");
        }
        drop(pass);
        queued.bytes.fetch_sub(bytes, Ordering::AcqRel);
        queued.events.fetch_sub(taken, Ordering::AcqRel);
        let dropped = queued.dropped.load(Ordering::Relaxed);
        if dropped > reported && warned.is_none_or(|at| at.elapsed() >= DROP_WARN_EVERY) {
            tracing::warn!(
                dropped = dropped - reported,
                "function log lines or records dropped: the queue was full \
                 (FERROBASE_FUNCTIONS_LOG_QUEUE_BYTES)"
            );
            reported = dropped;
            warned = Some(Instant::now());
        }
        if !open {
            return;
        }
    }
}

async fn write_pass(platform: &Platform, pass: &Pass) -> Result<(), FunctionsError> {
    if pass.lines.is_empty() && pass.records.is_empty() && pass.counts.is_empty() {
        return Ok(());
    }
    let client = platform.control().get().await?;
    let inv = &pass.records;
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
    if !pass.counts.is_empty() {
        let mut projects = Vec::with_capacity(pass.counts.len());
        let mut slugs = Vec::with_capacity(pass.counts.len());
        let mut versions = Vec::with_capacity(pass.counts.len());
        let mut seconds = Vec::with_capacity(pass.counts.len());
        let mut statuses = Vec::with_capacity(pass.counts.len());
        let mut counts = Vec::with_capacity(pass.counts.len());
        let mut totals = Vec::with_capacity(pass.counts.len());
        let mut maxes = Vec::with_capacity(pass.counts.len());
        for ((project, slug, version, second, status), c) in &pass.counts {
            projects.push(*project);
            slugs.push(slug.as_str());
            versions.push(*version);
            seconds.push(DateTime::<Utc>::from_timestamp(*second, 0).unwrap_or_default());
            statuses.push(*status);
            counts.push(c.count);
            totals.push(c.total_ms);
            maxes.push(c.max_ms);
        }
        // Several nodes (or passes) may count the same second: they add up.
        let upsert = client
            .prepare_cached(
                "insert into function_invocation_counts as c \
                   (project_id, slug, version, second, status, count, total_ms, max_ms) \
                 select u.* from unnest($1::uuid[], $2::text[], $3::int[], $4::timestamptz[], $5::int[], \
                                        $6::bigint[], $7::bigint[], $8::int[]) \
                   as u(project_id, slug, version, second, status, count, total_ms, max_ms) \
                 where exists (select 1 from projects p where p.id = u.project_id) \
                 on conflict (project_id, slug, second, version, status) do update \
                   set count = c.count + excluded.count, total_ms = c.total_ms + excluded.total_ms, \
                       max_ms = greatest(c.max_ms, excluded.max_ms)",
            )
            .await?;
        client
            .execute(
                &upsert,
                &[
                    &projects, &slugs, &versions, &seconds, &statuses, &counts, &totals, &maxes,
                ],
            )
            .await?;
    }
    let lines = &pass.lines;
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
    /// Invocation records and per-second invocation counts.
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
        pruned.logs += delete_older(&tx, "function_logs", "at", days).await?;
        pruned.invocations += delete_older(&tx, "function_invocations", "started_at", days).await?;
        pruned.runs += delete_older(&tx, "function_schedule_runs", "started_at", days).await?;
        pruned.invocations +=
            delete_older(&tx, "function_invocation_counts", "second", days).await?;
    }
    if keep.max_rows > 0 {
        let cap = i64::from(keep.max_rows);
        pruned.logs += cap_per_function(&tx, "function_logs", "id", cap).await?;
        pruned.invocations +=
            cap_per_function(&tx, "function_invocations", "started_at", cap).await?;
        pruned.invocations +=
            cap_per_function(&tx, "function_invocation_counts", "second", cap).await?;
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

/// Deletes the rows of `table` whose `column` is more than `days` old.
/// `table` and `column` are constants of this module, never input.
async fn delete_older(
    tx: &tokio_postgres::Transaction<'_>,
    table: &str,
    column: &str,
    days: i32,
) -> Result<u64, tokio_postgres::Error> {
    tx.execute(
        &format!("delete from {table} where {column} < now() - make_interval(days => $1)"),
        &[&days],
    )
    .await
}

/// Keeps the newest `cap` rows of each function in `table` (a per-function
/// table keyed by `project_id` and `slug`, newest by `column`): finds the
/// newest row beyond the cap on the (project_id, slug, …) indexes and deletes
/// it and everything older. `table` and `column` are constants of this
/// module, never input.
async fn cap_per_function(
    tx: &tokio_postgres::Transaction<'_>,
    table: &str,
    column: &str,
    cap: i64,
) -> Result<u64, tokio_postgres::Error> {
    tx.execute(
        &format!(
            "with cut as (select f.project_id, f.slug, \
               (select t.{column} from {table} t where t.project_id = f.project_id and t.slug = f.slug \
                order by t.{column} desc offset $1 limit 1) as at from functions f) \
             delete from {table} t using cut \
             where cut.at is not null and t.project_id = cut.project_id and t.slug = cut.slug \
               and t.{column} <= cut.at"
        ),
        &[&cap],
    )
    .await
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

/// The number of rows a query asked for: 100 by default, 1 to 1000.
fn limit(requested: Option<i64>) -> i64 {
    requested.unwrap_or(100).clamp(1, 1000)
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
                &limit(q.limit),
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
                &limit(q.limit),
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

/// Filters of `GET /admin/v1/functions/{slug}/invocation-counts`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
pub struct CountQuery {
    /// Only this HTTP status.
    pub status: Option<i32>,
    /// Only seconds at or after this time (RFC 3339).
    pub since: Option<DateTime<Utc>>,
    /// At most this many rows, newest first (default 100, at most 1000).
    pub limit: Option<i64>,
}

/// Successful invocations of one second that were counted rather than
/// recorded one by one (see the module docs).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InvocationCount {
    /// The second they started in.
    pub second: DateTime<Utc>,
    /// The version that ran.
    pub version: i32,
    /// Status answered.
    pub status: i32,
    /// How many.
    pub count: i64,
    /// Sum of their durations, in ms.
    pub total_ms: i64,
    /// The longest, in ms.
    pub max_ms: i32,
}

/// Per-second counts of one function, newest first.
pub async fn query_counts(
    platform: &Platform,
    project_id: Uuid,
    slug: &str,
    q: &CountQuery,
) -> Result<Vec<InvocationCount>, FunctionsError> {
    let client = platform.control().get().await?;
    let rows = client
        .query(
            "select second, version, status, count, total_ms, max_ms from function_invocation_counts \
             where project_id = $1 and slug = $2 \
               and ($3::int is null or status = $3) \
               and ($4::timestamptz is null or second >= $4) \
             order by second desc, version desc, status limit $5",
            &[
                &project_id,
                &slug,
                &q.status,
                &q.since,
                &limit(q.limit),
            ],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| InvocationCount {
            second: r.get(0),
            version: r.get(1),
            status: r.get(2),
            count: r.get(3),
            total_ms: r.get(4),
            max_ms: r.get(5),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(status: i32, error: Option<&str>, trigger: &'static str) -> InvocationRecord {
        InvocationRecord {
            id: Uuid::new_v4(),
            project_id: Uuid::nil(),
            slug: "f".to_owned(),
            version: Some(2),
            request_id: None,
            trigger,
            method: "GET".to_owned(),
            path: "/f".to_owned(),
            status,
            error: error.map(str::to_owned),
            duration_ms: 3,
            started_at: DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap_or_default(),
        }
    }

    fn line(id: Uuid) -> Event {
        Event::Log(LogLine {
            project_id: Uuid::nil(),
            slug: "f".to_owned(),
            version: Some(2),
            invocation_id: Some(id),
            level: "log".to_owned(),
            message: "hi".to_owned(),
            at: Utc::now(),
        })
    }

    #[test]
    fn beyond_the_allowance_only_silent_successes_are_counted() {
        let mut rec = Recorder::new(2);
        let now = Instant::now();
        let ok: Vec<InvocationRecord> = (0..6).map(|_| record(200, None, "http")).collect();
        let printed_before = ok[3].id;
        let printed_after = ok[4].id;
        let mut batch: Vec<Event> = vec![line(printed_before)];
        batch.extend(ok.iter().cloned().map(Event::Invocation));
        batch.push(Event::Invocation(record(404, None, "http")));
        batch.push(Event::Invocation(record(200, Some("stream_error"), "http")));
        batch.push(Event::Invocation(record(200, None, "schedule")));
        let mut pass = Pass::default();
        rec.take(&mut batch, &mut pass, now);
        // Two within the allowance, the one that printed first, the 404, the
        // stream error and the schedule run; three held.
        assert_eq!(pass.records.len(), 6);
        assert_eq!(rec.held.len(), 3);
        assert!(pass.counts.is_empty());

        // Not due yet: nothing decided.
        let mut pass = Pass::default();
        rec.release(&mut pass, now + HOLD / 2, false);
        assert!(pass.records.is_empty() && pass.counts.is_empty());

        // A line of a held invocation arrives late: it is recorded, the rest counted.
        let mut batch = vec![line(printed_after)];
        let mut pass = Pass::default();
        rec.take(&mut batch, &mut pass, now + HOLD / 2);
        rec.release(&mut pass, now + HOLD, false);
        assert_eq!(pass.records.len(), 1);
        assert_eq!(pass.records[0].id, printed_after);
        let counted: Vec<_> = pass.counts.iter().collect();
        assert_eq!(counted.len(), 1);
        let ((_, slug, version, second, status), c) = counted[0];
        assert_eq!(
            (slug.as_str(), *version, *second, *status),
            ("f", 2, 1_800_000_000, 200)
        );
        assert_eq!((c.count, c.total_ms, c.max_ms), (2, 6, 3));
        assert!(rec.held.is_empty());
    }

    #[test]
    fn zero_records_every_invocation_and_a_closing_writer_decides_everything() {
        let mut rec = Recorder::new(0);
        let mut batch: Vec<Event> = (0..50)
            .map(|_| Event::Invocation(record(200, None, "http")))
            .collect();
        let mut pass = Pass::default();
        rec.take(&mut batch, &mut pass, Instant::now());
        assert_eq!(pass.records.len(), 50);

        let mut rec = Recorder::new(1);
        let mut batch: Vec<Event> = (0..5)
            .map(|_| Event::Invocation(record(201, None, "http")))
            .collect();
        let mut pass = Pass::default();
        let now = Instant::now();
        rec.take(&mut batch, &mut pass, now);
        rec.release(&mut pass, now, true);
        assert_eq!(pass.records.len(), 1);
        assert_eq!(pass.counts.values().map(|c| c.count).sum::<i64>(), 4);
    }
}
