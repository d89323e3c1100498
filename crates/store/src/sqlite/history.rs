//! Delivered images on SQLite.

use std::time::Duration;

use chrono::Utc;
use rusqlite::{params, OptionalExtension};

use super::rows::{json, millis, timestamp};
use super::SqliteStore;
use crate::{HistoryItem, JobId, StoreError, UserId};

impl SqliteStore {
    pub(crate) async fn history(
        &self,
        user: UserId,
        before: Option<JobId>,
        limit: u32,
    ) -> Result<Vec<HistoryItem>, StoreError> {
        self.readers
            .with(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT j.id, j.model, j.prompt, j.params,
                            coalesce(j.telegram_file_id, d.file_id), j.created_at,
                            j.telegram_file_id IS NULL
                     FROM generation_jobs j LEFT JOIN job_documents d ON d.job_id = j.id
                     WHERE j.user_id = ?1 AND j.status = 'succeeded' AND j.id < ?2
                       AND (j.telegram_file_id IS NOT NULL
                            OR (j.delivered_at IS NOT NULL AND d.file_id IS NOT NULL))
                     ORDER BY j.id DESC LIMIT ?3",
                )?;
                let mut rows = stmt.query(params![
                    user.0,
                    before.map_or(i64::MAX, |j| j.0),
                    i64::from(limit)
                ])?;
                let mut items = Vec::new();
                while let Some(row) = rows.next()? {
                    items.push(HistoryItem {
                        job: JobId(row.get(0)?),
                        model: row.get(1)?,
                        prompt: row.get(2)?,
                        params: json("generation_jobs.params", row.get(3)?)?,
                        file_id: row.get(4)?,
                        created_at: timestamp("generation_jobs.created_at", row.get(5)?)?,
                        as_document: row.get(6)?,
                    });
                }
                Ok(items)
            })
            .await
    }

    pub(crate) async fn prune_job_images(&self, older_than: Duration) -> Result<u64, StoreError> {
        let cutoff =
            Utc::now() - chrono::Duration::from_std(older_than).unwrap_or(chrono::Duration::MAX);
        self.writer
            .run(move |conn| {
                Ok(conn
                    .prepare_cached(
                        "DELETE FROM job_images WHERE stored_at <= ?1 AND job_id IN
                            (SELECT id FROM generation_jobs WHERE delivered_at IS NOT NULL)",
                    )?
                    .execute(params![millis(cutoff)])? as u64)
            })
            .await
    }

    pub(crate) async fn job_document(&self, job: JobId) -> Result<Option<String>, StoreError> {
        self.readers
            .with(move |conn| {
                Ok(conn
                    .prepare_cached("SELECT file_id FROM job_documents WHERE job_id = ?1")?
                    .query_row(params![job.0], |row| row.get(0))
                    .optional()?)
            })
            .await
    }

    pub(crate) async fn keep_job_document(
        &self,
        job: JobId,
        file_id: &str,
    ) -> Result<(), StoreError> {
        let file_id = file_id.to_owned();
        self.writer
            .run(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO job_documents (job_id, file_id) VALUES (?1, ?2)
                     ON CONFLICT (job_id) DO UPDATE SET file_id = excluded.file_id",
                )?
                .execute(params![job.0, file_id])?;
                Ok(())
            })
            .await
    }
}
