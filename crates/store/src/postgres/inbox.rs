//! The update inbox on PostgreSQL.

use std::time::Duration;

use sqlx::{Connection, PgConnection, Row};

use super::PgStore;
use crate::inbox::{distinct, MEMBER_LEASE_PREFIX, ROUND_CHATS, TAKE_MAX};
use crate::{DeadLetter, InboxUpdate, Recorded, StoreError, Unhandled};

/// The `attempts` column (an INTEGER) as a count.
fn attempts(column: i32) -> u32 {
    u32::try_from(column).unwrap_or_default()
}

/// Claims free chats for `$1` and takes the waiting updates of the chats it holds, in one
/// statement (inside the caller's transaction).
///
/// - `$3` the candidate chats, most urgent first; the free ones (no live claim) are claimed
///   under a lease of `$2` seconds: with `$4`, only the recorder's share of them (as many as
///   there are members, rounded up), else all of them;
/// - with `$6`, also every chat `$1` already holds that has an update to take, else only the
///   candidates it holds;
/// - the updates taken: those waiting in the chats it holds, oldest first, at most `$7`: with
///   `$5` all of them (at start), else those not taken by `$1` already.
///
/// Held claims are locked (`FOR SHARE`) before their updates are taken, so a concurrent
/// release of an idle claim (which locks it first) either sees the update waiting or happens
/// before: an update is never taken under a claim that is gone.
const CLAIM_AND_TAKE: &str = "
WITH free_all AS (
    SELECT x.chat_id, x.n FROM unnest($3::bigint[]) WITH ORDINALITY AS x(chat_id, n)
    WHERE NOT EXISTS (SELECT 1 FROM chat_claims k
                      WHERE k.chat_id = x.chat_id AND k.lease_until >= now())),
free AS (
    SELECT chat_id, n FROM free_all ORDER BY n
    LIMIT CASE WHEN $4 THEN (
        SELECT ceil(count(*)::float8 / (
            SELECT greatest(count(*), 1) FROM leases
            WHERE name LIKE 'inbox-member:%' AND lease_until >= now()))::bigint
        FROM free_all) END),
claimed AS (
    INSERT INTO chat_claims (chat_id, owner, lease_until)
    SELECT chat_id, $1, now() + make_interval(secs => $2) FROM free ORDER BY n
    ON CONFLICT (chat_id) DO UPDATE SET owner = excluded.owner, lease_until = excluded.lease_until
    WHERE chat_claims.lease_until < now()
    RETURNING chat_id),
held AS (
    SELECT c.chat_id FROM chat_claims c
    WHERE c.owner = $1
      AND (c.chat_id = ANY($3) OR ($6 AND EXISTS (
          SELECT 1 FROM telegram_updates w
          WHERE w.chat_id = c.chat_id AND w.handled_at IS NULL AND w.dead_at IS NULL
            AND ($5 OR w.owner <> $1))))
    FOR SHARE OF c),
mine AS (SELECT chat_id FROM claimed UNION SELECT chat_id FROM held),
picked AS (
    SELECT u.update_id, u.owner AS was FROM telegram_updates u
    WHERE u.chat_id IN (SELECT chat_id FROM mine)
      AND u.handled_at IS NULL AND u.dead_at IS NULL AND ($5 OR u.owner <> $1)
    ORDER BY u.update_id LIMIT $7
    FOR UPDATE OF u)
UPDATE telegram_updates t SET owner = $1 FROM picked
WHERE t.update_id = picked.update_id
RETURNING t.update_id, t.chat_id, t.payload, t.attempts, picked.was";

/// How a claim-and-take goes.
struct Take<'a> {
    owner: &'a str,
    lease: Duration,
    candidates: &'a [i64],
    share: bool,
    again: bool,
    all_held: bool,
}

