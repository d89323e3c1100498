//! The update inbox on SQLite.

use std::time::Duration;

use chrono::Utc;
use rusqlite::{params, OptionalExtension};

use super::rows::{millis, timestamp};
use super::SqliteStore;
use crate::{DeadLetter, InboxUpdate, StoreError};

impl SqliteStore {
    pub(crate) async fn record_updates(
        &self,
        owner: &str,
        updates: Vec<InboxUpdate>,
    ) -> Result<Vec<i64>, StoreError> {
        let owner = owner.to_owned();
        self.writer
            .run(move |conn| {
                let now = millis(Utc::now());
                let mut insert = conn.prepare_cached(
                    "INSERT INTO telegram_updates (update_id, payload, owner, received_at)
                     VALUES (?1, ?2, ?3, ?4) ON CONFLICT (update_id) DO NOTHING",
                )?;
                let mut new = Vec::with_capacity(updates.len());
                for update in &updates {
                    if insert.execute(params![update.id, update.payload, owner, now])? == 1 {
                        new.push(update.id);
                    }
                }
                Ok(new)
            })
            .await
    }

    pub(crate) async fn mark_updates_handled(&self, ids: &[i64]) -> Result<u64, StoreError> {
        let ids = serde_json::Value::from(ids.to_vec()).to_string();
        self.writer
            .run(move |conn| {
                Ok(conn
                    .prepare_cached(
                        "UPDATE telegram_updates SET handled_at = ?2
                         WHERE handled_at IS NULL
                           AND update_id IN (SELECT value FROM json_each(?1))",
                    )?
                    .execute(params![ids, millis(Utc::now())])? as u64)
            })
            .await
    }

    pub(crate) async fn renew_unhandled_updates(&self, owner: &str) -> Result<u64, StoreError> {
        let owner = owner.to_owned();
        self.writer
            .run(move |conn| {
                Ok(conn
                    .prepare_cached(
                        "UPDATE telegram_updates SET received_at = ?2
                         WHERE handled_at IS NULL AND dead_at IS NULL AND owner = ?1",
                    )?
                    .execute(params![owner, millis(Utc::now())])? as u64)
            })
            .await
    }

    pub(crate) async fn claim_unhandled_updates(
        &self,
        owner: &str,
        mine: bool,
        stale_after: Duration,
        limit: u32,
    ) -> Result<Vec<InboxUpdate>, StoreError> {
        let owner = owner.to_owned();
        self.writer
            .run(move |conn| {
                let now = millis(Utc::now());
                let stale = now - stale_after.as_millis() as i64;
                let mut stmt = conn.prepare_cached(
                    "UPDATE telegram_updates
                     SET owner = ?1, received_at = ?5
                     WHERE update_id IN (
                        SELECT update_id FROM telegram_updates
                        WHERE handled_at IS NULL AND dead_at IS NULL
                          AND ((?4 AND owner = ?1) OR (owner <> ?1 AND received_at <= ?2))
                        ORDER BY update_id LIMIT ?3)
                     RETURNING update_id, payload, attempts",
                )?;
                let mut rows = stmt.query(params![owner, stale, limit, mine, now])?;
                let mut claimed = Vec::new();
                while let Some(row) = rows.next()? {
                    claimed.push(InboxUpdate {
                        id: row.get(0)?,
                        payload: row.get(1)?,
                        attempts: row.get(2)?,
                    });
                }
                claimed.sort_by_key(|u| u.id);
                Ok(claimed)
            })
            .await
    }

    pub(crate) async fn note_update_failure(
        &self,
        id: i64,
        error: &str,
    ) -> Result<u32, StoreError> {
        let error = error.to_owned();
        self.writer
            .run(move |conn| {
                let attempts = conn
                    .prepare_cached(
                        "UPDATE telegram_updates SET attempts = attempts + 1, last_error = ?2
                         WHERE update_id = ?1 RETURNING attempts",
                    )?
                    .query_row(params![id, error], |row| row.get(0))
                    .optional()?;
                Ok(attempts.unwrap_or(0))
            })
            .await
    }

    pub(crate) async fn dead_letter_update(
        &self,
        id: i64,
        error: &str,
    ) -> Result<bool, StoreError> {
        let error = error.to_owned();
        self.writer
            .run(move |conn| {
                Ok(conn
                    .prepare_cached(
                        "UPDATE telegram_updates SET dead_at = ?3, last_error = ?2
                         WHERE update_id = ?1 AND handled_at IS NULL AND dead_at IS NULL",
                    )?
                    .execute(params![id, error, millis(Utc::now())])?
                    == 1)
            })
            .await
    }

    pub(crate) async fn dead_letters(&self, limit: u32) -> Result<Vec<DeadLetter>, StoreError> {
        self.readers
            .with(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT update_id, attempts, coalesce(last_error, ''), dead_at, payload
                 FROM telegram_updates WHERE dead_at IS NOT NULL
                 ORDER BY dead_at DESC, update_id DESC LIMIT ?1",
                )?;
                let mut rows = stmt.query(params![limit])?;
                let mut letters = Vec::new();
                while let Some(row) = rows.next()? {
                    letters.push(DeadLetter {
                        id: row.get(0)?,
                        attempts: row.get(1)?,
                        error: row.get(2)?,
                        dead_at: timestamp("dead_at", row.get(3)?)?,
                        payload: row.get(4)?,
                    });
                }
                Ok(letters)
            })
            .await
    }

    pub(crate) async fn count_dead_letters(&self) -> Result<u64, StoreError> {
        self.readers
            .with(|conn| {
                let count: i64 = conn
                    .prepare_cached(
                        "SELECT count(*) FROM telegram_updates WHERE dead_at IS NOT NULL",
                    )?
                    .query_row([], |row| row.get(0))?;
                Ok(u64::try_from(count).unwrap_or_default())
            })
            .await
    }

    pub(crate) async fn retry_dead_letter(&self, id: i64) -> Result<bool, StoreError> {
        self.writer
            .run(move |conn| {
                // No replica's, received long ago: the next sweep of any replica takes it.
                Ok(conn
                    .prepare_cached(
                        "UPDATE telegram_updates
                         SET dead_at = NULL, attempts = 0, owner = '', received_at = 0
                         WHERE update_id = ?1 AND dead_at IS NOT NULL",
                    )?
                    .execute(params![id])?
                    == 1)
            })
            .await
    }

    pub(crate) async fn prune_handled_updates(
        &self,
        older_than: Duration,
    ) -> Result<u64, StoreError> {
        self.writer
            .run(move |conn| {
                let before = millis(Utc::now()) - older_than.as_millis() as i64;
                Ok(conn
                    .prepare_cached(
                        "DELETE FROM telegram_updates
                         WHERE handled_at IS NOT NULL AND handled_at <= ?1",
                    )?
                    .execute(params![before])? as u64)
            })
            .await
    }
}
