//! PostgreSQL schema migrations, applied in order under an advisory lock (so replicas starting
//! together do not race) and recorded in `genbot_schema_version`.

use sqlx::{Executor, PgPool, Row};

use crate::StoreError;

/// The schema version the last migration brings a database to (`genbot doctor` compares).
pub(crate) const LATEST: u32 = MIGRATIONS.len() as u32;

/// Each entry moves the schema from version `index` to `index + 1`.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE users (
    id               BIGINT PRIMARY KEY,            -- Telegram user id
    username         TEXT,
    language         TEXT,
    selected_model   TEXT,
    credits          BIGINT  NOT NULL DEFAULT 0,
    daily_count      INTEGER NOT NULL DEFAULT 0,
    daily_reset_date DATE    NOT NULL DEFAULT DATE '1970-01-01',  -- UTC day of daily_count
    banned           BOOLEAN NOT NULL DEFAULT FALSE,
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL
);

CREATE TABLE generation_jobs (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id       BIGINT  NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    model         TEXT    NOT NULL,
    prompt        TEXT    NOT NULL,
    params        JSONB   NOT NULL,
    status        TEXT    NOT NULL CHECK (status IN ('queued','running','succeeded','failed','canceled')),
    prediction_id TEXT,
    result_url    TEXT,
    error         TEXT,
    attempts      INTEGER NOT NULL DEFAULT 0,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL,
    started_at    TIMESTAMPTZ,
    finished_at   TIMESTAMPTZ
);

-- Claiming the oldest queued job (FOR UPDATE SKIP LOCKED walks this index in id order),
-- finding `running` jobs after a restart and counting jobs by status all filter on status:
-- one (status, id) index serves the three without scanning finished jobs.
CREATE INDEX generation_jobs_status_id ON generation_jobs (status, id);

