//! Closed-loop measurements: W workers each run an operation back to back for a duration,
//! recording every latency. Used by the storage tests (DB read, DB write, cache).

mod storage;
mod zipf;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::histogram::{Latencies, LatencySummary};

pub use storage::{cache_read_through, db_read, db_write, CacheMeasurement, DbWriteMeasurement};
pub use zipf::Zipf;

/// What a closed-loop run did.
#[derive(Debug, Clone)]
pub struct LoadResult {
    pub ok: u64,
    pub errors: u64,
    pub elapsed: Duration,
    pub latencies: Latencies,
    /// The first error seen, for the report.
    pub first_error: Option<String>,
}

/// The headline figures of a run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Throughput {
    pub ops: u64,
    pub errors: u64,
    pub rps: f64,
    pub latency: LatencySummary,
}

impl LoadResult {
    pub fn throughput(&self) -> Throughput {
        Throughput {
            ops: self.ok,
            errors: self.errors,
            rps: self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9),
            latency: self.latencies.summary(),
        }
    }
}

/// Runs `op(worker, n)` from `workers` tasks for `duration`.
pub async fn closed_loop<F, Fut, E>(workers: usize, duration: Duration, op: F) -> LoadResult
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send,
    E: std::fmt::Display,
{
    let op = Arc::new(op);
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = (0..workers.max(1))
        .map(|worker| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut latencies = Latencies::new();
                let (mut ok, mut errors, mut first_error) = (0u64, 0u64, None);
                let mut n = 0u64;
                while Instant::now() < deadline {
                    let at = Instant::now();
                    match op(worker, n).await {
                        Ok(()) => {
                            ok += 1;
                            latencies.record(at.elapsed());
                        }
                        Err(e) => {
                            errors += 1;
                            first_error.get_or_insert_with(|| e.to_string());
                        }
                    }
                    n += 1;
                }
                (ok, errors, latencies, first_error)
            })
        })
        .collect();
    let mut total = LoadResult {
        ok: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latencies: Latencies::new(),
        first_error: None,
    };
    for task in tasks {
        match task.await {
            Ok((ok, errors, latencies, first_error)) => {
                total.ok += ok;
                total.errors += errors;
                total.latencies.merge(&latencies);
                if total.first_error.is_none() {
                    total.first_error = first_error;
                }
            }
            Err(e) => {
                total.errors += 1;
                total
                    .first_error
                    .get_or_insert_with(|| format!("worker panicked: {e}"));
            }
        }
    }
    total.elapsed = started.elapsed();
    total
}
