//! [`SharedRateLimiter`]: GCRA whose state (one "theoretical arrival time") lives in Redis,
//! so every replica of the bot draws from the same budget.
//!
//! One Lua script reads the server's clock, decides and advances the state atomically; the
//! replicas' own clocks never matter. When Redis does not answer, the process falls back to
//! its own [`LocalRateLimiter`] (logged, counted in [`LimiterStats::fallbacks`]) rather than
//! stop generating: Replicate's 429s, which the client waits out, remain the last line.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use genbot_cache::lazy_connection;
use genbot_config::RedactedUrl;
use parking_lot::Mutex;
use redis::aio::ConnectionManager;

use super::{Counters, LimiterStats, LocalRateLimiter, RateLimiter};

/// GCRA in one atomic step. KEYS[1]: state; ARGV[1]: emission interval (µs); ARGV[2]: burst
/// tolerance (µs). Returns 0 when admitted (state advanced), else the µs to wait.
/// `%.0f` because Lua's tostring would print the µs timestamp in exponent form and lose digits.
const GCRA: &str = r"
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000000 + tonumber(now_parts[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]))
if not tat or tat < now then tat = now end
local wait = tat - tolerance - now
if wait > 0 then return math.ceil(wait) end
local new_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1000)
return 0
";

/// Longest wait for Redis; a slower answer falls back to the local limiter.
const TIMEOUT: Duration = Duration::from_millis(250);
/// After a failure, admissions stay local this long instead of each waiting for a timeout.
const BACKOFF: Duration = Duration::from_secs(1);

/// The Redis URL was refused by the client.
#[derive(Debug, thiserror::Error)]
#[error("rate limiter: invalid Redis URL {url}: {reason}")]
pub struct SharedLimiterError {
    url: String,
    reason: String,
}

/// Creations admitted at `per_minute` across every process that shares `key` in one Redis.
pub struct SharedRateLimiter {
    connection: ConnectionManager,
    script: redis::Script,
    key: String,
    interval_us: u64,
    tolerance_us: u64,
    per_minute: u32,
    fallback: LocalRateLimiter,
    /// See `LocalRateLimiter`'s `line`: waiters in arrival order.
    line: tokio::sync::Mutex<()>,
    /// Until when Redis is skipped after a failure.
    skip_until: Mutex<Option<Instant>>,
    shown_url: String,
    counters: Counters,
}

impl fmt::Debug for SharedRateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedRateLimiter")
            .field("url", &self.shown_url)
            .field("key", &self.key)
            .field("per_minute", &self.per_minute)
            .finish()
    }
}

impl SharedRateLimiter {
    /// The key the bot's replicas share, after `REDIS_KEY_PREFIX`.
    pub const KEY_SUFFIX: &'static str = "ratelimit:replicate-creations";

    /// A limiter of `per_minute` creations (at least 1) with bursts of `burst` (at least 1),
    /// its state under `key` at `url`. Connects lazily, on first use.
    ///
    /// # Errors
    /// The Redis client refuses the URL.
    pub fn new(
        url: &RedactedUrl,
        key: &str,
        per_minute: u32,
        burst: u32,
    ) -> Result<Self, SharedLimiterError> {
        let connection =
            lazy_connection(url, TIMEOUT, BACKOFF).map_err(|e| SharedLimiterError {
                url: url.to_string(),
                reason: e.to_string(),
            })?;
        let per_minute = per_minute.max(1);
        let interval_us = 60_000_000 / u64::from(per_minute);
        Ok(SharedRateLimiter {
            connection,
            script: redis::Script::new(GCRA),
            key: key.to_owned(),
            interval_us,
            tolerance_us: interval_us * u64::from(burst.max(1) - 1),
            per_minute,
            fallback: LocalRateLimiter::new(per_minute, burst),
            line: tokio::sync::Mutex::new(()),
            skip_until: Mutex::new(None),
            shown_url: url.to_string(),
            counters: Counters::default(),
        })
    }

    /// Asks Redis once: `Some(wait)` (zero when admitted), or `None` when it did not answer.
    async fn ask(&self) -> Option<Duration> {
        if self
            .skip_until
            .lock()
            .is_some_and(|until| Instant::now() < until)
        {
            return None;
        }
        let mut connection = self.connection.clone();
        let answer: redis::RedisResult<u64> = self
            .script
            .key(&self.key)
            .arg(self.interval_us)
            .arg(self.tolerance_us)
            .invoke_async(&mut connection)
            .await;
        match answer {
            Ok(wait_us) => Some(Duration::from_micros(wait_us)),
            Err(e) => {
                let mut skip = self.skip_until.lock();
                // Log once per outage, not once per creation.
                if skip.is_none() {
                    tracing::warn!(url = %self.shown_url, error = %e, "shared rate limiter: Redis did not answer; limiting this process alone until it does");
                }
                *skip = Some(Instant::now() + BACKOFF);
                None
            }
        }
    }

    async fn admit(&self) {
        let started = Instant::now();
        // This process's waiters ask Redis in arrival order (see `LocalRateLimiter::line`);
        // across replicas Redis's GCRA decides.
        let _turn = self.line.lock().await;
        let mut waited = false;
        loop {
            match self.ask().await {
                Some(wait) if wait.is_zero() => {
                    let mut skip = self.skip_until.lock();
                    if skip.take().is_some() {
                        tracing::info!(url = %self.shown_url, "shared rate limiter: Redis answers again");
                    }
                    break;
                }
                Some(wait) => {
                    waited = true;
                    tokio::time::sleep(wait).await;
                }
                None => {
                    self.counters.fell_back();
                    waited |= self.fallback.wait_turn().await;
                    break;
                }
            }
        }
        self.counters.admitted(started, waited);
    }
}

impl RateLimiter for SharedRateLimiter {
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
