//! Per-project connection pools under one node-wide connection budget.
//!
//! Each project has its own pool, opened on first use, bounded by
//! `FERROBASE_POOL_MAX_SIZE` and closed after a period without use, so one
//! node can serve thousands of mostly idle projects. Every connection any
//! pool opens first takes a permit from the node's [`Budget`] and holds it
//! until the socket closes, so the node never asks Postgres for more than the
//! budget (`FERROBASE_DB_MAX_CONNECTIONS`, or the cluster's `max_connections`
//! minus reserved slots, see [`derive_budget`]) and operators keep headroom.
//!
//! When the budget is spent, a pool that must open a connection:
//! 1. closes an idle connection of another project (the project holding the
//!    most connections first), which returns its permit at once;
//! 2. queues for a permit, first come first served, retrying step 1 while it
//!    waits (connections return to their pools idle all the time);
//! 3. gives up after `FERROBASE_POOL_ACQUIRE_TIMEOUT_MS` (the pool's create
//!    timeout), which the API answers with 503.
//!
//! Fairness comes from the FIFO queue (no project can jump it), the per-project
//! cap, and reclaiming from the largest holder first.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

/// How often a queued connection request looks again for idle connections of
/// other projects to close.
const RECLAIM_RETRY: Duration = Duration::from_millis(10);

struct Entry {
    pool: Pool,
    /// Milliseconds since `Shared::epoch` at the last checkout.
    last_used: Arc<AtomicU64>,
}

/// The node-wide connection budget: one permit per open project connection.
pub struct Budget {
    semaphore: Arc<Semaphore>,
    limit: AtomicUsize,
    waiting: AtomicUsize,
    reclaimed: AtomicU64,
}

impl Budget {
    fn new(limit: usize) -> Self {
        Self {
            semaphore: Arc::new(Semaphore::new(limit)),
            limit: AtomicUsize::new(limit),
            waiting: AtomicUsize::new(0),
            reclaimed: AtomicU64::new(0),
        }
    }

    /// Changes the number of permits (at start-up, once the cluster's
    /// `max_connections` is known). Lowering only takes back free permits;
    /// the rest are taken back as connections close.
    fn set_limit(&self, limit: usize) {
        let limit = limit.max(1);
        let old = self.limit.swap(limit, Ordering::SeqCst);
        if limit > old {
            self.semaphore.add_permits(limit - old);
        } else if old > limit {
            let forgotten = self.semaphore.forget_permits(old - limit);
            // Permits in use cannot be forgotten now: keep asking as they return.
            let missing = old - limit - forgotten;
            if missing > 0 {
                let semaphore = self.semaphore.clone();
                tokio::spawn(async move {
                    for _ in 0..missing {
                        if let Ok(p) = semaphore.acquire().await {
                            p.forget();
                        }
                    }
                });
            }
        }
    }
}

/// State shared by the registry and the connectors of its pools.
struct Shared {
    pools: Mutex<HashMap<Uuid, Entry>>,
    epoch: Instant,
    budget: Budget,
}

impl Shared {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Waits for a budget permit for a new connection of project `project`,
    /// closing idle connections of other projects meanwhile. Never fails: the
    /// pool's create timeout bounds the wait (dropping this future leaves the
    /// queue).
    async fn acquire(&self, project: Uuid) -> Option<OwnedSemaphorePermit> {
        if let Ok(p) = self.budget.semaphore.clone().try_acquire_owned() {
            return Some(p);
        }
        struct Waiting<'a>(&'a AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::Relaxed);
            }
        }
        self.budget.waiting.fetch_add(1, Ordering::Relaxed);
        let _waiting = Waiting(&self.budget.waiting);
        let acquire = self.budget.semaphore.clone().acquire_owned();
        tokio::pin!(acquire);
        loop {
            self.reclaim_one(project);
            tokio::select! {
                permit = &mut acquire => return permit.ok(),
                () = tokio::time::sleep(RECLAIM_RETRY) => {}
            }
        }
    }

    /// Closes one idle connection of a project other than `except`: of the
    /// project with the most open connections, the least recently used one
    /// on a tie. Returns whether one was closed.
    fn reclaim_one(&self, except: Uuid) -> bool {
        let victim = {
            let pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
            pools
                .iter()
                .filter(|(id, _)| **id != except)
                .filter_map(|(_, e)| {
                    let s = e.pool.status();
                    (s.available > 0).then(|| {
                        (
                            s.size,
                            std::cmp::Reverse(e.last_used.load(Ordering::Relaxed)),
                            e.pool.clone(),
                        )
                    })
                })
                .max_by_key(|(size, lru, _)| (*size, *lru))
                .map(|(_, _, pool)| pool)
        };
        let Some(pool) = victim else {
            return false;
        };
        // Remove the longest-idle connection of that pool (compared by the
        // instant of last use, which, unlike elapsed time, is stable).
        let last_use = |m: &deadpool_postgres::Metrics| m.recycled.unwrap_or(m.created);
        let mut oldest: Option<Instant> = None;
        pool.retain(|_, m| {
            let at = last_use(&m);
            if oldest.is_none_or(|o| at < o) {
                oldest = Some(at);
            }
            true
        });
        let mut done = false;
        let removed = pool.retain(|_, m| {
            if !done && Some(last_use(&m)) == oldest {
                done = true;
                return false;
            }
            true
        });
        let closed = removed.removed.len();
        // Dropping the clients aborts their connection tasks, which return
        // their permits.
        drop(removed);
        if closed > 0 {
            self.budget.reclaimed.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("ferrobase_db_budget_reclaimed_total").increment(1);
        }
        closed > 0
    }
}

/// Opens project connections under the node budget (see the module docs).
struct BudgetConnect {
    shared: Weak<Shared>,
    project: Uuid,
}

