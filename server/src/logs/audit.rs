//! Reading the platform audit log (`audit_log` in the control plane).
//!
//! Entries are written by [`crate::platform::Platform::audit`] from the
//! mutations of platform admins (projects, SQL, schema, webhooks, functions,
//! AI settings…). Writers put no secret in `details` (a rotated or set
//! secret is recorded as `"set"`/`"removed"`), so entries are returned as
//! stored.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ApiResult};
use crate::platform::Platform;

/// Longest filter value accepted.
const MAX_FILTER: usize = 200;

/// One audit-log entry.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    /// Identifier (increasing; use it as a cursor with `before`).
    pub id: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// Who: a platform admin's email (`admin:<email>` from project admin
    /// APIs), `cli`, or `service_role`.
    pub actor: String,
    /// What, dotted: `project.create`, `sql.execute`, `function.deploy`…
    pub action: String,
    /// On what: a project ref, or `ref/<name>` for something inside one.
    pub target: Option<String>,
    /// Details of the change (never secrets).
    pub details: serde_json::Value,
}

/// Filters of `GET /platform/v1/logs/audit`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
pub struct AuditFilter {
    /// Only entries about this project (target `ref` or `ref/…`).
    pub project: Option<String>,
    /// Only actions starting with this (e.g. `project.`).
    pub action: Option<String>,
    /// Only this actor (exactly as listed).
    pub actor: Option<String>,
    /// Only entries with an id below this (paging back).
    pub before: Option<i64>,
    /// At most this many, newest first (default 100, at most 500).
    pub limit: Option<i64>,
}

fn filter_value(name: &str, v: Option<&str>) -> ApiResult<Option<String>> {
    match v.map(str::trim).filter(|v| !v.is_empty()) {
        Some(v) if v.len() > MAX_FILTER || v.contains('\0') => Err(ApiError::bad_request(
            "invalid_filter",
            format!("`{name}` must be at most {MAX_FILTER} bytes of text."),
        )),
        v => Ok(v.map(str::to_owned)),
    }
}

/// `s` with LIKE's wildcards escaped (backslash is the default escape).
fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// The entries matching `f`, newest first.
pub async fn list(platform: &Platform, f: &AuditFilter) -> ApiResult<Vec<AuditEntry>> {
    let project = filter_value("project", f.project.as_deref())?;
    let action = filter_value("action", f.action.as_deref())?;
    let actor = filter_value("actor", f.actor.as_deref())?;
    let limit = f.limit.unwrap_or(100).clamp(1, 500);
    let project_prefix = project.as_deref().map(|p| format!("{}/%", like_escape(p)));
    let action_prefix = action.as_deref().map(|a| format!("{}%", like_escape(a)));
    let client = platform.control().get().await?;
    let rows = client
        .query(
            "select id, at, actor, action, target, details from audit_log
              where ($1::text is null or target = $1 or target like $2)
                and ($3::text is null or action like $3)
                and ($4::text is null or actor = $4)
                and ($5::bigint is null or id < $5)
              order by id desc
              limit $6",
            &[
                &project,
                &project_prefix,
                &action_prefix,
                &actor,
                &f.before,
                &limit,
            ],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(AuditEntry {
                id: r.try_get(0)?,
                at: r.try_get(1)?,
                actor: r.try_get(2)?,
                action: r.try_get(3)?,
                target: r.try_get(4)?,
                details: r.try_get(5)?,
            })
        })
        .collect::<Result<_, tokio_postgres::Error>>()
        .map_err(ApiError::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_checked_and_escaped() {
        assert_eq!(like_escape("a_b%c\\"), "a\\_b\\%c\\\\");
        assert_eq!(filter_value("x", Some("  ")).ok().flatten(), None);
        assert!(filter_value("x", Some(&"a".repeat(201))).is_err());
        assert!(filter_value("x", Some("a\0b")).is_err());
        assert_eq!(
            filter_value("x", Some(" project. "))
                .ok()
                .flatten()
                .as_deref(),
            Some("project.")
        );
    }
}
