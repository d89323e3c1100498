//! A job's guarded life on PostgreSQL: every step is one transaction; global counts are exact
//! across replicas because the steps that check them serialize on advisory locks.

use std::ops::Range;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{Connection, Row};

use super::{job, PgStore};
use crate::columns::job_columns;
use crate::lifecycle::{
    fair_position, Claim, ClaimSpec, CreditAudit, Finished, JobOutcome, QueuedJob, Submission,
    SubmitOutcome,
};
use crate::{Job, JobId, JobStatus, StoreError, UserId};

/// Serializes acceptances, so `QUEUE_MAX_LENGTH` holds over every replica's submissions.
const SUBMIT_LOCK: i64 = 0x6765_6e62_0001;
/// Serializes claims, so `MAX_CONCURRENT_GENERATIONS` and the per-user limit hold over every
/// replica. Claims run at the rate limit's pace (tens per second), far below what one lock
/// sustains.
const CLAIM_LOCK: i64 = 0x6765_6e62_0002;

fn seconds(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Gives a refunded job's credits back to its user, and its place in the day's quota when
/// that day is still the user's counted one.
pub(super) async fn give_back(
    conn: &mut sqlx::PgConnection,
    user: UserId,
    credits: i64,
    quota_day: Option<chrono::NaiveDate>,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE users SET
            credits = credits + $2,
            daily_count = CASE WHEN daily_reset_date = $3 AND daily_count > 0
                               THEN daily_count - 1 ELSE daily_count END,
            updated_at = $4
         WHERE id = $1",
    )
    .bind(user.0)
    .bind(credits)
    .bind(quota_day)
    .bind(Utc::now())
    .execute(conn)
    .await?;
    Ok(())
}

/// One of the trigger-kept counts (`genbot_job_counts`).
async fn count(conn: &mut sqlx::PgConnection, name: &str) -> Result<i64, StoreError> {
    Ok(
        sqlx::query("SELECT n FROM genbot_job_counts WHERE name = $1")
            .bind(name)
            .fetch_one(conn)
            .await?
            .try_get(0)?,
    )
}

