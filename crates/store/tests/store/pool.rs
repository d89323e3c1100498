//! The pool figures the readiness suite samples every second: size, in use and waiters.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use genbot_store::{Store, UserId};

use crate::helpers::register;

/// More readers than connections: some must wait, the figures say so, and the count returns
/// to zero when they are done.
async fn waiters_are_counted_and_released(store: Store) {
    register(&store, 7, 1).await;
    let size = store.pool_stats().size;
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..size * 8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                for _ in 0..50 {
                    store.get_user(UserId(7)).await.unwrap();
                }
            })
        })
        .collect();
    let sampler = {
        let (store, done) = (store.clone(), done.clone());
        tokio::spawn(async move {
            let mut most_waiting = 0;
            while !done.load(Ordering::Relaxed) {
                let stats = store.pool_stats();
                assert!(stats.in_use <= stats.size, "{stats:?}");
                most_waiting = most_waiting.max(stats.waiting.unwrap());
                tokio::task::yield_now().await;
            }
            most_waiting
        })
    };
    for reader in readers {
        reader.await.unwrap();
    }
    done.store(true, Ordering::Relaxed);
    let most_waiting = sampler.await.unwrap();
    assert!(
        most_waiting > 0,
        "{} readers on {size} connections, no waiter seen",
        size * 8
    );
    assert_eq!(store.pool_stats().waiting, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_pool_counts_waiters() {
    if let Some(test) = crate::helpers::postgres("postgres_pool_counts_waiters").await {
        waiters_are_counted_and_released(test.store.clone()).await;
    }
}

#[test]
fn a_database_migrated_by_a_newer_genbot_is_refused() {
    // Seen: `serve` ran on a file at schema 99 (a newer genbot's) as if it knew its tables.
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("newer.db");
    drop(genbot_store::SqliteStore::open(&path, 1).expect("create"));
    {
        let conn = rusqlite::Connection::open(&path).expect("open raw");
        conn.pragma_update(None, "user_version", 99).expect("bump");
    }
    let refused = genbot_store::SqliteStore::open(&path, 1).expect_err("newer schema refused");
    let text = refused.to_string();
    assert!(
        text.contains("version 99") && text.contains("newer"),
        "{text}"
    );
}
