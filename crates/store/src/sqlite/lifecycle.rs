//! A job's guarded life on SQLite. Every step runs on the one writer thread inside its own
//! savepoint, so each is atomic and all of them are serialized: global counts are exact.
//! Lease times are this process's clock (SQLite serves one process).

use std::ops::Range;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};

use super::rows::{self, date_text, millis};
use super::{select_job, SqliteStore};
use crate::columns::job_columns;
use crate::lifecycle::{
    fair_position, lease_end, Claim, ClaimSpec, CreditAudit, Finished, JobOutcome, QueuedJob,
    Submission, SubmitOutcome,
};
use crate::{Job, JobId, JobStatus, StoreError, UserId};

impl SqliteStore {
    pub(crate) async fn submit_job(&self, s: Submission) -> Result<SubmitOutcome, StoreError> {
        self.writer.run(move |conn| submit(conn, &s)).await
    }

    pub(crate) async fn claim_next(&self, spec: ClaimSpec<'_>) -> Result<Claim, StoreError> {
        let owner = spec.owner.to_owned();
        let (lease, max_running, per_user) = (spec.lease, spec.max_running, spec.per_user);
        self.writer
            .run(move |conn| claim(conn, &owner, lease, max_running, per_user))
            .await
    }

    pub(crate) async fn record_intent(
        &self,
        id: JobId,
        owner: &str,
        lease: Duration,
    ) -> Result<DateTime<Utc>, StoreError> {
        let owner = owner.to_owned();
        self.writer
            .run(move |conn| {
                let now = Utc::now();
                let changed = conn
                    .prepare_cached(
                        "UPDATE generation_jobs SET create_intent_at = ?3, updated_at = ?3,
                            lease_until = ?4
                         WHERE id = ?1 AND status = 'running' AND owner = ?2
                           AND prediction_id IS NULL",
                    )?
                    .execute(params![
                        id.0,
                        owner,
                        millis(now),
                        millis(lease_end(now, lease))
                    ])?;
                if changed == 0 {
                    return Err(not_mine(conn, id, &owner, "create intent"));
                }
                // What was stored, at the stored precision.
                DateTime::from_timestamp_millis(millis(now)).ok_or(StoreError::Corrupt {
                    column: "generation_jobs.create_intent_at",
                    value: now.to_string(),
                })
            })
            .await
    }

    pub(crate) async fn record_prediction(
        &self,
        id: JobId,
        owner: &str,
        prediction_id: &str,
    ) -> Result<Job, StoreError> {
        let owner = owner.to_owned();
        let prediction_id = prediction_id.to_owned();
        self.writer
            .run(move |conn| {
                let sql = concat!(
                    "UPDATE generation_jobs SET prediction_id = ?3, updated_at = ?4
                     WHERE id = ?1 AND status = 'running' AND owner = ?2
                     RETURNING ",
                    job_columns!()
                );
                let found = {
                    let mut stmt = conn.prepare_cached(sql)?;
                    let mut rows =
                        stmt.query(params![id.0, owner, prediction_id, millis(Utc::now())])?;
                    rows.next()?.map(rows::job).transpose()?
                };
                found.ok_or_else(|| not_mine(conn, id, &owner, "prediction"))
            })
            .await
    }

    pub(crate) async fn finish_job(
        &self,
        id: JobId,
        owner: &str,
        outcome: JobOutcome,
    ) -> Result<Finished, StoreError> {
        let owner = owner.to_owned();
        self.writer
            .run(move |conn| finish(conn, id, &owner, &outcome))
            .await
    }

    pub(crate) async fn renew_leases(
        &self,
        owner: &str,
        jobs: &[JobId],
        lease: Duration,
    ) -> Result<u64, StoreError> {
        let owner = owner.to_owned();
        let ids = rows::job_ids_json(jobs);
        self.writer
            .run(move |conn| {
                let until = millis(lease_end(Utc::now(), lease));
                Ok(conn
                    .prepare_cached(
                        "UPDATE generation_jobs SET lease_until = ?2
                         WHERE owner = ?1 AND status = 'running'
                           AND id IN (SELECT value FROM json_each(?3))",
                    )?
                    .execute(params![owner, until, ids])? as u64)
            })
            .await
    }

