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

/// `broadcasts` columns, in the order the row readers take them.
macro_rules! broadcast_columns {
    () => {
        "id, admin_id, text, progress_message, cursor, delivered, blocked, failed, done, \
         created_at"
    };
}

/// `star_payments` columns, in the order the row readers take them.
macro_rules! payment_columns {
    () => {
        "charge_id, user_id, stars, credits, paid_at, refund_state"
    };
}

pub(crate) use {broadcast_columns, job_columns, payment_columns, user_columns};
