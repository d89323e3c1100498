//! The delivery outbox on PostgreSQL: claims skip rows another replica is claiming.

use std::time::Duration;

use sqlx::postgres::PgRow;
use sqlx::Row;

use super::PgStore;
use crate::{
    Delivery, DeliveryOutcome, JobId, JobImage, JobStatus, OutboxBacklog, ReplyTarget, StoreError,
    UserId,
};

impl PgStore {
    pub(crate) async fn claim_deliveries(
        &self,
        owner: &str,
        lease: Duration,
        limit: u32,
        including_own: bool,
    ) -> Result<Vec<Delivery>, StoreError> {
        let mut conn = self.connection().await?;
        let mut claimed = sqlx::query(
            "UPDATE generation_jobs SET delivery_owner = $1,
                delivery_due = now() + make_interval(secs => $2)
             WHERE id IN (
                SELECT id FROM generation_jobs
                WHERE delivered_at IS NULL AND status IN ('succeeded', 'failed')
                  AND (delivery_due IS NULL OR delivery_due <= now()
                       OR ($4 AND delivery_owner = $1))
                ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED)
             RETURNING id, user_id, status, prompt, result_url, error,
                       delivery_attempts, telegram_file_id, reply_chat, reply_message,
                       EXISTS (SELECT 1 FROM job_images
                               WHERE job_images.job_id = generation_jobs.id) AS has_image,
                       EXISTS (SELECT 1 FROM job_documents
                               WHERE job_documents.job_id = generation_jobs.id) AS sent_as_document",
        )
        .bind(owner)
        .bind(lease.as_secs_f64())
        .bind(i64::from(limit))
        .bind(including_own)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(delivery)
        .collect::<Result<Vec<_>, _>>()?;
        claimed.sort_by_key(|d| d.job);
        Ok(claimed)
    }

    pub(crate) async fn finish_delivery(
        &self,
        job: JobId,
        owner: &str,
        outcome: DeliveryOutcome,
    ) -> Result<bool, StoreError> {
        let mut conn = self.connection().await?;
        let query = match &outcome {
            DeliveryOutcome::Undeliverable { error } => {
                return undeliverable(&mut conn, job, owner, error).await;
            }
            DeliveryOutcome::Delivered { file_id } => sqlx::query(
                "UPDATE generation_jobs SET delivered_at = now(),
                    telegram_file_id = coalesce($3, telegram_file_id)
                 WHERE id = $1 AND delivery_owner = $2 AND delivered_at IS NULL",
            )
            .bind(job.0)
            .bind(owner)
            .bind(file_id.as_deref()),
            DeliveryOutcome::Retry { error, after } => sqlx::query(
                "UPDATE generation_jobs SET delivery_attempts = delivery_attempts + 1,
                    delivery_error = $3, delivery_due = now() + make_interval(secs => $4)
                 WHERE id = $1 AND delivery_owner = $2 AND delivered_at IS NULL",
            )
            .bind(job.0)
            .bind(owner)
            .bind(error.as_str())
            .bind(after.as_secs_f64()),
            DeliveryOutcome::Deferred { after } => sqlx::query(
                "UPDATE generation_jobs SET delivery_due = now() + make_interval(secs => $3)
                 WHERE id = $1 AND delivery_owner = $2 AND delivered_at IS NULL",
            )
            .bind(job.0)
            .bind(owner)
            .bind(after.as_secs_f64()),
            DeliveryOutcome::GaveUp { error } => sqlx::query(
                "UPDATE generation_jobs SET delivered_at = now(), delivery_error = $3,
                    delivery_attempts = delivery_attempts + 1
                 WHERE id = $1 AND delivery_owner = $2 AND delivered_at IS NULL",
            )
            .bind(job.0)
            .bind(owner)
            .bind(error.as_str()),
        };
        let changed = query.execute(&mut *conn).await?.rows_affected() == 1;
        // Never to be delivered: its bytes are no longer needed. A delivered image's are kept
        // a while for "as file" (`prune_job_images`).
        if changed && matches!(outcome, DeliveryOutcome::GaveUp { .. }) {
            sqlx::query("DELETE FROM job_images WHERE job_id = $1")
                .bind(job.0)
                .execute(&mut *conn)
                .await?;
        }
        Ok(changed)
    }

