//! Edge functions: invoke them (`{project}/functions/v1/{slug}`, typed JSON
//! or a streaming response) and, with the service-role key, deploy and
//! manage them (`{project}/admin/v1/functions…`: versions, settings, logs,
//! secrets, schedules). Get one with [`Client::functions`].
//!
//! ```no_run
//! # async fn demo(client: ferrobase::Client) -> ferrobase::Result<()> {
//! use serde_json::{json, Value};
//! let functions = client.functions();
//! functions.deploy("hello", "Deno.serve(() => Response.json({ hi: 1 }))").await?;
//! let answer: Value = functions.invoke("hello", &json!({"name": "Ada"})).await?;
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;

use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::client::Client;
use crate::error::{Error, Result};
use crate::http;

/// Edge functions of one project (see the module docs).
#[derive(Debug, Clone)]
pub struct FunctionsClient {
    client: Client,
}

impl Client {
    /// The project's edge functions.
    pub fn functions(&self) -> FunctionsClient {
        FunctionsClient {
            client: self.clone(),
        }
    }
}

impl FunctionsClient {
    /// A request to `{project}/functions/v1/{path}` (`path` is the slug,
    /// optionally followed by a sub-path) with the client's key and token.
    pub fn request(&self, method: Method, path: &str) -> Result<reqwest::RequestBuilder> {
        self.client.request(method, &format!("functions/v1/{path}"))
    }

    /// `POST`s `body` as JSON to function `slug` and decodes its JSON answer.
    /// A non-2xx answer is an [`Error::Api`] (the function's own error body,
    /// or the platform's envelope: `function_timeout`, `function_crashed`, …).
    pub async fn invoke<T: DeserializeOwned>(
        &self,
        slug: &str,
        body: &impl Serialize,
    ) -> Result<T> {
        let request = self.request(Method::POST, slug)?.json(body).build()?;
        let response = self.client.execute(request).await?.error_for_status()?;
        http::decode_json(&response.body)
    }

    /// Sends a prepared request (from [`FunctionsClient::request`]) and
    /// returns the response unread, for streaming its body
    /// (`bytes_stream()`); a non-2xx status is read and returned as an
    /// [`Error::Api`].
    pub async fn invoke_streaming(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response> {
        let response = request.send().await?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let body = response.bytes().await?;
        Err(Error::from_response(status, &body))
    }

    async fn admin<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<T> {
        self.client.admin_call(method, path, query, body).await
    }

    /// Deploys `code` (one TypeScript/JavaScript file) as function `slug`:
    /// creates it, or adds and activates a new version. Returns the function
    /// with its versions.
    pub async fn deploy(&self, slug: &str, code: &str) -> Result<Value> {
        self.deploy_with(slug, &json!({ "code": code })).await
    }

    /// Deploys several files with an entrypoint (and optionally an import map).
    pub async fn deploy_files(
        &self,
        slug: &str,
        files: &BTreeMap<String, String>,
        entrypoint: &str,
    ) -> Result<Value> {
        self.deploy_with(slug, &json!({ "files": files, "entrypoint": entrypoint }))
            .await
    }

    /// `PUT /admin/v1/functions/{slug}` with any body: code and/or settings
    /// (`verify_jwt`, `timeout_ms`, `memory_mb`, `concurrency`, `activate`).
    pub async fn deploy_with(&self, slug: &str, body: &Value) -> Result<Value> {
        self.admin(
            Method::PUT,
            &format!("admin/v1/functions/{slug}"),
            &[],
            Some(body),
        )
        .await
    }

    /// Every function of the project.
    pub async fn list(&self) -> Result<Value> {
        self.admin(Method::GET, "admin/v1/functions", &[], None)
            .await
    }

    /// One function with its versions.
    pub async fn get(&self, slug: &str) -> Result<Value> {
        self.admin(
            Method::GET,
            &format!("admin/v1/functions/{slug}"),
            &[],
            None,
        )
        .await
    }

    /// Makes `version` the active one (rollback).
    pub async fn activate(&self, slug: &str, version: u32) -> Result<Value> {
        self.admin(
            Method::POST,
            &format!("admin/v1/functions/{slug}/versions/{version}/activate"),
            &[],
            None,
        )
        .await
    }

    /// Deletes a function.
    pub async fn delete(&self, slug: &str) -> Result<()> {
        self.admin(
            Method::DELETE,
            &format!("admin/v1/functions/{slug}"),
            &[],
            None,
        )
        .await
    }

    /// Log lines, newest first; `filters` are query pairs such as
    /// `("invocation_id", id)`, `("request_id", id)`, `("level", "error")`,
    /// `("search", text)`, `("since", rfc3339)`, `("limit", "50")`.
    pub async fn logs(&self, slug: &str, filters: &[(&str, &str)]) -> Result<Value> {
        self.admin(
            Method::GET,
            &format!("admin/v1/functions/{slug}/logs"),
            filters,
            None,
        )
        .await
    }

    /// Invocation records (status, duration, version, request id), newest first.
    pub async fn invocations(&self, slug: &str, filters: &[(&str, &str)]) -> Result<Value> {
        self.admin(
            Method::GET,
            &format!("admin/v1/functions/{slug}/invocations"),
            filters,
            None,
        )
        .await
    }

    /// Per-second counts of successful, silent invocations that were not
    /// recorded one by one (beyond the server's per-second allowance), newest
    /// first: `second`, `version`, `status`, `count`, `total_ms`, `max_ms`;
    /// `filters` such as `("status", "200")`, `("since", rfc3339)`,
    /// `("limit", "100")`.
    pub async fn invocation_counts(&self, slug: &str, filters: &[(&str, &str)]) -> Result<Value> {
        self.admin(
            Method::GET,
            &format!("admin/v1/functions/{slug}/invocation-counts"),
            filters,
            None,
        )
        .await
    }

    /// Sets (creates or replaces) secrets; returns the names and digests.
    pub async fn set_secrets(&self, secrets: &BTreeMap<String, String>) -> Result<Value> {
        self.admin(
            Method::POST,
            "admin/v1/functions/secrets",
            &[],
            Some(&json!(secrets)),
        )
        .await
    }

    /// Secret names and digests (never values).
    pub async fn secrets(&self) -> Result<Value> {
        self.admin(Method::GET, "admin/v1/functions/secrets", &[], None)
            .await
    }

    /// Deletes a secret.
    pub async fn delete_secret(&self, name: &str) -> Result<()> {
        self.admin(
            Method::DELETE,
            &format!("admin/v1/functions/secrets/{name}"),
            &[],
            None,
        )
        .await
    }

    /// Creates a cron schedule (`cron` in UTC, 5 or 6 fields) that `POST`s `body`.
    pub async fn schedule(
        &self,
        slug: &str,
        name: &str,
        cron: &str,
        body: &Value,
    ) -> Result<Value> {
        self.admin(
            Method::POST,
            &format!("admin/v1/functions/{slug}/schedules"),
            &[],
            Some(&json!({ "name": name, "cron": cron, "body": body })),
        )
        .await
    }

    /// Run history of a schedule, newest first.
    pub async fn schedule_runs(&self, slug: &str, name: &str) -> Result<Value> {
        self.admin(
            Method::GET,
            &format!("admin/v1/functions/{slug}/schedules/{name}/runs"),
            &[],
            None,
        )
        .await
    }
}
