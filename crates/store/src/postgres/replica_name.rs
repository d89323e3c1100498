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
//! A session lock needs a session: behind a pooler in transaction mode (PgBouncer's
//! `pool_mode = transaction`) it would stay on a pooled server connection after the process
//! ends. The README says the check needs a direct connection or session pooling.

use sqlx::{Connection, PgConnection};

use super::PgStore;
use crate::StoreError;

/// The lock's key space: advisory locks are per database, and this prefix keeps the key apart
/// from any other use of advisory locks in it.
const KEY_PREFIX: &str = "genbot replica id: ";

/// A held `REPLICA_ID`: let go when dropped (the connection holding the lock closes).
#[derive(Debug)]
pub struct ReplicaIdHold {
    _connection: Option<PgConnection>,
}

impl ReplicaIdHold {
    /// How the holder of `id` shows in `pg_stat_activity` (its `application_name`):
    /// `genbot replica ID`, cut to the 63 bytes the server keeps.
    pub fn application_name(id: &str) -> String {
        let mut name = format!("genbot replica {id}");
        let mut end = name.len().min(63);
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        name.truncate(end);
        name
    }

    /// No connection held: SQLite needs none (one process per file is locked apart), and a
    /// start that could not check (the database failed the attempt) goes on without.
    pub fn none() -> Self {
        ReplicaIdHold { _connection: None }
    }
}

impl PgStore {
    /// Tries once to hold `id`: `None` when a live connection holds it already.
    pub(crate) async fn hold_replica_id(
        &self,
        id: &str,
    ) -> Result<Option<ReplicaIdHold>, StoreError> {
        let mut connection = self.connection().await?.detach();
        // A dead peer is found after idle + interval × count, about 25 s; user-settable.
        for setting in [
            "SET tcp_keepalives_idle = 10",
            "SET tcp_keepalives_interval = 5",
            "SET tcp_keepalives_count = 3",
        ] {
            sqlx::query(setting).execute(&mut connection).await?;
        }
        // So that an operator told the id is held can find the holder in pg_stat_activity.
        sqlx::query("SELECT set_config('application_name', $1, false)")
            .bind(ReplicaIdHold::application_name(id))
            .execute(&mut connection)
            .await?;
        let held: bool = sqlx::query_scalar(
            "SELECT pg_try_advisory_lock(hashtextextended($1 || coalesce(current_schema(), ''), 0))",
        )
        .bind(format!("{KEY_PREFIX}{id} in schema "))
        .fetch_one(&mut connection)
        .await?;
        if held {
            Ok(Some(ReplicaIdHold {
                _connection: Some(connection),
            }))
        } else {
            // Closed politely: the lock this session failed to take is not ours to keep anyway.
            connection.close().await.ok();
            Ok(None)
        }
    }
}
