//! The records the store keeps, and the newtypes that name them.

use std::fmt;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

/// A user's id: their Telegram user id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(pub i64);

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A generation job's id, assigned by the database in creation order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub i64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A bot user as stored (and cached).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: UserId,
    pub username: Option<String>,
    /// Telegram's `language_code`, used to choose the bot's texts.
    pub language: Option<String>,
    /// The model the user picked with `/models`; `None` means the default model.
    pub selected_model: Option<String>,
    pub credits: i64,
    /// Generations consumed on `daily_reset_date`; a new day starts again from zero.
    pub daily_count: u32,
    pub daily_reset_date: NaiveDate,
    pub banned: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Inputs the user set with `/settings`, per model id: `{"flux-dev": {"aspect_ratio": "16:9"}}`.
    #[serde(default)]
    pub model_settings: serde_json::Value,
}

impl User {
    /// The inputs the user set for `model` (empty when none).
    pub fn settings_for(&self, model: &str) -> serde_json::Map<String, serde_json::Value> {
        self.model_settings
            .get(model)
            .and_then(serde_json::Value::as_object)
            .cloned()
            .unwrap_or_default()
    }

    /// Generations already used today, counting a stale day as zero.
    pub fn used_on(&self, today: NaiveDate) -> u32 {
        if self.daily_reset_date == today {
            self.daily_count
        } else {
            0
        }
    }
}

/// What `/start` knows about a user: inserted with `initial_credits` if new, otherwise only
/// the profile fields are refreshed (credits and counters are left alone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    pub id: UserId,
    pub username: Option<String>,
    pub language: Option<String>,
    pub initial_credits: i64,
}

/// The result of asking for one more generation today.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DailyQuota {
    /// Granted; `used` now includes this one.
    Granted { used: u32, remaining: u32 },
    /// Refused: the user already used `limit` generations today.
    Exhausted { limit: u32 },
}

/// Where a generation job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Canceled,
}

impl JobStatus {
    /// Every status, in life order.
    pub const ALL: [JobStatus; 5] = [
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::Canceled,
    ];

    /// The text stored in the `status` column.
    pub const fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Canceled => "canceled",
        }
    }

    /// Parses the stored text.
    pub fn parse(text: &str) -> Option<JobStatus> {
        JobStatus::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Succeeded, failed and canceled jobs never change again.
    pub const fn is_final(self) -> bool {
        matches!(
            self,
            JobStatus::Succeeded | JobStatus::Failed | JobStatus::Canceled
        )
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A job to create, in status `queued`.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    pub user_id: UserId,
    pub model: String,
    pub prompt: String,
    /// The model's input parameters after validation, as sent to Replicate.
    pub params: serde_json::Value,
}

/// A generation job as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: JobId,
    pub user_id: UserId,
    pub model: String,
    pub prompt: String,
    pub params: serde_json::Value,
    pub status: JobStatus,
    /// Replicate's prediction id, once one was created; lets a restarted engine resume polling.
    pub prediction_id: Option<String>,
    pub result_url: Option<String>,
    pub error: Option<String>,
    /// How many times a worker claimed the job.
    pub attempts: u32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Credits taken when the job was accepted.
    pub charged_credits: i64,
    /// Credits given back when it failed or was canceled (0 or `charged_credits`).
    pub refunded_credits: i64,
    /// The UTC day whose daily quota the job took (`None` for jobs that took none).
    pub quota_day: Option<NaiveDate>,
    /// The replica running it (while `running`).
    pub owner: Option<String>,
    /// Until when the owner's claim holds; after that another replica may take the job over.
    pub lease_until: Option<DateTime<Utc>>,
    /// When the owner decided to create the prediction (set before the create request): a job
    /// with an intent and no prediction id may have a prediction at Replicate that must be
    /// looked up before any new create.
    pub create_intent_at: Option<DateTime<Utc>>,
}

/// A change to a job's state, applied by [`crate::Store::update_job`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobUpdate {
    /// The prediction was created at Replicate; remember its id.
    PredictionCreated {
        prediction_id: String,
    },
    /// Put back in the queue (e.g. restart before a prediction existed).
    Requeued,
    Succeeded {
        result_url: String,
    },
    Failed {
        error: String,
    },
    Canceled,
}

impl JobUpdate {
    /// What both backends write: the status the job must be in besides `running` for the update
    /// to apply, and the new prediction id, result URL and error (each `None` = keep).
    pub(crate) fn columns(&self) -> (&'static str, Option<&str>, Option<&str>, Option<&str>) {
        match self {
            JobUpdate::PredictionCreated { prediction_id } => {
                ("running", Some(prediction_id), None, None)
            }
            JobUpdate::Requeued => ("running", None, None, None),
            JobUpdate::Succeeded { result_url } => ("running", None, Some(result_url), None),
            // Queued jobs may fail (a timeout before start) or be canceled.
            JobUpdate::Failed { error } => ("queued", None, None, Some(error)),
            JobUpdate::Canceled => ("queued", None, None, None),
        }
    }

    /// The status the job has after this update.
    pub fn status(&self) -> JobStatus {
        match self {
            JobUpdate::PredictionCreated { .. } => JobStatus::Running,
            JobUpdate::Requeued => JobStatus::Queued,
            JobUpdate::Succeeded { .. } => JobStatus::Succeeded,
            JobUpdate::Failed { .. } => JobStatus::Failed,
            JobUpdate::Canceled => JobStatus::Canceled,
        }
    }
}

/// Number of jobs in each status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct JobCounts {
    pub queued: u64,
    pub running: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub canceled: u64,
}

impl JobCounts {
    pub(crate) fn add(&mut self, status: JobStatus, n: u64) {
        match status {
            JobStatus::Queued => self.queued += n,
            JobStatus::Running => self.running += n,
            JobStatus::Succeeded => self.succeeded += n,
            JobStatus::Failed => self.failed += n,
            JobStatus::Canceled => self.canceled += n,
        }
    }

    /// All jobs, whatever their status.
    pub fn total(&self) -> u64 {
        self.queued + self.running + self.succeeded + self.failed + self.canceled
    }
}

/// What a range delete removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Deleted {
    pub users: u64,
    pub jobs: u64,
}

/// A moment's view of the connection pool, for monitoring and bottleneck hunting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PoolStats {
    /// Connections the pool may hold.
    pub size: u32,
    /// Connections open now.
    pub open: u32,
    /// Connections lent out now.
    pub in_use: u32,
    /// Tasks waiting for a connection now (`None` when the driver does not tell).
    pub waiting: Option<u32>,
}
