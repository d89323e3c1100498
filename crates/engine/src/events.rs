//! What happens to jobs, streamed to the front end so it can tell the user.

use genbot_store::{JobId, UserId};

/// A change in a job's life. Sent in order per job. Results are delivered from the durable
/// outbox (the job rows), not from these events: `Succeeded` and `Failed` only wake it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobEvent {
    /// A prediction was created at Replicate: the image is being generated.
    Started { job: JobId, user: UserId },
    /// The image is ready at `url` (Replicate deletes outputs after an hour: send it now).
    Succeeded {
        job: JobId,
        user: UserId,
        url: String,
        prompt: String,
    },
    /// The generation failed; credits and the daily generation were given back.
    Failed {
        job: JobId,
        user: UserId,
        reason: FailureReason,
    },
}

/// Why a generation failed, in the words the front end needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureReason {
    /// `GENERATION_TIMEOUT_SECONDS` passed; the prediction was canceled.
    TimedOut,
    /// The model failed, or the prediction was canceled or aborted at Replicate.
    Model(String),
    /// Replicate refused the request or could not be reached.
    Replicate(String),
    /// The job's model (its id) left the catalogue before the job started: the operator
    /// withdrew it.
    Withdrawn(String),
    /// The image was made, but it could never reach the user: Telegram refused it every way
    /// it was sent, or it could not be fetched. Recorded by the delivery outbox, which refunds.
    Undeliverable(String),
}

impl FailureReason {
    /// The reason back from the text stored on the job (its `Display` form), for a delivery
    /// made after a restart.
    pub fn from_stored(error: &str) -> FailureReason {
        if error == "timed out" {
            FailureReason::TimedOut
        } else if let Some(model) = error.strip_prefix("model failed: ") {
            FailureReason::Model(model.to_owned())
        } else if let Some(refusal) = error.strip_prefix("undeliverable: ") {
            FailureReason::Undeliverable(refusal.to_owned())
        } else if let Some(model) = error.strip_prefix("withdrawn: ") {
            FailureReason::Withdrawn(model.to_owned())
        } else {
            FailureReason::Replicate(
                error
                    .strip_prefix("replicate: ")
                    .unwrap_or(error)
                    .to_owned(),
            )
        }
    }
}

impl std::fmt::Display for FailureReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FailureReason::TimedOut => f.write_str("timed out"),
            FailureReason::Model(e) => write!(f, "model failed: {e}"),
            FailureReason::Replicate(e) => write!(f, "replicate: {e}"),
            FailureReason::Undeliverable(e) => write!(f, "undeliverable: {e}"),
            FailureReason::Withdrawn(model) => write!(f, "withdrawn: {model}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::FailureReason;
    use proptest::prelude::*;

    proptest! {
        /// A restart delivers the reason read back from the stored text: every kind survives it.
        #[test]
        fn a_stored_reason_reads_back_as_itself(detail in any::<String>(), kind in 0..4u8) {
            let reason = match kind {
                0 => FailureReason::Model(detail),
                1 => FailureReason::Replicate(detail),
                2 => FailureReason::Withdrawn(detail),
                _ => FailureReason::Undeliverable(detail),
            };
            prop_assert_eq!(FailureReason::from_stored(&reason.to_string()), reason);
        }
    }

    #[test]
    fn a_timeout_reads_back_as_a_timeout() {
        let stored = FailureReason::TimedOut.to_string();
        assert_eq!(FailureReason::from_stored(&stored), FailureReason::TimedOut);
    }
}
