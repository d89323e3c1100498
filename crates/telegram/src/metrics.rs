//! What `GET /metrics` exposes (OpenMetrics text, through `prometheus-client`): the front end's
//! own counters and handler latency, and at each scrape a snapshot of the engine, cache,
//! outbox and Replicate webhooks ([`snapshot`]). Counters end in `_total`; the cache exposes
//! hits and misses rather than a rate.

pub(crate) mod snapshot;

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use teloxide::{ApiError, RequestError};

use self::snapshot::{Snapshot, SnapshotCollector};

/// Upper bounds of the handler-latency histogram buckets, in seconds.
const BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

/// A Telegram send error, by what Telegram (or the network) answered.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct SendErrorLabels {
    /// `429`, `403`, `400`, `401`, `404`, `409`, `5xx`, `network` or `invalid_json`.
    code: &'static str,
}

/// An update's kind (`message`, `edited_message`, `poll`…).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

/// The front end's instruments and the registry that encodes them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    updates: Counter,
    dropped_flood: Counter,
    delivered: Counter,
    delivery_failures: Counter,
    progress_dropped: Counter,
    handler_panics: Counter,
    dead_letters: Counter,
    payments_uncredited: Counter,
    shed: Counter,
    ignored: Family<KindLabels, Counter>,
    unsupported: Family<KindLabels, Counter>,
    send_errors: Family<SendErrorLabels, Counter>,
    update_seconds: Histogram,
    snapshot: Arc<Mutex<Snapshot>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let metrics = Metrics {
            registry: Registry::default(),
            updates: Counter::default(),
            dropped_flood: Counter::default(),
            delivered: Counter::default(),
            delivery_failures: Counter::default(),
            progress_dropped: Counter::default(),
            handler_panics: Counter::default(),
            dead_letters: Counter::default(),
            payments_uncredited: Counter::default(),
            shed: Counter::default(),
            ignored: Family::default(),
            unsupported: Family::default(),
            send_errors: Family::default(),
            update_seconds: Histogram::new(BUCKETS),
            snapshot: Arc::default(),
        };
        metrics.registered()
    }
}

impl Metrics {
    fn registered(mut self) -> Self {
        let r = &mut self.registry;
        r.register(
            "genbot_updates",
            "Telegram updates handled",
            self.updates.clone(),
        );
        r.register(
            "genbot_updates_dropped_flood",
            "Updates skipped by the per-user limit",
            self.dropped_flood.clone(),
        );
        r.register(
            "genbot_deliveries",
            "Results (images or failure messages) delivered from the outbox",
            self.delivered.clone(),
        );
        r.register(
            "genbot_delivery_failures",
            "Delivery attempts that failed (retried later or given up)",
            self.delivery_failures.clone(),
        );
        r.register(
            "genbot_progress_dropped",
            "Progress messages (queue positions, status edits) dropped or put off to leave the send budget to answers",
            self.progress_dropped.clone(),
        );
        r.register(
            "genbot_handler_panics",
            "Update handlers that panicked (caught; the update is retried, then set aside)",
            self.handler_panics.clone(),
        );
        r.register(
            "genbot_updates_dead_lettered",
            "Updates set aside after failing too often, or because they no longer parse \
             (genbot inbox list)",
            self.dead_letters.clone(),
        );
        r.register(
            "genbot_payments_uncredited",
            "Successful payments recorded without credits: their currency or amount is not \
             that of the package their invoice named (an admin refunds them: /refund)",
            self.payments_uncredited.clone(),
        );
        r.register(
            "genbot_updates_shed",
            "Updates skipped because their chat had too many waiting",
            self.shed.clone(),
        );
        r.register(
            "genbot_updates_ignored",
            "Updates of kinds the bot has nothing to do with, by kind",
            self.ignored.clone(),
        );
        r.register(
            "genbot_messages_unsupported",
            "Messages whose content the bot does not take (stickers, voice, video…), by kind: \
             answered with the help text in a private chat, left alone in a group",
            self.unsupported.clone(),
        );
        r.register(
            "genbot_telegram_send_errors",
            "Telegram requests that failed, by answer (429, 403, 400, 5xx, network)",
            self.send_errors.clone(),
        );
        r.register(
            "genbot_update_seconds",
            "Time to handle one update",
            self.update_seconds.clone(),
        );
        r.register_collector(Box::new(SnapshotCollector(self.snapshot.clone())));
        self
    }

    pub(crate) fn observe(&self, elapsed: Duration) {
        self.updates.inc();
        self.update_seconds.observe(elapsed.as_secs_f64());
    }

    pub(crate) fn delivered(&self) {
        self.delivered.inc();
    }

    pub(crate) fn progress_dropped(&self) {
        self.progress_dropped.inc();
    }

    pub(crate) fn delivery_failed(&self) {
        self.delivery_failures.inc();
    }

    pub(crate) fn send_error(&self, error: &RequestError) {
        self.send_errors
            .get_or_create(&SendErrorLabels {
                code: error_code(error),
            })
            .inc();
    }

