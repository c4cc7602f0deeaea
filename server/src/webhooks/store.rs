//! Endpoints and deliveries in the project database, and the control-plane
//! index of projects that have enabled endpoints. Plain functions over a
//! Postgres client: no HTTP here.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::GenericClient;
use uuid::Uuid;

use crate::crypto::SecretBox;
use crate::outbound::{OutboundError, OutboundPolicy};

/// An endpoint as the admin API shows it (never with its secret).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Endpoint {
    /// Endpoint id.
    pub id: Uuid,
    /// Where deliveries are POSTed.
    pub url: String,
    /// Topic / event-type globs it is subscribed to.
    pub events: Vec<String>,
    /// Whether deliveries are made.
    pub enabled: bool,
    /// Free text.
    pub description: String,
    /// Why the system disabled it: `gone` (410) or `failing`; null otherwise.
    pub disabled_reason: Option<String>,
    /// Deliveries in a row that failed for good.
    pub consecutive_failures: i32,
    /// Until when the previous secret is still signed with (after a rotation).
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

const ENDPOINT_COLUMNS: &str = "id, url, events, enabled, description, disabled_reason, \
    consecutive_failures, case when previous_secret_expires_at > now() then previous_secret_expires_at end, \
    created_at, updated_at";

fn endpoint(row: &tokio_postgres::Row) -> Endpoint {
    Endpoint {
        id: row.get(0),
        url: row.get(1),
        events: row.get(2),
        enabled: row.get(3),
        description: row.get(4),
        disabled_reason: row.get(5),
        consecutive_failures: row.get(6),
        previous_secret_expires_at: row.get(7),
        created_at: row.get(8),
        updated_at: row.get(9),
    }
}

/// A delivery as the admin API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Delivery {
    /// Delivery id; the `webhook-id` header is `msg_` + this id without dashes.
    pub id: Uuid,
    /// The `webhook-id` header value (stable across retries and replays).
    pub webhook_id: String,
    /// Endpoint id.
    pub endpoint_id: Uuid,
    /// The `realtime.messages` row it came from, if any.
    pub message_id: Option<i64>,
    /// The body's `type`.
    pub event_type: String,
    /// `pending`, `succeeded` or `failed`.
    pub status: String,
    /// Attempts made so far.
    pub attempts: i32,
    /// When the next attempt is due (pending only).
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// HTTP status of the last attempt.
    pub last_status: Option<i32>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// Enqueued.
    pub created_at: DateTime<Utc>,
    /// Succeeded or failed for good.
    pub finished_at: Option<DateTime<Utc>>,
    /// The request body (only on single-delivery reads).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    /// The attempt log (only on single-delivery reads).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt_log: Option<Vec<Attempt>>,
}

/// One HTTP attempt of a delivery.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Attempt {
    /// 1-based attempt number.
    pub attempt: i32,
    /// Which node made it.
    pub node: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// HTTP status (none on timeouts and connection errors).
    pub status_code: Option<i32>,
    /// Milliseconds until the answer (or the failure).
    pub latency_ms: i32,
    /// The first bytes of the answer.
    pub response_excerpt: Option<String>,
    /// Why it failed, when it did.
    pub error: Option<String>,
}

/// The `webhook-id` of a delivery.
pub fn webhook_id(id: Uuid) -> String {
    format!("msg_{}", id.simple())
}

const DELIVERY_COLUMNS: &str = "id, endpoint_id, message_id, event_type, status, attempts, \
    case when status = 'pending' then next_attempt_at end, last_status, last_error, created_at, finished_at";

fn delivery(row: &tokio_postgres::Row) -> Delivery {
    let id: Uuid = row.get(0);
    Delivery {
        id,
        webhook_id: webhook_id(id),
        endpoint_id: row.get(1),
        message_id: row.get(2),
        event_type: row.get(3),
        status: row.get(4),
        attempts: row.get(5),
        next_attempt_at: row.get(6),
        last_status: row.get(7),
        last_error: row.get(8),
        created_at: row.get(9),
        finished_at: row.get(10),
        body: None,
        attempt_log: None,
    }
}

