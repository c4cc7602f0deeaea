//! The gateway's core, free of axum: validate a request, resolve its model,
//! take quota, call the upstreams with fallback, meter the outcome.
//!
//! Streams are relayed chunk by chunk: the upstream's SSE is parsed by
//! async-openai (so usage and text can be metered) and each chunk is
//! re-serialised as one `data:` event. Nothing is sent to the client before
//! the first upstream event has arrived, which is what lets a failing
//! provider be replaced by the next one invisibly. After that, an upstream
//! failure or an idle upstream ends the stream with an OpenAI error event.
//! Dropping the stream (the client went away) drops the upstream request and
//! still records the call (status 499).
//!
//! Backpressure, honestly: the relay pulls one chunk at a time and writes it
//! before pulling the next, but async-openai reads the upstream SSE into an
//! unbounded channel in a task of its own, so a slow client does not slow the
//! upstream down. What can pile up is bounded by the size of one completion
//! (a model's output), and a client that goes away stops it at once.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_openai::error::{OpenAIError, StreamError};
use axum::http::StatusCode;
use bytes::Bytes;
use deadpool_postgres::Pool;
use futures_util::{Stream, StreamExt as _};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::error::{AiError, AiResult};
use super::meter::{self, Quota, Subject, Usage};
use super::settings::{AiSettings, Upstream};
use super::upstream::{ChunkStream, HttpClients, classify, timeout_error, with_fallback};

/// Limits of the gateway, from the server config.
#[derive(Debug, Clone)]
pub struct Gateway {
    /// The HTTP clients of upstream calls (project providers SSRF-guarded).
    pub http: HttpClients,
    /// Wait for an upstream's answer (or first stream event).
    pub timeout: Duration,
    /// Longest silence of a streaming upstream.
    pub idle_timeout: Duration,
    /// Age in days past which usage rows are deleted (0: never).
    pub usage_retention_days: u32,
    /// When this node last pruned each project's metering tables.
    pub pruned: Arc<Mutex<HashMap<Uuid, Instant>>>,
}

/// How often one node prunes one project's metering tables.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

impl Gateway {
    /// Whether `project`'s metering tables are due for pruning on this node
    /// (never pruned here, or over an hour ago); marks them pruned if so.
    pub fn prune_due(&self, project: Uuid) -> bool {
        let mut pruned = self.pruned.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if pruned
            .get(&project)
            .is_some_and(|at| now.duration_since(*at) < PRUNE_EVERY)
        {
            return false;
        }
        pruned.insert(project, now);
        true
    }
}

/// Everything known about one call before it goes upstream.
pub struct Call {
    /// The project database (metering, quotas).
    pub pool: Pool,
    /// The caller.
    pub who: Subject,
    /// The project's settings.
    pub settings: AiSettings,
    /// Providers in fallback order.
    pub upstreams: Vec<Upstream>,
}

/// A chat completion's answer: one JSON object, or an SSE byte stream.
pub enum ChatAnswer {
    /// `stream: false`.
    Json(Value),
    /// `stream: true`: `data: {chunk}` events, then `data: [DONE]`.
    Stream(Box<dyn Stream<Item = Result<Bytes, Infallible>> + Send + Unpin>),
}

/// Cap on completion text kept for token estimation of one stream.
const MAX_ESTIMATE_TEXT: usize = 1 << 20;

fn require_model(body: &Map<String, Value>) -> AiResult<&str> {
    match body.get("model") {
        Some(Value::String(m)) if !m.trim().is_empty() && m.len() <= 200 => Ok(m),
        Some(Value::String(_)) => Err(AiError::invalid(
            "invalid_model",
            "`model` must be 1 to 200 characters.",
        )
        .with_param("model")),
        Some(_) => {
            Err(AiError::invalid("invalid_type", "`model` must be a string.").with_param("model"))
        }
        None => Err(AiError::invalid(
            "missing_required_parameter",
            "You must provide a model parameter.",
        )
        .with_param("model")),
    }
}