    pub(crate) fn handler_panicked(&self) {
        self.handler_panics.inc();
    }

    pub(crate) fn dead_lettered(&self) {
        self.dead_letters.inc();
    }

    pub(crate) fn payment_uncredited(&self) {
        self.payments_uncredited.inc();
    }

    /// Payments recorded without credits so far (`genbot_payments_uncredited_total`).
    pub fn payments_uncredited(&self) -> u64 {
        self.payments_uncredited.get()
    }

    pub(crate) fn shed(&self) {
        self.shed.inc();
    }

    pub(crate) fn ignored(&self, kind: &'static str) {
        self.ignored.get_or_create(&KindLabels { kind }).inc();
    }

    pub(crate) fn unsupported(&self, kind: &'static str) {
        self.unsupported.get_or_create(&KindLabels { kind }).inc();
    }

    /// Updates of `kind` ignored so far (`genbot_updates_ignored_total{kind}`).
    pub fn ignored_count(&self, kind: &'static str) -> u64 {
        self.ignored.get_or_create(&KindLabels { kind }).get()
    }

    /// Messages of `kind` the bot did not take so far (`genbot_messages_unsupported_total`).
    pub fn unsupported_count(&self, kind: &'static str) -> u64 {
        self.unsupported.get_or_create(&KindLabels { kind }).get()
    }

    /// Handlers that panicked so far.
    pub fn handler_panics(&self) -> u64 {
        self.handler_panics.get()
    }

    /// Updates set aside as dead letters by this process so far.
    pub fn dead_letters(&self) -> u64 {
        self.dead_letters.get()
    }

    /// Updates skipped because their chat had too many waiting.
    pub fn updates_shed(&self) -> u64 {
        self.shed.get()
    }

    pub(crate) fn dropped(&self) {
        self.dropped_flood.inc();
    }

    /// Updates handled so far.
    pub fn updates(&self) -> u64 {
        self.updates.get()
    }

    /// Updates skipped because their user sent faster than the per-user limit.
    pub fn dropped_flood(&self) -> u64 {
        self.dropped_flood.get()
    }

    /// The exposition, with `snapshot` as the scrape-time state of the pipeline.
    pub(crate) fn render(&self, snapshot: Snapshot) -> String {
        *self.snapshot.lock() = snapshot;
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "encoding /metrics failed");
        }
        out
    }
}

/// The label for a failed Telegram request. teloxide keeps the description, not the status,
/// so refusals are told apart by kind.
fn error_code(error: &RequestError) -> &'static str {
    match error {
        RequestError::RetryAfter(_) => "429",
        blocked if crate::pacing::is_blocked(blocked) => "403",
        RequestError::Api(ApiError::InvalidToken) => "401",
        // An unknown description is a refusal when it says so ("Bad Request: …"), else a
        // server's error ("Bad Gateway", "Internal Server Error").
        RequestError::Api(ApiError::Unknown(description)) => {
            crate::pacing::refusal_status(description).unwrap_or("5xx")
        }
        RequestError::Api(_) | RequestError::MigrateToChatId(_) => "400",
        RequestError::Network(_) | RequestError::Io(_) => "network",
        RequestError::InvalidJson { .. } => "invalid_json",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_end_in_total_and_the_histogram_is_cumulative() {
        let metrics = Metrics::default();
        metrics.observe(Duration::from_micros(500));
        metrics.observe(Duration::from_millis(20));
        metrics.send_error(&RequestError::Api(ApiError::BotBlocked));
        let out = metrics.render(Snapshot::default());
        assert!(
            out.contains("genbot_update_seconds_bucket{le=\"0.001\"} 1"),
            "{out}"
        );
        assert!(
            out.contains("genbot_update_seconds_bucket{le=\"0.025\"} 2"),
            "{out}"
        );
        assert!(out.contains("genbot_updates_total 2"), "{out}");
        assert!(
            out.contains("genbot_telegram_send_errors_total{code=\"403\"} 1"),
            "{out}"
        );
        assert!(out.contains("# TYPE genbot_cache_hits counter"), "{out}");
    }

    /// A refusal teloxide has no name for is counted as the refusal it says it is, not as a
    /// server error.
    #[test]
    fn unknown_descriptions_are_labelled_by_what_they_say() {
        let unknown = |d: &str| RequestError::Api(ApiError::Unknown(d.to_owned()));
        let cases = [
            ("Bad Request: PHOTO_INVALID_DIMENSIONS", "400"),
            (
                "Forbidden: bot can't initiate conversation with a user",
                "403",
            ),
            ("Conflict: terminated by other getUpdates request", "409"),
            ("Bad Gateway", "5xx"),
            ("Internal Server Error", "5xx"),
            ("Bad Gateway (HTTP 502, not a Bot API answer)", "5xx"),
            ("something nobody has seen", "5xx"),
        ];
        for (description, code) in cases {
            assert_eq!(error_code(&unknown(description)), code, "{description}");
        }
    }
}
