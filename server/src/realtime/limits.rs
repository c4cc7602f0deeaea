//! What one socket (and one project) may cost the hub: every join writes a
//! presence row and an outbox message, every publish an outbox row that every
//! node reads and fans out, so an unbounded client could fill its project's
//! database and starve the project's other clients. Three bounds, each
//! refused with a stable code while the socket stays connected:
//!
//! - channels joined per socket ([`check_channels`], `too_many_channels`);
//! - events per socket per second ([`TokenBucket`], `rate_limited`);
//! - events per project per second on this node, sockets and HTTP publish
//!   together ([`ProjectBudgets`], `rate_limited` too): without it, many
//!   sockets each under their own rate still add up to any write rate;
//! - sockets per project on this node ([`check_sockets`], `too_many_sockets`
//!   at the handshake).
//!
//! Pure logic only (time is passed in), so it is tested without sockets;
//! the handlers in [`super::socket`] call it and count refusals in
//! `ferrobase_realtime_refused_total{reason}`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use uuid::Uuid;

use crate::error::ApiError;

/// A token bucket: `burst` tokens at most, refilled at `per_sec` a second;
/// each event takes one. Refilled lazily from the time of the last take, so
/// an idle socket costs nothing.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    per_sec: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket. A `burst` below 1 is taken as 1 (one event must pass);
    /// a rate of 0 means no refill (only the burst, ever).
    pub fn new(per_sec: u32, burst: u32, now: Instant) -> TokenBucket {
        let burst = f64::from(burst.max(1));
        TokenBucket {
            per_sec: f64::from(per_sec),
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Takes a token, or says how long until one is available.
    pub fn try_take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        if self.per_sec <= 0.0 {
            return Err(Duration::MAX);
        }
        Err(Duration::from_secs_f64((1.0 - self.tokens) / self.per_sec))
    }
}

/// One [`TokenBucket`] per project, for the events of all its sockets and
/// HTTP publishes on this node. Buckets of idle projects are dropped once
/// the map is large (an idle project's bucket is full, as a new one is).
#[derive(Debug)]
pub struct ProjectBudgets {
    per_sec: u32,
    burst: u32,
    buckets: Mutex<HashMap<Uuid, TokenBucket>>,
}

/// Projects remembered before idle buckets are swept.
const SWEEP_ABOVE: usize = 1024;

impl ProjectBudgets {
    /// Budgets of `per_sec` events a second and `burst` at once per project.
    pub fn new(per_sec: u32, burst: u32) -> ProjectBudgets {
        ProjectBudgets {
            per_sec,
            burst,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Spends one of `project`'s events, or says how long until one is
    /// available.
    pub fn try_take(&self, project: Uuid, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= SWEEP_ABOVE && !buckets.contains_key(&project) {
            let refill = if self.per_sec == 0 {
                Duration::MAX
            } else {
                Duration::from_secs_f64(f64::from(self.burst.max(1)) / f64::from(self.per_sec))
            };
            buckets.retain(|_, b| now.saturating_duration_since(b.last) < refill);
        }
        buckets
            .entry(project)
            .or_insert_with(|| TokenBucket::new(self.per_sec, self.burst, now))
            .try_take(now)
    }
}

/// Milliseconds to tell a client to wait, rounded up so that a client that
/// waits exactly this long gets through.
pub fn retry_ms(retry_in: Duration) -> u64 {
    u64::try_from(retry_in.as_millis().saturating_add(1)).unwrap_or(u64::MAX)
}

/// The refusal of an event over the socket's rate: says when to retry.
pub fn rate_limited(retry_in: Duration, per_sec: u32) -> ApiError {
    over_rate(
        retry_in,
        format!("This socket sends more than {per_sec} events a second"),
    )
}

/// The refusal of an event over its project's rate on this node.
pub fn project_rate_limited(retry_in: Duration, per_sec: u32) -> ApiError {
    over_rate(
        retry_in,
        format!("This project's clients send more than {per_sec} realtime events a second"),
    )
}

/// `rate_limited`, saying what went over and when to retry.
fn over_rate(retry_in: Duration, what: String) -> ApiError {
    let ms = retry_ms(retry_in);
    let mut e = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!("{what}; nothing was done. Retry in {ms} ms."),
    );
    e.retry_after = Some(ms.div_ceil(1000));
    e
}

/// Whether a socket that has `joined` channels (plus `pending` joins in
/// flight) may join one more, under `max`.
pub fn check_channels(joined: usize, pending: usize, max: usize) -> Result<(), ApiError> {
    if joined.saturating_add(pending) < max {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_channels",
        format!(
            "This socket has joined {max} channels, the most one socket may; unsubscribe from one (realtime:unsubscribe) or open another connection."
        ),
    ))
}

