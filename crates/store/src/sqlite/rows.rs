//! Row ↔ record conversions for SQLite (timestamps are unix milliseconds, dates ISO text).

use chrono::{DateTime, NaiveDate, Utc};
use rusqlite::Row;

use crate::{Job, JobId, JobStatus, StoreError, User, UserId};

pub(super) fn millis(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

pub(super) fn timestamp(column: &'static str, ms: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| StoreError::Corrupt {
        column,
        value: ms.to_string(),
    })
}

/// A JSON column's text, parsed.
pub(super) fn json(column: &'static str, text: String) -> Result<serde_json::Value, StoreError> {
    serde_json::from_str(&text).map_err(|_| StoreError::Corrupt {
        column,
        value: text,
    })
}

/// Job ids as a JSON array, for `id IN (SELECT value FROM json_each(?))`.
pub(super) fn job_ids_json(jobs: &[JobId]) -> String {
    serde_json::Value::from(jobs.iter().map(|j| j.0).collect::<Vec<i64>>()).to_string()
}

pub(super) fn date_text(date: NaiveDate) -> String {
    date.format("%Y-%m-%d").to_string()
}

pub(super) fn user(row: &Row<'_>) -> Result<User, StoreError> {
    let date: String = row.get(6)?;
    Ok(User {
        id: UserId(row.get(0)?),
        username: row.get(1)?,
        language: row.get(2)?,
        selected_model: row.get(3)?,
        credits: row.get(4)?,
        daily_count: row.get(5)?,
        daily_reset_date: NaiveDate::parse_from_str(&date, "%Y-%m-%d").map_err(|_| {
            StoreError::Corrupt {
                column: "users.daily_reset_date",
                value: date.clone(),
            }
        })?,
        banned: row.get(7)?,
        created_at: timestamp("users.created_at", row.get(8)?)?,
        updated_at: timestamp("users.updated_at", row.get(9)?)?,
        model_settings: json("users.model_settings", row.get(10)?)?,
    })
}

pub(super) fn job(row: &Row<'_>) -> Result<Job, StoreError> {
    let status: String = row.get(5)?;
    let optional_timestamp = |column, index| -> Result<Option<DateTime<Utc>>, StoreError> {
        row.get::<_, Option<i64>>(index)?
            .map(|ms| timestamp(column, ms))
            .transpose()
    };
    Ok(Job {
        id: JobId(row.get(0)?),
        user_id: UserId(row.get(1)?),
        model: row.get(2)?,
        prompt: row.get(3)?,
        params: json("generation_jobs.params", row.get(4)?)?,
        status: JobStatus::parse(&status).ok_or(StoreError::Corrupt {
            column: "generation_jobs.status",
            value: status.clone(),
        })?,
        prediction_id: row.get(6)?,
        result_url: row.get(7)?,
        error: row.get(8)?,
        attempts: row.get(9)?,
        created_at: timestamp("generation_jobs.created_at", row.get(10)?)?,
        updated_at: timestamp("generation_jobs.updated_at", row.get(11)?)?,
        started_at: optional_timestamp("generation_jobs.started_at", 12)?,
        finished_at: optional_timestamp("generation_jobs.finished_at", 13)?,
        charged_credits: row.get(14)?,
        refunded_credits: row.get(15)?,
        quota_day: row
            .get::<_, Option<String>>(16)?
            .map(|text| {
                NaiveDate::parse_from_str(&text, "%Y-%m-%d").map_err(|_| StoreError::Corrupt {
                    column: "generation_jobs.quota_day",
                    value: text.clone(),
                })
            })
            .transpose()?,
        owner: row.get(17)?,
        lease_until: optional_timestamp("generation_jobs.lease_until", 18)?,
        create_intent_at: optional_timestamp("generation_jobs.create_intent_at", 19)?,
    })
}