/// Why an endpoint's input was refused.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The URL is malformed, not http(s), or points somewhere refused.
    #[error("url: {0}")]
    Url(#[from] OutboundError),
    /// Bad `events`.
    #[error("events: {0}")]
    Events(String),
    /// Description too long.
    #[error("description: at most 1024 characters")]
    Description,
}

/// Checks a URL for an endpoint: syntax, scheme, length, and the SSRF guard
/// (IP literals now; names after resolution, when they resolve).
pub async fn check_url(policy: &OutboundPolicy, url: &str) -> Result<String, InputError> {
    if url.len() > 2048 {
        return Err(OutboundError::InvalidUrl("longer than 2048 characters".into()).into());
    }
    let parsed = policy
        .check_url_when_saved(url, std::time::Duration::from_secs(3))
        .await?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(
            OutboundError::InvalidUrl("credentials in the URL are not allowed".into()).into(),
        );
    }
    Ok(parsed.to_string())
}

/// Checks the `events` globs: 1 to 64 of them, each 1 to 255 printable characters.
pub fn check_events(events: &[String]) -> Result<(), InputError> {
    if events.is_empty() || events.len() > 64 {
        return Err(InputError::Events("between 1 and 64 patterns".into()));
    }
    for e in events {
        if e.is_empty() || e.len() > 255 || e.chars().any(char::is_control) {
            return Err(InputError::Events(format!(
                "{e:?}: 1 to 255 printable characters"
            )));
        }
    }
    Ok(())
}

fn secret_context(project: Uuid, endpoint: Uuid) -> String {
    format!("webhook-secret:{project}:{endpoint}")
}

/// A new endpoint.
pub struct NewEndpoint {
    /// Checked URL.
    pub url: String,
    /// Checked globs.
    pub events: Vec<String>,
    /// Enabled.
    pub enabled: bool,
    /// Description.
    pub description: String,
}

/// Creates an endpoint; returns it and its secret (the only time it is shown).
pub async fn create(
    db: &impl GenericClient,
    sealer: &SecretBox,
    project: Uuid,
    new: NewEndpoint,
) -> Result<(Endpoint, String), tokio_postgres::Error> {
    let id = Uuid::new_v4();
    let secret = super::sign::generate_secret();
    let sealed = sealer.encrypt_str(&secret_context(project, id), &secret);
    let row = db
        .query_one(
            &format!(
                "insert into webhooks.endpoints (id, url, events, enabled, description, secret_enc) \
                 values ($1, $2, $3, $4, $5, $6) returning {ENDPOINT_COLUMNS}"
            ),
            &[&id, &new.url, &new.events, &new.enabled, &new.description, &sealed],
        )
        .await?;
    Ok((endpoint(&row), secret))
}

/// Every endpoint, oldest first.
pub async fn list(db: &impl GenericClient) -> Result<Vec<Endpoint>, tokio_postgres::Error> {
    let rows = db
        .query(
            &format!("select {ENDPOINT_COLUMNS} from webhooks.endpoints order by created_at, id"),
            &[],
        )
        .await?;
    Ok(rows.iter().map(endpoint).collect())
}

/// One endpoint.
pub async fn get(
    db: &impl GenericClient,
    id: Uuid,
) -> Result<Option<Endpoint>, tokio_postgres::Error> {
    let row = db
        .query_opt(
            &format!("select {ENDPOINT_COLUMNS} from webhooks.endpoints where id = $1"),
            &[&id],
        )
        .await?;
    Ok(row.as_ref().map(endpoint))
}

/// Changes to an endpoint (absent = unchanged).
#[derive(Default)]
pub struct EndpointChanges {
    /// Checked URL.
    pub url: Option<String>,
    /// Checked globs.
    pub events: Option<Vec<String>>,
    /// Enable (clears the failure count and reason) or disable.
    pub enabled: Option<bool>,
    /// Description.
    pub description: Option<String>,
}