impl deadpool_postgres::Connect for BudgetConnect {
    fn connect(
        &self,
        pg_config: &tokio_postgres::Config,
    ) -> std::pin::Pin<
        Box<
            dyn Future<
                    Output = Result<
                        (tokio_postgres::Client, tokio::task::JoinHandle<()>),
                        tokio_postgres::Error,
                    >,
                > + Send
                + '_,
        >,
    > {
        let config = pg_config.clone();
        Box::pin(async move {
            let permit = match self.shared.upgrade() {
                Some(shared) => shared.acquire(self.project).await,
                None => None,
            };
            // A closed connection's permit returns before its backend has
            // exited: "too many connections" then means "a moment", so it is
            // retried (the pool's create timeout still bounds the wait).
            let (client, connection) = loop {
                match config.connect(tokio_postgres::NoTls).await {
                    Ok(pair) => break pair,
                    Err(e)
                        if e.code()
                            == Some(&tokio_postgres::error::SqlState::TOO_MANY_CONNECTIONS) =>
                    {
                        metrics::counter!("ferrobase_db_connect_retries_total").increment(1);
                        tokio::time::sleep(RECLAIM_RETRY * 2).await;
                    }
                    Err(e) => return Err(e),
                }
            };
            let task = tokio::spawn(async move {
                // The permit goes back when the connection ends (client
                // dropped, pool closed, server gone).
                let _permit = permit;
                if let Err(error) = connection.await {
                    tracing::debug!(%error, "project connection closed");
                }
            });
            Ok((client, task))
        })
    }
}

/// The registry of open project pools.
pub struct ProjectPools {
    shared: Arc<Shared>,
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
    /// The node's connection budget.
    pub budget: usize,
    /// Connection requests queued for a budget permit.
    pub waiting: usize,
    /// Idle connections closed so far to make room for another project's.
    pub reclaimed: u64,
}

impl ProjectPools {
    /// An empty registry; each pool holds at most `max_size` connections and
    /// all of them together at most `budget`.
    pub fn new(max_size: usize, acquire_timeout: Duration, budget: usize) -> Self {
        Self {
            shared: Arc::new(Shared {
                pools: Mutex::new(HashMap::new()),
                epoch: Instant::now(),
                budget: Budget::new(budget.max(1)),
            }),
            max_size,
            acquire_timeout,
        }
    }

    /// Sets the node's connection budget (see [`derive_budget`]).
    pub fn set_budget(&self, budget: usize) {
        self.shared.budget.set_limit(budget);
    }

    /// The pool of project `id`, created from `config` when not open yet.
    pub fn get(&self, id: Uuid, config: impl FnOnce() -> tokio_postgres::Config) -> Pool {
        let now = self.shared.now_ms();
        let mut pools = self.shared.pools.lock().unwrap_or_else(|e| e.into_inner());
        let entry = pools.entry(id).or_insert_with(|| {
            metrics::counter!("ferrobase_project_pools_opened_total").increment(1);
            let manager = Manager::from_connect(
                config(),
                BudgetConnect {
                    shared: Arc::downgrade(&self.shared),
                    project: id,
                },
                ManagerConfig {
                    recycling_method: RecyclingMethod::Fast,
                },
            );
            let max = self
                .max_size
                .min(self.shared.budget.limit.load(Ordering::Relaxed))
                .max(1);
            Entry {
                pool: Pool::builder(manager)
                    .max_size(max)
                    .wait_timeout(Some(self.acquire_timeout))
                    .create_timeout(Some(self.acquire_timeout))
                    .recycle_timeout(Some(self.acquire_timeout))
                    .runtime(Runtime::Tokio1)
                    .build()
                    // Only fails when a timeout is set without a runtime; we set one.
                    .expect("pool configuration is valid"),
                last_used: Arc::new(AtomicU64::new(now)),
            }
        });
        entry.last_used.store(now, Ordering::Relaxed);
        entry.pool.clone()
    }

    /// Closes and forgets the pool of project `id` (after delete).
    pub fn remove(&self, id: Uuid) {
        let entry = self
            .shared
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
            .shared
            .now_ms()
            .saturating_sub(u64::try_from(idle.as_millis()).unwrap_or(u64::MAX));
        let mut closed = Vec::new();
        {
            let mut pools = self.shared.pools.lock().unwrap_or_else(|e| e.into_inner());
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
            .shared
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
        let budget = &self.shared.budget;
        let pools = self.shared.pools.lock().unwrap_or_else(|e| e.into_inner());
        pools.values().fold(
            PoolTotals {
                pools: pools.len(),
                budget: budget.limit.load(Ordering::Relaxed),
                waiting: budget.waiting.load(Ordering::Relaxed),
                reclaimed: budget.reclaimed.load(Ordering::Relaxed),
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

/// The node's connection budget for project pools: `configured` when not 0,
/// else the cluster's `max_connections` minus its superuser and reserved
/// slots, minus `reserve` (headroom for operators, migrations, LISTEN
/// connections) and the control-plane pool's size.
pub async fn derive_budget(
    control: &Pool,
    configured: usize,
    reserve: usize,
) -> Result<usize, deadpool_postgres::PoolError> {
    if configured > 0 {
        return Ok(configured);
    }
    let client = control.get().await?;
    let row = client
        .query_one(
            "select current_setting('max_connections')::int, \
                    current_setting('superuser_reserved_connections')::int, \
                    coalesce(nullif(current_setting('reserved_connections', true), ''), '0')::int",
            &[],
        )
        .await?;
    let total = |i: usize| usize::try_from(row.get::<_, i32>(i)).unwrap_or(0);
    let control_max = control.status().max_size;
    Ok(total(0)
        .saturating_sub(total(1) + total(2) + reserve + control_max)
        .max(1))
}
