//! Per-project auth settings.
//!
//! The server config gives defaults for every project ([`AuthSettings::defaults`]);
//! a project stores only its overrides (`auth.config.settings`, a JSON object)
//! and changes them through `PUT /auth/v1/admin/config`. The effective
//! settings are the defaults with the overrides laid over them, read once per
//! request (one indexed row), so a change is seen by every node at once.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::error::{AuthError, AuthResult};
use crate::config::Config;

/// The effective auth settings of a project. Field names follow GoTrue's
/// configuration where it has one.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// Where links in mail lead when no (allowed) `redirect_to` is given.
    pub site_url: String,
    /// Other allowed redirect URLs; `*` matches within a path segment or host label, `**` anything.
    pub uri_allow_list: Vec<String>,
    /// Refuse new sign-ups (existing users can still sign in).
    pub disable_signup: bool,
    /// Skip email confirmation: sign-up returns a session at once (GoTrue `MAILER_AUTOCONFIRM`).
    pub mailer_autoconfirm: bool,
    /// Email + password and email OTP sign-in enabled.
    pub external_email_enabled: bool,
    /// Anonymous sign-ins enabled.
    pub external_anonymous_users_enabled: bool,
    /// An email change must be confirmed on both the old and the new address.
    pub secure_email_change_enabled: bool,
    /// Lifetime of access tokens, in seconds.
    pub jwt_exp: u64,
    /// Minimum password length.
    pub password_min_length: usize,
    /// Character sets a password must each draw from, separated by `:` (GoTrue format),
    /// e.g. `abcdefghijklmnopqrstuvwxyz:ABCDEFGHIJKLMNOPQRSTUVWXYZ:0123456789`.
    pub password_required_characters: String,
    /// Seconds during which a rotated refresh token may be presented again and
    /// yields the same successor (concurrent tabs); later reuse revokes the session.
    pub refresh_token_reuse_interval: u64,
    /// Failed password sign-ins that lock an account.
    pub lockout_max_attempts: u32,
    /// How long an account stays locked, in seconds (also the window failures are counted in).
    pub lockout_duration_secs: u64,
    /// Length of the rate-limit windows, in seconds.
    pub rate_limit_window_secs: u64,
    /// Sign-ups and password sign-ins per IP per window.
    pub rate_limit_sign_in_sign_ups: u32,
    /// Refresh-token grants per IP per window.
    pub rate_limit_token_refresh: u32,
    /// Verifications (`/verify`) per IP per window.
    pub rate_limit_verify: u32,
    /// OTP / magic-link / recovery / resend requests per IP per window.
    pub rate_limit_otp: u32,
    /// Requests per account (email) per window, for each of sign-up, sign-in,
    /// otp, recover, verify and resend.
    pub rate_limit_per_account: u32,
    /// MFA verifications (right or wrong) per factor per window; per IP they
    /// count against `rate_limit_verify`.
    pub rate_limit_mfa_verify: u32,
    /// Minimum seconds between two mails of the same kind to one address.
    pub smtp_max_frequency_secs: u64,
    /// Lifetime of mailed links and codes, in seconds.
    pub mailer_otp_exp: u64,
    /// The project's own SMTP server, if configured (`PUT /admin/smtp`; never serialised).
    #[serde(skip)]
    pub smtp: Option<Smtp>,
}

/// A project's SMTP server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Smtp {
    /// lettre SMTP URL (with credentials).
    pub url: String,
    /// Sender; the server's `FERROBASE_SMTP_FROM` when unset.
    pub from: Option<String>,
}

impl AuthSettings {
    /// The defaults every project starts from.
    pub fn defaults(config: &Config) -> Self {
        Self {
            site_url: config.public_url(),
            uri_allow_list: Vec::new(),
            disable_signup: false,
            mailer_autoconfirm: config.auth_autoconfirm,
            external_email_enabled: true,
            external_anonymous_users_enabled: false,
            secure_email_change_enabled: true,
            jwt_exp: 3600,
            password_min_length: 6,
            password_required_characters: String::new(),
            refresh_token_reuse_interval: 10,
            lockout_max_attempts: 5,
            lockout_duration_secs: 30 * 60,
            rate_limit_window_secs: 300,
            rate_limit_sign_in_sign_ups: 30,
            rate_limit_token_refresh: 150,
            rate_limit_verify: 30,
            rate_limit_otp: 30,
            rate_limit_per_account: 30,
            rate_limit_mfa_verify: 10,
            smtp_max_frequency_secs: 60,
            mailer_otp_exp: 3600,
            smtp: None,
        }
    }