/// Resolves aliases and the allow-list; writes the upstream model into `body`.
fn resolve_model(call: &Call, body: &mut Map<String, Value>) -> AiResult<String> {
    let requested = require_model(body)?;
    let model = call
        .settings
        .resolve_model(requested)
        .ok_or_else(|| AiError::model_not_found(requested))?
        .to_owned();
    body.insert("model".into(), Value::String(model.clone()));
    Ok(model)
}

fn max_output_tokens(body: &Map<String, Value>) -> i64 {
    ["max_completion_tokens", "max_tokens"]
        .iter()
        .find_map(|k| body.get(*k).and_then(Value::as_i64))
        .unwrap_or(0)
        .max(0)
}

fn spawn_record(call: &Call, usage: Usage, quota: Quota) {
    tokio::spawn(meter::record(
        call.pool.clone(),
        call.who.clone(),
        usage,
        quota,
    ));
}

fn failed(call: &Call, mut usage: Usage, quota: Quota, error: &AiError, started: Instant) {
    usage.status = i32::from(error.status.as_u16());
    usage.error = Some(error.code.clone());
    usage.latency_ms = meter::millis(started.elapsed());
    spawn_record(call, usage, quota);
}

impl Gateway {
    fn require_upstreams(call: &Call) -> AiResult<()> {
        if call.upstreams.is_empty() {
            Err(AiError::not_configured())
        } else {
            Ok(())
        }
    }

