//! The delivery workers. Every node runs one [`spawn`]ed dispatcher; they
//! coordinate only through Postgres.
//!
//! **Which projects to look at.** One node may host thousands of mostly
//! idle projects, and polling each project database would keep a pool open
//! per project. The control plane's `webhook_projects` lists only projects
//! with at least one enabled endpoint (kept by the admin API and by the
//! workers when they disable an endpoint) with `next_due_at`, the earliest
//! time a node should look. Every `FERROBASE_WEBHOOK_POLL_MS` a node reads
//! the due rows (one indexed query), drains each project, then sets
//! `next_due_at` to its earliest pending retry, at most
//! `FERROBASE_WEBHOOK_IDLE_POLL_MS` away (new events can arrive at any
//! time). Projects without endpoints cost nothing.
//!
//! **Wake-ups.** The enqueue trigger also sends `NOTIFY ferrobase_webhooks`
//! in the event's transaction. A node that just delivered for a project
//! keeps a `LISTEN` connection on that project's database for a while
//! (bounded per node), so a busy project's events go out within
//! milliseconds of their commit instead of at the next poll.
//!
//! **Claiming.** A drain claims due deliveries with `FOR UPDATE SKIP
//! LOCKED`, incrementing `attempts` and pushing `next_attempt_at` forward by
//! a lease (the HTTP timeout plus a margin) in the same statement, then
//! calls the receivers outside any transaction. Results are written only if
//! `attempts` is still the claimed number, so an attempt is made by exactly
//! one node; a node killed mid-call leaves its deliveries to be claimed
//! again when the lease runs out (at-least-once, same `webhook-id`).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use tokio::sync::{Semaphore, mpsc};
use uuid::Uuid;

use super::sign::{parse_retry_after, signature_header};
use super::store::{open_secrets, webhook_id};
use crate::config::RetrySchedule;
use crate::outbound::{OutboundPolicy, Redirects, is_refusal};
use crate::state::AppState;

/// How much of a receiver's answer the delivery log keeps.
const EXCERPT_BYTES: usize = 1024;
/// Deliveries claimed at once by one drain (at most).
const MAX_BATCH: usize = 100;
/// Projects with a `LISTEN` connection open, per node.
const MAX_LISTENERS: usize = 32;
/// A listener closes after this long without a notification.
const LISTEN_IDLE: Duration = Duration::from_secs(60);

/// The worker's settings, from [`crate::Config`].
#[derive(Debug, Clone)]
pub struct Settings {
    /// Per-attempt timeout.
    pub timeout: Duration,
    /// Delays between attempts.
    pub schedule: RetrySchedule,
    /// Disable an endpoint after this many deliveries in a row failed for good.
    pub disable_after: i32,
    /// Control-plane scan interval.
    pub poll: Duration,
    /// Longest gap between looks at a project with enabled endpoints.
    pub idle_poll: Duration,
    /// Deliveries in flight per node.
    pub concurrency: usize,
    /// The SSRF policy.
    pub policy: OutboundPolicy,
}

impl Settings {
    /// From the platform config.
    pub fn from_config(c: &crate::Config) -> Self {
        Self {
            timeout: Duration::from_millis(c.webhooks.webhook_timeout_ms.max(1)),
            schedule: c.webhooks.webhook_retry_schedule.clone(),
            disable_after: i32::try_from(c.webhooks.webhook_disable_after.max(1))
                .unwrap_or(i32::MAX),
            poll: Duration::from_millis(c.webhooks.webhook_poll_ms.max(10)),
            idle_poll: Duration::from_millis(c.webhooks.webhook_idle_poll_ms.max(10)),
            concurrency: c.webhooks.webhook_concurrency.max(1),
            policy: OutboundPolicy::for_webhooks(c),
        }
    }

    /// How long a claimed attempt is reserved for its node.
    fn lease(&self) -> Duration {
        self.timeout + (self.timeout / 2).max(Duration::from_secs(2))
    }
}

struct Worker {
    app: AppState,
    settings: Settings,
    client: reqwest::Client,
    node: String,
    permits: Arc<Semaphore>,
    /// Projects being drained on this node → "look again when done".
    active: Mutex<HashMap<Uuid, bool>>,
    /// Projects with a listener on this node.
    listening: Mutex<HashSet<Uuid>>,
    wake: mpsc::UnboundedSender<(Uuid, String)>,
}

