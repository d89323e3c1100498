//! [`LocalRateLimiter`]: governor's GCRA, for one process.

use std::fmt;
use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota};

use super::{Counters, LimiterStats, RateLimiter};

/// GCRA in this process: creations spaced `60 s / per_minute` apart, with `burst` allowed at
/// once after a quiet spell.
pub struct LocalRateLimiter {
    limiter: DefaultDirectRateLimiter,
    clock: DefaultClock,
    per_minute: u32,
    counters: Counters,
}

impl fmt::Debug for LocalRateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalRateLimiter")
            .field("per_minute", &self.per_minute)
            .finish()
    }
}

impl LocalRateLimiter {
    /// A limiter of `per_minute` creations (at least 1) with bursts of `burst` (at least 1).
    /// A burst of 1 spaces every creation evenly, the safest against Replicate's own limiter.
    pub fn new(per_minute: u32, burst: u32) -> Self {
        let per_minute = per_minute.max(1);
        let period = Duration::from_secs(60) / per_minute;
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        // with_period only refuses a zero period; 60 s / u32 is never zero nanoseconds.
        let quota = Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX))
            .allow_burst(burst);
        LocalRateLimiter {
            limiter: DefaultDirectRateLimiter::direct(quota),
            clock: DefaultClock::default(),
            per_minute,
            counters: Counters::default(),
        }
    }

    /// Waits until this limiter admits one more, without counting it; says whether it waited.
    pub(super) async fn wait_turn(&self) -> bool {
        let mut waited = false;
        // Sleep on tokio's timer (not governor's own) so waits follow the runtime's clock.
        while let Err(not_until) = self.limiter.check() {
            waited = true;
            tokio::time::sleep(not_until.wait_time_from(self.clock.now())).await;
        }
        waited
    }

    async fn admit(&self) {
        let started = Instant::now();
        let waited = self.wait_turn().await;
        self.counters.admitted(started, waited);
    }
}

impl RateLimiter for LocalRateLimiter {
    fn acquire(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(self.admit())
    }

    fn per_minute(&self) -> u32 {
        self.per_minute
    }

    fn stats(&self) -> LimiterStats {
        self.counters.stats(self.per_minute)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn spaces_admissions_at_the_configured_rate() {
        // 1200/min = one every 50 ms: 11 admissions span 10 intervals = 500 ms.
        let limiter = LocalRateLimiter::new(1200, 1);
        let started = Instant::now();
        for _ in 0..11 {
            limiter.acquire().await;
        }
        let elapsed = started.elapsed();
        assert!(
            elapsed >= Duration::from_millis(480) && elapsed < Duration::from_millis(700),
            "{elapsed:?}"
        );
        let stats = limiter.stats();
        assert_eq!((stats.admitted, stats.waited), (11, 10));
    }
}
