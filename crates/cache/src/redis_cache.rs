//! The Redis backend: users as JSON under `{prefix}user:{id}`, expiring after the TTL.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use genbot_config::RedactedUrl;
use genbot_store::{User, UserId};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::AsyncCommands;

use crate::CacheError;

/// Longest wait for Redis to accept a connection or answer a command. A cache that answers
/// slower than the database is worse than none.
const TIMEOUT: Duration = Duration::from_millis(250);
/// After a failure, requests skip Redis for this long instead of each waiting for a timeout.
const BACKOFF: Duration = Duration::from_millis(500);

/// A multiplexed connection to `url` that connects on first use, waits at most `timeout` for
/// a connection or an answer and retries once: a Redis slower than that is treated as down by
/// its callers (this cache; the engine's shared rate limiter).
///
/// # Errors
/// The Redis client refuses the URL.
pub fn lazy_connection(
    url: &RedactedUrl,
    timeout: Duration,
    max_delay: Duration,
) -> redis::RedisResult<ConnectionManager> {
    let client = redis::Client::open(url.expose())?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(1)
        .set_max_delay(max_delay);
    ConnectionManager::new_lazy_with_config(client, config)
}

/// Users cached in Redis. Clones share one multiplexed connection.
#[derive(Clone)]
pub struct RedisCache {
    connection: ConnectionManager,
    ttl: Duration,
    prefix: Arc<str>,
    breaker: Arc<Breaker>,
    shown_url: String,
}

impl std::fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCache")
            .field("url", &self.shown_url)
            .field("ttl", &self.ttl)
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl RedisCache {
    /// Key prefix used by the bot.
    pub const DEFAULT_PREFIX: &'static str = "genbot:";

    /// A cache at `url` whose keys start with `prefix`. Connects lazily, on first use.
    ///
    /// # Errors
    /// [`CacheError::Config`] when the client refuses the URL.
    pub fn new(url: &RedactedUrl, ttl: Duration, prefix: &str) -> Result<Self, CacheError> {
        let connection = lazy_connection(url, TIMEOUT, BACKOFF)
            .map_err(|e| CacheError::Config(e.to_string()))?;
        Ok(RedisCache {
            connection,
            ttl,
            prefix: prefix.into(),
            breaker: Arc::new(Breaker::new()),
            shown_url: url.to_string(),
        })
    }

    pub(crate) fn ttl(&self) -> Duration {
        self.ttl
    }

    fn key(&self, id: UserId) -> String {
        format!("{}user:{}", self.prefix, id.0)
    }

    pub(crate) async fn get(&self, id: UserId) -> Result<Option<User>, CacheError> {
        self.breaker.check()?;
        let mut conn = self.connection.clone();
        let bytes: Option<Vec<u8>> = self.breaker.observe(conn.get(self.key(id)).await)?;
        bytes
            .map(|bytes| {
                serde_json::from_slice(&bytes).map_err(|e| CacheError::Decode {
                    id: id.0,
                    reason: e.to_string(),
                })
            })
            .transpose()
    }

    pub(crate) async fn put(&self, user: &User) -> Result<(), CacheError> {
        self.breaker.check()?;
        let value = serde_json::to_vec(user).map_err(|e| CacheError::Decode {
            id: user.id.0,
            reason: e.to_string(),
        })?;
        let ttl_ms = u64::try_from(self.ttl.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let mut conn = self.connection.clone();
        self.breaker
            .observe(conn.pset_ex(self.key(user.id), value, ttl_ms).await)
    }

    /// Bytes Redis holds for these users' entries (`MEMORY USAGE`, keys and values with
    /// Redis's own overhead; an absent key counts 0). A cache outside the process grows Redis,
    /// not the bot, so the suite's memory test reads it here.
    ///
    /// # Errors
    /// Redis is unreachable or refuses `MEMORY USAGE`.
    pub async fn stored_bytes(&self, ids: &[UserId]) -> Result<u64, CacheError> {
        let mut total = 0u64;
        let mut conn = self.connection.clone();
        // Pipelined in slices: one round trip per thousand keys, never one huge reply.
        for slice in ids.chunks(1_000) {
            let mut pipe = redis::pipe();
            for id in slice {
                pipe.cmd("MEMORY")
                    .arg("USAGE")
                    .arg(self.key(*id))
                    .arg("SAMPLES")
                    .arg(0);
            }
            let sizes: Vec<Option<u64>> =
                self.breaker.observe(pipe.query_async(&mut conn).await)?;
            total += sizes.into_iter().flatten().sum::<u64>();
        }
        Ok(total)
    }

    pub(crate) async fn invalidate(&self, id: UserId) -> Result<(), CacheError> {
        self.breaker.check()?;
        let mut conn = self.connection.clone();
        let _removed: u64 = self.breaker.observe(conn.del(self.key(id)).await)?;
        Ok(())
    }
}

/// Stops sending requests to a Redis that just failed, for [`BACKOFF`].
#[derive(Debug)]
struct Breaker {
    epoch: Instant,
    /// Milliseconds after `epoch` until which Redis is skipped; 0 when closed.
    open_until_ms: AtomicU64,
}

impl Breaker {
    fn new() -> Self {
        Breaker {
            epoch: Instant::now(),
            open_until_ms: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn check(&self) -> Result<(), CacheError> {
        let until = self.open_until_ms.load(Ordering::Relaxed);
        if until != 0 && self.now_ms() < until {
            return Err(CacheError::Unavailable(
                "skipped after a recent failure".into(),
            ));
        }
        Ok(())
    }

    fn observe<T>(&self, result: redis::RedisResult<T>) -> Result<T, CacheError> {
        match result {
            Ok(value) => {
                self.open_until_ms.store(0, Ordering::Relaxed);
                Ok(value)
            }
            Err(e)
                if e.is_io_error()
                    || e.is_timeout()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal() =>
            {
                let backoff = u64::try_from(BACKOFF.as_millis()).unwrap_or(500);
                self.open_until_ms
                    .store(self.now_ms() + backoff, Ordering::Relaxed);
                Err(CacheError::Unavailable(e.to_string()))
            }
            Err(e) => Err(CacheError::Redis(e.to_string())),
        }
    }
}