/// Starts this node's dispatcher; abort the handle to stop it (deliveries
/// in flight are then retried by any node when their lease runs out).
pub fn spawn(app: AppState) -> tokio::task::JoinHandle<()> {
    let settings = Settings::from_config(app.platform.config());
    let client = match settings
        .policy
        .client_builder(Redirects::None)
        .timeout(settings.timeout)
        .user_agent(concat!("Ferrobase-Webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(c) => c,
        Err(error) => {
            tracing::error!(%error, "webhooks: cannot build the HTTP client; deliveries are off");
            return tokio::spawn(async {});
        }
    };
    let (wake, mut woken) = mpsc::unbounded_channel();
    let worker = Arc::new(Worker {
        permits: Arc::new(Semaphore::new(settings.concurrency)),
        app,
        settings,
        client,
        node: format!("node-{}", crate::crypto::random_hex(4)),
        active: Mutex::new(HashMap::new()),
        listening: Mutex::new(HashSet::new()),
        wake,
    });
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(worker.settings.poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => match worker.due_projects().await {
                    Ok(due) => {
                        for (id, r) in due {
                            worker.clone().start_drain(id, r);
                        }
                    }
                    Err(error) => tracing::warn!(%error, "webhooks: control-plane scan failed"),
                },
                Some((id, r)) = woken.recv() => worker.clone().start_drain(id, r),
            }
        }
    })
}

type AnyError = Box<dyn std::error::Error + Send + Sync>;

/// A delivery claimed for one attempt.
struct Claimed {
    project: Uuid,
    id: Uuid,
    endpoint: Uuid,
    attempt: i32,
    run_attempt: i32,
    body: String,
    url: String,
    secret: String,
    previous: Option<String>,
}

/// What one attempt came to.
struct Outcome {
    id: Uuid,
    endpoint: Uuid,
    attempt: i32,
    started_at: DateTime<Utc>,
    latency_ms: i32,
    status: Option<u16>,
    excerpt: Option<String>,
    error: Option<String>,
    retry_after: Option<Duration>,
}

/// Where a delivery goes after an attempt.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    Succeeded,
    Retry(Duration),
    /// Retries used up.
    Exhausted,
    /// 410 Gone: the endpoint is disabled.
    Gone,
}

fn decide(schedule: &RetrySchedule, o: &Outcome, run_attempt: i32) -> Next {
    match o.status {
        Some(s) if (200..300).contains(&s) => Next::Succeeded,
        Some(410) => Next::Gone,
        _ => match schedule.next_delay(u32::try_from(run_attempt).unwrap_or(u32::MAX)) {
            Some(d) => Next::Retry(o.retry_after.map_or(d, |r| r.max(d))),
            None => Next::Exhausted,
        },
    }
}

