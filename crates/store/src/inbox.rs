//! The update inbox: every update taken from Telegram is recorded before Telegram is told it
//! arrived, and marked once handled, so an update a crash interrupted is handled at the next
//! start instead of being lost.
//!
//! Handling spreads over the replicas, one chat at a time: a replica takes a chat's updates only
//! while it holds the chat's claim (a lease renewed by its heartbeat, released once none of the
//! chat's updates waits), so one chat's updates are handled in order by one replica at a time.
//! The replica that records updates claims its share of their free chats in the same
//! transaction (all of them when it is alone); every replica claims free chats (and lapsed
//! claims of replicas that are gone) in rounds. Replicas taking part hold a membership lease,
//! so a recorder knows how many share the work.

use chrono::{DateTime, Utc};

/// An update as received (its JSON): recorded, or taken for handling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxUpdate {
    pub id: i64,
    /// The chat it belongs to (its sender's private chat when it has none, 0 when neither): one
    /// chat's updates are handled by one replica at a time, in order.
    pub chat: i64,
    pub payload: String,
    /// Attempts at handling it that panicked or died with the process (a replayed update counts
    /// one when its handling starts); zero when recorded. Transient failures are not counted.
    pub attempts: u32,
    /// When taken: a replica had taken it for handling before (one that is gone, or a previous
    /// run of this one), so its handling may have died with that process.
    pub replay: bool,
}

impl InboxUpdate {
    /// A new update of `chat` to record.
    pub fn new(id: i64, chat: i64, payload: String) -> Self {
        InboxUpdate {
            id,
            chat,
            payload,
            attempts: 0,
            replay: false,
        }
    }
}

/// What recording a batch of updates did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recorded {
    /// The ids not recorded before (the others were seen already: taken, or handled).
    pub new: Vec<i64>,
    /// The updates the recorder took for handling, in id order: the new ones of the chats it
    /// holds or claimed, with any older ones of those chats still waiting. The other new ones
    /// wait for the replicas holding their chats, or for a round.
    pub taken: Vec<InboxUpdate>,
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

/// What setting an update aside as a dead letter did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetAside {
    /// Nothing: the update is handled, set aside already, or not in the inbox.
    NotWaiting,
    /// Set aside for the first time: its sender has not been told yet.
    First,
    /// Set aside again after an operator's retry: its sender was told the first time.
    AfterRetry,
}

/// Which unhandled updates a replica takes in a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unhandled {
    /// At start: every waiting update of the chats it held before (a previous run's, taken or
    /// not), and of free chats.
    AtStart,
    /// While running: the waiting updates of its chats it has not taken yet (another replica
    /// recorded them), and those of free chats (none of whose updates was recorded within
    /// `leave_fresh`: a recorder leaves the rest of its batch to the others that long).
    Running { leave_fresh: std::time::Duration },
}

impl Unhandled {
    /// What both backends' round queries take: whether a replica takes its own taken updates
    /// again (at start), and how long free chats' fresh updates are left to their recorder.
    pub(crate) fn again_and_leave_fresh(self) -> (bool, std::time::Duration) {
        match self {
            Unhandled::AtStart => (true, std::time::Duration::ZERO),
            Unhandled::Running { leave_fresh } => (false, leave_fresh),
        }
    }
}

/// The lease of a replica taking part in the handling (`inbox-member:<replica>`).
pub(crate) const MEMBER_LEASE_PREFIX: &str = "inbox-member:";
/// Most free chats one round claims.
pub(crate) const ROUND_CHATS: i64 = 64;
/// The owner a retried dead letter waits under: no replica's, so any takes it, and not empty,
/// so whoever takes it sees a replay (its try is counted as it starts and it is never shed):
/// a retry that dies with its process is set aside at the next take, one more try in all.
pub(crate) const RETRIED_OWNER: &str = "(retried by an operator)";
/// Most updates taken at once.
pub(crate) const TAKE_MAX: i64 = 10_000;

/// `chats` without repeats, in their first order.
pub(crate) fn distinct(chats: impl IntoIterator<Item = i64>) -> Vec<i64> {
    let mut seen = std::collections::HashSet::new();
    chats.into_iter().filter(|c| seen.insert(*c)).collect()
}
