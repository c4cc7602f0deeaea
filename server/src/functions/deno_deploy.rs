//! The cloud provider: Deno Deploy, through its v2 REST API
//! (`FERROBASE_DENO_DEPLOY_API_URL`, default `https://api.deno.com/v2`,
//! bearer `FERROBASE_DENO_DEPLOY_TOKEN`).
//!
//! - Each function is one Deno Deploy **app**, slug `fb-{ref}-{slug}-{hash}`
//!   (labelled with the project and function), created on first deploy
//!   (`POST /apps`).
//! - Each activated version becomes a **revision**: `POST /apps/{app}/deploy`
//!   with the files as UTF-8 `assets`, `config.runtime = {type: dynamic,
//!   entrypoint}`, the environment (project URL and keys, secrets) as secret
//!   `env_vars`, `production: true`; then `GET /revisions/{id}` is polled
//!   until `succeeded` (or `failed`, whose `failure_reason` is the deploy
//!   error). Rollback deploys the old version's files as a new revision.
//! - Invocations are proxied to the app's URL
//!   (`FERROBASE_DENO_DEPLOY_APP_URL`, `{app}` replaced), streaming both ways,
//!   with the function's timeout and concurrency limit enforced here.
//! - Redirects are never followed: an API answer that redirects fails the
//!   call (following it would re-send the request, secrets in the deploy
//!   body included, wherever it points), and an app's redirect is its
//!   answer to the caller.
//! - Runtime logs come from `GET /apps/{app}/logs?start=…&end=…`.
//! - Deleting a function deletes its app (`DELETE /apps/{app}`).
//!
//! The tests run this against a fake that follows the documented contract
//! (`server/tests/it/functions/deno_deploy.rs`): the real service cannot be
//! reached from CI.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use futures_util::future::BoxFuture;
use futures_util::{StreamExt as _, TryStreamExt as _};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use uuid::Uuid;

use super::bundle::{Bundle, sha256_hex};
use super::runtime::{Deployment, InvokeError, RequestBody, Runtime};
use crate::config::Config;

/// Headers not forwarded to the app (one hop only, or set by reqwest).
const SKIP_HEADERS: &[&str] = &[
    "host",
    "connection",
    "transfer-encoding",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
];

/// The Deno Deploy v2 provider.
pub struct DenoDeploy {
    /// The HTTP client (it never follows redirects), or why there is none.
    http: Result<reqwest::Client, String>,
    api: String,
    token: Option<String>,
    app_url: String,
    poll: Duration,
    deploy_timeout: Duration,
    limits: Mutex<HashMap<(Uuid, String), Arc<Semaphore>>>,
}

