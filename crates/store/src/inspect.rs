//! Looking at a database without changing it, for a preflight (`genbot doctor`): is it
//! reachable, which schema version it has against the one this build migrates to, and, on
//! PostgreSQL, the role's rights and the server's clock. `Store::connect` would migrate;
//! this never writes (an SQLite file that does not exist yet is not created).

use std::time::Duration;

use chrono::{DateTime, Utc};
use genbot_config::{DatabaseUrl, RedactedUrl};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, Row};

use crate::StoreError;

/// How long a preflight waits for PostgreSQL before calling it unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What [`inspect`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    /// `sqlite` or `postgres`.
    pub backend: &'static str,
    /// The schema version the database has (0: none yet, it is created at the first start).
    pub schema_version: u32,
    /// The version this build migrates to.
    pub latest_version: u32,
    /// The SQLite file does not exist yet (the first start creates it).
    pub missing_file: bool,
    /// PostgreSQL: the role may create databases (the fault tests' scratch databases need it).
    pub can_create_databases: Option<bool>,
    /// PostgreSQL: the server's `now()` and the local time halfway through the query, for a
    /// clock check.
    pub server_clock: Option<(DateTime<Utc>, DateTime<Utc>)>,
}

/// Looks at the database `url` names, read-only.
///
/// # Errors
/// [`StoreError::Connect`] when it cannot be reached or opened; query failures.
pub async fn inspect(url: &DatabaseUrl) -> Result<Inspection, StoreError> {
    match url {
        DatabaseUrl::Sqlite { path } => {
            let path = path.clone();
            tokio::task::spawn_blocking(move || inspect_sqlite(&path))
                .await
                .map_err(|e| StoreError::Connect {
                    backend: "sqlite",
                    location: url.to_string(),
                    reason: e.to_string(),
                })?
        }
        DatabaseUrl::Postgres(url) => inspect_postgres(url).await,
    }
}

fn inspect_sqlite(path: &std::path::Path) -> Result<Inspection, StoreError> {
    let mut found = Inspection {
        backend: "sqlite",
        schema_version: 0,
        latest_version: crate::sqlite::SCHEMA_LATEST,
        missing_file: !path.exists(),
        can_create_databases: None,
        server_clock: None,
    };
    if found.missing_file {
        return Ok(found);
    }
    let connect_error = |e: rusqlite::Error| StoreError::Connect {
        backend: "sqlite",
        location: path.display().to_string(),
        reason: e.to_string(),
    };
    let conn = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(connect_error)?;
    found.schema_version = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(connect_error)?;
    Ok(found)
}

async fn inspect_postgres(url: &RedactedUrl) -> Result<Inspection, StoreError> {
    let connect_error = |reason: String| StoreError::Connect {
        backend: "postgres",
        location: url.to_string(),
        reason,
    };
    let options: PgConnectOptions = url
        .expose()
        .parse()
        .map_err(|e: sqlx::Error| connect_error(e.to_string()))?;
    let mut conn =
        tokio::time::timeout(CONNECT_TIMEOUT, sqlx::PgConnection::connect_with(&options))
            .await
            .map_err(|_| connect_error(format!("no answer within {CONNECT_TIMEOUT:?}")))?
            .map_err(|e| connect_error(e.to_string()))?;
    let sent = Utc::now();
    let row = sqlx::query(
        "SELECT now(), r.rolcreatedb OR r.rolsuper, to_regclass('genbot_schema_version') IS NOT NULL
         FROM pg_roles r WHERE r.rolname = current_user",
    )
    .fetch_one(&mut conn)
    .await?;
    // now() is the transaction's start, somewhere in the round trip: compare with its middle.
    let asked = sent + (Utc::now() - sent) / 2;
    let server_now: DateTime<Utc> = row.try_get(0)?;
    let can_create: bool = row.try_get(1)?;
    let has_schema: bool = row.try_get(2)?;
    let schema_version = if has_schema {
        let version: i32 =
            sqlx::query("SELECT coalesce(max(version), 0) FROM genbot_schema_version")
                .fetch_one(&mut conn)
                .await?
                .try_get(0)?;
        u32::try_from(version).unwrap_or(0)
    } else {
        0
    };
    let _ = conn.close().await;
    Ok(Inspection {
        backend: "postgres",
        schema_version,
        latest_version: crate::postgres::SCHEMA_LATEST,
        missing_file: false,
        can_create_databases: Some(can_create),
        server_clock: Some((server_now, asked)),
    })
}
