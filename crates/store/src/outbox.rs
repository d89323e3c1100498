//! The delivery outbox's records: a finished job waits here until a worker records that its
//! result (or its failure) reached the user.

use std::time::Duration;

use crate::{JobId, JobStatus, UserId};

/// A finished job to tell its user about, claimed by one worker under a lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub job: JobId,
    pub user: UserId,
    /// `succeeded` (send the image) or `failed` (send the reason).
    pub status: JobStatus,
    pub prompt: String,
    pub result_url: Option<String>,
    pub error: Option<String>,
    /// Earlier tries that failed (network, 5xx, 429 past its retries).
    pub attempts: u32,
    /// Telegram's id of the image once uploaded: a resend needs no download.
    pub file_id: Option<String>,
    /// Where the result goes when not to the user's private chat: a group, as a reply.
    pub reply: Option<ReplyTarget>,
    /// Whether the image's bytes are stored ([`crate::Store::job_image`]).
    pub has_image: bool,
    /// Whether it went out as a document already ([`crate::Store::job_document`] is kept once
    /// Telegram took one): a process that stopped before recording the delivery.
    pub sent_as_document: bool,
}

/// A message a job's result answers: in a group, the result is sent there as a reply to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyTarget {
    pub chat: i64,
    pub message: i64,
}

/// A succeeded job's image, stored when its prediction succeeded and dropped once Telegram
/// has it (its `file_id` is kept instead).
#[derive(Clone, PartialEq, Eq)]
pub struct JobImage {
    /// A name with the type's extension (`image.png`), for the upload.
    pub file_name: String,
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for JobImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobImage")
            .field("file_name", &self.file_name)
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

/// The outbox right now: results not yet delivered, and how long the oldest has waited since
/// its job finished.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct OutboxBacklog {
    pub undelivered: u64,
    pub oldest_seconds: f64,
}

/// How a delivery attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// Sent; `file_id` is Telegram's id of the uploaded image, kept for re-sends.
    Delivered { file_id: Option<String> },
    /// Not sent this time; try again after `after` (any replica may).
    Retry { error: String, after: Duration },
    /// Not tried: its chat has no send budget now (a busy group). Due again after `after`,
    /// not counted as a failed attempt.
    Deferred { after: Duration },
    /// Will never be sent (the user blocked the bot, Telegram refused the request): recorded
    /// with its reason and not tried again.
    GaveUp { error: String },
    /// A succeeded job's image can never reach its user, though the chat can (Telegram refused
    /// it every way it was sent, or there is nothing to send): in one transaction the job
    /// becomes `failed` with `error` and its credits are refunded. It stays claimed: the worker
    /// sends its failure notice next (after a crash, whoever claims it does, like any failed
    /// job's). Recorded once: a second call changes nothing.
    Undeliverable { error: String },
}
