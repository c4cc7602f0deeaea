//! A project's AI configuration, kept in the control plane: settings
//! (allow-list, aliases, anon access, quotas) and providers (base URL, sealed
//! key and headers, priority = fallback order).
//!
//! Read on every gateway call (two indexed rows), so a change made on any
//! node is seen by all at once. Keys and headers are decrypted only into an
//! [`Upstream`], which never implements `Serialize` and redacts itself in
//! `Debug`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::config::Config;
use crate::error::{ApiError, ApiResult};
use crate::platform::Platform;

/// Per-project gateway settings. Every field has a default; a project stores
/// only what it changed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AiSettings {
    /// Accept the project's anon key on `/ai/v1` (off: a signed-in user or the service-role key is needed).
    pub allow_anon: bool,
    /// Models callers may use (after alias resolution); empty = any model the upstream serves.
    pub models: Vec<String>,
    /// Model aliases, e.g. `{"fast": "openai/gpt-4o-mini"}`.
    pub aliases: BTreeMap<String, String>,
    /// Fall back to the platform's default upstream (`FERROBASE_AI_API_KEY`) after the project's own providers.
    pub use_platform_default: bool,
    /// Requests per minute for the whole project (0 = unlimited).
    pub project_requests_per_minute: u64,
    /// Tokens per day (UTC) for the whole project (0 = unlimited).
    pub project_tokens_per_day: u64,
    /// Requests per minute per signed-in user (0 = unlimited).
    pub user_requests_per_minute: u64,
    /// Tokens per day (UTC) per signed-in user (0 = unlimited).
    pub user_tokens_per_day: u64,
}

impl Default for AiSettings {
    fn default() -> Self {
        Self {
            allow_anon: false,
            models: Vec::new(),
            aliases: BTreeMap::new(),
            use_platform_default: true,
            project_requests_per_minute: 0,
            project_tokens_per_day: 0,
            user_requests_per_minute: 0,
            user_tokens_per_day: 0,
        }
    }
}

impl AiSettings {
    /// The model a request names, after aliases; `None` when the allow-list refuses it.
    pub fn resolve_model<'a>(&'a self, requested: &'a str) -> Option<&'a str> {
        let model = self
            .aliases
            .get(requested)
            .map_or(requested, String::as_str);
        (self.models.is_empty() || self.models.iter().any(|m| m == model)).then_some(model)
    }

    fn validate(&self) -> ApiResult<()> {
        let bad = |m: String| ApiError::bad_request("invalid_ai_settings", m);
        for m in self.models.iter().chain(self.aliases.values()) {
            if m.is_empty() || m.len() > 200 {
                return Err(bad(format!(
                    "Model names must be 1 to 200 characters: {m:?}."
                )));
            }
        }
        for a in self.aliases.keys() {
            if a.is_empty() || a.len() > 200 {
                return Err(bad(format!(
                    "Alias names must be 1 to 200 characters: {a:?}."
                )));
            }
        }
        Ok(())
    }
}

/// One upstream ready to be called. Not serialisable; `Debug` hides the key.
#[derive(Clone)]
pub struct Upstream {
    /// Provider name (`platform` for the default upstream).
    pub name: String,
    /// OpenAI-compatible API base, without trailing slash (e.g. `https://api.openai.com/v1`).
    pub base_url: String,
    /// Bearer key, when the provider needs one.
    pub api_key: Option<String>,
    /// Extra request headers.
    pub headers: Vec<(String, String)>,
    /// The operator's platform default: called without the SSRF guard.
    pub trusted: bool,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.name)
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

/// A provider as the admin API shows it: never the key or header values.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ProviderView {
    /// Unique name within the project.
    pub name: String,
    /// OpenAI-compatible API base URL.
    pub base_url: String,
    /// Whether a key is stored.
    pub has_api_key: bool,
    /// Names of the extra headers sent (values are secret).
    pub header_names: Vec<String>,
    /// Lower is tried first.
    pub priority: i32,
    /// Disabled providers are skipped.
    pub enabled: bool,
    /// Creation time.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// Last change.
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

/// Body of `POST /admin/v1/ai/providers` and `PATCH …/{name}` (all optional on PATCH).
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderInput {
    /// Unique name (`[a-z0-9][a-z0-9_-]*`, at most 63); required on create.
    pub name: Option<String>,
    /// OpenAI-compatible API base URL (`https://…/v1`); required on create.
    pub base_url: Option<String>,
    /// The provider's API key (write-only; `null` on PATCH removes it).
    #[serde(default, deserialize_with = "double_option")]
    pub api_key: Option<Option<String>>,
    /// Extra headers (write-only), e.g. `{"HTTP-Referer": "https://app.example"}`.
    pub headers: Option<BTreeMap<String, String>>,
    /// Fallback order: lower first (default 100).
    pub priority: Option<i32>,
    /// Whether the provider is used (default true).
    pub enabled: Option<bool>,
}

