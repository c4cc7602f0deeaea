//! [`AiClient`]: the project's OpenAI-compatible AI gateway under
//! `{project}/ai/v1`, from [`Client::ai`], and its administration
//! ([`AiAdmin`]: settings, providers, usage) under `{project}/admin/v1/ai`.
//!
//! Requests and answers are OpenAI's JSON, passed through as
//! [`serde_json::Value`], so every model parameter works without waiting for
//! this SDK. Errors (OpenAI's `{"error": {message, type, code}}`) become
//! [`Error::Api`] with the `code` and `message` filled in.
//!
//! ```no_run
//! # async fn demo(client: ferrobase::Client) -> ferrobase::Result<()> {
//! use futures_util::StreamExt as _;
//! use serde_json::json;
//! let ai = client.ai();
//! let answer = ai.chat(json!({"model": "fast", "messages": [{"role": "user", "content": "Hi"}]})).await?;
//! println!("{}", answer["choices"][0]["message"]["content"]);
//! let mut stream = ai.chat_stream(json!({"model": "fast", "messages": [{"role": "user", "content": "Hi"}]})).await?;
//! while let Some(chunk) = stream.next().await {
//!     print!("{}", chunk?["choices"][0]["delta"]["content"].as_str().unwrap_or(""));
//! }
//! # Ok(()) }
//! ```

use std::pin::Pin;

use futures_util::{Stream, StreamExt as _};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::client::Client;
use crate::error::{Error, Result};
use crate::http;

impl Client {
    /// The AI gateway of this project. Call it with a signed-in user's token
    /// ([`Client::with_access_token`]) or the service-role key; the anon key
    /// works only when the project allows it.
    pub fn ai(&self) -> AiClient {
        AiClient {
            client: self.clone(),
        }
    }
}

/// Chat completions, embeddings, images and models through the gateway.
#[derive(Debug, Clone)]
pub struct AiClient {
    client: Client,
}

/// A streamed chat completion: one OpenAI `chat.completion.chunk` per item;
/// it ends after `data: [DONE]`. An error event from the gateway (the
/// upstream failed mid-stream) is yielded as an [`Error::Api`].
pub type ChatStream = Pin<Box<dyn Stream<Item = Result<Value>> + Send>>;

/// Filters of [`AiAdmin::usage`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct UsageQuery {
    /// Start (a date `YYYY-MM-DD` or an RFC 3339 time), inclusive; default 30 days before `to`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// End, exclusive; default now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// `user`, `model` or `day`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_by: Option<String>,
}

/// Totals of one usage group (or of all calls).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct UsageFigures {
    /// The group (user id or role, model, or day); absent in totals.
    #[serde(default)]
    pub key: Option<String>,
    /// Calls.
    pub requests: i64,
    /// Prompt tokens.
    pub prompt_tokens: i64,
    /// Completion tokens.
    pub completion_tokens: i64,
    /// Prompt + completion tokens.
    pub total_tokens: i64,
    /// Calls whose tokens the gateway counted itself (the upstream reported none).
    pub estimated_requests: i64,
    /// Calls answered with an error status.
    pub errors: i64,
}

/// Answer of [`AiAdmin::usage`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Usage {
    /// Start of the period (RFC 3339).
    pub from: String,
    /// End of the period (RFC 3339).
    pub to: String,
    /// All calls of the period.
    pub totals: UsageFigures,
    /// Per group, when `group_by` was given.
    pub groups: Vec<UsageFigures>,
}

impl AiClient {
    async fn post(&self, path: &str, body: &Value) -> Result<Value> {
        let request = self
            .client
            .request(Method::POST, path)?
            .json(body)
            .build()?;
        let response = self.client.execute(request).await?.error_for_status()?;
        http::decode_json(&response.body)
    }

    /// `POST /ai/v1/chat/completions` (non-streaming: `stream` is set to false).
    pub async fn chat(&self, mut request: Value) -> Result<Value> {
        if let Some(obj) = request.as_object_mut() {
            obj.insert("stream".into(), Value::Bool(false));
        }
        self.post("ai/v1/chat/completions", &request).await
    }

    /// `POST /ai/v1/chat/completions` with `stream: true`: the chunks as they arrive.
    pub async fn chat_stream(&self, mut request: Value) -> Result<ChatStream> {
        if let Some(obj) = request.as_object_mut() {
            obj.insert("stream".into(), Value::Bool(true));
        }
        let request = self
            .client
            .request(Method::POST, "ai/v1/chat/completions")?
            .json(&request)
            .build()?;
        let response = self.client.http_client().execute(request).await?;
        if !response.status().is_success() {
            let status = response.status();
            let body = response.bytes().await?;
            return Err(Error::from_response(status, &body));
        }
        let bytes = response.bytes_stream();
        let state = (Box::pin(bytes), Vec::<u8>::new(), false);
        Ok(Box::pin(futures_util::stream::unfold(
            state,
            |(mut bytes, mut buf, done)| async move {
                if done {
                    return None;
                }
                loop {
                    if let Some(end) = find_event_end(&buf) {
                        let event: Vec<u8> = buf.drain(..end + 2).collect();
                        match parse_event(&event) {
                            Some(Event::Done) => return None,
                            Some(Event::Chunk(v)) => return Some((Ok(v), (bytes, buf, false))),
                            Some(Event::Error(e)) => return Some((Err(e), (bytes, buf, true))),
                            None => continue,
                        }
                    }
                    match bytes.next().await {
                        Some(Ok(more)) => buf.extend_from_slice(&more),
                        Some(Err(e)) => return Some((Err(Error::Http(e)), (bytes, buf, true))),
                        None => return None,
                    }
                }
            },
        )))
    }

