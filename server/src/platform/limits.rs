//! Rate limit and lockout of `/platform/v1/auth/login`, kept in the control
//! plane (migration V3) so every server node sees the same counters, like
//! the per-project limits of `auth::limits`.
//!
//! - Per client IP: at most `FERROBASE_PLATFORM_LOGIN_PER_IP` attempts per
//!   [`WINDOW_SECS`] (fixed window).
//! - Per account (normalised email, whether or not such an admin exists, so
//!   the answer reveals nothing): `FERROBASE_PLATFORM_LOGIN_MAX_ATTEMPTS`
//!   failures in a row lock it for `FERROBASE_PLATFORM_LOGIN_LOCKOUT_SECS`,
//!   even for the right password; a success clears the count.

use tokio_postgres::GenericClient;

/// Length of the per-IP window, in seconds.
pub const WINDOW_SECS: f64 = 300.0;

/// Counts one attempt from `ip`; `Some(seconds left)` when over `limit`.
pub async fn hit_ip(
    c: &impl GenericClient,
    ip: &str,
    limit: u32,
) -> Result<Option<u64>, tokio_postgres::Error> {
    let key = format!("login:ip:{ip}");
    let row = c
        .query_one(
            "insert into platform_rate_limits as r (key, window_start, hits) values ($1, now(), 1) \
             on conflict (key) do update set \
               window_start = case when r.window_start + make_interval(secs => $2) <= now() \
                              then now() else r.window_start end, \
               hits = case when r.window_start + make_interval(secs => $2) <= now() \
                      then 1 else r.hits + 1 end \
             returning hits, extract(epoch from window_start + make_interval(secs => $2) - now())::float8",
            &[&key, &WINDOW_SECS],
        )
        .await?;
    let hits: i32 = row.get(0);
    let left: f64 = row.get(1);
    Ok((i64::from(hits) > i64::from(limit)).then(|| left.ceil().max(1.0) as u64))
}

/// `Some(seconds left)` when `account` is locked.
pub async fn locked(
    c: &impl GenericClient,
    account: &str,
) -> Result<Option<u64>, tokio_postgres::Error> {
    let row = c
        .query_opt(
            "select extract(epoch from locked_until - now())::float8 from platform_lockouts \
             where account = $1 and locked_until > now()",
            &[&account],
        )
        .await?;
    Ok(row.map(|r| r.get::<_, f64>(0).ceil().max(1.0) as u64))
}

/// Records a failed login of `account`; locks it at `max_attempts`.
pub async fn record_failure(
    c: &impl GenericClient,
    account: &str,
    max_attempts: u32,
    lockout_secs: u64,
) -> Result<(), tokio_postgres::Error> {
    let duration = lockout_secs as f64;
    let row = c
        .query_one(
            "insert into platform_lockouts as l (account, failures, last_failure_at) values ($1, 1, now()) \
             on conflict (account) do update set \
               failures = case when l.last_failure_at + make_interval(secs => $2) <= now() \
                          or l.locked_until is not null then 1 else l.failures + 1 end, \
               locked_until = null, last_failure_at = now() \
             returning failures",
            &[&account, &duration],
        )
        .await?;
    let failures: i32 = row.get(0);
    if i64::from(failures) >= i64::from(max_attempts.max(1)) {
        c.execute(
            "update platform_lockouts set locked_until = now() + make_interval(secs => $2), failures = 0 \
             where account = $1",
            &[&account, &duration],
        )
        .await?;
        tracing::warn!(
            failures,
            "platform: admin account locked after repeated failed logins"
        );
    }
    // Forget stale rows now and then (about 1 call in 64).
    if crate::crypto::random_bytes(1)[0] < 4 {
        c.batch_execute(
            "delete from platform_rate_limits where window_start < now() - interval '1 day'; \
             delete from platform_lockouts where coalesce(locked_until, last_failure_at) < now() - interval '1 day';",
        )
        .await?;
    }
    Ok(())
}

/// Clears the failures of `account` after a successful login.
pub async fn clear(c: &impl GenericClient, account: &str) -> Result<(), tokio_postgres::Error> {
    c.execute(
        "delete from platform_lockouts where account = $1",
        &[&account],
    )
    .await?;
    Ok(())
}
