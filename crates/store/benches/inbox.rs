//! Micro-benchmarks of the update inbox on the embedded default (SQLite in WAL): recording a
//! poller's batch (claims, inserts, the take), and a replica's round (every 100 ms) while its
//! own taken updates wait to be handled, as they do under load.
//!
//! `cargo bench -p genbot-store --bench inbox`.

#![allow(clippy::unwrap_used)] // a benchmark fails loudly by design

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use genbot_store::{InboxUpdate, SqliteStore, Store, Unhandled};

/// Taken updates waiting for their handlers while the round looks (a second of a flood).
const WAITING: i64 = 5_000;
/// Updates in one `getUpdates` batch (Telegram's most).
const BATCH: i64 = 100;
const LEASE: Duration = Duration::from_secs(60);
const OWNER: &str = "local";

fn update(id: i64) -> InboxUpdate {
    let chat = 1_000_000 + id % 2_000;
    let payload = format!(
        r#"{{"update_id":{id},"message":{{"message_id":{id},"date":0,"chat":{{"id":{chat},"type":"private","first_name":"Sim"}},"from":{{"id":{chat},"is_bot":false,"first_name":"Sim","language_code":"en"}},"text":"/balance"}}}}"#
    );
    InboxUpdate::new(id, chat, payload)
}

fn inbox(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::Sqlite(SqliteStore::open(&dir.path().join("bench.db"), 4).unwrap());
    let mut next = 1_i64;
    runtime.block_on(async {
        while next <= WAITING {
            let batch = (next..next + BATCH).map(update).collect();
            store.record_updates(OWNER, batch, LEASE).await.unwrap();
            next += BATCH;
        }
    });
    let round = Unhandled::Running {
        leave_fresh: Duration::ZERO,
    };
    for case in ["5000 own waiting", "5000 own and 1 other's waiting"] {
        if case.contains("other") {
            // An update of a chat another replica holds: every round and record scans the waiting
            // updates again (as each did before they first asked whether any not their own waits).
            runtime.block_on(async {
                let elsewhere = InboxUpdate::new(1 << 40, 9_999_999, "{}".into());
                store
                    .record_updates("other", vec![elsewhere], LEASE)
                    .await
                    .unwrap();
            });
        }
        c.bench_function(&format!("sqlite inbox round, {case}"), |b| {
            b.to_async(&runtime).iter(|| {
                let store = &store;
                async move { black_box(store.take_updates(OWNER, round, LEASE).await.unwrap()) }
            })
        });
        c.bench_function(
            &format!("sqlite inbox record of 100 and mark them handled, {case}"),
            |b| {
                b.to_async(&runtime).iter(|| {
                    let batch: Vec<InboxUpdate> = (next..next + BATCH).map(update).collect();
                    let ids: Vec<i64> = (next..next + BATCH).collect();
                    next += BATCH;
                    let store = &store;
                    async move {
                        black_box(store.record_updates(OWNER, batch, LEASE).await.unwrap());
                        store.mark_updates_handled(OWNER, &ids).await.unwrap();
                    }
                })
            },
        );
    }
}

criterion_group!(benches, inbox);
criterion_main!(benches);
