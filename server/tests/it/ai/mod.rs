//! The AI gateway (`/ai/v1`) end to end: a real server and project, upstreams
//! that follow OpenAI's contract on loopback ports (an in-test stub and the
//! `fakellm` server from PyPI), and the official `openai` Python client.

mod gateway;
mod peers;
mod sdk;
mod stub;

use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response};
use serde_json::{Value, json};

use ferrobase_server::config::AiConfig;

use crate::support::{TestApp, TestProject};
pub use stub::{Mode, Stub};

/// Key of the platform default upstream in these tests (must never leak).
pub const PLATFORM_KEY: &str = "sk-platform-TOPSECRET-0123456789";

/// A server whose platform default upstream is `stub` (when given).
pub struct Ai {
    pub t: TestApp,
    pub p: TestProject,
}

impl Ai {
    /// Server + project `r`; the platform default upstream is `platform`, if any.
    /// The stubs listen on loopback, so outgoing requests may reach private
    /// addresses here; [`Ai::guarded`] keeps the SSRF guard's default.
    pub async fn new(r: &str, platform: Option<&Stub>) -> Ai {
        Self::spawn(r, platform, true, |_| {}).await
    }

    /// As [`Ai::new`], with the outbound guard refusing private addresses.
    pub async fn guarded(r: &str, platform: Option<&Stub>) -> Ai {
        Self::spawn(r, platform, false, |_| {}).await
    }

    /// As [`Ai::new`] without a platform upstream, with `adjust` applied
    /// to the server's AI settings.
    pub async fn with(r: &str, adjust: impl FnOnce(&mut AiConfig)) -> Ai {
        Self::spawn(r, None, true, adjust).await
    }

    async fn spawn(
        r: &str,
        platform: Option<&Stub>,
        allow_private: bool,
        adjust: impl FnOnce(&mut AiConfig),
    ) -> Ai {
        let url = platform.map(|s| s.url.clone());
        let t = TestApp::spawn_with(|c| {
            c.outbound_allow_private = allow_private;
            if let Some(url) = url {
                c.ai.ai_base_url = url;
                c.ai.ai_api_key = Some(PLATFORM_KEY.into());
            }
            c.ai.ai_timeout_ms = 1_500;
            c.ai.ai_stream_idle_timeout_ms = 1_000;
            c.auth_autoconfirm = true;
            adjust(&mut c.ai);
        })
        .await;
        let p = t.create_project(r).await;
        Ai { t, p }
    }

    /// `METHOD {project}/ai/v1{path}` with `token` as the bearer.
    pub fn call(&self, method: Method, path: &str, token: &str) -> RequestBuilder {
        self.t
            .http
            .request(method, format!("{}/ai/v1{path}", self.p.url))
            .bearer_auth(token)
    }

    /// `POST /ai/v1/chat/completions` with the service-role key.
    pub async fn chat(&self, body: Value) -> Response {
        self.call(Method::POST, "/chat/completions", &self.p.service)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// `METHOD {project}/admin/v1/ai{path}` with the service-role key.
    pub fn admin(&self, method: Method, path: &str) -> RequestBuilder {
        self.t
            .http
            .request(method, format!("{}/admin/v1/ai{path}", self.p.url))
            .bearer_auth(&self.p.service)
    }

    /// Adds a provider; panics unless 201.
    pub async fn provider(&self, name: &str, stub: &Stub, key: &str, priority: i32) {
        let resp = self
            .admin(Method::POST, "/providers")
            .json(
                &json!({"name": name, "base_url": stub.url, "api_key": key, "priority": priority}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
    }

    /// Changes settings; panics unless 200.
    pub async fn settings(&self, patch: Value) {
        let resp = self
            .admin(Method::PUT, "/settings")
            .json(&patch)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    }

    /// A signed-up user's access token and id.
    pub async fn user(&self, email: &str) -> (String, String) {
        let resp = self
            .t
            .http
            .post(format!("{}/auth/v1/signup", self.p.url))
            .header("apikey", &self.p.anon)
            .json(&json!({"email": email, "password": "a long enough password 1"}))
            .send()
            .await
            .unwrap();
        let body: Value = resp.json().await.unwrap();
        (
            body["access_token"].as_str().expect("session").to_owned(),
            body["user"]["id"].as_str().expect("user id").to_owned(),
        )
    }

    /// `GET /admin/v1/ai/usage?{query}`.
    pub async fn usage(&self, query: &str) -> Value {
        let resp = self
            .admin(Method::GET, &format!("/usage?{query}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.json().await.unwrap()
    }

    /// Waits until `n` calls are recorded (metering is written after the answer), returns usage by model.
    pub async fn wait_usage(&self, n: i64) -> Value {
        for _ in 0..100 {
            let u = self.usage("group_by=model").await;
            if u["totals"]["requests"].as_i64() >= Some(n) {
                return u;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "{n} calls were never recorded: {}",
            self.usage("group_by=model").await
        );
    }

    /// Rows of `ai.usage`, oldest first (as the project owner).
    pub async fn rows(&self) -> Vec<Value> {
        let cfg: tokio_postgres::Config = self.p.db_url.parse().unwrap();
        let client = ferrobase_server::db::connect(&cfg).await.unwrap();
        client
            .query("select to_jsonb(u) from ai.usage u order by id", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    }
}

/// Asserts OpenAI's error shape and returns the `error` object.
pub async fn openai_error(resp: Response, status: u16, code: &str) -> Value {
    assert_eq!(resp.status().as_u16(), status, "status for expected {code}");
    let body: Value = resp.json().await.expect("error body is JSON");
    let e = &body["error"];
    assert_eq!(e["code"], code, "code in {body}");
    assert!(e["type"].is_string(), "type in {body}");
    assert!(
        e["message"].as_str().is_some_and(|m| !m.is_empty()),
        "message in {body}"
    );
    e.clone()
}

/// The `data:` payloads of an SSE body.
pub fn sse_data(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .map(str::to_owned)
        .collect()
}

/// A minimal chat body.
pub fn hello(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hello there"}]})
}
