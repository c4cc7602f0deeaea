//! Bounds on expensive work that a single caller could otherwise pile up on
//! one node: image transforms (CPU and memory) and admin SQL (a dedicated
//! Postgres connection each). Both are semaphores; a caller that cannot get
//! a permit within a short wait gets 503 or 429 instead of queueing without
//! bound.
//!
//! These hold per node (N nodes allow N × the limit): they protect the
//! node's CPU and memory, while Postgres' own `max_connections` and the
//! per-project pool bound the database side.
//!
//! [`SingleFlight`] bounds cache reloads: one load per key at a time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

/// The semaphores of one node.
pub struct Throttles {
    /// Concurrent image transforms on this node.
    transforms: Arc<Semaphore>,
    /// Concurrent admin SQL requests per project on this node.
    admin_sql: Mutex<HashMap<Uuid, Arc<Semaphore>>>,
    /// Permits per project for admin SQL.
    admin_sql_per_project: usize,
}

impl Throttles {
    /// Semaphores sized from the config.
    pub fn new(config: &crate::Config) -> Self {
        Self {
            transforms: Arc::new(Semaphore::new(config.image_transform_concurrency.max(1))),
            admin_sql: Mutex::new(HashMap::new()),
            admin_sql_per_project: config.admin_sql_concurrency.max(1),
        }
    }

    /// A transform permit, waiting at most `wait`; `None` when the node is busy.
    pub async fn transform(&self, wait: std::time::Duration) -> Option<OwnedSemaphorePermit> {
        tokio::time::timeout(wait, self.transforms.clone().acquire_owned())
            .await
            .ok()
            .and_then(Result::ok)
    }

    /// An admin SQL permit for `project`, without waiting; `None` when the
    /// project already runs as many admin SQL requests as allowed.
    pub fn admin_sql(&self, project: Uuid) -> Option<OwnedSemaphorePermit> {
        let sem = {
            let mut map = self.admin_sql.lock().unwrap_or_else(|e| e.into_inner());
            // Forget idle projects' semaphores (nobody holds a permit).
            if map.len() > 1024 {
                let full = self.admin_sql_per_project;
                map.retain(|_, s| s.available_permits() < full);
            }
            map.entry(project)
                .or_insert_with(|| Arc::new(Semaphore::new(self.admin_sql_per_project)))
                .clone()
        };
        sem.try_acquire_owned().ok()
    }
}

/// One load at a time per key. When a cached value expires under load,
/// every request that finds it missing would otherwise load it at once (and
/// hold a control-plane connection each); with this, the first loads and the
/// others wait for it, then find its result in their cache.
///
/// ```ignore
/// if let Some(v) = cached(&key) { return Ok(v) }
/// let _flight = loads.begin(&key).await;
/// if let Some(v) = cached(&key) { return Ok(v) } // loaded while we waited
/// let v = load(&key).await?; // then cache it
/// ```
pub struct SingleFlight<K> {
    inflight: Mutex<HashMap<K, Arc<tokio::sync::Mutex<()>>>>,
}

impl<K> Default for SingleFlight<K> {
    fn default() -> Self {
        Self {
            inflight: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: std::hash::Hash + Eq + Clone> SingleFlight<K> {
    /// Waits for any load of `key` in flight, then makes this caller the one
    /// loading it until the returned guard drops.
    pub async fn begin(&self, key: &K) -> Flight<'_, K> {
        let lock = self
            .inflight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key.clone())
            .or_default()
            .clone();
        Flight {
            _guard: lock.lock_owned().await,
            owner: self,
            key: key.clone(),
        }
    }
}

/// The right to load one key; see [`SingleFlight`].
pub struct Flight<'a, K: std::hash::Hash + Eq> {
    _guard: tokio::sync::OwnedMutexGuard<()>,
    owner: &'a SingleFlight<K>,
    key: K,
}

impl<K: std::hash::Hash + Eq> Drop for Flight<'_, K> {
    fn drop(&mut self) {
        self.owner
            .inflight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.key);
    }
}
