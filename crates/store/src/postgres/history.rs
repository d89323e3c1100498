//! Delivered images on PostgreSQL.

use std::time::Duration;

use sqlx::Row;

use super::PgStore;
use crate::{HistoryItem, JobId, StoreError, UserId};

impl PgStore {
    pub(crate) async fn history(
        &self,
        user: UserId,
        before: Option<JobId>,
        limit: u32,
    ) -> Result<Vec<HistoryItem>, StoreError> {
        let mut conn = self.connection().await?;
        sqlx::query(
            "SELECT j.id, j.model, j.prompt, j.params,
                    coalesce(j.telegram_file_id, d.file_id), j.created_at,
                    j.telegram_file_id IS NULL
             FROM generation_jobs j LEFT JOIN job_documents d ON d.job_id = j.id
             WHERE j.user_id = $1 AND j.status = 'succeeded' AND j.id < $2
               AND (j.telegram_file_id IS NOT NULL
                    OR (j.delivered_at IS NOT NULL AND d.file_id IS NOT NULL))
             ORDER BY j.id DESC LIMIT $3",
        )
        .bind(user.0)
        .bind(before.map_or(i64::MAX, |j| j.0))
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|row| {
            Ok(HistoryItem {
                job: JobId(row.try_get(0)?),
                model: row.try_get(1)?,
                prompt: row.try_get(2)?,
                params: row.try_get(3)?,
                file_id: row.try_get(4)?,
                created_at: row.try_get(5)?,
                as_document: row.try_get(6)?,
            })
        })
        .collect()
    }

    pub(crate) async fn prune_job_images(&self, older_than: Duration) -> Result<u64, StoreError> {
        let mut conn = self.connection().await?;
        Ok(sqlx::query(
            "DELETE FROM job_images WHERE stored_at <= now() - make_interval(secs => $1)
               AND job_id IN (SELECT id FROM generation_jobs WHERE delivered_at IS NOT NULL)",
        )
        .bind(older_than.as_secs_f64())
        .execute(&mut *conn)
        .await?
        .rows_affected())
    }

    pub(crate) async fn job_document(&self, job: JobId) -> Result<Option<String>, StoreError> {
        let mut conn = self.connection().await?;
        let row = sqlx::query("SELECT file_id FROM job_documents WHERE job_id = $1")
            .bind(job.0)
            .fetch_optional(&mut *conn)
            .await?;
        Ok(match row {
            Some(row) => Some(row.try_get(0)?),
            None => None,
        })
    }

    pub(crate) async fn keep_job_document(
        &self,
        job: JobId,
        file_id: &str,
    ) -> Result<(), StoreError> {
        let mut conn = self.connection().await?;
        sqlx::query(
            "INSERT INTO job_documents (job_id, file_id) VALUES ($1, $2)
             ON CONFLICT (job_id) DO UPDATE SET file_id = excluded.file_id",
        )
        .bind(job.0)
        .bind(file_id)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}
