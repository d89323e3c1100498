//! The update inbox on PostgreSQL.

use std::time::Duration;

use sqlx::Row;

use super::PgStore;
use crate::{InboxUpdate, StoreError};

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
             WHERE handled_at IS NULL AND owner = $1",
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
            "UPDATE telegram_updates SET owner = $1, received_at = now()
             WHERE update_id IN (
                SELECT update_id FROM telegram_updates
                WHERE handled_at IS NULL
                  AND (($4 AND owner = $1)
                       OR (owner <> $1 AND received_at <= now() - make_interval(secs => $2)))
                ORDER BY update_id LIMIT $3 FOR UPDATE SKIP LOCKED)
             RETURNING update_id, payload",
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