fn double_option<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// Checks a provider name.
pub fn check_name(name: &str) -> ApiResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid_provider",
            "A provider name is 1 to 63 characters of a-z, 0-9, `-` and `_`, starting with a letter or digit.",
        ))
    }
}

/// Parses an upstream base URL: http(s), no credentials, no query; trailing `/` dropped.
pub fn parse_base_url(text: &str) -> ApiResult<String> {
    let bad = |m: &str| ApiError::bad_request("invalid_provider", m.to_owned());
    let url = url::Url::parse(text.trim()).map_err(|_| bad("`base_url` is not a valid URL."))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("`base_url` must be an http or https URL."));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(
            "`base_url` must not carry credentials: use `api_key` or `headers`.",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() || url.host_str().is_none() {
        return Err(bad(
            "`base_url` must be a plain base URL such as https://api.openai.com/v1.",
        ));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// A key or header value: 1 to 4096 visible ASCII characters (what an HTTP header can carry).
fn check_header_text(what: &str, value: &str) -> ApiResult<()> {
    if value.is_empty() || value.len() > 4096 || !value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(ApiError::bad_request(
            "invalid_provider",
            format!("{what} must be 1 to 4096 printable ASCII characters."),
        ));
    }
    Ok(())
}

fn check_headers(headers: &BTreeMap<String, String>) -> ApiResult<()> {
    if headers.len() > 20 {
        return Err(ApiError::bad_request(
            "invalid_provider",
            "At most 20 extra headers.",
        ));
    }
    for (name, value) in headers {
        if axum::http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(ApiError::bad_request(
                "invalid_provider",
                format!("{name:?} is not a valid header name."),
            ));
        }
        check_header_text("A header value", value)?;
    }
    Ok(())
}

fn key_context(project: Uuid, name: &str) -> String {
    format!("project:{project}:ai_provider:{name}:api_key")
}

fn headers_context(project: Uuid, name: &str) -> String {
    format!("project:{project}:ai_provider:{name}:headers")
}

/// The effective settings of a project.
pub async fn load_settings(platform: &Platform, project: Uuid) -> ApiResult<AiSettings> {
    let client = platform.control().get().await?;
    let row = client
        .query_opt(
            "select settings from ai_settings where project_id = $1",
            &[&project],
        )
        .await?;
    Ok(match row {
        Some(row) => {
            let stored: Value = row.get(0);
            // Stored values were validated on write; a field added or dropped by a
            // later version must not make the project unusable.
            serde_json::from_value(stored).unwrap_or_else(|e| {
                tracing::warn!(%project, error = %e, "unreadable ai settings, using defaults");
                AiSettings::default()
            })
        }
        None => AiSettings::default(),
    })
}

/// Lays `patch` (a JSON object of settings) over the current settings and stores them.
pub async fn update_settings(
    platform: &Platform,
    project: Uuid,
    patch: &Map<String, Value>,
) -> ApiResult<AiSettings> {
    let current = load_settings(platform, project).await?;
    let mut merged = match serde_json::to_value(&current) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    for (k, v) in patch {
        merged.insert(k.clone(), v.clone());
    }
    let settings: AiSettings = serde_json::from_value(Value::Object(merged)).map_err(|e| {
        ApiError::bad_request("invalid_ai_settings", format!("Invalid AI settings: {e}."))
    })?;
    settings.validate()?;
    let stored = serde_json::to_value(&settings).map_err(|e| ApiError::internal(&e))?;
    let client = platform.control().get().await?;
    client
        .execute(
            "insert into ai_settings (project_id, settings) values ($1, $2)
             on conflict (project_id) do update set settings = excluded.settings, updated_at = now()",
            &[&project, &stored],
        )
        .await?;
    Ok(settings)
}

fn view(row: &tokio_postgres::Row, platform: &Platform, project: Uuid) -> ProviderView {
    let name: String = row.get("name");
    let header_names = row
        .get::<_, Option<String>>("headers_enc")
        .and_then(|sealed| {
            platform
                .secrets()
                .decrypt_str(&headers_context(project, &name), &sealed)
                .ok()
        })
        .and_then(|json| serde_json::from_str::<BTreeMap<String, String>>(&json).ok())
        .map(|h| h.into_keys().collect())
        .unwrap_or_default();
    ProviderView {
        has_api_key: row.get::<_, Option<String>>("api_key_enc").is_some(),
        base_url: row.get("base_url"),
        header_names,
        priority: row.get("priority"),
        enabled: row.get("enabled"),
        created_at: row.get("created_at"),
        updated_at: row.get("updated_at"),
        name,
    }
}

