//! Named leases among replicas on SQLite.

use std::time::Duration;

use chrono::Utc;
use rusqlite::{params, OptionalExtension};

use super::rows::{millis, timestamp};
use super::SqliteStore;
use crate::lifecycle::lease_end;
use crate::{Lease, StoreError};

impl SqliteStore {
    pub(crate) async fn take_lease(
        &self,
        name: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let (name, owner) = (name.to_owned(), owner.to_owned());
        self.writer
            .run(move |conn| {
                let now = Utc::now();
                let taken = conn
                    .prepare_cached(
                        "INSERT INTO leases (name, owner, lease_until) VALUES (?1, ?2, ?3)
                         ON CONFLICT (name) DO UPDATE
                         SET owner = excluded.owner, lease_until = excluded.lease_until
                         WHERE leases.owner = excluded.owner OR leases.lease_until < ?4",
                    )?
                    .execute(params![
                        name,
                        owner,
                        millis(lease_end(now, ttl)),
                        millis(now)
                    ])?;
                Ok(taken == 1)
            })
            .await
    }

    pub(crate) async fn release_lease(&self, name: &str, owner: &str) -> Result<(), StoreError> {
        let (name, owner) = (name.to_owned(), owner.to_owned());
        self.writer
            .run(move |conn| {
                conn.prepare_cached("DELETE FROM leases WHERE name = ?1 AND owner = ?2")?
                    .execute(params![name, owner])?;
                Ok(())
            })
            .await
    }

    pub(crate) async fn lease(&self, name: &str) -> Result<Option<Lease>, StoreError> {
        let name = name.to_owned();
        let row: Option<(String, i64)> = self
            .readers
            .with(move |conn| {
                Ok(conn
                    .prepare_cached(
                        "SELECT owner, lease_until FROM leases WHERE name = ?1 AND lease_until >= ?2",
                    )?
                    .query_row(params![name, millis(Utc::now())], |row| {
                        Ok((row.get(0)?, row.get(1)?))
                    })
                    .optional()?)
            })
            .await?;
        row.map(|(owner, until)| {
            Ok(Lease {
                owner,
                until: timestamp("lease_until", until)?,
            })
        })
        .transpose()
    }
}
