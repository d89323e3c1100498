//! The update inbox: every update taken from Telegram is recorded before Telegram is told it
//! arrived, and marked once handled, so an update a crash interrupted is handled at the next
//! start instead of being lost.

/// An update as received (its JSON), waiting to be handled again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxUpdate {
    pub id: i64,
    pub payload: String,
}

/// Which unhandled updates a replica takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unhandled {
    /// At start: its own (a previous run's) and other replicas' stale ones.
    MineAndStale,
    /// While running: only other replicas' stale ones (its own are being handled right now).
    StaleOnly,
}
