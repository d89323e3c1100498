//! DB read, DB write and cache: measured through the same `Store` and `Users` the bot uses.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use genbot_cache::{CacheStatsSnapshot, Users};
use genbot_store::{NewJob, NewUser, Store, UserId};
use serde::Serialize;

use super::{closed_loop, Throughput, Zipf};

/// A spread of ids over `ids` from a worker and a sequence number (no shared RNG on the hot path).
fn spread(ids: &Range<i64>, worker: usize, n: u64) -> i64 {
    let span = (ids.end - ids.start).max(1) as u64;
    let mixed = (n.wrapping_add(worker as u64 * 7_919)).wrapping_mul(2_654_435_761);
    ids.start + (mixed % span) as i64
}

/// User-by-id reads from `workers` tasks for `duration`, straight from the store.
pub async fn db_read(
    store: &Store,
    ids: Range<i64>,
    workers: usize,
    duration: Duration,
) -> Throughput {
    let store = store.clone();
    closed_loop(workers, duration, move |worker, n| {
        let store = store.clone();
        let id = spread(&ids, worker, n);
        async move {
            match store.get_user(UserId(id)).await {
                Ok(Some(_)) => Ok(()),
                Ok(None) => Err(format!("user {id} missing")),
                Err(e) => Err(e.to_string()),
            }
        }
    })
    .await
    .throughput()
}

/// User upserts and job inserts, each measured on its own.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DbWriteMeasurement {
    pub upserts: Throughput,
    pub job_inserts: Throughput,
}

/// Durable user upserts, then job inserts, each from `workers` tasks for `duration`.
pub async fn db_write(
    store: &Store,
    ids: Range<i64>,
    workers: usize,
    duration: Duration,
) -> DbWriteMeasurement {
    let upserter = store.clone();
    let upsert_ids = ids.clone();
    let upserts = closed_loop(workers, duration, move |worker, n| {
        let store = upserter.clone();
        let id = spread(&upsert_ids, worker, n);
        async move {
            store
                .upsert_user(NewUser {
                    id: UserId(id),
                    username: Some(format!("bench{id}")),
                    language: Some("en".into()),
                    initial_credits: 1_000_000,
                })
                .await
                .map(|_| ())
        }
    })
    .await
    .throughput();
    let inserter = store.clone();
    let job_inserts = closed_loop(workers, duration, move |worker, n| {
        let store = inserter.clone();
        let id = spread(&ids, worker, n);
        async move {
            // Inert (canceled, uncharged): a production engine on this database must never
            // run a test job, even one left by a killed suite.
            store
                .create_inert_job(NewJob {
                    user_id: UserId(id),
                    model: "flux-schnell".into(),
                    prompt: "benchmark prompt".into(),
                    params: serde_json::json!({"aspect_ratio": "1:1"}),
                })
                .await
                .map(|_| ())
        }
    })
    .await
    .throughput();
    DbWriteMeasurement {
        upserts,
        job_inserts,
    }
}

/// Read-through reads with a Zipf key pattern.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CacheMeasurement {
    pub reads: Throughput,
    /// Hits, misses, errors and mean hit/miss latency during the run.
    pub stats: CacheStatsSnapshot,
}

impl CacheMeasurement {
    /// The hit rate, or `None` when the cache never answered (unreachable): the seed grades
    /// that "needs configuration", not a low hit rate.
    pub fn hit_rate(&self) -> Option<f64> {
        (self.stats.hits > 0 || self.stats.errors == 0).then(|| self.stats.hit_rate())
    }

    /// How many times faster a cache hit is than a read that went to the database.
    pub fn speed_up(&self) -> Option<f64> {
        let hit = self.stats.mean_hit.as_secs_f64();
        (hit > 0.0 && self.stats.misses > 0).then(|| self.stats.mean_miss.as_secs_f64() / hit)
    }
}

/// Reads users through the cache for `duration` from `workers` tasks, keys drawn Zipf(`skew`)
/// over `ids`, starting cold.
pub async fn cache_read_through(
    users: &Users,
    ids: Range<i64>,
    skew: f64,
    workers: usize,
    duration: Duration,
) -> CacheMeasurement {
    let zipf = Arc::new(Zipf::new((ids.end - ids.start).max(1) as usize, skew));
    let before = users.stats();
    let reader = users.clone();
    // A cheap per-draw uniform: a Weyl sequence, distinct per worker, no RNG state shared.
    let sequence = Arc::new(AtomicU64::new(0));
    let reads = closed_loop(workers, duration, move |_worker, _n| {
        let users = reader.clone();
        let draw = sequence.fetch_add(1, Ordering::Relaxed);
        let u = (draw as f64 * 0.618_033_988_749_894_9).fract();
        let id = ids.start + zipf.key(u) as i64;
        async move {
            match users.get(UserId(id)).await {
                Ok(Some(_)) => Ok(()),
                Ok(None) => Err(format!("user {id} missing")),
                Err(e) => Err(e.to_string()),
            }
        }
    })
    .await
    .throughput();
    CacheMeasurement {
        reads,
        stats: users.stats().since(&before),
    }
}
