use std::time::Duration;

use genbot_cache::{MemoryCache, UserCache, Users};
use genbot_store::{NewUser, UserId};

use crate::helpers::{on_both_caches, redis, store_with_users, unreachable_redis, users};

on_both_caches!(
    hits_and_misses_are_counted,
    entries_expire_after_the_ttl,
    writes_invalidate_the_cached_copy,
    registering_an_unchanged_user_writes_nothing,
);

type MakeCache = fn(Duration) -> Option<UserCache>;

async fn hits_and_misses_are_counted(make: MakeCache) {
    let Some(cache) = make(Duration::from_secs(60)) else {
        return;
    };
    let (users, _dir) = users(cache, 3).await;
    let first = users.get(UserId(1)).await.unwrap().unwrap();
    let second = users.get(UserId(1)).await.unwrap().unwrap();
    assert_eq!(first, second);
    users.get(UserId(2)).await.unwrap().unwrap();
    assert_eq!(users.get(UserId(99)).await.unwrap(), None);
    assert_eq!(users.get(UserId(99)).await.unwrap(), None);
    let stats = users.stats();
    assert_eq!((stats.hits, stats.misses, stats.errors), (1, 4, 0));
    assert!((stats.hit_rate() - 0.2).abs() < 1e-9);
    assert!(stats.mean_hit > Duration::ZERO && stats.mean_miss > Duration::ZERO);
}

async fn entries_expire_after_the_ttl(make: MakeCache) {
    let ttl = Duration::from_millis(300);
    let Some(cache) = make(ttl) else {
        return;
    };
    assert_eq!(cache.ttl(), ttl);
    let (users, _dir) = users(cache, 1).await;
    users.get(UserId(1)).await.unwrap();
    users.get(UserId(1)).await.unwrap();
    assert_eq!(users.stats().hits, 1, "fresh entry must hit");
    tokio::time::sleep(ttl + Duration::from_millis(300)).await;
    users.get(UserId(1)).await.unwrap();
    let stats = users.stats();
    assert_eq!(
        (stats.hits, stats.misses),
        (1, 2),
        "expired entry must miss"
    );
}

async fn writes_invalidate_the_cached_copy(make: MakeCache) {
    let Some(cache) = make(Duration::from_secs(60)) else {
        return;
    };
    let (users, _dir) = users(cache, 1).await;
    let before = users.get(UserId(1)).await.unwrap().unwrap();
    assert_eq!(before.selected_model, None);
    users
        .set_selected_model(UserId(1), Some("sdxl".into()))
        .await
        .unwrap();
    let after = users.get(UserId(1)).await.unwrap().unwrap();
    assert_eq!(after.selected_model.as_deref(), Some("sdxl"));
    users.add_credits(UserId(1), 7).await.unwrap();
    assert_eq!(users.get(UserId(1)).await.unwrap().unwrap().credits, 12);
    let stats = users.stats();
    assert_eq!(
        (stats.hits, stats.misses),
        (0, 3),
        "each read after a write misses"
    );
    users.get(UserId(1)).await.unwrap();
    assert_eq!(users.stats().hits, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_redis_falls_through_to_the_database() {
    let (store, _dir) = store_with_users(2).await;
    let users = Users::new(store, unreachable_redis());
    for _ in 0..50 {
        let user = users.get(UserId(1)).await.unwrap().unwrap();
        assert_eq!(user.username.as_deref(), Some("u1"));
    }
    assert_eq!(users.add_credits(UserId(2), 1).await.unwrap(), 6);
    let stats = users.stats();
    assert_eq!((stats.hits, stats.misses), (0, 50));
    assert!(stats.errors >= 50, "errors counted: {}", stats.errors);
}

#[tokio::test]
async fn the_memory_cache_evicts_beyond_its_capacity() {
    let cache = MemoryCache::new(Duration::from_secs(60), 10);
    let (users, _dir) = users(UserCache::Memory(cache.clone()), 100).await;
    for id in 1..=100 {
        users.get(UserId(id)).await.unwrap().unwrap();
    }
    assert!(cache.entry_count() <= 10, "holds {}", cache.entry_count());
    assert!(cache.evictions() >= 80, "evicted {}", cache.evictions());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_reports_the_bytes_it_holds_for_cached_users() {
    let Some(cache) = redis("stored_bytes", Duration::from_secs(60)) else {
        return;
    };
    let UserCache::Redis(redis) = cache.clone() else {
        unreachable!("redis() gives a Redis cache")
    };
    let (users, _dir) = users(cache, 200).await;
    let ids: Vec<UserId> = (1..=200).map(UserId).collect();
    assert_eq!(
        redis.stored_bytes(&ids).await.unwrap(),
        0,
        "nothing cached yet"
    );
    for id in &ids[..100] {
        users.get(*id).await.unwrap().unwrap();
    }
    let half = redis.stored_bytes(&ids).await.unwrap();
    for id in &ids[100..] {
        users.get(*id).await.unwrap().unwrap();
    }
    let all = redis.stored_bytes(&ids).await.unwrap();
    // Each entry is a user's JSON (~100 bytes) plus Redis's key and object overhead.
    assert!(half >= 100 * 64, "100 users in {half} bytes");
    assert!(
        all > half + 100 * 64,
        "200 users in {all} bytes (100 in {half})"
    );
    for id in &ids {
        users.cache().invalidate(*id).await.unwrap();
    }
}

/// `register` writes only what is new or changed: an unchanged user keeps their cached copy
/// (an upsert would drop it) and their row as it was; a new language is stored; a new user gets
/// the initial credits.
async fn registering_an_unchanged_user_writes_nothing(make: MakeCache) {
    let Some(cache) = make(Duration::from_secs(60)) else {
        return;
    };
    let (users, _dir) = users(cache, 1).await;
    let seen = |language: Option<&str>| NewUser {
        id: UserId(1),
        username: Some("u1".into()),
        language: language.map(Into::into),
        initial_credits: 99,
    };
    let cached = users.get(UserId(1)).await.unwrap().unwrap();
    let same = users.register(seen(None)).await.unwrap();
    assert_eq!(same, cached, "an unchanged user is returned as stored");
    users.get(UserId(1)).await.unwrap();
    assert_eq!(
        users.stats().hits,
        1,
        "the cached copy was dropped: a write happened"
    );
    let changed = users.register(seen(Some("ru"))).await.unwrap();
    assert_eq!(changed.language.as_deref(), Some("ru"));
    assert_eq!(
        changed.credits, cached.credits,
        "a refresh keeps the credits"
    );
    let stored = users.store().get_user(UserId(1)).await.unwrap().unwrap();
    assert_eq!(stored.language.as_deref(), Some("ru"));
    let read = users.get(UserId(1)).await.unwrap().unwrap();
    assert_eq!(
        read.language.as_deref(),
        Some("ru"),
        "a refresh left the old copy cached"
    );
    let new = users
        .register(NewUser {
            id: UserId(2),
            username: None,
            language: None,
            initial_credits: 7,
        })
        .await
        .unwrap();
    assert_eq!(new.credits, 7);
}
