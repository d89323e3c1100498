//! The SQLite backend: the embedded default.
//!
//! Reads go through a pool of read-only connections ([`connection::ReadPool`]); writes go to
//! one writer thread that commits them in groups ([`writer::Writer`]). Claims are writes, so
//! two workers can never claim the same job: the writer runs one claim at a time.

mod broadcast;
mod checkpoint;
mod connection;
mod history;
mod inbox;
mod leases;
mod lifecycle;
mod outbox;
mod outcomes;
mod payments;
mod rows;
mod schema;

pub(crate) use schema::LATEST as SCHEMA_LATEST;
mod writer;

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveDate, Utc};
use rusqlite::{params, Connection, OptionalExtension};

use self::connection::ReadPool;
use self::rows::{date_text, millis};
use self::writer::Writer;
use crate::columns::{job_columns, user_columns};
use crate::{
    DailyQuota, Deleted, Job, JobCounts, JobId, JobStatus, JobUpdate, NewJob, NewUser, PoolStats,
    StoreError, User, UserId,
};

/// Users and jobs in an SQLite file.
#[derive(Clone)]
pub struct SqliteStore {
    readers: Arc<ReadPool>,
    writer: Writer,
    _checkpoints: checkpoint::Checkpointer,
    path: PathBuf,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// How a SQLite store's connections behave, beyond the file and the pool size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqliteOptions {
    /// How long a connection waits on a lock held by another before the operation fails as
    /// busy (transient). Readers never wait in WAL mode; this covers the writer meeting an
    /// external process (a backup, `sqlite3`). Default 5 s; tests that hold such a lock on
    /// purpose set it shorter so an outage of a few tries takes a second, not half a minute.
    pub busy_timeout: Duration,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            busy_timeout: Duration::from_secs(5),
        }
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, migrates it, and opens
    /// `read_connections` readers beside the one writer, with [`SqliteOptions::default`].
    ///
    /// # Errors
    /// The file cannot be opened or created, or a migration fails.
    pub fn open(path: &Path, read_connections: u32) -> Result<Self, StoreError> {
        Self::open_with(path, read_connections, SqliteOptions::default())
    }

    /// As [`SqliteStore::open`], with `options`.
    ///
    /// # Errors
    /// The file cannot be opened or created, or a migration fails.
    pub fn open_with(
        path: &Path,
        read_connections: u32,
        options: SqliteOptions,
    ) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| StoreError::Connect {
                backend: "sqlite",
                location: path.display().to_string(),
                reason: e.to_string(),
            })?;
        }
        let mut writer_conn = connection::open(path, true, options.busy_timeout)?;
        schema::migrate(&mut writer_conn)?;
        // The checkpoint thread copies the WAL on; the writer's own is only a backstop.
        writer_conn
            .pragma_update(
                None,
                "wal_autocheckpoint",
                checkpoint::WRITER_BACKSTOP_PAGES,
            )
            .map_err(|e| StoreError::Connect {
                backend: "sqlite",
                location: path.display().to_string(),
                reason: e.to_string(),
            })?;
        let readers = ReadPool::open(path, read_connections.max(1), options.busy_timeout)?;
        Ok(SqliteStore {
            readers: Arc::new(readers),
            writer: Writer::spawn(writer_conn)?,
            _checkpoints: checkpoint::Checkpointer::spawn(path, options.busy_timeout)?,
            path: path.to_owned(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How durable a returned write is, stated for reports.
    pub fn durability(&self) -> &'static str {
        "SQLite WAL, synchronous=NORMAL, group commit: a returned write survives a process crash; \
         a power loss may drop the last commits without corrupting the file"
    }

    pub(crate) fn pool_stats(&self) -> PoolStats {
        self.readers.stats()
    }

    pub(crate) async fn get_user(&self, id: UserId) -> Result<Option<User>, StoreError> {
        self.readers.with(|conn| select_user(conn, id)).await
    }

    pub(crate) async fn count_users(&self) -> Result<u64, StoreError> {
        self.readers
            .with(|conn| Ok(conn.query_row("SELECT count(*) FROM users", [], |r| r.get(0))?))
            .await
    }

    pub(crate) async fn count_users_in_range(&self, ids: Range<i64>) -> Result<u64, StoreError> {
        self.readers
            .with(|conn| {
                Ok(conn
                    .prepare_cached("SELECT count(*) FROM users WHERE id >= ?1 AND id < ?2")?
                    .query_row(params![ids.start, ids.end], |r| r.get(0))?)
            })
            .await
    }

    pub(crate) async fn upsert_user(&self, new: NewUser) -> Result<User, StoreError> {
        self.writer
            .run(move |conn| {
                let now = millis(Utc::now());
                let sql = concat!(
                    "INSERT INTO users
                        (id, username, language, credits, initial_credits, created_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?4, ?5, ?5)
                     ON CONFLICT (id) DO UPDATE SET
                        username = excluded.username,
                        language = excluded.language,
                        updated_at = excluded.updated_at
                     RETURNING ",
                    user_columns!()
                );
                let mut stmt = conn.prepare_cached(sql)?;
                let mut rows = stmt.query(params![
                    new.id.0,
                    new.username,
                    new.language,
                    new.initial_credits,
                    now
                ])?;
                match rows.next()? {
                    Some(row) => rows::user(row),
                    None => Err(StoreError::UserNotFound(new.id)),
                }
            })
            .await
    }

    pub(crate) async fn set_selected_model(
        &self,
        id: UserId,
        model: Option<String>,
    ) -> Result<User, StoreError> {
        self.writer
            .run(move |conn| {
                let sql = concat!(
                    "UPDATE users SET selected_model = ?2, updated_at = ?3 WHERE id = ?1
                     RETURNING ",
                    user_columns!()
                );
                updated_user(conn, sql, params![id.0, model, millis(Utc::now())], id)
            })
            .await
    }

    pub(crate) async fn set_banned(&self, id: UserId, banned: bool) -> Result<User, StoreError> {
        self.writer
            .run(move |conn| {
                let sql = concat!(
                    "UPDATE users SET banned = ?2, updated_at = ?3 WHERE id = ?1 RETURNING ",
                    user_columns!()
                );
                updated_user(conn, sql, params![id.0, banned, millis(Utc::now())], id)
            })
            .await
    }

    pub(crate) async fn set_model_settings(
        &self,
        id: UserId,
        model: String,
        settings: serde_json::Map<String, serde_json::Value>,
    ) -> Result<User, StoreError> {
        let settings = serde_json::Value::Object(settings).to_string();
        self.writer
            .run(move |conn| {
                let sql = concat!(
                    "UPDATE users SET updated_at = ?4,
                        model_settings = json_set(model_settings, '$.' || json_quote(?2), json(?3))
                     WHERE id = ?1 RETURNING ",
                    user_columns!()
                );
                let now = millis(Utc::now());
                updated_user(conn, sql, params![id.0, model, settings, now], id)
            })
            .await
    }

    pub(crate) async fn set_model_setting(
        &self,
        id: UserId,
        model: String,
        name: String,
        value: Option<serde_json::Value>,
    ) -> Result<User, StoreError> {
        let value = value.map(|v| v.to_string());
        self.writer
            .run(move |conn| {
                // A merge patch (RFC 7396) rather than a JSON path: a path cannot spell every
                // key (SQLite refuses one holding a quote), and a null in the patch removes
                // the input. The model's object is created when it is missing.
                let sql = concat!(
                    "UPDATE users SET updated_at = ?5,
                        model_settings = json_patch(model_settings, json_object(?2,
                            json_object(?3, CASE WHEN ?4 IS NULL THEN json('null') ELSE json(?4) END)))
                     WHERE id = ?1 RETURNING ",
                    user_columns!()
                );
                let now = millis(Utc::now());
                updated_user(conn, sql, params![id.0, model, name, value, now], id)
            })
            .await
    }

    pub(crate) async fn add_credits(&self, id: UserId, delta: i64) -> Result<i64, StoreError> {
        self.writer
            .run(move |conn| {
                let balance: Option<i64> = conn
                    .prepare_cached(
                        "UPDATE users SET credits = credits + ?2,
                            credits_adjusted = credits_adjusted + ?2, updated_at = ?3
                         WHERE id = ?1 AND credits + ?2 >= 0 RETURNING credits",
                    )?
                    .query_row(params![id.0, delta, millis(Utc::now())], |r| r.get(0))
                    .optional()?;
                match balance {
                    Some(balance) => Ok(balance),
                    None => match select_user(conn, id)? {
                        Some(user) => Err(StoreError::InsufficientCredits {
                            user: id,
                            balance: user.credits,
                            needed: -delta,
                        }),
                        None => Err(StoreError::UserNotFound(id)),
                    },
                }
            })
            .await
    }

    pub(crate) async fn consume_daily_generation(
        &self,
        id: UserId,
        today: NaiveDate,
        limit: u32,
    ) -> Result<DailyQuota, StoreError> {
        self.writer
            .run(move |conn| {
                let today = date_text(today);
                let used: Option<u32> = conn
                    .prepare_cached(
                        "UPDATE users SET
                            daily_count = CASE WHEN daily_reset_date = ?2 THEN daily_count + 1 ELSE 1 END,
                            daily_reset_date = ?2,
                            updated_at = ?4
                         WHERE id = ?1 AND (daily_reset_date <> ?2 OR daily_count < ?3)
                         RETURNING daily_count",
                    )?
                    .query_row(params![id.0, today, limit, millis(Utc::now())], |r| r.get(0))
                    .optional()?;
                match used {
                    Some(used) => Ok(DailyQuota::Granted {
                        used,
                        remaining: limit.saturating_sub(used),
                    }),
                    None if select_user(conn, id)?.is_some() => Ok(DailyQuota::Exhausted { limit }),
                    None => Err(StoreError::UserNotFound(id)),
                }
            })
            .await
    }

    pub(crate) async fn release_daily_generation(
        &self,
        id: UserId,
        today: NaiveDate,
    ) -> Result<(), StoreError> {
        self.writer
            .run(move |conn| {
                conn.prepare_cached(
                    "UPDATE users SET daily_count = daily_count - 1, updated_at = ?3
                     WHERE id = ?1 AND daily_reset_date = ?2 AND daily_count > 0",
                )?
                .execute(params![id.0, date_text(today), millis(Utc::now())])?;
                Ok(())
            })
            .await
    }

    pub(crate) async fn insert_job(
        &self,
        new: NewJob,
        status: JobStatus,
    ) -> Result<Job, StoreError> {
        self.writer
            .run(move |conn| {
                let now = millis(Utc::now());
                let sql = concat!(
                    "INSERT INTO generation_jobs
                        (user_id, model, prompt, params, status, created_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?6, ?5, ?5)
                     RETURNING ",
                    job_columns!()
                );
                let params_json = new.params.to_string();
                let mut stmt = conn.prepare_cached(sql)?;
                let mut rows = stmt.query(params![
                    new.user_id.0,
                    new.model,
                    new.prompt,
                    params_json,
                    now,
                    status.as_str()
                ])?;
                match rows.next() {
                    Ok(Some(row)) => rows::job(row),
                    Ok(None) => Err(StoreError::UserNotFound(new.user_id)),
                    Err(rusqlite::Error::SqliteFailure(e, _))
                        if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY =>
                    {
                        Err(StoreError::UserNotFound(new.user_id))
                    }
                    Err(e) => Err(e.into()),
                }
            })
            .await
    }

    pub(crate) async fn get_job(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        self.readers.with(|conn| select_job(conn, id)).await
    }

    pub(crate) async fn claim_next_job(&self) -> Result<Option<Job>, StoreError> {
        self.writer
            .run(move |conn| {
                let sql = concat!("UPDATE generation_jobs SET
                        status = 'running', attempts = attempts + 1, started_at = ?1, updated_at = ?1
                     WHERE id = (SELECT id FROM generation_jobs WHERE status = 'queued'
                                 ORDER BY id LIMIT 1)
                     RETURNING ", job_columns!());
                let mut stmt = conn.prepare_cached(sql)?;
                let mut rows = stmt.query(params![millis(Utc::now())])?;
                rows.next()?.map(rows::job).transpose()
            })
            .await
    }

    pub(crate) async fn claim_job(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        self.writer
            .run(move |conn| {
                let sql = concat!(
                    "UPDATE generation_jobs SET
                        status = 'running', attempts = attempts + 1, started_at = ?2, updated_at = ?2
                     WHERE id = ?1 AND status = 'queued'
                     RETURNING ",
                    job_columns!()
                );
                let mut stmt = conn.prepare_cached(sql)?;
                let mut rows = stmt.query(params![id.0, millis(Utc::now())])?;
                rows.next()?.map(rows::job).transpose()
            })
            .await
    }

    pub(crate) async fn update_job(&self, id: JobId, update: JobUpdate) -> Result<Job, StoreError> {
        self.writer
            .run(move |conn| {
                let now = millis(Utc::now());
                let (allowed_from, prediction_id, result_url, error) = update.columns();
                let status = update.status();
                let finished = status.is_final().then_some(now);
                let sql = concat!(
                    "UPDATE generation_jobs SET
                        status = ?2,
                        prediction_id = CASE WHEN ?2 = 'queued' THEN NULL
                                             ELSE coalesce(?3, prediction_id) END,
                        result_url = coalesce(?4, result_url),
                        error = coalesce(?5, error),
                        started_at = CASE WHEN ?2 = 'queued' THEN NULL ELSE started_at END,
                        finished_at = ?6,
                        updated_at = ?7
                     WHERE id = ?1 AND status IN (?8, 'running')
                     RETURNING ",
                    job_columns!()
                );
                let mut stmt = conn.prepare_cached(sql)?;
                let mut rows = stmt.query(params![
                    id.0,
                    status.as_str(),
                    prediction_id,
                    result_url,
                    error,
                    finished,
                    now,
                    allowed_from
                ])?;
                if let Some(row) = rows.next()? {
                    return rows::job(row);
                }
                drop(rows);
                match select_job(conn, id)? {
                    Some(job) => Err(StoreError::InvalidTransition {
                        job: id,
                        status: job.status,
                        attempted: status.as_str(),
                    }),
                    None => Err(StoreError::JobNotFound(id)),
                }
            })
            .await
    }

    pub(crate) async fn jobs_with_status(
        &self,
        status: JobStatus,
        limit: u32,
    ) -> Result<Vec<Job>, StoreError> {
        self.readers
            .with(|conn| {
                let sql = concat!(
                    "SELECT ",
                    job_columns!(),
                    " FROM generation_jobs WHERE status = ?1 ORDER BY id LIMIT ?2"
                );
                let mut stmt = conn.prepare_cached(sql)?;
                let mut rows = stmt.query(params![status.as_str(), limit])?;
                let mut jobs = Vec::new();
                while let Some(row) = rows.next()? {
                    jobs.push(rows::job(row)?);
                }
                Ok(jobs)
            })
            .await
    }

    pub(crate) async fn count_jobs_by_status(&self) -> Result<JobCounts, StoreError> {
        self.readers
            .with(|conn| {
                // Kept by triggers in the same transactions as the jobs: no scan.
                let mut stmt = conn.prepare_cached(
                    "SELECT name, n FROM genbot_job_counts WHERE name <> 'queued_users'",
                )?;
                let mut rows = stmt.query([])?;
                let mut counts = JobCounts::default();
                while let Some(row) = rows.next()? {
                    let status: String = row.get(0)?;
                    let n: u64 = row.get(1)?;
                    let status = JobStatus::parse(&status).ok_or(StoreError::Corrupt {
                        column: "generation_jobs.status",
                        value: status.clone(),
                    })?;
                    counts.add(status, n);
                }
                Ok(counts)
            })
            .await
    }

    pub(crate) async fn delete_users_in_range(
        &self,
        ids: Range<i64>,
    ) -> Result<Deleted, StoreError> {
        self.writer
            .run(move |conn| {
                let jobs = conn
                    .prepare_cached(
                        "DELETE FROM generation_jobs WHERE user_id >= ?1 AND user_id < ?2",
                    )?
                    .execute(params![ids.start, ids.end])?;
                let users = conn
                    .prepare_cached("DELETE FROM users WHERE id >= ?1 AND id < ?2")?
                    .execute(params![ids.start, ids.end])?;
                Ok(Deleted {
                    users: users as u64,
                    jobs: jobs as u64,
                })
            })
            .await
    }
}

/// Runs an `UPDATE users … WHERE id = ?1 RETURNING` user columns; the updated user.
fn updated_user(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    id: UserId,
) -> Result<User, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(params)?;
    match rows.next()? {
        Some(row) => rows::user(row),
        None => Err(StoreError::UserNotFound(id)),
    }
}

fn select_user(conn: &Connection, id: UserId) -> Result<Option<User>, StoreError> {
    let mut stmt = conn.prepare_cached(concat!(
        "SELECT ",
        user_columns!(),
        " FROM users WHERE id = ?1"
    ))?;
    let mut rows = stmt.query([id.0])?;
    rows.next()?.map(rows::user).transpose()
}

fn select_job(conn: &Connection, id: JobId) -> Result<Option<Job>, StoreError> {
    let mut stmt = conn.prepare_cached(concat!(
        "SELECT ",
        job_columns!(),
        " FROM generation_jobs WHERE id = ?1"
    ))?;
    let mut rows = stmt.query([id.0])?;
    rows.next()?.map(rows::job).transpose()
}