    /// `POST /chat/completions`.
    pub async fn chat(&self, call: Call, mut body: Map<String, Value>) -> AiResult<ChatAnswer> {
        let model = resolve_model(&call, &mut body)?;
        match body.get("messages") {
            Some(Value::Array(m)) if !m.is_empty() => {}
            _ => {
                return Err(AiError::invalid(
                    "invalid_value",
                    "`messages` must be a non-empty array.",
                )
                .with_param("messages"));
            }
        }
        let stream = match body.get("stream") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Err(
                    AiError::invalid("invalid_type", "`stream` must be a boolean.")
                        .with_param("stream"),
                );
            }
        };
        Self::require_upstreams(&call)?;
        let prompt = meter::prompt_text(&Value::Object(body.clone()));
        let reserve = i64::try_from(prompt.len() / 4).unwrap_or(0) + max_output_tokens(&body);
        let quota = Quota::reserve(&call.pool, &call.settings, &call.who, reserve).await?;
        let usage = Usage {
            endpoint: "chat.completions",
            model,
            ..Usage::default()
        };
        if stream {
            self.chat_stream(call, body, prompt, usage, quota).await
        } else {
            self.chat_json(call, body, prompt, usage, quota).await
        }
    }

    async fn chat_json(
        &self,
        call: Call,
        body: Map<String, Value>,
        prompt: String,
        mut usage: Usage,
        quota: Quota,
    ) -> AiResult<ChatAnswer> {
        let started = Instant::now();
        let body = Value::Object(body);
        let result = with_fallback(&self.http, &call.upstreams, self.timeout, |client| {
            let body = body.clone();
            async move { client.chat().create_byot::<Value, Value>(body).await }
        })
        .await;
        match result {
            Ok((answer, up)) => {
                usage.upstream = Some(up.name.clone());
                usage.status = 200;
                usage.latency_ms = meter::millis(started.elapsed());
                let reported = answer.get("usage").is_some_and(|u| usage.take_reported(u));
                let pool = call.pool.clone();
                let who = call.who.clone();
                let completion = if reported {
                    String::new()
                } else {
                    let mut text = String::new();
                    meter::completion_text(&mut text, &answer);
                    text
                };
                tokio::spawn(async move {
                    if !reported {
                        meter::estimate(&mut usage, prompt, completion).await;
                    }
                    meter::record(pool, who, usage, quota).await;
                });
                Ok(ChatAnswer::Json(answer))
            }
            Err((error, up)) => {
                usage.upstream = up.map(|u| u.name.clone());
                failed(&call, usage, quota, &error, started);
                Err(error)
            }
        }
    }

    async fn chat_stream(
        &self,
        call: Call,
        mut body: Map<String, Value>,
        prompt: String,
        mut usage: Usage,
        quota: Quota,
    ) -> AiResult<ChatAnswer> {
        let started = Instant::now();
        // Ask for the final usage chunk; pass it on only if the client asked too.
        let mut options = match body.remove("stream_options") {
            Some(Value::Object(o)) => o,
            _ => Map::new(),
        };
        let forward_usage = options.get("include_usage") == Some(&Value::Bool(true));
        options.insert("include_usage".into(), Value::Bool(true));
        body.insert("stream_options".into(), Value::Object(options));
        body.insert("stream".into(), Value::Bool(true));
        let body = Value::Object(body);
        let result = with_fallback(&self.http, &call.upstreams, self.timeout, |client| {
            open_stream(client, body.clone())
        })
        .await;
        let ((rest, first), up) = match result {
            Ok(opened) => opened,
            Err((error, up)) => {
                usage.upstream = up.map(|u| u.name.clone());
                failed(&call, usage, quota, &error, started);
                return Err(error);
            }
        };
        usage.upstream = Some(up.name.clone());
        usage.ttft_ms = Some(meter::millis(started.elapsed()));
        let relay = Relay {
            rest,
            first: Some(first),
            idle: self.idle_timeout,
            forward_usage,
            upstream: Arc::new(up.clone()),
            meter: StreamMeter {
                inner: Some(MeterInner {
                    pool: call.pool.clone(),
                    who: call.who.clone(),
                    usage,
                    quota,
                    prompt,
                    completion: String::new(),
                    reported: false,
                    started,
                }),
            },
            done: false,
        };
        Ok(ChatAnswer::Stream(Box::new(Box::pin(
            futures_util::stream::unfold(relay, Relay::step),
        ))))
    }

    /// `POST /embeddings`.
    pub async fn embeddings(&self, call: Call, mut body: Map<String, Value>) -> AiResult<Value> {
        let model = resolve_model(&call, &mut body)?;
        match body.get("input") {
            Some(Value::String(s)) if !s.is_empty() => {}
            Some(Value::Array(a)) if !a.is_empty() => {}
            _ => {
                return Err(AiError::invalid(
                    "invalid_value",
                    "`input` must be a non-empty string or array.",
                )
                .with_param("input"));
            }
        }
        Self::require_upstreams(&call)?;
        let prompt = meter::prompt_text(&Value::Object(body.clone()));
        let reserve = i64::try_from(prompt.len() / 4).unwrap_or(0);
        let quota = Quota::reserve(&call.pool, &call.settings, &call.who, reserve).await?;
        let usage = Usage {
            endpoint: "embeddings",
            model,
            ..Usage::default()
        };
        let body = Value::Object(body);
        self.simple(call, usage, quota, prompt, |client| {
            let body = body.clone();
            async move { client.embeddings().create_byot::<Value, Value>(body).await }
        })
        .await
    }

    /// `POST /images/generations`.
    pub async fn images(&self, call: Call, mut body: Map<String, Value>) -> AiResult<Value> {
        // `model` is optional in OpenAI's API; an allow-list makes it required.
        let model = if body.contains_key("model") || !call.settings.models.is_empty() {
            resolve_model(&call, &mut body)?
        } else {
            "default".to_owned()
        };
        match body.get("prompt") {
            Some(Value::String(p)) if !p.trim().is_empty() => {}
            _ => {
                return Err(AiError::invalid(
                    "invalid_value",
                    "`prompt` must be a non-empty string.",
                )
                .with_param("prompt"));
            }
        }
        Self::require_upstreams(&call)?;
        let prompt = meter::prompt_text(&Value::Object(body.clone()));
        let quota = Quota::reserve(&call.pool, &call.settings, &call.who, 0).await?;
        let usage = Usage {
            endpoint: "images.generations",
            model,
            ..Usage::default()
        };
        let body = Value::Object(body);
        self.simple(call, usage, quota, prompt, |client| {
            let body = body.clone();
            async move { client.images().generate_byot::<Value, Value>(body).await }
        })
        .await
    }

    /// A non-streaming call with fallback and metering.
    async fn simple<F, Fut>(
        &self,
        call: Call,
        mut usage: Usage,
        quota: Quota,
        prompt: String,
        f: F,
    ) -> AiResult<Value>
    where
        F: Fn(async_openai::Client<async_openai::config::OpenAIConfig>) -> Fut,
        Fut: Future<Output = Result<Value, OpenAIError>>,
    {
        let started = Instant::now();
        match with_fallback(&self.http, &call.upstreams, self.timeout, f).await {
            Ok((answer, up)) => {
                usage.upstream = Some(up.name.clone());
                usage.status = 200;
                usage.latency_ms = meter::millis(started.elapsed());
                let reported = answer.get("usage").is_some_and(|u| usage.take_reported(u));
                let (pool, who) = (call.pool.clone(), call.who.clone());
                // Images have no text output: only embeddings are estimated.
                let estimate = !reported && usage.endpoint == "embeddings";
                tokio::spawn(async move {
                    if estimate {
                        meter::estimate(&mut usage, prompt, String::new()).await;
                    }
                    meter::record(pool, who, usage, quota).await;
                });
                Ok(answer)
            }
            Err((error, up)) => {
                usage.upstream = up.map(|u| u.name.clone());
                failed(&call, usage, quota, &error, started);
                Err(error)
            }
        }
    }

    /// `GET /models`: the allow-list when there is one, else the first
    /// upstream's list; aliases are listed as models too.
    pub async fn models(&self, call: Call) -> AiResult<Value> {
        let mut data: Vec<Value> = if call.settings.models.is_empty() {
            Self::require_upstreams(&call)?;
            let (list, _) = with_fallback(
                &self.http,
                &call.upstreams,
                self.timeout,
                |client| async move { client.models().list_byot::<Value>().await },
            )
            .await
            .map_err(|(e, _)| e)?;
            list.get("data")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        } else {
            call.settings
                .models
                .iter()
                .map(|m| model_entry(m, "ferrobase"))
                .collect()
        };
        for alias in call.settings.aliases.keys() {
            if !data.iter().any(|m| m["id"].as_str() == Some(alias)) {
                data.push(model_entry(alias, "ferrobase-alias"));
            }
        }
        Ok(json!({"object": "list", "data": data}))
    }
}

