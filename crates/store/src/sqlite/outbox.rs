//! The delivery outbox on SQLite: claims and outcomes run on the writer, one at a time.

use std::time::Duration;

use chrono::Utc;
use rusqlite::{params, OptionalExtension, Row};

use super::rows::{self, millis};
use super::SqliteStore;
use crate::lifecycle::lease_end;
use crate::{
    Delivery, DeliveryOutcome, JobId, JobImage, JobStatus, OutboxBacklog, ReplyTarget, StoreError,
    UserId,
};

impl SqliteStore {
    pub(crate) async fn claim_deliveries(
        &self,
        owner: &str,
        lease: Duration,
        limit: u32,
        including_own: bool,
    ) -> Result<Vec<Delivery>, StoreError> {
        let owner = owner.to_owned();
        self.writer
            .run(move |conn| {
                let now = Utc::now();
                let mut stmt = conn.prepare_cached(
                    "UPDATE generation_jobs SET delivery_owner = ?1, delivery_due = ?2
                     WHERE id IN (
                        SELECT id FROM generation_jobs
                        WHERE delivered_at IS NULL AND status IN ('succeeded', 'failed')
                          AND (delivery_due IS NULL OR delivery_due <= ?3
                               OR (?5 AND delivery_owner = ?1))
                        ORDER BY id LIMIT ?4)
                     RETURNING id, user_id, status, prompt, result_url, error,
                               delivery_attempts, telegram_file_id, reply_chat, reply_message,
                               EXISTS (SELECT 1 FROM job_images
                                       WHERE job_images.job_id = generation_jobs.id),
                               EXISTS (SELECT 1 FROM job_documents
                                       WHERE job_documents.job_id = generation_jobs.id)",
                )?;
                let mut rows = stmt.query(params![
                    owner,
                    millis(lease_end(now, lease)),
                    millis(now),
                    limit,
                    including_own
                ])?;
                let mut claimed = Vec::new();
                while let Some(row) = rows.next()? {
                    claimed.push(delivery(row)?);
                }
                claimed.sort_by_key(|d| d.job);
                Ok(claimed)
            })
            .await
    }

    pub(crate) async fn finish_delivery(
        &self,
        job: JobId,
        owner: &str,
        outcome: DeliveryOutcome,
    ) -> Result<bool, StoreError> {
        let owner = owner.to_owned();
        self.writer
            .run(move |conn| {
                let now = Utc::now();
                let gave_up = matches!(
                    outcome,
                    DeliveryOutcome::GaveUp { .. } | DeliveryOutcome::Undeliverable { .. }
                );
                let changed = match outcome {
                    DeliveryOutcome::Delivered { file_id } => conn
                        .prepare_cached(
                            "UPDATE generation_jobs SET delivered_at = ?3,
                                telegram_file_id = coalesce(?4, telegram_file_id)
                             WHERE id = ?1 AND delivery_owner = ?2 AND delivered_at IS NULL",
                        )?
                        .execute(params![job.0, owner, millis(now), file_id])?,
                    DeliveryOutcome::Retry { error, after } => conn
                        .prepare_cached(
                            "UPDATE generation_jobs SET delivery_attempts = delivery_attempts + 1,
                                delivery_error = ?3, delivery_due = ?4
                             WHERE id = ?1 AND delivery_owner = ?2 AND delivered_at IS NULL",
                        )?
                        .execute(params![job.0, owner, error, millis(lease_end(now, after))])?,
                    DeliveryOutcome::Deferred { after } => conn
                        .prepare_cached(
                            "UPDATE generation_jobs SET delivery_due = ?3
                             WHERE id = ?1 AND delivery_owner = ?2 AND delivered_at IS NULL",
                        )?
                        .execute(params![job.0, owner, millis(lease_end(now, after))])?,
                    DeliveryOutcome::GaveUp { error } => conn
                        .prepare_cached(
                            "UPDATE generation_jobs SET delivered_at = ?3, delivery_error = ?4,
                                delivery_attempts = delivery_attempts + 1
                             WHERE id = ?1 AND delivery_owner = ?2 AND delivered_at IS NULL",
                        )?
                        .execute(params![job.0, owner, millis(now), error])?,
                    DeliveryOutcome::Undeliverable { error } => {
                        undeliverable(conn, job, &owner, &error, millis(now))?
                    }
                };
                // Never to be delivered: its bytes are no longer needed. A delivered image's
                // are kept a while for "as file" (`prune_job_images`).
                if changed == 1 && gave_up {
                    conn.prepare_cached("DELETE FROM job_images WHERE job_id = ?1")?
                        .execute(params![job.0])?;
                }
                Ok(changed == 1)
            })
            .await
    }