    pub(crate) async fn release_leases(&self, owner: &str) -> Result<u64, StoreError> {
        let owner = owner.to_owned();
        self.writer
            .run(move |conn| {
                Ok(conn
                    .prepare_cached(
                        "UPDATE generation_jobs SET lease_until = ?2
                         WHERE owner = ?1 AND status = 'running'",
                    )?
                    .execute(params![owner, millis(Utc::now())])? as u64)
            })
            .await
    }

    pub(crate) async fn take_over(
        &self,
        owner: &str,
        lease: Duration,
        limit: u32,
        including_own: bool,
    ) -> Result<Vec<Job>, StoreError> {
        let owner = owner.to_owned();
        self.writer
            .run(move |conn| {
                let now = Utc::now();
                let sql = concat!(
                    "UPDATE generation_jobs SET
                        owner = ?1, lease_until = ?2, attempts = attempts + 1, updated_at = ?3
                     WHERE id IN (
                        SELECT id FROM generation_jobs
                        WHERE status = 'running'
                          AND (lease_until IS NULL OR lease_until <= ?3 OR (?5 AND owner = ?1))
                        ORDER BY id LIMIT ?4)
                     RETURNING ",
                    job_columns!()
                );
                let mut stmt = conn.prepare_cached(sql)?;
                let mut rows = stmt.query(params![
                    owner,
                    millis(lease_end(now, lease)),
                    millis(now),
                    limit,
                    including_own
                ])?;
                let mut jobs = Vec::new();
                while let Some(row) = rows.next()? {
                    jobs.push(rows::job(row)?);
                }
                jobs.sort_by_key(|j| j.id);
                Ok(jobs)
            })
            .await
    }

    pub(crate) async fn queued_jobs(&self, limit: u32) -> Result<Vec<QueuedJob>, StoreError> {
        self.readers
            .with(|conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT j.id, j.user_id, u.queue_turn FROM generation_jobs j
                     JOIN users u ON u.id = j.user_id
                     WHERE j.status = 'queued' ORDER BY j.id LIMIT ?1",
                )?;
                let mut rows = stmt.query([limit])?;
                let mut queued = Vec::new();
                while let Some(row) = rows.next()? {
                    queued.push(QueuedJob {
                        id: JobId(row.get(0)?),
                        user: UserId(row.get(1)?),
                        turn: row.get(2)?,
                    });
                }
                Ok(queued)
            })
            .await
    }

    pub(crate) async fn latest_queued_of(&self, user: UserId) -> Result<Option<JobId>, StoreError> {
        self.readers
            .with(|conn| {
                Ok(conn
                    .prepare_cached(
                        "SELECT id FROM generation_jobs WHERE user_id = ?1 AND status = 'queued'
                         ORDER BY id DESC LIMIT 1",
                    )?
                    .query_row([user.0], |r| r.get(0))
                    .optional()?
                    .map(JobId))
            })
            .await
    }

    pub(crate) async fn prediction_recorded(
        &self,
        prediction_id: &str,
    ) -> Result<bool, StoreError> {
        self.readers
            .with(|conn| {
                Ok(conn
                    .prepare_cached(
                        "SELECT 1 FROM generation_jobs WHERE prediction_id = ?1 LIMIT 1",
                    )?
                    .query_row([prediction_id], |_| Ok(()))
                    .optional()?
                    .is_some())
            })
            .await
    }

    pub(crate) async fn credit_audit(
        &self,
        ids: Range<i64>,
    ) -> Result<Vec<CreditAudit>, StoreError> {
        self.readers
            .with(|conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT u.id, u.credits,
                            u.initial_credits + u.credits_adjusted
                              - coalesce(sum(j.charged_credits), 0)
                              + coalesce(sum(j.refunded_credits), 0)
                              + (SELECT coalesce(sum(p.credits), 0) FROM star_payments p
                                 WHERE p.user_id = u.id AND p.refund_state IS NULL)
                     FROM users u LEFT JOIN generation_jobs j ON j.user_id = u.id
                     WHERE u.id >= ?1 AND u.id < ?2
                     GROUP BY u.id ORDER BY u.id",
                )?;
                let mut rows = stmt.query(params![ids.start, ids.end])?;
                let mut audits = Vec::new();
                while let Some(row) = rows.next()? {
                    audits.push(CreditAudit {
                        user: UserId(row.get(0)?),
                        credits: row.get(1)?,
                        expected: row.get(2)?,
                    });
                }
                Ok(audits)
            })
            .await
    }
}

