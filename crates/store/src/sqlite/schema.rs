//! SQLite schema migrations, applied in order and recorded in `PRAGMA user_version`.

use rusqlite::Connection;

use crate::StoreError;

/// The schema version the last migration brings a database to (`genbot doctor` compares).
pub(crate) const LATEST: u32 = MIGRATIONS.len() as u32;

/// Each entry moves the schema from version `index` to `index + 1`.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE users (
    id               INTEGER PRIMARY KEY,          -- Telegram user id
    username         TEXT,
    language         TEXT,
    selected_model   TEXT,
    credits          INTEGER NOT NULL DEFAULT 0,
    daily_count      INTEGER NOT NULL DEFAULT 0,
    daily_reset_date TEXT    NOT NULL DEFAULT '1970-01-01',  -- YYYY-MM-DD, UTC
    banned           INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL,             -- unix milliseconds
    updated_at       INTEGER NOT NULL
);

CREATE TABLE generation_jobs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT, -- AUTOINCREMENT: ids are never reused, so a
                                                     -- job id seen by a user always means one job
    user_id       INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    model         TEXT    NOT NULL,
    prompt        TEXT    NOT NULL,
    params        TEXT    NOT NULL,                  -- JSON
    status        TEXT    NOT NULL CHECK (status IN ('queued','running','succeeded','failed','canceled')),
    prediction_id TEXT,
    result_url    TEXT,
    error         TEXT,
    attempts      INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    started_at    INTEGER,
    finished_at   INTEGER
);

-- Claiming the oldest queued job, finding `running` jobs after a restart and counting jobs by
-- status all filter on status and order by id: one (status, id) index serves the three without
-- scanning the finished jobs that pile up.
CREATE INDEX generation_jobs_status_id ON generation_jobs (status, id);