/// Whether a project with `connected` sockets on this node may take one more.
pub fn check_sockets(connected: usize, max: usize) -> Result<(), ApiError> {
    if connected < max {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "too_many_sockets",
        format!(
            "This project already has {max} realtime connections on this server; close unused ones or retry later."
        ),
    ))
}

/// Counts a refusal in `ferrobase_realtime_refused_total{reason}`.
pub fn count_refusal(reason: &'static str) {
    metrics::counter!("ferrobase_realtime_refused_total", "reason" => reason).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_refuses_until_refilled() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, 3, t0);
        for _ in 0..3 {
            assert_eq!(b.try_take(t0), Ok(()));
        }
        let wait = b.try_take(t0).expect_err("the fourth at once is refused");
        assert_eq!(wait, Duration::from_millis(100));
        // A refused take costs nothing: after the wait exactly one passes.
        assert_eq!(b.try_take(t0 + wait), Ok(()));
        assert!(b.try_take(t0 + wait).is_err());
    }

    #[test]
    fn a_bucket_never_holds_more_than_its_burst() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1000, 2, t0);
        let later = t0 + Duration::from_secs(3600);
        assert!(b.try_take(later).is_ok());
        assert!(b.try_take(later).is_ok());
        assert!(b.try_take(later).is_err());
    }

    #[test]
    fn a_bucket_sustains_its_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(50, 1, t0);
        let mut passed = 0;
        // One attempt every millisecond for a second: 1 (burst) + 50.
        for ms in 0..=1000 {
            if b.try_take(t0 + Duration::from_millis(ms)).is_ok() {
                passed += 1;
            }
        }
        assert_eq!(passed, 51);
    }

    #[test]
    fn degenerate_buckets_stay_sound() {
        let t0 = Instant::now();
        let mut zero_burst = TokenBucket::new(5, 0, t0);
        assert!(
            zero_burst.try_take(t0).is_ok(),
            "a burst of 0 is taken as 1"
        );
        let mut no_refill = TokenBucket::new(0, 1, t0);
        assert!(no_refill.try_take(t0).is_ok());
        assert_eq!(
            no_refill.try_take(t0 + Duration::from_secs(60)),
            Err(Duration::MAX)
        );
        // A clock that went backwards does not panic nor mint tokens.
        let mut b = TokenBucket::new(10, 1, t0 + Duration::from_secs(1));
        assert!(b.try_take(t0 + Duration::from_secs(1)).is_ok());
        assert!(b.try_take(t0).is_err());
    }

    #[test]
    fn projects_have_separate_budgets_and_idle_ones_are_forgotten() {
        let t0 = Instant::now();
        let budgets = ProjectBudgets::new(10, 2);
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        assert!(budgets.try_take(a, t0).is_ok());
        assert!(budgets.try_take(a, t0).is_ok());
        assert!(budgets.try_take(a, t0).is_err(), "a's burst is spent");
        assert!(budgets.try_take(b, t0).is_ok(), "b has its own budget");
        // Fill the map with other projects; the sweep keeps a busy one.
        for _ in 0..SWEEP_ABOVE {
            let _ = budgets.try_take(Uuid::new_v4(), t0);
        }
        assert!(
            budgets.try_take(a, t0).is_err(),
            "a busy project keeps its spent bucket"
        );
        let later = t0 + Duration::from_secs(1);
        let _ = budgets.try_take(Uuid::new_v4(), later);
        let len = budgets
            .buckets
            .lock()
            .map(|m| m.len())
            .unwrap_or(usize::MAX);
        assert!(len <= 2, "idle buckets were swept: {len} left");
    }

    #[test]
    fn refusals_carry_stable_codes_and_say_what_to_do() {
        let e = rate_limited(Duration::from_millis(250), 50);
        assert_eq!(e.code, "rate_limited");
        assert_eq!(e.status, StatusCode::TOO_MANY_REQUESTS);
        assert!(e.message.contains("Retry in 251 ms"), "{}", e.message);
        assert_eq!(e.retry_after, Some(1));
        let huge = rate_limited(Duration::MAX, 0);
        assert_eq!(huge.code, "rate_limited");

        assert!(check_channels(1, 0, 2).is_ok());
        assert!(
            check_channels(1, 1, 2).is_err(),
            "a join in flight holds a slot"
        );
        let e = check_channels(2, 0, 2).expect_err("full");
        assert_eq!(e.code, "too_many_channels");
        assert!(e.message.contains("unsubscribe"), "{}", e.message);

        assert!(check_sockets(9, 10).is_ok());
        assert_eq!(
            check_sockets(10, 10).expect_err("full").code,
            "too_many_sockets"
        );
        assert!(check_sockets(0, 0).is_err(), "a cap of 0 refuses everybody");
    }
}
