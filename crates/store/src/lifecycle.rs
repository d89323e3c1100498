//! The records of a job's guarded life: accepted with its charge, claimed under a lease, given
//! its prediction, finished with its refund. Each step is one transaction in either backend, so
//! no crash can leave a job charged but not queued, or failed but not refunded.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};

use crate::{Job, JobId, JobImage, NewJob, UserId};

/// A job to accept, with what it costs and the limits its acceptance must respect. The
/// quota, the credits, the queue length and the insert are checked and written together.
#[derive(Debug, Clone, PartialEq)]
pub struct Submission {
    pub job: NewJob,
    /// Credits taken now and stored on the job (what a refund gives back).
    pub cost: i64,
    /// The UTC day whose daily quota the job takes.
    pub quota_day: NaiveDate,
    /// `DAILY_GENERATION_LIMIT`.
    pub daily_limit: u32,
    /// `QUEUE_MAX_LENGTH`, counted over every replica's queued jobs.
    pub queue_max: u32,
    /// The Telegram update that asked for the job: a second submission from the same update
    /// (a replay after a crash) finds this job and changes nothing.
    pub source_update: Option<i64>,
    /// Where the result goes when not to the user's private chat (a group).
    pub reply: Option<crate::ReplyTarget>,
}

/// What became of a [`Submission`]. Refusals change nothing.
#[derive(Debug, Clone, PartialEq)]
pub enum SubmitOutcome {
    /// Queued and charged; `position` is its 1-based place in the fair order when accepted.
    Queued { job: Box<Job>, position: u64 },
    /// `queue_max` jobs already wait.
    QueueFull { max: u32 },
    /// The user used the day's quota.
    DailyLimit { limit: u32 },
    /// The user cannot pay.
    NoCredits { balance: i64, cost: i64 },
    /// The user is banned (read in the same transaction: a ban holds on every replica at
    /// once, whatever their caches say).
    Banned,
    /// The same update submitted this job already (nothing charged again).
    AlreadySubmitted { job: Box<Job> },
}

/// Who claims and within which global limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimSpec<'a> {
    /// The replica taking the job.
    pub owner: &'a str,
    /// How long the claim holds without a heartbeat.
    pub lease: Duration,
    /// `MAX_CONCURRENT_GENERATIONS`: running jobs of every replica together.
    pub max_running: u32,
    /// `MAX_CONCURRENT_GENERATIONS_PER_USER`, also over every replica.
    pub per_user: u32,
}

/// The answer to a claim.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// This job is now `running`, owned by the claimant under a fresh lease.
    Claimed(Box<Job>),
    /// `max_running` jobs run already (on any replica).
    AtCapacity,
    /// Nothing queued, or every user with queued jobs is at the per-user limit.
    Idle,
}

/// How a job ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    /// Succeeded; `image` is the output downloaded at once (kept until it reached the user),
    /// `None` when the download failed and the delivery must fetch `result_url` itself.
    Succeeded {
        result_url: String,
        image: Option<JobImage>,
    },
    /// Failed: its charge and daily generation are given back in the same transaction.
    Failed { error: String },
    /// Canceled while queued: refunded like a failure.
    Canceled,
}

/// A job that just ended, and the credits its ending gave back.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    pub job: Job,
    pub refunded: i64,
}

/// A queued job as the fair order sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueuedJob {
    pub id: JobId,
    pub user: UserId,
    /// The user's last turn (0 = never served): lower turns go first in a round.
    pub turn: i64,
}

/// One user's balance next to what the ledger says it must be:
/// `initial + adjustments − charged + refunded`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreditAudit {
    pub user: UserId,
    pub credits: i64,
    pub expected: i64,
}

/// A lease's end, `lease` from `now`.
pub(crate) fn lease_end(now: DateTime<Utc>, lease: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(30))
}

/// A new job's 1-based place in the round-robin, from counts alone: `ahead_own` of the user's
/// jobs were queued before it, `queued` jobs wait in all (this one included) from
/// `queued_users` users (this user included). Every other user gets at most `ahead_own + 1`
/// turns before this job's, and has at most their queued jobs: the estimate assumes the other
/// jobs spread evenly, and is exact when every other user has one job or more than
/// `ahead_own`. Position messages are corrected from the queue itself within seconds.
pub(crate) fn fair_position(ahead_own: i64, queued: i64, queued_users: i64) -> u64 {
    let ahead_own = ahead_own.max(0);
    let others_jobs = (queued - ahead_own - 1).max(0);
    let others_users = (queued_users - 1).max(0);
    let others_ahead = others_jobs.min(others_users.saturating_mul(ahead_own + 1));
    (1 + ahead_own + others_ahead) as u64
}

#[cfg(test)]
mod tests {
    use super::fair_position;

    #[test]
    fn positions_follow_the_round_robin() {
        // A has 19 queued before its 20th; B then C arrive with one each.
        assert_eq!(fair_position(0, 20, 2), 2, "B behind A's head");
        assert_eq!(fair_position(0, 21, 3), 3, "C behind A's and B's heads");
        // A's 21st job: one turn each for B and C per round, 20 of A's own ahead.
        assert_eq!(fair_position(20, 23, 3), 23);
        assert_eq!(fair_position(0, 1, 1), 1, "alone");
    }
}