const PROVIDER_COLUMNS: &str =
    "name, base_url, api_key_enc, headers_enc, priority, enabled, created_at, updated_at";

/// Providers of a project in fallback order.
pub async fn list_providers(platform: &Platform, project: Uuid) -> ApiResult<Vec<ProviderView>> {
    let client = platform.control().get().await?;
    let rows = client
        .query(
            &format!(
                "select {PROVIDER_COLUMNS} from ai_providers where project_id = $1 order by priority, name"
            ),
            &[&project],
        )
        .await?;
    Ok(rows.iter().map(|r| view(r, platform, project)).collect())
}

fn not_found(name: &str) -> ApiError {
    ApiError::not_found(
        "provider_not_found",
        format!("No AI provider named {name:?}."),
    )
}

/// Creates a provider.
pub async fn create_provider(
    platform: &Platform,
    project: Uuid,
    input: ProviderInput,
) -> ApiResult<ProviderView> {
    let name = input
        .name
        .ok_or_else(|| ApiError::bad_request("invalid_provider", "`name` is required."))?;
    check_name(&name)?;
    let base_url =
        parse_base_url(input.base_url.as_deref().ok_or_else(|| {
            ApiError::bad_request("invalid_provider", "`base_url` is required.")
        })?)?;
    let secrets = platform.secrets();
    let key_enc = match input.api_key.flatten() {
        Some(k) => {
            check_header_text("`api_key`", &k)?;
            Some(secrets.encrypt_str(&key_context(project, &name), &k))
        }
        None => None,
    };
    let headers_enc = match &input.headers {
        Some(h) => {
            check_headers(h)?;
            let json = serde_json::to_string(h).map_err(|e| ApiError::internal(&e))?;
            Some(secrets.encrypt_str(&headers_context(project, &name), &json))
        }
        None => None,
    };
    let client = platform.control().get().await?;
    let row = client
        .query_opt(
            &format!(
                "insert into ai_providers (project_id, name, base_url, api_key_enc, headers_enc, priority, enabled)
                 values ($1, $2, $3, $4, $5, $6, $7) on conflict do nothing returning {PROVIDER_COLUMNS}"
            ),
            &[
                &project,
                &name,
                &base_url,
                &key_enc,
                &headers_enc,
                &input.priority.unwrap_or(100),
                &input.enabled.unwrap_or(true),
            ],
        )
        .await?
        .ok_or_else(|| {
            ApiError::conflict("provider_exists", format!("A provider named {name:?} exists."))
        })?;
    Ok(view(&row, platform, project))
}

/// Changes a provider (only the fields given).
pub async fn update_provider(
    platform: &Platform,
    project: Uuid,
    name: &str,
    input: ProviderInput,
) -> ApiResult<ProviderView> {
    if input.name.as_deref().is_some_and(|n| n != name) {
        return Err(ApiError::bad_request(
            "invalid_provider",
            "A provider cannot be renamed: delete it and create another.",
        ));
    }
    let base_url = input.base_url.as_deref().map(parse_base_url).transpose()?;
    let secrets = platform.secrets();
    // Outer None: unchanged; Some(None): remove.
    let key_enc: Option<Option<String>> = match input.api_key {
        None => None,
        Some(None) => Some(None),
        Some(Some(k)) => {
            check_header_text("`api_key`", &k)?;
            Some(Some(secrets.encrypt_str(&key_context(project, name), &k)))
        }
    };
    let headers_enc = match &input.headers {
        Some(h) => {
            check_headers(h)?;
            let json = serde_json::to_string(h).map_err(|e| ApiError::internal(&e))?;
            Some(secrets.encrypt_str(&headers_context(project, name), &json))
        }
        None => None,
    };
    let client = platform.control().get().await?;
    let row = client
        .query_opt(
            &format!(
                "update ai_providers set
                   base_url = coalesce($3, base_url),
                   api_key_enc = case when $4 then $5 else api_key_enc end,
                   headers_enc = coalesce($6, headers_enc),
                   priority = coalesce($7, priority),
                   enabled = coalesce($8, enabled),
                   updated_at = now()
                 where project_id = $1 and name = $2 returning {PROVIDER_COLUMNS}"
            ),
            &[
                &project,
                &name,
                &base_url,
                &key_enc.is_some(),
                &key_enc.flatten(),
                &headers_enc,
                &input.priority,
                &input.enabled,
            ],
        )
        .await?
        .ok_or_else(|| not_found(name))?;
    Ok(view(&row, platform, project))
}

