//! Gateway behaviour over HTTP: pass-through, streaming, metering, fallback,
//! quotas, auth, tenant isolation, bad input, key redaction.

use std::sync::atomic::Ordering;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use super::{Ai, Mode, PLATFORM_KEY, Stub, hello, openai_error, sse_data};

#[tokio::test]
async fn without_any_key_the_gateway_says_what_to_set() {
    let ai = Ai::new("ai-nokey", None).await;
    let e = openai_error(ai.chat(hello("m")).await, 503, "ai_not_configured").await;
    let msg = e["message"].as_str().unwrap();
    assert!(
        msg.contains("FERROBASE_AI_API_KEY") && msg.contains("/admin/v1/ai/providers"),
        "{msg}"
    );
    // Models without an allow-list need an upstream too.
    let resp = ai
        .call(Method::GET, "/models", &ai.p.service)
        .send()
        .await
        .unwrap();
    openai_error(resp, 503, "ai_not_configured").await;
}

#[tokio::test]
async fn project_providers_cannot_reach_private_addresses() {
    // The operator's default upstream may sit on a private network (here
    // loopback); a provider a project configures may not: it would let a
    // tenant probe the server's own network with the gateway.
    let platform = Stub::start(Mode::Ok).await;
    let inner = Stub::start(Mode::Ok).await;
    let ai = Ai::guarded("ai-ssrf", Some(&platform)).await;
    for url in [
        inner.url.clone(),
        inner.url.replace("127.0.0.1", "localhost"),
        "http://169.254.169.254/latest".to_owned(),
        "http://[::ffff:127.0.0.1]:9/v1".to_owned(),
    ] {
        let resp = ai
            .admin(Method::POST, "/providers")
            .json(&json!({"name": "inner", "base_url": url, "api_key": "sk-inner-000000000000"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{url}");
        let text = resp.text().await.unwrap();
        assert!(text.contains("refused"), "{text}");
    }
    let resp = ai.chat(hello("m")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(platform.hits(), 1);
    assert_eq!(inner.hits(), 0, "no byte reached the private address");
}

#[tokio::test]
async fn chat_passes_tools_images_and_unknown_fields_through_and_is_metered() {
    let up = Stub::start(Mode::Ok).await;
    let ai = Ai::new("ai-pass", Some(&up)).await;
    let body = json!({
        "model": "stub-model",
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is in this picture?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
        ]}],
        "tools": [{"type": "function", "function": {"name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
        "response_format": {"type": "json_object"},
        "x_vendor_field": {"any": [1, 2]}
    });
    let resp = ai.chat(body.clone()).await;
    assert_eq!(resp.status(), 200);
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(
        answer["choices"][0]["message"]["tool_calls"][0]["function"]["name"],
        "get_weather"
    );
    assert_eq!(
        answer["x_stub_extra"]["kept"], true,
        "unknown response fields pass through"
    );
    // The upstream got the request as sent (tools, image part, response_format, unknown field).
    let sent = up.last_body();
    for k in ["tools", "response_format", "x_vendor_field", "messages"] {
        assert_eq!(sent[k], body[k], "{k} passed through");
    }
    assert_eq!(
        up.last_header("authorization").as_deref(),
        Some(format!("Bearer {PLATFORM_KEY}").as_str())
    );
    let usage = ai.wait_usage(1).await;
    assert_eq!(usage["groups"][0]["key"], "stub-model");
    assert_eq!(usage["totals"]["prompt_tokens"], 11);
    assert_eq!(usage["totals"]["completion_tokens"], 4);
    let rows = ai.rows().await;
    assert_eq!(rows[0]["upstream"], "platform");
    assert_eq!(rows[0]["estimated"], false);
    assert_eq!(rows[0]["role"], "service_role");
}

#[tokio::test]
async fn streams_are_relayed_and_metered_from_the_usage_chunk() {
    let up = Stub::start(Mode::Ok).await;
    let ai = Ai::new("ai-stream", Some(&up)).await;
    let mut body = hello("stub-model");
    body["stream"] = json!(true);
    let resp = ai.chat(body.clone()).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let events = sse_data(&resp.text().await.unwrap());
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "Hello world");
    // The gateway asked for usage upstream but the client did not: not forwarded.
    assert_eq!(up.last_body()["stream_options"]["include_usage"], true);
    assert!(
        chunks.iter().all(|c| c.get("usage").is_none()),
        "{chunks:?}"
    );
    // When the client asks, the usage chunk comes through.
    body["stream_options"] = json!({"include_usage": true});
    let events = sse_data(&ai.chat(body).await.text().await.unwrap());
    let last: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(last["usage"]["total_tokens"], 15);
    ai.wait_usage(2).await;
    let rows = ai.rows().await;
    for r in &rows {
        assert_eq!(
            (r["prompt_tokens"].as_i64(), r["completion_tokens"].as_i64()),
            (Some(11), Some(4))
        );
        assert_eq!(r["estimated"], false);
        assert_eq!(r["status"], 200);
        assert!(r["ttft_ms"].is_number(), "{r}");
    }
}

#[tokio::test]
async fn a_stream_without_usage_is_counted_and_marked_estimated() {
    let up = Stub::start(Mode::NoUsage).await;
    let ai = Ai::new("ai-estimate", Some(&up)).await;
    let mut body = hello("stub-model");
    body["stream"] = json!(true);
    let text = ai.chat(body).await.text().await.unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    ai.wait_usage(1).await;
    let row = &ai.rows().await[0];
    assert_eq!(row["estimated"], true);
    // o200k_base: "hello there" + a message separator is 3 tokens, "Hello world" 2.
    assert_eq!(row["prompt_tokens"], 3, "{row}");
    assert_eq!(row["completion_tokens"], 2, "{row}");
}

#[tokio::test]
async fn falls_back_on_429_and_5xx_before_the_first_byte_without_hidden_retries() {
    let limited = Stub::start(Mode::Fail(429)).await;
    let broken = Stub::start(Mode::Fail(503)).await;
    let good = Stub::start(Mode::Ok).await;
    let ai = Ai::new("ai-fallback", None).await;
    ai.provider("limited", &limited, "sk-limited-key-000000", 1)
        .await;
    ai.provider("broken", &broken, "sk-broken-key-0000000", 2)
        .await;
    ai.provider("good", &good, "sk-good-key-000000000", 3).await;
    let resp = ai.chat(hello("stub-model")).await;
    assert_eq!(resp.status(), 200);
    let mut body = hello("stub-model");
    body["stream"] = json!(true);
    let text = ai.chat(body).await.text().await.unwrap();
    assert!(
        text.contains("\"Hel\"") && text.ends_with("data: [DONE]\n\n"),
        "{text}"
    );
    // One attempt each per call: async-openai's own retry layer is gone.
    assert_eq!((limited.hits(), broken.hits(), good.hits()), (2, 2, 2));
    assert_eq!(
        good.last_header("authorization").as_deref(),
        Some("Bearer sk-good-key-000000000")
    );
    ai.wait_usage(2).await;
    assert!(ai.rows().await.iter().all(|r| r["upstream"] == "good"));
    // All failing: the last error, in OpenAI's shape; the failure is metered.
    let resp = ai
        .admin(Method::PATCH, "/providers/good")
        .json(&json!({"enabled": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    openai_error(ai.chat(hello("stub-model")).await, 502, "upstream_error").await;
    ai.wait_usage(3).await;
}

#[tokio::test]
async fn an_upstream_silent_before_its_first_byte_times_out_and_falls_back() {
    let hung = Stub::start(Mode::Hang).await;
    let good = Stub::start(Mode::Ok).await;
    let ai = Ai::new("ai-hang", None).await;
    ai.provider("hung", &hung, "sk-hung-000000000000", 1).await;
    ai.provider("good", &good, "sk-good-000000000000", 2).await;
    let mut body = hello("stub-model");
    body["stream"] = json!(true);
    let text = ai.chat(body).await.text().await.unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    assert_eq!((hung.hits(), good.hits()), (1, 1));
    ai.wait_usage(1).await;
    assert_eq!(ai.rows().await[0]["upstream"], "good");
}

#[tokio::test]
async fn a_stream_that_stalls_after_its_first_event_ends_with_an_error_event_not_a_retry() {
    let stalled = Stub::start(Mode::StallAfterFirst).await;
    let good = Stub::start(Mode::Ok).await;
    let ai = Ai::new("ai-first-byte", None).await;
    // The stalled stub answers non-stream calls normally: use a stream whose
    // first event arrives, then nothing. That one must NOT be retried.
    ai.provider("stalled", &stalled, "sk-stalled-0000000000", 1)
        .await;
    ai.provider("good", &good, "sk-good-000000000000", 2).await;
    let mut body = hello("stub-model");
    body["stream"] = json!(true);
    let started = std::time::Instant::now();
    let resp = ai.chat(body).await;
    assert_eq!(
        resp.status(),
        200,
        "headers are sent once the first event arrived"
    );
    let events = sse_data(&resp.text().await.unwrap());
    // First chunk, then an error event after the idle timeout; no [DONE].
    assert!(events.len() >= 2, "{events:?}");
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_timeout", "{last}");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(
        good.hits(),
        0,
        "no retry once bytes were sent to the client"
    );
    // The stalled upstream request was dropped.
    for _ in 0..40 {
        if stalled.seen.cancelled.load(Ordering::SeqCst) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(stalled.seen.cancelled.load(Ordering::SeqCst));
    ai.wait_usage(1).await;
    assert_eq!(ai.rows().await[0]["status"], 504);
}

#[tokio::test]
async fn an_upstream_error_mid_stream_becomes_an_error_event_not_a_retry() {
    let flaky = Stub::start(Mode::FailAfterFirst).await;
    let good = Stub::start(Mode::Ok).await;
    let ai = Ai::new("ai-midstream", None).await;
    ai.provider("flaky", &flaky, "sk-flaky-00000000000", 1)
        .await;
    ai.provider("good", &good, "sk-good-000000000000", 2).await;
    let mut body = hello("stub-model");
    body["stream"] = json!(true);
    let events = sse_data(&ai.chat(body).await.text().await.unwrap());
    // The upstream's error chunk is relayed as it came, and the stream ends.
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["message"], "upstream broke", "{events:?}");
    assert_eq!(good.hits(), 0);
}

/// An upstream cannot make the gateway buffer an answer of any size: past
/// `FERROBASE_AI_MAX_RESPONSE_BYTES` a plain answer fails with 502
/// `upstream_response_too_large`, and a stream ends with an error event
/// instead of its remaining bytes.
#[tokio::test]
async fn an_answer_over_the_size_limit_is_cut_off_not_buffered() {
    const LIMIT: usize = 1 << 20;
    let huge = Stub::start(Mode::Huge(2 * LIMIT)).await;
    let ai = Ai::with("ai-huge", |c| c.ai_max_response_bytes = LIMIT).await;
    ai.provider("huge", &huge, "sk-huge-000000000000", 1).await;
    let e = openai_error(
        ai.chat(hello("stub-model")).await,
        502,
        "upstream_response_too_large",
    )
    .await;
    assert!(
        e["message"]
            .as_str()
            .is_some_and(|m| m.contains("FERROBASE_AI_MAX_RESPONSE_BYTES")),
        "says which setting: {e}"
    );

    let mut body = hello("stub-model");
    body["stream"] = json!(true);
    let text = ai.chat(body).await.text().await.unwrap();
    assert!(text.len() <= LIMIT + 4096, "{} bytes relayed", text.len());
    let events = sse_data(&text);
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert!(
        last["error"].is_object(),
        "ends with an error event: {last}"
    );

    // Under the limit, the same provider answers.
    let small = Stub::start(Mode::Huge(LIMIT / 2)).await;
    ai.provider("small", &small, "sk-small-00000000000", 2)
        .await;
    let resp = ai
        .admin(Method::PATCH, "/providers/huge")
        .json(&json!({"enabled": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = ai.chat(hello("stub-model")).await;
    assert_eq!(resp.status(), 200);
}

/// `ai.usage` does not grow for ever: rows older than
/// `FERROBASE_AI_USAGE_RETENTION_DAYS`, and quota windows that are over,
/// are deleted by the first call a node serves for the project (then at
/// most hourly); newer ones are kept.
#[tokio::test]
async fn old_usage_rows_and_quota_windows_are_pruned() {
    let good = Stub::start(Mode::Ok).await;
    let ai = Ai::with("ai-prune", |c| c.ai_usage_retention_days = 30).await;
    ai.provider("good", &good, "sk-good-000000000000", 1).await;
    ai.t.owner_sql(
        &ai.p,
        "insert into ai.usage (at, role, endpoint, model, status) values
           (now() - interval '31 days', 'service_role', 'chat', 'expired', 200),
           (now() - interval '29 days', 'service_role', 'chat', 'kept', 200);
         insert into ai.quota_counters (subject, kind, window_start, value) values
           ('user:someone', 'rpm', now() - interval '3 days', 5),
           ('user:someone', 'tpd', date_trunc('day', now()), 7);",
    )
    .await;
    let models = async || -> Vec<String> {
        ai.rows()
            .await
            .iter()
            .map(|r| r["model"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(models().await, ["expired", "kept"]);

    assert_eq!(ai.chat(hello("stub-model")).await.status(), 200);
    let mut left = Vec::new();
    for _ in 0..100 {
        left = models().await;
        if !left.contains(&"expired".to_owned()) && left.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        left,
        ["kept", "stub-model"],
        "the expired row is gone, the rest kept"
    );
    let cfg: tokio_postgres::Config = ai.p.db_url.parse().unwrap();
    let owner = ferrobase_server::db::connect(&cfg).await.unwrap();
    let windows: Vec<String> = owner
        .query(
            "select kind from ai.quota_counters where subject = 'user:someone'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        windows,
        ["tpd"],
        "the window that is over is gone, today's kept"
    );
}

#[tokio::test]
async fn a_client_that_disconnects_cancels_the_upstream_and_is_metered() {
    let slow = Stub::start(Mode::Slow).await;
    let ai = Ai::new("ai-cancel", Some(&slow)).await;
    let mut body = hello("stub-model");
    body["stream"] = json!(true);
    let mut resp = ai.chat(body).await;
    assert_eq!(resp.status(), 200);
    let first = resp.chunk().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: "));
    drop(resp);
    for _ in 0..60 {
        if slow.seen.cancelled.load(Ordering::SeqCst) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        slow.seen.cancelled.load(Ordering::SeqCst),
        "upstream request still running"
    );
    ai.wait_usage(1).await;
    let row = &ai.rows().await[0];
    assert_eq!(row["status"], 499);
    assert_eq!(row["estimated"], true);
}

#[tokio::test]
async fn quotas_answer_429_with_retry_after_and_hold_per_user() {
    let up = Stub::start(Mode::Ok).await;
    let ai = Ai::new("ai-quota", Some(&up)).await;
    // Per-minute windows are aligned to the clock: do not straddle a boundary.
    let second = chrono::Timelike::second(&chrono::Utc::now());
    if second >= 55 {
        tokio::time::sleep(Duration::from_secs(u64::from(61 - second))).await;
    }
    ai.settings(json!({"allow_anon": false, "user_requests_per_minute": 2}))
        .await;
    let (alice, alice_id) = ai.user("alice@example.com").await;
    let (bob, _) = ai.user("bob@example.com").await;
    let send = |token: String| {
        let req = ai
            .call(Method::POST, "/chat/completions", &token)
            .json(&hello("stub-model"));
        async move { req.send().await.unwrap() }
    };
    assert_eq!(send(alice.clone()).await.status(), 200);
    assert_eq!(send(alice.clone()).await.status(), 200);
    let resp = send(alice.clone()).await;
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry));
    openai_error(resp, 429, "quota_exceeded").await;
    assert_eq!(up.hits(), 2, "a refused call never reaches the upstream");
    // Bob has his own budget.
    assert_eq!(send(bob.clone()).await.status(), 200);
    // Token budget per project: the day's 15-token calls use it up.
    ai.settings(json!({"user_requests_per_minute": 0, "project_tokens_per_day": 30}))
        .await;
    ai.wait_usage(3).await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(send(bob.clone()).await.status().as_u16());
        ai.wait_usage(3 + statuses.iter().filter(|s| **s == 200).count() as i64)
            .await;
    }
    assert_eq!(
        statuses,
        [200, 200, 429, 429],
        "30 tokens used (2 reserved, 15 reconciled, per call) leave no room for the next estimate"
    );
    let by_user = ai.usage("group_by=user").await;
    let alice_row = by_user["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["key"] == alice_id.as_str())
        .unwrap();
    assert_eq!(alice_row["requests"], 2);
}

#[tokio::test]
async fn anon_is_refused_by_default_and_tokens_are_checked() {
    let up = Stub::start(Mode::Ok).await;
    let ai = Ai::new("ai-anon", Some(&up)).await;
    let send = |token: &str| {
        ai.call(Method::POST, "/chat/completions", token)
            .json(&hello("stub-model"))
            .send()
    };
    openai_error(send(&ai.p.anon).await.unwrap(), 403, "anon_not_allowed").await;
    let e = openai_error(send("not-a-jwt").await.unwrap(), 401, "invalid_token").await;
    assert_eq!(e["type"], "authentication_error");
    let resp =
        ai.t.http
            .post(format!("{}/ai/v1/chat/completions", ai.p.url))
            .json(&hello("m"))
            .send()
            .await
            .unwrap();
    openai_error(resp, 401, "missing_api_key").await;
    let (user, _) = ai.user("carol@example.com").await;
    assert_eq!(send(&user).await.unwrap().status(), 200);
    ai.settings(json!({"allow_anon": true})).await;
    assert_eq!(send(&ai.p.anon).await.unwrap().status(), 200);
    assert_eq!(up.hits(), 2);
}

#[tokio::test]
async fn a_project_token_does_not_open_another_project() {
    let up = Stub::start(Mode::Ok).await;
    let ai = Ai::new("ai-tenant-a", Some(&up)).await;
    let b = ai.t.create_project("ai-tenant-b").await;
    let resp =
        ai.t.http
            .post(format!("{}/ai/v1/chat/completions", b.url))
            .bearer_auth(&ai.p.service)
            .json(&hello("stub-model"))
            .send()
            .await
            .unwrap();
    openai_error(resp, 401, "invalid_token").await;
    // Nor its admin API, nor its usage.
    let resp =
        ai.t.http
            .get(format!("{}/admin/v1/ai/usage", b.url))
            .bearer_auth(&ai.p.service)
            .send()
            .await
            .unwrap();
    assert_eq!(resp.status(), 401);
    // A's provider is not B's.
    let other = Stub::start(Mode::Ok).await;
    ai.provider("mine", &other, "sk-mine-000000000000", 1).await;
    let listed: Value =
        ai.t.http
            .get(format!("{}/admin/v1/ai/providers", b.url))
            .bearer_auth(&b.service)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(listed, json!([]));
    assert_eq!(up.hits(), 0);
}

#[tokio::test]
async fn bad_input_gets_openai_errors_never_500() {
    let up = Stub::start(Mode::Ok).await;
    let ai = Ai::new("ai-bad", Some(&up)).await;
    let raw = |body: Vec<u8>| {
        ai.call(Method::POST, "/chat/completions", &ai.p.service)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    openai_error(
        raw(b"{not json".to_vec()).await.unwrap(),
        400,
        "invalid_json",
    )
    .await;
    openai_error(raw(b"[1,2]".to_vec()).await.unwrap(), 400, "invalid_body").await;
    let e = openai_error(
        raw(br#"{"messages":[{"role":"user","content":"x"}]}"#.to_vec())
            .await
            .unwrap(),
        400,
        "missing_required_parameter",
    )
    .await;
    assert_eq!(e["param"], "model");
    openai_error(
        raw(br#"{"model":7,"messages":[]}"#.to_vec()).await.unwrap(),
        400,
        "invalid_type",
    )
    .await;
    openai_error(
        raw(br#"{"model":"m","messages":[]}"#.to_vec())
            .await
            .unwrap(),
        400,
        "invalid_value",
    )
    .await;
    openai_error(
        raw(br#"{"model":"m","messages":[{"role":"user","content":"x"}],"stream":"yes"}"#.to_vec())
            .await
            .unwrap(),
        400,
        "invalid_type",
    )
    .await;
    // Larger than the server's body limit (1 MiB in tests).
    let big = format!(
        r#"{{"model":"m","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "a".repeat(1_100_000)
    );
    openai_error(
        raw(big.into_bytes()).await.unwrap(),
        413,
        "payload_too_large",
    )
    .await;
    // Unknown model under an allow-list; aliases resolve.
    ai.settings(json!({"models": ["stub-model"], "aliases": {"fast": "stub-model"}}))
        .await;
    openai_error(ai.chat(hello("gpt-unknown")).await, 404, "model_not_found").await;
    assert_eq!(ai.chat(hello("fast")).await.status(), 200);
    assert_eq!(up.last_body()["model"], "stub-model");
    let resp = ai
        .call(Method::GET, "/nope", &ai.p.service)
        .send()
        .await
        .unwrap();
    openai_error(resp, 404, "unknown_url").await;
    // Embeddings and images validate too.
    let resp = ai
        .call(Method::POST, "/embeddings", &ai.p.service)
        .json(&json!({"model": "stub-model"}))
        .send()
        .await
        .unwrap();
    openai_error(resp, 400, "invalid_value").await;
    let resp = ai
        .call(Method::POST, "/images/generations", &ai.p.service)
        .json(&json!({"prompt": "x"}))
        .send()
        .await
        .unwrap();
    openai_error(resp, 400, "missing_required_parameter").await;
    assert_eq!(up.hits(), 1);
    // Admin input.
    for bad in [
        json!({"name": "Bad Name", "base_url": "http://x/v1"}),
        json!({"name": "ok", "base_url": "ftp://x/v1"}),
        json!({"name": "ok", "base_url": "http://u:p@x/v1"}),
        json!({"name": "ok", "base_url": "http://x/v1", "api_key": "line\nbreak"}),
        json!({"name": "ok", "base_url": "http://x/v1", "headers": {"bad header": "v"}}),
        json!({"base_url": "http://x/v1"}),
    ] {
        let resp = ai
            .admin(Method::POST, "/providers")
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{bad}");
    }
    let resp = ai
        .admin(Method::PUT, "/settings")
        .json(&json!({"allow_anon": "yes"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = ai
        .admin(Method::GET, "/usage?group_by=secret")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = ai
        .admin(Method::GET, "/usage?from=yesterday")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn provider_keys_are_never_echoed_or_shown() {
    let echo = Stub::start(Mode::EchoKey).await;
    let denied = Stub::start(Mode::Fail(401)).await;
    let ai = Ai::new("ai-redact", Some(&echo)).await;
    let resp = ai.chat(hello("stub-model")).await;
    assert_eq!(resp.status(), 400);
    let text = resp.text().await.unwrap();
    assert!(
        !text.contains(PLATFORM_KEY) && !text.contains("TOPSECRET"),
        "{text}"
    );
    assert!(text.contains("[redacted]"), "{text}");
    // Stored keys: encrypted at rest, never listed.
    ai.provider("denied", &denied, "sk-denied-SECRET-999999", 1)
        .await;
    let listed = ai
        .admin(Method::GET, "/providers")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!listed.contains("SECRET"), "{listed}");
    let v: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(v[0]["has_api_key"], true);
    let control = ai.t.app.platform.control().get().await.unwrap();
    let stored: String = control
        .query_one("select api_key_enc from ai_providers", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!stored.contains("SECRET"));
    // The upstream refusing the gateway's key is the operator's problem: 502 naming the provider.
    let resp = ai.chat(hello("stub-model")).await;
    let e = openai_error(resp, 502, "upstream_auth_failed").await;
    assert!(e["message"].as_str().unwrap().contains("denied"));
    assert!(!e.to_string().contains("SECRET"));
}

#[tokio::test]
async fn embeddings_images_and_models() {
    let up = Stub::start(Mode::Ok).await;
    let ai = Ai::new("ai-other", Some(&up)).await;
    let resp = ai
        .call(Method::POST, "/embeddings", &ai.p.service)
        .json(&json!({"model": "stub-embed", "input": ["one", "two"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    let resp = ai
        .call(Method::POST, "/images/generations", &ai.p.service)
        .json(&json!({"model": "stub-image", "prompt": "a red fox", "size": "256x256"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert!(v["data"][0]["b64_json"].is_string());
    assert_eq!(up.last_body()["size"], "256x256");
    let v: Value = ai
        .call(Method::GET, "/models", &ai.p.service)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert_eq!(ids, ["stub-model", "stub-embed"]);
    // With an allow-list and aliases, the list is the project's own.
    ai.settings(json!({"models": ["stub-model"], "aliases": {"fast": "stub-model"}}))
        .await;
    let v: Value = ai
        .call(Method::GET, "/models", &ai.p.service)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert_eq!(ids, ["stub-model", "fast"]);
    let u = ai.wait_usage(2).await;
    let models: Vec<&str> = u["groups"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|g| g["key"].as_str())
        .collect();
    assert_eq!(models, ["stub-embed", "stub-image"]);
    let by_day = ai.usage("group_by=day").await;
    assert_eq!(by_day["groups"].as_array().unwrap().len(), 1);
    let none = ai.usage("from=2001-01-01&to=2001-01-02").await;
    assert_eq!(none["totals"]["requests"], 0);
}

#[tokio::test]
async fn quotas_hold_across_two_nodes() {
    let up = Stub::start(Mode::Ok).await;
    let ai = Ai::new("ai-quota-nodes", Some(&up)).await;
    // A second node: same control plane (so the same project database), its own data dir.
    let mut config = ai.t.config.clone();
    config.data_dir = crate::support::temp_dir("fbt-ai-node2");
    let node2 = crate::support::TestApp::start(config).await;
    let second = chrono::Timelike::second(&chrono::Utc::now());
    if second >= 55 {
        tokio::time::sleep(Duration::from_secs(u64::from(61 - second))).await;
    }
    ai.settings(json!({"user_requests_per_minute": 3})).await;
    let (alice, _) = ai.user("alice@example.com").await;
    let on = |base: String| {
        let req =
            ai.t.http
                .post(format!("{base}/p/ai-quota-nodes/ai/v1/chat/completions"))
                .bearer_auth(&alice)
                .json(&hello("stub-model"));
        async move { req.send().await.unwrap() }
    };
    // Alternate nodes: the third call uses up the budget wherever it lands.
    let mut statuses = Vec::new();
    for base in [&ai.t.url, &node2.url, &ai.t.url, &node2.url, &ai.t.url] {
        let resp = on(base.clone()).await;
        statuses.push(resp.status().as_u16());
        if resp.status() == 429 {
            assert!(resp.headers().contains_key("retry-after"));
        }
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    assert_eq!(up.hits(), 3, "refused calls never reach the upstream");
}

/// A `tracing` writer into a shared buffer (what the server would print).
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut b) = self.0.lock() {
            b.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn provider_keys_are_redacted_in_the_servers_logs() {
    // The test runtime is single-threaded, so the server's tasks log through
    // this thread's subscriber.
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let echo = Stub::start(Mode::EchoKey).await;
    let ai = Ai::new("ai-redact-logs", Some(&echo)).await;
    // The upstream echoes the key it was sent in its error message: first the
    // platform default's, then (a project provider comes first) the project's.
    let resp = ai.chat(hello("stub-model")).await;
    assert_eq!(resp.status(), 400);
    ai.provider("echo2", &echo, "sk-project-SECRET-424242", 1)
        .await;
    let mut stream = hello("stub-model");
    stream["stream"] = json!(true);
    let resp = ai.chat(stream).await;
    assert_eq!(resp.status(), 400);
    let _ = resp.text().await;

    let text = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    assert!(
        text.contains("upstream error"),
        "the upstream error was not logged at all:\n{text}"
    );
    assert!(text.contains("[redacted]"), "{text}");
    assert!(
        !text.contains(PLATFORM_KEY)
            && !text.contains("TOPSECRET")
            && !text.contains("SECRET-424242"),
        "a provider key reached the logs:\n{text}"
    );
}