-- Per-user questions (running jobs of a user, a user's queued job for /cancel, range deletes)
-- filter on user_id first; this also serves the foreign key's ON DELETE CASCADE.
CREATE INDEX generation_jobs_user_status ON generation_jobs (user_id, status);
"#,
    // v2: exactly once across crashes and replicas. A job carries what it charged and refunded,
    // its owner's lease and its create intent; users carry the ledger's starting point and their
    // place in the round-robin.
    r#"
ALTER TABLE generation_jobs
    ADD COLUMN charged_credits  BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN refunded_credits BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN quota_day        DATE,
    ADD COLUMN owner            TEXT,
    ADD COLUMN lease_until      TIMESTAMPTZ,
    ADD COLUMN create_intent_at TIMESTAMPTZ;

ALTER TABLE users
    ADD COLUMN initial_credits  BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN credits_adjusted BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN queue_turn       BIGINT NOT NULL DEFAULT 0;
-- Jobs before v2 charged nothing on the job row: their users' ledger starts at today's balance.
UPDATE users SET initial_credits = credits;

CREATE SEQUENCE genbot_queue_turn;

-- The fair claim reads each user's oldest queued job.
CREATE INDEX generation_jobs_queued_user ON generation_jobs (user_id, id) WHERE status = 'queued';
"#,
    // v3: the counts the claim and the acceptance check, kept by triggers in the same transaction
    // as the rows they count, so both are O(1) instead of a scan of the queue.
    r#"
ALTER TABLE users
    ADD COLUMN queued_jobs  INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN running_jobs INTEGER NOT NULL DEFAULT 0;
UPDATE users SET
    queued_jobs  = (SELECT count(*) FROM generation_jobs j WHERE j.user_id = users.id AND j.status = 'queued'),
    running_jobs = (SELECT count(*) FROM generation_jobs j WHERE j.user_id = users.id AND j.status = 'running');

-- One row per job status, plus `queued_users`: users with at least one queued job.
CREATE TABLE genbot_job_counts (name TEXT PRIMARY KEY, n BIGINT NOT NULL);
INSERT INTO genbot_job_counts (name, n)
    SELECT s.name, (SELECT count(*) FROM generation_jobs j WHERE j.status = s.name)
    FROM (VALUES ('queued'), ('running'), ('succeeded'), ('failed'), ('canceled')) AS s(name);
INSERT INTO genbot_job_counts (name, n)
    SELECT 'queued_users', count(*) FROM users WHERE queued_jobs > 0;

CREATE FUNCTION genbot_count_jobs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        UPDATE users SET queued_jobs  = queued_jobs  - (OLD.status = 'queued')::int,
                         running_jobs = running_jobs - (OLD.status = 'running')::int
        WHERE id = OLD.user_id;
        UPDATE genbot_job_counts SET n = n - 1 WHERE name = OLD.status;
    END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') THEN
        UPDATE users SET queued_jobs  = queued_jobs  + (NEW.status = 'queued')::int,
                         running_jobs = running_jobs + (NEW.status = 'running')::int
        WHERE id = NEW.user_id;
        UPDATE genbot_job_counts SET n = n + 1 WHERE name = NEW.status;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER generation_jobs_counted AFTER INSERT OR DELETE ON generation_jobs
    FOR EACH ROW EXECUTE FUNCTION genbot_count_jobs();
CREATE TRIGGER generation_jobs_counted_update AFTER UPDATE OF status ON generation_jobs
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION genbot_count_jobs();

CREATE FUNCTION genbot_count_queued_users() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.queued_jobs > 0 THEN
            UPDATE genbot_job_counts SET n = n - 1 WHERE name = 'queued_users';
        END IF;
    ELSIF (OLD.queued_jobs > 0) <> (NEW.queued_jobs > 0) THEN
        UPDATE genbot_job_counts SET n = n + CASE WHEN NEW.queued_jobs > 0 THEN 1 ELSE -1 END
        WHERE name = 'queued_users';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER users_queued_counted AFTER UPDATE OF queued_jobs OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION genbot_count_queued_users();

-- The claim walks users with queued jobs in turn order.
CREATE INDEX users_waiting_turn ON users (queue_turn, id) WHERE queued_jobs > 0;
"#,
    // v4: the delivery outbox. A finished job is delivered by a worker that records it; one not yet
    // delivered (a crash, a Telegram error) is sent again by whichever replica claims it next.
    r#"
ALTER TABLE generation_jobs
    ADD COLUMN delivered_at      TIMESTAMPTZ,
    ADD COLUMN delivery_attempts INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN delivery_error    TEXT,
    ADD COLUMN delivery_owner    TEXT,
    ADD COLUMN delivery_due      TIMESTAMPTZ,
    ADD COLUMN telegram_file_id  TEXT;
ALTER TABLE users ADD COLUMN blocked_at TIMESTAMPTZ;
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
    job_id    BIGINT  PRIMARY KEY REFERENCES generation_jobs(id) ON DELETE CASCADE,
    file_name TEXT    NOT NULL,
    bytes     BYTEA   NOT NULL,
    stored_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
"#,
    // v6: the update inbox. An update taken from Telegram is recorded before Telegram is told it
    // was received (the next getUpdates offset), and marked when handled; a crash in between
    // replays it at the next start. A prompt's job carries its update, so a replay never
    // charges twice.
    r#"
CREATE TABLE telegram_updates (
    update_id   BIGINT PRIMARY KEY,
    payload     TEXT   NOT NULL,  -- the update's JSON as received
    owner       TEXT   NOT NULL,  -- the replica that received (or replays) it
    received_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    handled_at  TIMESTAMPTZ
);
CREATE INDEX telegram_updates_unhandled ON telegram_updates (update_id) WHERE handled_at IS NULL;
ALTER TABLE generation_jobs ADD COLUMN source_update BIGINT;
CREATE UNIQUE INDEX generation_jobs_source_update ON generation_jobs (source_update)
WHERE source_update IS NOT NULL;
"#,
    // v7: the Telegram Stars ledger. A payment is recorded with its credits in one transaction,
    // once per Telegram charge id, so a repeated `successful_payment` adds nothing.
    r#"
CREATE TABLE star_payments (
    charge_id    TEXT        PRIMARY KEY,  -- telegram_payment_charge_id
    user_id      BIGINT      NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    stars        BIGINT      NOT NULL,
    credits      BIGINT      NOT NULL,
    paid_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    refund_state TEXT        CHECK (refund_state IN ('refunding', 'refunded')),
    refund_at    TIMESTAMPTZ               -- when the credits were taken back
);
CREATE INDEX star_payments_user ON star_payments (user_id, paid_at);
"#,
    // v8: inputs users set with /settings, per model (JSON object of objects).
    r#"
ALTER TABLE users ADD COLUMN model_settings JSONB NOT NULL DEFAULT '{}';
"#,
    // v9: results asked for in a group go there, as a reply to the asking message.
    r#"
ALTER TABLE generation_jobs ADD COLUMN reply_chat    BIGINT;
ALTER TABLE generation_jobs ADD COLUMN reply_message BIGINT;
"#,
    // v10: admin broadcasts, resumable from their cursor after a crash.
    r#"
CREATE TABLE broadcasts (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    admin_id         BIGINT      NOT NULL,
    text             TEXT        NOT NULL,
    progress_message BIGINT,                      -- the admin's progress message
    cursor           BIGINT      NOT NULL DEFAULT 0,  -- last user id sent to
    delivered        BIGINT      NOT NULL DEFAULT 0,
    blocked          BIGINT      NOT NULL DEFAULT 0,
    failed           BIGINT      NOT NULL DEFAULT 0,
    done             BOOLEAN     NOT NULL DEFAULT FALSE,
    owner            TEXT        NOT NULL,
    lease_until      TIMESTAMPTZ NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);
"#,
    // v11: the file_id Telegram gave an image sent as a document ("as file"): sent again by
    // id, also after the original bytes are pruned.
    r#"
CREATE TABLE job_documents (
    job_id  BIGINT PRIMARY KEY REFERENCES generation_jobs(id) ON DELETE CASCADE,
    file_id TEXT   NOT NULL
);
"#,
    // v12: poison updates are quarantined: failed or interrupted attempts are counted, and an
    // update past its limit is dead-lettered (kept with its error, never replayed until an
    // operator retries it). A broadcast carries the update that started it, so a replay of
    // that update does not start it twice.
    r#"
ALTER TABLE telegram_updates ADD COLUMN attempts   INTEGER NOT NULL DEFAULT 0;
ALTER TABLE telegram_updates ADD COLUMN dead_at    TIMESTAMPTZ;
ALTER TABLE telegram_updates ADD COLUMN last_error TEXT;
ALTER TABLE broadcasts ADD COLUMN source_update BIGINT;
CREATE UNIQUE INDEX broadcasts_source_update ON broadcasts (source_update)
WHERE source_update IS NOT NULL;
"#,
    // v13: named leases among replicas (the right to poll Telegram: one poller at a time).
    r#"
CREATE TABLE leases (
    name        TEXT        PRIMARY KEY,
    owner       TEXT        NOT NULL,
    lease_until TIMESTAMPTZ NOT NULL
);
"#,
    // v14: a Replicate webhook's prediction outcome, recorded by whichever replica received it
    // for the replica running the job (which takes it within a fraction of a second).
    r#"
CREATE TABLE prediction_outcomes (
    prediction_id TEXT        PRIMARY KEY,
    payload       TEXT        NOT NULL,  -- the prediction as JSON, without its input
    received_at   TIMESTAMPTZ NOT NULL
);
"#,
    // v15: handling spreads over the replicas. Each update carries its chat (its sender's when
    // it has none, 0 when neither); a replica handles a chat's updates only while it holds the
    // chat's claim (renewed by its heartbeat, released when none of them waits), so one chat's
    // updates are handled in order by one replica at a time. `owner` is now the replica that
    // took an update for handling ('' until one does). Replicas that handle updates hold an
    // `inbox-member:` lease, so a recorder knows how many share the work.
    r#"
ALTER TABLE telegram_updates ADD COLUMN chat_id BIGINT NOT NULL DEFAULT 0;
UPDATE telegram_updates SET chat_id = coalesce(
    (payload::json #>> '{message,chat,id}')::bigint,
    (payload::json #>> '{edited_message,chat,id}')::bigint,
    (payload::json #>> '{channel_post,chat,id}')::bigint,
    (payload::json #>> '{edited_channel_post,chat,id}')::bigint,
    (payload::json #>> '{callback_query,message,chat,id}')::bigint,
    (payload::json #>> '{my_chat_member,chat,id}')::bigint,
    (payload::json #>> '{chat_member,chat,id}')::bigint,
    (payload::json #>> '{chat_join_request,chat,id}')::bigint,
    (payload::json #>> '{message_reaction,chat,id}')::bigint,
    (payload::json #>> '{callback_query,from,id}')::bigint,
    (payload::json #>> '{pre_checkout_query,from,id}')::bigint,
    (payload::json #>> '{shipping_query,from,id}')::bigint,
    (payload::json #>> '{inline_query,from,id}')::bigint,
    (payload::json #>> '{chosen_inline_result,from,id}')::bigint,
    (payload::json #>> '{poll_answer,user,id}')::bigint,
    0)
WHERE handled_at IS NULL;
CREATE INDEX telegram_updates_waiting ON telegram_updates (chat_id, update_id)
WHERE handled_at IS NULL AND dead_at IS NULL;
CREATE TABLE chat_claims (
    chat_id     BIGINT      PRIMARY KEY,
    owner       TEXT        NOT NULL,
    lease_until TIMESTAMPTZ NOT NULL
);
CREATE INDEX chat_claims_owner ON chat_claims (owner);
"#,
];

/// An arbitrary constant naming genbot's migration lock.
const MIGRATION_LOCK: i64 = 0x6765_6e62_6f74; // "genbot"

pub(super) async fn migrate(pool: &PgPool) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    // `CREATE TABLE IF NOT EXISTS` below answers every start after the first with a NOTICE
    // ("already exists, skipping") that sqlx logs at info: every operator command run with
    // RUST_LOG=info, and every `genbot serve`, printed it. LOCAL: the pooled connection goes
    // back to the server's setting at the end of this transaction; warnings still come.
    tx.execute("SET LOCAL client_min_messages = warning")
        .await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *tx)
        .await?;
    tx.execute("CREATE TABLE IF NOT EXISTS genbot_schema_version (version INTEGER NOT NULL)")
        .await?;
    let current: i32 = sqlx::query("SELECT coalesce(max(version), 0) FROM genbot_schema_version")
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
    if current > LATEST as i32 {
        return Err(StoreError::SchemaTooNew {
            found: current as u32,
            latest: LATEST,
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current.max(0) as usize) {
        let version = index as u32 + 1;
        let failed = |e: sqlx::Error| StoreError::Migration {
            version,
            reason: e.to_string(),
        };
        tx.execute(*sql).await.map_err(failed)?;
        sqlx::query("INSERT INTO genbot_schema_version (version) VALUES ($1)")
            .bind(version as i32)
            .execute(&mut *tx)
            .await
            .map_err(failed)?;
    }
    tx.commit().await?;
    Ok(())
}
