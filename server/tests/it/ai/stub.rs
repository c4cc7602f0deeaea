//! An OpenAI-compatible upstream for the gateway tests, following OpenAI's
//! documented contract (chat completions with and without streaming, the
//! final usage chunk when `stream_options.include_usage` is set, embeddings
//! in float and base64, image generation, model listing, the error shape).
//! Each instance can be told to fail, omit usage, echo the key or stall, and
//! records what it received.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use serde_json::{Value, json};

/// How a stub answers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// Answers normally, with usage.
    Ok,
    /// Answers normally but never reports usage.
    NoUsage,
    /// Answers every call with this status and an OpenAI error body.
    Fail(u16),
    /// 400 whose message echoes the bearer key it was sent.
    EchoKey,
    /// Streams: sends the first chunk, then nothing (until the client goes away).
    StallAfterFirst,
    /// Streams: the first chunk, then an error chunk from the upstream.
    FailAfterFirst,
    /// Streams slowly (one chunk per 200 ms, 50 chunks).
    Slow,
    /// Never answers (the request is read, no response is sent).
    Hang,
    /// Answers with a message (or, streaming, 64 KiB chunks) of this many bytes.
    Huge(usize),
}

/// What the stub saw.
#[derive(Default)]
pub struct Seen {
    /// Requests received.
    pub hits: AtomicUsize,
    /// Last JSON body.
    pub body: Mutex<Option<Value>>,
    /// Last headers.
    pub headers: Mutex<HeaderMap>,
    /// A stream was dropped by the gateway before it ended.
    pub cancelled: AtomicBool,
}

/// A running stub.
#[derive(Clone)]
pub struct Stub {
    /// API base (ends with `/v1`).
    pub url: String,
    /// What it saw.
    pub seen: Arc<Seen>,
}

#[derive(Clone)]
struct St {
    mode: Mode,
    seen: Arc<Seen>,
}

impl Stub {
    /// Starts a stub on a loopback port.
    pub async fn start(mode: Mode) -> Stub {
        let seen = Arc::new(Seen::default());
        let st = St {
            mode,
            seen: seen.clone(),
        };
        let app = Router::new()
            .route("/v1/chat/completions", post(chat))
            .route("/v1/embeddings", post(embeddings))
            .route("/v1/images/generations", post(images))
            .route("/v1/models", get(models))
            .with_state(st);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Stub {
            url: format!("http://{addr}/v1"),
            seen,
        }
    }

    /// Requests received so far.
    pub fn hits(&self) -> usize {
        self.seen.hits.load(Ordering::SeqCst)
    }

    /// The last body received.
    pub fn last_body(&self) -> Value {
        self.seen
            .body
            .lock()
            .unwrap()
            .clone()
            .unwrap_or(Value::Null)
    }

    /// A header of the last request.
    pub fn last_header(&self, name: &str) -> Option<String> {
        self.seen
            .headers
            .lock()
            .unwrap()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }
}

fn note(st: &St, headers: &HeaderMap, body: Option<&Value>) {
    st.seen.hits.fetch_add(1, Ordering::SeqCst);
    *st.seen.headers.lock().unwrap() = headers.clone();
    if let Some(b) = body {
        *st.seen.body.lock().unwrap() = Some(b.clone());
    }
}

