//! Broadcasts on SQLite.

use std::time::Duration;

use chrono::Utc;
use rusqlite::{params, OptionalExtension, Row};

use super::rows::{millis, timestamp};
use super::SqliteStore;
use crate::columns::broadcast_columns;
use crate::lifecycle::lease_end;
use crate::{Broadcast, BroadcastSend, StoreError, UserId};

fn broadcast(row: &Row<'_>) -> Result<Broadcast, StoreError> {
    Ok(Broadcast {
        id: row.get(0)?,
        admin: UserId(row.get(1)?),
        text: row.get(2)?,
        progress_message: row.get(3)?,
        cursor: row.get(4)?,
        delivered: row.get(5)?,
        blocked: row.get(6)?,
        failed: row.get(7)?,
        done: row.get(8)?,
        created_at: timestamp("broadcasts.created_at", row.get(9)?)?,
    })
}

impl SqliteStore {
    pub(crate) async fn create_broadcast(
        &self,
        admin: UserId,
        text: String,
        source_update: Option<i64>,
        owner: &str,
        lease: Duration,
    ) -> Result<Option<Broadcast>, StoreError> {
        let owner = owner.to_owned();
        self.writer
            .run(move |conn| {
                let now = Utc::now();
                let sql = concat!(
                    "INSERT INTO broadcasts
                        (admin_id, text, owner, lease_until, created_at, source_update)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (source_update) WHERE source_update IS NOT NULL DO NOTHING
                     RETURNING ",
                    broadcast_columns!()
                );
                conn.prepare_cached(sql)?
                    .query_row(
                        params![
                            admin.0,
                            text,
                            owner,
                            millis(lease_end(now, lease)),
                            millis(now),
                            source_update
                        ],
                        |row| Ok(broadcast(row)),
                    )
                    .optional()?
                    .transpose()
            })
            .await
    }

    pub(crate) async fn claim_broadcast(
        &self,
        owner: &str,
        lease: Duration,
    ) -> Result<Option<Broadcast>, StoreError> {
        let owner = owner.to_owned();
        self.writer
            .run(move |conn| {
                let now = Utc::now();
                let sql = concat!(
                    "UPDATE broadcasts SET owner = ?1, lease_until = ?2
                     WHERE id = (SELECT id FROM broadcasts
                                 WHERE NOT done AND (owner = ?1 OR lease_until <= ?3)
                                 ORDER BY id LIMIT 1)
                     RETURNING ",
                    broadcast_columns!()
                );
                conn.prepare_cached(sql)?
                    .query_row(
                        params![owner, millis(lease_end(now, lease)), millis(now)],
                        |row| Ok(broadcast(row)),
                    )
                    .optional()?
                    .transpose()
            })
            .await
    }

    pub(crate) async fn broadcast_recipients(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<(UserId, bool)>, StoreError> {
        self.readers
            .with(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT id, blocked_at IS NOT NULL FROM users WHERE id > ?1
                     ORDER BY id LIMIT ?2",
                )?;
                let mut rows = stmt.query(params![after, i64::from(limit)])?;
                let mut users = Vec::new();
                while let Some(row) = rows.next()? {
                    users.push((UserId(row.get(0)?), row.get(1)?));
                }
                Ok(users)
            })
            .await
    }

    pub(crate) async fn record_broadcast_send(
        &self,
        id: i64,
        owner: &str,
        user: UserId,
        sent: BroadcastSend,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let owner = owner.to_owned();
        self.writer
            .run(move |conn| {
                let (delivered, blocked, failed) = match sent {
                    BroadcastSend::Delivered => (1, 0, 0),
                    BroadcastSend::Blocked => (0, 1, 0),
                    BroadcastSend::Failed => (0, 0, 1),
                };
                Ok(conn
                    .prepare_cached(
                        "UPDATE broadcasts SET cursor = ?3, delivered = delivered + ?4,
                            blocked = blocked + ?5, failed = failed + ?6, lease_until = ?7
                         WHERE id = ?1 AND owner = ?2 AND NOT done AND cursor < ?3",
                    )?
                    .execute(params![
                        id,
                        owner,
                        user.0,
                        delivered,
                        blocked,
                        failed,
                        millis(lease_end(Utc::now(), lease))
                    ])?
                    == 1)
            })
            .await
    }

    pub(crate) async fn finish_broadcast(
        &self,
        id: i64,
        progress_message: Option<i64>,
        done: bool,
    ) -> Result<Option<Broadcast>, StoreError> {
        self.writer
            .run(move |conn| {
                let sql = concat!(
                    "UPDATE broadcasts SET done = done OR ?2,
                        progress_message = coalesce(?3, progress_message)
                     WHERE id = ?1 RETURNING ",
                    broadcast_columns!()
                );
                conn.prepare_cached(sql)?
                    .query_row(params![id, done, progress_message], |row| {
                        Ok(broadcast(row))
                    })
                    .optional()?
                    .transpose()
            })
            .await
    }
}
