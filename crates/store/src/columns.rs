//! The column lists both backends select, in the order their row readers expect. Macros, so
//! `concat!` can build each statement at compile time and hot queries format nothing.

/// `users` columns, in the order the row readers take them.
macro_rules! user_columns {
    () => {
        "id, username, language, selected_model, credits, daily_count, daily_reset_date, \
         banned, created_at, updated_at, model_settings"
    };
}

/// `generation_jobs` columns, in the order the row readers take them.
macro_rules! job_columns {
    () => {
        "id, user_id, model, prompt, params, status, prediction_id, result_url, error, \
         attempts, created_at, updated_at, started_at, finished_at, charged_credits, \
         refunded_credits, quota_day, owner, lease_until, create_intent_at"
    };
}

pub(crate) use {job_columns, user_columns};
