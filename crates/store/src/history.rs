//! A user's delivered images, newest first, for `/history` and re-runs: each is re-sent by
//! Telegram's `file_id`, never generated again. A delivered image's original bytes are kept for
//! a while after delivery ([`crate::Store::prune_job_images`]) so "as file" can send them at
//! full resolution.

use chrono::{DateTime, Utc};

use crate::JobId;

/// One delivered image.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryItem {
    pub job: JobId,
    pub model: String,
    pub prompt: String,
    /// The inputs it ran with (seed included).
    pub params: serde_json::Value,
    /// Telegram's id of the delivered photo, or of the document it went as (too big for a
    /// photo, or refused as one).
    pub file_id: String,
    /// Whether `file_id` is a document's: Telegram refuses a document's id as a photo.
    pub as_document: bool,
    pub created_at: DateTime<Utc>,
}