    pub(crate) async fn job_image(&self, job: JobId) -> Result<Option<JobImage>, StoreError> {
        let mut conn = self.connection().await?;
        let row = sqlx::query("SELECT file_name, bytes FROM job_images WHERE job_id = $1")
            .bind(job.0)
            .fetch_optional(&mut *conn)
            .await?;
        Ok(match row {
            Some(row) => Some(JobImage {
                file_name: row.try_get(0)?,
                bytes: row.try_get(1)?,
            }),
            None => None,
        })
    }

    pub(crate) async fn renew_delivery_leases(
        &self,
        owner: &str,
        jobs: &[JobId],
        lease: Duration,
    ) -> Result<u64, StoreError> {
        let ids: Vec<i64> = jobs.iter().map(|j| j.0).collect();
        let mut conn = self.connection().await?;
        Ok(sqlx::query(
            "UPDATE generation_jobs SET delivery_due = now() + make_interval(secs => $2)
             WHERE delivery_owner = $1 AND delivered_at IS NULL AND id = ANY($3)",
        )
        .bind(owner)
        .bind(lease.as_secs_f64())
        .bind(ids)
        .execute(&mut *conn)
        .await?
        .rows_affected())
    }

    pub(crate) async fn mark_unblocked(&self, user: UserId) -> Result<(), StoreError> {
        let mut conn = self.connection().await?;
        sqlx::query("UPDATE users SET blocked_at = NULL WHERE id = $1")
            .bind(user.0)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    pub(crate) async fn mark_blocked(&self, user: UserId) -> Result<(), StoreError> {
        let mut conn = self.connection().await?;
        sqlx::query("UPDATE users SET blocked_at = coalesce(blocked_at, now()) WHERE id = $1")
            .bind(user.0)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    pub(crate) async fn outbox_backlog(&self) -> Result<OutboxBacklog, StoreError> {
        let mut conn = self.connection().await?;
        let row = sqlx::query(
            "SELECT count(*),
                    coalesce(extract(epoch FROM now() - min(coalesce(finished_at, updated_at))), 0)::FLOAT8
             FROM generation_jobs
             WHERE delivered_at IS NULL AND status IN ('succeeded', 'failed')",
        )
        .fetch_one(&mut *conn)
        .await?;
        let undelivered: i64 = row.try_get(0)?;
        let oldest_seconds: f64 = row.try_get(1)?;
        Ok(OutboxBacklog {
            undelivered: undelivered.max(0) as u64,
            oldest_seconds: oldest_seconds.max(0.0),
        })
    }
}

fn delivery(row: &PgRow) -> Result<Delivery, StoreError> {
    let status: String = row.try_get(2)?;
    let attempts: i32 = row.try_get(6)?;
    Ok(Delivery {
        job: JobId(row.try_get(0)?),
        user: UserId(row.try_get(1)?),
        status: JobStatus::parse(&status).ok_or(StoreError::Corrupt {
            column: "generation_jobs.status",
            value: status.clone(),
        })?,
        prompt: row.try_get(3)?,
        result_url: row.try_get(4)?,
        error: row.try_get(5)?,
        attempts: attempts.max(0) as u32,
        file_id: row.try_get(7)?,
        reply: match (row.try_get(8)?, row.try_get(9)?) {
            (Some(chat), Some(message)) => Some(ReplyTarget { chat, message }),
            _ => None,
        },
        has_image: row.try_get(10)?,
        sent_as_document: row.try_get(11)?,
    })
}

/// A succeeded job whose image can never reach its user becomes a failed one, refunded, with
/// its notice next ([`DeliveryOutcome::Undeliverable`]), in one transaction. False when it
/// was recorded already (or is not this owner's), so it is refunded once.
async fn undeliverable(
    conn: &mut sqlx::PgConnection,
    job: JobId,
    owner: &str,
    error: &str,
) -> Result<bool, StoreError> {
    use sqlx::Connection;
    let mut tx = conn.begin().await?;
    let refund = sqlx::query(
        "UPDATE generation_jobs SET status = 'failed', error = $3, delivery_error = $3,
            refunded_credits = charged_credits, delivery_attempts = 0, updated_at = now()
         WHERE id = $1 AND delivery_owner = $2 AND delivered_at IS NULL
           AND status = 'succeeded'
         RETURNING user_id, refunded_credits, quota_day",
    )
    .bind(job.0)
    .bind(owner)
    .bind(error)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = refund else {
        return Ok(false);
    };
    let user = UserId(row.try_get(0)?);
    super::lifecycle::give_back(&mut tx, user, row.try_get(1)?, row.try_get(2)?).await?;
    // Its bytes are no longer needed: it will never be sent.
    sqlx::query("DELETE FROM job_images WHERE job_id = $1")
        .bind(job.0)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(true)
}
