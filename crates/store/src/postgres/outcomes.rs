//! Prediction outcomes relayed among replicas on PostgreSQL (see `Store::record_prediction_outcome`).

use std::time::Duration;

use sqlx::Row;

use super::PgStore;
use crate::StoreError;

impl PgStore {
    pub(crate) async fn record_prediction_outcome(
        &self,
        prediction: &str,
        payload: &str,
    ) -> Result<(), StoreError> {
        let mut conn = self.connection().await?;
        sqlx::query(
            "INSERT INTO prediction_outcomes (prediction_id, payload, received_at)
             VALUES ($1, $2, now()) ON CONFLICT (prediction_id) DO NOTHING",
        )
        .bind(prediction)
        .bind(payload)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    pub(crate) async fn take_prediction_outcomes(
        &self,
        predictions: &[String],
    ) -> Result<Vec<String>, StoreError> {
        let mut conn = self.connection().await?;
        let rows = sqlx::query(
            "DELETE FROM prediction_outcomes WHERE prediction_id = ANY($1) RETURNING payload",
        )
        .bind(predictions)
        .fetch_all(&mut *conn)
        .await?;
        rows.iter()
            .map(|row| row.try_get(0).map_err(StoreError::from))
            .collect()
    }

    pub(crate) async fn prune_prediction_outcomes(
        &self,
        older_than: Duration,
    ) -> Result<u64, StoreError> {
        let mut conn = self.connection().await?;
        let done = sqlx::query(
            "DELETE FROM prediction_outcomes
             WHERE received_at <= now() - make_interval(secs => $1)",
        )
        .bind(older_than.as_secs_f64())
        .execute(&mut *conn)
        .await?;
        Ok(done.rows_affected())
    }
}
