//! The update inbox on SQLite.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};

use super::rows::{millis, timestamp};
use super::SqliteStore;
use crate::inbox::{distinct, MEMBER_LEASE_PREFIX, ROUND_CHATS, TAKE_MAX};
use crate::lifecycle::lease_end;
use crate::{DeadLetter, InboxUpdate, Recorded, SetAside, StoreError, Unhandled};

/// Most updates one write marks handled (see [`SqliteStore::mark_updates_handled`]): about
/// 1 ms of the writer's time.
const MARKS_PER_WRITE: usize = 256;

impl SqliteStore {
    /// On SQLite one process handles everything: the recorder claims every free chat of the
    /// batch (and renews those it holds) first, then inserts the new updates as taken.
    pub(crate) async fn record_updates(
        &self,
        owner: &str,
        updates: Vec<InboxUpdate>,
        lease: Duration,
    ) -> Result<Recorded, StoreError> {
        let owner = owner.to_owned();
        self.writer
            .run(move |conn| {
                let now = Utc::now();
                let held = claim(
                    conn,
                    &owner,
                    distinct(updates.iter().map(|u| u.chat)),
                    now,
                    lease,
                )?;
                let mut insert = conn.prepare_cached(
                    "INSERT INTO telegram_updates (update_id, chat_id, payload, owner, received_at)
                     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (update_id) DO NOTHING",
                )?;
                let mut recorded = Recorded::default();
                for update in updates {
                    let mine = held.contains(&update.chat);
                    let taker = if mine { owner.as_str() } else { "" };
                    let row = params![update.id, update.chat, update.payload, taker, millis(now)];
                    if insert.execute(row)? == 1 {
                        recorded.new.push(update.id);
                        if mine {
                            recorded.taken.push(update);
                        }
                    }
                }
                // Older updates still waiting in those chats come first (none when every
                // waiting update is this replica's already, as on one process it almost always is).
                let mut taken = if others_waiting(conn, &owner)? {
                    take(conn, &owner, &held, false)?
                } else {
                    Vec::new()
                };
                taken.append(&mut recorded.taken);
                taken.sort_by_key(|u| u.id);
                recorded.taken = taken;
                recorded.new.sort_unstable();
                Ok(recorded)
            })
            .await
    }

