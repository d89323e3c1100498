//! Replicate webhooks among replicas: Replicate posts a prediction's end to one URL, and a load
//! balancer hands it to any replica, often not the one running the job. The receiving replica
//! records the outcome in the database before answering Replicate (a failed record gets a 5xx,
//! and Replicate retries; a copy Replicate sent again meanwhile waits for that record and, if it
//! failed, records the outcome itself instead of being told it is a replay); every replica looks there for the predictions it waits for every
//! [`RELAY_EVERY`] and wakes the wait at once, so the result does not wait for the owner's
//! reconcile poll (`REPLICATE_RECONCILE_SECONDS`). The look costs one indexed query, made only
//! while this replica waits for predictions.

use std::time::Duration;

use chrono::Utc;

use super::Engine;
use crate::replicate::webhook::{WebhookError, WebhookHeaders};
use crate::replicate::{Prediction, WebhookReceipt};

/// How often a replica looks for outcomes other replicas recorded for its predictions.
pub(super) const RELAY_EVERY: Duration = Duration::from_millis(200);
/// Outcomes nobody took (the job ended by its reconcile poll first) are forgotten after this.
const KEEP_UNTAKEN: Duration = Duration::from_secs(3_600);
/// How often those are forgotten.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

impl Engine {
    /// A webhook delivery from Replicate, as received: verified (signature, timestamp,
    /// replay) and handed to the generation waiting for its prediction; when none here waits,
    /// its outcome is recorded for the replica that runs the job.
    ///
    /// # Errors
    /// The delivery is not genuine, webhooks are off, or the outcome could not be recorded
    /// ([`WebhookError::NotRecorded`]: answer so that Replicate retries).
    pub async fn receive_replicate_webhook(
        &self,
        headers: &WebhookHeaders<'_>,
        body: &[u8],
    ) -> Result<WebhookReceipt, WebhookError> {
        let store = self.store();
        let record = |mut prediction: Prediction| async move {
            // The owner needs the outcome, not the input (which may hold a whole picture).
            prediction.input = None;
            let payload = serde_json::to_string(&prediction).map_err(|e| e.to_string())?;
            store
                .record_prediction_outcome(&prediction.id, &payload)
                .await
                .map_err(|e| e.to_string())
        };
        self.inner
            .client
            .receive_webhook(headers, body, Utc::now().timestamp(), record)
            .await
    }

    /// Hands this replica's waits the outcomes other replicas recorded for them, every
    /// [`RELAY_EVERY`] until shutdown; forgets old untaken ones now and then.
    pub(super) async fn relay_outcomes(&self) {
        let inner = &self.inner;
        let mut pruned = tokio::time::Instant::now();
        loop {
            tokio::select! {
                biased;
                () = inner.shutdown.cancelled() => return,
                () = tokio::time::sleep(RELAY_EVERY) => {}
            }
            let waiting = inner.client.waiting_predictions();
            if !waiting.is_empty() {
                match self.store().take_prediction_outcomes(&waiting).await {
                    Ok(payloads) => {
                        for payload in payloads {
                            match serde_json::from_str::<Prediction>(&payload) {
                                Ok(prediction) => inner.client.relay_outcome(prediction),
                                Err(e) => {
                                    tracing::warn!(error = %e, "a recorded prediction outcome does not parse; its reconcile poll ends the wait")
                                }
                            }
                        }
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "looking for relayed prediction outcomes failed")
                    }
                }
            }
            if pruned.elapsed() >= PRUNE_EVERY {
                pruned = tokio::time::Instant::now();
                if let Err(e) = self.store().prune_prediction_outcomes(KEEP_UNTAKEN).await {
                    tracing::debug!(error = %e, "forgetting old prediction outcomes failed");
                }
            }
        }
    }
}
