//! Metering and quotas of the AI gateway, with their state in the project
//! database so they hold across nodes.
//!
//! - [`Quota::reserve`] runs before the upstream call: requests-per-minute
//!   counters are incremented only while under their limit, and the call's
//!   estimated tokens (prompt text / 4 + `max_tokens`) are reserved against
//!   the tokens-per-day counters the same way (one conditional upsert each,
//!   in one transaction, so two nodes can never both take the last slot).
//! - [`Usage`] is what a call cost; [`record`] writes it to `ai.usage` and
//!   reconciles the day's token counters with the real figure.
//! - When the upstream reports no usage, tokens are counted with tiktoken
//!   (`o200k_base`) and the row is marked `estimated`: streamed calls are
//!   never recorded as free.

use std::time::Duration;

use chrono::{DateTime, DurationRound as _, TimeDelta, Utc};
use deadpool_postgres::Pool;
use serde_json::Value;

use super::error::{AiError, AiResult};
use super::settings::AiSettings;

/// Who is calling, for metering and per-user quotas.
#[derive(Debug, Clone)]
pub struct Subject {
    /// `auth.uid()` of a signed-in user.
    pub user_id: Option<String>,
    /// `anon`, `authenticated` or `service_role`.
    pub role: String,
}

/// What one call cost and how it went.
#[derive(Debug, Clone, Default)]
pub struct Usage {
    /// `chat.completions`, `embeddings` or `images.generations`.
    pub endpoint: &'static str,
    /// The model sent upstream (after aliases).
    pub model: String,
    /// Provider that answered (or was tried last).
    pub upstream: Option<String>,
    /// Prompt (input) tokens.
    pub prompt_tokens: i64,
    /// Completion (output) tokens.
    pub completion_tokens: i64,
    /// Counted by the gateway because the upstream reported none.
    pub estimated: bool,
    /// Whole call, in milliseconds.
    pub latency_ms: i32,
    /// Time to the first streamed event, in milliseconds.
    pub ttft_ms: Option<i32>,
    /// Status answered to the client (499: client went away).
    pub status: i32,
    /// Error code, when the call failed.
    pub error: Option<String>,
}

impl Usage {
    /// Reads OpenAI's `usage` object (chat: prompt/completion; images: input/output).
    pub fn take_reported(&mut self, usage: &Value) -> bool {
        let num = |k: &str| usage.get(k).and_then(Value::as_i64);
        let prompt = num("prompt_tokens").or_else(|| num("input_tokens"));
        let completion = num("completion_tokens").or_else(|| num("output_tokens"));
        if prompt.is_none() && completion.is_none() && num("total_tokens").is_none() {
            return false;
        }
        self.prompt_tokens = prompt.unwrap_or(0);
        self.completion_tokens = completion
            .unwrap_or_else(|| num("total_tokens").unwrap_or(0) - self.prompt_tokens)
            .max(0);
        self.estimated = false;
        true
    }
}

/// Text a request sends as its prompt (message contents, tool arguments,
/// embedding inputs): what token estimates are made from. Image parts are
/// not text and are not counted.
pub fn prompt_text(body: &Value) -> String {
    let mut out = String::new();
    if let Some(messages) = body.get("messages").and_then(Value::as_array) {
        for m in messages {
            push_content(&mut out, m.get("content"));
            if let Some(calls) = m.get("tool_calls").and_then(Value::as_array) {
                for c in calls {
                    push_str(&mut out, c.pointer("/function/arguments"));
                }
            }
        }
    }
    match body.get("input") {
        Some(Value::String(s)) => out.push_str(s),
        Some(Value::Array(items)) => {
            for i in items {
                match i {
                    Value::String(s) => {
                        out.push_str(s);
                        out.push('\n');
                    }
                    // Pre-tokenised input: one token per number, as 4 bytes of text.
                    Value::Array(tokens) => out.push_str(&"xxxx".repeat(tokens.len())),
                    Value::Number(_) => out.push_str("xxxx"),
                    _ => {}
                }
            }
        }
        _ => {}
    }
    push_str(&mut out, body.get("prompt"));
    out
}

fn push_str(out: &mut String, v: Option<&Value>) {
    if let Some(s) = v.and_then(Value::as_str) {
        out.push_str(s);
        out.push('\n');
    }
}

fn push_content(out: &mut String, content: Option<&Value>) {
    match content {
        Some(Value::String(s)) => {
            out.push_str(s);
            out.push('\n');
        }
        Some(Value::Array(parts)) => {
            for p in parts {
                push_str(out, p.get("text"));
            }
        }
        _ => {}
    }
}