impl Take<'_> {
    async fn run(self, conn: &mut PgConnection) -> Result<Vec<InboxUpdate>, StoreError> {
        let rows = sqlx::query(CLAIM_AND_TAKE)
            .bind(self.owner)
            .bind(self.lease.as_secs_f64())
            .bind(self.candidates)
            .bind(self.share)
            .bind(self.again)
            .bind(self.all_held)
            .bind(TAKE_MAX)
            .fetch_all(&mut *conn)
            .await?;
        let mut taken = rows
            .iter()
            .map(|row| {
                let was: String = row.try_get(4)?;
                Ok(InboxUpdate {
                    id: row.try_get(0)?,
                    chat: row.try_get(1)?,
                    payload: row.try_get(2)?,
                    attempts: attempts(row.try_get(3)?),
                    replay: !was.is_empty(),
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        taken.sort_by_key(|u| u.id);
        Ok(taken)
    }
}

impl PgStore {
    pub(crate) async fn record_updates(
        &self,
        owner: &str,
        updates: Vec<InboxUpdate>,
        lease: Duration,
    ) -> Result<Recorded, StoreError> {
        let mut ids = Vec::with_capacity(updates.len());
        let mut chats = Vec::with_capacity(updates.len());
        let mut payloads = Vec::with_capacity(updates.len());
        for update in updates {
            ids.push(update.id);
            chats.push(update.chat);
            payloads.push(update.payload);
        }
        let mut conn = self.connection().await?;
        let mut tx = conn.begin().await?;
        let rows = sqlx::query(
            "INSERT INTO telegram_updates (update_id, chat_id, payload, owner)
             SELECT id, chat, payload, '' FROM unnest($1::bigint[], $2::bigint[], $3::text[])
                 AS u(id, chat, payload)
             ON CONFLICT (update_id) DO NOTHING
             RETURNING update_id, chat_id",
        )
        .bind(&ids)
        .bind(&chats)
        .bind(&payloads)
        .fetch_all(&mut *tx)
        .await?;
        let mut new = Vec::with_capacity(rows.len());
        let mut new_chats = Vec::with_capacity(rows.len());
        for row in &rows {
            new.push(row.try_get::<i64, _>(0)?);
            new_chats.push(row.try_get::<i64, _>(1)?);
        }
        if new.is_empty() {
            tx.commit().await?;
            return Ok(Recorded::default());
        }
        new.sort_unstable();
        let candidates = distinct(new_chats);
        let taken = Take {
            owner,
            lease,
            candidates: &candidates,
            share: true,
            again: false,
            all_held: false,
        }
        .run(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(Recorded { new, taken })
    }

    pub(crate) async fn take_updates(
        &self,
        owner: &str,
        which: Unhandled,
        lease: Duration,
    ) -> Result<Vec<InboxUpdate>, StoreError> {
        let (again, leave_fresh) = match which {
            Unhandled::AtStart => (true, Duration::ZERO),
            Unhandled::Running { leave_fresh } => (false, leave_fresh),
        };
        let mut conn = self.connection().await?;
        // Read first: most rounds find nothing to do and write nothing.
        let row = sqlx::query(
            "SELECT array(
                 SELECT u.chat_id FROM telegram_updates u
                 WHERE u.handled_at IS NULL AND u.dead_at IS NULL
                   AND NOT EXISTS (SELECT 1 FROM chat_claims k
                                   WHERE k.chat_id = u.chat_id AND k.lease_until >= now())
                 GROUP BY u.chat_id
                 HAVING min(u.received_at) <= now() - make_interval(secs => $2)
                 ORDER BY min(u.update_id) LIMIT $3),
             EXISTS (
                 SELECT 1 FROM chat_claims c JOIN telegram_updates w ON w.chat_id = c.chat_id
                 WHERE c.owner = $1 AND w.handled_at IS NULL AND w.dead_at IS NULL
                   AND ($4 OR w.owner <> $1))",
        )
        .bind(owner)
        .bind(leave_fresh.as_secs_f64())
        .bind(ROUND_CHATS)
        .bind(again)
        .fetch_one(&mut *conn)
        .await?;
        let candidates: Vec<i64> = row.try_get(0)?;
        let mine_waiting: bool = row.try_get(1)?;
        if candidates.is_empty() && !mine_waiting && !again {
            return Ok(Vec::new());
        }
        let mut tx = conn.begin().await?;
        if again {
            join(&mut tx, owner, lease).await?;
            // A previous run's claims are this run's: renewed before anyone takes them over.
            sqlx::query(
                "UPDATE chat_claims SET lease_until = now() + make_interval(secs => $2)
                 WHERE owner = $1",
            )
            .bind(owner)
            .bind(lease.as_secs_f64())
            .execute(&mut *tx)
            .await?;
        }
        let taken = Take {
            owner,
            lease,
            candidates: &candidates,
            share: false,
            again,
            all_held: true,
        }
        .run(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(taken)
    }

    pub(crate) async fn mark_updates_handled(
        &self,
        owner: &str,
        ids: &[i64],
    ) -> Result<u64, StoreError> {
        let mut conn = self.connection().await?;
        let mut tx = conn.begin().await?;
        // Claims first, then updates: the order a take locks them in.
        let chats: Vec<i64> = sqlx::query_scalar(
            "SELECT c.chat_id FROM chat_claims c
             WHERE c.owner = $2 AND c.chat_id IN (
                 SELECT chat_id FROM telegram_updates WHERE update_id = ANY($1))
             ORDER BY c.chat_id FOR UPDATE",
        )
        .bind(ids)
        .bind(owner)
        .fetch_all(&mut *tx)
        .await?;
        let done = sqlx::query(
            "UPDATE telegram_updates SET handled_at = now()
             WHERE handled_at IS NULL AND update_id = ANY($1)",
        )
        .bind(ids)
        .execute(&mut *tx)
        .await?;
        release_idle(&mut tx, owner, Some(&chats)).await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    pub(crate) async fn renew_chat_claims(
        &self,
        owner: &str,
        lease: Duration,
    ) -> Result<u64, StoreError> {
        let mut conn = self.connection().await?;
        let mut tx = conn.begin().await?;
        join(&mut tx, owner, lease).await?;
        let renewed = sqlx::query(
            "UPDATE chat_claims SET lease_until = now() + make_interval(secs => $2)
             WHERE owner = $1",
        )
        .bind(owner)
        .bind(lease.as_secs_f64())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        // A chat whose last waiting update was set aside (or a lapsed claim nobody needs).
        sqlx::query("SELECT chat_id FROM chat_claims WHERE owner = $1 ORDER BY chat_id FOR UPDATE")
            .bind(owner)
            .execute(&mut *tx)
            .await?;
        release_idle(&mut tx, owner, None).await?;
        // Claims lapsed a whole lease ago, of replicas that are gone, with nothing waiting.
        sqlx::query(
            "DELETE FROM chat_claims c
             WHERE c.lease_until < now() - make_interval(secs => $1) AND NOT EXISTS (
                 SELECT 1 FROM telegram_updates u
                 WHERE u.chat_id = c.chat_id AND u.handled_at IS NULL AND u.dead_at IS NULL)",
        )
        .bind(lease.as_secs_f64())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(renewed)
    }

    pub(crate) async fn release_chat_claims(&self, owner: &str) -> Result<(), StoreError> {
        let mut conn = self.connection().await?;
        let mut tx = conn.begin().await?;
        sqlx::query("DELETE FROM chat_claims WHERE owner = $1")
            .bind(owner)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM leases WHERE name = $1")
            .bind(format!("{MEMBER_LEASE_PREFIX}{owner}"))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
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

/// Takes or renews `owner`'s membership among the replicas sharing the handling.
async fn join(conn: &mut PgConnection, owner: &str, lease: Duration) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO leases (name, owner, lease_until)
         VALUES ($1, $2, now() + make_interval(secs => $3))
         ON CONFLICT (name) DO UPDATE
         SET owner = excluded.owner, lease_until = excluded.lease_until",
    )
    .bind(format!("{MEMBER_LEASE_PREFIX}{owner}"))
    .bind(owner)
    .bind(lease.as_secs_f64())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Deletes `owner`'s claims (of `chats`, or all) on chats none of whose updates waits. The
/// caller has locked those claims in this transaction, so this statement's fresh snapshot sees
/// every update a concurrent take committed under them.
async fn release_idle(
    conn: &mut PgConnection,
    owner: &str,
    chats: Option<&[i64]>,
) -> Result<(), StoreError> {
    sqlx::query(
        "DELETE FROM chat_claims c
         WHERE c.owner = $1 AND ($2::bigint[] IS NULL OR c.chat_id = ANY($2))
           AND NOT EXISTS (SELECT 1 FROM telegram_updates u
                           WHERE u.chat_id = c.chat_id
                             AND u.handled_at IS NULL AND u.dead_at IS NULL)",
    )
    .bind(owner)
    .bind(chats)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
