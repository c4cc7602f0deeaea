//! Sessions, access tokens and refresh tokens.
//!
//! - An access token is an ES256 JWT signed with the project key; its claims
//!   are what the data API and `auth.uid()` / `auth.jwt()` see.
//! - A refresh token is 24 random bytes, stored only as its SHA-256. Using one
//!   revokes it and issues its successor. The successor is derived from the
//!   presented token (HMAC-SHA256 keyed by it), so a concurrent second use of
//!   the same token within `refresh_token_reuse_interval` gets the *same*
//!   successor without the server keeping any plaintext; a use after that
//!   interval is treated as theft and deletes the whole session.
//! - Concurrent refreshes of one session are serialised by locking the
//!   session row (`for update`) inside the transaction.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use serde_json::{Value, json};
use tokio_postgres::GenericClient;
use uuid::Uuid;

use super::error::{AuthError, AuthResult};
use super::settings::AuthSettings;
use super::users::{self, User};
use crate::tenant::Tenant;

/// Hex SHA-256 of a token, as stored.
pub fn hash_token(token: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The successor of a refresh token (deterministic, see the module docs).
fn successor(token: &str) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, token.as_bytes());
    let tag = aws_lc_rs::hmac::sign(&key, b"ferrobase refresh-token successor");
    URL_SAFE_NO_PAD.encode(&tag.as_ref()[..24])
}

/// The issuer claim of a project's tokens.
pub fn issuer(config: &crate::Config, tenant: &Tenant) -> String {
    format!(
        "{}/auth/v1",
        config.project_url(&tenant.project.project_ref)
    )
}

/// A session row as the token code needs it.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    /// Session id (`session_id` claim).
    pub id: Uuid,
    /// Assurance level.
    pub aal: String,
    /// Authentication methods.
    pub amr: Value,
}

/// Signs an access token for `user` in `session`. Returns the token and its `exp`.
pub fn access_token(
    config: &crate::Config,
    tenant: &Tenant,
    settings: &AuthSettings,
    user: &User,
    session: &SessionInfo,
) -> AuthResult<(String, i64)> {
    let now = Utc::now().timestamp();
    let exp = now + i64::try_from(settings.jwt_exp).unwrap_or(3600);
    let claims = json!({
        "iss": issuer(config, tenant),
        "ref": tenant.project.project_ref,
        "aud": user.aud,
        "sub": user.id,
        "exp": exp,
        "iat": now,
        "email": user.email.as_deref().unwrap_or(""),
        "phone": user.phone.as_deref().unwrap_or(""),
        "app_metadata": user.app_metadata,
        "user_metadata": user.user_metadata,
        "role": user.role,
        "aal": session.aal,
        "amr": session.amr,
        "session_id": session.id,
        "is_anonymous": user.is_anonymous,
    });
    let key = tenant
        .project
        .keys
        .first()
        .ok_or_else(|| AuthError::internal(&"project has no signing key"))?;
    let token = key.sign(&claims).map_err(|e| AuthError::internal(&e))?;
    Ok((token, exp))
}

/// GoTrue's session response (`AccessTokenResponse`).
pub fn session_json(
    settings: &AuthSettings,
    access: (String, i64),
    refresh_token: &str,
    user: &User,
) -> Value {
    json!({
        "access_token": access.0,
        "token_type": "bearer",
        "expires_in": settings.jwt_exp,
        "expires_at": access.1,
        "refresh_token": refresh_token,
        "user": user.to_json(),
    })
}

/// Where a request came from (recorded on sessions and in the audit log).
#[derive(Debug, Clone, Default)]
pub struct Origin {
    /// Client IP, when known.
    pub ip: Option<String>,
    /// `User-Agent`.
    pub user_agent: Option<String>,
}

/// Starts a session for `user` signed in with `method` (`password`, `otp`,
/// `oauth`, …), issues its first refresh token, records the sign-in and
/// returns the session response.
pub async fn start(
    c: &impl GenericClient,
    config: &crate::Config,
    tenant: &Tenant,
    settings: &AuthSettings,
    user: &mut User,
    method: &str,
    origin: &Origin,
) -> AuthResult<Value> {
    let amr = json!([{ "method": method, "timestamp": Utc::now().timestamp() }]);
    let row = c
        .query_one(
            "insert into auth.sessions (user_id, aal, amr, user_agent, ip, refreshed_at) \
             values ($1, 'aal1', $2, $3, $4, now()) returning id",
            &[&user.id, &amr, &origin.user_agent, &origin.ip],
        )
        .await?;
    let session = SessionInfo {
        id: row.get(0),
        aal: "aal1".into(),
        amr,
    };
    let refresh = crate::crypto::random_token(24);
    c.execute(
        "insert into auth.refresh_tokens (token_hash, session_id, user_id) values ($1, $2, $3)",
        &[&hash_token(&refresh), &session.id, &user.id],
    )
    .await?;
    let row = c
        .query_one(
            "update auth.users set last_sign_in_at = now(), updated_at = now() where id = $1 \
             returning last_sign_in_at",
            &[&user.id],
        )
        .await?;
    user.last_sign_in_at = row.get(0);
    c.execute(
        "update auth.identities set last_sign_in_at = now() where user_id = $1 and provider = $2",
        &[
            &user.id,
            &user.app_metadata["provider"].as_str().unwrap_or("email"),
        ],
    )
    .await?;
    users::audit(
        c,
        "login",
        Some(user.id),
        json!({ "method": method, "session_id": session.id }),
        origin.ip.as_deref(),
    )
    .await?;
    let access = access_token(config, tenant, settings, user, &session)?;
    Ok(session_json(settings, access, &refresh, user))
}