/// Applies changes; `None` when there is no such endpoint. Disabling fails
/// the endpoint's pending deliveries (replay can send them later).
pub async fn update(
    db: &impl GenericClient,
    id: Uuid,
    c: EndpointChanges,
) -> Result<Option<Endpoint>, tokio_postgres::Error> {
    let row = db
        .query_opt(
            &format!(
                "update webhooks.endpoints set \
                   url = coalesce($2, url), events = coalesce($3, events), \
                   description = coalesce($4, description), \
                   enabled = coalesce($5, enabled), \
                   disabled_reason = case when $5 then null else disabled_reason end, \
                   consecutive_failures = case when $5 then 0 else consecutive_failures end, \
                   updated_at = now() \
                 where id = $1 returning {ENDPOINT_COLUMNS}"
            ),
            &[&id, &c.url, &c.events, &c.description, &c.enabled],
        )
        .await?;
    if c.enabled == Some(false) && row.is_some() {
        fail_pending(db, id, "endpoint disabled").await?;
    }
    Ok(row.as_ref().map(endpoint))
}

/// Marks an endpoint's pending deliveries failed (it was disabled).
pub async fn fail_pending(
    db: &impl GenericClient,
    endpoint: Uuid,
    why: &str,
) -> Result<u64, tokio_postgres::Error> {
    db.execute(
        "update webhooks.deliveries set status = 'failed', last_error = $2, finished_at = now() \
         where endpoint_id = $1 and status = 'pending'",
        &[&endpoint, &why],
    )
    .await
}

/// Deletes an endpoint and its deliveries; false when there was none.
pub async fn delete(db: &impl GenericClient, id: Uuid) -> Result<bool, tokio_postgres::Error> {
    Ok(db
        .execute("delete from webhooks.endpoints where id = $1", &[&id])
        .await?
        == 1)
}

/// Replaces the secret; the old one keeps being signed with until
/// `overlap` has passed. Returns the new secret and the overlap's end.
pub async fn rotate_secret(
    db: &impl GenericClient,
    sealer: &SecretBox,
    project: Uuid,
    id: Uuid,
    overlap: std::time::Duration,
) -> Result<Option<(String, Option<DateTime<Utc>>)>, tokio_postgres::Error> {
    let secret = super::sign::generate_secret();
    let sealed = sealer.encrypt_str(&secret_context(project, id), &secret);
    let overlap_ms = i64::try_from(overlap.as_millis()).unwrap_or(i64::MAX);
    let row = db
        .query_opt(
            "update webhooks.endpoints set \
               previous_secret_enc = case when $3::bigint > 0 then secret_enc end, \
               previous_secret_expires_at = case when $3::bigint > 0 \
                 then now() + $3::bigint * interval '1 millisecond' end, \
               secret_enc = $2, updated_at = now() \
             where id = $1 returning previous_secret_expires_at",
            &[&id, &sealed, &overlap_ms],
        )
        .await?;
    Ok(row.map(|r| (secret, r.get(0))))
}

/// The secrets to sign with: the current one, then the previous one while
/// its overlap lasts. Rows that fail to decrypt are skipped (and logged).
pub fn open_secrets(
    sealer: &SecretBox,
    project: Uuid,
    endpoint: Uuid,
    current: &str,
    previous: Option<&str>,
) -> Vec<String> {
    let ctx = secret_context(project, endpoint);
    let mut out = Vec::with_capacity(2);
    for sealed in std::iter::once(current).chain(previous) {
        match sealer.decrypt_str(&ctx, sealed) {
            Ok(s) => out.push(s),
            Err(_) => tracing::error!(%endpoint, "webhook secret does not decrypt"),
        }
    }
    out
}

/// Filters of the deliveries listing.
#[derive(Debug, Default)]
pub struct DeliveryFilter {
    /// `pending`, `succeeded` or `failed`.
    pub status: Option<String>,
    /// Only deliveries created before this (paging).
    pub before: Option<DateTime<Utc>>,
    /// At most this many (1-1000).
    pub limit: i64,
}

/// An endpoint's deliveries, newest first.
pub async fn deliveries(
    db: &impl GenericClient,
    endpoint: Uuid,
    f: &DeliveryFilter,
) -> Result<Vec<Delivery>, tokio_postgres::Error> {
    let rows = db
        .query(
            &format!(
                "select {DELIVERY_COLUMNS} from webhooks.deliveries \
                 where endpoint_id = $1 and ($2::text is null or status = $2) \
                   and ($3::timestamptz is null or created_at < $3) \
                 order by created_at desc, id limit $4"
            ),
            &[&endpoint, &f.status, &f.before, &f.limit],
        )
        .await?;
    Ok(rows.iter().map(delivery).collect())
}

