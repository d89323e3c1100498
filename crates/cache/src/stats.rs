//! Hit, miss and error counters with their mean latencies; lock-free on the request path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

/// Counters of a read-through cache, shared by every clone of [`crate::Users`].
#[derive(Debug, Default)]
pub struct CacheStats {
    hits: AtomicU64,
    misses: AtomicU64,
    errors: AtomicU64,
    hit_nanos: AtomicU64,
    miss_nanos: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct CacheStatsSnapshot {
    /// Reads answered by the cache.
    pub hits: u64,
    /// Reads that went to the database (including those after a cache error).
    pub misses: u64,
    /// Cache operations that failed (Redis down, timed out, undecodable value).
    pub errors: u64,
    /// Mean time of a read answered by the cache.
    pub mean_hit: Duration,
    /// Mean time of a read answered by the database (cache lookup and fill included).
    pub mean_miss: Duration,
}

impl CacheStatsSnapshot {
    /// Hits ÷ reads, from 0 to 1; 0 before any read.
    pub fn hit_rate(&self) -> f64 {
        let reads = self.hits + self.misses;
        if reads == 0 {
            0.0
        } else {
            self.hits as f64 / reads as f64
        }
    }

    /// The counters gathered since `earlier` was taken.
    pub fn since(&self, earlier: &CacheStatsSnapshot) -> CacheStatsSnapshot {
        let mean = |total_now: Duration, n_now: u64, total_then: Duration, n_then: u64| {
            let n = n_now.saturating_sub(n_then);
            if n == 0 {
                Duration::ZERO
            } else {
                (total_now * n_now as u32).saturating_sub(total_then * n_then as u32) / n as u32
            }
        };
        CacheStatsSnapshot {
            hits: self.hits.saturating_sub(earlier.hits),
            misses: self.misses.saturating_sub(earlier.misses),
            errors: self.errors.saturating_sub(earlier.errors),
            mean_hit: mean(self.mean_hit, self.hits, earlier.mean_hit, earlier.hits),
            mean_miss: mean(
                self.mean_miss,
                self.misses,
                earlier.mean_miss,
                earlier.misses,
            ),
        }
    }
}

fn nanos(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX)
}

impl CacheStats {
    pub(crate) fn hit(&self, elapsed: Duration) {
        self.hits.fetch_add(1, Ordering::Relaxed);
        self.hit_nanos.fetch_add(nanos(elapsed), Ordering::Relaxed);
    }

    pub(crate) fn miss(&self, elapsed: Duration) {
        self.misses.fetch_add(1, Ordering::Relaxed);
        self.miss_nanos.fetch_add(nanos(elapsed), Ordering::Relaxed);
    }

    pub(crate) fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> CacheStatsSnapshot {
        let hits = self.hits.load(Ordering::Relaxed);
        let misses = self.misses.load(Ordering::Relaxed);
        let mean = |total: &AtomicU64, n: u64| {
            Duration::from_nanos(total.load(Ordering::Relaxed).checked_div(n).unwrap_or(0))
        };
        CacheStatsSnapshot {
            hits,
            misses,
            errors: self.errors.load(Ordering::Relaxed),
            mean_hit: mean(&self.hit_nanos, hits),
            mean_miss: mean(&self.miss_nanos, misses),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hit_rate_and_means() {
        let stats = CacheStats::default();
        assert_eq!(stats.snapshot().hit_rate(), 0.0);
        stats.hit(Duration::from_micros(1));
        stats.hit(Duration::from_micros(3));
        stats.hit(Duration::from_micros(2));
        stats.miss(Duration::from_micros(100));
        let snap = stats.snapshot();
        assert_eq!(snap.hit_rate(), 0.75);
        assert_eq!(snap.mean_hit, Duration::from_micros(2));
        assert_eq!(snap.mean_miss, Duration::from_micros(100));
    }

    #[test]
    fn since_subtracts_an_earlier_snapshot() {
        let stats = CacheStats::default();
        stats.hit(Duration::from_micros(10));
        let before = stats.snapshot();
        stats.hit(Duration::from_micros(2));
        stats.miss(Duration::from_micros(50));
        let delta = stats.snapshot().since(&before);
        assert_eq!((delta.hits, delta.misses), (1, 1));
        assert_eq!(delta.mean_hit, Duration::from_micros(2));
        assert_eq!(delta.mean_miss, Duration::from_micros(50));
    }
}
