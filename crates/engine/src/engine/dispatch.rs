//! The dispatcher (one task) and the job tasks it spawns.

use std::time::{Duration, Instant};

use genbot_store::{Job, JobUpdate, StoreError, UserId};
use tokio::sync::OwnedSemaphorePermit;

use super::Engine;
use crate::events::{FailureReason, JobEvent};
use crate::replicate::{Prediction, PredictionStatus, ReplicateError};
use crate::stats::Counters;

/// Pause after a database error in the dispatcher, so a failing database is not hammered.
const STORE_ERROR_PAUSE: Duration = Duration::from_millis(200);

impl Engine {
    /// Takes a permit, then the next job in fair order, claims it and runs it in its own task
    /// with the permit; repeats until shutdown.
    pub(super) async fn dispatch(&self) {
        let inner = &self.inner;
        loop {
            let permit = match inner.permits.clone().try_acquire_owned() {
                Ok(permit) => permit,
                Err(_) => {
                    let waiting_since = Instant::now();
                    let permit = tokio::select! {
                        biased;
                        () = inner.shutdown.cancelled() => return,
                        permit = inner.permits.clone().acquire_owned() => permit,
                    };
                    let Ok(permit) = permit else { return };
                    if inner.scheduler.lock().queued() > 0 {
                        inner.counters.semaphore_waited(waiting_since.elapsed());
                    }
                    permit
                }
            };
            let Some((user, job_id)) = self.next_job().await else {
                return;
            };
            if inner.shutdown.is_cancelled() {
                return;
            }
            match self.store().claim_job(job_id).await {
                Ok(Some(job)) => self.spawn_job(job, permit, None),
                Ok(None) => inner.scheduler.lock().finished(user),
                Err(e) => {
                    tracing::error!(job_id = job_id.0, error = %e, "claiming a job failed; it stays queued");
                    {
                        let mut scheduler = inner.scheduler.lock();
                        scheduler.finished(user);
                        scheduler.push(user, job_id);
                    }
                    tokio::select! {
                        biased;
                        () = inner.shutdown.cancelled() => return,
                        () = tokio::time::sleep(STORE_ERROR_PAUSE) => {}
                    }
                }
            }
        }
    }

    /// Waits for a job that may run now; `None` on shutdown.
    async fn next_job(&self) -> Option<(UserId, genbot_store::JobId)> {
        let inner = &self.inner;
        loop {
            if inner.shutdown.is_cancelled() {
                return None;
            }
            // Register for a wake-up before looking, so one sent in between is not lost.
            let notified = inner.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(next) = inner.scheduler.lock().next() {
                return Some(next);
            }
            tokio::select! {
                biased;
                () = inner.shutdown.cancelled() => return None,
                () = notified => {}
            }
        }
    }

    /// Runs `job` (holding `permit`) in a task; `prediction` is set when resuming one.
    pub(super) fn spawn_job(
        &self,
        job: Job,
        permit: OwnedSemaphorePermit,
        prediction: Option<Prediction>,
    ) {
        let engine = self.clone();
        self.inner.tasks.spawn(async move {
            let inner = &engine.inner;
            inner.counters.started();
            let user = job.user_id;
            tokio::select! {
                biased;
                () = inner.shutdown.cancelled() => {}
                () = engine.run_job(job, prediction) => {}
            }
            inner.counters.stopped();
            drop(permit);
            inner.scheduler.lock().finished(user);
            inner.wake.notify_one();
        });
    }

    #[tracing::instrument(skip_all, fields(job_id = job.id.0, user_id = job.user_id.0))]
    async fn run_job(&self, job: Job, resumed: Option<Prediction>) {
        let outcome = self.generate(&job, resumed).await;
        match outcome {
            Ok(url) => self.succeed(&job, url).await,
            Err(reason) => self.fail(&job, reason).await,
        }
    }

