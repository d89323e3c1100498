//! Why the engine refused a request. The Telegram front turns each variant into a message.

use chrono::{DateTime, Utc};
use genbot_store::{JobId, StoreError};

use crate::catalogue::{CatalogueError, InlineError, ParamError};
use crate::replicate::ReplicateError;

/// Why `submit` refused a generation. Nothing was charged or queued.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("the prompt is empty")]
    EmptyPrompt,
    #[error("the prompt has {chars} characters; at most {max} are allowed")]
    PromptTooLong { chars: usize, max: usize },
    #[error("user is not registered (send /start)")]
    NotRegistered,
    #[error("user is banned")]
    Banned,
    #[error("model `{0}` is not in the catalogue")]
    UnknownModel(String),
    #[error("model `{0}` is disabled")]
    ModelDisabled(String),
    #[error("invalid parameters: {0}")]
    InvalidParams(#[from] ParamError),
    /// An option written into the prompt (`--ar 5:4`) is unknown or not allowed.
    #[error("{0}")]
    InvalidOption(#[from] InlineError),
    #[error("the queue is full ({max} jobs waiting)")]
    QueueFull { max: u32 },
    #[error("the daily limit of {limit} generations is reached; it resets at {resets_at}")]
    DailyLimit {
        limit: u32,
        resets_at: DateTime<Utc>,
    },
    #[error("{cost} credits needed, {balance} left")]
    NoCredits { balance: i64, cost: i64 },
    #[error("the engine is shutting down")]
    ShuttingDown,
    /// The same Telegram update submitted job `0` already (a replay after a crash): nothing
    /// was charged again.
    #[error("this update already submitted job {0}")]
    AlreadySubmitted(genbot_store::JobId),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why `cancel` did not cancel.
#[derive(Debug, thiserror::Error)]
pub enum CancelError {
    #[error("no queued job to cancel")]
    NothingQueued,
    #[error("job {0} already started; it can no longer be canceled")]
    AlreadyStarted(JobId),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Catalogue(#[from] CatalogueError),
    #[error(transparent)]
    Replicate(#[from] ReplicateError),
    #[error("restart recovery failed: {0}")]
    Recovery(#[from] StoreError),
}
