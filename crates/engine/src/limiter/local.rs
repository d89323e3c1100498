//! [`LocalRateLimiter`]: governor's GCRA, for one process.

use std::fmt;
use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::time::{Duration, Instant};

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::Quota;

use super::{Counters, LimiterStats, RateLimiter};

/// governor's clock read from tokio's: the limiter decides on the same clock its waits sleep
/// on. That is the real clock in production, and the paused one in tests, where the
/// limiter's spacing can then be checked exactly instead of against the wall clock. The
/// Telegram send pacer uses it for the same reason.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioClock;

impl Clock for TokioClock {
    type Instant = std::time::Instant;

    fn now(&self) -> std::time::Instant {
        tokio::time::Instant::now().into_std()
    }
}

type Gcra = governor::RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Instant>>;

/// GCRA in this process: creations spaced `60 s / per_minute` apart, with `burst` allowed at
/// once after a quiet spell.
pub struct LocalRateLimiter {
    limiter: Gcra,
    /// Waiters take turns in arrival order. Without it every waiter sleeps until the next free
    /// slot and whichever the timer wakes first wins, so one job could lose round after round:
    /// seen, a prompt told "position 1" waited over a minute while hundreds were created.
    line: tokio::sync::Mutex<()>,
    clock: TokioClock,
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
            limiter: Gcra::direct_with_clock(quota, TokioClock),
            line: tokio::sync::Mutex::new(()),
            clock: TokioClock,
            per_minute,
            counters: Counters::default(),
        }
    }

    /// Waits until this limiter admits one more, without counting it; says whether it waited.
    pub(super) async fn wait_turn(&self) -> bool {
        // tokio's mutex queues its waiters first come, first served.
        let _turn = self.line.lock().await;
        let mut waited = false;
        // Sleep on tokio's timer (not governor's own): decisions and waits share one clock.
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

    #[tokio::test(start_paused = true)]
    async fn spaces_admissions_at_the_configured_rate() {
        // 1200/min = one every 50 ms: 11 admissions span 10 intervals = 500 ms of the paused
        // clock, whatever the machine's speed.
        let limiter = LocalRateLimiter::new(1200, 1);
        let started = tokio::time::Instant::now();
        for _ in 0..11 {
            limiter.acquire().await;
        }
        let elapsed = started.elapsed();
        // tokio's timer rounds each sleep up to the next millisecond.
        assert!(
            elapsed >= Duration::from_millis(500) && elapsed <= Duration::from_millis(510),
            "{elapsed:?}"
        );
        let stats = limiter.stats();
        assert_eq!((stats.admitted, stats.waited), (11, 10));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn waiters_are_admitted_in_arrival_order() {
        // Claimed jobs keep arriving while earlier ones wait, on a runtime with several
        // workers and the real clock, as in production: without the line whichever waiter a
        // worker woke first was admitted. With it the order is the line's, whatever the timing.
        let limiter = std::sync::Arc::new(LocalRateLimiter::new(6_000, 1));
        let admitted = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
        let mut waiters = Vec::new();
        for n in 0..60 {
            let (limiter, admitted) = (limiter.clone(), admitted.clone());
            let (arrived, in_line) = tokio::sync::oneshot::channel::<()>();
            waiters.push(tokio::spawn(async move {
                let mut admit = limiter.acquire();
                // Polled once, the waiter has its place in the line (or is admitted) before the
                // next arrives: a worker descheduled in between cannot reorder arrivals.
                let first =
                    std::future::poll_fn(|cx| std::task::Poll::Ready(admit.as_mut().poll(cx)))
                        .await;
                let _ = arrived.send(());
                if first.is_pending() {
                    admit.await;
                }
                admitted.lock().push(n);
            }));
            let _ = in_line.await;
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
        for waiter in waiters {
            waiter.await.expect("waiter");
        }
        // Seen without the line: waiters overtaken by 40 and more.
        assert_eq!(*admitted.lock(), (0..60).collect::<Vec<_>>());
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_is_admitted_at_once_then_spaced() {
        let limiter = LocalRateLimiter::new(60, 3);
        let started = tokio::time::Instant::now();
        for _ in 0..3 {
            limiter.acquire().await;
        }
        assert_eq!(started.elapsed(), Duration::ZERO);
        limiter.acquire().await;
        let elapsed = started.elapsed();
        assert!(
            elapsed >= Duration::from_secs(1) && elapsed <= Duration::from_millis(1_010),
            "{elapsed:?}"
        );
        let stats = limiter.stats();
        assert_eq!((stats.admitted, stats.waited), (4, 1));
    }
}
