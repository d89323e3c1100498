//! The update inbox on PostgreSQL.

use std::time::Duration;

use sqlx::{Connection, PgConnection, Row};

use super::PgStore;
use crate::inbox::{MEMBER_LEASE_PREFIX, ROUND_CHATS, TAKE_MAX};
use crate::{DeadLetter, InboxUpdate, Recorded, SetAside, StoreError, Unhandled};

/// The `attempts` column (an INTEGER) as a count.
fn attempts(column: i32) -> u32 {
    u32::try_from(column).unwrap_or_default()
}

/// Records a batch (`$3` ids, `$4` chats, `$5` payloads) and takes for `$1` what it may handle,
/// in one statement (one commit: the embedded path's cost). The batch's chats `$1` holds
/// under a live claim are renewed (which locks them; a lapsed claim is not held: renewed, it
/// could be taken over by a round that waited on its lock, and the chat handled twice) and its share of their free ones claimed under a lease of `$2`
/// seconds (as many as there are members, rounded up) before the new updates are inserted:
/// those of chats `$1` now holds are inserted as taken by it, the others untaken (`''`); the
/// older updates still waiting in those chats are taken too (at most `$6`). Each row returned:
/// id, chat, payload, attempts, previous owner, whether it is new, whether `$1` took it.
/// Repeats (updates recorded before) claim nothing.
const RECORD_AND_TAKE: &str = "
WITH batch AS (
    SELECT b.id, b.chat, b.payload, b.n
    FROM unnest($3::bigint[], $4::bigint[], $5::text[]) WITH ORDINALITY AS b(id, chat, payload, n)
    WHERE NOT EXISTS (SELECT 1 FROM telegram_updates t WHERE t.update_id = b.id)),
free_all AS (
    SELECT chat AS chat_id, min(n) AS n FROM batch c
    WHERE NOT EXISTS (SELECT 1 FROM chat_claims k
                      WHERE k.chat_id = c.chat AND k.lease_until >= now())
    GROUP BY chat),
free AS (
    SELECT chat_id, n FROM free_all ORDER BY n
    LIMIT (SELECT ceil(count(*)::float8 / (
               SELECT greatest(count(*), 1) FROM leases
               WHERE name LIKE 'inbox-member:%' AND lease_until >= now()))::bigint
           FROM free_all)),
claimed AS (
    INSERT INTO chat_claims (chat_id, owner, lease_until)
    SELECT chat_id, $1, now() + make_interval(secs => $2) FROM free ORDER BY n
    ON CONFLICT (chat_id) DO UPDATE SET owner = excluded.owner, lease_until = excluded.lease_until
    WHERE chat_claims.lease_until < now()
    RETURNING chat_id),
held AS (
    UPDATE chat_claims c SET lease_until = now() + make_interval(secs => $2)
    WHERE c.owner = $1 AND c.lease_until >= now() AND c.chat_id IN (SELECT chat FROM batch)
    RETURNING c.chat_id),
mine AS (SELECT chat_id FROM claimed UNION SELECT chat_id FROM held),
inserted AS (
    INSERT INTO telegram_updates (update_id, chat_id, payload, owner)
    SELECT id, chat, payload, CASE WHEN chat IN (SELECT chat_id FROM mine) THEN $1 ELSE '' END
    FROM batch ORDER BY id
    ON CONFLICT (update_id) DO NOTHING
    RETURNING update_id, chat_id, payload, attempts, owner),
picked AS (
    SELECT u.update_id, u.owner AS was FROM telegram_updates u
    WHERE u.chat_id IN (SELECT chat_id FROM mine)
      AND u.handled_at IS NULL AND u.dead_at IS NULL AND u.owner <> $1
    ORDER BY u.update_id LIMIT $6
    FOR UPDATE OF u),
older AS (
    UPDATE telegram_updates t SET owner = $1 FROM picked
    WHERE t.update_id = picked.update_id
    RETURNING t.update_id, t.chat_id, t.payload, t.attempts, picked.was)
SELECT update_id, chat_id, payload, attempts, '' AS was, true AS new, owner <> '' AS taken
FROM inserted
UNION ALL
SELECT update_id, chat_id, payload, attempts, was, false, true FROM older";

/// A round's claim and take for `$1`, in one statement (inside the caller's transaction):
///
/// - `$3` the candidate chats, oldest waiting first; the free ones (no live claim) are claimed
///   under a lease of `$2` seconds;
/// - the updates taken: those waiting in the chats `$1` holds (the candidates it claimed, and
///   every chat it held with an update to take), oldest first, at most `$5`: with `$4` all of
///   them (at start), else those not taken by `$1` already.
///
/// Held claims (live ones only) are renewed, which locks them, before their updates are taken,
/// so a concurrent release of an idle claim (which locks it first) either sees the update
/// waiting or happens before: an update is never taken under a claim that is gone; and a round
/// of another replica that waited on the lock finds the claim live, never lapsed under an
/// update just taken.
const CLAIM_AND_TAKE: &str = "
WITH free AS (
    SELECT x.chat_id, x.n FROM unnest($3::bigint[]) WITH ORDINALITY AS x(chat_id, n)
    WHERE NOT EXISTS (SELECT 1 FROM chat_claims k
                      WHERE k.chat_id = x.chat_id AND k.lease_until >= now())),
