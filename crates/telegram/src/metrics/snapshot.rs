//! The pipeline's state at one scrape: read from the engine, cache, outbox and webhook
//! receiver (the outbox needs a database query, so it is read before encoding), then encoded
//! as constant counters and gauges.

use std::sync::Arc;

use genbot_engine::replicate::WebhookStats;
use genbot_engine::EngineStats;
use parking_lot::Mutex;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::Front;

/// What the engine, cache, outbox and webhook receiver report at one moment.
#[derive(Debug, Clone, Default)]
pub(crate) struct Snapshot {
    engine: EngineStats,
    cache: genbot_cache::CacheStatsSnapshot,
    webhooks: WebhookStats,
    /// `None` when the database did not answer.
    outbox: Option<genbot_store::OutboxBacklog>,
}

impl Snapshot {
    pub(crate) async fn read(front: &Front) -> Snapshot {
        let engine = front.engine();
        Snapshot {
            engine: engine.stats(),
            cache: engine.users().stats(),
            webhooks: engine.replicate_webhook_stats(),
            outbox: engine.store().outbox_backlog().await.ok(),
        }
    }
}

#[derive(Debug)]
pub(crate) struct SnapshotCollector(pub(crate) Arc<Mutex<Snapshot>>);

fn counter(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: u64,
) -> std::fmt::Result {
    let metric = ConstCounter::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn gauge(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: f64,
) -> std::fmt::Result {
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

impl Collector for SnapshotCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
        let s = self.0.lock().clone();
        let e = &s.engine;
        let enc = &mut encoder;
        gauge(
            enc,
            "genbot_queue_length",
            "Jobs waiting, all replicas",
            e.queue_length as f64,
        )?;
        gauge(
            enc,
            "genbot_in_flight",
            "Generations this process runs now",
            e.in_flight as f64,
        )?;
        gauge(
            enc,
            "genbot_in_flight_limit",
            "MAX_CONCURRENT_GENERATIONS",
            f64::from(e.limit),
        )?;
        gauge(
            enc,
            "genbot_queue_max_length",
            "QUEUE_MAX_LENGTH: queued jobs beyond which new ones are refused",
            f64::from(e.queue_max),
        )?;
        for (name, help, value) in [
            (
                "genbot_predictions_created",
                "Predictions created at Replicate",
                e.predictions_created,
            ),
            (
                "genbot_generations_succeeded",
                "Generations succeeded",
                e.succeeded,
            ),
            (
                "genbot_generations_failed",
                "Generations failed (refunded)",
                e.failed,
            ),
            (
                "genbot_generations_timed_out",
                "Generations canceled after GENERATION_TIMEOUT_SECONDS",
                e.timed_out,
            ),
            (
                "genbot_replicate_throttled",
                "429 answers from Replicate (each retry's answer counted)",
                e.replicate_throttled,
            ),
            (
                "genbot_jobs_taken_over",
                "Running jobs taken over from a replica whose lease expired",
                e.taken_over,
            ),
            (
                "genbot_create_lookups",
                "Creates with an unknown outcome looked up at Replicate",
                e.lookups,
            ),
            (
                "genbot_create_found_by_lookup",
                "Lookups that found the prediction (a second create avoided)",
                e.found_by_lookup,
            ),
            (
                "genbot_outputs_stored",
                "Succeeded outputs downloaded and kept with their job",
                e.outputs_stored,
            ),
            (
                "genbot_outputs_not_stored",
                "Succeeded outputs whose download failed (delivered by URL)",
                e.outputs_not_stored,
            ),
            (
                "genbot_cache_hits",
                "User reads answered by the cache",
                s.cache.hits,
            ),
            (
                "genbot_cache_misses",
                "User reads that went to the database",
                s.cache.misses,
            ),
            (
                "genbot_cache_errors",
                "Cache operations that failed (Redis down or slow)",
                s.cache.errors,
            ),
            (
                "genbot_replicate_webhooks_delivered",
                "Replicate webhooks handed to the generation waiting for them",
                s.webhooks.delivered,
            ),
            (
                "genbot_replicate_webhooks_kept",
                "Verified Replicate webhooks nobody here waited for (kept for a late wait, recorded for the replica running the job)",
                s.webhooks.kept,
            ),
            (
                "genbot_replicate_webhooks_relayed",
                "Prediction outcomes another replica received and recorded, handed to a generation here",
                s.webhooks.relayed,
            ),
            (
                "genbot_replicate_webhooks_replayed",
                "Replicate webhooks whose webhook-id was seen before (no effect)",
                s.webhooks.replayed,
            ),
            (
                "genbot_replicate_webhook_signature_failures",
                "Replicate webhooks refused: bad signature, stale timestamp, bad body",
                s.webhooks.rejected,
            ),
        ] {
            counter(enc, name, help, value)?;
        }
        if let Some(limiter) = &e.limiter {
            counter(
                enc,
                "genbot_rate_limiter_waits",
                "Prediction creations that waited for the rate limiter",
                limiter.waited,
            )?;
            counter(
                enc,
                "genbot_rate_limiter_fallbacks",
                "Creations limited by this process alone because Redis did not answer",
                limiter.fallbacks,
            )?;
        }
        if let Some(outbox) = &s.outbox {
            gauge(
                enc,
                "genbot_outbox_undelivered",
                "Finished jobs whose result is not delivered yet",
                outbox.undelivered as f64,
            )?;
            gauge(
                enc,
                "genbot_outbox_oldest_seconds",
                "How long the oldest undelivered result has waited since its job finished",
                outbox.oldest_seconds,
            )?;
        }
        Ok(())
    }
}
