//! The PostgreSQL backend, for deployments with several replicas or a managed database.
//!
//! Same operations as the SQLite backend. Concurrency comes from the server: claims and
//! acceptances serialize on advisory transaction locks (so the global counts are exact over any
//! number of replicas) and take-overs use `FOR UPDATE SKIP LOCKED`.

mod broadcast;
mod history;
mod inbox;
mod leases;
mod lifecycle;
mod outbox;
mod outcomes;
mod payments;
mod replica_name;
mod schema;

pub use replica_name::{ReplicaIdClaim, ReplicaIdHold, ReplicaIdTaken};
pub(crate) use schema::LATEST as SCHEMA_LATEST;

use std::ops::Range;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use genbot_config::RedactedUrl;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{Connection, PgPool, Postgres, Row};

use crate::columns::{job_columns, user_columns};
use crate::waiting::Waiting;
use crate::{
    DailyQuota, Deleted, Job, JobCounts, JobId, JobStatus, JobUpdate, NewJob, NewUser, PoolStats,
    StoreError, User, UserId,
};

/// How a PostgreSQL store's pool behaves, beyond the URL and the pool size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PgOptions {
    /// How long getting a connection may take: at start, one try of an unreachable server
    /// (sqlx retries within it, so a refused connection still takes all of it); later, a query
    /// waiting for a busy pool. Default 10 s (`DB_CONNECT_TIMEOUT_SECONDS`); the test of
    /// waiting for an unreachable server sets 1 s so each try is not 10 s of the suite.
    pub acquire_timeout: Duration,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            acquire_timeout: Duration::from_secs(10),
        }
    }
}

/// Users and jobs in a PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    size: u32,
    /// Tasks waiting for a connection now; sqlx does not count them, so every query takes its
    /// connection through [`PgStore::connection`], which does.
    waiting: Arc<AtomicU32>,
}

impl PgStore {
    /// Connects with a pool of `pool_size` connections and migrates the schema.
    ///
    /// # Errors
    /// The server cannot be reached within `pg.acquire_timeout`, refuses the login, or a
    /// migration fails.
    pub async fn connect(
        url: &RedactedUrl,
        pool_size: u32,
        pg: PgOptions,
    ) -> Result<Self, StoreError> {
        let options: PgConnectOptions =
            url.expose()
                .parse()
                .map_err(|e: sqlx::Error| StoreError::Connect {
                    backend: "postgres",
                    location: url.to_string(),
                    reason: e.to_string(),
                })?;
        PgStore::open(options, pool_size, &url.to_string(), pg).await
    }

    /// Connects with explicit options (tests use this to select a schema) and
    /// [`PgOptions::default`].
    ///
    /// # Errors
    /// As [`PgStore::connect`].
    pub async fn connect_with(
        options: PgConnectOptions,
        pool_size: u32,
        shown_location: &str,
    ) -> Result<Self, StoreError> {
        PgStore::open(options, pool_size, shown_location, PgOptions::default()).await
    }

