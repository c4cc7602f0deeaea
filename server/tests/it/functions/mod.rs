//! Edge functions against a real Deno (installed by `cargo xtask test` from
//! `tests/peers/requirements.txt` into `.peers/venv/bin/deno`): deploy,
//! invoke, versions, secrets, `verify_jwt`, streaming, limits, isolation,
//! logs, schedules, and the Deno Deploy provider against a fake of its v2 API.
//!
//! Without Deno the tests say SKIPPED, unless `FERROBASE_REQUIRE_PEERS` is set
//! (as `cargo xtask test` does), where they fail.

mod admin;
mod deno_deploy;
mod host;
mod invoke;
mod isolation;
mod limits;
mod logs;
mod retention;
mod schedules;
mod sdk;

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{TestApp, TestProject};

/// The deno binary: `FERROBASE_DENO_BIN`, the peers venv, or PATH.
pub fn deno() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("FERROBASE_DENO_BIN").map(PathBuf::from),
        std::env::var_os("FERROBASE_PEERS_VENV").map(|v| PathBuf::from(v).join("bin/deno")),
    ];
    let found = candidates
        .into_iter()
        .flatten()
        .find(|p| p.is_file())
        .or_else(|| ferrobase_server::functions::local::find_deno(None).ok());
    if found.is_none() {
        if std::env::var_os("FERROBASE_REQUIRE_PEERS").is_some_and(|v| !v.is_empty() && v != "0") {
            panic!(
                "FERROBASE_REQUIRE_PEERS is set but deno was not found (tests/peers/requirements.txt installs it)"
            );
        }
        eprintln!("SKIPPED: deno not found (run `cargo xtask test`, which installs it)");
    }
    found
}

/// A server with Deno and one project.
pub struct Fx {
    pub t: TestApp,
    pub p: TestProject,
    pub project_ref: String,
}

impl Fx {
    /// A server (with `adjust` applied to its config) and project `r`; `None` without Deno.
    pub async fn new_with(
        r: &str,
        adjust: impl FnOnce(&mut ferrobase_server::Config),
    ) -> Option<Fx> {
        let deno = deno()?;
        let t = TestApp::spawn_with(|c| {
            c.functions.deno_bin = Some(deno);
            c.functions.functions_schedule_interval_ms = 100;
            adjust(c);
        })
        .await;
        let p = t.create_project(r).await;
        Some(Fx {
            t,
            p,
            project_ref: r.to_owned(),
        })
    }

    /// A server and project `r`; `None` without Deno.
    pub async fn new(r: &str) -> Option<Fx> {
        Self::new_with(r, |_| {}).await
    }

    /// `METHOD {project}/admin/v1/{path}` with the service-role key.
    pub fn admin(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.t
            .http
            .request(method, format!("{}/admin/v1/{path}", self.p.url))
            .bearer_auth(&self.p.service)
    }

    /// Creates function `slug` from one file; panics unless 201.
    pub async fn deploy(&self, slug: &str, code: &str) -> Value {
        self.deploy_with(slug, json!({ "code": code })).await
    }

    /// Creates function `slug` with this body (slug added); panics unless 201.
    pub async fn deploy_with(&self, slug: &str, mut body: Value) -> Value {
        body["slug"] = json!(slug);
        let resp = self
            .admin(Method::POST, "functions")
            .json(&body)
            .send()
            .await
            .expect("deploy");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        assert_eq!(status, 201, "deploy {slug}: {text}");
        serde_json::from_str(&text).expect("json")
    }

    /// `METHOD {project}/functions/v1/{path}` with the anon key.
    pub fn call(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.t
            .http
            .request(method, format!("{}/functions/v1/{path}", self.p.url))
            .bearer_auth(&self.p.anon)
    }

    /// A user access token for `sub`, signed with the project's key.
    pub async fn user_token(&self, sub: &str) -> String {
        let project =
            ferrobase_server::platform::projects::load(&self.t.app.platform, &self.project_ref)
                .await
                .expect("load project")
                .expect("project exists");
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        let claims = json!({
            "role": "authenticated", "sub": sub, "ref": self.project_ref,
            "exp": now + 3600, "email": format!("{sub}@example.com"),
        });
        project.keys[0].sign(&claims).expect("sign")
    }

    /// Polls `GET functions/{slug}/{what}?{query}` until `pred` holds (5 s at most).
    pub async fn poll(
        &self,
        slug: &str,
        what: &str,
        query: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let v: Value = self
                .admin(Method::GET, &format!("functions/{slug}/{what}?{query}"))
                .send()
                .await
                .expect("poll")
                .json()
                .await
                .expect("json");
            if pred(&v) || tokio::time::Instant::now() > deadline {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Asserts the JSON error envelope with this status and code.
pub async fn expect_error(resp: reqwest::Response, status: u16, code: &str) -> Value {
    let got = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    assert_eq!(got, status, "expected {status} {code}, got {got}: {text}");
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    assert_eq!(v["code"], code, "{text}");
    assert!(
        v["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{text}"
    );
    v
}
