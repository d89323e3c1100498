//! Throw-away PostgreSQL databases on a given server, for runs that must start real bot
//! processes without any chance of touching the data already there (the readiness suite's
//! fault tests): `CREATE DATABASE genbot_scratch_<random>` next to the named one, dropped after.

use std::time::Duration;

use genbot_config::{DatabaseUrl, RedactedUrl};
use sqlx::postgres::PgConnectOptions;
use sqlx::Connection as _;

use crate::StoreError;

/// A database created for one run, on the same server and with the same credentials as the
/// URL it was made from. Drop it with [`ScratchDatabase::drop_now`]; a handle dropped without
/// it (a test that failed, a run that returned early, a canceled `drop_now`) drops the database
/// on a thread of its own before `drop` returns, giving up after [`DROP_TIMEOUT`]. A database
/// is left behind (and named on stderr) when that drop fails or times out, when `drop_now`
/// fails, or when the process dies first; a `genbot_scratch_*` database is safe to drop by hand.
///
/// The server must not be served by the runtime the handle is dropped in (a proxy of the same
/// test): `drop` blocks that runtime's thread while it waits.
pub struct ScratchDatabase {
    admin: PgConnectOptions,
    name: String,
    url: RedactedUrl,
    dropped: bool,
}

/// The longest a drop waits for the server (connecting included: sqlx sets no connect timeout).
pub const DROP_TIMEOUT: Duration = Duration::from_secs(10);

/// By hand: the connect options hold the password.
impl std::fmt::Debug for ScratchDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScratchDatabase")
            .field("name", &self.name)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

fn failed(location: &RedactedUrl, e: impl std::fmt::Display) -> StoreError {
    StoreError::Connect {
        backend: "postgres",
        location: location.to_string(),
        reason: e.to_string(),
    }
}

impl ScratchDatabase {
    /// Creates an empty database beside the one `server` names.
    ///
    /// # Errors
    /// The server cannot be reached, or the role may not `CREATE DATABASE`.
    pub async fn create(server: &RedactedUrl) -> Result<ScratchDatabase, StoreError> {
        let admin: PgConnectOptions = server.expose().parse().map_err(|e| failed(server, e))?;
        let name = format!("genbot_scratch_{:012x}", rand::random::<u64>() >> 16);
        let mut conn = sqlx::PgConnection::connect_with(&admin)
            .await
            .map_err(|e| failed(server, e))?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .map_err(|e| failed(server, format!("CREATE DATABASE refused: {e}")))?;
        let mut url = url::Url::parse(server.expose()).map_err(|e| failed(server, e))?;
        url.set_path(&format!("/{name}"));
        Ok(ScratchDatabase {
            admin,
            name,
            url: RedactedUrl::new(url),
            dropped: false,
        })
    }

    /// The new database's URL (credentials redacted when shown).
    pub fn url(&self) -> DatabaseUrl {
        DatabaseUrl::Postgres(self.url.clone())
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Drops the database, closing any connection still open to it.
    ///
    /// # Errors
    /// The server cannot be reached or refuses the drop.
    pub async fn drop_now(mut self) -> Result<(), StoreError> {
        let dropped = drop_database(&self.admin, &self.name, &self.url).await;
        // Tried once: a failure is reported here, not retried by `Drop`; a canceled drop
        // never gets here, and `Drop` tries it.
        self.dropped = true;
        dropped
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        // `drop` may run inside a runtime (a failing async test), where blocking on another
        // runtime is refused: the drop runs on a thread with a runtime of its own.
        let (admin, name, url) = (self.admin.clone(), self.name.clone(), self.url.clone());
        let dropping = std::thread::Builder::new()
            .name("scratch-db-drop".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| failed(&url, e))?;
                runtime.block_on(drop_database(&admin, &name, &url))
            });
        let outcome = match dropping {
            Ok(thread) => thread
                .join()
                .unwrap_or_else(|_| Err(failed(&self.url, "the drop panicked"))),
            Err(e) => Err(failed(&self.url, e)),
        };
        if let Err(e) = outcome {
            // Said on stderr too: tests install no log subscriber.
            eprintln!("scratch database {} left behind: {e}", self.name);
            tracing::warn!(database = %self.name, error = %e, "a scratch database was left behind");
        }
    }
}

async fn drop_database(
    admin: &PgConnectOptions,
    name: &str,
    url: &RedactedUrl,
) -> Result<(), StoreError> {
    let drop = async {
        let mut conn = sqlx::PgConnection::connect_with(admin)
            .await
            .map_err(|e| failed(url, e))?;
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut conn)
            .await
            .map_err(|e| failed(url, e))?;
        Ok(())
    };
    tokio::time::timeout(DROP_TIMEOUT, drop)
        .await
        .unwrap_or_else(|_| Err(failed(url, format!("no answer within {DROP_TIMEOUT:?}"))))
}