fn model_entry(id: &str, owner: &str) -> Value {
    json!({"id": id, "object": "model", "created": 0, "owned_by": owner})
}

/// Opens a stream and waits for its first event, so that a provider failing
/// before it has said anything can still be replaced.
async fn open_stream(
    client: async_openai::Client<async_openai::config::OpenAIConfig>,
    body: Value,
) -> Result<(ChunkStream, Value), OpenAIError> {
    let mut stream: ChunkStream = client
        .chat()
        .create_stream_byot::<Value, Value>(body)
        .await?;
    match stream.next().await {
        Some(Ok(first)) => Ok((stream, first)),
        Some(Err(e)) => Err(e),
        None => Err(OpenAIError::StreamError(Box::new(
            StreamError::EventStream("the stream ended before its first event".into()),
        ))),
    }
}

/// Metering state of one stream; records the call when dropped unfinished.
struct StreamMeter {
    inner: Option<MeterInner>,
}

struct MeterInner {
    pool: Pool,
    who: Subject,
    usage: Usage,
    quota: Quota,
    prompt: String,
    completion: String,
    reported: bool,
    started: Instant,
}

impl StreamMeter {
    fn observe(&mut self, chunk: &Value) {
        let Some(m) = self.inner.as_mut() else {
            return;
        };
        if let Some(u) = chunk.get("usage").filter(|u| u.is_object())
            && m.usage.take_reported(u)
        {
            m.reported = true;
        }
        if !m.reported && m.completion.len() < MAX_ESTIMATE_TEXT {
            meter::completion_text(&mut m.completion, chunk);
        }
    }

