//! Per-project connection pools: created on first use, bounded, and closed
//! after a period without use, so one node can serve thousands of mostly idle
//! projects. Each project has its own pool, so a burst on one project cannot
//! take connections from another.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use uuid::Uuid;

struct Entry {
    pool: Pool,
    /// Milliseconds since `ProjectPools::epoch` at the last checkout.
    last_used: Arc<AtomicU64>,
}

/// The registry of open project pools.
pub struct ProjectPools {
    pools: Mutex<HashMap<Uuid, Entry>>,
    epoch: Instant,
    max_size: usize,
    acquire_timeout: Duration,
}

/// Totals over all open pools, for metrics and health.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolTotals {
    /// Number of open project pools.
    pub pools: usize,
    /// Connections open across pools.
    pub connections: usize,
    /// Of those, connections idle in a pool.
    pub idle: usize,
}

impl ProjectPools {
    /// An empty registry; each pool holds at most `max_size` connections.
    pub fn new(max_size: usize, acquire_timeout: Duration) -> Self {
        Self {
            pools: Mutex::new(HashMap::new()),
            epoch: Instant::now(),
            max_size,
            acquire_timeout,
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The pool of project `id`, created from `config` when not open yet.
    pub fn get(&self, id: Uuid, config: impl FnOnce() -> tokio_postgres::Config) -> Pool {
        let now = self.now_ms();
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        let entry = pools.entry(id).or_insert_with(|| {
            metrics::counter!("ferrobase_project_pools_opened_total").increment(1);
            Entry {
                pool: super::make_pool(config(), self.max_size, self.acquire_timeout),
                last_used: Arc::new(AtomicU64::new(now)),
            }
        });
        entry.last_used.store(now, Ordering::Relaxed);
        entry.pool.clone()
    }

    /// Closes and forgets the pool of project `id` (after delete).
    pub fn remove(&self, id: Uuid) {
        let entry = self
            .pools
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        if let Some(entry) = entry {
            entry.pool.close();
        }
    }

    /// Closes pools unused for `idle`, returning how many were closed.
    /// A pool with connections checked out is never closed.
    pub fn close_idle(&self, idle: Duration) -> usize {
        let cutoff = self
            .now_ms()
            .saturating_sub(u64::try_from(idle.as_millis()).unwrap_or(u64::MAX));
        let mut closed = Vec::new();
        {
            let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
            pools.retain(|_, e| {
                let status = e.pool.status();
                let busy = status.size > status.available;
                let keep = busy || e.last_used.load(Ordering::Relaxed) > cutoff;
                if !keep {
                    closed.push(e.pool.clone());
                }
                keep
            });
        }
        for pool in &closed {
            pool.close();
        }
        closed.len()
    }

    /// Closes every pool (at shutdown).
    pub fn close_all(&self) {
        let drained: Vec<Entry> = self
            .pools
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|(_, e)| e)
            .collect();
        for e in drained {
            e.pool.close();
        }
    }

    /// Counts over all open pools.
    pub fn totals(&self) -> PoolTotals {
        let pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        pools.values().fold(
            PoolTotals {
                pools: pools.len(),
                ..PoolTotals::default()
            },
            |mut t, e| {
                let s = e.pool.status();
                t.connections += s.size;
                t.idle += s.available;
                t
            },
        )
    }
}
