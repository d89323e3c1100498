//! What each metric is: which way is better, and how much it moves between two runs of one
//! build. Every metric the suite writes is listed here by name, so none is left unjudged by
//! accident (a test checks the list against the sources); names not listed (a newer or a
//! black-box report) fall back to what their name says.

/// Which way a metric is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Higher,
    Lower,
    /// Neither (a limit, a burst size, a count the test chose): shown, never judged.
    None,
}

/// Higher is better: rates, throughput, success.
const HIGHER: &[&str] = &[
    "a_order_kept",
    "hit_rate",
    "job_insert_rps",
    "jobs_succeeded",
    "max_rps",
    "max_users",
    "photos_delivered",
    "rps",
    "speed_up",
    "steady_throughput_ratio",
    "success_rate",
    "throughput_per_s",
    "throughput_ratio",
    "updates_per_s",
];

/// Lower is better: latencies, memory, losses, errors, recovery times. Latencies (`*_ms`) are
/// matched by suffix, apart from the ones in [`NONE`].
const LOWER: &[&str] = &[
    "balances_broken",
    // bad_input: what hostile input cost.
    "bot_deaths",
    "restart_deaths",
    "forged_payments_accepted",
    "replies_in_other_chats",
    "normal_unanswered",
    "unanswered",
    "normal_p99_ms_during",
    "bytes_per_job",
    "bytes_per_user",
    "error_percent",
    "errors",
    "failed_sessions",
    "finished_twice",
    "flood_dropped",
    "growth_mb",
    "jobs_duplicated",
    "jobs_lost",
    "ledger_mismatches",
    "lost_jobs",
    "missing_photos",
    "peak_growth_mb",
    "photos_duplicated",
    "photos_missing",
    // Text answers' p99 over the floor Telegram's budget imposes: 1 is as fast as any bot.
    "p99_to_floor",
    "predictions_duplicated",
    "problems",
    "recovery_s",
    // Requests Telegram would have refused, and its 429s for sending over budget.
    "refused_by_telegram",
    "telegram_429",
    "redis_mb",
    "rss_after_mb",
    "second_round_growth_mb",
    "sends_over_telegram_budget_share",
    "settle_after_load_s",
    "stale_cache_entries_after",
    "takeover_s",
    "unanswered_during_faults",
    "unanswered_during_outage",
    "unanswered_updates",
    "unanswered_when_back",
    "users_unanswered_during_outage",
    "users_with_403_retried",
];

/// Shown, never judged: settings, sizes the test chose, counts that follow from the load or
/// from the mock's random faults, and evidence that a fault reached the bot.
const NONE: &[&str] = &[
    // bad_input: the attack's size and the normal users' baseline.
    "inputs_sent",
    "inputs_delivered",
    "normal_steps",
    "normal_p99_ms_before",
    "a_photos",
    "accepted_before_refusal",
    "answers_during_outage",
    "b_position",
    "b_started_at",
    "bc_photos",
    "blocked_users",
    "burst",
    "c_position",
    "cache_errors",
    "capacity_tested",
    "completed",
    "configured_per_min",
    "cpu_percent_at_break",
    "creations",
    "creations_allowed_per_s",
    "creations_peak_per_s",
    "enabled",
    "engine_max_in_flight",
    "entries_held",
    "evictions",
    // The mock fails 2 % of predictions at random: the bot does not choose this figure.
    "failure_rate",
    // What Telegram's budget imposes on the scenario as run: the load's doing, not the bot's.
    "floor_p99_ms",
    "genbot_cache_errors_total",
    "genbot_rate_limiter_fallbacks_total",
    "jobs",
    "jobs_across_restart",
    "jobs_failed_and_refunded",
    "kills",
    "limit",
    "limiter_fallbacks",
    "limiter_waits",
    "live_bound_per_s",
    "live_max_ms",
    "live_p50_ms",
    "live_sent",
    "live_succeeded",
    "max_entries",
    "max_in_flight",
    "max_length",
    "measured_expiry_ms",
    "measured_per_min",
    "mock_max_running",
    "mock_polls",
    "models",
    "models_asked",
    "outage_s",
    // Payments completed at the mock: as many as the scenario's users who reached the pay
    // step; `ledger_mismatches` judges whether they were credited.
    "payments",
    "peak_sends_per_s",
    "per_user_limit",
    "per_user_max_in_flight",
    // What the fault tests' kills happened to catch on the wire: where a random kill lands is
    // not the build's doing (`photos_duplicated` stays a loss).
    "photo_sends_at_kills",
    // Images the memory tests' load delivered (evidence it measured), and how many users the
    // concurrent-users test chose to wait for theirs.
    "photos",
    "photos_awaited",
    "photos_duplicated_at_wire",
    "probe_ttl_ms",
    "processes",
    "prompts",
    "prompts_during_faults",
    "prompts_during_outage",
    "purchases",
    "purchases_credited",
    "rate_limiter_fallbacks",
    "reads",
    "refused_sends_403",
    "rss_before_mb",
    "running_on_killed_replica",
    "seconds",
    "sends_per_job",
    // What a user's session costs of Telegram's budget: the forecast's users a minute follow.
    "sends_per_user",
    "slo_p99_ms",
    "steps",
    "succeeded",
    "theoretical_per_s",
    "throttled_handled",
    "ttl_seconds",
    "updates",
    "users",
    "users_wrote_during_outage",
    "waits",
    "webhooks_delivered",
];

