//! PKCE flows (RFC 7636) between the app and the auth API.
//!
//! An app that sends `code_challenge` (+ `code_challenge_method`, `s256` or
//! `plain`) when it starts a flow (sign-up, magic link, recovery, OAuth) gets
//! an auth code instead of tokens at the end of it (`redirect_to?code=…`), and
//! exchanges it with `POST /token?grant_type=pkce {auth_code, code_verifier}`.
//! The flow state lives in `auth.flow_state` (any node can finish it); auth
//! codes are stored hashed, single-use and short-lived.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tokio_postgres::GenericClient;
use uuid::Uuid;

use super::error::{AuthError, AuthResult};
use super::session::hash_token;

/// How long an issued auth code may be exchanged, in seconds.
pub const AUTH_CODE_TTL_SECS: f64 = 300.0;

/// A validated code challenge.
#[derive(Debug, Clone)]
pub struct Challenge {
    /// The challenge.
    pub challenge: String,
    /// `s256` or `plain`.
    pub method: String,
}

/// Parses the optional challenge parameters of a flow start.
pub fn parse(challenge: Option<&str>, method: Option<&str>) -> AuthResult<Option<Challenge>> {
    let challenge = challenge.map(str::trim).filter(|c| !c.is_empty());
    let method = method
        .map(|m| m.trim().to_lowercase())
        .filter(|m| !m.is_empty());
    match (challenge, method) {
        (None, None) => Ok(None),
        (Some(c), Some(m)) => {
            if !matches!(m.as_str(), "s256" | "plain") {
                return Err(AuthError::validation("code challenge method not supported"));
            }
            if !(43..=128).contains(&c.len())
                || !c
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
            {
                return Err(AuthError::validation(
                    "code challenge has to be between 43 and 128 unreserved characters",
                ));
            }
            Ok(Some(Challenge {
                challenge: c.to_owned(),
                method: m,
            }))
        }
        _ => Err(AuthError::validation(
            "PKCE flow requires code_challenge_method and code_challenge",
        )),
    }
}

/// Starts a flow; returns its id.
pub async fn create(
    c: &impl GenericClient,
    challenge: &Challenge,
    provider_type: &str,
    authentication_method: &str,
    ttl_secs: f64,
) -> AuthResult<Uuid> {
    let row = c
        .query_one(
            "insert into auth.flow_state (code_challenge, code_challenge_method, provider_type, \
             authentication_method, expires_at) values ($1, $2, $3, $4, now() + make_interval(secs => $5)) \
             returning id",
            &[
                &challenge.challenge,
                &challenge.method,
                &provider_type,
                &authentication_method,
                &ttl_secs,
            ],
        )
        .await?;
    Ok(row.get(0))
}

/// Finishes the user side of flow `id` for `user_id`: issues its auth code.
pub async fn issue_code(c: &impl GenericClient, id: Uuid, user_id: Uuid) -> AuthResult<String> {
    let code = Uuid::new_v4().to_string();
    let n = c
        .execute(
            "update auth.flow_state set user_id = $2, auth_code_hash = $3, auth_code_issued_at = now(), \
             updated_at = now() where id = $1",
            &[&id, &user_id, &hash_token(&code)],
        )
        .await?;
    if n == 0 {
        return Err(not_found());
    }
    Ok(code)
}

fn not_found() -> AuthError {
    AuthError::not_found(
        "flow_state_not_found",
        "invalid flow state, no valid flow state found",
    )
}

/// What a successful exchange yields.
pub struct Exchanged {
    /// The user.
    pub user_id: Uuid,
    /// How they authenticated (`email/signup`, `magiclink`, `oauth`, …).
    pub authentication_method: String,
    /// Provider tokens (OAuth flows).
    pub provider_access_token: Option<String>,
    /// Provider refresh token (OAuth flows).
    pub provider_refresh_token: Option<String>,
}

/// `grant_type=pkce`: checks the verifier against the flow's challenge and
/// consumes the flow.
pub async fn exchange(
    c: &impl GenericClient,
    auth_code: &str,
    verifier: &str,
) -> AuthResult<Exchanged> {
    if !(43..=128).contains(&verifier.len()) {
        return Err(AuthError::validation(
            "code verifier should be at least 43 characters",
        ));
    }
    // Deleted on the first attempt, right or wrong: a code is never tried twice.
    let row = c
        .query_opt(
            "delete from auth.flow_state where auth_code_hash = $1 returning user_id, code_challenge, \
             code_challenge_method, authentication_method, provider_access_token, provider_refresh_token, \
             auth_code_issued_at + make_interval(secs => $2) > now()",
            &[&hash_token(auth_code), &AUTH_CODE_TTL_SECS],
        )
        .await?
        .ok_or_else(not_found)?;
    let live: Option<bool> = row.get(6);
    if live != Some(true) {
        return Err(AuthError::bad_request(
            "flow_state_expired",
            "Flow state has expired",
        ));
    }
    let challenge: Option<String> = row.get(1);
    let method: Option<String> = row.get(2);
    let expected = match method.as_deref() {
        Some("plain") => verifier.to_owned(),
        _ => URL_SAFE_NO_PAD.encode(
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes()).as_ref(),
        ),
    };
    let matches = challenge.as_deref().is_some_and(|c| {
        aws_lc_rs::constant_time::verify_slices_are_equal(c.as_bytes(), expected.as_bytes()).is_ok()
    });
    if !matches {
        return Err(AuthError::bad_request(
            "bad_code_verifier",
            "code challenge does not match previously saved code verifier",
        ));
    }
    let user_id: Option<Uuid> = row.get(0);
    Ok(Exchanged {
        user_id: user_id.ok_or_else(not_found)?,
        authentication_method: row.get(3),
        provider_access_token: row.get(4),
        provider_refresh_token: row.get(5),
    })
}

/// Appends `?code=…` (or `&code=…`) to a redirect URL, before any fragment.
pub fn with_code(redirect_to: &str, code: &str) -> String {
    let (base, fragment) = match redirect_to.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (redirect_to, None),
    };
    let sep = if base.contains('?') { '&' } else { '?' };
    let mut out = format!("{base}{sep}code={code}");
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        let c = "a".repeat(43);
        assert!(parse(None, None).unwrap().is_none());
        assert_eq!(
            parse(Some(&c), Some("S256")).unwrap().unwrap().method,
            "s256"
        );
        assert!(parse(Some(&c), None).is_err());
        assert!(parse(Some("short"), Some("s256")).is_err());
        assert!(parse(Some(&c), Some("md5")).is_err());
        assert!(parse(Some(&format!("{c}!")), Some("plain")).is_err());
    }

    #[test]
    fn code_urls() {
        assert_eq!(with_code("http://a/b", "x"), "http://a/b?code=x");
        assert_eq!(
            with_code("http://a/b?c=1#f", "x"),
            "http://a/b?c=1&code=x#f"
        );
    }
}
