//! The dispatcher (one task) and the job tasks it spawns.
//!
//! The dispatcher claims from the shared queue in the database: the claim itself checks
//! `MAX_CONCURRENT_GENERATIONS` and the per-user limit over every replica, so this process keeps
//! no permits of its own. It is woken by local submissions and endings, and looks again every
//! `IDLE_POLL` for work queued or freed by other replicas.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use genbot_store::{Claim, ClaimSpec, Job, JobOutcome, StoreError};

use super::Engine;
use crate::events::{FailureReason, JobEvent};
use crate::stats::Counters;
use crate::Unwritten;

/// Pause after a database error in the dispatcher, so a failing database is not hammered.
const STORE_ERROR_PAUSE: Duration = Duration::from_millis(200);

/// How often an idle or full dispatcher looks at the shared queue again without being woken.
const IDLE_POLL: Duration = Duration::from_millis(250);

/// Why a job task stopped without an outcome of its own.
#[derive(Debug)]
pub(super) enum Stop {
    /// The generation failed: record it and refund.
    Failed(FailureReason),
    /// Another replica owns the job now, or this one is shutting down: leave it.
    Abandoned,
}

impl Engine {
    /// Claims the next job in fair order and runs it in its own task; repeats until shutdown.
    pub(super) async fn dispatch(&self) {
        let inner = &self.inner;
        let mut full_since: Option<Instant> = None;
        loop {
            if inner.shutdown.is_cancelled() {
                return;
            }
            // Register for a wake-up before looking, so one sent in between is not lost.
            let notified = inner.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let spec = ClaimSpec {
                owner: &inner.config.replica.id,
                lease: inner.config.replica.lease,
                max_running: inner.config.max_concurrent,
                per_user: inner.config.per_user,
            };
            let pause = match self.store().claim_next(spec).await {
                Ok(Claim::Claimed(job)) => {
                    if let Some(since) = full_since.take() {
                        inner.counters.semaphore_waited(since.elapsed());
                    }
                    let _ = inner.queue_length.fetch_update(
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                        |n| n.checked_sub(1),
                    );
                    self.spawn_job(*job);
                    continue;
                }
                Ok(Claim::AtCapacity) => {
                    full_since.get_or_insert_with(Instant::now);
                    IDLE_POLL
                }
                Ok(Claim::Idle) => {
                    full_since = None;
                    IDLE_POLL
                }
                Err(e) => {
                    tracing::error!(error = %e, "claiming a job failed; retrying");
                    STORE_ERROR_PAUSE
                }
            };
            tokio::select! {
                biased;
                () = inner.shutdown.cancelled() => return,
                () = notified => {}
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// Runs `job`, which this replica owns now (claimed, or taken over), in a task.
    pub(super) fn spawn_job(&self, job: Job) {
        let engine = self.clone();
        let inner = &self.inner;
        if !inner.running.lock().insert(job.id) {
            return; // already running here (taken over from ourselves at start)
        }
        inner.tasks.spawn(async move {
            let inner = &engine.inner;
            let mut in_flight = InFlight::start(&inner.counters);
            let id = job.id;
            tokio::select! {
                biased;
                () = inner.shutdown.cancelled() => {}
                () = engine.run_job(job, &mut in_flight) => {}
            }
            in_flight.end();
            inner.running.lock().remove(&id);
            inner.wake.notify_one();
        });
    }

    #[tracing::instrument(skip_all, fields(job_id = job.id.0, user_id = job.user_id.0))]
    async fn run_job(&self, job: Job, in_flight: &mut InFlight<'_>) {
        let generated = self.generate(&job).await;
        // The generation is over: once the outcome commits, the claim may start another job,
        // so this one stops counting as in flight first.
        in_flight.end();
        let (outcome, reason) = match generated {
            Ok(url) => {
                let image = self.keep_output(&url).await;
                (
                    JobOutcome::Succeeded {
                        result_url: url,
                        image,
                    },
                    None,
                )
            }
            Err(Stop::Failed(reason)) => {
                tracing::info!(reason = %reason, "generation failed");
                let error = reason.to_string();
                (JobOutcome::Failed { error }, Some(reason))
            }
            Err(Stop::Abandoned) => return,
        };
        let finished = self
            .persist(|| {
                self.inner
                    .users
                    .finish_job(job.id, self.replica_id(), outcome.clone())
            })
            .await;
        let Ok(finished) = finished else {
            Counters::bump(&self.inner.counters.abandoned);
            return;
        };
        match outcome {
            JobOutcome::Succeeded { result_url, .. } => {
                Counters::bump(&self.inner.counters.succeeded);
                self.emit(JobEvent::Succeeded {
                    job: job.id,
                    user: job.user_id,
                    url: result_url,
                    prompt: job.prompt.clone(),
                });
            }
            JobOutcome::Failed { .. } => {
                let reason = reason.unwrap_or(FailureReason::Model("unknown error".into()));
                Counters::bump(&self.inner.counters.failed);
                if reason == FailureReason::TimedOut {
                    Counters::bump(&self.inner.counters.timed_out);
                }
                tracing::debug!(refunded = finished.refunded, "refunded");
                self.emit(JobEvent::Failed {
                    job: job.id,
                    user: job.user_id,
                    reason,
                });
            }
            JobOutcome::Canceled => {}
        }
    }

    /// Runs a guarded write until it lands: database errors are retried with backoff (the work
    /// it records is done and must not be lost); `Err(Stop::Abandoned)` when the job is not
    /// this replica's any more, or on shutdown.
    pub(super) async fn persist<T, F, Fut>(&self, write: F) -> Result<T, Stop>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        match crate::until_written(&self.inner.shutdown, "a job's step", write).await {
            Ok(value) => Ok(value),
            Err(Unwritten::Refused(e)) => {
                tracing::info!(error = %e, "job is no longer this replica's; leaving it");
                Err(Stop::Abandoned)
            }
            Err(Unwritten::Stopped) => Err(Stop::Abandoned),
        }
    }
}

/// Counts a job task as in flight from its start until [`InFlight::end`] (or drop), once.
struct InFlight<'a> {
    counters: &'a Counters,
    ended: bool,
}

impl<'a> InFlight<'a> {
    fn start(counters: &'a Counters) -> Self {
        counters.started();
        InFlight {
            counters,
            ended: false,
        }
    }

    fn end(&mut self) {
        if !self.ended {
            self.ended = true;
            self.counters.stopped();
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.end();
    }
}
