//! Platform admin accounts (email + argon2id password) and their bearer
//! tokens: ES256 JWTs signed by the platform key, `role: platform_admin`.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Platform;
use crate::crypto::{JwtError, password};
use crate::error::ApiError;

/// Issuer of platform admin tokens (project tokens carry `ferrobase`).
const ISSUER: &str = "ferrobase-platform";
/// Minimum length of an admin password.
pub const MIN_PASSWORD_LEN: usize = 8;

/// Errors of admin management and login.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Wrong email or password (deliberately not saying which).
    #[error("Invalid email or password.")]
    InvalidCredentials,
    /// The email is not a plausible address.
    #[error("{0:?} is not a valid email address.")]
    InvalidEmail(String),
    /// The password is too short.
    #[error("The password must be at least {MIN_PASSWORD_LEN} characters long.")]
    WeakPassword,
    /// An admin with that email exists.
    #[error("An admin with email {0:?} already exists.")]
    Exists(String),
    /// No admin with that email.
    #[error("No admin with email {0:?}.")]
    NotFound(String),
    /// Too many attempts from this IP, or the account is locked; retry after
    /// the given seconds.
    #[error("Too many login attempts. Try again in {0} seconds.")]
    TooMany(u64),
    /// Signing the token failed.
    #[error(transparent)]
    Jwt(#[from] JwtError),
    /// A database statement failed.
    #[error("database error: {0}")]
    Db(#[from] tokio_postgres::Error),
    /// No connection could be had.
    #[error("database unavailable: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
}

impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::InvalidCredentials => {
                ApiError::unauthorized("invalid_credentials", e.to_string())
            }
            AdminError::InvalidEmail(_) => ApiError::bad_request("invalid_email", e.to_string()),
            AdminError::WeakPassword => ApiError::bad_request("weak_password", e.to_string()),
            AdminError::Exists(_) => ApiError::conflict("admin_exists", e.to_string()),
            AdminError::NotFound(_) => ApiError::not_found("admin_not_found", e.to_string()),
            AdminError::Db(db) => db.into(),
            AdminError::Pool(p) => p.into(),
            AdminError::Jwt(j) => ApiError::internal(&j),
            AdminError::TooMany(secs) => {
                let mut err = ApiError::new(
                    axum::http::StatusCode::TOO_MANY_REQUESTS,
                    "too_many_requests",
                    e.to_string(),
                );
                err.retry_after = Some(secs);
                err
            }
        }
    }
}

/// Claims of a platform admin token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdminClaims {
    /// Admin id.
    pub sub: Uuid,
    /// Admin email.
    pub email: String,
    /// Always `platform_admin`.
    pub role: String,
    /// Issuer, `ferrobase-platform`.
    pub iss: String,
    /// Issued at (unix seconds).
    pub iat: u64,
    /// Expiry (unix seconds).
    pub exp: u64,
}

/// A successful login.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LoginResponse {
    /// Bearer token for `/platform/v1`.
    pub access_token: String,
    /// Always `bearer`.
    pub token_type: &'static str,
    /// Seconds until the token expires.
    pub expires_in: u64,
    /// Who logged in.
    pub admin: AdminInfo,
}

/// A platform admin.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AdminInfo {
    /// Admin id.
    pub id: Uuid,
    /// Admin email.
    pub email: String,
}

/// Normalises and checks an email address.
pub fn parse_email(email: &str) -> Result<String, AdminError> {
    let email = email.trim().to_lowercase();
    let plausible = email.len() <= 254
        && !email.chars().any(char::is_whitespace)
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && !domain.is_empty() && !domain.contains('@')
        });
    if plausible {
        Ok(email)
    } else {
        Err(AdminError::InvalidEmail(email))
    }
}

fn check_password(pw: &str) -> Result<(), AdminError> {
    if pw.chars().count() < MIN_PASSWORD_LEN {
        return Err(AdminError::WeakPassword);
    }
    Ok(())
}

/// argon2 is deliberately slow: keep it off the async worker threads.
async fn hash_password(pw: String) -> String {
    tokio::task::spawn_blocking(move || password::hash(&pw))
        .await
        .unwrap_or_default()
}

/// Creates an admin.
pub async fn create(platform: &Platform, email: &str, pw: &str) -> Result<Uuid, AdminError> {
    let email = parse_email(email)?;
    check_password(pw)?;
    let hash = hash_password(pw.to_owned()).await;
    let client = platform.control().get().await?;
    let row = client
        .query_opt(
            "insert into platform_admins (email, password_hash) values ($1, $2) \
             on conflict (email) do nothing returning id",
            &[&email, &hash],
        )
        .await?
        .ok_or_else(|| AdminError::Exists(email.clone()))?;
    platform
        .audit("cli", "admin.create", &email, serde_json::json!({}))
        .await;
    Ok(row.get(0))
}