impl Worker {
    async fn due_projects(&self) -> Result<Vec<(Uuid, String)>, AnyError> {
        let control = self.app.platform.control().get().await?;
        let rows = control
            .query(
                "select w.project_id, p.ref from webhook_projects w \
                 join projects p on p.id = w.project_id and p.status = 'ready' \
                 where w.enabled_endpoints > 0 and w.next_due_at <= now() \
                 order by w.next_due_at limit 500",
                &[],
            )
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    fn start_drain(self: Arc<Self>, id: Uuid, r: String) {
        {
            let mut active = self.active.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(again) = active.get_mut(&id) {
                *again = true;
                return;
            }
            active.insert(id, false);
        }
        tokio::spawn(async move {
            loop {
                if let Err(error) = self.drain(id, &r).await {
                    tracing::warn!(project = %r, %error, "webhooks: drain failed");
                }
                let mut active = self.active.lock().unwrap_or_else(|e| e.into_inner());
                match active.get_mut(&id) {
                    Some(again) if *again => *again = false,
                    _ => {
                        active.remove(&id);
                        break;
                    }
                }
            }
        });
    }

    async fn drain(self: &Arc<Self>, project: Uuid, r: &str) -> Result<(), AnyError> {
        let Some(tenant) = self.app.projects.get(&self.app, r).await? else {
            return Ok(());
        };
        let pool = self.app.project_pool(&tenant);
        let mut delivered = 0usize;
        loop {
            // Reserve capacity before claiming: a claimed delivery's lease
            // is already running, it must not wait for a permit.
            let first = self.permits.clone().acquire_owned().await?;
            let mut permits = vec![first];
            while permits.len() < MAX_BATCH {
                match self.permits.clone().try_acquire_owned() {
                    Ok(p) => permits.push(p),
                    Err(_) => break,
                }
            }
            let claimed = self.claim(&pool, project, permits.len()).await?;
            if claimed.is_empty() {
                break;
            }
            delivered += claimed.len();
            let attempts = claimed.into_iter().zip(permits).map(|(c, permit)| {
                let me = self.clone();
                async move {
                    let run_attempt = c.run_attempt;
                    let o = me.attempt(c).await;
                    drop(permit);
                    (o, run_attempt)
                }
            });
            let outcomes = futures_util::future::join_all(attempts).await;
            let disabled = self.record(&pool, &outcomes).await?;
            if disabled {
                let db = pool.get().await?;
                let n = super::store::enabled_count(&**db).await?;
                let control = self.app.platform.control().get().await?;
                super::store::sync_project(&**control, project, n).await?;
            }
        }
        if delivered > 0 {
            self.listen(project, r, &tenant.project.db_config);
        }
        // When to look next: the earliest pending retry, and never later
        // than the idle bound (new events may arrive any time).
        let db = pool.get().await?;
        let next: Option<DateTime<Utc>> = db
            .query_one(
                "select min(next_attempt_at) from webhooks.deliveries where status = 'pending'",
                &[],
            )
            .await?
            .get(0);
        let idle_ms = i64::try_from(self.settings.idle_poll.as_millis()).unwrap_or(1000);
        let control = self.app.platform.control().get().await?;
        control
            .execute(
                "update webhook_projects set next_due_at = \
                   least(coalesce($2::timestamptz, 'infinity'), now() + $3::bigint * interval '1 millisecond') \
                 where project_id = $1",
                &[&project, &next, &idle_ms],
            )
            .await?;
        Ok(())
    }

    async fn claim(&self, pool: &Pool, project: Uuid, n: usize) -> Result<Vec<Claimed>, AnyError> {
        let db = pool.get().await?;
        let lease_ms = i64::try_from(self.settings.lease().as_millis()).unwrap_or(60_000);
        let limit = i64::try_from(n).unwrap_or(1);
        let rows = db
            .query(
                "with due as ( \
                   select d.id from webhooks.deliveries d \
                   join webhooks.endpoints e on e.id = d.endpoint_id and e.enabled \
                   where d.status = 'pending' and d.next_attempt_at <= now() \
                   order by d.next_attempt_at limit $1 \
                   for update of d skip locked) \
                 update webhooks.deliveries d \
                    set attempts = d.attempts + 1, \
                        next_attempt_at = now() + $2::bigint * interval '1 millisecond' \
                   from due, webhooks.endpoints e \
                  where d.id = due.id and e.id = d.endpoint_id \
                 returning d.id, d.endpoint_id, d.attempts, d.attempts - d.schedule_base, \
                   d.body::text, e.url, e.secret_enc, \
                   case when e.previous_secret_expires_at > now() then e.previous_secret_enc end",
                &[&limit, &lease_ms],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| Claimed {
                project,
                id: r.get(0),
                endpoint: r.get(1),
                attempt: r.get(2),
                run_attempt: r.get(3),
                body: r.get(4),
                url: r.get(5),
                secret: r.get(6),
                previous: r.get(7),
            })
            .collect())
    }

    /// One HTTP attempt.
    async fn attempt(&self, c: Claimed) -> Outcome {
        let secrets = open_secrets(
            self.app.platform.secrets(),
            c.project,
            c.endpoint,
            &c.secret,
            c.previous.as_deref(),
        );
        let secret_refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
        let msg_id = webhook_id(c.id);
        let started_at = Utc::now();
        let started = Instant::now();
        let mut out = Outcome {
            id: c.id,
            endpoint: c.endpoint,
            attempt: c.attempt,
            started_at,
            latency_ms: 0,
            status: None,
            excerpt: None,
            error: None,
            retry_after: None,
        };
        let timestamp = started_at.timestamp();
        let signature = match signature_header(&secret_refs, &msg_id, timestamp, c.body.as_bytes())
        {
            Ok(s) if !secret_refs.is_empty() => s,
            _ => {
                out.error = Some("signing failed: the endpoint's secret is unreadable".into());
                return out;
            }
        };
        let sent = self
            .client
            .post(&c.url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", &msg_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(c.body)
            .send()
            .await;
        match sent {
            Ok(mut resp) => {
                out.status = Some(resp.status().as_u16());
                out.retry_after = resp
                    .headers()
                    .get(http::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, Utc::now()));
                let mut excerpt = Vec::new();
                while excerpt.len() < EXCERPT_BYTES {
                    match resp.chunk().await {
                        Ok(Some(chunk)) => excerpt.extend_from_slice(&chunk),
                        Ok(None) => break,
                        Err(e) => {
                            out.error = Some(describe(&e, self.settings.timeout));
                            break;
                        }
                    }
                }
                excerpt.truncate(EXCERPT_BYTES);
                out.excerpt = Some(String::from_utf8_lossy(&excerpt).into_owned());
                if resp.status().is_redirection() {
                    out.error = Some("redirects are not followed (3xx is a failure)".into());
                }
            }
            Err(e) => out.error = Some(describe(&e, self.settings.timeout)),
        }
        out.latency_ms = i32::try_from(started.elapsed().as_millis()).unwrap_or(i32::MAX);
        out
    }