    async fn open(
        options: PgConnectOptions,
        pool_size: u32,
        shown_location: &str,
        pg: PgOptions,
    ) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(pool_size.max(1))
            .acquire_timeout(pg.acquire_timeout)
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Connect {
                backend: "postgres",
                location: shown_location.to_owned(),
                reason: e.to_string(),
            })?;
        schema::migrate(&pool).await?;
        Ok(PgStore {
            pool,
            size: pool_size.max(1),
            waiting: Arc::new(AtomicU32::new(0)),
        })
    }

    /// A connection from the pool: an idle one at once, or else after waiting, counted in
    /// [`PoolStats::waiting`] meanwhile.
    async fn connection(&self) -> Result<PoolConnection<Postgres>, StoreError> {
        if let Some(idle) = self.pool.try_acquire() {
            return Ok(idle);
        }
        let _waiting = Waiting::enter(&self.waiting);
        Ok(self.pool.acquire().await?)
    }

    /// How durable a returned write is, stated for reports.
    pub fn durability(&self) -> &'static str {
        "PostgreSQL commit (durability as the server's synchronous_commit / fsync settings)"
    }

    /// Closes every connection, waiting for those in use.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub(crate) fn pool_stats(&self) -> PoolStats {
        let open = self.pool.size();
        let idle = self.pool.num_idle() as u32;
        PoolStats {
            size: self.size,
            open,
            in_use: open.saturating_sub(idle),
            waiting: Some(self.waiting.load(Ordering::Relaxed)),
        }
    }

    pub(crate) async fn get_user(&self, id: UserId) -> Result<Option<User>, StoreError> {
        let mut conn = self.connection().await?;
        sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE id = $1"
        ))
        .bind(id.0)
        .fetch_optional(&mut *conn)
        .await?
        .map(|row| user(&row))
        .transpose()
    }

    pub(crate) async fn count_users(&self) -> Result<u64, StoreError> {
        let mut conn = self.connection().await?;
        let n: i64 = sqlx::query("SELECT count(*) FROM users")
            .fetch_one(&mut *conn)
            .await?
            .try_get(0)?;
        Ok(n as u64)
    }

    pub(crate) async fn count_users_in_range(&self, ids: Range<i64>) -> Result<u64, StoreError> {
        let mut conn = self.connection().await?;
        let n: i64 = sqlx::query("SELECT count(*) FROM users WHERE id >= $1 AND id < $2")
            .bind(ids.start)
            .bind(ids.end)
            .fetch_one(&mut *conn)
            .await?
            .try_get(0)?;
        Ok(n as u64)
    }

    pub(crate) async fn upsert_user(&self, new: NewUser) -> Result<User, StoreError> {
        let mut conn = self.connection().await?;
        let row = sqlx::query(concat!(
            "INSERT INTO users
                (id, username, language, credits, initial_credits, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $4, $5, $5)
             ON CONFLICT (id) DO UPDATE SET
                username = excluded.username,
                language = excluded.language,
                updated_at = excluded.updated_at
             RETURNING ",
            user_columns!()
        ))
        .bind(new.id.0)
        .bind(&new.username)
        .bind(&new.language)
        .bind(new.initial_credits)
        .bind(Utc::now())
        .fetch_one(&mut *conn)
        .await?;
        user(&row)
    }

    pub(crate) async fn set_selected_model(
        &self,
        id: UserId,
        model: Option<String>,
    ) -> Result<User, StoreError> {
        let query = sqlx::query(concat!(
            "UPDATE users SET selected_model = $2, updated_at = $3 WHERE id = $1 RETURNING ",
            user_columns!()
        ))
        .bind(id.0)
        .bind(model)
        .bind(Utc::now());
        self.updated_user(id, query).await
    }

    /// Runs an `UPDATE users … WHERE id = $1 RETURNING` user columns; the updated user.
    async fn updated_user(
        &self,
        id: UserId,
        query: sqlx::query::Query<'_, Postgres, sqlx::postgres::PgArguments>,
    ) -> Result<User, StoreError> {
        let mut conn = self.connection().await?;
        query
            .fetch_optional(&mut *conn)
            .await?
            .map(|row| user(&row))
            .transpose()?
            .ok_or(StoreError::UserNotFound(id))
    }

    pub(crate) async fn set_banned(&self, id: UserId, banned: bool) -> Result<User, StoreError> {
        let query = sqlx::query(concat!(
            "UPDATE users SET banned = $2, updated_at = $3 WHERE id = $1 RETURNING ",
            user_columns!()
        ))
        .bind(id.0)
        .bind(banned)
        .bind(Utc::now());
        self.updated_user(id, query).await
    }

    pub(crate) async fn set_model_settings(
        &self,
        id: UserId,
        model: String,
        settings: serde_json::Map<String, serde_json::Value>,
    ) -> Result<User, StoreError> {
        let query = sqlx::query(concat!(
            "UPDATE users SET updated_at = $4,
                model_settings = jsonb_set(model_settings, ARRAY[$2], $3, true)
             WHERE id = $1 RETURNING ",
            user_columns!()
        ))
        .bind(id.0)
        .bind(model)
        .bind(sqlx::types::Json(serde_json::Value::Object(settings)))
        .bind(Utc::now());
        self.updated_user(id, query).await
    }

    pub(crate) async fn set_model_setting(
        &self,
        id: UserId,
        model: String,
        name: String,
        value: Option<serde_json::Value>,
    ) -> Result<User, StoreError> {
        let query = sqlx::query(concat!(
            "UPDATE users SET updated_at = $5,
                model_settings = CASE WHEN $4::jsonb IS NULL
                    THEN model_settings #- ARRAY[$2, $3]
                    ELSE jsonb_set(model_settings, ARRAY[$2],
                        CASE WHEN jsonb_typeof(model_settings -> $2) = 'object'
                             THEN model_settings -> $2 ELSE '{}'::jsonb END
                        || jsonb_build_object($3, $4::jsonb), true)
                END
             WHERE id = $1 RETURNING ",
            user_columns!()
        ))
        .bind(id.0)
        .bind(model)
        .bind(name)
        .bind(value.map(sqlx::types::Json))
        .bind(Utc::now());
        self.updated_user(id, query).await
    }

    pub(crate) async fn add_credits(&self, id: UserId, delta: i64) -> Result<i64, StoreError> {
        let mut conn = self.connection().await?;
        let balance: Option<i64> = sqlx::query(
            "UPDATE users SET credits = credits + $2, credits_adjusted = credits_adjusted + $2,
                updated_at = $3
             WHERE id = $1 AND credits + $2 >= 0 RETURNING credits",
        )
        .bind(id.0)
        .bind(delta)
        .bind(Utc::now())
        .fetch_optional(&mut *conn)
        .await?
        .map(|row| row.try_get(0))
        .transpose()?;
        // Give the connection back before the fallback lookup takes one: holding it while
        // asking for another deadlocks a saturated pool.
        drop(conn);
        match balance {
            Some(balance) => Ok(balance),
            None => match self.get_user(id).await? {
                Some(user) => Err(StoreError::InsufficientCredits {
                    user: id,
                    balance: user.credits,
                    needed: -delta,
                }),
                None => Err(StoreError::UserNotFound(id)),
            },
        }
    }

    pub(crate) async fn consume_daily_generation(
        &self,
        id: UserId,
        today: NaiveDate,
        limit: u32,
    ) -> Result<DailyQuota, StoreError> {
        let mut conn = self.connection().await?;
        // One statement: the row lock taken by UPDATE makes check-and-increment atomic.
        let used: Option<i32> = sqlx::query(
            "UPDATE users SET
                daily_count = CASE WHEN daily_reset_date = $2 THEN daily_count + 1 ELSE 1 END,
                daily_reset_date = $2,
                updated_at = $4
             WHERE id = $1 AND (daily_reset_date <> $2 OR daily_count < $3)
             RETURNING daily_count",
        )
        .bind(id.0)
        .bind(today)
        .bind(limit as i32)
        .bind(Utc::now())
        .fetch_optional(&mut *conn)
        .await?
        .map(|row| row.try_get(0))
        .transpose()?;
        drop(conn);
        match used {
            Some(used) => {
                let used = used.max(0) as u32;
                Ok(DailyQuota::Granted {
                    used,
                    remaining: limit.saturating_sub(used),
                })
            }
            None if self.get_user(id).await?.is_some() => Ok(DailyQuota::Exhausted { limit }),
            None => Err(StoreError::UserNotFound(id)),
        }
    }

    pub(crate) async fn release_daily_generation(
        &self,
        id: UserId,
        today: NaiveDate,
    ) -> Result<(), StoreError> {
        let mut conn = self.connection().await?;
        sqlx::query(
            "UPDATE users SET daily_count = daily_count - 1, updated_at = $3
             WHERE id = $1 AND daily_reset_date = $2 AND daily_count > 0",
        )
        .bind(id.0)
        .bind(today)
        .bind(Utc::now())
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    pub(crate) async fn insert_job(
        &self,
        new: NewJob,
        status: JobStatus,
    ) -> Result<Job, StoreError> {
        let mut conn = self.connection().await?;
        let inserted = sqlx::query(concat!(
            "INSERT INTO generation_jobs
                (user_id, model, prompt, params, status, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $6, $5, $5)
             RETURNING ",
            job_columns!()
        ))
        .bind(new.user_id.0)
        .bind(&new.model)
        .bind(&new.prompt)
        .bind(sqlx::types::Json(&new.params))
        .bind(Utc::now())
        .bind(status.as_str())
        .fetch_one(&mut *conn)
        .await;
        match inserted {
            Ok(row) => job(&row),
            Err(sqlx::Error::Database(e)) if e.is_foreign_key_violation() => {
                Err(StoreError::UserNotFound(new.user_id))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub(crate) async fn get_job(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        let mut conn = self.connection().await?;
        sqlx::query(concat!(
            "SELECT ",
            job_columns!(),
            " FROM generation_jobs WHERE id = $1"
        ))
        .bind(id.0)
        .fetch_optional(&mut *conn)
        .await?
        .map(|row| job(&row))
        .transpose()
    }

    pub(crate) async fn claim_next_job(&self) -> Result<Option<Job>, StoreError> {
        let mut conn = self.connection().await?;
        sqlx::query(concat!(
            "UPDATE generation_jobs SET
                status = 'running', attempts = attempts + 1, started_at = $1, updated_at = $1
             WHERE id = (SELECT id FROM generation_jobs WHERE status = 'queued'
                         ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
             RETURNING ",
            job_columns!()
        ))
        .bind(Utc::now())
        .fetch_optional(&mut *conn)
        .await?
        .map(|row| job(&row))
        .transpose()
    }

    pub(crate) async fn claim_job(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        let mut conn = self.connection().await?;
        sqlx::query(concat!(
            "UPDATE generation_jobs SET
                status = 'running', attempts = attempts + 1, started_at = $2, updated_at = $2
             WHERE id = $1 AND status = 'queued'
             RETURNING ",
            job_columns!()
        ))
        .bind(id.0)
        .bind(Utc::now())
        .fetch_optional(&mut *conn)
        .await?
        .map(|row| job(&row))
        .transpose()
    }

    pub(crate) async fn update_job(&self, id: JobId, update: JobUpdate) -> Result<Job, StoreError> {
        let mut conn = self.connection().await?;
        let now = Utc::now();
        let (allowed_from, prediction_id, result_url, error) = update.columns();
        let status = update.status();
        let finished = status.is_final().then_some(now);
        let updated = sqlx::query(concat!(
            "UPDATE generation_jobs SET
                status = $2,
                prediction_id = CASE WHEN $2 = 'queued' THEN NULL
                                     ELSE coalesce($3, prediction_id) END,
                result_url = coalesce($4, result_url),
                error = coalesce($5, error),
                started_at = CASE WHEN $2 = 'queued' THEN NULL ELSE started_at END,
                finished_at = $6,
                updated_at = $7
             WHERE id = $1 AND status IN ($8, 'running')
             RETURNING ",
            job_columns!()
        ))
        .bind(id.0)
        .bind(status.as_str())
        .bind(prediction_id)
        .bind(result_url)
        .bind(error)
        .bind(finished)
        .bind(now)
        .bind(allowed_from)
        .fetch_optional(&mut *conn)
        .await?;
        drop(conn);
        if let Some(row) = updated {
            return job(&row);
        }
        match self.get_job(id).await? {
            Some(found) => Err(StoreError::InvalidTransition {
                job: id,
                status: found.status,
                attempted: status.as_str(),
            }),
            None => Err(StoreError::JobNotFound(id)),
        }
    }

    pub(crate) async fn jobs_with_status(
        &self,
        status: JobStatus,
        limit: u32,
    ) -> Result<Vec<Job>, StoreError> {
        let mut conn = self.connection().await?;
        sqlx::query(concat!(
            "SELECT ",
            job_columns!(),
            " FROM generation_jobs WHERE status = $1 ORDER BY id LIMIT $2"
        ))
        .bind(status.as_str())
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(job)
        .collect()
    }

    pub(crate) async fn count_jobs_by_status(&self) -> Result<JobCounts, StoreError> {
        let mut conn = self.connection().await?;
        // Kept by triggers in the same transactions as the jobs: no scan.
        let rows =
            sqlx::query("SELECT name, n FROM genbot_job_counts WHERE name <> 'queued_users'")
                .fetch_all(&mut *conn)
                .await?;
        let mut counts = JobCounts::default();
        for row in rows {
            let status: String = row.try_get(0)?;
            let n: i64 = row.try_get(1)?;
            let status = JobStatus::parse(&status).ok_or(StoreError::Corrupt {
                column: "generation_jobs.status",
                value: status.clone(),
            })?;
            counts.add(status, n as u64);
        }
        Ok(counts)
    }

    pub(crate) async fn delete_users_in_range(
        &self,
        ids: Range<i64>,
    ) -> Result<Deleted, StoreError> {
        let mut conn = self.connection().await?;
        let mut tx = conn.begin().await?;
        let jobs = sqlx::query("DELETE FROM generation_jobs WHERE user_id >= $1 AND user_id < $2")
            .bind(ids.start)
            .bind(ids.end)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let users = sqlx::query("DELETE FROM users WHERE id >= $1 AND id < $2")
            .bind(ids.start)
            .bind(ids.end)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(Deleted { users, jobs })
    }
}

fn user(row: &PgRow) -> Result<User, StoreError> {
    let daily_count: i32 = row.try_get(5)?;
    Ok(User {
        id: UserId(row.try_get(0)?),
        username: row.try_get(1)?,
        language: row.try_get(2)?,
        selected_model: row.try_get(3)?,
        credits: row.try_get(4)?,
        daily_count: daily_count.max(0) as u32,
        daily_reset_date: row.try_get(6)?,
        banned: row.try_get(7)?,
        created_at: row.try_get(8)?,
        updated_at: row.try_get(9)?,
        model_settings: row
            .try_get::<sqlx::types::Json<serde_json::Value>, _>(10)?
            .0,
    })
}

fn job(row: &PgRow) -> Result<Job, StoreError> {
    let status: String = row.try_get(5)?;
    let params: sqlx::types::Json<serde_json::Value> = row.try_get(4)?;
    let attempts: i32 = row.try_get(9)?;
    Ok(Job {
        id: JobId(row.try_get(0)?),
        user_id: UserId(row.try_get(1)?),
        model: row.try_get(2)?,
        prompt: row.try_get(3)?,
        params: params.0,
        status: JobStatus::parse(&status).ok_or(StoreError::Corrupt {
            column: "generation_jobs.status",
            value: status.clone(),
        })?,
        prediction_id: row.try_get(6)?,
        result_url: row.try_get(7)?,
        error: row.try_get(8)?,
        attempts: attempts.max(0) as u32,
        created_at: row.try_get::<DateTime<Utc>, _>(10)?,
        updated_at: row.try_get::<DateTime<Utc>, _>(11)?,
        started_at: row.try_get::<Option<DateTime<Utc>>, _>(12)?,
        finished_at: row.try_get::<Option<DateTime<Utc>>, _>(13)?,
        charged_credits: row.try_get(14)?,
        refunded_credits: row.try_get(15)?,
        quota_day: row.try_get(16)?,
        owner: row.try_get(17)?,
        lease_until: row.try_get::<Option<DateTime<Utc>>, _>(18)?,
        create_intent_at: row.try_get::<Option<DateTime<Utc>>, _>(19)?,
    })
}
