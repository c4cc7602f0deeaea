//! Settings of outgoing webhooks that need a parser of their own: the retry
//! schedule (`FERROBASE_WEBHOOK_RETRY_SCHEDULE`).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

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
