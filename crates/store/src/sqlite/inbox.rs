//! The update inbox on SQLite.

use std::time::Duration;

use chrono::Utc;
use rusqlite::params;

use super::rows::millis;
use super::SqliteStore;
use crate::{InboxUpdate, StoreError};

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
                         WHERE handled_at IS NULL AND owner = ?1",
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
                    "UPDATE telegram_updates SET owner = ?1, received_at = ?5
                     WHERE update_id IN (
                        SELECT update_id FROM telegram_updates
                        WHERE handled_at IS NULL
                          AND ((?4 AND owner = ?1) OR (owner <> ?1 AND received_at <= ?2))
                        ORDER BY update_id LIMIT ?3)
                     RETURNING update_id, payload",
                )?;
                let mut rows = stmt.query(params![owner, stale, limit, mine, now])?;
                let mut claimed = Vec::new();
                while let Some(row) = rows.next()? {
                    claimed.push(InboxUpdate {
                        id: row.get(0)?,
                        payload: row.get(1)?,
                    });
                }
                claimed.sort_by_key(|u| u.id);
                Ok(claimed)
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
