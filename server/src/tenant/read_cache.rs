//! A small per-project cache of ready response bodies for hot reads that
//! this node's own writes invalidate (today: `GET /auth/v1/user`).
//!
//! Consistency: an entry lives until its deadline (a short TTL, or earlier
//! if what it describes expires sooner) or until [`ReadCache::invalidate`],
//! whichever comes first. A writer calls `invalidate` after its transaction
//! commits; a reader notes [`ReadCache::epoch`] before it reads the database
//! and [`ReadCache::insert`] drops its body if an invalidation happened in
//! between (it may have read the rows as they were before the write). So on
//! one node a read that starts after a write's response never sees the state
//! before that write; a write made elsewhere (another node, plain SQL) is seen
//! within the TTL.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Instant;

use bytes::Bytes;

/// Most entries one project keeps; the cache simply starts over when full.
const MAX_ENTRIES: usize = 4096;

/// Ready bodies by key, each valid until its deadline; see the module doc.
#[derive(Debug)]
pub struct ReadCache<K> {
    inner: Mutex<Inner<K>>,
}

#[derive(Debug)]
struct Inner<K> {
    /// Bumped by every invalidation.
    epoch: u64,
    entries: HashMap<K, (Instant, Bytes)>,
}

impl<K> Default for ReadCache<K> {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Inner {
                epoch: 0,
                entries: HashMap::new(),
            }),
        }
    }
}

impl<K: Eq + Hash> ReadCache<K> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<K>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The body kept for `key`, if its deadline has not passed.
    pub fn get(&self, key: &K) -> Option<Bytes> {
        let now = Instant::now();
        self.lock()
            .entries
            .get(key)
            .filter(|(until, _)| *until > now)
            .map(|(_, body)| body.clone())
    }

    /// The current epoch: note it before reading what [`insert`](Self::insert) will keep.
    pub fn epoch(&self) -> u64 {
        self.lock().epoch
    }

    /// Keeps `body` for `key` until `until`, unless the cache was
    /// invalidated since `epoch` was noted (the body may predate a write).
    pub fn insert(&self, key: K, epoch: u64, until: Instant, body: Bytes) {
        let mut inner = self.lock();
        if inner.epoch != epoch {
            return;
        }
        if inner.entries.len() >= MAX_ENTRIES {
            inner.entries.clear();
        }
        inner.entries.insert(key, (until, body));
    }

    /// Forgets every entry and turns away bodies read before now.
    pub fn invalidate(&self) {
        let mut inner = self.lock();
        inner.epoch = inner.epoch.wrapping_add(1);
        inner.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    #[test]
    fn keeps_until_the_deadline() {
        let cache = ReadCache::default();
        cache.insert(1, cache.epoch(), later(), Bytes::from_static(b"a"));
        assert_eq!(cache.get(&1), Some(Bytes::from_static(b"a")));
        assert_eq!(cache.get(&2), None);
        cache.insert(2, cache.epoch(), Instant::now(), Bytes::from_static(b"b"));
        assert_eq!(cache.get(&2), None, "a passed deadline is a miss");
    }

    #[test]
    fn an_invalidation_drops_entries_and_turns_away_older_reads() {
        let cache = ReadCache::default();
        cache.insert(1, cache.epoch(), later(), Bytes::from_static(b"a"));
        let before_write = cache.epoch();
        cache.invalidate();
        assert_eq!(cache.get(&1), None);
        // A read that began before the write must not be kept.
        cache.insert(1, before_write, later(), Bytes::from_static(b"stale"));
        assert_eq!(cache.get(&1), None);
        cache.insert(1, cache.epoch(), later(), Bytes::from_static(b"fresh"));
        assert_eq!(cache.get(&1), Some(Bytes::from_static(b"fresh")));
    }

    #[test]
    fn stays_bounded() {
        let cache = ReadCache::default();
        for k in 0..(MAX_ENTRIES + 10) {
            cache.insert(k, cache.epoch(), later(), Bytes::new());
        }
        assert!(cache.lock().entries.len() <= MAX_ENTRIES);
    }
}
