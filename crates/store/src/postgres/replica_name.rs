//! One live process per `REPLICA_ID` on a PostgreSQL database.
//!
//! Two processes started with the same id would each take the other's running jobs, chat
//! claims and poll lease as their own, so every user could get every answer twice. A process
//! therefore holds a session advisory lock named by its id on a connection of its own, taken
//! out of the pool, for as long as it runs. The server lets the lock go when that connection
//! ends: at once when the process dies on this host (the kernel closes its socket), and within
//! about half a minute when its host vanishes, through the keepalives set below (the server's
//! default would wait two hours). The lock is named by the id and the schema: two bots in two
//! schemas of one database are two deployments, whatever their ids.
//!
//! The connection can also end under a live process (`pg_terminate_backend`,
//! `idle_session_timeout`, a proxy, a database restart), and the lock with it. So the hold is
//! watched ([`ReplicaIdHold::keep`]): a lost hold is taken again at once on a new connection,
//! and when another process took it meanwhile the holder is told to stop.
//!
//! A session lock needs a session: behind a pooler in transaction mode (PgBouncer's
//! `pool_mode = transaction`) it would stay on a pooled server connection after the process
//! ends. The README says the check needs a direct connection or session pooling.

use std::time::Duration;

use sqlx::{Connection, PgConnection};

use super::PgStore;
use crate::StoreError;

/// The lock's key space: advisory locks are per database, and this prefix keeps the key apart
/// from any other use of advisory locks in it.
const KEY_PREFIX: &str = "genbot replica id: ";

/// How long the check of a held id waits for its answer before counting the connection as
/// gone: beyond the ~25 s after which the server's keepalives end the session of a peer it
/// cannot reach (and the lock with it), while a client's own TCP timeout would take minutes.
const CHECK_TIMEOUT: Duration = Duration::from_secs(30);

/// Pause between tries to take a lost id back while the database fails them (it restarts).
const RETAKE_PAUSE: Duration = Duration::from_secs(2);

/// Another live process took `REPLICA_ID` after this process's hold on it ended.
#[derive(Debug, thiserror::Error)]
#[error("REPLICA_ID={id:?} was taken by another live genbot process after this process's hold on it ended (its PostgreSQL connection closed: pg_terminate_backend, idle_session_timeout, a proxy or a database restart); stopping, so that one process runs per id (a restart waits until the id is free)")]
pub struct ReplicaIdTaken {
    /// The id.
    pub id: String,
}

/// A held `REPLICA_ID`: let go when dropped (the connection holding the lock closes).
#[derive(Debug)]
pub struct ReplicaIdHold {
    held: Option<Held>,
}

/// The lock's connection, and what it takes to take the lock again.
#[derive(Debug)]
struct Held {
    store: PgStore,
    id: String,
    /// `None` between the loss of the lock and its retaking.
    connection: Option<PgConnection>,
}

impl ReplicaIdHold {
    /// How the holder of `id` shows in `pg_stat_activity` (its `application_name`):
    /// `genbot replica ID`, cut to the 63 bytes the server keeps.
    pub fn application_name(id: &str) -> String {
        cut_to_63_bytes(format!("genbot replica {id}"))
    }

    /// How a process waiting for `id` shows in `pg_stat_activity`: `genbot waiting for replica
    /// ID`, so that an operator tells the holder from the waiters.
    pub fn waiting_application_name(id: &str) -> String {
        cut_to_63_bytes(format!("genbot waiting for replica {id}"))
    }

    /// No connection held: SQLite needs none (one process per file is locked apart), and a
    /// start that could not check (the database failed the attempt) goes on without.
    pub fn none() -> Self {
        ReplicaIdHold { held: None }
    }

    /// Watches the hold, checking every `every` that its connection still holds the lock, and
    /// takes a lost lock again at once on a new connection (an ERROR in the log, then a line
    /// when retaken). Returns only when another live process took the id meanwhile: the
    /// caller must then stop, since both would run under one id. A database that fails the
    /// retaking (it restarts) is tried again every 2 s. With no connection ([`Self::none`])
    /// there is nothing to watch and it never returns.
    pub async fn keep(&mut self, every: Duration) -> ReplicaIdTaken {
        let Some(held) = self.held.as_mut() else {
            return std::future::pending().await;
        };
        loop {
            if let Some(connection) = held.connection.as_mut() {
                tokio::time::sleep(every).await;
                match tokio::time::timeout(CHECK_TIMEOUT, still_locked(connection)).await {
                    Ok(Ok(true)) => continue,
                    Ok(Ok(false)) => {
                        tracing::error!(replica_id = %held.id, "the REPLICA_ID lock is no longer held by this process's connection; taking it again");
                    }
                    Ok(Err(e)) => {
                        tracing::error!(replica_id = %held.id, error = %e, "the connection holding REPLICA_ID ended, and the lock with it; taking it again");
                    }
                    Err(_) => {
                        tracing::error!(replica_id = %held.id, timeout = ?CHECK_TIMEOUT, "the connection holding REPLICA_ID did not answer; taking the id again on a new one");
                    }
                }
                // Dropped, not closed: it may be dead, and a live one must let its lock go.
                held.connection = None;
            }
            let mut claim = ReplicaIdClaim::postgres(held.store.clone(), &held.id);
            // Bounded: a new connection that hangs (half-open TCP) would stop the watch.
            let taken = match tokio::time::timeout(CHECK_TIMEOUT, claim.try_take()).await {
                Ok(taken) => taken,
                Err(_) => Err(StoreError::Connect {
                    backend: "postgres",
                    location: "the REPLICA_ID connection".into(),
                    reason: format!("no answer within {CHECK_TIMEOUT:?}"),
                }),
            };
            match taken {
                Ok(Some(mut hold)) => {
                    held.connection = hold.held.take().and_then(|h| h.connection);
                    tracing::info!(replica_id = %held.id, "REPLICA_ID taken again on a new connection; going on");
                }
                Ok(None) => {
                    claim.close().await;
                    return ReplicaIdTaken {
                        id: held.id.clone(),
                    };
                }
                Err(e) => {
                    tracing::warn!(replica_id = %held.id, error = %e, retry_in = ?RETAKE_PAUSE, "could not take REPLICA_ID again");
                    tokio::time::sleep(RETAKE_PAUSE).await;
                }
            }
        }
    }
}

