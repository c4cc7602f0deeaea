//! Webhooks: [`verify`] for receivers (Standard Webhooks signatures, as
//! Ferrobase sends them), and [`WebhooksAdmin`] (from
//! [`Client::webhooks`]) to manage a project's endpoints, read the delivery
//! log and replay deliveries (needs the service-role key).
//!
//! ```no_run
//! # fn handler(headers: &reqwest::header::HeaderMap, body: &[u8]) -> Result<(), ferrobase::webhooks::VerifyError> {
//! // In your receiver: reject anything not signed with your endpoint's secret.
//! ferrobase::webhooks::verify("whsec_…", headers, body)?;
//! // …then dedupe by the `webhook-id` header: deliveries are at-least-once.
//! # Ok(()) }
//! ```

use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use crate::client::Client;
use crate::error::Result;

/// Why a delivery did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The secret is not `whsec_` + base64.
    #[error("the secret is malformed")]
    Secret,
    /// A `webhook-*` header is missing or malformed, the timestamp is more
    /// than 5 minutes away from now, or no signature matches.
    #[error("invalid webhook: {0}")]
    Invalid(String),
}

/// Verifies a delivery: `webhook-id`, `webhook-timestamp` (within 5
/// minutes of now) and `webhook-signature` (any `v1,` signature made with
/// `secret` over `{id}.{timestamp}.{body}`). Pass the raw body bytes, before
/// any JSON parsing. During a secret rotation deliveries carry signatures
/// with both secrets, so either one verifies.
pub fn verify(
    secret: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> std::result::Result<(), VerifyError> {
    let hook = standardwebhooks::Webhook::new(secret).map_err(|_| VerifyError::Secret)?;
    hook.verify(body, headers)
        .map_err(|e| VerifyError::Invalid(e.to_string()))
}

/// A project's webhooks admin API: `{project}/admin/v1/webhooks/…`.
/// Answers are the server's JSON (see `/docs`).
///
/// ```no_run
/// # async fn demo(client: ferrobase::Client) -> ferrobase::Result<()> {
/// let hooks = client.webhooks();
/// let created = hooks.create("https://example.com/hooks", &["db:public:orders", "room:*"]).await?;
/// let secret = created["secret"].as_str().unwrap_or_default(); // shown once: store it
/// # let _ = secret;
/// let failed = hooks.deliveries(created["id"].as_str().unwrap_or_default(), Some("failed"), None).await?;
/// # let _ = failed;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct WebhooksAdmin {
    client: Client,
}

impl Client {
    /// The webhooks admin API of this project (needs the service-role key).
    pub fn webhooks(&self) -> WebhooksAdmin {
        WebhooksAdmin {
            client: self.clone(),
        }
    }
}

impl WebhooksAdmin {
    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Value>,
    ) -> Result<Value> {
        self.client
            .admin_call(method, path, query, body.as_ref())
            .await
    }

    /// Creates an endpoint for `events` (globs on topics such as `room:*`,
    /// `db:public:orders`, or emitted types such as `auth.*`). The answer
    /// carries `secret` (`whsec_…`), shown this once.
    pub async fn create(&self, url: &str, events: &[&str]) -> Result<Value> {
        self.create_with(&json!({ "url": url, "events": events }))
            .await
    }

    /// Creates an endpoint from a full definition
    /// (`{url, events, enabled?, description?}`).
    pub async fn create_with(&self, definition: &Value) -> Result<Value> {
        self.call(
            Method::POST,
            "admin/v1/webhooks",
            &[],
            Some(definition.clone()),
        )
        .await
    }

    /// Every endpoint (without secrets).
    pub async fn list(&self) -> Result<Value> {
        self.call(Method::GET, "admin/v1/webhooks", &[], None).await
    }

    /// One endpoint.
    pub async fn get(&self, id: &str) -> Result<Value> {
        self.call(Method::GET, &format!("admin/v1/webhooks/{id}"), &[], None)
            .await
    }

    /// Changes `{url?, events?, enabled?, description?}`.
    pub async fn update(&self, id: &str, changes: &Value) -> Result<Value> {
        self.call(
            Method::PATCH,
            &format!("admin/v1/webhooks/{id}"),
            &[],
            Some(changes.clone()),
        )
        .await
    }

    /// Deletes an endpoint and its delivery log.
    pub async fn delete(&self, id: &str) -> Result<()> {
        self.call(
            Method::DELETE,
            &format!("admin/v1/webhooks/{id}"),
            &[],
            None,
        )
        .await
        .map(|_| ())
    }

    /// Replaces the secret; the previous one keeps signing too for
    /// `overlap_secs` (server default one day). Returns `{secret, previous_secret_expires_at}`.
    pub async fn rotate_secret(&self, id: &str, overlap_secs: Option<u64>) -> Result<Value> {
        let body = overlap_secs.map(|s| json!({ "overlap_secs": s }));
        self.call(
            Method::POST,
            &format!("admin/v1/webhooks/{id}/rotate-secret"),
            &[],
            Some(body.unwrap_or_else(|| json!({}))),
        )
        .await
    }

    /// An endpoint's deliveries, newest first (`status`: pending, succeeded, failed).
    pub async fn deliveries(
        &self,
        id: &str,
        status: Option<&str>,
        limit: Option<u32>,
    ) -> Result<Value> {
        let limit = limit.map(|l| l.to_string());
        let mut q = Vec::new();
        if let Some(s) = status {
            q.push(("status", s));
        }
        if let Some(l) = &limit {
            q.push(("limit", l.as_str()));
        }
        self.call(
            Method::GET,
            &format!("admin/v1/webhooks/{id}/deliveries"),
            &q,
            None,
        )
        .await
    }

    /// One delivery with its body and attempt log.
    pub async fn delivery(&self, id: &str, delivery: &str) -> Result<Value> {
        self.call(
            Method::GET,
            &format!("admin/v1/webhooks/{id}/deliveries/{delivery}"),
            &[],
            None,
        )
        .await
    }

    /// Sends one delivery again (same `webhook-id`).
    pub async fn replay(&self, id: &str, delivery: &str) -> Result<Value> {
        self.call(
            Method::POST,
            &format!("admin/v1/webhooks/{id}/deliveries/{delivery}/replay"),
            &[],
            None,
        )
        .await
    }

    /// Sends again every failed delivery created since `since` (RFC 3339).
    pub async fn replay_failed_since(&self, id: &str, since: &str) -> Result<Value> {
        self.call(
            Method::POST,
            &format!("admin/v1/webhooks/{id}/replay"),
            &[],
            Some(json!({ "since": since })),
        )
        .await
    }
}
