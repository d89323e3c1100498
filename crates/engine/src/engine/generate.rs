//! One job's generation: create its prediction at most once, or find the one a previous
//! attempt may have created, then wait for the result.
//!
//! Before every create the intent is recorded (with its time); a create whose outcome is
//! unknown (timeout, reset, 5xx, a crash mid-request) is resolved by looking the prediction up
//! at Replicate — same model, same input, created after the intent, not recorded by another
//! job — before any new create is sent.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use genbot_store::{Job, JobImage};

use super::dispatch::Stop;
use super::Engine;
use crate::catalogue::Model;
use crate::events::{FailureReason, JobEvent};
use crate::replicate::output::DownloadError;
use crate::replicate::{Prediction, PredictionStatus, ReplicateError};
use crate::stats::Counters;

/// Creates tried for one job whose outcomes all stayed unknown and were not found at
/// Replicate, before the job fails.
const MAX_CREATES: u32 = 3;

/// Pause between lookups while Replicate does not answer them.
const LOOKUP_PAUSE: Duration = Duration::from_secs(1);

/// Downloads of a succeeded output tried before it is left to the delivery to fetch.
const OUTPUT_TRIES: u32 = 3;

impl Engine {
    /// Creates (or resumes, or finds) the prediction and waits for its result URL.
    pub(super) async fn generate(&self, job: &Job) -> Result<String, Stop> {
        let inner = &self.inner;
        let started = job
            .started_at
            .map(|at| (Utc::now() - at).to_std().unwrap_or_default())
            .unwrap_or_default();
        let deadline = Instant::now() + inner.config.timeout.saturating_sub(started);
        let prediction = match &job.prediction_id {
            // A prediction exists at Replicate: poll it rather than create a second one.
            Some(id) => {
                Counters::bump(&inner.counters.resumed);
                match inner.client.get_prediction(id).await {
                    Ok(prediction) => prediction,
                    Err(e) => {
                        tracing::warn!(prediction = %id, error = %e, "resuming: prediction unreadable; will poll again");
                        Prediction {
                            id: id.clone(),
                            status: PredictionStatus::Unknown,
                            output: None,
                            error: None,
                            input: None,
                        }
                    }
                }
            }
            None => {
                // Counted from the claim until the prediction exists (or the attempt ends):
                // positions told meanwhile count this job as ahead of every queued one.
                let _awaiting = AwaitingCreate::count(&inner.awaiting_create);
                self.create_once(job, deadline).await?
            }
        };
        let done = inner
            .client
            .wait_for(prediction, deadline)
            .await
            .map_err(|e| {
                Stop::Failed(match e {
                    ReplicateError::TimedOut { .. } => FailureReason::TimedOut,
                    other => FailureReason::Replicate(other.to_string()),
                })
            })?;
        match done.status {
            PredictionStatus::Succeeded => done.output_url().map(str::to_owned).ok_or_else(|| {
                Stop::Failed(FailureReason::Model(
                    "the prediction returned no image".into(),
                ))
            }),
            PredictionStatus::Canceled => Err(Stop::Failed(FailureReason::Model(
                "canceled at Replicate".into(),
            ))),
            PredictionStatus::Aborted => Err(Stop::Failed(FailureReason::Model(
                "aborted at Replicate before it started".into(),
            ))),
            _ => Err(Stop::Failed(FailureReason::Model(
                done.error_text().unwrap_or_else(|| "unknown error".into()),
            ))),
        }
    }