impl PgStore {
    pub(crate) async fn submit_job(&self, s: Submission) -> Result<SubmitOutcome, StoreError> {
        let mut conn = self.connection().await?;
        let mut tx = conn.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(SUBMIT_LOCK)
            .execute(&mut *tx)
            .await?;
        if let Some(update) = s.source_update {
            let existing = sqlx::query(concat!(
                "SELECT ",
                job_columns!(),
                " FROM generation_jobs WHERE source_update = $1"
            ))
            .bind(update)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(row) = existing {
                return Ok(SubmitOutcome::AlreadySubmitted {
                    job: Box::new(job(&row)?),
                });
            }
        }
        if count(&mut tx, "queued").await? >= i64::from(s.queue_max) {
            return Ok(SubmitOutcome::QueueFull { max: s.queue_max });
        }
        let now = Utc::now();
        // Charging returns the user's queued jobs before this one (its own place in the line).
        let ahead_own = sqlx::query(
            "UPDATE users SET
                daily_count = CASE WHEN daily_reset_date = $2 THEN daily_count + 1 ELSE 1 END,
                daily_reset_date = $2,
                credits = credits - $4,
                updated_at = $5
             WHERE id = $1 AND (daily_reset_date <> $2 OR daily_count < $3) AND credits >= $4
               AND NOT banned
             RETURNING queued_jobs",
        )
        .bind(s.job.user_id.0)
        .bind(s.quota_day)
        .bind(s.daily_limit as i32)
        .bind(s.cost)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(ahead_own) = ahead_own else {
            let row = sqlx::query(
                "SELECT credits, daily_count, daily_reset_date, banned FROM users WHERE id = $1",
            )
            .bind(s.job.user_id.0)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::UserNotFound(s.job.user_id))?;
            let credits: i64 = row.try_get(0)?;
            let used: i32 = row.try_get(1)?;
            let day: chrono::NaiveDate = row.try_get(2)?;
            let banned: bool = row.try_get(3)?;
            return Ok(if banned {
                SubmitOutcome::Banned
            } else if day == s.quota_day && used >= s.daily_limit as i32 {
                SubmitOutcome::DailyLimit {
                    limit: s.daily_limit,
                }
            } else {
                SubmitOutcome::NoCredits {
                    balance: credits,
                    cost: s.cost,
                }
            });
        };
        let ahead_own: i32 = ahead_own.try_get(0)?;
        let row = sqlx::query(concat!(
            "INSERT INTO generation_jobs
                (user_id, model, prompt, params, status, created_at, updated_at,
                 charged_credits, quota_day, source_update, reply_chat, reply_message)
             VALUES ($1, $2, $3, $4, 'queued', $5, $5, $6, $7, $8, $9, $10)
             RETURNING ",
            job_columns!()
        ))
        .bind(s.job.user_id.0)
        .bind(&s.job.model)
        .bind(&s.job.prompt)
        .bind(sqlx::types::Json(&s.job.params))
        .bind(now)
        .bind(s.cost)
        .bind(s.quota_day)
        .bind(s.source_update)
        .bind(s.reply.map(|r| r.chat))
        .bind(s.reply.map(|r| r.message))
        .fetch_one(&mut *tx)
        .await?;
        let job = job(&row)?;
        let position = fair_position(
            i64::from(ahead_own),
            count(&mut tx, "queued").await?,
            count(&mut tx, "queued_users").await?,
        );
        tx.commit().await?;
        Ok(SubmitOutcome::Queued {
            job: Box::new(job),
            position,
        })
    }

    pub(crate) async fn claim_next(&self, spec: ClaimSpec<'_>) -> Result<Claim, StoreError> {
        let mut conn = self.connection().await?;
        let mut tx = conn.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(CLAIM_LOCK)
            .execute(&mut *tx)
            .await?;
        if count(&mut tx, "running").await? >= i64::from(spec.max_running) {
            return Ok(Claim::AtCapacity);
        }
        // The least recently served user with a queued job and room under the per-user limit,
        // then that user's oldest queued job: two index walks, whatever the queue's length.
        let next = sqlx::query(
            "SELECT (SELECT j.id FROM generation_jobs j
                     WHERE j.user_id = u.id AND j.status = 'queued' ORDER BY j.id LIMIT 1)
             FROM users u
             WHERE u.queued_jobs > 0 AND u.running_jobs < $1
             ORDER BY u.queue_turn, u.id
             LIMIT 1",
        )
        .bind(spec.per_user as i32)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(id) = next
            .map(|row| row.try_get::<Option<i64>, _>(0))
            .transpose()?
            .flatten()
        else {
            return Ok(Claim::Idle);
        };
        let row = sqlx::query(concat!(
            "UPDATE generation_jobs SET
                status = 'running', attempts = attempts + 1, started_at = $2, updated_at = $2,
                owner = $3, lease_until = now() + make_interval(secs => $4),
                create_intent_at = NULL
             WHERE id = $1
             RETURNING ",
            job_columns!()
        ))
        .bind(id)
        .bind(Utc::now())
        .bind(spec.owner)
        .bind(seconds(spec.lease))
        .fetch_one(&mut *tx)
        .await?;
        let claimed = job(&row)?;
        sqlx::query("UPDATE users SET queue_turn = nextval('genbot_queue_turn') WHERE id = $1")
            .bind(claimed.user_id.0)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Claim::Claimed(Box::new(claimed)))
    }

    pub(crate) async fn record_intent(
        &self,
        id: JobId,
        owner: &str,
        lease: Duration,
    ) -> Result<DateTime<Utc>, StoreError> {
        let mut conn = self.connection().await?;
        let at = sqlx::query(
            "UPDATE generation_jobs SET
                create_intent_at = clock_timestamp(), updated_at = clock_timestamp(),
                lease_until = clock_timestamp() + make_interval(secs => $3)
             WHERE id = $1 AND status = 'running' AND owner = $2 AND prediction_id IS NULL
             RETURNING create_intent_at",
        )
        .bind(id.0)
        .bind(owner)
        .bind(seconds(lease))
        .fetch_optional(&mut *conn)
        .await?;
        drop(conn);
        match at {
            Some(row) => Ok(row.try_get(0)?),
            None => Err(self.not_mine(id, owner, "create intent").await),
        }
    }

    pub(crate) async fn record_prediction(
        &self,
        id: JobId,
        owner: &str,
        prediction_id: &str,
    ) -> Result<Job, StoreError> {
        let mut conn = self.connection().await?;
        let row = sqlx::query(concat!(
            "UPDATE generation_jobs SET prediction_id = $3, updated_at = $4
             WHERE id = $1 AND status = 'running' AND owner = $2
             RETURNING ",
            job_columns!()
        ))
        .bind(id.0)
        .bind(owner)
        .bind(prediction_id)
        .bind(Utc::now())
        .fetch_optional(&mut *conn)
        .await?;
        drop(conn);
        match row {
            Some(row) => job(&row),
            None => Err(self.not_mine(id, owner, "prediction").await),
        }
    }

    pub(crate) async fn finish_job(
        &self,
        id: JobId,
        owner: &str,
        outcome: JobOutcome,
    ) -> Result<Finished, StoreError> {
        let (status, result_url, error) = match &outcome {
            JobOutcome::Succeeded { result_url, .. } => {
                (JobStatus::Succeeded, Some(result_url.as_str()), None)
            }
            JobOutcome::Failed { error } => (JobStatus::Failed, None, Some(error.as_str())),
            JobOutcome::Canceled => (JobStatus::Canceled, None, None),
        };
        let mut conn = self.connection().await?;
        let mut tx = conn.begin().await?;
        let row = sqlx::query(concat!(
            "UPDATE generation_jobs SET
                status = $2,
                result_url = coalesce($3, result_url),
                error = coalesce($4, error),
                finished_at = $6, updated_at = $6, lease_until = NULL,
                refunded_credits = CASE WHEN $2 = 'succeeded' THEN 0 ELSE charged_credits END
             WHERE id = $1 AND CASE WHEN $2 = 'canceled' THEN status = 'queued'
                                    ELSE status = 'running' AND owner = $5 END
             RETURNING ",
            job_columns!()
        ))
        .bind(id.0)
        .bind(status.as_str())
        .bind(result_url)
        .bind(error)
        .bind(owner)
        .bind(Utc::now())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            drop(tx);
            drop(conn);
            return Err(self.not_mine(id, owner, status.as_str()).await);
        };
        let finished = job(&row)?;
        let refunded = finished.refunded_credits;
        if let JobOutcome::Succeeded {
            image: Some(image), ..
        } = &outcome
        {
            sqlx::query(
                "INSERT INTO job_images (job_id, file_name, bytes) VALUES ($1, $2, $3)
                 ON CONFLICT (job_id) DO NOTHING",
            )
            .bind(id.0)
            .bind(image.file_name.as_str())
            .bind(image.bytes.as_slice())
            .execute(&mut *tx)
            .await?;
        }
        if status != JobStatus::Succeeded {
            give_back(&mut tx, finished.user_id, refunded, finished.quota_day).await?;
        }
        tx.commit().await?;
        Ok(Finished {
            job: finished,
            refunded,
        })
    }

    /// Why a guarded update of `id` by `owner` matched nothing.
    async fn not_mine(&self, id: JobId, owner: &str, attempted: &'static str) -> StoreError {
        match self.get_job(id).await {
            Ok(Some(found))
                if found.status == JobStatus::Running && found.owner.as_deref() != Some(owner) =>
            {
                StoreError::LeaseLost {
                    job: id,
                    owner: owner.to_owned(),
                }
            }
            Ok(Some(found)) => StoreError::InvalidTransition {
                job: id,
                status: found.status,
                attempted,
            },
            Ok(None) => StoreError::JobNotFound(id),
            Err(e) => e,
        }
    }

    pub(crate) async fn renew_leases(
        &self,
        owner: &str,
        jobs: &[JobId],
        lease: Duration,
    ) -> Result<u64, StoreError> {
        let ids: Vec<i64> = jobs.iter().map(|j| j.0).collect();
        let mut conn = self.connection().await?;
        Ok(sqlx::query(
            "UPDATE generation_jobs SET lease_until = now() + make_interval(secs => $2)
             WHERE owner = $1 AND status = 'running' AND id = ANY($3)",
        )
        .bind(owner)
        .bind(seconds(lease))
        .bind(ids)
        .execute(&mut *conn)
        .await?
        .rows_affected())
    }

    pub(crate) async fn release_leases(&self, owner: &str) -> Result<u64, StoreError> {
        let mut conn = self.connection().await?;
        Ok(sqlx::query(
            "UPDATE generation_jobs SET lease_until = now()
             WHERE owner = $1 AND status = 'running'",
        )
        .bind(owner)
        .execute(&mut *conn)
        .await?
        .rows_affected())
    }

    pub(crate) async fn take_over(
        &self,
        owner: &str,
        lease: Duration,
        limit: u32,
        including_own: bool,
    ) -> Result<Vec<Job>, StoreError> {
        let mut conn = self.connection().await?;
        sqlx::query(concat!(
            "UPDATE generation_jobs SET
                owner = $1, lease_until = now() + make_interval(secs => $2),
                attempts = attempts + 1, updated_at = now()
             WHERE id IN (
                SELECT id FROM generation_jobs
                WHERE status = 'running'
                  AND (lease_until IS NULL OR lease_until <= now() OR ($4 AND owner = $1))
                ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED)
             RETURNING ",
            job_columns!()
        ))
        .bind(owner)
        .bind(seconds(lease))
        .bind(i64::from(limit))
        .bind(including_own)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(job)
        .collect()
    }

    pub(crate) async fn queued_jobs(&self, limit: u32) -> Result<Vec<QueuedJob>, StoreError> {
        let mut conn = self.connection().await?;
        sqlx::query(
            "SELECT j.id, j.user_id, u.queue_turn FROM generation_jobs j
             JOIN users u ON u.id = j.user_id
             WHERE j.status = 'queued' ORDER BY j.id LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|row| {
            Ok(QueuedJob {
                id: JobId(row.try_get(0)?),
                user: UserId(row.try_get(1)?),
                turn: row.try_get(2)?,
            })
        })
        .collect()
    }

    pub(crate) async fn latest_queued_of(&self, user: UserId) -> Result<Option<JobId>, StoreError> {
        let mut conn = self.connection().await?;
        Ok(sqlx::query(
            "SELECT id FROM generation_jobs WHERE user_id = $1 AND status = 'queued'
             ORDER BY id DESC LIMIT 1",
        )
        .bind(user.0)
        .fetch_optional(&mut *conn)
        .await?
        .map(|row| row.try_get(0))
        .transpose()?
        .map(JobId))
    }

    pub(crate) async fn prediction_recorded(
        &self,
        prediction_id: &str,
    ) -> Result<bool, StoreError> {
        let mut conn = self.connection().await?;
        Ok(
            sqlx::query("SELECT 1 FROM generation_jobs WHERE prediction_id = $1 LIMIT 1")
                .bind(prediction_id)
                .fetch_optional(&mut *conn)
                .await?
                .is_some(),
        )
    }

    pub(crate) async fn credit_audit(
        &self,
        ids: Range<i64>,
    ) -> Result<Vec<CreditAudit>, StoreError> {
        let mut conn = self.connection().await?;
        sqlx::query(
            "SELECT u.id, u.credits,
                    u.initial_credits + u.credits_adjusted
                      - coalesce(sum(j.charged_credits), 0)::BIGINT
                      + coalesce(sum(j.refunded_credits), 0)::BIGINT
                      + (SELECT coalesce(sum(p.credits), 0) FROM star_payments p
                         WHERE p.user_id = u.id AND p.refund_state IS NULL)::BIGINT
             FROM users u LEFT JOIN generation_jobs j ON j.user_id = u.id
             WHERE u.id >= $1 AND u.id < $2
             GROUP BY u.id, u.credits, u.initial_credits, u.credits_adjusted
             ORDER BY u.id",
        )
        .bind(ids.start)
        .bind(ids.end)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|row| {
            Ok(CreditAudit {
                user: UserId(row.try_get(0)?),
                credits: row.try_get(1)?,
                expected: row.try_get(2)?,
            })
        })
        .collect()
    }
}