/// The name a metric is judged by: the concurrent-users test's figures from `genbot serve`
/// (`serve_p99_ms`) are the black-box test's (`p99_ms`), judged alike.
fn judged_as(metric: &str) -> &str {
    metric
        .strip_prefix(crate::checks::served_users::PREFIX)
        .unwrap_or(metric)
}

/// Which way a metric is better: from the lists above, else from its name.
pub fn direction(metric: &str) -> Direction {
    let metric = judged_as(metric);
    if NONE.contains(&metric) {
        Direction::None
    } else if HIGHER.contains(&metric) {
        Direction::Higher
    } else if LOWER.contains(&metric) || metric.ends_with("_ms") {
        Direction::Lower
    } else {
        by_name(metric)
    }
}

/// Figures that may be below zero: a signed deviation from a setting, and a position that
/// is −1 for "never". Every other figure the suite writes is a latency, a rate, a size or a
/// count.
const SIGNED: &[&str] = &["b_started_at", "error_percent"];

/// Whether `metric` may be negative: the signed ones above, and names no list knows that are
/// not judged either (a negative there cannot flip a verdict). A negative latency, rate or
/// count would be judged as an improvement, so those are refused.
pub(super) fn may_be_negative(metric: &str) -> bool {
    SIGNED.contains(&judged_as(metric)) || (!listed(metric) && direction(metric) == Direction::None)
}

/// Whether `metric` is in one of the lists (or is a latency).
pub(super) fn listed(metric: &str) -> bool {
    let metric = judged_as(metric);
    NONE.contains(&metric)
        || HIGHER.contains(&metric)
        || LOWER.contains(&metric)
        || metric.ends_with("_ms")
}

/// A metric no list names: its name's words decide.
fn by_name(metric: &str) -> Direction {
    const LOWER_WORDS: &[&str] = &[
        "lost",
        "missing",
        "duplicat",
        "twice",
        "failed",
        "unanswered",
        "error",
        "broken",
        "mismatch",
        "growth_mb",
        "bytes_per",
    ];
    const HIGHER_WORDS: &[&str] = &["success", "hit_rate", "throughput", "rps", "per_s"];
    if LOWER_WORDS.iter().any(|w| metric.contains(w)) || metric.ends_with("_s") {
        Direction::Lower
    } else if HIGHER_WORDS.iter().any(|w| metric.contains(w)) {
        Direction::Higher
    } else {
        Direction::None
    }
}

/// Run-to-run noise of one run, in percent, by metric kind: two runs of the same build on a
/// shared 2-core machine differ by up to about this much. Used when the reports carry no
/// repeats of their own to measure the spread from.
pub fn noise_percent(metric: &str) -> f64 {
    let metric = judged_as(metric);
    let tail = metric.contains("p99") || metric.starts_with("max_ms") || metric.contains("p95");
    if metric.ends_with("_ms") && tail {
        // A tail of a few hundred samples on a shared machine: one stall doubles it.
        100.0
    } else if metric.ends_with("_ms") {
        30.0
    } else if metric == "max_rps" || metric == "max_users" {
        // The knee is a step of a doubling ramp, so any change is a whole step (−50 % or
        // more). A band of ±50 % would call the bot carrying half the load noise; a one-step
        // drop is a regression unless repeated runs (`--old-repeat`) show that spread.
        0.0
    } else if metric.ends_with("_s") && direction(metric) == Direction::Lower {
        // Recovery and take-over times: bounded by polling and the lease, a second or so.
        50.0
    } else if metric.contains("_mb") || metric.contains("bytes_per") {
        20.0
    } else if metric.contains("rate") && !metric.contains("per") {
        1.0
    } else if direction(metric) == Direction::Lower {
        // Losses and failures: none is expected either time.
        0.0
    } else {
        // Rates and throughput over a few seconds of a shared machine.
        25.0
    }
}

/// RSS moves by this much between two runs of one build (allocator arenas, page cache).
const RSS_NOISE_MB: f64 = 5.0;

/// Absolute changes this small are noise whatever the percentage (a few milliseconds on a
/// 3 ms latency, a few MB of RSS from the allocator). `users` is the test's user count: a
/// per-user figure is RSS noise spread over the users, so 2 MB over 40 users (53 KB each) is
/// as much noise as 2 MB over 1000.
pub fn noise_floor(metric: &str, users: Option<f64>) -> f64 {
    let metric = judged_as(metric);
    if metric.ends_with("_ms") {
        // One scheduler hiccup on a busy 2-core machine.
        20.0
    } else if metric.ends_with("_s") && direction(metric) == Direction::Lower {
        // One poll of the recovery probe.
        1.0
    } else if metric.contains("_mb") {
        RSS_NOISE_MB
    } else if metric.contains("bytes_per") {
        let spread = users
            .filter(|u| *u >= 1.0)
            .map_or(0.0, |u| RSS_NOISE_MB * 1024.0 * 1024.0 / u);
        spread.max(10_000.0)
    } else if metric == "error_percent" {
        // The limiter's deviation from its setting: a point either way is one request's timing.
        1.0
    } else if metric.ends_with("_share") {
        // A share of sends that fell in busy seconds: which second a burst lands in is timing.
        0.05
    } else {
        0.0
    }
}
