//! The engine's counters: what the readiness suite and `/stats` read.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

use crate::limiter::LimiterStats;

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) submitted: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) in_flight: AtomicU64,
    pub(crate) max_in_flight: AtomicU64,
    pub(crate) semaphore_waits: AtomicU64,
    pub(crate) semaphore_wait_nanos: AtomicU64,
    pub(crate) predictions_created: AtomicU64,
    pub(crate) succeeded: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) timed_out: AtomicU64,
    pub(crate) canceled: AtomicU64,
    pub(crate) resumed: AtomicU64,
    pub(crate) taken_over: AtomicU64,
    pub(crate) lookups: AtomicU64,
    pub(crate) found_by_lookup: AtomicU64,
    pub(crate) abandoned: AtomicU64,
    pub(crate) outputs_stored: AtomicU64,
    pub(crate) outputs_not_stored: AtomicU64,
}

impl Counters {
    pub(crate) fn started(&self) {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
    }

    pub(crate) fn stopped(&self) {
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
    }

    pub(crate) fn semaphore_waited(&self, wait: Duration) {
        self.semaphore_waits.fetch_add(1, Ordering::Relaxed);
        self.semaphore_wait_nanos.fetch_add(
            u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A snapshot of the engine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct EngineStats {
    /// `MAX_CONCURRENT_GENERATIONS`.
    pub limit: u32,
    /// `MAX_CONCURRENT_GENERATIONS_PER_USER`.
    pub per_user_limit: u32,
    /// Jobs waiting in the queue now.
    pub queue_length: u64,
    /// Generations this process runs now.
    pub in_flight: u64,
    /// Most generations that held a permit at once since start.
    pub max_in_flight: u64,
    /// Jobs accepted by `submit`.
    pub submitted: u64,
    /// Submissions refused (limits, credits, queue full, bad input).
    pub rejected: u64,
    /// Times the dispatcher found `MAX_CONCURRENT_GENERATIONS` jobs running (all replicas) and
    /// waited for one to end, and for how long in all.
    pub semaphore_waits: u64,
    pub semaphore_wait: Duration,
    /// Predictions this engine created at Replicate.
    pub predictions_created: u64,
    pub succeeded: u64,
    pub failed: u64,
    /// Failed because `GENERATION_TIMEOUT_SECONDS` passed (also counted in `failed`).
    pub timed_out: u64,
    pub canceled: u64,
    /// Jobs whose existing prediction was polled again (after a take-over).
    pub resumed: u64,
    /// Running jobs taken over from a replica whose lease expired (or a previous run).
    pub taken_over: u64,
    /// Lookups at Replicate after a create whose outcome was unknown…
    pub lookups: u64,
    /// …and how many found the prediction (so no second one was created).
    pub found_by_lookup: u64,
    /// Jobs this process left to another replica (lease lost) or to the next start.
    pub abandoned: u64,
    /// Succeeded outputs downloaded and stored with the job…
    pub outputs_stored: u64,
    /// …and those whose download failed (delivered from their URL instead).
    pub outputs_not_stored: u64,
    /// The rate limiter, if any.
    pub limiter: Option<LimiterStats>,
    /// `QUEUE_MAX_LENGTH` (alerts compare the queue with it).
    pub queue_max: u32,
    /// 429 answers from Replicate (each retried request counts once per answer).
    pub replicate_throttled: u64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> EngineStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        EngineStats {
            in_flight: get(&self.in_flight),
            max_in_flight: get(&self.max_in_flight),
            submitted: get(&self.submitted),
            rejected: get(&self.rejected),
            semaphore_waits: get(&self.semaphore_waits),
            semaphore_wait: Duration::from_nanos(get(&self.semaphore_wait_nanos)),
            predictions_created: get(&self.predictions_created),
            succeeded: get(&self.succeeded),
            failed: get(&self.failed),
            timed_out: get(&self.timed_out),
            canceled: get(&self.canceled),
            resumed: get(&self.resumed),
            taken_over: get(&self.taken_over),
            lookups: get(&self.lookups),
            found_by_lookup: get(&self.found_by_lookup),
            abandoned: get(&self.abandoned),
            outputs_stored: get(&self.outputs_stored),
            outputs_not_stored: get(&self.outputs_not_stored),
            ..EngineStats::default()
        }
    }
}