    pub(crate) async fn renew_delivery_leases(
        &self,
        owner: &str,
        jobs: &[JobId],
        lease: Duration,
    ) -> Result<u64, StoreError> {
        let owner = owner.to_owned();
        let ids = rows::job_ids_json(jobs);
        self.writer
            .run(move |conn| {
                Ok(conn
                    .prepare_cached(
                        "UPDATE generation_jobs SET delivery_due = ?2
                         WHERE delivery_owner = ?1 AND delivered_at IS NULL
                           AND id IN (SELECT value FROM json_each(?3))",
                    )?
                    .execute(params![owner, millis(lease_end(Utc::now(), lease)), ids])?
                    as u64)
            })
            .await
    }

    pub(crate) async fn job_image(&self, job: JobId) -> Result<Option<JobImage>, StoreError> {
        self.readers
            .with(move |conn| {
                let mut stmt = conn
                    .prepare_cached("SELECT file_name, bytes FROM job_images WHERE job_id = ?1")?;
                let mut rows = stmt.query(params![job.0])?;
                Ok(match rows.next()? {
                    Some(row) => Some(JobImage {
                        file_name: row.get(0)?,
                        bytes: row.get(1)?,
                    }),
                    None => None,
                })
            })
            .await
    }

    pub(crate) async fn mark_unblocked(&self, user: UserId) -> Result<(), StoreError> {
        self.writer
            .run(move |conn| {
                conn.prepare_cached("UPDATE users SET blocked_at = NULL WHERE id = ?1")?
                    .execute(params![user.0])?;
                Ok(())
            })
            .await
    }

    pub(crate) async fn mark_blocked(&self, user: UserId) -> Result<(), StoreError> {
        self.writer
            .run(move |conn| {
                conn.prepare_cached(
                    "UPDATE users SET blocked_at = coalesce(blocked_at, ?2) WHERE id = ?1",
                )?
                .execute(params![user.0, millis(Utc::now())])?;
                Ok(())
            })
            .await
    }

    pub(crate) async fn outbox_backlog(&self) -> Result<OutboxBacklog, StoreError> {
        self.readers
            .with(|conn| {
                let (undelivered, oldest): (u64, Option<i64>) = conn
                    .prepare_cached(
                        "SELECT count(*), min(coalesce(finished_at, updated_at))
                         FROM generation_jobs
                         WHERE delivered_at IS NULL AND status IN ('succeeded', 'failed')",
                    )?
                    .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
                let oldest_seconds =
                    oldest.map_or(0.0, |at| ((millis(Utc::now()) - at).max(0) as f64) / 1000.0);
                Ok(OutboxBacklog {
                    undelivered,
                    oldest_seconds,
                })
            })
            .await
    }
}

fn delivery(row: &Row<'_>) -> Result<Delivery, StoreError> {
    let status: String = row.get(2)?;
    Ok(Delivery {
        job: JobId(row.get(0)?),
        user: UserId(row.get(1)?),
        status: JobStatus::parse(&status).ok_or(StoreError::Corrupt {
            column: "generation_jobs.status",
            value: status.clone(),
        })?,
        prompt: row.get(3)?,
        result_url: row.get(4)?,
        error: row.get(5)?,
        attempts: row.get(6)?,
        file_id: row.get(7)?,
        reply: match (row.get(8)?, row.get(9)?) {
            (Some(chat), Some(message)) => Some(ReplyTarget { chat, message }),
            _ => None,
        },
        has_image: row.get(10)?,
        sent_as_document: row.get(11)?,
    })
}

/// A succeeded job whose image can never reach its user becomes a failed one, refunded, with
/// its notice next ([`DeliveryOutcome::Undeliverable`]). Returns the rows changed: 0 when
/// it was recorded already (or is not this owner's), so it is refunded once.
fn undeliverable(
    conn: &rusqlite::Connection,
    job: JobId,
    owner: &str,
    error: &str,
    now: i64,
) -> Result<usize, StoreError> {
    let refund = conn
        .prepare_cached(
            "UPDATE generation_jobs SET status = 'failed', error = ?3, delivery_error = ?3,
                refunded_credits = charged_credits, delivery_attempts = 0, updated_at = ?4
             WHERE id = ?1 AND delivery_owner = ?2 AND delivered_at IS NULL
               AND status = 'succeeded'
             RETURNING user_id, refunded_credits, quota_day",
        )?
        .query_row(params![job.0, owner, error, now], |row| {
            Ok((
                UserId(row.get(0)?),
                row.get::<_, i64>(1)?,
                row.get::<_, Option<String>>(2)?,
            ))
        })
        .optional()?;
    let Some((user, credits, quota_day)) = refund else {
        return Ok(0);
    };
    super::lifecycle::give_back(conn, user, credits, quota_day, now)?;
    Ok(1)
}