    fn finish(&mut self, status: StatusCode, error: Option<&str>) {
        let Some(mut m) = self.inner.take() else {
            return;
        };
        m.usage.status = i32::from(status.as_u16());
        m.usage.error = error.map(str::to_owned);
        m.usage.latency_ms = meter::millis(m.started.elapsed());
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        rt.spawn(async move {
            if !m.reported {
                meter::estimate(&mut m.usage, m.prompt, m.completion).await;
            }
            meter::record(m.pool, m.who, m.usage, m.quota).await;
        });
    }
}

impl Drop for StreamMeter {
    fn drop(&mut self) {
        // 499: the client closed the connection before the stream ended.
        self.finish(
            StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
            Some("client_closed"),
        );
    }
}

/// The relay from an upstream stream to the client's SSE body.
struct Relay {
    rest: ChunkStream,
    first: Option<Value>,
    idle: Duration,
    forward_usage: bool,
    upstream: Arc<Upstream>,
    meter: StreamMeter,
    done: bool,
}

fn event(data: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(data.len() + 8);
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

impl Relay {
    async fn step(mut self) -> Option<(Result<Bytes, Infallible>, Self)> {
        loop {
            if self.done {
                return None;
            }
            let next = match self.first.take() {
                Some(first) => Ok(Some(Ok(first))),
                None => tokio::time::timeout(self.idle, self.rest.next()).await,
            };
            let failure = match next {
                Ok(Some(Ok(chunk))) if chunk.get("error").is_some_and(Value::is_object) => {
                    // The upstream reported a failure in the stream: relay it and stop.
                    self.done = true;
                    let code = chunk
                        .pointer("/error/code")
                        .and_then(Value::as_str)
                        .unwrap_or("upstream_error")
                        .to_owned();
                    self.meter.finish(StatusCode::BAD_GATEWAY, Some(&code));
                    let mut chunk = chunk;
                    if let Some(Value::String(m)) = chunk.pointer_mut("/error/message") {
                        *m = super::error::redact(m, self.upstream.api_key.as_deref());
                    }
                    let data = serde_json::to_vec(&chunk).unwrap_or_default();
                    return Some((Ok(event(&data)), self));
                }
                Ok(Some(Ok(mut chunk))) => {
                    self.meter.observe(&chunk);
                    if !self.forward_usage
                        && let Some(obj) = chunk.as_object_mut()
                    {
                        let usage_only = obj
                            .get("choices")
                            .and_then(Value::as_array)
                            .is_some_and(Vec::is_empty)
                            && obj.get("usage").is_some_and(Value::is_object);
                        if usage_only {
                            continue;
                        }
                        obj.remove("usage");
                    }
                    let Ok(data) = serde_json::to_vec(&chunk) else {
                        continue;
                    };
                    return Some((Ok(event(&data)), self));
                }
                Ok(None) => {
                    self.done = true;
                    self.meter.finish(StatusCode::OK, None);
                    return Some((Ok(event(b"[DONE]")), self));
                }
                Ok(Some(Err(e))) => classify(&e, &self.upstream).error,
                Err(_) => timeout_error(&self.upstream),
            };
            self.done = true;
            self.meter.finish(failure.status, Some(&failure.code));
            let data = serde_json::to_vec(&failure.body()).unwrap_or_default();
            return Some((Ok(event(&data)), self));
        }
    }
}
