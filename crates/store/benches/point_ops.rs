//! Micro-benchmarks of the store's hot operations on the embedded default (SQLite in WAL):
//! a user read by id (every update reads its user) and a durable upsert (every /start).
//!
//! `cargo bench -p genbot-store`; the readiness suite measures the same under concurrency.

#![allow(clippy::unwrap_used)] // a benchmark fails loudly by design

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use genbot_store::{NewUser, SqliteStore, Store, UserId};

const USERS: i64 = 10_000;

fn user(id: i64) -> NewUser {
    NewUser {
        id: UserId(id),
        username: Some(format!("user{id}")),
        language: Some("en".into()),
        initial_credits: 10,
    }
}

fn point_ops(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::Sqlite(SqliteStore::open(&dir.path().join("bench.db"), 4).unwrap());
    runtime.block_on(async {
        for id in 1..=USERS {
            store.upsert_user(user(id)).await.unwrap();
        }
    });

    let mut next = 0i64;
    c.bench_function("sqlite get_user (hit)", |b| {
        b.to_async(&runtime).iter(|| {
            next = next % USERS + 1;
            let store = &store;
            let id = UserId(next);
            async move { black_box(store.get_user(id).await.unwrap()) }
        })
    });
    c.bench_function("sqlite get_user (absent)", |b| {
        b.to_async(&runtime)
            .iter(|| async { black_box(store.get_user(UserId(USERS * 10)).await.unwrap()) })
    });
    // One writer at a time: the latency of a lone durable write (group commit of one).
    c.bench_function("sqlite upsert_user (durable, alone)", |b| {
        b.to_async(&runtime).iter(|| {
            next = next % USERS + 1;
            let store = &store;
            let new = user(next);
            async move { black_box(store.upsert_user(new).await.unwrap()) }
        })
    });
}

criterion_group!(benches, point_ops);
criterion_main!(benches);
