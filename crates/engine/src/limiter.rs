//! The rate limiter on prediction creations (`REPLICATE_RATE_LIMIT`, per minute).
//!
//! [`RateLimiter`] is the seam: [`LocalRateLimiter`] (governor's GCRA) serves one process;
//! [`SharedRateLimiter`] keeps the GCRA state in Redis, so several replicas together stay
//! within the one rate Replicate grants the account.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

mod local;
mod shared;

pub use local::{LocalRateLimiter, TokioClock};
pub use shared::SharedRateLimiter;

/// Admits prediction creations at a set rate.
pub trait RateLimiter: Send + Sync + fmt::Debug {
    /// Resolves when one more creation is allowed, and counts it.
    fn acquire(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
    /// The configured rate.
    fn per_minute(&self) -> u32;
    /// Admissions and waits so far.
    fn stats(&self) -> LimiterStats;
}

/// What a limiter has done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LimiterStats {
    pub per_minute: u32,
    /// Creations admitted.
    pub admitted: u64,
    /// Admissions that had to wait.
    pub waited: u64,
    /// Total time spent waiting.
    pub total_wait: Duration,
    /// Admissions decided locally because the shared state (Redis) did not answer.
    pub fallbacks: u64,
}

/// The admission counters both limiters keep.
#[derive(Debug, Default)]
struct Counters {
    admitted: AtomicU64,
    waited: AtomicU64,
    wait_nanos: AtomicU64,
    fallbacks: AtomicU64,
}

impl Counters {
    /// Counts one admission that began at `started` and had to wait or not.
    fn admitted(&self, started: Instant, waited: bool) {
        self.admitted.fetch_add(1, Ordering::Relaxed);
        if waited {
            self.waited.fetch_add(1, Ordering::Relaxed);
            let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
            self.wait_nanos.fetch_add(nanos, Ordering::Relaxed);
        }
    }

    fn fell_back(&self) {
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
    }

    fn stats(&self, per_minute: u32) -> LimiterStats {
        LimiterStats {
            per_minute,
            admitted: self.admitted.load(Ordering::Relaxed),
            waited: self.waited.load(Ordering::Relaxed),
            total_wait: Duration::from_nanos(self.wait_nanos.load(Ordering::Relaxed)),
            fallbacks: self.fallbacks.load(Ordering::Relaxed),
        }
    }
}