/// The failure modes every endpoint shares.
fn failure(st: &St, headers: &HeaderMap) -> Option<Response> {
    match st.mode {
        Mode::Fail(status) => {
            let status = StatusCode::from_u16(status).unwrap();
            Some(
                (
                    status,
                    axum::Json(
                        json!({"error": {"message": format!("stub failure {status}"),
                        "type": "server_error", "param": null, "code": null}}),
                    ),
                )
                    .into_response(),
            )
        }
        Mode::EchoKey => {
            let auth = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .trim_start_matches("Bearer ")
                .to_owned();
            Some(
                (
                    StatusCode::BAD_REQUEST,
                    axum::Json(json!({"error": {"message": format!("Incorrect API key provided: {auth}."),
                        "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}})),
                )
                    .into_response(),
            )
        }
        _ => None,
    }
}

/// For [`Mode::Hang`]: waits forever.
async fn hang(st: &St) {
    if st.mode == Mode::Hang {
        std::future::pending::<()>().await;
    }
}

fn chunk(model: &str, delta: Value, finish: Option<&str>) -> String {
    let c = json!({"id": "chatcmpl-stub", "object": "chat.completion.chunk", "created": 1_700_000_000,
        "model": model, "system_fingerprint": "fp_stub",
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]});
    format!("data: {c}\n\n")
}

/// Sets `cancelled` when the response body is dropped before its end.
struct DropFlag(Arc<Seen>, bool);

impl Drop for DropFlag {
    fn drop(&mut self) {
        if !self.1 {
            self.0.cancelled.store(true, Ordering::SeqCst);
        }
    }
}

async fn chat(
    State(st): State<St>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    note(&st, &headers, Some(&body));
    hang(&st).await;
    if let Some(r) = failure(&st, &headers) {
        return r;
    }
    let model = body["model"].as_str().unwrap_or("stub").to_owned();
    let usage = json!({"prompt_tokens": 11, "completion_tokens": 4, "total_tokens": 15});
    let with_usage = st.mode != Mode::NoUsage;
    let tool = body["tools"][0]["function"]["name"]
        .as_str()
        .map(str::to_owned);
    if body["stream"] != json!(true) {
        let message = match &tool {
            Some(name) => json!({"role": "assistant", "content": null, "refusal": null,
                "tool_calls": [{"id": "call_1", "type": "function",
                    "function": {"name": name, "arguments": "{\"city\":\"Paris\"}"}}]}),
            None => {
                let content = match st.mode {
                    Mode::Huge(n) => "x".repeat(n),
                    _ => "Hello from stub".to_owned(),
                };
                json!({"role": "assistant", "content": content, "refusal": null})
            }
        };
        let mut answer = json!({"id": "chatcmpl-stub", "object": "chat.completion", "created": 1_700_000_000,
            "model": model, "system_fingerprint": "fp_stub",
            "choices": [{"index": 0, "message": message, "logprobs": null,
                "finish_reason": if tool.is_some() { "tool_calls" } else { "stop" }}],
            "x_stub_extra": {"kept": true}});
        if with_usage {
            answer["usage"] = usage;
        }
        return axum::Json(answer).into_response();
    }
    let include_usage = body["stream_options"]["include_usage"] == json!(true) && with_usage;
    let mut events = vec![chunk(
        &model,
        json!({"role": "assistant", "content": ""}),
        None,
    )];
    let words: Vec<String> = match st.mode {
        Mode::Slow => (0..50).map(|i| format!("w{i} ")).collect(),
        Mode::Huge(n) => vec!["x".repeat(64 * 1024); n.div_ceil(64 * 1024)],
        _ => vec!["Hel".into(), "lo".into(), " world".into()],
    };
    for w in words {
        events.push(chunk(&model, json!({"content": w}), None));
    }
    events.push(chunk(&model, json!({}), Some("stop")));
    if include_usage {
        let c = json!({"id": "chatcmpl-stub", "object": "chat.completion.chunk", "created": 1_700_000_000,
            "model": model, "choices": [], "usage": usage});
        events.push(format!("data: {c}\n\n"));
    }
    events.push("data: [DONE]\n\n".to_owned());
    let mode = st.mode;
    let flag = DropFlag(st.seen.clone(), false);
    let stream = futures_util::stream::unfold(
        (events.into_iter().enumerate(), flag),
        move |(mut it, mut flag)| async move {
            let (i, e) = it.next()?;
            match mode {
                Mode::StallAfterFirst if i == 1 => {
                    std::future::pending::<()>().await;
                }
                Mode::FailAfterFirst if i == 1 => {
                    let err = "data: {\"error\": {\"message\": \"upstream broke\", \"type\": \"server_error\"}}\n\n";
                    flag.1 = true;
                    return Some((
                        Ok::<_, std::convert::Infallible>(err.to_owned()),
                        (Vec::new().into_iter().enumerate(), flag),
                    ));
                }
                Mode::Slow if i > 0 => tokio::time::sleep(Duration::from_millis(200)).await,
                _ => {}
            }
            if e.starts_with("data: [DONE]") {
                flag.1 = true;
            }
            Some((Ok(e), (it, flag)))
        },
    );
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(stream))
        .unwrap()
}

async fn embeddings(
    State(st): State<St>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    note(&st, &headers, Some(&body));
    hang(&st).await;
    if let Some(r) = failure(&st, &headers) {
        return r;
    }
    let inputs = match &body["input"] {
        Value::Array(a) => a.len(),
        _ => 1,
    };
    let vector = [0.25f32, -0.5, 1.0];
    let base64 = body["encoding_format"] == json!("base64");
    let data: Vec<Value> = (0..inputs)
        .map(|i| {
            let embedding = if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|f| f.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    let mut answer = json!({"object": "list", "data": data, "model": body["model"]});
    if st.mode != Mode::NoUsage {
        answer["usage"] = json!({"prompt_tokens": 7, "total_tokens": 7});
    }
    axum::Json(answer).into_response()
}

async fn images(
    State(st): State<St>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    note(&st, &headers, Some(&body));
    hang(&st).await;
    if let Some(r) = failure(&st, &headers) {
        return r;
    }
    // A 1x1 transparent PNG.
    let png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";
    axum::Json(json!({"created": 1_700_000_000, "data": [{"b64_json": png, "revised_prompt": body["prompt"]}],
        "usage": {"input_tokens": 5, "output_tokens": 100, "total_tokens": 105}}))
    .into_response()
}

async fn models(State(st): State<St>, headers: HeaderMap) -> Response {
    note(&st, &headers, None);
    hang(&st).await;
    if let Some(r) = failure(&st, &headers) {
        return r;
    }
    axum::Json(json!({"object": "list", "data": [
        {"id": "stub-model", "object": "model", "created": 0, "owned_by": "stub"},
        {"id": "stub-embed", "object": "model", "created": 0, "owned_by": "stub"}
    ]}))
    .into_response()
}
