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

/// `YYYY-MM-DD` (chrono's ISO form; a strftime format would be parsed again at every call).
pub(super) fn date_text(date: NaiveDate) -> String {
    date.to_string()
}

/// A date column's `YYYY-MM-DD` text, parsed.
fn date(column: &'static str, text: String) -> Result<NaiveDate, StoreError> {
    text.parse().map_err(|_| StoreError::Corrupt {
        column,
        value: text,
    })
}

pub(super) fn user(row: &Row<'_>) -> Result<User, StoreError> {
    Ok(User {
        id: UserId(row.get(0)?),
        username: row.get(1)?,
        language: row.get(2)?,
        selected_model: row.get(3)?,
        credits: row.get(4)?,
        daily_count: row.get(5)?,
        daily_reset_date: date("users.daily_reset_date", row.get(6)?)?,
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
            .map(|text| date("generation_jobs.quota_day", text))
            .transpose()?,
        owner: row.get(17)?,
        lease_until: optional_timestamp("generation_jobs.lease_until", 18)?,
        create_intent_at: optional_timestamp("generation_jobs.create_intent_at", 19)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_date_is_stored_as_iso_text_and_read_back() {
        for (y, m, d) in [(2026, 12, 7), (1, 1, 1), (9999, 12, 31), (2024, 2, 29)] {
            let day = NaiveDate::from_ymd_opt(y, m, d).expect("a real date");
            let text = date_text(day);
            assert_eq!(text, day.format("%Y-%m-%d").to_string());
            assert_eq!(date("t.c", text).expect("readable"), day);
        }
        for bad in ["", "2026-13-01", "2026-02-30", "yesterday", "2026/12/07"] {
            assert!(
                matches!(
                    date("t.c", bad.to_owned()),
                    Err(StoreError::Corrupt { column: "t.c", .. })
                ),
                "{bad:?}"
            );
        }
    }
}
