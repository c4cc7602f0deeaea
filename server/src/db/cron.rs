//! Cron schedules kept in the control plane that fire exactly once per tick
//! across all nodes: parsing, and the claim (lease) transaction. Used by
//! function schedules (`functions::schedule`) and backup schedules
//! (`backup::schedule`).
//!
//! A schedules table has `id uuid`, `cron text`, `enabled boolean` and
//! `next_run_at timestamptz`; its runs table has a unique
//! `(schedule_id, tick_at)` and a `node text` column. Every node calls
//! [`claim_due`] periodically: in one transaction it locks due schedules
//! with `for update skip locked` (one node handles a schedule at a time),
//! inserts the tick into the runs table (the unique key is the lease: a tick
//! is recorded once, ever) and moves `next_run_at` to the next occurrence
//! after now (missed ticks are not replayed). A schedule that can no longer
//! fire is paused.

use std::str::FromStr as _;

use chrono::{DateTime, Utc};
use croner::Cron;

/// Longest accepted cron expression.
const MAX_CRON: usize = 200;

/// Parses a cron expression: 5 fields (minute precision) or 6 (with
/// seconds), UTC. The error is a sentence for the caller.
pub fn parse(expr: &str) -> Result<Cron, String> {
    if expr.len() > MAX_CRON {
        return Err("The cron expression is too long.".into());
    }
    // Stored as text, which cannot hold a NUL.
    if expr.contains('\0') {
        return Err("The cron expression contains a NUL character.".into());
    }
    Cron::from_str(expr.trim()).map_err(|e| format!("Invalid cron expression {expr:?}: {e}."))
}

/// The first occurrence of `cron` strictly after `t`.
pub fn next_after(cron: &Cron, t: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    cron.find_next_occurrence(&t, false)
        .map_err(|e| format!("The cron expression never fires: {e}."))
}

/// The two tables of one kind of schedule.
#[derive(Debug, Clone, Copy)]
pub struct Tables {
    /// The schedules (`id`, `cron`, `enabled`, `next_run_at`).
    pub schedules: &'static str,
    /// Their runs (`schedule_id`, `tick_at`, `node`, unique on the first two).
    pub runs: &'static str,
}

/// Claims the due ticks of `tables` for `node` (see the module docs).
///
/// `due_sql` selects the due schedules, its first three columns being `id`,
/// `cron` and `next_run_at`; it takes the batch size as `$1` and must lock
/// the schedule rows with `for update of … skip locked`. Returns the rows of
/// the ticks this node won, with their `next_run_at` as the tick.
pub async fn claim_due(
    client: &mut deadpool_postgres::Object,
    tables: Tables,
    due_sql: &str,
    batch: i64,
    node: &str,
) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let due = tx.query(due_sql, &[&batch]).await?;
    let now = Utc::now();
    let mut won = Vec::new();
    for row in due {
        let id: uuid::Uuid = row.try_get(0)?;
        let cron_text: String = row.try_get(1)?;
        let tick_at: DateTime<Utc> = row.try_get(2)?;
        let next = parse(&cron_text).and_then(|c| next_after(&c, now.max(tick_at)));
        let Ok(next) = next else {
            // A schedule that can no longer fire is paused rather than retried forever.
            tx.execute(
                &format!(
                    "update {} set enabled = false where id = $1",
                    tables.schedules
                ),
                &[&id],
            )
            .await?;
            continue;
        };
        tx.execute(
            &format!(
                "update {} set next_run_at = $2 where id = $1",
                tables.schedules
            ),
            &[&id, &next],
        )
        .await?;
        let lease = tx
            .query_opt(
                &format!(
                    "insert into {} (schedule_id, tick_at, node) values ($1, $2, $3) \
                     on conflict do nothing returning 1",
                    tables.runs
                ),
                &[&id, &tick_at, &node],
            )
            .await?;
        if lease.is_some() {
            won.push(row);
        }
    }
    tx.commit().await?;
    Ok(won)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron_expressions() {
        let every_second = parse("* * * * * *").expect("6 fields");
        let t = DateTime::parse_from_rfc3339("2026-01-01T00:00:00.500Z")
            .expect("time")
            .with_timezone(&Utc);
        let next = next_after(&every_second, t).expect("next");
        assert_eq!(next.to_rfc3339(), "2026-01-01T00:00:01+00:00");
        let hourly = parse("0 * * * *").expect("5 fields");
        assert_eq!(
            next_after(&hourly, t).expect("next").to_rfc3339(),
            "2026-01-01T01:00:00+00:00"
        );
        for bad in ["", "nope", "61 * * * *", "* * *"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(parse(&"* ".repeat(150)).is_err());
        let nul = parse("* * * * *\0").expect_err("a NUL is refused");
        assert!(nul.contains("NUL"), "{nul}");
    }
}
