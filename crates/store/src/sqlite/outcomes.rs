//! Prediction outcomes relayed among replicas on SQLite (see `Store::record_prediction_outcome`;
//! one process per file, so only a webhook that overtakes its wait's registration lands here).

use std::time::Duration;

use chrono::Utc;
use rusqlite::params;

use super::rows::millis;
use super::SqliteStore;
use crate::StoreError;

impl SqliteStore {
    pub(crate) async fn record_prediction_outcome(
        &self,
        prediction: &str,
        payload: &str,
    ) -> Result<(), StoreError> {
        let (prediction, payload) = (prediction.to_owned(), payload.to_owned());
        self.writer
            .run(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO prediction_outcomes (prediction_id, payload, received_at)
                     VALUES (?1, ?2, ?3) ON CONFLICT (prediction_id) DO NOTHING",
                )?
                .execute(params![prediction, payload, millis(Utc::now())])?;
                Ok(())
            })
            .await
    }

    pub(crate) async fn take_prediction_outcomes(
        &self,
        predictions: &[String],
    ) -> Result<Vec<String>, StoreError> {
        // Looked for every 0.2 s while anything waits, and almost always empty: a reader
        // answers that without queueing behind the one writer.
        let any: bool = self
            .readers
            .with(|conn| {
                Ok(conn
                    .prepare_cached("SELECT EXISTS (SELECT 1 FROM prediction_outcomes)")?
                    .query_row([], |row| row.get(0))?)
            })
            .await?;
        if !any {
            return Ok(Vec::new());
        }
        let predictions = predictions.to_vec();
        self.writer
            .run(move |conn| {
                let mut taken = Vec::new();
                let mut take = conn.prepare_cached(
                    "DELETE FROM prediction_outcomes WHERE prediction_id = ?1 RETURNING payload",
                )?;
                for id in &predictions {
                    let mut rows = take.query(params![id])?;
                    while let Some(row) = rows.next()? {
                        taken.push(row.get(0)?);
                    }
                }
                Ok(taken)
            })
            .await
    }

    pub(crate) async fn prune_prediction_outcomes(
        &self,
        older_than: Duration,
    ) -> Result<u64, StoreError> {
        self.writer
            .run(move |conn| {
                let before = millis(Utc::now()) - older_than.as_millis() as i64;
                Ok(conn
                    .prepare_cached("DELETE FROM prediction_outcomes WHERE received_at <= ?1")?
                    .execute(params![before])? as u64)
            })
            .await
    }
}
