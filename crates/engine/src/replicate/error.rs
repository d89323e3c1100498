//! What can go wrong talking to Replicate, in terms the engine acts on.

use std::time::Duration;

/// Why a Replicate call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplicateError {
    /// The client could not be set up (bad token characters, bad base URL).
    #[error("replicate client configuration: {0}")]
    Config(String),
    /// 429 after every retry.
    #[error("throttled by Replicate: {detail}")]
    Throttled {
        retry_after: Option<Duration>,
        detail: String,
    },
    /// 5xx after every retry.
    #[error("Replicate server error {status}: {detail}")]
    Server { status: u16, detail: String },
    /// A 4xx other than 429: the request itself is wrong; retrying cannot help.
    #[error("Replicate rejected the request ({status}): {detail}")]
    Rejected { status: u16, detail: String },
    /// Connection refused, reset or timed out, after every retry.
    #[error("cannot reach Replicate: {0}")]
    Network(String),
    /// A create request may or may not have reached Replicate (timed out after sending, reset,
    /// 5xx, unreadable answer): the prediction must be looked up, never created again blindly.
    #[error("the create request's outcome is unknown: {0}")]
    OutcomeUnknown(String),
    /// The answer was not the JSON expected.
    #[error("unexpected answer from Replicate: {0}")]
    Decode(String),
    /// The prediction did not finish before `GENERATION_TIMEOUT_SECONDS`; it was canceled.
    #[error("prediction {prediction} timed out and was canceled")]
    TimedOut { prediction: String },
}
