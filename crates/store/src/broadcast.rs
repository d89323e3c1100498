//! Admin broadcasts: a message sent to every user, one at a time, that survives crashes. The
//! broadcast row keeps a cursor (the last user id sent to) and the counts; each send moves the
//! cursor in its own write, so a restart resumes after the last recorded user and re-sends at
//! most the one message in flight at the crash. A running broadcast is leased to one replica,
//! as jobs are.

use chrono::{DateTime, Utc};

use crate::UserId;

/// A broadcast as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broadcast {
    pub id: i64,
    /// The admin who sent it, and where its progress is shown.
    pub admin: UserId,
    pub text: String,
    /// The admin's progress message, once sent.
    pub progress_message: Option<i64>,
    /// The last user sent to (ids ascend); 0 before the first.
    pub cursor: i64,
    pub delivered: i64,
    /// Users who blocked the bot (403): not sent, counted.
    pub blocked: i64,
    /// Other refusals.
    pub failed: i64,
    pub done: bool,
    pub created_at: DateTime<Utc>,
}

/// How one send of a broadcast ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BroadcastSend {
    Delivered,
    Blocked,
    Failed,
}