    /// The succeeded output's bytes, to keep with the job (Replicate deletes outputs after an
    /// hour); `None` after [`OUTPUT_TRIES`] failed downloads (the delivery then fetches the URL
    /// itself) or on a refused image (too large, not an image: the URL is all there is).
    pub(super) async fn keep_output(&self, url: &str) -> Option<JobImage> {
        let inner = &self.inner;
        let mut pause = Duration::from_millis(200);
        for attempt in 1..=OUTPUT_TRIES {
            match inner.client.download_output(url).await {
                Ok(image) => {
                    Counters::bump(&inner.counters.outputs_stored);
                    return Some(image.into());
                }
                Err(e @ DownloadError::Network(_)) if attempt < OUTPUT_TRIES => {
                    tracing::debug!(error = %e, attempt, "downloading the output failed; trying again");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "output not stored; its delivery will fetch the URL");
                    break;
                }
            }
            tokio::select! {
                biased;
                () = inner.shutdown.cancelled() => break,
                () = tokio::time::sleep(pause) => {}
            }
            pause *= 2;
        }
        Counters::bump(&inner.counters.outputs_not_stored);
        None
    }

    /// The job's one prediction: found at Replicate if an earlier create may have made it,
    /// else created now, with the intent recorded first.
    async fn create_once(&self, job: &Job, deadline: Instant) -> Result<Prediction, Stop> {
        let inner = &self.inner;
        let model = inner
            .catalogue
            .get(&job.model)
            .ok_or_else(|| Stop::Failed(FailureReason::Withdrawn(job.model.clone())))?;
        let mut unresolved = job.create_intent_at;
        let mut creates = 0;
        loop {
            if let Some(since) = unresolved {
                Counters::bump(&inner.counters.lookups);
                if let Some(found) = self.find_created(job, model, since, deadline).await? {
                    tracing::info!(prediction = %found.id, "found the prediction an unanswered create made");
                    Counters::bump(&inner.counters.found_by_lookup);
                    return self.adopt(job, found).await;
                }
            }
            if creates == MAX_CREATES {
                return Err(Stop::Failed(FailureReason::Replicate(format!(
                    "{MAX_CREATES} creates went unanswered and none reached Replicate"
                ))));
            }
            creates += 1;
            let intent = self
                .persist(|| {
                    self.store().record_intent(
                        job.id,
                        self.replica_id(),
                        inner.config.replica.lease,
                    )
                })
                .await?;
            match inner
                .client
                .create_prediction(&model.replicate, &job.params)
                .await
            {
                Ok(prediction) => {
                    Counters::bump(&inner.counters.predictions_created);
                    return self.adopt(job, prediction).await;
                }
                Err(ReplicateError::OutcomeUnknown(reason)) => {
                    tracing::warn!(%reason, "create outcome unknown; looking the prediction up before any new create");
                    unresolved = Some(intent);
                }
                Err(e) => return Err(Stop::Failed(FailureReason::Replicate(e.to_string()))),
            }
        }
    }

    /// Records `prediction` as the job's, then tells the front end it started.
    async fn adopt(&self, job: &Job, prediction: Prediction) -> Result<Prediction, Stop> {
        self.persist(|| {
            self.store()
                .record_prediction(job.id, self.replica_id(), &prediction.id)
        })
        .await?;
        self.emit(JobEvent::Started {
            job: job.id,
            user: job.user_id,
        });
        Ok(prediction)
    }

    /// The prediction a create of this job after `since` made, if any; asks again while
    /// Replicate does not answer, until the generation's deadline.
    async fn find_created(
        &self,
        job: &Job,
        model: &Model,
        since: DateTime<Utc>,
        deadline: Instant,
    ) -> Result<Option<Prediction>, Stop> {
        let inner = &self.inner;
        loop {
            match inner
                .client
                .find_created(&model.replicate, &job.params, since)
                .await
            {
                Ok(candidates) => {
                    for candidate in candidates {
                        // Two jobs with the same input: the prediction another job recorded
                        // is that job's.
                        let taken = self
                            .persist(|| self.store().prediction_recorded(&candidate.id))
                            .await?;
                        if !taken {
                            return Ok(Some(candidate));
                        }
                    }
                    return Ok(None);
                }
                Err(e) if Instant::now() + LOOKUP_PAUSE < deadline => {
                    tracing::warn!(error = %e, "looking up the prediction failed; asking again");
                }
                Err(e) => {
                    return Err(Stop::Failed(FailureReason::Replicate(format!(
                        "could not find out whether the prediction was created: {e}"
                    ))))
                }
            }
            tokio::select! {
                biased;
                () = inner.shutdown.cancelled() => return Err(Stop::Abandoned),
                () = tokio::time::sleep(LOOKUP_PAUSE) => {}
            }
        }
    }
}

/// One job in [`super::Inner::awaiting_create`] while it lives.
struct AwaitingCreate<'a>(&'a std::sync::atomic::AtomicU64);

impl<'a> AwaitingCreate<'a> {
    fn count(counter: &'a std::sync::atomic::AtomicU64) -> Self {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        AwaitingCreate(counter)
    }
}

impl Drop for AwaitingCreate<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}
