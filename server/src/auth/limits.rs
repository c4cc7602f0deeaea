//! Rate limits and login lockout, kept in the project database so every
//! server node sees the same counters.
//!
//! - Rate limits are fixed windows: one row per key (`signup:ip:1.2.3.4`,
//!   `token:acct:a@b.c` …) counting hits since the window started; one upsert
//!   per check.
//! - Lockout counts failed password sign-ins per account identifier (whether
//!   or not such a user exists, so it reveals nothing). Reaching the maximum
//!   locks the identifier for the lockout duration; a success clears it.

use tokio_postgres::GenericClient;

use super::error::{AuthError, AuthResult};
use super::settings::AuthSettings;

/// The actions that are rate limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `POST /signup`.
    Signup,
    /// `POST /token?grant_type=password` (and other sign-in grants).
    SignIn,
    /// `POST /token?grant_type=refresh_token`.
    Refresh,
    /// `POST /otp`, `/magiclink`.
    Otp,
    /// `POST /recover`.
    Recover,
    /// `POST|GET /verify`.
    Verify,
    /// `POST /resend`.
    Resend,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::Signup => "signup",
            Action::SignIn => "token",
            Action::Refresh => "refresh",
            Action::Otp => "otp",
            Action::Recover => "recover",
            Action::Verify => "verify",
            Action::Resend => "resend",
        }
    }

    fn per_ip_limit(self, s: &AuthSettings) -> u32 {
        match self {
            Action::Signup | Action::SignIn => s.rate_limit_sign_in_sign_ups,
            Action::Refresh => s.rate_limit_token_refresh,
            Action::Verify => s.rate_limit_verify,
            Action::Otp | Action::Recover | Action::Resend => s.rate_limit_otp,
        }
    }
}

/// Counts one hit on `key` in its fixed window of `window_secs`; returns the
/// hits in the window so far and the seconds left in it.
async fn bump(c: &impl GenericClient, key: &str, window_secs: u64) -> AuthResult<(i32, f64)> {
    let window = window_secs as f64;
    let row = c
        .query_one(
            "insert into auth.rate_limits as r (key, window_start, hits) values ($1, now(), 1) \
             on conflict (key) do update set \
               window_start = case when r.window_start + make_interval(secs => $2) <= now() \
                              then now() else r.window_start end, \
               hits = case when r.window_start + make_interval(secs => $2) <= now() \
                      then 1 else r.hits + 1 end \
             returning hits, extract(epoch from window_start + make_interval(secs => $2) - now())::float8",
            &[&key, &window],
        )
        .await?;
    Ok((row.get(0), row.get(1)))
}

/// Counts one hit on `key`; returns the seconds left in the window when more
/// than `limit` hits fell in the current window of `window_secs`.
async fn hit(
    c: &impl GenericClient,
    key: &str,
    limit: u32,
    window_secs: u64,
) -> AuthResult<Option<u64>> {
    let (hits, remaining) = bump(c, key, window_secs).await?;
    if i64::from(hits) > i64::from(limit) {
        return Ok(Some(remaining.ceil().max(1.0) as u64));
    }
    Ok(None)
}

fn over_limit(retry_after: u64) -> AuthError {
    AuthError::too_many(
        "over_request_rate_limit",
        "Request rate limit reached",
        retry_after,
    )
}

/// At most one mail of `kind` to address `to` per `smtp_max_frequency_secs`
/// (counted whether or not the address belongs to a user, so the answer
/// reveals nothing). 429 `over_email_send_rate_limit` otherwise.
pub async fn mail_frequency(
    c: &impl GenericClient,
    settings: &AuthSettings,
    kind: &str,
    to: &str,
) -> AuthResult<()> {
    if settings.smtp_max_frequency_secs == 0 {
        return Ok(());
    }
    let key = format!("mail:{kind}:{to}");
    if let Some(wait) = hit(c, &key, 1, settings.smtp_max_frequency_secs).await? {
        return Err(AuthError::too_many(
            "over_email_send_rate_limit",
            format!("For security purposes, you can only request this after {wait} seconds."),
            wait,
        ));
    }
    Ok(())
}

