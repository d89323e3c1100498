//! The in-process backend: a moka cache bounded by entry count, entries expiring after the TTL.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use genbot_store::{User, UserId};
use moka::notification::RemovalCause;
use moka::sync::Cache;

/// Users cached in this process. Clones share the cache.
#[derive(Clone)]
pub struct MemoryCache {
    cache: Cache<i64, User>,
    ttl: Duration,
    /// Entries pushed out by the size bound (not by expiry): evidence that
    /// `CACHE_MAX_ENTRIES` is too small for the working set.
    evictions: Arc<AtomicU64>,
}

impl std::fmt::Debug for MemoryCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryCache")
            .field("ttl", &self.ttl)
            .field("entries", &self.cache.entry_count())
            .finish()
    }
}

impl MemoryCache {
    /// A cache holding at most `max_entries` users for `ttl` each.
    pub fn new(ttl: Duration, max_entries: u64) -> Self {
        let evictions = Arc::new(AtomicU64::new(0));
        let counter = evictions.clone();
        let cache = Cache::builder()
            .max_capacity(max_entries)
            .time_to_live(ttl)
            .eviction_listener(move |_key, _value, cause| {
                if cause == RemovalCause::Size {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            })
            .build();
        MemoryCache {
            cache,
            ttl,
            evictions,
        }
    }

    pub(crate) fn ttl(&self) -> Duration {
        self.ttl
    }

    pub(crate) fn get(&self, id: UserId) -> Option<User> {
        self.cache.get(&id.0)
    }

    pub(crate) fn put(&self, user: &User) {
        self.cache.insert(user.id.0, user.clone());
    }

    pub(crate) fn invalidate(&self, id: UserId) {
        self.cache.invalidate(&id.0);
    }

    /// Entries held now (after pending maintenance runs).
    pub fn entry_count(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }

    /// Entries evicted so far because the cache was full.
    pub fn evictions(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.evictions.load(Ordering::Relaxed)
    }
}