/// Sets a new password for an existing admin.
pub async fn reset_password(platform: &Platform, email: &str, pw: &str) -> Result<(), AdminError> {
    let email = parse_email(email)?;
    check_password(pw)?;
    let hash = hash_password(pw.to_owned()).await;
    let client = platform.control().get().await?;
    let n = client
        .execute(
            "update platform_admins set password_hash = $2, updated_at = now() where email = $1",
            &[&email, &hash],
        )
        .await?;
    if n == 0 {
        return Err(AdminError::NotFound(email));
    }
    platform
        .audit("cli", "admin.reset_password", &email, serde_json::json!({}))
        .await;
    Ok(())
}

/// Creates the first admin when there is none. Returns the password when it was generated.
pub async fn ensure_first_admin(
    platform: &Platform,
    email: &str,
    configured: Option<&str>,
) -> Result<Option<String>, AdminError> {
    let client = platform.control().get().await?;
    let count: i64 = client
        .query_one("select count(*) from platform_admins", &[])
        .await?
        .get(0);
    if count > 0 {
        return Ok(None);
    }
    let generated = configured
        .is_none()
        .then(|| crate::crypto::random_token(18));
    let pw = configured.or(generated.as_deref()).unwrap_or_default();
    match create(platform, email, pw).await {
        // Another node created it concurrently.
        Err(AdminError::Exists(_)) => Ok(None),
        Err(e) => Err(e),
        Ok(_) => Ok(generated),
    }
}

/// Checks credentials and issues a token. `ip` is the client address, for
/// the per-IP limit; failures count towards the account's lockout.
pub async fn login(
    platform: &Platform,
    email: &str,
    pw: &str,
    ip: Option<&str>,
) -> Result<LoginResponse, AdminError> {
    let config = platform.config();
    // Normalised without validation: an odd identifier is simply not found,
    // and still counts towards its lockout.
    let account: String = email.trim().to_lowercase().chars().take(255).collect();
    let client = platform.control().get().await?;
    if let Some(ip) = ip
        && let Some(wait) =
            super::limits::hit_ip(&**client, ip, config.platform_login_per_ip).await?
    {
        return Err(AdminError::TooMany(wait));
    }
    if let Some(wait) = super::limits::locked(&**client, &account).await? {
        return Err(AdminError::TooMany(wait));
    }
    let row = match parse_email(email) {
        Ok(email) => {
            client
                .query_opt(
                    "select id, password_hash from platform_admins where email = $1",
                    &[&email],
                )
                .await?
        }
        Err(_) => None,
    };
    let pw = pw.to_owned();
    let (id, ok) = match row {
        Some(row) => {
            let hash: String = row.get(1);
            let ok = tokio::task::spawn_blocking(move || password::verify(&pw, &hash))
                .await
                .unwrap_or(false);
            (row.get::<_, Uuid>(0), ok)
        }
        None => {
            // Same work as a real check, so timing does not reveal unknown emails.
            let _ = tokio::task::spawn_blocking(move || password::dummy_verify(&pw)).await;
            (Uuid::nil(), false)
        }
    };
    if !ok {
        tracing::info!(email = %account, "platform admin login failed");
        super::limits::record_failure(
            &**client,
            &account,
            config.platform_login_max_attempts,
            config.platform_login_lockout_secs,
        )
        .await?;
        return Err(AdminError::InvalidCredentials);
    }
    super::limits::clear(&**client, &account).await?;
    let email = account;
    let ttl = platform.config().admin_token_ttl_secs;
    let iat = crate::crypto::unix_now();
    let claims = AdminClaims {
        sub: id,
        email: email.clone(),
        role: "platform_admin".into(),
        iss: ISSUER.into(),
        iat,
        exp: iat + ttl,
    };
    let access_token = platform.platform_key().sign(&claims)?;
    Ok(LoginResponse {
        access_token,
        token_type: "bearer",
        expires_in: ttl,
        admin: AdminInfo { id, email },
    })
}

/// Verifies a platform admin token.
pub fn verify_token(platform: &Platform, token: &str) -> Result<AdminClaims, JwtError> {
    let claims: AdminClaims = platform.platform_key().verify(token)?;
    if claims.iss != ISSUER || claims.role != "platform_admin" {
        return Err(JwtError::Invalid);
    }
    Ok(claims)
}