    /// Creates (or resumes) the prediction and waits for its result URL.
    async fn generate(
        &self,
        job: &Job,
        resumed: Option<Prediction>,
    ) -> Result<String, FailureReason> {
        let inner = &self.inner;
        let started = job
            .started_at
            .map(|at| (chrono::Utc::now() - at).to_std().unwrap_or_default())
            .unwrap_or_default();
        let deadline = Instant::now() + inner.config.timeout.saturating_sub(started);
        let prediction = match resumed {
            Some(prediction) => prediction,
            None => {
                let model = inner.catalogue.get(&job.model).ok_or_else(|| {
                    FailureReason::Replicate(format!("model `{}` left the catalogue", job.model))
                })?;
                let prediction = inner
                    .client
                    .create_prediction(&model.replicate, &job.params)
                    .await
                    .map_err(|e| FailureReason::Replicate(e.to_string()))?;
                Counters::bump(&inner.counters.predictions_created);
                self.store()
                    .update_job(
                        job.id,
                        JobUpdate::PredictionCreated {
                            prediction_id: prediction.id.clone(),
                        },
                    )
                    .await
                    .map_err(|e| {
                        FailureReason::Replicate(format!("recording the prediction failed: {e}"))
                    })?;
                self.emit(JobEvent::Started {
                    job: job.id,
                    user: job.user_id,
                });
                prediction
            }
        };
        let done = inner
            .client
            .wait_for(prediction, deadline)
            .await
            .map_err(|e| match e {
                ReplicateError::TimedOut { .. } => FailureReason::TimedOut,
                other => FailureReason::Replicate(other.to_string()),
            })?;
        match done.status {
            PredictionStatus::Succeeded => done
                .output_url()
                .map(str::to_owned)
                .ok_or_else(|| FailureReason::Model("the prediction returned no image".into())),
            PredictionStatus::Canceled => Err(FailureReason::Model("canceled at Replicate".into())),
            PredictionStatus::Aborted => Err(FailureReason::Model(
                "aborted at Replicate before it started".into(),
            )),
            _ => Err(FailureReason::Model(
                done.error_text().unwrap_or_else(|| "unknown error".into()),
            )),
        }
    }

    async fn succeed(&self, job: &Job, url: String) {
        match self
            .store()
            .update_job(
                job.id,
                JobUpdate::Succeeded {
                    result_url: url.clone(),
                },
            )
            .await
        {
            Ok(_) => {
                Counters::bump(&self.inner.counters.succeeded);
                self.emit(JobEvent::Succeeded {
                    job: job.id,
                    user: job.user_id,
                    url,
                    prompt: job.prompt.clone(),
                });
            }
            Err(e) => self.final_update_failed(job, &e),
        }
    }

    async fn fail(&self, job: &Job, reason: FailureReason) {
        tracing::info!(reason = %reason, "generation failed");
        match self
            .store()
            .update_job(
                job.id,
                JobUpdate::Failed {
                    error: reason.to_string(),
                },
            )
            .await
        {
            Ok(_) => {
                Counters::bump(&self.inner.counters.failed);
                if reason == FailureReason::TimedOut {
                    Counters::bump(&self.inner.counters.timed_out);
                }
                let cost = self.inner.catalogue.get(&job.model).map_or(0, |m| m.cost);
                self.refund(job.user_id, cost, job.created_at.date_naive())
                    .await;
                self.emit(JobEvent::Failed {
                    job: job.id,
                    user: job.user_id,
                    reason,
                });
            }
            Err(e) => self.final_update_failed(job, &e),
        }
    }

    fn final_update_failed(&self, job: &Job, error: &StoreError) {
        // InvalidTransition: another replica (or an earlier run) already finished the job;
        // its outcome stands and must not be reported twice.
        if !matches!(error, StoreError::InvalidTransition { .. }) {
            tracing::error!(job_id = job.id.0, error = %error, "recording the job's outcome failed");
        }
    }
}