    /// Writes the attempts and their consequences in one transaction.
    /// Returns whether an endpoint was disabled.
    async fn record(&self, pool: &Pool, outcomes: &[(Outcome, i32)]) -> Result<bool, AnyError> {
        let mut ids = Vec::new();
        let mut attempt_nos = Vec::new();
        let mut endpoints = Vec::new();
        let mut started = Vec::new();
        let mut latencies = Vec::new();
        let mut codes: Vec<Option<i32>> = Vec::new();
        let mut excerpts = Vec::new();
        let mut errors = Vec::new();
        let mut statuses = Vec::new();
        let mut delays: Vec<Option<i64>> = Vec::new();
        let mut succeeded: Vec<Uuid> = Vec::new();
        let mut exhausted: Vec<Uuid> = Vec::new();
        let mut gone: Vec<Uuid> = Vec::new();
        for (o, run_attempt) in outcomes {
            let next = decide(&self.settings.schedule, o, *run_attempt);
            ids.push(o.id);
            attempt_nos.push(o.attempt);
            endpoints.push(o.endpoint);
            started.push(o.started_at);
            latencies.push(o.latency_ms);
            codes.push(o.status.map(i32::from));
            excerpts.push(o.excerpt.clone());
            let error = o.error.clone().or_else(|| match o.status {
                Some(s) if !(200..300).contains(&s) => Some(format!("HTTP {s}")),
                _ => None,
            });
            errors.push(error);
            let (status, delay) = match &next {
                Next::Succeeded => ("succeeded", None),
                Next::Retry(d) => (
                    "pending",
                    Some(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
                ),
                Next::Exhausted | Next::Gone => ("failed", None),
            };
            statuses.push(status.to_owned());
            delays.push(delay);
            match next {
                Next::Succeeded => succeeded.push(o.endpoint),
                Next::Exhausted => exhausted.push(o.endpoint),
                Next::Gone => gone.push(o.endpoint),
                Next::Retry(_) => {}
            }
        }
        let mut db = pool.get().await?;
        let tx = db.transaction().await?;
        tx.execute(
            "insert into webhooks.attempts \
               (delivery_id, attempt, endpoint_id, node, started_at, latency_ms, status_code, response_excerpt, error) \
             select t.id, t.attempt, t.endpoint, $4, t.started, t.latency, t.code, t.excerpt, t.error \
             from unnest($1::uuid[], $2::int[], $3::uuid[], $5::timestamptz[], $6::int[], $7::int[], $8::text[], $9::text[]) \
               as t(id, attempt, endpoint, started, latency, code, excerpt, error) \
             on conflict (delivery_id, attempt) do nothing",
            &[
                &ids, &attempt_nos, &endpoints, &self.node, &started, &latencies, &codes, &excerpts,
                &errors,
            ],
        )
        .await?;
        tx.execute(
            "update webhooks.deliveries d set \
               status = t.status, \
               next_attempt_at = case when t.delay is null then d.next_attempt_at \
                                      else now() + t.delay * interval '1 millisecond' end, \
               last_status = t.code, last_error = t.error, \
               finished_at = case when t.status = 'pending' then null else now() end \
             from unnest($1::uuid[], $2::int[], $3::text[], $4::bigint[], $5::int[], $6::text[]) \
               as t(id, attempt, status, delay, code, error) \
             where d.id = t.id and d.attempts = t.attempt and d.status = 'pending'",
            &[&ids, &attempt_nos, &statuses, &delays, &codes, &errors],
        )
        .await?;
        if !succeeded.is_empty() {
            tx.execute(
                "update webhooks.endpoints set consecutive_failures = 0 \
                 where id = any($1) and consecutive_failures <> 0",
                &[&succeeded],
            )
            .await?;
        }
        let mut disabled: Vec<Uuid> = Vec::new();
        if !exhausted.is_empty() {
            let rows = tx
                .query(
                    "with n as (select id, count(*)::int as k from unnest($1::uuid[]) as t(id) group by id) \
                     update webhooks.endpoints e set \
                       consecutive_failures = e.consecutive_failures + n.k, \
                       enabled = case when e.consecutive_failures + n.k >= $2 then false else e.enabled end, \
                       disabled_reason = case when e.enabled and e.consecutive_failures + n.k >= $2 \
                                              then 'failing' else e.disabled_reason end, \
                       updated_at = now() \
                     from n where e.id = n.id \
                     returning e.id, e.enabled",
                    &[&exhausted, &self.settings.disable_after],
                )
                .await?;
            disabled.extend(
                rows.iter()
                    .filter(|r| !r.get::<_, bool>(1))
                    .map(|r| r.get::<_, Uuid>(0)),
            );
        }
        if !gone.is_empty() {
            let rows = tx
                .query(
                    "update webhooks.endpoints set enabled = false, disabled_reason = 'gone', \
                       updated_at = now() \
                     where id = any($1) and enabled returning id",
                    &[&gone],
                )
                .await?;
            disabled.extend(rows.iter().map(|r| r.get::<_, Uuid>(0)));
        }
        for id in &disabled {
            super::store::fail_pending(&*tx, *id, "endpoint disabled").await?;
            tracing::info!(endpoint = %id, "webhooks: endpoint disabled");
        }
        tx.commit().await?;
        Ok(!disabled.is_empty())
    }

    /// Keeps a `LISTEN` connection on a busy project's database so its next
    /// events wake this node at once (bounded; closes when quiet).
    fn listen(self: &Arc<Self>, project: Uuid, r: &str, db: &tokio_postgres::Config) {
        {
            let mut l = self.listening.lock().unwrap_or_else(|e| e.into_inner());
            if l.contains(&project) || l.len() >= MAX_LISTENERS {
                return;
            }
            l.insert(project);
        }
        let me = self.clone();
        let r = r.to_owned();
        let db = db.clone();
        tokio::spawn(async move {
            if let Err(error) = me.listen_loop(project, &r, &db).await {
                tracing::debug!(project = %r, %error, "webhooks: listener closed");
            }
            me.listening
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&project);
        });
    }