/// Whether `connection` answers and holds an advisory lock: it holds no other, so that is the
/// id's. Asking the server, not merely `SELECT 1`, also catches a proxy that reconnected
/// underneath to a session without the lock.
async fn still_locked(connection: &mut PgConnection) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted)",
    )
    .fetch_one(connection)
    .await
}

fn cut_to_63_bytes(mut name: String) -> String {
    let mut end = name.len().min(63);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name.truncate(end);
    name
}

/// A `REPLICA_ID` being asked for, try after try, on one connection of its own: a start that
/// waits for a held id must not open a connection per try (at 4 tries a second that was 4
/// connections a second to the server for as long as it waited).
#[derive(Debug)]
pub struct ReplicaIdClaim {
    store: Option<PgStore>,
    id: String,
    /// Opened at the first try, and again after a try that failed on it.
    connection: Option<PgConnection>,
}

impl ReplicaIdClaim {
    pub(crate) fn postgres(store: PgStore, id: &str) -> Self {
        ReplicaIdClaim {
            store: Some(store),
            id: id.to_owned(),
            connection: None,
        }
    }

    /// SQLite: nothing to take, every try succeeds.
    pub(crate) fn sqlite(id: &str) -> Self {
        ReplicaIdClaim {
            store: None,
            id: id.to_owned(),
            connection: None,
        }
    }

    /// Tries once: the hold when taken, `None` when another live connection holds the id (the
    /// claim's connection stays open for the next try).
    ///
    /// # Errors
    /// Database failures; the connection is then dropped and the next try opens a new one.
    pub async fn try_take(&mut self) -> Result<Option<ReplicaIdHold>, StoreError> {
        let Some(store) = self.store.as_ref() else {
            return Ok(Some(ReplicaIdHold::none()));
        };
        let tried = async {
            let connection = match self.connection.as_mut() {
                Some(connection) => connection,
                None => self
                    .connection
                    .insert(open_connection(store, &self.id).await?),
            };
            let held: bool = sqlx::query_scalar(
                "SELECT pg_try_advisory_lock(hashtextextended($1 || coalesce(current_schema(), ''), 0))",
            )
            .bind(format!("{KEY_PREFIX}{} in schema ", self.id))
            .fetch_one(&mut *connection)
            .await?;
            if held {
                // So that an operator told the id is held can find the holder.
                set_application_name(connection, &ReplicaIdHold::application_name(&self.id))
                    .await?;
            }
            Ok::<bool, StoreError>(held)
        };
        match tried.await {
            Ok(true) => Ok(Some(ReplicaIdHold {
                held: Some(Held {
                    store: store.clone(),
                    id: self.id.clone(),
                    connection: self.connection.take(),
                }),
            })),
            Ok(false) => Ok(None),
            Err(e) => {
                // Broken, perhaps: a lock taken on it, if any, goes with it.
                self.connection = None;
                Err(e)
            }
        }
    }

    /// Closes the claim's connection politely (a refused try holds nothing on it).
    pub async fn close(mut self) {
        if let Some(connection) = self.connection.take() {
            connection.close().await.ok();
        }
    }
}

/// A connection of its own for the lock, taken out of the pool (it would otherwise go back to
/// the pool still holding the lock), with the keepalives that let the server end it, and the
/// lock, soon after its process's host vanished.
async fn open_connection(store: &PgStore, id: &str) -> Result<PgConnection, StoreError> {
    let mut connection = store.connection().await?.detach();
    // A dead peer is found after idle + interval × count, about 25 s; user-settable.
    for setting in [
        "SET tcp_keepalives_idle = 10",
        "SET tcp_keepalives_interval = 5",
        "SET tcp_keepalives_count = 3",
    ] {
        sqlx::query(setting).execute(&mut connection).await?;
    }
    // The lock's connection idles between checks: a server-wide `idle_session_timeout` would
    // end it (and the lock) every cycle. PostgreSQL 14 and later only, hence not required.
    if let Err(e) = sqlx::query("SET idle_session_timeout = 0")
        .execute(&mut connection)
        .await
    {
        tracing::debug!(error = %e, "idle_session_timeout not set on the REPLICA_ID connection");
    }
    set_application_name(
        &mut connection,
        &ReplicaIdHold::waiting_application_name(id),
    )
    .await?;
    Ok(connection)
}

async fn set_application_name(connection: &mut PgConnection, name: &str) -> Result<(), StoreError> {
    sqlx::query("SELECT set_config('application_name', $1, false)")
        .bind(name)
        .execute(connection)
        .await?;
    Ok(())
}

impl PgStore {
    /// A claim on `id`, to be tried (see [`ReplicaIdClaim::try_take`]).
    pub(crate) fn replica_id_claim(&self, id: &str) -> ReplicaIdClaim {
        ReplicaIdClaim::postgres(self.clone(), id)
    }
}
