//! Start-up recovery: jobs a previous run left `running` are resumed or re-queued, and the
//! queued ones are loaded into the scheduler, so no job is lost or run twice.

use genbot_store::{JobStatus, JobUpdate};

use super::Engine;
use crate::error::EngineError;
use crate::stats::Counters;

/// Jobs read per status at start-up; more than any sane `QUEUE_MAX_LENGTH`.
const RECOVERY_LIMIT: u32 = 10_000_000;

pub(super) async fn recover(engine: &Engine) -> Result<(), EngineError> {
    let inner = &engine.inner;
    let store = engine.store();
    for job in store
        .jobs_with_status(JobStatus::Running, RECOVERY_LIMIT)
        .await?
    {
        match &job.prediction_id {
            // A prediction exists at Replicate: poll it rather than create a second one.
            Some(prediction_id) => {
                let prediction = match inner.client.get_prediction(prediction_id).await {
                    Ok(prediction) => prediction,
                    Err(e) => {
                        tracing::warn!(job_id = job.id.0, error = %e, "resuming: prediction unreadable; will poll again");
                        crate::replicate::Prediction {
                            id: prediction_id.clone(),
                            status: crate::replicate::PredictionStatus::Unknown,
                            output: None,
                            error: None,
                        }
                    }
                };
                // Resumed jobs run at Replicate already: they take permits as they are, even
                // beyond the limit after a limit was lowered, rather than wait.
                let permit = match inner.permits.clone().try_acquire_owned() {
                    Ok(permit) => permit,
                    Err(_) => {
                        inner.permits.add_permits(1);
                        match inner.permits.clone().try_acquire_owned() {
                            Ok(permit) => permit,
                            Err(_) => continue,
                        }
                    }
                };
                inner.scheduler.lock().mark_running(job.user_id);
                Counters::bump(&inner.counters.resumed);
                engine.spawn_job(job, permit, Some(prediction));
            }
            // Nothing was created: run it again from the queue.
            None => {
                store.update_job(job.id, JobUpdate::Requeued).await?;
                Counters::bump(&inner.counters.requeued);
            }
        }
    }
    let queued = store
        .jobs_with_status(JobStatus::Queued, RECOVERY_LIMIT)
        .await?;
    let mut scheduler = inner.scheduler.lock();
    for job in queued {
        scheduler.push(job.user_id, job.id);
    }
    Ok(())
}