/// Deletes a provider.
pub async fn delete_provider(platform: &Platform, project: Uuid, name: &str) -> ApiResult<()> {
    let client = platform.control().get().await?;
    let n = client
        .execute(
            "delete from ai_providers where project_id = $1 and name = $2",
            &[&project, &name],
        )
        .await?;
    if n == 0 {
        return Err(not_found(name));
    }
    Ok(())
}

/// The upstreams a call may use, in fallback order: the project's enabled
/// providers, then the platform default when it has a key and the project
/// allows it. Empty means nothing is configured.
pub async fn upstreams(
    platform: &Platform,
    config: &Config,
    project: Uuid,
    settings: &AiSettings,
) -> ApiResult<Vec<Upstream>> {
    let client = platform.control().get().await?;
    let rows = client
        .query(
            "select name, base_url, api_key_enc, headers_enc from ai_providers
             where project_id = $1 and enabled order by priority, name",
            &[&project],
        )
        .await?;
    let secrets = platform.secrets();
    let mut out = Vec::with_capacity(rows.len() + 1);
    for row in rows {
        let name: String = row.get("name");
        let api_key = row
            .get::<_, Option<String>>("api_key_enc")
            .map(|sealed| secrets.decrypt_str(&key_context(project, &name), &sealed))
            .transpose()
            .map_err(|e| ApiError::internal(&e))?;
        let headers = row
            .get::<_, Option<String>>("headers_enc")
            .map(|sealed| secrets.decrypt_str(&headers_context(project, &name), &sealed))
            .transpose()
            .map_err(|e| ApiError::internal(&e))?
            .map(|json| serde_json::from_str::<BTreeMap<String, String>>(&json))
            .transpose()
            .map_err(|e| ApiError::internal(&e))?
            .unwrap_or_default();
        out.push(Upstream {
            name,
            base_url: row.get("base_url"),
            api_key,
            headers: headers.into_iter().collect(),
            trusted: false,
        });
    }
    if settings.use_platform_default
        && let Some(key) =
            crate::config::exposed(&config.ai.ai_api_key).filter(|k| !k.trim().is_empty())
    {
        out.push(Upstream {
            name: "platform".to_owned(),
            base_url: config.ai.ai_base_url.trim_end_matches('/').to_owned(),
            api_key: Some(key.trim().to_owned()),
            headers: Vec::new(),
            trusted: true,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_and_allow_list() {
        let mut s = AiSettings::default();
        assert_eq!(s.resolve_model("anything"), Some("anything"));
        s.aliases.insert("fast".into(), "openai/gpt-4o-mini".into());
        s.models = vec!["openai/gpt-4o-mini".into()];
        assert_eq!(s.resolve_model("fast"), Some("openai/gpt-4o-mini"));
        assert_eq!(
            s.resolve_model("openai/gpt-4o-mini"),
            Some("openai/gpt-4o-mini")
        );
        assert_eq!(s.resolve_model("gpt-5"), None);
    }

    #[test]
    fn base_urls() {
        assert_eq!(
            parse_base_url("https://api.openai.com/v1/").unwrap(),
            "https://api.openai.com/v1"
        );
        assert!(parse_base_url("ftp://x/v1").is_err());
        assert!(parse_base_url("https://user:pw@x/v1").is_err());
        assert!(parse_base_url("https://x/v1?key=1").is_err());
        assert!(parse_base_url("not a url").is_err());
    }

    #[test]
    fn names_and_headers() {
        assert!(check_name("openai").is_ok());
        assert!(check_name("Open AI").is_err());
        assert!(check_name("-x").is_err());
        let mut h = BTreeMap::new();
        h.insert("X-Title".to_owned(), "app".to_owned());
        assert!(check_headers(&h).is_ok());
        h.insert("Bad Header".to_owned(), "v".to_owned());
        assert!(check_headers(&h).is_err());
        assert!(check_header_text("k", "line\nbreak").is_err());
    }

    #[test]
    fn upstream_debug_hides_key() {
        let u = Upstream {
            name: "p".into(),
            base_url: "https://x/v1".into(),
            api_key: Some("sk-secret".into()),
            headers: vec![("x".into(), "secret-header".into())],
            trusted: false,
        };
        let text = format!("{u:?}");
        assert!(!text.contains("sk-secret") && !text.contains("secret-header"));
    }
}