    /// `POST /ai/v1/embeddings`.
    pub async fn embeddings(&self, request: Value) -> Result<Value> {
        self.post("ai/v1/embeddings", &request).await
    }

    /// `POST /ai/v1/images/generations`.
    pub async fn images(&self, request: Value) -> Result<Value> {
        self.post("ai/v1/images/generations", &request).await
    }

    /// `GET /ai/v1/models`: the ids of the models this project may use.
    pub async fn models(&self) -> Result<Vec<String>> {
        let request = self.client.request(Method::GET, "ai/v1/models")?.build()?;
        let response = self.client.execute(request).await?.error_for_status()?;
        let list: Value = http::decode_json(&response.body)?;
        Ok(list["data"]
            .as_array()
            .map(|models| {
                models
                    .iter()
                    .filter_map(|m| m["id"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Administration of the gateway (needs the service-role key).
    pub fn admin(&self) -> AiAdmin {
        AiAdmin {
            client: self.client.clone(),
        }
    }
}

enum Event {
    Chunk(Value),
    Error(Error),
    Done,
}

/// Index of the blank line ending the first event in `buf` (`\n\n`).
fn find_event_end(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\n\n")
}

/// One SSE event: its `data:` lines joined.
fn parse_event(event: &[u8]) -> Option<Event> {
    let text = String::from_utf8_lossy(event);
    let data: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| d.strip_prefix(' ').unwrap_or(d))
        .collect();
    if data.is_empty() {
        return None;
    }
    let data = data.join("\n");
    if data == "[DONE]" {
        return Some(Event::Done);
    }
    match serde_json::from_str::<Value>(&data) {
        Ok(v) if v.get("error").is_some_and(Value::is_object) => Some(Event::Error(
            Error::from_response(reqwest::StatusCode::BAD_GATEWAY, data.as_bytes()),
        )),
        Ok(v) => Some(Event::Chunk(v)),
        Err(e) => Some(Event::Error(Error::Decode(format!("stream event: {e}")))),
    }
}

/// Settings, providers and usage of the AI gateway (`{project}/admin/v1/ai`).
#[derive(Debug, Clone)]
pub struct AiAdmin {
    client: Client,
}

impl AiAdmin {
    async fn send(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value> {
        let mut builder = self.client.request(method, path)?;
        if let Some(b) = body {
            builder = builder.json(b);
        }
        let response = self
            .client
            .execute(builder.build()?)
            .await?
            .error_for_status()?;
        http::decode_json(&response.body)
    }

    /// The gateway settings (allow-list, aliases, anon access, quotas).
    pub async fn settings(&self) -> Result<Value> {
        self.send(Method::GET, "admin/v1/ai/settings", None).await
    }

    /// Changes the settings given in `patch` (e.g. `{"aliases": {"fast": "openai/gpt-4o-mini"}}`).
    pub async fn update_settings(&self, patch: Value) -> Result<Value> {
        self.send(Method::PUT, "admin/v1/ai/settings", Some(&patch))
            .await
    }

    /// The providers in fallback order (keys are never returned).
    pub async fn providers(&self) -> Result<Vec<Value>> {
        let v = self
            .send(Method::GET, "admin/v1/ai/providers", None)
            .await?;
        serde_json::from_value(v).map_err(|e| Error::Decode(e.to_string()))
    }

    /// Adds a provider: `{"name", "base_url", "api_key"?, "headers"?, "priority"?, "enabled"?}`.
    pub async fn create_provider(&self, provider: Value) -> Result<Value> {
        self.send(Method::POST, "admin/v1/ai/providers", Some(&provider))
            .await
    }

    /// Changes a provider (`"api_key": null` removes its key).
    pub async fn update_provider(&self, name: &str, changes: Value) -> Result<Value> {
        self.send(
            Method::PATCH,
            &format!("admin/v1/ai/providers/{name}"),
            Some(&changes),
        )
        .await
    }

    /// Deletes a provider.
    pub async fn delete_provider(&self, name: &str) -> Result<()> {
        self.send(
            Method::DELETE,
            &format!("admin/v1/ai/providers/{name}"),
            None,
        )
        .await
        .map(|_| ())
    }

    /// Calls and tokens, in total and grouped by user, model or day.
    pub async fn usage(&self, query: &UsageQuery) -> Result<Usage> {
        let mut url = self.client.endpoint(["admin", "v1", "ai", "usage"]);
        let params = serde_json::to_value(query).unwrap_or_else(|_| json!({}));
        if let Some(map) = params.as_object() {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in map {
                if let Some(v) = v.as_str() {
                    pairs.append_pair(k, v);
                }
            }
        }
        let request = self
            .client
            .http_client()
            .get(url)
            .headers(self.client.auth_headers()?)
            .build()?;
        let response = self.client.execute(request).await?.error_for_status()?;
        http::decode_json(&response.body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sse_events() {
        assert!(matches!(
            parse_event(b"data: [DONE]\n\n"),
            Some(Event::Done)
        ));
        assert!(parse_event(b": keepalive\n\n").is_none());
        let Some(Event::Chunk(v)) = parse_event(b"data: {\"a\":1}\n\n") else {
            panic!("chunk expected")
        };
        assert_eq!(v["a"], 1);
        let Some(Event::Error(e)) = parse_event(
            b"data: {\"error\":{\"message\":\"boom\",\"code\":\"upstream_timeout\"}}\n\n",
        ) else {
            panic!("error expected")
        };
        assert_eq!(e.code(), Some("upstream_timeout"));
        assert_eq!(find_event_end(b"data: x\n\ndata: y"), Some(7));
    }
}