/// The app slug of a function: `fb-` + readable part + a hash that keeps
/// apps of different projects apart (`^[a-z][a-z0-9-]{2,62}$`).
pub fn app_slug(project_ref: &str, project_id: Uuid, slug: &str) -> String {
    let readable: String = format!("{project_ref}-{slug}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    let hash = &sha256_hex(format!("{project_id}/{slug}").as_bytes())[..10];
    format!("fb-{}-{hash}", readable.trim_matches('-'))
}

impl DenoDeploy {
    /// A provider from the configuration.
    pub fn new(config: &Config) -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("the HTTP client could not be built: {e}"));
        Self {
            http,
            api: config
                .functions
                .deno_deploy_api_url
                .trim_end_matches('/')
                .to_owned(),
            token: crate::config::exposed(&config.functions.deno_deploy_token)
                .filter(|t| !t.is_empty())
                .map(str::to_owned),
            app_url: config.functions.deno_deploy_app_url.clone(),
            poll: Duration::from_millis(config.functions.deno_deploy_poll_ms.max(10)),
            deploy_timeout: Duration::from_secs(300),
            limits: Mutex::new(HashMap::new()),
        }
    }

    fn token(&self) -> Result<&str, String> {
        self.token
            .as_deref()
            .ok_or_else(|| "FERROBASE_DENO_DEPLOY_TOKEN is not set".to_owned())
    }

    fn http(&self) -> Result<&reqwest::Client, String> {
        self.http.as_ref().map_err(String::clone)
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value), String> {
        let mut req = self
            .http()?
            .request(method, format!("{}{path}", self.api))
            .bearer_auth(self.token()?)
            .timeout(Duration::from_secs(60));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| format!("Deno Deploy is unreachable: {e}"))?;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        let value = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok((status, value))
    }

    fn api_error(what: &str, status: u16, body: &Value) -> String {
        let msg = body["error"]
            .as_str()
            .or(body["message"].as_str())
            .unwrap_or("no message");
        format!("Deno Deploy refused to {what} ({status}): {msg}")
    }

    async fn ensure_app(&self, app: &str, d: &Deployment) -> Result<(), String> {
        let (status, body) = self
            .call(reqwest::Method::GET, &format!("/apps/{app}"), None)
            .await?;
        match status {
            200 => Ok(()),
            404 => {
                let (status, body) = self
                    .call(
                        reqwest::Method::POST,
                        "/apps",
                        Some(json!({
                            "slug": app,
                            "labels": {"ferrobase_project": d.project_ref, "ferrobase_function": d.slug},
                        })),
                    )
                    .await?;
                // 409: created meanwhile by another node.
                if status == 200 || status == 201 || status == 409 {
                    Ok(())
                } else {
                    Err(Self::api_error("create the app", status, &body))
                }
            }
            _ => Err(Self::api_error("read the app", status, &body)),
        }
    }

    fn app_base(&self, app: &str) -> String {
        self.app_url
            .replace("{app}", app)
            .trim_end_matches('/')
            .to_owned()
    }

    fn limit(&self, d: &Deployment) -> Arc<Semaphore> {
        let mut limits = self.limits.lock().unwrap_or_else(|e| e.into_inner());
        let size = usize::try_from(d.settings.concurrency).unwrap_or(1).max(1);
        let entry = limits
            .entry((d.project_id, d.slug.clone()))
            .or_insert_with(|| Arc::new(Semaphore::new(size)));
        entry.clone()
    }

    /// Runtime logs of a function's app since `start` (newest last), as
    /// `{level, message, revision_id, timestamp}` objects.
    pub async fn app_logs(
        &self,
        project_ref: &str,
        project_id: Uuid,
        slug: &str,
        start: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<Value>, String> {
        let app = app_slug(project_ref, project_id, slug);
        let end = chrono::Utc::now();
        let path = format!(
            "/apps/{app}/logs?start={}&end={}&limit=1000",
            urlencode(&start.to_rfc3339()),
            urlencode(&end.to_rfc3339())
        );
        let (status, body) = self.call(reqwest::Method::GET, &path, None).await?;
        if status != 200 {
            return Err(Self::api_error("read the logs", status, &body));
        }
        Ok(body["logs"].as_array().cloned().unwrap_or_default())
    }
}

fn urlencode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