fn not_found() -> AuthError {
    AuthError::bad_request(
        "refresh_token_not_found",
        "Invalid Refresh Token: Refresh Token Not Found",
    )
}

/// What a refresh grant decided.
pub enum Refreshed {
    /// A session response to send.
    Session(Box<Value>),
    /// The token was reused after the interval: the session was revoked
    /// (commit, then answer with this error).
    Revoked(AuthError),
}

/// The refresh-token grant, inside transaction `tx` (see the module docs).
pub async fn refresh(
    tx: &tokio_postgres::Transaction<'_>,
    config: &crate::Config,
    tenant: &Tenant,
    settings: &AuthSettings,
    token: &str,
    origin: &Origin,
) -> AuthResult<Refreshed> {
    let hash = hash_token(token);
    // Lock the session first: concurrent refreshes of one session queue here.
    let Some(row) = tx
        .query_opt(
            "select s.id, s.user_id, s.aal, s.amr, s.not_after is not null and s.not_after <= now() \
             from auth.sessions s join auth.refresh_tokens rt on rt.session_id = s.id \
             where rt.token_hash = $1 for update of s",
            &[&hash],
        )
        .await?
    else {
        return Err(not_found());
    };
    let session = SessionInfo {
        id: row.get(0),
        aal: row.get(2),
        amr: row.get(3),
    };
    let user_id: Uuid = row.get(1);
    let expired: bool = row.get(4);
    if expired {
        return Err(AuthError::bad_request(
            "session_expired",
            "Invalid Refresh Token: Session Expired",
        ));
    }
    let row = tx
        .query_one(
            "select revoked, extract(epoch from now() - updated_at)::float8 \
             from auth.refresh_tokens where token_hash = $1",
            &[&hash],
        )
        .await?;
    let revoked: bool = row.get(0);
    let revoked_for: f64 = row.get(1);
    let Some(mut user) = users::by_id(tx, user_id).await? else {
        return Err(not_found());
    };
    if user.is_banned() {
        return Err(AuthError::bad_request(
            "user_banned",
            "Invalid Refresh Token: User Banned",
        ));
    }
    let next = successor(token);
    let next_hash = hash_token(&next);
    if revoked {
        // Within the reuse interval the successor is handed out again, if it
        // is still the live token of the session.
        let live = tx
            .query_opt(
                "select 1 from auth.refresh_tokens where token_hash = $1 and parent_hash = $2 \
                 and not revoked",
                &[&next_hash, &hash],
            )
            .await?
            .is_some();
        let within = revoked_for <= settings.refresh_token_reuse_interval as f64;
        if !within {
            tx.execute("delete from auth.sessions where id = $1", &[&session.id])
                .await?;
            users::audit(
                tx,
                "token_revoked",
                Some(user.id),
                json!({ "reason": "refresh token reused", "session_id": session.id }),
                origin.ip.as_deref(),
            )
            .await?;
            tracing::warn!(session_id = %session.id, "refresh token reused after the reuse interval: session revoked");
            return Ok(Refreshed::Revoked(AuthError::bad_request(
                "refresh_token_already_used",
                "Invalid Refresh Token: Already Used",
            )));
        }
        if !live {
            return Err(AuthError::bad_request(
                "refresh_token_already_used",
                "Invalid Refresh Token: Already Used",
            ));
        }
    } else {
        tx.execute(
            "update auth.refresh_tokens set revoked = true, updated_at = now() where token_hash = $1",
            &[&hash],
        )
        .await?;
        tx.execute(
            "insert into auth.refresh_tokens (token_hash, parent_hash, session_id, user_id) \
             values ($1, $2, $3, $4)",
            &[&next_hash, &hash, &session.id, &user.id],
        )
        .await?;
    }
    tx.execute(
        "update auth.sessions set refreshed_at = now(), updated_at = now(), \
         user_agent = coalesce($2, user_agent), ip = coalesce($3, ip) where id = $1",
        &[&session.id, &origin.user_agent, &origin.ip],
    )
    .await?;
    user.identities = users::load_identities(tx, user.id).await?;
    let access = access_token(config, tenant, settings, &user, &session)?;
    Ok(Refreshed::Session(Box::new(session_json(
        settings, access, &next, &user,
    ))))
}

/// The live session `id` of `user_id`, if it exists.
pub async fn find(
    c: &impl GenericClient,
    id: Uuid,
    user_id: Uuid,
) -> AuthResult<Option<SessionInfo>> {
    let row = c
        .query_opt(super::users::SESSION_SQL, &[&id, &user_id])
        .await?;
    Ok(row.map(|r| SessionInfo {
        id: r.get(0),
        aal: r.get(1),
        amr: r.get(2),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn successors_are_deterministic_and_distinct() {
        let a = crate::crypto::random_token(24);
        assert_eq!(successor(&a), successor(&a));
        assert_ne!(successor(&a), a);
        assert_ne!(successor(&a), successor(&successor(&a)));
        assert_eq!(successor(&a).len(), 32);
        assert_eq!(hash_token("abc").len(), 64);
    }
}