claimed AS (
    INSERT INTO chat_claims (chat_id, owner, lease_until)
    SELECT chat_id, $1, now() + make_interval(secs => $2) FROM free ORDER BY n
    ON CONFLICT (chat_id) DO UPDATE SET owner = excluded.owner, lease_until = excluded.lease_until
    WHERE chat_claims.lease_until < now()
    RETURNING chat_id),
held AS (
    UPDATE chat_claims c SET lease_until = now() + make_interval(secs => $2)
    WHERE c.owner = $1 AND c.lease_until >= now() AND EXISTS (
        SELECT 1 FROM telegram_updates w
        WHERE w.chat_id = c.chat_id AND w.handled_at IS NULL AND w.dead_at IS NULL
          AND ($4 OR w.owner <> $1))
    RETURNING c.chat_id),
mine AS (SELECT chat_id FROM claimed UNION SELECT chat_id FROM held),
picked AS (
    SELECT u.update_id, u.owner AS was FROM telegram_updates u
    WHERE u.chat_id IN (SELECT chat_id FROM mine)
      AND u.handled_at IS NULL AND u.dead_at IS NULL AND ($4 OR u.owner <> $1)
    ORDER BY u.update_id LIMIT $5
    FOR UPDATE OF u)
UPDATE telegram_updates t SET owner = $1 FROM picked
WHERE t.update_id = picked.update_id
RETURNING t.update_id, t.chat_id, t.payload, t.attempts, picked.was";

/// A round's claim-and-take.
struct Take<'a> {
    owner: &'a str,
    lease: Duration,
    candidates: &'a [i64],
    again: bool,
}

impl Take<'_> {
    async fn run(self, conn: &mut PgConnection) -> Result<Vec<InboxUpdate>, StoreError> {
        let rows = sqlx::query(CLAIM_AND_TAKE)
            .bind(self.owner)
            .bind(self.lease.as_secs_f64())
            .bind(self.candidates)
            .bind(self.again)
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
        let rows = sqlx::query(RECORD_AND_TAKE)
            .bind(owner)
            .bind(lease.as_secs_f64())
            .bind(&ids)
            .bind(&chats)
            .bind(&payloads)
            .bind(TAKE_MAX)
            .fetch_all(&mut *conn)
            .await?;
        let mut recorded = Recorded::default();
        for row in &rows {
            let update = InboxUpdate {
                id: row.try_get(0)?,
                chat: row.try_get(1)?,
                payload: row.try_get(2)?,
                attempts: attempts(row.try_get(3)?),
                replay: !row.try_get::<String, _>(4)?.is_empty(),
            };
            if row.try_get::<bool, _>(5)? {
                recorded.new.push(update.id);
            }
            if row.try_get::<bool, _>(6)? {
                recorded.taken.push(update);
            }
        }
        recorded.new.sort_unstable();
        recorded.taken.sort_by_key(|u| u.id);
        Ok(recorded)
    }

    pub(crate) async fn take_updates(
        &self,
        owner: &str,
        which: Unhandled,
        lease: Duration,
    ) -> Result<Vec<InboxUpdate>, StoreError> {
        let (again, leave_fresh) = which.again_and_leave_fresh();
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
            again,
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
             WHERE handled_at IS NULL AND dead_at IS NULL AND update_id = ANY($1)",
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
    ) -> Result<SetAside, StoreError> {
        let mut conn = self.connection().await?;
        // Received at the epoch: an operator retried it (see `retry_dead_letter`).
        let row = sqlx::query(
            "UPDATE telegram_updates SET dead_at = now(), last_error = $2
             WHERE update_id = $1 AND handled_at IS NULL AND dead_at IS NULL
             RETURNING received_at = 'epoch'",
        )
        .bind(id)
        .bind(error)
        .fetch_optional(&mut *conn)
        .await?;
        Ok(match row {
            None => SetAside::NotWaiting,
            Some(row) if row.try_get::<bool, _>(0)? => SetAside::AfterRetry,
            Some(_) => SetAside::First,
        })
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

    pub(crate) async fn retry_dead_letter(
        &self,
        id: i64,
        attempts: u32,
    ) -> Result<bool, StoreError> {
        let mut conn = self.connection().await?;
        // No replica's, received long ago (at the epoch, the mark of a retry): the next sweep
        // of any replica takes it, as a replay (see RETRIED_OWNER).
        let done = sqlx::query(
            "UPDATE telegram_updates
             SET dead_at = NULL, attempts = $2, owner = $3, received_at = 'epoch'
             WHERE update_id = $1 AND dead_at IS NOT NULL",
        )
        .bind(id)
        .bind(i32::try_from(attempts).unwrap_or(i32::MAX))
        .bind(crate::inbox::RETRIED_OWNER)
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