impl Runtime for DenoDeploy {
    fn name(&self) -> &'static str {
        "deno-deploy"
    }

    fn unavailable(&self) -> Option<String> {
        self.token().and(self.http()).err()
    }

    fn deploy<'a>(
        &'a self,
        d: &'a Deployment,
        bundle: &'a Bundle,
    ) -> BoxFuture<'a, Result<Option<String>, String>> {
        Box::pin(async move {
            let app = app_slug(&d.project_ref, d.project_id, &d.slug);
            self.ensure_app(&app, d).await?;
            let assets: serde_json::Map<String, Value> = bundle
                .files
                .iter()
                .map(|(p, c)| {
                    (
                        p.clone(),
                        json!({"kind": "file", "encoding": "utf-8", "content": c}),
                    )
                })
                .collect();
            let env: Vec<Value> = d
                .env
                .iter()
                .map(|(k, v)| json!({"key": k, "value": v, "secret": true, "contexts": "all"}))
                .collect();
            let (status, body) = self
                .call(
                    reqwest::Method::POST,
                    &format!("/apps/{app}/deploy"),
                    Some(json!({
                        "assets": assets,
                        "config": {"runtime": {"type": "dynamic", "entrypoint": bundle.entrypoint}},
                        "env_vars": env,
                        "labels": {"ferrobase_version": d.version.to_string(), "ferrobase_checksum": bundle.checksum()},
                        "production": true,
                    })),
                )
                .await?;
            if !(200..300).contains(&status) {
                return Err(Self::api_error("deploy", status, &body));
            }
            let id = body["id"]
                .as_str()
                .ok_or("Deno Deploy answered a revision without an id")?
                .to_owned();
            let started = tokio::time::Instant::now();
            let mut revision = body;
            loop {
                match revision["status"].as_str() {
                    Some("succeeded") => return Ok(Some(id)),
                    Some("failed") => {
                        let reason = revision["failure_reason"]
                            .as_str()
                            .unwrap_or("no reason given");
                        return Err(format!("Deno Deploy revision {id} failed: {reason}"));
                    }
                    Some("skipped") => return Err(format!("Deno Deploy skipped revision {id}")),
                    _ => {}
                }
                if started.elapsed() > self.deploy_timeout {
                    return Err(format!(
                        "Deno Deploy revision {id} did not finish building in time"
                    ));
                }
                tokio::time::sleep(self.poll).await;
                let (status, body) = self
                    .call(reqwest::Method::GET, &format!("/revisions/{id}"), None)
                    .await?;
                if status != 200 {
                    return Err(Self::api_error("read the revision", status, &body));
                }
                revision = body;
            }
        })
    }

    fn invoke(
        &self,
        d: Arc<Deployment>,
        req: axum::http::Request<RequestBody>,
    ) -> BoxFuture<'_, Result<axum::http::Response<Body>, InvokeError>> {
        Box::pin(async move {
            let http = match self.token().and(self.http()) {
                Ok(http) => http,
                Err(why) => {
                    return Err(InvokeError::Unavailable(format!(
                        "Edge functions are disabled: {why}."
                    )));
                }
            };
            let permit = self
                .limit(&d)
                .try_acquire_owned()
                .map_err(|_| InvokeError::Busy(d.settings.concurrency))?;
            let timeout =
                Duration::from_millis(u64::try_from(d.settings.timeout_ms).unwrap_or(1000));
            let app = app_slug(&d.project_ref, d.project_id, &d.slug);
            let (parts, body) = req.into_parts();
            let path = parts
                .uri
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/");
            let url = format!("{}{path}", self.app_base(&app));
            let request = body.progress();
            let body = body.with_deadline(tokio::time::Instant::now() + timeout);
            let mut out = http
                .request(parts.method.clone(), url)
                .timeout(timeout)
                .body(reqwest::Body::wrap_stream(body.into_data_stream()));
            for (name, value) in &parts.headers {
                if !SKIP_HEADERS.contains(&name.as_str()) {
                    out = out.header(name, value);
                }
            }
            let resp = out.send().await.map_err(|e| {
                if let Some(callers_fault) = request.blame(e.is_timeout()) {
                    InvokeError::Body(callers_fault)
                } else if e.is_timeout() {
                    InvokeError::Timeout(d.settings.timeout_ms)
                } else {
                    InvokeError::Provider(format!("the Deno Deploy app did not answer: {e}"))
                }
            })?;
            let mut builder = axum::http::Response::builder().status(resp.status());
            for (name, value) in resp.headers() {
                if !SKIP_HEADERS.contains(&name.as_str()) {
                    builder = builder.header(name, value);
                }
            }
            // The permit lives as long as the body streams.
            let stream = resp
                .bytes_stream()
                .map_err(std::io::Error::other)
                .map(move |item| {
                    let _held = &permit;
                    item
                });
            builder
                .body(Body::from_stream(stream))
                .map_err(|e| InvokeError::Provider(e.to_string()))
        })
    }

    fn provider_logs<'a>(
        &'a self,
        project_id: Uuid,
        project_ref: &'a str,
        slug: &'a str,
        since: chrono::DateTime<chrono::Utc>,
    ) -> BoxFuture<'a, Result<Vec<super::logs::LogEntry>, String>> {
        Box::pin(async move {
            let logs = self.app_logs(project_ref, project_id, slug, since).await?;
            Ok(logs
                .iter()
                .map(|l| super::logs::LogEntry {
                    id: 0,
                    at: l["timestamp"]
                        .as_str()
                        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                        .map_or_else(chrono::Utc::now, |t| t.with_timezone(&chrono::Utc)),
                    level: l["level"].as_str().unwrap_or("info").to_owned(),
                    message: l["message"].as_str().unwrap_or_default().to_owned(),
                    invocation_id: None,
                    version: None,
                })
                .collect())
        })
    }

    fn remove<'a>(
        &'a self,
        project_id: Uuid,
        project_ref: &'a str,
        slug: &'a str,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.limits
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&(project_id, slug.to_owned()));
            let app = app_slug(project_ref, project_id, slug);
            match self
                .call(reqwest::Method::DELETE, &format!("/apps/{app}"), None)
                .await
            {
                Ok((204 | 200 | 404, _)) => {}
                Ok((status, body)) => {
                    tracing::warn!(app, error = %Self::api_error("delete the app", status, &body), "function app left behind")
                }
                Err(error) => tracing::warn!(app, %error, "function app left behind"),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_slugs_are_valid_and_distinct() {
        let id = Uuid::nil();
        let a = app_slug("my-app", id, "hello_world");
        assert!(a.starts_with("fb-my-app-hello-world-"), "{a}");
        assert_ne!(a, app_slug("my-app", id, "hello-world"));
        assert_ne!(a, app_slug("my-app", Uuid::new_v4(), "hello_world"));
        let long = app_slug(&"r".repeat(40), id, &"s".repeat(63));
        assert!(long.len() <= 63, "{long}");
        assert!(
            long.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        );
    }
}