-- Per-user questions (how many of my jobs run now, my queued job for /cancel, range deletes of
-- a user's jobs) filter on user_id first.
CREATE INDEX generation_jobs_user_status ON generation_jobs (user_id, status);
"#,
    // v2: exactly once across crashes. A job carries what it charged and refunded, its owner's
    // lease and its create intent; users carry the ledger's starting point and their place in the
    // round-robin.
    r#"
ALTER TABLE generation_jobs ADD COLUMN charged_credits  INTEGER NOT NULL DEFAULT 0;
ALTER TABLE generation_jobs ADD COLUMN refunded_credits INTEGER NOT NULL DEFAULT 0;
ALTER TABLE generation_jobs ADD COLUMN quota_day        TEXT;     -- YYYY-MM-DD, UTC
ALTER TABLE generation_jobs ADD COLUMN owner            TEXT;
ALTER TABLE generation_jobs ADD COLUMN lease_until      INTEGER;  -- unix milliseconds
ALTER TABLE generation_jobs ADD COLUMN create_intent_at INTEGER;

ALTER TABLE users ADD COLUMN initial_credits  INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN credits_adjusted INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN queue_turn       INTEGER NOT NULL DEFAULT 0;
UPDATE users SET initial_credits = credits;

CREATE TABLE genbot_counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT INTO genbot_counters (name, value) VALUES ('queue_turn', 0);

CREATE INDEX generation_jobs_queued_user ON generation_jobs (user_id, id) WHERE status = 'queued';
"#,
    // v3: the counts the claim and the acceptance check, kept by triggers in the same transaction
    // as the rows they count, so both are O(1) instead of a scan of the queue.
    r#"
ALTER TABLE users ADD COLUMN queued_jobs  INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN running_jobs INTEGER NOT NULL DEFAULT 0;
UPDATE users SET
    queued_jobs  = (SELECT count(*) FROM generation_jobs j WHERE j.user_id = users.id AND j.status = 'queued'),
    running_jobs = (SELECT count(*) FROM generation_jobs j WHERE j.user_id = users.id AND j.status = 'running');

-- One row per job status, plus `queued_users`: users with at least one queued job.
CREATE TABLE genbot_job_counts (name TEXT PRIMARY KEY, n INTEGER NOT NULL);
INSERT INTO genbot_job_counts (name, n)
    SELECT s.name, (SELECT count(*) FROM generation_jobs j WHERE j.status = s.name)
    FROM (SELECT 'queued' AS name UNION ALL SELECT 'running' UNION ALL SELECT 'succeeded'
          UNION ALL SELECT 'failed' UNION ALL SELECT 'canceled') s;
INSERT INTO genbot_job_counts (name, n)
    SELECT 'queued_users', count(*) FROM users WHERE queued_jobs > 0;

CREATE TRIGGER generation_jobs_counted_insert AFTER INSERT ON generation_jobs BEGIN
    UPDATE users SET queued_jobs  = queued_jobs  + (NEW.status = 'queued'),
                     running_jobs = running_jobs + (NEW.status = 'running')
    WHERE id = NEW.user_id;
    UPDATE genbot_job_counts SET n = n + 1 WHERE name = NEW.status;
END;
CREATE TRIGGER generation_jobs_counted_update AFTER UPDATE OF status ON generation_jobs
WHEN OLD.status <> NEW.status BEGIN
    UPDATE users SET
        queued_jobs  = queued_jobs  - (OLD.status = 'queued')  + (NEW.status = 'queued'),
        running_jobs = running_jobs - (OLD.status = 'running') + (NEW.status = 'running')
    WHERE id = NEW.user_id;
    UPDATE genbot_job_counts SET n = n - 1 WHERE name = OLD.status;
    UPDATE genbot_job_counts SET n = n + 1 WHERE name = NEW.status;
END;
CREATE TRIGGER generation_jobs_counted_delete AFTER DELETE ON generation_jobs BEGIN
    UPDATE users SET queued_jobs  = queued_jobs  - (OLD.status = 'queued'),
                     running_jobs = running_jobs - (OLD.status = 'running')
    WHERE id = OLD.user_id;
    UPDATE genbot_job_counts SET n = n - 1 WHERE name = OLD.status;
END;
CREATE TRIGGER users_queued_counted AFTER UPDATE OF queued_jobs ON users
WHEN (OLD.queued_jobs > 0) <> (NEW.queued_jobs > 0) BEGIN
    UPDATE genbot_job_counts SET n = n + (CASE WHEN NEW.queued_jobs > 0 THEN 1 ELSE -1 END)
    WHERE name = 'queued_users';
END;
CREATE TRIGGER users_queued_uncounted AFTER DELETE ON users WHEN OLD.queued_jobs > 0 BEGIN
    UPDATE genbot_job_counts SET n = n - 1 WHERE name = 'queued_users';
END;

-- The claim walks users with queued jobs in turn order.
CREATE INDEX users_waiting_turn ON users (queue_turn, id) WHERE queued_jobs > 0;
"#,
    // v4: the delivery outbox. A finished job is delivered by a worker that records it; one not yet
    // delivered (a crash, a Telegram error) is sent again by whichever replica claims it next.
    r#"
ALTER TABLE generation_jobs ADD COLUMN delivered_at      INTEGER;  -- unix ms; NULL = not yet
ALTER TABLE generation_jobs ADD COLUMN delivery_attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE generation_jobs ADD COLUMN delivery_error    TEXT;
ALTER TABLE generation_jobs ADD COLUMN delivery_owner    TEXT;
ALTER TABLE generation_jobs ADD COLUMN delivery_due      INTEGER;  -- not before (lease, backoff)
ALTER TABLE generation_jobs ADD COLUMN telegram_file_id  TEXT;
ALTER TABLE users ADD COLUMN blocked_at INTEGER;
-- Results finished before the outbox existed were delivered (or lost) by then.
UPDATE generation_jobs SET delivered_at = coalesce(finished_at, updated_at)
WHERE status IN ('succeeded', 'failed');
CREATE INDEX generation_jobs_undelivered ON generation_jobs (id)
WHERE delivered_at IS NULL AND status IN ('succeeded', 'failed');
"#,
    // v5: a succeeded job's image, downloaded as soon as its prediction succeeded (Replicate
    // deletes outputs after an hour), kept until it reached the user.
    r#"
CREATE TABLE job_images (
    job_id    INTEGER PRIMARY KEY REFERENCES generation_jobs(id) ON DELETE CASCADE,
    file_name TEXT    NOT NULL,
    bytes     BLOB    NOT NULL,
    stored_at INTEGER NOT NULL  -- unix ms
);
"#,
    // v6: the update inbox. An update taken from Telegram is recorded before Telegram is told it
    // was received (the next getUpdates offset), and marked when handled; a crash in between
    // replays it at the next start. A prompt's job carries its update, so a replay never
    // charges twice.
    r#"
CREATE TABLE telegram_updates (
    update_id   INTEGER PRIMARY KEY,
    payload     TEXT   NOT NULL,  -- the update's JSON as received
    owner       TEXT   NOT NULL,  -- the replica that received (or replays) it
    received_at INTEGER NOT NULL,
    handled_at  INTEGER
);
CREATE INDEX telegram_updates_unhandled ON telegram_updates (update_id) WHERE handled_at IS NULL;
ALTER TABLE generation_jobs ADD COLUMN source_update INTEGER;
CREATE UNIQUE INDEX generation_jobs_source_update ON generation_jobs (source_update)
WHERE source_update IS NOT NULL;
"#,
    // v7: the Telegram Stars ledger. A payment is recorded with its credits in one transaction,
    // once per Telegram charge id, so a repeated `successful_payment` adds nothing.
    r#"
CREATE TABLE star_payments (
    charge_id    TEXT    PRIMARY KEY,  -- telegram_payment_charge_id
    user_id      INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    stars        INTEGER NOT NULL,
    credits      INTEGER NOT NULL,
    paid_at      INTEGER NOT NULL,     -- unix ms
    refund_state TEXT    CHECK (refund_state IN ('refunding', 'refunded')),
    refund_at    INTEGER               -- when the credits were taken back
);
CREATE INDEX star_payments_user ON star_payments (user_id, paid_at);
"#,
    // v8: inputs users set with /settings, per model (JSON object of objects).
    r#"
ALTER TABLE users ADD COLUMN model_settings TEXT NOT NULL DEFAULT '{}';
"#,
    // v9: results asked for in a group go there, as a reply to the asking message.
    r#"
ALTER TABLE generation_jobs ADD COLUMN reply_chat    INTEGER;
ALTER TABLE generation_jobs ADD COLUMN reply_message INTEGER;
"#,
    // v10: admin broadcasts, resumable from their cursor after a crash.
    r#"
CREATE TABLE broadcasts (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    admin_id         INTEGER NOT NULL,
    text             TEXT    NOT NULL,
    progress_message INTEGER,             -- the admin's progress message
    cursor           INTEGER NOT NULL DEFAULT 0,  -- last user id sent to
    delivered        INTEGER NOT NULL DEFAULT 0,
    blocked          INTEGER NOT NULL DEFAULT 0,
    failed           INTEGER NOT NULL DEFAULT 0,
    done             INTEGER NOT NULL DEFAULT 0,
    owner            TEXT    NOT NULL,
    lease_until      INTEGER NOT NULL,    -- unix ms
    created_at       INTEGER NOT NULL
);
"#,
    // v11: the file_id Telegram gave an image sent as a document ("as file"): sent again by
    // id, also after the original bytes are pruned.
    r#"
CREATE TABLE job_documents (
    job_id  INTEGER PRIMARY KEY REFERENCES generation_jobs(id) ON DELETE CASCADE,
    file_id TEXT    NOT NULL
);
"#,
    // v12: poison updates are quarantined: failed or interrupted attempts are counted, and an
    // update past its limit is dead-lettered (kept with its error, never replayed until an
    // operator retries it). A broadcast carries the update that started it, so a replay of
    // that update does not start it twice.
    r#"
ALTER TABLE telegram_updates ADD COLUMN attempts   INTEGER NOT NULL DEFAULT 0;
ALTER TABLE telegram_updates ADD COLUMN dead_at    INTEGER;
ALTER TABLE telegram_updates ADD COLUMN last_error TEXT;
ALTER TABLE broadcasts ADD COLUMN source_update INTEGER;
CREATE UNIQUE INDEX broadcasts_source_update ON broadcasts (source_update)
WHERE source_update IS NOT NULL;
"#,
    // v13: named leases among replicas (the right to poll Telegram: one poller at a time).
    r#"
CREATE TABLE leases (
    name        TEXT    PRIMARY KEY,
    owner       TEXT    NOT NULL,
    lease_until INTEGER NOT NULL  -- unix ms
);
"#,
    // v14: a Replicate webhook's prediction outcome, recorded by whichever replica received it
    // for the replica running the job.
    r#"
CREATE TABLE prediction_outcomes (
    prediction_id TEXT    PRIMARY KEY,
    payload       TEXT    NOT NULL,  -- the prediction as JSON, without its input
    received_at   INTEGER NOT NULL   -- unix ms
);
"#,
    // v15: handling spreads over the replicas (see the PostgreSQL schema; on SQLite one process
    // holds every claim). Each update carries its chat; `owner` is the replica that took it for
    // handling ('' until one does).
    r#"
ALTER TABLE telegram_updates ADD COLUMN chat_id INTEGER NOT NULL DEFAULT 0;
UPDATE telegram_updates SET chat_id = coalesce(
    json_extract(payload, '$.message.chat.id'),
    json_extract(payload, '$.edited_message.chat.id'),
    json_extract(payload, '$.channel_post.chat.id'),
    json_extract(payload, '$.edited_channel_post.chat.id'),
    json_extract(payload, '$.callback_query.message.chat.id'),
    json_extract(payload, '$.my_chat_member.chat.id'),
    json_extract(payload, '$.chat_member.chat.id'),
    json_extract(payload, '$.chat_join_request.chat.id'),
    json_extract(payload, '$.message_reaction.chat.id'),
    json_extract(payload, '$.callback_query.from.id'),
    json_extract(payload, '$.pre_checkout_query.from.id'),
    json_extract(payload, '$.shipping_query.from.id'),
    json_extract(payload, '$.inline_query.from.id'),
    json_extract(payload, '$.chosen_inline_result.from.id'),
    json_extract(payload, '$.poll_answer.user.id'),
    0)
WHERE handled_at IS NULL AND json_valid(payload);
CREATE INDEX telegram_updates_waiting ON telegram_updates (chat_id, update_id)
WHERE handled_at IS NULL AND dead_at IS NULL;
CREATE TABLE chat_claims (
    chat_id     INTEGER PRIMARY KEY,
    owner       TEXT    NOT NULL,
    lease_until INTEGER NOT NULL  -- unix ms
);
CREATE INDEX chat_claims_owner ON chat_claims (owner);
"#,
    // v16: waiting updates by who took them. A replica's round (every 100 ms) and its record
    // first ask whether any waiting update is not its own (two range probes here) and skip the
    // scan of every waiting update when none is: on one process, almost always.
    r#"
CREATE INDEX telegram_updates_waiting_owner ON telegram_updates (owner)
WHERE handled_at IS NULL AND dead_at IS NULL;
"#,
    // v17: a user's credit movements (`/balance`) read in index order. Each of the ledger
    // query's four parts found its rows by user and then sorted them in a temporary B-tree
    // (generation jobs by user and status, not id; refunds by user and purchase date): four
    // sorters set up per `/balance`, most of the query's cost when a user has no movements.
    // With these the parts come out in the order they are limited by, and only the merge sorts.
    r#"
CREATE INDEX generation_jobs_user_charged ON generation_jobs (user_id)
WHERE charged_credits > 0;
CREATE INDEX generation_jobs_user_refunded ON generation_jobs (user_id)
WHERE refunded_credits > 0;
CREATE INDEX star_payments_user_refund ON star_payments (user_id, refund_at)
WHERE refund_state IS NOT NULL;
"#,
];

/// Brings the database to the latest schema version inside one transaction per migration.
///
/// Each step takes the write lock first (`BEGIN IMMEDIATE`) and reads the version under it, so
/// two processes opening the same file at once (a restart beside a reader, a tool) apply each
/// migration once instead of racing to apply it twice.
pub(super) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let found: u32 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if found > LATEST {
        return Err(StoreError::SchemaTooNew {
            found,
            latest: LATEST,
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate() {
        let version = index as u32 + 1;
        let failed = |e: rusqlite::Error| StoreError::Migration {
            version,
            reason: e.to_string(),
        };
        let current: u32 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
        if current >= version {
            continue;
        }
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(failed)?;
        let current: u32 = tx
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(failed)?;
        if current >= version {
            continue;
        }
        tx.execute_batch(sql).map_err(failed)?;
        tx.pragma_update(None, "user_version", version)
            .map_err(failed)?;
        tx.commit().map_err(failed)?;
    }
    Ok(())
}
