//! The cache of hot user data.
//!
//! [`UserCache`] is one interface over two backends: Redis (shared by replicas; chosen when
//! `REDIS_URL` is set) and an in-process moka cache (the embedded default). [`Users`] puts it in
//! front of the store as a read-through cache: reads try the cache, fall back to the database
//! and fill the cache; writes go to the database and invalidate the cached copy.
//!
//! A cache is an optimisation, never a dependency: when Redis stops answering, reads fall
//! through to the database and still succeed; errors are counted ([`CacheStats`]) and logged
//! once per burst, not once per request.
//!
//! This crate owns caching only: it stores no data of its own and runs no SQL (it calls
//! `genbot-store`).

mod burst_log;
mod error;
mod memory;
mod redis_cache;
mod stats;
mod users;

use std::time::Duration;

use genbot_config::Settings;
use genbot_store::{User, UserId};

pub use error::CacheError;
pub use memory::MemoryCache;
pub use redis_cache::{lazy_connection, RedisCache};
pub use stats::{CacheStats, CacheStatsSnapshot};
pub use users::Users;

/// A cache of users by id, in Redis or in this process.
#[derive(Debug, Clone)]
pub enum UserCache {
    Memory(MemoryCache),
    Redis(RedisCache),
}

impl UserCache {
    /// The cache `settings` select: Redis when `REDIS_URL` is set, in-process otherwise.
    /// Connecting to Redis happens on first use, so a Redis that is down does not stop start-up.
    ///
    /// # Errors
    /// [`CacheError::Config`] when the Redis URL is refused by the client.
    pub fn from_settings(settings: &Settings) -> Result<Self, CacheError> {
        match &settings.redis_url {
            Some(url) => Ok(UserCache::Redis(RedisCache::new(
                url,
                settings.cache_ttl,
                &settings.redis_key_prefix,
            )?)),
            None => Ok(UserCache::Memory(MemoryCache::new(
                settings.cache_ttl,
                settings.cache_max_entries,
            ))),
        }
    }

    /// `redis` or `in-process`, for reports.
    pub fn kind(&self) -> &'static str {
        match self {
            UserCache::Memory(_) => "in-process",
            UserCache::Redis(_) => "redis",
        }
    }

    /// How long an entry stays fresh.
    pub fn ttl(&self) -> Duration {
        match self {
            UserCache::Memory(cache) => cache.ttl(),
            UserCache::Redis(cache) => cache.ttl(),
        }
    }

    /// The cached user, if fresh.
    ///
    /// # Errors
    /// Redis is unreachable, timed out, or returned an undecodable value.
    pub async fn get(&self, id: UserId) -> Result<Option<User>, CacheError> {
        match self {
            UserCache::Memory(cache) => {
                // A memory hit never returns `Pending`; yield when the task's budget is spent
                // so loops of hits cannot starve the runtime.
                tokio::task::consume_budget().await;
                Ok(cache.get(id))
            }
            UserCache::Redis(cache) => cache.get(id).await,
        }
    }

    /// Stores `user` for the TTL.
    ///
    /// # Errors
    /// Redis is unreachable or timed out.
    pub async fn put(&self, user: &User) -> Result<(), CacheError> {
        match self {
            UserCache::Memory(cache) => {
                cache.put(user);
                Ok(())
            }
            UserCache::Redis(cache) => cache.put(user).await,
        }
    }

    /// Removes the user's entry so the next read goes to the database.
    ///
    /// # Errors
    /// Redis is unreachable or timed out.
    pub async fn invalidate(&self, id: UserId) -> Result<(), CacheError> {
        match self {
            UserCache::Memory(cache) => {
                cache.invalidate(id);
                Ok(())
            }
            UserCache::Redis(cache) => cache.invalidate(id).await,
        }
    }
}