fn count(conn: &Connection, name: &str) -> Result<i64, StoreError> {
    Ok(conn
        .prepare_cached("SELECT n FROM genbot_job_counts WHERE name = ?1")?
        .query_row([name], |r| r.get(0))?)
}

fn submit(conn: &Connection, s: &Submission) -> Result<SubmitOutcome, StoreError> {
    if let Some(update) = s.source_update {
        let sql = concat!(
            "SELECT ",
            job_columns!(),
            " FROM generation_jobs WHERE source_update = ?1"
        );
        let mut stmt = conn.prepare_cached(sql)?;
        let mut rows = stmt.query([update])?;
        if let Some(row) = rows.next()? {
            return Ok(SubmitOutcome::AlreadySubmitted {
                job: Box::new(rows::job(row)?),
            });
        }
    }
    if count(conn, "queued")? >= i64::from(s.queue_max) {
        return Ok(SubmitOutcome::QueueFull { max: s.queue_max });
    }
    let user = s.job.user_id;
    let day = date_text(s.quota_day);
    let now = millis(Utc::now());
    // Charging returns the user's queued jobs before this one (its own place in the line).
    let ahead_own: Option<i64> = conn
        .prepare_cached(
            "UPDATE users SET
                daily_count = CASE WHEN daily_reset_date = ?2 THEN daily_count + 1 ELSE 1 END,
                daily_reset_date = ?2,
                credits = credits - ?4,
                updated_at = ?5
             WHERE id = ?1 AND (daily_reset_date <> ?2 OR daily_count < ?3) AND credits >= ?4
               AND banned = 0
             RETURNING queued_jobs",
        )?
        .query_row(params![user.0, day, s.daily_limit, s.cost, now], |r| {
            r.get(0)
        })
        .optional()?;
    let Some(ahead_own) = ahead_own else {
        let found: Option<(i64, u32, String, bool)> = conn
            .prepare_cached(
                "SELECT credits, daily_count, daily_reset_date, banned <> 0 FROM users WHERE id = ?1",
            )?
            .query_row([user.0], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .optional()?;
        let (credits, used, used_day, banned) = found.ok_or(StoreError::UserNotFound(user))?;
        return Ok(if banned {
            SubmitOutcome::Banned
        } else if used_day == day && used >= s.daily_limit {
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
    let sql = concat!(
        "INSERT INTO generation_jobs
            (user_id, model, prompt, params, status, created_at, updated_at, charged_credits,
             quota_day, source_update, reply_chat, reply_message)
         VALUES (?1, ?2, ?3, ?4, 'queued', ?5, ?5, ?6, ?7, ?8, ?9, ?10)
         RETURNING ",
        job_columns!()
    );
    let job = {
        let mut stmt = conn.prepare_cached(sql)?;
        let mut rows = stmt.query(params![
            user.0,
            s.job.model,
            s.job.prompt,
            s.job.params.to_string(),
            now,
            s.cost,
            day,
            s.source_update,
            s.reply.map(|r| r.chat),
            s.reply.map(|r| r.message)
        ])?;
        match rows.next()? {
            Some(row) => rows::job(row)?,
            None => return Err(StoreError::UserNotFound(user)),
        }
    };
    let position = fair_position(
        ahead_own,
        count(conn, "queued")?,
        count(conn, "queued_users")?,
    );
    Ok(SubmitOutcome::Queued {
        job: Box::new(job),
        position,
    })
}

fn claim(
    conn: &Connection,
    owner: &str,
    lease: Duration,
    max_running: u32,
    per_user: u32,
) -> Result<Claim, StoreError> {
    if count(conn, "running")? >= i64::from(max_running) {
        return Ok(Claim::AtCapacity);
    }
    // The least recently served user with a queued job and room under the per-user limit,
    // then that user's oldest queued job: two index walks, whatever the queue's length.
    let next: Option<i64> = conn
        .prepare_cached(
            "SELECT (SELECT j.id FROM generation_jobs j
                     WHERE j.user_id = u.id AND j.status = 'queued' ORDER BY j.id LIMIT 1)
             FROM users u
             WHERE u.queued_jobs > 0 AND u.running_jobs < ?1
             ORDER BY u.queue_turn, u.id
             LIMIT 1",
        )?
        .query_row([per_user], |r| r.get(0))
        .optional()?
        .flatten();
    let Some(id) = next else {
        return Ok(Claim::Idle);
    };
    let now = Utc::now();
    let sql = concat!(
        "UPDATE generation_jobs SET
            status = 'running', attempts = attempts + 1, started_at = ?2, updated_at = ?2,
            owner = ?3, lease_until = ?4, create_intent_at = NULL
         WHERE id = ?1
         RETURNING ",
        job_columns!()
    );
    let claimed = {
        let mut stmt = conn.prepare_cached(sql)?;
        let mut rows = stmt.query(params![
            id,
            millis(now),
            owner,
            millis(lease_end(now, lease))
        ])?;
        match rows.next()? {
            Some(row) => rows::job(row)?,
            None => return Ok(Claim::Idle),
        }
    };
    conn.prepare_cached("UPDATE genbot_counters SET value = value + 1 WHERE name = 'queue_turn'")?
        .execute([])?;
    conn.prepare_cached(
        "UPDATE users SET queue_turn = (SELECT value FROM genbot_counters WHERE name = 'queue_turn')
         WHERE id = ?1",
    )?
    .execute([claimed.user_id.0])?;
    Ok(Claim::Claimed(Box::new(claimed)))
}

fn finish(
    conn: &Connection,
    id: JobId,
    owner: &str,
    outcome: &JobOutcome,
) -> Result<Finished, StoreError> {
    let (status, result_url, error) = match outcome {
        JobOutcome::Succeeded { result_url, .. } => {
            (JobStatus::Succeeded, Some(result_url.as_str()), None)
        }
        JobOutcome::Failed { error } => (JobStatus::Failed, None, Some(error.as_str())),
        JobOutcome::Canceled => (JobStatus::Canceled, None, None),
    };
    let now = millis(Utc::now());
    let sql = concat!(
        "UPDATE generation_jobs SET
            status = ?2,
            result_url = coalesce(?3, result_url),
            error = coalesce(?4, error),
            finished_at = ?6, updated_at = ?6, lease_until = NULL,
            refunded_credits = CASE WHEN ?2 = 'succeeded' THEN 0 ELSE charged_credits END
         WHERE id = ?1 AND CASE WHEN ?2 = 'canceled' THEN status = 'queued'
                                ELSE status = 'running' AND owner = ?5 END
         RETURNING ",
        job_columns!()
    );
    let finished = {
        let mut stmt = conn.prepare_cached(sql)?;
        let mut rows = stmt.query(params![
            id.0,
            status.as_str(),
            result_url,
            error,
            owner,
            now
        ])?;
        rows.next()?.map(rows::job).transpose()?
    };
    let Some(finished) = finished else {
        return Err(not_mine(conn, id, owner, status.as_str()));
    };
    let refunded = finished.refunded_credits;
    if let JobOutcome::Succeeded {
        image: Some(image), ..
    } = outcome
    {
        conn.prepare_cached(
            "INSERT INTO job_images (job_id, file_name, bytes, stored_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (job_id) DO NOTHING",
        )?
        .execute(params![id.0, image.file_name, image.bytes, now])?;
    }
    if status != JobStatus::Succeeded {
        give_back(
            conn,
            finished.user_id,
            refunded,
            finished.quota_day.map(date_text),
            now,
        )?;
    }
    Ok(Finished {
        job: finished,
        refunded,
    })
}

/// Gives a refunded job's credits back to its user, and its place in the day's quota when
/// that day (`quota_day`, as stored) is still the user's counted one.
pub(super) fn give_back(
    conn: &Connection,
    user: UserId,
    credits: i64,
    quota_day: Option<String>,
    now: i64,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE users SET
            credits = credits + ?2,
            daily_count = CASE WHEN daily_reset_date = ?3 AND daily_count > 0
                               THEN daily_count - 1 ELSE daily_count END,
            updated_at = ?4
         WHERE id = ?1",
    )?
    .execute(params![user.0, credits, quota_day, now])?;
    Ok(())
}

/// Why a guarded update of `id` by `owner` matched nothing.
fn not_mine(conn: &Connection, id: JobId, owner: &str, attempted: &'static str) -> StoreError {
    match select_job(conn, id) {
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