    pub(crate) async fn take_updates(
        &self,
        owner: &str,
        which: Unhandled,
        lease: Duration,
    ) -> Result<Vec<InboxUpdate>, StoreError> {
        let (again, leave_fresh) = which.again_and_leave_fresh();
        let reader_owner = owner.to_owned();
        // Read first, off the writer: most rounds find nothing to do.
        let (candidates, mine_waiting) = self
            .readers
            .with(move |conn| {
                // While running, only updates not taken by this replica can be taken: when
                // none waits, the scans below (of every waiting update) would find nothing.
                if !again && !others_waiting(conn, &reader_owner)? {
                    return Ok((Vec::new(), false));
                }
                let now = Utc::now();
                let fresh_since = millis(now) - i64::try_from(leave_fresh.as_millis()).unwrap_or(0);
                let mut free = conn.prepare_cached(
                    "SELECT u.chat_id FROM telegram_updates u
                     WHERE u.handled_at IS NULL AND u.dead_at IS NULL
                       AND NOT EXISTS (SELECT 1 FROM chat_claims k
                                       WHERE k.chat_id = u.chat_id AND k.lease_until >= ?1)
                     GROUP BY u.chat_id HAVING min(u.received_at) <= ?2
                     ORDER BY min(u.update_id) LIMIT ?3",
                )?;
                let candidates = free
                    .query_map(params![millis(now), fresh_since, ROUND_CHATS], |row| {
                        row.get::<_, i64>(0)
                    })?
                    .collect::<Result<Vec<i64>, _>>()?;
                let mine_waiting: bool = conn
                    .prepare_cached(
                        "SELECT EXISTS (
                             SELECT 1 FROM chat_claims c
                             JOIN telegram_updates w ON w.chat_id = c.chat_id
                             WHERE c.owner = ?1 AND w.handled_at IS NULL AND w.dead_at IS NULL
                               AND (?2 OR w.owner <> ?1))",
                    )?
                    .query_row(params![reader_owner, again], |row| row.get(0))?;
                Ok((candidates, mine_waiting))
            })
            .await?;
        if candidates.is_empty() && !mine_waiting && !again {
            return Ok(Vec::new());
        }
        let owner = owner.to_owned();
        self.writer
            .run(move |conn| {
                let now = Utc::now();
                if again {
                    join(conn, &owner, now, lease)?;
                    // A previous run's claims are this run's: renewed before anyone takes them.
                    conn.prepare_cached(
                        "UPDATE chat_claims SET lease_until = ?2 WHERE owner = ?1",
                    )?
                    .execute(params![owner, millis(lease_end(now, lease))])?;
                }
                claim(conn, &owner, candidates, now, lease)?;
                let mut held = conn.prepare_cached(
                    "SELECT c.chat_id FROM chat_claims c WHERE c.owner = ?1 AND EXISTS (
                         SELECT 1 FROM telegram_updates w
                         WHERE w.chat_id = c.chat_id AND w.handled_at IS NULL
                           AND w.dead_at IS NULL AND (?2 OR w.owner <> ?1))",
                )?;
                let held = held
                    .query_map(params![owner, again], |row| row.get::<_, i64>(0))?
                    .collect::<Result<Vec<i64>, _>>()?;
                take(conn, &owner, &held, again)
            })
            .await
    }

    /// Marks `ids` handled, [`MARKS_PER_WRITE`] to a write: one write holds the single writer
    /// for all it does, and a crowd's marks of a round in one write (~1,800 updates, 5–8 ms)
    /// were a stall for every write queued behind it, the poller's record first. Each chunk is
    /// whole; one failing leaves the rest unmarked, and marking again is harmless.
    pub(crate) async fn mark_updates_handled(
        &self,
        owner: &str,
        ids: &[i64],
    ) -> Result<u64, StoreError> {
        let mut done = 0;
        for chunk in ids.chunks(MARKS_PER_WRITE) {
            done += self.mark_chunk_handled(owner, chunk).await?;
        }
        Ok(done)
    }

    async fn mark_chunk_handled(&self, owner: &str, ids: &[i64]) -> Result<u64, StoreError> {
        let ids = serde_json::Value::from(ids.to_vec()).to_string();
        let owner = owner.to_owned();
        self.writer
            .run(move |conn| {
                let done = conn
                    .prepare_cached(
                        "UPDATE telegram_updates SET handled_at = ?2
                         WHERE handled_at IS NULL AND dead_at IS NULL
                           AND update_id IN (SELECT value FROM json_each(?1))",
                    )?
                    .execute(params![ids, millis(Utc::now())])? as u64;
                conn.prepare_cached(
                    "DELETE FROM chat_claims AS c
                     WHERE c.owner = ?2 AND c.chat_id IN (
                         SELECT chat_id FROM telegram_updates
                         WHERE update_id IN (SELECT value FROM json_each(?1)))
                       AND NOT EXISTS (SELECT 1 FROM telegram_updates u
                                       WHERE u.chat_id = c.chat_id
                                         AND u.handled_at IS NULL AND u.dead_at IS NULL)",
                )?
                .execute(params![ids, owner])?;
                Ok(done)
            })
            .await
    }

    pub(crate) async fn renew_chat_claims(
        &self,
        owner: &str,
        lease: Duration,
    ) -> Result<u64, StoreError> {
        let owner = owner.to_owned();
        self.writer
            .run(move |conn| {
                let now = Utc::now();
                join(conn, &owner, now, lease)?;
                let renewed = conn
                    .prepare_cached("UPDATE chat_claims SET lease_until = ?2 WHERE owner = ?1")?
                    .execute(params![owner, millis(lease_end(now, lease))])?
                    as u64;
                // A chat whose last waiting update was set aside, and claims lapsed a whole
                // lease ago with nothing waiting.
                conn.prepare_cached(
                    "DELETE FROM chat_claims AS c
                     WHERE (c.owner = ?1 OR c.lease_until < ?2)
                       AND NOT EXISTS (SELECT 1 FROM telegram_updates u
                                       WHERE u.chat_id = c.chat_id
                                         AND u.handled_at IS NULL AND u.dead_at IS NULL)",
                )?
                .execute(params![
                    owner,
                    millis(now) - i64::try_from(lease.as_millis()).unwrap_or(0)
                ])?;
                Ok(renewed)
            })
            .await
    }

    pub(crate) async fn release_chat_claims(&self, owner: &str) -> Result<(), StoreError> {
        let owner = owner.to_owned();
        self.writer
            .run(move |conn| {
                conn.prepare_cached("DELETE FROM chat_claims WHERE owner = ?1")?
                    .execute(params![owner])?;
                conn.prepare_cached("DELETE FROM leases WHERE name = ?1")?
                    .execute(params![format!("{MEMBER_LEASE_PREFIX}{owner}")])?;
                Ok(())
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
    ) -> Result<SetAside, StoreError> {
        let error = error.to_owned();
        self.writer
            .run(move |conn| {
                // Received at 0: an operator retried it (see `retry_dead_letter`).
                let retried: Option<bool> = conn
                    .prepare_cached(
                        "UPDATE telegram_updates SET dead_at = ?3, last_error = ?2
                         WHERE update_id = ?1 AND handled_at IS NULL AND dead_at IS NULL
                         RETURNING received_at = 0",
                    )?
                    .query_row(params![id, error, millis(Utc::now())], |row| row.get(0))
                    .optional()?;
                Ok(match retried {
                    None => SetAside::NotWaiting,
                    Some(false) => SetAside::First,
                    Some(true) => SetAside::AfterRetry,
                })
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

    pub(crate) async fn retry_dead_letter(
        &self,
        id: i64,
        attempts: u32,
    ) -> Result<bool, StoreError> {
        self.writer
            .run(move |conn| {
                // No replica's, received long ago (at 0, the mark of a retry): the next sweep
                // of any replica takes it, as a replay (see RETRIED_OWNER).
                Ok(conn
                    .prepare_cached(
                        "UPDATE telegram_updates
                         SET dead_at = NULL, attempts = ?2, owner = ?3, received_at = 0
                         WHERE update_id = ?1 AND dead_at IS NOT NULL",
                    )?
                    .execute(params![id, attempts, crate::inbox::RETRIED_OWNER])?
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

/// Claims for `owner` those of `chats` that are free (or lapsed), and renews those it holds;
/// returns the chats it holds of them.
fn claim(
    conn: &Connection,
    owner: &str,
    chats: Vec<i64>,
    now: DateTime<Utc>,
    lease: Duration,
) -> Result<Vec<i64>, StoreError> {
    let mut upsert = conn.prepare_cached(
        "INSERT INTO chat_claims (chat_id, owner, lease_until) VALUES (?1, ?2, ?3)
         ON CONFLICT (chat_id) DO UPDATE
         SET owner = excluded.owner, lease_until = excluded.lease_until
         WHERE chat_claims.owner = excluded.owner OR chat_claims.lease_until < ?4",
    )?;
    let until = millis(lease_end(now, lease));
    let mut held = Vec::with_capacity(chats.len());
    for chat in chats {
        if upsert.execute(params![chat, owner, until, millis(now)])? == 1 {
            held.push(chat);
        }
    }
    Ok(held)
}

/// Whether any update waits that `owner` has not taken (no one's, or another replica's): two
/// range probes of `telegram_updates_waiting_owner`, however many updates wait.
fn others_waiting(conn: &Connection, owner: &str) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM telegram_updates INDEXED BY telegram_updates_waiting_owner
                            WHERE owner < ?1 AND handled_at IS NULL AND dead_at IS NULL)
                 OR EXISTS (SELECT 1 FROM telegram_updates INDEXED BY telegram_updates_waiting_owner
                            WHERE owner > ?1 AND handled_at IS NULL AND dead_at IS NULL)",
        )?
        .query_row(params![owner], |row| row.get(0))?)
}

/// Takes for `owner` the waiting updates of `chats` (which it holds), oldest first: with
/// `again` all of them (at start), else those it has not taken already.
fn take(
    conn: &Connection,
    owner: &str,
    chats: &[i64],
    again: bool,
) -> Result<Vec<InboxUpdate>, StoreError> {
    if chats.is_empty() {
        return Ok(Vec::new());
    }
    let chats = serde_json::Value::from(chats.to_vec()).to_string();
    let mut waiting = conn.prepare_cached(
        "SELECT update_id, chat_id, payload, attempts, owner FROM telegram_updates
         WHERE chat_id IN (SELECT value FROM json_each(?1))
           AND handled_at IS NULL AND dead_at IS NULL AND (?2 OR owner <> ?3)
         ORDER BY update_id LIMIT ?4",
    )?;
    let mut rows = waiting.query(params![chats, again, owner, TAKE_MAX])?;
    let mut taken = Vec::new();
    while let Some(row) = rows.next()? {
        let was: String = row.get(4)?;
        taken.push(InboxUpdate {
            id: row.get(0)?,
            chat: row.get(1)?,
            payload: row.get(2)?,
            attempts: row.get(3)?,
            replay: !was.is_empty(),
        });
    }
    let ids = serde_json::Value::from(taken.iter().map(|u| u.id).collect::<Vec<i64>>()).to_string();
    conn.prepare_cached(
        "UPDATE telegram_updates SET owner = ?2 WHERE update_id IN (SELECT value FROM json_each(?1))",
    )?
    .execute(params![ids, owner])?;
    Ok(taken)
}

/// Takes or renews `owner`'s membership among the replicas sharing the handling.
fn join(
    conn: &Connection,
    owner: &str,
    now: DateTime<Utc>,
    lease: Duration,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO leases (name, owner, lease_until) VALUES (?1, ?2, ?3)
         ON CONFLICT (name) DO UPDATE
         SET owner = excluded.owner, lease_until = excluded.lease_until",
    )?
    .execute(params![
        format!("{MEMBER_LEASE_PREFIX}{owner}"),
        owner,
        millis(lease_end(now, lease))
    ])?;
    Ok(())
}
