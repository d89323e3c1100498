//! The update inbox: every update taken from Telegram is recorded before Telegram is told it
//! arrived, and marked once handled, so an update a crash interrupted is handled at the next
//! start instead of being lost.

use chrono::{DateTime, Utc};

/// An update as received (its JSON), waiting to be handled again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxUpdate {
    pub id: i64,
    pub payload: String,
    /// Attempts at handling it that panicked or died with the process (a replayed update counts
    /// one when its handling starts); zero when recorded. Transient failures are not counted.
    pub attempts: u32,
}

/// An update set aside: handling it failed too often (a panic, a crash loop). Never replayed
/// until an operator retries it.
#[derive(Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub id: i64,
    pub attempts: u32,
    /// The last failure, as logged (never the update's text).
    pub error: String,
    pub dead_at: DateTime<Utc>,
    /// The update's JSON (it holds the user's text: not for logs).
    pub payload: String,
}

impl std::fmt::Debug for DeadLetter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetter")
            .field("id", &self.id)
            .field("attempts", &self.attempts)
            .field("error", &self.error)
            .field("dead_at", &self.dead_at)
            .finish_non_exhaustive()
    }
}

/// Which unhandled updates a replica takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unhandled {
    /// At start: its own (a previous run's) and other replicas' stale ones.
    MineAndStale,
    /// While running: only other replicas' stale ones (its own are being handled right now).
    StaleOnly,
}
