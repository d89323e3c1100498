//! The update inbox on PostgreSQL.

use std::time::Duration;

use sqlx::Row;

use super::PgStore;
use crate::{InboxUpdate, StoreError};

impl PgStore {
    pub(crate) async fn record_update(
        &self,
        owner: &str,
        id: i64,
        payload: String,
    ) -> Result<bool, StoreError> {
        let mut conn = self.connection().await?;
        let done = sqlx::query(
            "INSERT INTO telegram_updates (update_id, payload, owner) VALUES ($1, $2, $3)
             ON CONFLICT (update_id) DO NOTHING",
        )
        .bind(id)
        .bind(payload)
        .bind(owner)
        .execute(&mut *conn)
        .await?;
        Ok(done.rows_affected() == 1)
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

    pub(crate) async fn claim_unhandled_updates(
        &self,
        owner: &str,
        stale_after: Duration,
        limit: u32,
    ) -> Result<Vec<InboxUpdate>, StoreError> {
        let mut conn = self.connection().await?;
        let rows = sqlx::query(
            "UPDATE telegram_updates SET owner = $1
             WHERE update_id IN (
                SELECT update_id FROM telegram_updates
                WHERE handled_at IS NULL
                  AND (owner = $1 OR received_at <= now() - make_interval(secs => $2))
                ORDER BY update_id LIMIT $3 FOR UPDATE SKIP LOCKED)
             RETURNING update_id, payload",
        )
        .bind(owner)
        .bind(stale_after.as_secs_f64())
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await?;
        let mut claimed = rows
            .iter()
            .map(|row| {
                Ok(InboxUpdate {
                    id: row.try_get(0)?,
                    payload: row.try_get(1)?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        claimed.sort_by_key(|u| u.id);
        Ok(claimed)
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
