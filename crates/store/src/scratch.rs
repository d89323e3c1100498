//! Throw-away PostgreSQL databases on a given server, for runs that must start real bot
//! processes without any chance of touching the data already there (the readiness suite's
//! fault tests): `CREATE DATABASE genbot_scratch_<random>` next to the named one, dropped after.

use genbot_config::{DatabaseUrl, RedactedUrl};
use sqlx::postgres::PgConnectOptions;
use sqlx::Connection as _;

use crate::StoreError;

/// A database created for one run, on the same server and with the same credentials as the
/// URL it was made from. Drop it with [`ScratchDatabase::drop_now`]; a crash leaves a
/// `genbot_scratch_*` database behind, which is safe to drop by hand.
#[derive(Debug)]
pub struct ScratchDatabase {
    admin: PgConnectOptions,
    name: String,
    url: RedactedUrl,
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
    pub async fn drop_now(self) -> Result<(), StoreError> {
        let mut conn = sqlx::PgConnection::connect_with(&self.admin)
            .await
            .map_err(|e| failed(&self.url, e))?;
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&mut conn)
        .await
        .map_err(|e| failed(&self.url, e))?;
        Ok(())
    }
}