    async fn listen_loop(
        &self,
        project: Uuid,
        r: &str,
        db: &tokio_postgres::Config,
    ) -> Result<(), AnyError> {
        use futures_util::StreamExt as _;
        let (client, mut connection) = db.connect(tokio_postgres::NoTls).await?;
        let (tx, mut rx) = mpsc::unbounded_channel();
        let driver = tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(Ok(m)) = messages.next().await {
                if let tokio_postgres::AsyncMessage::Notification(_) = m
                    && tx.send(()).is_err()
                {
                    break;
                }
            }
        });
        client.batch_execute("listen ferrobase_webhooks").await?;
        // Until quiet for LISTEN_IDLE, or the connection ends.
        while let Ok(Some(())) = tokio::time::timeout(LISTEN_IDLE, rx.recv()).await {
            while rx.try_recv().is_ok() {}
            if self.wake.send((project, r.to_owned())).is_err() {
                break;
            }
        }
        driver.abort();
        Ok(())
    }
}

/// A delivery error for the log: never the URL (it may carry a token).
fn describe(e: &reqwest::Error, timeout: Duration) -> String {
    if let Some(refused) = is_refusal(e) {
        return format!("refused by the SSRF guard: {refused}");
    }
    if e.is_timeout() {
        return format!("timed out after {} ms", timeout.as_millis());
    }
    if e.is_connect() {
        return "connection failed".into();
    }
    let mut msg = String::from("request failed");
    let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = src {
        msg = format!("request failed: {s}");
        src = s.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(status: Option<u16>, retry_after: Option<Duration>) -> Outcome {
        Outcome {
            id: Uuid::nil(),
            endpoint: Uuid::nil(),
            attempt: 1,
            started_at: Utc::now(),
            latency_ms: 1,
            status,
            excerpt: None,
            error: None,
            retry_after,
        }
    }

    #[test]
    fn decisions() {
        let s = RetrySchedule::parse("1s,10s").expect("schedule");
        assert_eq!(decide(&s, &outcome(Some(204), None), 1), Next::Succeeded);
        assert_eq!(decide(&s, &outcome(Some(410), None), 1), Next::Gone);
        assert_eq!(
            decide(&s, &outcome(Some(500), None), 1),
            Next::Retry(Duration::from_secs(1))
        );
        assert_eq!(
            decide(&s, &outcome(Some(302), None), 2),
            Next::Retry(Duration::from_secs(10))
        );
        assert_eq!(decide(&s, &outcome(None, None), 3), Next::Exhausted);
        // Retry-After only ever lengthens the wait.
        assert_eq!(
            decide(&s, &outcome(Some(503), Some(Duration::from_secs(30))), 1),
            Next::Retry(Duration::from_secs(30))
        );
        assert_eq!(
            decide(&s, &outcome(Some(429), Some(Duration::from_millis(1))), 1),
            Next::Retry(Duration::from_secs(1))
        );
    }
}
