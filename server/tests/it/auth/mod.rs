//! Auth (`/auth/v1`): GoTrue-compatible flows end to end over HTTP.

mod flows;
mod hardening;
mod mail;
mod mfa;
pub(crate) mod oauth;
mod peers;
mod sdk;
mod security;
mod smtp;
mod user_cache;

use reqwest::{Method, RequestBuilder, Response};
use serde_json::{Value, json};

use crate::support::{TestApp, TestProject};

/// A project with auth settings applied.
pub struct Auth {
    pub t: TestApp,
    pub p: TestProject,
}

impl Auth {
    /// A fresh server and project `r`, with `settings` laid over the defaults.
    pub async fn new(r: &str, settings: Value) -> Auth {
        Self::on(TestApp::spawn().await, r, settings).await
    }

    /// Like [`Auth::new`], on server `t`.
    pub async fn on(t: TestApp, r: &str, settings: Value) -> Auth {
        let p = t.create_project(r).await;
        let a = Auth { t, p };
        if settings.as_object().is_some_and(|m| !m.is_empty()) {
            let resp = a
                .admin(Method::PUT, "/admin/config")
                .json(&settings)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200, "config: {}", resp.text().await.unwrap());
        }
        a
    }

    /// `METHOD /auth/v1{path}` with the anon key.
    pub fn req(&self, method: Method, path: &str) -> RequestBuilder {
        self.t
            .http
            .request(method, format!("{}/auth/v1{path}", self.p.url))
            .header("apikey", &self.p.anon)
    }

    /// `METHOD /auth/v1{path}` with the service-role key.
    pub fn admin(&self, method: Method, path: &str) -> RequestBuilder {
        self.t
            .http
            .request(method, format!("{}/auth/v1{path}", self.p.url))
            .header("apikey", &self.p.service)
            .bearer_auth(&self.p.service)
    }

    /// `METHOD /auth/v1{path}` as a signed-in user.
    pub fn user(&self, method: Method, path: &str, access: &str) -> RequestBuilder {
        self.req(method, path).bearer_auth(access)
    }

    pub async fn signup(&self, email: &str, password: &str) -> Response {
        self.req(Method::POST, "/signup")
            .json(&json!({"email": email, "password": password}))
            .send()
            .await
            .unwrap()
    }

    pub async fn password(&self, email: &str, password: &str) -> Response {
        self.req(Method::POST, "/token?grant_type=password")
            .json(&json!({"email": email, "password": password}))
            .send()
            .await
            .unwrap()
    }

    pub async fn refresh(&self, token: &str) -> Response {
        self.req(Method::POST, "/token?grant_type=refresh_token")
            .json(&json!({"refresh_token": token}))
            .send()
            .await
            .unwrap()
    }

    /// Signs up (autoconfirm must be on) and returns the session.
    pub async fn session(&self, email: &str, password: &str) -> Value {
        let resp = self.signup(email, password).await;
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.unwrap();
        assert!(body["access_token"].is_string(), "session expected: {body}");
        body
    }

    /// Captured mail to `to`, newest first.
    pub async fn mail_to(&self, to: &str) -> Vec<Value> {
        let body: Value = self
            .admin(Method::GET, &format!("/admin/mail?to={to}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["mail"].as_array().cloned().unwrap_or_default()
    }
}

/// Asserts GoTrue's legacy error shape `{code: status, error_code, msg}`.
pub async fn gotrue_error(resp: Response, status: u16, code: &str) -> Value {
    let got = resp.status().as_u16();
    let body: Value = resp.json().await.expect("error body is JSON");
    assert_eq!(got, status, "status for {code}: {body}");
    assert_eq!(body["code"], status, "code in {body}");
    assert_eq!(body["error_code"], code, "error_code in {body}");
    assert!(
        body["msg"].as_str().is_some_and(|m| !m.is_empty()),
        "msg in {body}"
    );
    body
}

/// The first URL in a mail's text that contains `needle`.
pub fn link_in(mail: &Value, needle: &str) -> String {
    mail["text"]
        .as_str()
        .unwrap_or_default()
        .split_whitespace()
        .find(|w| w.contains(needle))
        .unwrap_or_else(|| panic!("no link with {needle} in {mail}"))
        .to_owned()
}

/// The 6-digit code in a mail.
pub fn code_in(mail: &Value) -> String {
    let text = mail["text"].as_str().unwrap_or_default();
    let idx = text.find("code: ").expect("code in mail") + 6;
    text[idx..idx + 6].to_owned()
}

/// Parses `a=1&b=2` (a URL fragment or query) into a JSON object.
pub fn params(s: &str) -> Value {
    let mut m = serde_json::Map::new();
    for (k, v) in url::form_urlencoded::parse(s.as_bytes()) {
        m.insert(k.into_owned(), Value::String(v.into_owned()));
    }
    Value::Object(m)
}

/// A peer (third-party client or server) is missing: the test is skipped,
/// unless `FERROBASE_REQUIRE_PEERS` is set (CI with peers installed), where
/// that is a failure.
pub fn missing_peer(what: &str) {
    let hint = format!(
        "{what} is not installed (see PEERS.md; FERROBASE_PEERS_NODE_MODULES / FERROBASE_PEERS_PYTHON)"
    );
    if std::env::var_os("FERROBASE_REQUIRE_PEERS").is_some_and(|v| !v.is_empty() && v != "0") {
        panic!("FERROBASE_REQUIRE_PEERS is set but {hint}");
    }
    eprintln!("SKIPPED: {hint}");
}

fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A `node_modules` folder holding npm package `package`: from
/// `FERROBASE_PEERS_NODE_MODULES`, `$FERROBASE_PEERS_DIR/node_modules` (set by
/// `cargo xtask test`), `tests/peers/node_modules` or `.peers/node_modules`.
pub fn node_modules_with(package: &str) -> Option<std::path::PathBuf> {
    use std::path::PathBuf;
    let root = repo_root();
    [
        std::env::var_os("FERROBASE_PEERS_NODE_MODULES").map(PathBuf::from),
        std::env::var_os("FERROBASE_PEERS_DIR").map(|d| PathBuf::from(d).join("node_modules")),
        Some(root.join("tests/peers/node_modules")),
        Some(root.join(".peers/node_modules")),
    ]
    .into_iter()
    .flatten()
    .find(|dir| dir.join(package).join("package.json").exists())
}

/// The `node` binary (`FERROBASE_PEERS_NODE`, else `node` on PATH).
pub fn node_bin() -> std::path::PathBuf {
    std::env::var_os("FERROBASE_PEERS_NODE").map_or_else(|| "node".into(), Into::into)
}

/// A Python that can import `module`: `FERROBASE_PEERS_PYTHON` (set by
/// `cargo xtask test`), `.peers/venv/bin/python`, or `python3`.
pub fn python_with(module: &str) -> Option<std::path::PathBuf> {
    use std::path::PathBuf;
    [
        std::env::var_os("FERROBASE_PEERS_PYTHON").map(PathBuf::from),
        Some(repo_root().join(".peers/venv/bin/python")),
        Some(PathBuf::from("python3")),
    ]
    .into_iter()
    .flatten()
    .find(|py| {
        std::process::Command::new(py)
            .args(["-c", &format!("import {module}")])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}
