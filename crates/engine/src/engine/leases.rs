//! Leases: this replica renews the leases of the jobs it runs every heartbeat, and takes over
//! running jobs whose owner stopped renewing (crashed, hung, or cut off from the database).
//! A live replica's jobs are never touched: its heartbeat keeps their leases in the future.

use genbot_store::JobId;

use super::Engine;
use crate::error::EngineError;
use crate::stats::Counters;

/// Jobs taken over per look; the rest wait for the next heartbeat.
const TAKE_OVER_BATCH: u32 = 1_000;

impl Engine {
    /// Renews this replica's leases and takes over expired ones, every heartbeat, until
    /// shutdown.
    pub(super) async fn keep_leases(&self) {
        let inner = &self.inner;
        let replica = &inner.config.replica;
        loop {
            tokio::select! {
                biased;
                () = inner.shutdown.cancelled() => return,
                () = tokio::time::sleep(replica.heartbeat) => {}
            }
            let mine: Vec<JobId> = inner.running.lock().iter().copied().collect();
            if !mine.is_empty() {
                if let Err(e) = self
                    .store()
                    .renew_leases(&replica.id, &mine, replica.lease)
                    .await
                {
                    tracing::warn!(error = %e, jobs = mine.len(), "renewing leases failed; other replicas take the jobs over if this lasts past the lease");
                }
            }
            if let Err(e) = self.take_over(false).await {
                tracing::warn!(error = %e, "looking for expired leases failed");
            }
            self.refresh_queue_length().await;
        }
    }

    /// Takes over running jobs whose lease expired (with `including_own`, also those carrying
    /// this replica's id: left by a previous run of it) and runs them.
    pub(super) async fn take_over(&self, including_own: bool) -> Result<(), EngineError> {
        let inner = &self.inner;
        let replica = &inner.config.replica;
        loop {
            let jobs = self
                .store()
                .take_over(&replica.id, replica.lease, TAKE_OVER_BATCH, including_own)
                .await?;
            let fewer = jobs.len() < TAKE_OVER_BATCH as usize;
            for job in jobs {
                if inner.running.lock().contains(&job.id) {
                    continue;
                }
                tracing::info!(
                    job_id = job.id.0,
                    previous_owner = job.owner.as_deref().unwrap_or("none"),
                    prediction = job.prediction_id.as_deref().unwrap_or("none"),
                    "taking over a job whose lease expired"
                );
                Counters::bump(&inner.counters.taken_over);
                self.spawn_job(job);
            }
            if fewer || inner.shutdown.is_cancelled() {
                return Ok(());
            }
        }
    }
}
