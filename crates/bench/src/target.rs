//! What the suite runs against, and the guard that keeps it away from real users.
//!
//! The default target is the embedded default: a fresh SQLite file in a temporary directory,
//! the in-process cache unless a Redis URL is given. Pointed at a real deployment, the suite
//! creates test users only in [`TEST_IDS`] — and first checks that no user already has an id
//! there, because real Telegram ids can be that large too: it never touches a user it did not
//! create, and [`Target::cleanup`] removes exactly that range and the jobs in it.

use std::ops::Range;
use std::time::Duration;

use genbot_cache::{MemoryCache, RedisCache, UserCache, Users};
use genbot_config::{DatabaseUrl, RedactedUrl};
use genbot_store::{Deleted, NewUser, Store, StoreError, UserId};

/// The ids test users get: from 1,000,000 (the seed's choice) up, a million of them.
pub const TEST_IDS: Range<i64> = 1_000_000..2_000_000;

/// Why the target cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("cannot reach the target: {0}")]
    Unreachable(#[from] StoreError),
    #[error("cannot create a temporary directory: {0}")]
    TempDir(std::io::Error),
    #[error("the cache URL is refused: {0}")]
    Cache(String),
    #[error(
        "{0} users already have ids in {start}..{end}, the range reserved for test users; \
         refusing to run so as not to touch them",
        start = TEST_IDS.start,
        end = TEST_IDS.end
    )]
    RangeInUse(u64),
}

/// The store and cache under test.
#[derive(Debug)]
pub struct Target {
    pub store: Store,
    pub users: Users,
    /// `embedded (SQLite in a temp dir)` or the redacted URL.
    pub database: String,
    _dir: Option<tempfile::TempDir>,
}

impl Target {
    /// A fresh SQLite file in a temporary directory (removed with the target), with `redis`
    /// as the cache if given, the in-process cache of `cache_max_entries` otherwise.
    ///
    /// # Errors
    /// The directory or the database cannot be created.
    pub async fn embedded(
        redis: Option<&RedactedUrl>,
        cache_ttl: Duration,
        cache_max_entries: u64,
        pool_size: u32,
    ) -> Result<Target, TargetError> {
        let dir = tempfile::tempdir().map_err(TargetError::TempDir)?;
        let url = DatabaseUrl::Sqlite {
            path: dir.path().join("bench.db"),
        };
        let store = Store::connect(&url, pool_size).await?;
        let target = Target::with_store(
            store,
            redis,
            (cache_ttl, cache_max_entries),
            "embedded SQLite (temporary file)".into(),
        )?;
        Ok(Target {
            _dir: Some(dir),
            ..target
        })
    }

    /// A deployment's database; refuses if the test range already holds users.
    ///
    /// # Errors
    /// The database is unreachable, or the test range is in use.
    pub async fn deployment(
        url: &DatabaseUrl,
        redis: Option<&RedactedUrl>,
        cache_ttl: Duration,
        cache_max_entries: u64,
        pool_size: u32,
    ) -> Result<Target, TargetError> {
        let store = Store::connect(url, pool_size).await?;
        let target = Target::with_store(
            store,
            redis,
            (cache_ttl, cache_max_entries),
            url.to_string(),
        )?;
        let present = target.store.count_users_in_range(TEST_IDS).await?;
        if present > 0 {
            return Err(TargetError::RangeInUse(present));
        }
        Ok(target)
    }

    fn with_store(
        store: Store,
        redis: Option<&RedactedUrl>,
        (cache_ttl, cache_max_entries): (Duration, u64),
        database: String,
    ) -> Result<Target, TargetError> {
        let cache = match redis {
            Some(url) => UserCache::Redis(
                RedisCache::new(url, cache_ttl, "genbot:bench:")
                    .map_err(|e| TargetError::Cache(e.to_string()))?,
            ),
            // The bot's own bound (CACHE_MAX_ENTRIES), so the cache test's hit rate is the one
            // the deployment would see, not one a million-entry cache guarantees.
            None => UserCache::Memory(MemoryCache::new(cache_ttl, cache_max_entries)),
        };
        Ok(Target {
            users: Users::new(store.clone(), cache),
            store,
            database,
            _dir: None,
        })
    }

    /// Whether this is the embedded default (a temporary SQLite file), not a deployment.
    pub fn is_embedded(&self) -> bool {
        self._dir.is_some()
    }

    /// Registers test users `0..count` (ids from [`TEST_IDS`]`.start`) and returns their ids.
    ///
    /// # Errors
    /// Database failures.
    pub async fn seed_users(&self, count: u32) -> Result<Range<i64>, StoreError> {
        let ids = TEST_IDS.start..TEST_IDS.start + i64::from(count.min(1_000_000));
        for id in ids.clone() {
            self.store
                .upsert_user(NewUser {
                    id: UserId(id),
                    username: Some(format!("bench{id}")),
                    language: Some("en".into()),
                    initial_credits: 1_000_000,
                })
                .await?;
        }
        Ok(ids)
    }

    /// Removes every test user and their jobs.
    ///
    /// # Errors
    /// Database failures; run it again, it is idempotent.
    pub async fn cleanup(&self) -> Result<Deleted, StoreError> {
        let mut deleted = self.store.delete_users_in_range(TEST_IDS).await?;
        // Re-check the range: a write still in flight when the run stopped may have landed
        // after the delete.
        if self.store.count_users_in_range(TEST_IDS).await? > 0 {
            let again = self.store.delete_users_in_range(TEST_IDS).await?;
            deleted.users += again.users;
            deleted.jobs += again.jobs;
        }
        Ok(deleted)
    }
}
