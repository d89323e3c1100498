//! Throw-away PostgreSQL databases on a given server, for runs that must start real bot
//! processes without any chance of touching the data already there (the readiness suite's
//! fault tests): `CREATE DATABASE genbot_scratch_<random>` next to the named one, dropped after.

use genbot_config::{DatabaseUrl, RedactedUrl};
use sqlx::postgres::PgConnectOptions;
use sqlx::Connection as _;

use crate::StoreError;

/// A database created for one run, on the same server and with the same credentials as the
/// URL it was made from. Drop it with [`ScratchDatabase::drop_now`]; a handle dropped without
/// it (a test that failed, a run that returned early) drops the database on a thread of its
/// own before `drop` returns. Only a crash leaves a `genbot_scratch_*` database behind, which
/// is safe to drop by hand.
#[derive(Debug)]
pub struct ScratchDatabase {
    admin: PgConnectOptions,
    name: String,
    url: RedactedUrl,
    dropped: bool,
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
        // Tried once: a failure is reported here, not retried by `Drop`.
        self.dropped = true;
        drop_database(&self.admin, &self.name, &self.url).await
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
        let dropping = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| failed(&url, e))?;
            runtime.block_on(drop_database(&admin, &name, &url))
        });
        match dropping.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(database = %self.name, error = %e, "a scratch database was left behind");
            }
            Err(_) => {
                tracing::warn!(database = %self.name, "dropping a scratch database panicked");
            }
        }
    }
}

async fn drop_database(
    admin: &PgConnectOptions,
    name: &str,
    url: &RedactedUrl,
) -> Result<(), StoreError> {
    let mut conn = sqlx::PgConnection::connect_with(admin)
        .await
        .map_err(|e| failed(url, e))?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await
        .map_err(|e| failed(url, e))?;
    Ok(())
}
