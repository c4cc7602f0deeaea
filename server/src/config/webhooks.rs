//! Settings of outgoing webhooks (a group flattened into [`super::Config`]),
//! and the retry schedule's parser (`FERROBASE_WEBHOOK_RETRY_SCHEDULE`).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use clap::Args;

/// Delays between attempts after the first, immediate one
/// (`FERROBASE_WEBHOOK_RETRY_SCHEDULE`). Standard Webhooks' recommendation is
/// the default: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RetrySchedule(pub Vec<Duration>);

impl RetrySchedule {
    /// Parses `5s,5m,30m,2h` (units `ms`, `s`, `m`, `h`; empty = no retries).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut out = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let split = part
                .find(|c: char| !c.is_ascii_digit())
                .ok_or_else(|| format!("{part:?}: missing unit (ms, s, m or h)"))?;
            let (n, unit) = part.split_at(split);
            let n: u64 = n
                .parse()
                .map_err(|_| format!("{part:?}: not a whole number"))?;
            let d = match unit {
                "ms" => Duration::from_millis(n),
                "s" => Duration::from_secs(n),
                "m" => Duration::from_secs(n.saturating_mul(60)),
                "h" => Duration::from_secs(n.saturating_mul(3600)),
                _ => return Err(format!("{part:?}: unit must be ms, s, m or h")),
            };
            out.push(d);
        }
        if out.len() > 50 {
            return Err("at most 50 retries".into());
        }
        Ok(Self(out))
    }

    /// The delay before the next attempt after `attempts` failed ones (of
    /// this delivery run), or `None` when every retry is used up.
    pub fn next_delay(&self, attempts: u32) -> Option<Duration> {
        let i = usize::try_from(attempts).ok()?.checked_sub(1)?;
        self.0.get(i).copied()
    }
}

impl FromStr for RetrySchedule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for RetrySchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|d| format!("{}ms", d.as_millis()))
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// Outgoing webhook settings (`FERROBASE_WEBHOOK_*`).
#[derive(Debug, Clone, Args)]
pub struct WebhooksConfig {
    /// Let webhook deliveries reach private addresses (as
    /// `FERROBASE_OUTBOUND_ALLOW_PRIVATE`, for webhooks only).
    #[arg(long, env = "FERROBASE_WEBHOOK_ALLOW_PRIVATE", default_value_t = false,
          action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub webhook_allow_private: bool,

    /// Timeout of one webhook delivery attempt, in milliseconds.
    #[arg(long, env = "FERROBASE_WEBHOOK_TIMEOUT_MS", default_value_t = 15_000)]
    pub webhook_timeout_ms: u64,

    /// Delays between webhook attempts after the first (immediate) one:
    /// comma-separated durations with a unit (`ms`, `s`, `m`, `h`).
    #[arg(
        long,
        env = "FERROBASE_WEBHOOK_RETRY_SCHEDULE",
        default_value = "5s,5m,30m,2h,5h,10h,10h"
    )]
    pub webhook_retry_schedule: RetrySchedule,

    /// Disable an endpoint after this many deliveries in a row failed for
    /// good (every retry used up).
    #[arg(long, env = "FERROBASE_WEBHOOK_DISABLE_AFTER", default_value_t = 5)]
    pub webhook_disable_after: u32,

    /// How often each node looks in the control plane for projects with due
    /// deliveries, in milliseconds.
    #[arg(long, env = "FERROBASE_WEBHOOK_POLL_MS", default_value_t = 250)]
    pub webhook_poll_ms: u64,

    /// How often a project with enabled endpoints but nothing due is looked
    /// at when no wake-up arrives (the bound on a new event's delay), in ms.
    #[arg(long, env = "FERROBASE_WEBHOOK_IDLE_POLL_MS", default_value_t = 1000)]
    pub webhook_idle_poll_ms: u64,

    /// Deliveries in flight at once on one node.
    #[arg(long, env = "FERROBASE_WEBHOOK_CONCURRENCY", default_value_t = 64)]
    pub webhook_concurrency: usize,
}

impl WebhooksConfig {
    /// Settings for tests: short intervals, nothing external.
    pub fn for_tests() -> Self {
        Self {
            webhook_allow_private: true,
            webhook_timeout_ms: 2_000,
            webhook_retry_schedule: RetrySchedule::parse("200ms,400ms,800ms").unwrap_or_default(),
            webhook_disable_after: 5,
            webhook_poll_ms: 50,
            webhook_idle_poll_ms: 100,
            webhook_concurrency: 32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_parses_and_runs_out() {
        let s = RetrySchedule::parse("5s,5m,30m,2h").expect("parse");
        assert_eq!(s.next_delay(1), Some(Duration::from_secs(5)));
        assert_eq!(s.next_delay(4), Some(Duration::from_secs(7200)));
        assert_eq!(s.next_delay(5), None);
        assert_eq!(s.next_delay(0), None);
        assert_eq!(
            RetrySchedule::parse("100ms").expect("ms").0,
            vec![Duration::from_millis(100)]
        );
        assert!(RetrySchedule::parse("5").is_err());
        assert!(RetrySchedule::parse("5d").is_err());
        assert!(RetrySchedule::parse("-5s").is_err());
        assert!(RetrySchedule::parse("").expect("none").0.is_empty());
    }
}
