//! Store errors: what failed, in terms the engine can act on.

use crate::{JobId, JobStatus, UserId};

impl StoreError {
    /// Whether the same operation may succeed later: the database did not answer, was busy or
    /// went away. A refusal by the data (a missing row, a constraint, a lost lease) is not.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Sqlite(e) => {
                e.sqlite_error_code() != Some(rusqlite::ErrorCode::ConstraintViolation)
            }
            // Class 22, data exceptions (a NUL in text, say): the same value is refused again.
            StoreError::Postgres(sqlx::Error::Database(e)) => {
                e.constraint().is_none() && !e.code().is_some_and(|code| code.starts_with("22"))
            }
            StoreError::Connect { .. }
            | StoreError::Postgres(_)
            | StoreError::WriterStopped
            | StoreError::Commit(_) => true,
            StoreError::Migration { .. }
            | StoreError::SchemaTooNew { .. }
            | StoreError::UserNotFound(_)
            | StoreError::JobNotFound(_)
            | StoreError::InsufficientCredits { .. }
            | StoreError::InvalidTransition { .. }
            | StoreError::LeaseLost { .. }
            | StoreError::Corrupt { .. } => false,
        }
    }
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened or reached.
    #[error("cannot connect to the {backend} database at {location}: {reason}")]
    Connect {
        backend: &'static str,
        /// Path or redacted URL.
        location: String,
        reason: String,
    },
    /// A migration failed; the schema is left as it was before it.
    #[error("migration {version} failed: {reason}")]
    Migration { version: u32, reason: String },
    /// The database was migrated by a newer genbot: this build does not know its tables.
    #[error("the database's schema is version {found}, newer than this build's {latest}: it was migrated by a newer genbot; run that version (or a newer one), or restore a backup made before the upgrade")]
    SchemaTooNew { found: u32, latest: u32 },
    /// The user does not exist.
    #[error("user {0} not found")]
    UserNotFound(UserId),
    /// The job does not exist.
    #[error("job {0} not found")]
    JobNotFound(JobId),
    /// The user cannot pay for this.
    #[error("user {user} has {balance} credits, {needed} needed")]
    InsufficientCredits {
        user: UserId,
        balance: i64,
        needed: i64,
    },
    /// The job is not in a state that allows this change (e.g. updating a finished job).
    #[error("job {job} is {status}; cannot apply {attempted}")]
    InvalidTransition {
        job: JobId,
        status: JobStatus,
        attempted: &'static str,
    },
    /// The job is no longer this replica's: its lease expired and another replica took it
    /// over. The owner must stop working on it.
    #[error("job {job} is no longer owned by replica {owner}")]
    LeaseLost { job: JobId, owner: String },
    /// A value read from the database does not fit the model (a corrupted or foreign row).
    #[error("unexpected value in column {column}: {value}")]
    Corrupt { column: &'static str, value: String },
    /// The SQLite driver failed.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The PostgreSQL driver failed.
    #[error("postgres: {0}")]
    Postgres(#[from] sqlx::Error),
    /// The SQLite writer thread has stopped (the store is shutting down or it panicked).
    #[error("the sqlite writer has stopped")]
    WriterStopped,
    /// The batch this write belonged to failed to commit.
    #[error("commit failed: {0}")]
    Commit(String),
}