/// One delivery with its body and attempt log.
pub async fn delivery_detail(
    db: &impl GenericClient,
    endpoint: Uuid,
    id: Uuid,
) -> Result<Option<Delivery>, tokio_postgres::Error> {
    let Some(row) = db
        .query_opt(
            &format!(
                "select {DELIVERY_COLUMNS}, body from webhooks.deliveries \
                 where endpoint_id = $1 and id = $2"
            ),
            &[&endpoint, &id],
        )
        .await?
    else {
        return Ok(None);
    };
    let mut d = delivery(&row);
    d.body = Some(row.get(11));
    let attempts = db
        .query(
            "select attempt, node, started_at, status_code, latency_ms, response_excerpt, error \
             from webhooks.attempts where delivery_id = $1 order by attempt",
            &[&id],
        )
        .await?;
    d.attempt_log = Some(
        attempts
            .iter()
            .map(|r| Attempt {
                attempt: r.get(0),
                node: r.get(1),
                started_at: r.get(2),
                status_code: r.get(3),
                latency_ms: r.get(4),
                response_excerpt: r.get(5),
                error: r.get(6),
            })
            .collect(),
    );
    Ok(Some(d))
}

/// Makes deliveries pending again, due now, with a fresh retry schedule
/// (same `webhook-id`: receivers that already processed it can dedupe).
/// `which`: one delivery, or every failed one created since a time.
pub enum Replay {
    /// This delivery (any status but pending).
    One(Uuid),
    /// Every failed delivery of the endpoint created at or after this time.
    FailedSince(DateTime<Utc>),
}

/// Replays deliveries of `endpoint`; returns how many were queued again.
pub async fn replay(
    db: &impl GenericClient,
    endpoint: Uuid,
    which: Replay,
) -> Result<u64, tokio_postgres::Error> {
    const SET: &str = "update webhooks.deliveries set status = 'pending', next_attempt_at = now(), \
        schedule_base = attempts, finished_at = null";
    match which {
        Replay::One(id) => {
            db.execute(
                &format!("{SET} where endpoint_id = $1 and id = $2 and status <> 'pending'"),
                &[&endpoint, &id],
            )
            .await
        }
        Replay::FailedSince(since) => {
            db.execute(
                &format!("{SET} where endpoint_id = $1 and status = 'failed' and created_at >= $2"),
                &[&endpoint, &since],
            )
            .await
        }
    }
}

/// Records in the control plane how many enabled endpoints a project has,
/// and that it should be looked at now (see [`super::worker`]).
pub async fn sync_project(
    control: &impl GenericClient,
    project: Uuid,
    enabled_endpoints: i64,
) -> Result<(), tokio_postgres::Error> {
    let n = i32::try_from(enabled_endpoints).unwrap_or(i32::MAX);
    control
        .execute(
            "insert into webhook_projects (project_id, enabled_endpoints, next_due_at) \
             values ($1, $2, now()) \
             on conflict (project_id) do update \
               set enabled_endpoints = excluded.enabled_endpoints, next_due_at = now()",
            &[&project, &n],
        )
        .await?;
    Ok(())
}

/// How many endpoints of the project are enabled.
pub async fn enabled_count(db: &impl GenericClient) -> Result<i64, tokio_postgres::Error> {
    Ok(db
        .query_one("select count(*) from webhooks.endpoints where enabled", &[])
        .await?
        .get(0))
}

/// Emits an application event (`auth.user.created`, …) in the caller's
/// transaction: one delivery per enabled endpoint whose `events` match
/// `event_type`. Must run as the project's owner (the server's own
/// connection), like every write to the `webhooks` schema. Returns how many
/// deliveries were enqueued.
pub async fn emit(
    db: &impl GenericClient,
    event_type: &str,
    data: &Value,
) -> Result<i32, tokio_postgres::Error> {
    Ok(db
        .query_one("select webhooks.emit($1, $2)", &[&event_type, data])
        .await?
        .get(0))
}
