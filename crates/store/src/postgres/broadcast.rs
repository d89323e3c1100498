//! Broadcasts on PostgreSQL.

use std::time::Duration;

use sqlx::postgres::PgRow;
use sqlx::Row;

use super::PgStore;
use crate::columns::broadcast_columns;
use crate::{Broadcast, BroadcastSend, StoreError, UserId};

fn broadcast(row: &PgRow) -> Result<Broadcast, StoreError> {
    Ok(Broadcast {
        id: row.try_get(0)?,
        admin: UserId(row.try_get(1)?),
        text: row.try_get(2)?,
        progress_message: row.try_get(3)?,
        cursor: row.try_get(4)?,
        delivered: row.try_get(5)?,
        blocked: row.try_get(6)?,
        failed: row.try_get(7)?,
        done: row.try_get(8)?,
        created_at: row.try_get(9)?,
    })
}

impl PgStore {
    pub(crate) async fn create_broadcast(
        &self,
        admin: UserId,
        text: String,
        source_update: Option<i64>,
        owner: &str,
        lease: Duration,
    ) -> Result<Option<Broadcast>, StoreError> {
        let mut conn = self.connection().await?;
        let row = sqlx::query(concat!(
            "INSERT INTO broadcasts (admin_id, text, owner, lease_until, source_update)
             VALUES ($1, $2, $3, now() + make_interval(secs => $4), $5)
             ON CONFLICT (source_update) WHERE source_update IS NOT NULL DO NOTHING
             RETURNING ",
            broadcast_columns!()
        ))
        .bind(admin.0)
        .bind(text)
        .bind(owner)
        .bind(lease.as_secs_f64())
        .bind(source_update)
        .fetch_optional(&mut *conn)
        .await?;
        row.as_ref().map(broadcast).transpose()
    }

    pub(crate) async fn claim_broadcast(
        &self,
        owner: &str,
        lease: Duration,
    ) -> Result<Option<Broadcast>, StoreError> {
        let mut conn = self.connection().await?;
        sqlx::query(concat!(
            "UPDATE broadcasts SET owner = $1, lease_until = now() + make_interval(secs => $2)
             WHERE id = (SELECT id FROM broadcasts
                         WHERE NOT done AND (owner = $1 OR lease_until <= now())
                         ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
             RETURNING ",
            broadcast_columns!()
        ))
        .bind(owner)
        .bind(lease.as_secs_f64())
        .fetch_optional(&mut *conn)
        .await?
        .as_ref()
        .map(broadcast)
        .transpose()
    }

    pub(crate) async fn broadcast_recipients(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<(UserId, bool)>, StoreError> {
        let mut conn = self.connection().await?;
        sqlx::query(
            "SELECT id, blocked_at IS NOT NULL FROM users WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|row| Ok((UserId(row.try_get(0)?), row.try_get(1)?)))
        .collect()
    }

    pub(crate) async fn record_broadcast_send(
        &self,
        id: i64,
        owner: &str,
        user: UserId,
        sent: BroadcastSend,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let (delivered, blocked, failed) = match sent {
            BroadcastSend::Delivered => (1_i64, 0_i64, 0_i64),
            BroadcastSend::Blocked => (0, 1, 0),
            BroadcastSend::Failed => (0, 0, 1),
        };
        let mut conn = self.connection().await?;
        let done = sqlx::query(
            "UPDATE broadcasts SET cursor = $3, delivered = delivered + $4,
                blocked = blocked + $5, failed = failed + $6,
                lease_until = now() + make_interval(secs => $7)
             WHERE id = $1 AND owner = $2 AND NOT done AND cursor < $3",
        )
        .bind(id)
        .bind(owner)
        .bind(user.0)
        .bind(delivered)
        .bind(blocked)
        .bind(failed)
        .bind(lease.as_secs_f64())
        .execute(&mut *conn)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(crate) async fn finish_broadcast(
        &self,
        id: i64,
        progress_message: Option<i64>,
        done: bool,
    ) -> Result<Option<Broadcast>, StoreError> {
        let mut conn = self.connection().await?;
        sqlx::query(concat!(
            "UPDATE broadcasts SET done = done OR $2,
                progress_message = coalesce($3, progress_message)
             WHERE id = $1 RETURNING ",
            broadcast_columns!()
        ))
        .bind(id)
        .bind(done)
        .bind(progress_message)
        .fetch_optional(&mut *conn)
        .await?
        .as_ref()
        .map(broadcast)
        .transpose()
    }
}
