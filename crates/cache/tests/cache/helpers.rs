//! Cache fixtures: a fresh SQLite store with users, and each cache backend.

use std::io::Write;
use std::time::Duration;

use genbot_cache::{MemoryCache, RedisCache, UserCache, Users};
use genbot_config::RedactedUrl;
use genbot_store::{NewUser, SqliteStore, Store, UserId};

/// Users 1..=n, registered in a fresh SQLite file that lives as long as the returned dir.
pub(crate) async fn store_with_users(n: i64) -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::Sqlite(SqliteStore::open(&dir.path().join("cache.db"), 2).expect("open"));
    for id in 1..=n {
        store
            .upsert_user(NewUser {
                id: UserId(id),
                username: Some(format!("u{id}")),
                language: None,
                initial_credits: 5,
            })
            .await
            .expect("seed user");
    }
    (store, dir)
}

pub(crate) fn memory(ttl: Duration) -> Option<UserCache> {
    Some(UserCache::Memory(MemoryCache::new(ttl, 10_000)))
}

/// A Redis cache under a key prefix of its own, or `None` (said aloud) without `REDIS_URL`.
/// Under CI a missing `REDIS_URL` fails instead.
pub(crate) fn redis(test: &str, ttl: Duration) -> Option<UserCache> {
    let Some(url) = std::env::var("REDIS_URL").ok().filter(|u| !u.is_empty()) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but REDIS_URL is not"
        );
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED {test} on redis: set REDIS_URL=redis://127.0.0.1:6379 to run it"
        );
        return None;
    };
    let url = RedactedUrl::new(url.parse().expect("REDIS_URL is a URL"));
    let prefix = format!("genbot:test:{:016x}:", rand::random::<u64>());
    Some(UserCache::Redis(
        RedisCache::new(&url, ttl, &prefix).expect("redis cache"),
    ))
}

/// A Redis cache pointed at a port where nothing listens.
pub(crate) fn unreachable_redis() -> UserCache {
    let url = RedactedUrl::new("redis://127.0.0.1:1/".parse().expect("url"));
    UserCache::Redis(RedisCache::new(&url, Duration::from_secs(60), "genbot:test:").expect("cache"))
}

pub(crate) async fn users(cache: UserCache, n: i64) -> (Users, tempfile::TempDir) {
    let (store, dir) = store_with_users(n).await;
    (Users::new(store, cache), dir)
}

/// Defines each listed test once per backend.
macro_rules! on_both_caches {
    ($($name:ident),* $(,)?) => {
        mod in_memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(|ttl| crate::helpers::memory(ttl)).await;
                }
            )*
        }
        mod in_redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(|ttl| crate::helpers::redis(stringify!($name), ttl)).await;
                }
            )*
        }
    };
}
pub(crate) use on_both_caches;
