//! Micro-benchmarks of the read-through user cache with the in-process backend (moka): a hit,
//! and a miss that falls through to SQLite and fills the cache.
//!
//! `cargo bench -p genbot-cache`; the readiness suite's cache test measures the same under a
//! zipf key pattern and concurrency.

#![allow(clippy::unwrap_used)] // a benchmark fails loudly by design

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use genbot_cache::{MemoryCache, UserCache, Users};
use genbot_store::{NewUser, SqliteStore, Store, UserId};

const USERS: i64 = 10_000;

fn read_through(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::Sqlite(SqliteStore::open(&dir.path().join("bench.db"), 4).unwrap());
    runtime.block_on(async {
        for id in 1..=USERS {
            store
                .upsert_user(NewUser {
                    id: UserId(id),
                    username: Some(format!("user{id}")),
                    language: Some("en".into()),
                    initial_credits: 10,
                })
                .await
                .unwrap();
        }
    });

    let cached = Users::new(
        store.clone(),
        UserCache::Memory(MemoryCache::new(Duration::from_secs(3600), 100_000)),
    );
    runtime.block_on(async {
        for id in 1..=USERS {
            cached.get(UserId(id)).await.unwrap();
        }
    });
    let mut next = 0i64;
    c.bench_function("users.get, moka hit", |b| {
        b.to_async(&runtime).iter(|| {
            next = next % USERS + 1;
            let (users, id) = (&cached, UserId(next));
            async move { black_box(users.get(id).await.unwrap()) }
        })
    });

    // A cache too small to keep anything for long: nearly every read misses and refills.
    let tiny = Users::new(
        store.clone(),
        UserCache::Memory(MemoryCache::new(Duration::from_secs(3600), 1)),
    );
    c.bench_function("users.get, miss → SQLite → fill", |b| {
        b.to_async(&runtime).iter(|| {
            next = next % USERS + 1;
            let (users, id) = (&tiny, UserId(next));
            async move { black_box(users.get(id).await.unwrap()) }
        })
    });
}

criterion_group!(benches, read_through);
criterion_main!(benches);
