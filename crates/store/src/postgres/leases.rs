//! Named leases among replicas on PostgreSQL.

use std::time::Duration;

use sqlx::Row;

use super::PgStore;
use crate::{Lease, StoreError};

impl PgStore {
    pub(crate) async fn take_lease(
        &self,
        name: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let mut conn = self.connection().await?;
        let taken = sqlx::query(
            "INSERT INTO leases (name, owner, lease_until)
             VALUES ($1, $2, now() + make_interval(secs => $3))
             ON CONFLICT (name) DO UPDATE
             SET owner = excluded.owner, lease_until = excluded.lease_until
             WHERE leases.owner = excluded.owner OR leases.lease_until < now()",
        )
        .bind(name)
        .bind(owner)
        .bind(ttl.as_secs_f64())
        .execute(&mut *conn)
        .await?;
        Ok(taken.rows_affected() == 1)
    }

    pub(crate) async fn release_lease(&self, name: &str, owner: &str) -> Result<(), StoreError> {
        let mut conn = self.connection().await?;
        sqlx::query("DELETE FROM leases WHERE name = $1 AND owner = $2")
            .bind(name)
            .bind(owner)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    pub(crate) async fn lease(&self, name: &str) -> Result<Option<Lease>, StoreError> {
        let mut conn = self.connection().await?;
        let row = sqlx::query(
            "SELECT owner, lease_until FROM leases WHERE name = $1 AND lease_until >= now()",
        )
        .bind(name)
        .fetch_optional(&mut *conn)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        Ok(Some(Lease {
            owner: row.try_get(0)?,
            until: row.try_get(1)?,
        }))
    }
}