/// Applies the per-IP limit (when the IP is known) and the per-account limit
/// (when an account identifier is given) of `action`.
pub async fn check(
    c: &impl GenericClient,
    settings: &AuthSettings,
    action: Action,
    ip: Option<&str>,
    account: Option<&str>,
) -> AuthResult<()> {
    let window = settings.rate_limit_window_secs;
    if let Some(ip) = ip {
        let key = format!("{}:ip:{ip}", action.name());
        if let Some(wait) = hit(c, &key, action.per_ip_limit(settings), window).await? {
            return Err(over_limit(wait));
        }
    }
    if let Some(account) = account {
        let key = format!("{}:acct:{account}", action.name());
        if let Some(wait) = hit(c, &key, settings.rate_limit_per_account, window).await? {
            return Err(over_limit(wait));
        }
    }
    // Forget long-expired rows now and then (about 1 check in 64).
    if crate::crypto::random_bytes(1)[0] < 4 {
        c.batch_execute(
            "delete from auth.rate_limits where window_start < now() - interval '1 day'; \
             delete from auth.one_time_tokens where expires_at < now() - interval '1 day'; \
             delete from auth.flow_state where expires_at < now() - interval '1 day'; \
             delete from auth.mfa_challenges where expires_at < now() - interval '1 day'; \
             delete from auth.lockouts where locked_until < now() - interval '1 day' \
               or (locked_until is null and last_failure_at < now() - interval '1 day');",
        )
        .await?;
    }
    Ok(())
}

/// Counts one hit on each of `keys` (with its own limit) in the current
/// window; 429 when any is over. For limits that are not tied to one of the
/// [`Action`]s, such as MFA verification per factor.
pub async fn check_keys(
    c: &impl GenericClient,
    settings: &AuthSettings,
    keys: &[(&str, u32)],
) -> AuthResult<()> {
    for (key, limit) in keys {
        if let Some(wait) = hit(c, key, *limit, settings.rate_limit_window_secs).await? {
            return Err(over_limit(wait));
        }
    }
    Ok(())
}

/// Counts one failure on `key` within `window_secs` and returns how many
/// there were in that window (used to burn an MFA challenge after a few
/// wrong codes).
pub async fn count_failure(c: &impl GenericClient, key: &str, window_secs: u64) -> AuthResult<u32> {
    let (hits, _) = bump(c, key, window_secs).await?;
    Ok(u32::try_from(hits).unwrap_or(0))
}

/// Errors with 429 when `account` is locked out.
pub async fn check_lockout(c: &impl GenericClient, account: &str) -> AuthResult<()> {
    let row = c
        .query_opt(
            "select extract(epoch from locked_until - now())::float8 from auth.lockouts \
             where account = $1 and locked_until > now()",
            &[&account],
        )
        .await?;
    if let Some(row) = row {
        let remaining: f64 = row.get(0);
        return Err(locked(remaining.ceil().max(1.0) as u64));
    }
    Ok(())
}

fn locked(retry_after: u64) -> AuthError {
    AuthError::too_many(
        "over_request_rate_limit",
        format!(
            "Too many failed sign-in attempts. For security purposes, you can only try again after {retry_after} seconds."
        ),
        retry_after,
    )
}

/// Records a failed sign-in of `account`; locks it when the maximum is reached.
pub async fn record_failure(
    c: &impl GenericClient,
    settings: &AuthSettings,
    account: &str,
) -> AuthResult<()> {
    let duration = settings.lockout_duration_secs as f64;
    let row = c
        .query_one(
            "insert into auth.lockouts as l (account, failures, last_failure_at) values ($1, 1, now()) \
             on conflict (account) do update set \
               failures = case when l.last_failure_at + make_interval(secs => $2) <= now() \
                          or l.locked_until is not null then 1 else l.failures + 1 end, \
               locked_until = null, last_failure_at = now() \
             returning failures",
            &[&account, &duration],
        )
        .await?;
    let failures: i32 = row.get(0);
    if i64::from(failures) >= i64::from(settings.lockout_max_attempts.max(1)) {
        c.execute(
            "update auth.lockouts set locked_until = now() + make_interval(secs => $2), failures = 0 \
             where account = $1",
            &[&account, &duration],
        )
        .await?;
        tracing::warn!(
            failures,
            "auth: account locked after repeated failed sign-ins"
        );
    }
    Ok(())
}

/// Clears the failure count of `account` after a successful sign-in.
pub async fn clear(c: &impl GenericClient, account: &str) -> AuthResult<()> {
    c.execute("delete from auth.lockouts where account = $1", &[&account])
        .await?;
    Ok(())
}