/// Text of a completion (message contents, tool call arguments, refusals) or
/// of one streamed chunk's deltas.
pub fn completion_text(out: &mut String, response: &Value) {
    if let Some(choices) = response.get("choices").and_then(Value::as_array) {
        for c in choices {
            if let Some(m) = c.get("message") {
                push_content(out, m.get("content"));
                push_str(out, m.get("refusal"));
                if let Some(calls) = m.get("tool_calls").and_then(Value::as_array) {
                    for call in calls {
                        push_str(out, call.pointer("/function/arguments"));
                    }
                }
            }
            // Deltas are pieces of one text: joined as they are, without separators.
            if let Some(d) = c.get("delta") {
                let calls = d.get("tool_calls").and_then(Value::as_array);
                let args = calls
                    .into_iter()
                    .flatten()
                    .filter_map(|call| call.pointer("/function/arguments"));
                for piece in [d.get("content"), d.get("refusal")]
                    .into_iter()
                    .flatten()
                    .chain(args)
                {
                    if let Some(s) = piece.as_str() {
                        out.push_str(s);
                    }
                }
            }
        }
    }
}

/// Token count of `text` with OpenAI's `o200k_base` encoding. The first call
/// loads the encoding (a few hundred milliseconds), so call it off the async
/// threads ([`tokio::task::spawn_blocking`]).
pub fn count_tokens(text: &str) -> i64 {
    if text.is_empty() {
        return 0;
    }
    let n = tiktoken_rs::o200k_base_singleton()
        .encode_with_special_tokens(text)
        .len();
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Fills in estimated prompt and completion tokens (used when the upstream reported none).
pub async fn estimate(usage: &mut Usage, prompt: String, completion: String) {
    let counted = tokio::task::spawn_blocking(move || {
        // Per-message framing that OpenAI bills is small; the text is what matters.
        (count_tokens(&prompt), count_tokens(&completion))
    })
    .await;
    if let Ok((p, c)) = counted {
        usage.prompt_tokens = p;
        usage.completion_tokens = c;
        usage.estimated = true;
    }
}

/// A reservation of quota, reconciled by [`record`].
#[derive(Debug, Clone, Default)]
pub struct Quota {
    /// Subjects whose day counters hold the reservation.
    subjects: Vec<String>,
    /// Tokens reserved.
    reserved: i64,
    /// The day window the reservation is in.
    day: Option<DateTime<Utc>>,
}

fn minute_start(now: DateTime<Utc>) -> DateTime<Utc> {
    now.duration_trunc(TimeDelta::minutes(1)).unwrap_or(now)
}

fn day_start(now: DateTime<Utc>) -> DateTime<Utc> {
    now.duration_trunc(TimeDelta::days(1)).unwrap_or(now)
}

fn secs_until(end: DateTime<Utc>, now: DateTime<Utc>) -> u64 {
    u64::try_from((end - now).num_seconds()).unwrap_or(0).max(1)
}

impl Quota {
    /// Checks and takes one request and `tokens` estimated tokens from every
    /// limit that applies; 429 with `Retry-After` when one is exhausted.
    pub async fn reserve(
        pool: &Pool,
        settings: &AiSettings,
        who: &Subject,
        tokens: i64,
    ) -> AiResult<Quota> {
        let user = who.user_id.as_ref().map(|u| format!("user:{u}"));
        let mut limits: Vec<(String, &'static str, u64)> = Vec::new();
        limits.push((
            "project".into(),
            "rpm",
            settings.project_requests_per_minute,
        ));
        limits.push(("project".into(), "tpd", settings.project_tokens_per_day));
        if let Some(u) = &user {
            limits.push((u.clone(), "rpm", settings.user_requests_per_minute));
            limits.push((u.clone(), "tpd", settings.user_tokens_per_day));
        }
        limits.retain(|(_, _, limit)| *limit > 0);
        let now = Utc::now();
        let day = day_start(now);
        let mut quota = Quota {
            subjects: Vec::new(),
            reserved: tokens.max(0),
            day: Some(day),
        };
        if limits.is_empty() {
            return Ok(quota);
        }
        let mut client = pool.get().await?;
        let tx = client.transaction().await?;
        for (subject, kind, limit) in &limits {
            let limit = i64::try_from(*limit).unwrap_or(i64::MAX);
            let (window, step, retry) = if *kind == "rpm" {
                let m = minute_start(now);
                (m, 1, secs_until(m + TimeDelta::minutes(1), now))
            } else {
                (
                    day,
                    quota.reserved,
                    secs_until(day + TimeDelta::days(1), now),
                )
            };
            let taken = tx
                .query_opt(
                    "insert into ai.quota_counters as c (subject, kind, window_start, value)
                     select $1::text, $2::text, $3::timestamptz, $4::bigint where $4::bigint <= $5::bigint
                     on conflict (subject, kind, window_start)
                     do update set value = c.value + excluded.value where c.value + excluded.value <= $5::bigint
                     returning value",
                    &[subject, kind, &window, &step, &limit],
                )
                .await?;
            if taken.is_none() {
                // Dropping the transaction rolls back what was taken from other limits.
                let (what, per) = if *kind == "rpm" {
                    ("requests", "minute")
                } else {
                    ("tokens", "day")
                };
                let whose = if subject == "project" {
                    "this project"
                } else {
                    "this user"
                };
                return Err(AiError::new(
                    axum::http::StatusCode::TOO_MANY_REQUESTS,
                    "rate_limit_error",
                    "quota_exceeded",
                    format!("The AI quota of {limit} {what} per {per} for {whose} is used up."),
                )
                .with_retry_after(retry));
            }
            if *kind == "tpd" && !quota.subjects.contains(subject) {
                quota.subjects.push(subject.clone());
            }
        }
        tx.commit().await?;
        Ok(quota)
    }
}

/// Writes one usage row and reconciles the token reservation. Failures are
/// logged: metering must not fail a call that already succeeded.
pub async fn record(pool: Pool, who: Subject, usage: Usage, quota: Quota) {
    let result = async {
        let client = pool.get().await.map_err(|e| e.to_string())?;
        client
            .execute(
                "insert into ai.usage (user_id, role, endpoint, model, upstream, prompt_tokens,
                   completion_tokens, total_tokens, estimated, latency_ms, ttft_ms, status, error)
                 values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                &[
                    &who.user_id,
                    &who.role,
                    &usage.endpoint,
                    &usage.model,
                    &usage.upstream,
                    &usage.prompt_tokens,
                    &usage.completion_tokens,
                    &(usage.prompt_tokens + usage.completion_tokens),
                    &usage.estimated,
                    &usage.latency_ms,
                    &usage.ttft_ms,
                    &usage.status,
                    &usage.error,
                ],
            )
            .await
            .map_err(|e| e.to_string())?;
        let delta = usage.prompt_tokens + usage.completion_tokens - quota.reserved;
        if let Some(day) = quota.day
            && !quota.subjects.is_empty()
            && delta != 0
        {
            client
                .execute(
                    "update ai.quota_counters set value = greatest(value + $1, 0)
                     where subject = any($2) and kind = 'tpd' and window_start = $3",
                    &[&delta, &quota.subjects, &day],
                )
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok::<_, String>(())
    }
    .await;
    if let Err(error) = result {
        tracing::warn!(%error, "could not record ai usage");
    }
}

/// Usage rows deleted by one [`prune`] pass at most (a long backlog goes
/// over several passes rather than one long statement).
const PRUNE_BATCH: i64 = 10_000;

/// Deletes a project's quota windows that are over (older than two days)
/// and its usage rows older than `retention_days` (0: none). Failures are
/// logged; the next pass tries again.
pub async fn prune(pool: Pool, retention_days: u32) {
    let result = async {
        let client = pool.get().await.map_err(|e| e.to_string())?;
        client
            .execute(
                "delete from ai.quota_counters where window_start < now() - interval '2 days'",
                &[],
            )
            .await
            .map_err(|e| e.to_string())?;
        if retention_days == 0 {
            return Ok(0);
        }
        let days = i32::try_from(retention_days).unwrap_or(i32::MAX);
        client
            .execute(
                "delete from ai.usage where id in (select id from ai.usage \
                 where at < now() - make_interval(days => $1) order by at limit $2)",
                &[&days, &PRUNE_BATCH],
            )
            .await
            .map_err(|e| e.to_string())
    }
    .await;
    match result {
        Ok(0) => {}
        Ok(rows) => tracing::info!(rows, "pruned old ai usage"),
        Err(error) => tracing::warn!(%error, "could not prune ai usage"),
    }
}

/// Milliseconds as the `integer` columns store them.
pub fn millis(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn prompt_text_reads_messages_parts_and_inputs() {
        let body = json!({"messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [
                {"type": "text", "text": "what is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
            ]},
            {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{\"a\":1}"}}]}
        ]});
        let t = prompt_text(&body);
        assert!(t.contains("be brief") && t.contains("what is this?") && t.contains("{\"a\":1}"));
        assert!(!t.contains("base64"));
        assert_eq!(prompt_text(&json!({"input": ["a", "b"]})), "a\nb\n");
    }

    #[test]
    fn stream_deltas_join_without_separators() {
        let mut out = String::new();
        for piece in ["Hel", "lo", " world"] {
            completion_text(
                &mut out,
                &json!({"choices": [{"delta": {"content": piece}}]}),
            );
        }
        assert_eq!(out, "Hello world");
    }

    #[test]
    fn counts_tokens_like_openai() {
        assert_eq!(count_tokens(""), 0);
        // "hello world" is two tokens in o200k_base.
        assert_eq!(count_tokens("hello world"), 2);
    }

    #[test]
    fn reads_reported_usage() {
        let mut u = Usage::default();
        assert!(u.take_reported(
            &json!({"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8})
        ));
        assert_eq!((u.prompt_tokens, u.completion_tokens), (3, 5));
        assert!(u.take_reported(&json!({"prompt_tokens": 4, "total_tokens": 4})));
        assert_eq!((u.prompt_tokens, u.completion_tokens), (4, 0));
        assert!(!u.take_reported(&json!(null)));
    }
}