    /// The defaults with `overrides` (a JSON object) laid over them.
    pub fn merged(config: &Config, overrides: &Value) -> AuthResult<Self> {
        let mut base =
            serde_json::to_value(Self::defaults(config)).map_err(|e| AuthError::internal(&e))?;
        if let (Some(base), Some(over)) = (base.as_object_mut(), overrides.as_object()) {
            for (k, v) in over {
                base.insert(k.clone(), v.clone());
            }
        }
        let settings: Self = serde_json::from_value(base)
            .map_err(|e| AuthError::validation(format!("Invalid auth settings: {e}")))?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> AuthResult<()> {
        if url::Url::parse(&self.site_url).is_err() {
            return Err(AuthError::validation("site_url must be an absolute URL"));
        }
        if self.jwt_exp == 0 || self.jwt_exp > 7 * 24 * 3600 {
            return Err(AuthError::validation(
                "jwt_exp must be between 1 second and 7 days",
            ));
        }
        if self.password_min_length > 72 {
            return Err(AuthError::validation(
                "password_min_length must be at most 72",
            ));
        }
        if self.rate_limit_window_secs == 0 || self.lockout_duration_secs == 0 {
            return Err(AuthError::validation(
                "rate_limit_window_secs and lockout_duration_secs must be positive",
            ));
        }
        Ok(())
    }

    /// Checks a new password against the policy.
    pub fn check_password(&self, password: &str) -> AuthResult<()> {
        let mut reasons = Vec::new();
        if password.chars().count() < self.password_min_length {
            reasons.push("length");
        }
        let sets = self
            .password_required_characters
            .split(':')
            .filter(|s| !s.is_empty());
        let mut missing = false;
        for set in sets {
            if !password.chars().any(|c| set.contains(c)) {
                missing = true;
            }
        }
        if missing {
            reasons.push("characters");
        }
        match reasons.as_slice() {
            [] => Ok(()),
            ["length"] => Err(AuthError::weak_password(
                format!(
                    "Password should be at least {} characters.",
                    self.password_min_length
                ),
                reasons,
            )),
            _ => Err(AuthError::weak_password(
                format!(
                    "Password should contain at least one character of each: {}.",
                    self.password_required_characters
                        .split(':')
                        .filter(|s| !s.is_empty())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                reasons,
            )),
        }
    }
}

/// The encryption context of a project's SMTP URL.
pub fn smtp_context(project: uuid::Uuid) -> String {
    format!("project:{project}:auth_smtp_url")
}

/// Loads the effective settings of the project behind `client` (decrypting
/// its SMTP URL with `secrets`).
pub async fn load(
    client: &deadpool_postgres::ClientWrapper,
    config: &Config,
    secrets: &crate::crypto::SecretBox,
    project: uuid::Uuid,
) -> AuthResult<AuthSettings> {
    // Read on every auth request: prepared once per connection.
    let stmt = client
        .prepare_cached("select settings, smtp_url_enc, smtp_from from auth.config")
        .await?;
    let row = client.query_opt(&stmt, &[]).await?;
    let Some(row) = row else {
        return AuthSettings::merged(config, &Value::Object(Map::new()));
    };
    let mut settings = AuthSettings::merged(config, &row.get(0))?;
    if let Some(enc) = row.get::<_, Option<String>>(1) {
        let url = secrets
            .decrypt_str(&smtp_context(project), &enc)
            .map_err(|e| AuthError::internal(&e))?;
        settings.smtp = Some(Smtp {
            url,
            from: row.get(2),
        });
    }
    Ok(settings)
}

/// Lays `patch` (a JSON object) over the stored overrides, validates the
/// result and stores it. Returns the new effective settings.
pub async fn update(
    client: &tokio_postgres::Client,
    config: &Config,
    patch: &Value,
) -> AuthResult<AuthSettings> {
    let Some(patch) = patch.as_object() else {
        return Err(AuthError::validation("The settings must be a JSON object"));
    };
    let row = client
        .query_opt("select settings from auth.config", &[])
        .await?;
    let mut overrides: Value = row.map_or(Value::Object(Map::new()), |r| r.get(0));
    if !overrides.is_object() {
        overrides = Value::Object(Map::new());
    }
    if let Some(map) = overrides.as_object_mut() {
        for (k, v) in patch {
            if v.is_null() {
                map.remove(k);
            } else {
                map.insert(k.clone(), v.clone());
            }
        }
    }
    let settings = AuthSettings::merged(config, &overrides)?;
    client
        .execute(
            "insert into auth.config (id, settings, updated_at) values (true, $1, now()) \
             on conflict (id) do update set settings = excluded.settings, updated_at = now()",
            &[&overrides],
        )
        .await?;
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config() -> Config {
        Config::for_tests("host=/nonexistent".into(), std::env::temp_dir())
    }

    #[test]
    fn overrides_and_validation() {
        let s = AuthSettings::merged(&config(), &json!({"jwt_exp": 60})).unwrap();
        assert_eq!(s.jwt_exp, 60);
        assert_eq!(s.lockout_max_attempts, 5);
        assert!(AuthSettings::merged(&config(), &json!({"jwt_exp": "x"})).is_err());
        assert!(AuthSettings::merged(&config(), &json!({"no_such": 1})).is_err());
        assert!(AuthSettings::merged(&config(), &json!({"site_url": "nope"})).is_err());
    }

    #[test]
    fn password_policy() {
        let mut s = AuthSettings::defaults(&config());
        assert!(s.check_password("123456").is_ok());
        let e = s.check_password("12345").unwrap_err();
        assert_eq!(e.weak_password, Some(vec!["length"]));
        s.password_required_characters = "abc:0123456789".into();
        assert!(s.check_password("a12345").is_ok());
        let e = s.check_password("zz12345").unwrap_err();
        assert_eq!(e.weak_password, Some(vec!["characters"]));
    }
}
