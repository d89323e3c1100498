//! The update inbox on PostgreSQL.

use std::time::Duration;

use sqlx::Row;

use super::PgStore;
use crate::{DeadLetter, InboxUpdate, StoreError};

/// The `attempts` column (an INTEGER) as a count.
fn attempts(column: i32) -> u32 {
    u32::try_from(column).unwrap_or_default()
}

impl PgStore {
    pub(crate) async fn record_updates(
        &self,
        owner: &str,
        updates: Vec<InboxUpdate>,
    ) -> Result<Vec<i64>, StoreError> {
        let (ids, payloads): (Vec<i64>, Vec<String>) =
            updates.into_iter().map(|u| (u.id, u.payload)).unzip();
        let mut conn = self.connection().await?;
        let rows = sqlx::query(
            "INSERT INTO telegram_updates (update_id, payload, owner)
             SELECT id, payload, $3 FROM unnest($1::bigint[], $2::text[]) AS u(id, payload)
             ON CONFLICT (update_id) DO NOTHING
             RETURNING update_id",
        )
        .bind(&ids)
        .bind(&payloads)
        .bind(owner)
        .fetch_all(&mut *conn)
        .await?;
        rows.iter()
            .map(|row| row.try_get(0).map_err(StoreError::from))
            .collect()
    }

    pub(crate) async fn mark_updates_handled(&self, ids: &[i64]) -> Result<u64, StoreError> {
        let mut conn = self.connection().await?;
        let done = sqlx::query(
            "UPDATE telegram_updates SET handled_at = now()
             WHERE handled_at IS NULL AND update_id = ANY($1)",
        )
        .bind(ids)
        .execute(&mut *conn)
        .await?;
        Ok(done.rows_affected())
    }

    pub(crate) async fn renew_unhandled_updates(&self, owner: &str) -> Result<u64, StoreError> {
        let mut conn = self.connection().await?;
        let done = sqlx::query(
            "UPDATE telegram_updates SET received_at = now()
             WHERE handled_at IS NULL AND dead_at IS NULL AND owner = $1",
        )
        .bind(owner)
        .execute(&mut *conn)
        .await?;
        Ok(done.rows_affected())
    }

    pub(crate) async fn claim_unhandled_updates(
        &self,
        owner: &str,
        mine: bool,
        stale_after: Duration,
        limit: u32,
    ) -> Result<Vec<InboxUpdate>, StoreError> {
        let mut conn = self.connection().await?;
        let rows = sqlx::query(
            "UPDATE telegram_updates
             SET owner = $1, received_at = now()
             WHERE update_id IN (
                SELECT update_id FROM telegram_updates
                WHERE handled_at IS NULL AND dead_at IS NULL
                  AND (($4 AND owner = $1)
                       OR (owner <> $1 AND received_at <= now() - make_interval(secs => $2)))
                ORDER BY update_id LIMIT $3 FOR UPDATE SKIP LOCKED)
             RETURNING update_id, payload, attempts",
        )
        .bind(owner)
        .bind(stale_after.as_secs_f64())
        .bind(i64::from(limit))
        .bind(mine)
        .fetch_all(&mut *conn)
        .await?;
        let mut claimed = rows
            .iter()
            .map(|row| {
                Ok(InboxUpdate {
                    id: row.try_get(0)?,
                    payload: row.try_get(1)?,
                    attempts: attempts(row.try_get(2)?),
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        claimed.sort_by_key(|u| u.id);
        Ok(claimed)
    }

    pub(crate) async fn note_update_failure(
        &self,
        id: i64,
        error: &str,
    ) -> Result<u32, StoreError> {
        let mut conn = self.connection().await?;
        let row = sqlx::query(
            "UPDATE telegram_updates SET attempts = attempts + 1, last_error = $2
             WHERE update_id = $1 RETURNING attempts",
        )
        .bind(id)
        .bind(error)
        .fetch_optional(&mut *conn)
        .await?;
        Ok(match row {
            Some(row) => attempts(row.try_get(0)?),
            None => 0,
        })
    }

    pub(crate) async fn dead_letter_update(
        &self,
        id: i64,
        error: &str,
    ) -> Result<bool, StoreError> {
        let mut conn = self.connection().await?;
        let done = sqlx::query(
            "UPDATE telegram_updates SET dead_at = now(), last_error = $2
             WHERE update_id = $1 AND handled_at IS NULL AND dead_at IS NULL",
        )
        .bind(id)
        .bind(error)
        .execute(&mut *conn)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(crate) async fn dead_letters(&self, limit: u32) -> Result<Vec<DeadLetter>, StoreError> {
        let mut conn = self.connection().await?;
        let rows = sqlx::query(
            "SELECT update_id, attempts, coalesce(last_error, ''), dead_at, payload
             FROM telegram_updates WHERE dead_at IS NOT NULL
             ORDER BY dead_at DESC, update_id DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(DeadLetter {
                    id: row.try_get(0)?,
                    attempts: attempts(row.try_get(1)?),
                    error: row.try_get(2)?,
                    dead_at: row.try_get(3)?,
                    payload: row.try_get(4)?,
                })
            })
            .collect()
    }

    pub(crate) async fn count_dead_letters(&self) -> Result<u64, StoreError> {
        let mut conn = self.connection().await?;
        let n: i64 = sqlx::query("SELECT count(*) FROM telegram_updates WHERE dead_at IS NOT NULL")
            .fetch_one(&mut *conn)
            .await?
            .try_get(0)?;
        Ok(u64::try_from(n).unwrap_or_default())
    }

    pub(crate) async fn retry_dead_letter(&self, id: i64) -> Result<bool, StoreError> {
        let mut conn = self.connection().await?;
        // No replica's, received long ago: the next sweep of any replica takes it.
        let done = sqlx::query(
            "UPDATE telegram_updates
             SET dead_at = NULL, attempts = 0, owner = '', received_at = 'epoch'
             WHERE update_id = $1 AND dead_at IS NOT NULL",
        )
        .bind(id)
        .execute(&mut *conn)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(crate) async fn prune_handled_updates(
        &self,
        older_than: Duration,
    ) -> Result<u64, StoreError> {
        let mut conn = self.connection().await?;
        let done = sqlx::query(
            "DELETE FROM telegram_updates
             WHERE handled_at IS NOT NULL AND handled_at <= now() - make_interval(secs => $1)",
        )
        .bind(older_than.as_secs_f64())
        .execute(&mut *conn)
        .await?;
        Ok(done.rows_affected())
    }
}
