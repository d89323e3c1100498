//! `--live-replicate`: a few real generations through the engine to the Replicate API the
//! settings name (`REPLICATE_API_URL`, `REPLICATE_API_TOKEN`, the configured catalogue and
//! default model), so the operation simulation's bound can be stated at the real latency.
//!
//! Bounded on purpose: a handful of predictions, one after another, each within the
//! configured generation timeout. Load never goes here; it goes to the in-process mock. The
//! users live in a private temporary SQLite file, never in the deployment's database.

use std::sync::Arc;
use std::time::{Duration, Instant};

use genbot_engine::catalogue::Catalogue;
use genbot_engine::limiter::LocalRateLimiter;
use genbot_engine::replicate::ReplicateClient;
use genbot_engine::{GenerationRequest, JobEvent};
use genbot_store::{NewUser, SqliteStore, Store, UserId};

use crate::checks::CheckError;
use crate::context::Context;
use crate::histogram::Latencies;
use crate::outcome::TestOutcome;
use crate::rig::{engine_config, start_engine};

/// Predictions a live sample creates (each one is billed by Replicate).
pub fn sample_size(quick: bool) -> usize {
    if quick {
        2
    } else {
        3
    }
}

const PROMPT: &str = "genbot readiness check: a lighthouse on a cliff at dawn";

/// What the live generations showed.
#[derive(Debug)]
struct LiveSample {
    sent: usize,
    succeeded: usize,
    latencies: Latencies,
    failures: Vec<String>,
}

/// Runs the live sample and adds its figures to `sim` (the operation simulation).
pub async fn add_to(ctx: &Context, sim: &mut TestOutcome) {
    let url = ctx.settings.replicate_api_url.as_str().to_owned();
    match sample(ctx).await {
        Err(e) => {
            sim.fact(ctx.text(
                format!("live Replicate at {url}: could not run ({e})"),
                format!("живой Replicate ({url}): не удалось запустить ({e})"),
            ));
            sim.recommend(ctx.text(
                format!("The live sample against {url} could not run: {e}. Check REPLICATE_API_URL, REPLICATE_API_TOKEN and the model catalogue."),
                format!("Живая проверка {url} не запустилась: {e}. Проверьте REPLICATE_API_URL, REPLICATE_API_TOKEN и каталог моделей."),
            ));
        }
        Ok(live) => report(ctx, sim, &url, &live),
    }
}

fn report(ctx: &Context, sim: &mut TestOutcome, url: &str, live: &LiveSample) {
    let summary = live.latencies.summary();
    sim.metric("live_sent", live.sent as f64)
        .metric("live_succeeded", live.succeeded as f64);
    if live.succeeded > 0 {
        sim.metric("live_p50_ms", summary.p50_ms)
            .metric("live_max_ms", summary.max_ms);
        let limit = ctx.settings.max_concurrent_generations;
        let per_min = ctx.settings.replicate_rate_limit_per_min;
        let bound = (f64::from(limit) / (summary.p50_ms / 1000.0)).min(f64::from(per_min) / 60.0);
        sim.metric("live_bound_per_s", bound);
        sim.fact(ctx.text(
            format!("live Replicate at {url}: {} of {} generations succeeded, median {:.1} s from submit to image (max {:.1} s); at that latency MAX_CONCURRENT_GENERATIONS={limit} and REPLICATE_RATE_LIMIT={per_min}/min allow {bound:.2} generations/s", live.succeeded, live.sent, summary.p50_ms / 1000.0, summary.max_ms / 1000.0),
            format!("живой Replicate ({url}): успешно {} из {} генераций, медиана {:.1} с от отправки до изображения (макс. {:.1} с); при такой задержке MAX_CONCURRENT_GENERATIONS={limit} и REPLICATE_RATE_LIMIT={per_min}/мин дают {bound:.2} генераций/с", live.succeeded, live.sent, summary.p50_ms / 1000.0, summary.max_ms / 1000.0),
        ));
    } else {
        sim.fact(ctx.text(
            format!(
                "live Replicate at {url}: none of {} generations succeeded",
                live.sent
            ),
            format!(
                "живой Replicate ({url}): ни одна из {} генераций не удалась",
                live.sent
            ),
        ));
    }
    if !live.failures.is_empty() {
        let reasons = live.failures.join("; ");
        sim.recommend(ctx.text(
            format!("{} of {} live generations failed ({reasons}): check REPLICATE_API_TOKEN, the default model's version and GENERATION_TIMEOUT_SECONDS before going live.", live.failures.len(), live.sent),
            format!("{} из {} живых генераций не удались ({reasons}): проверьте REPLICATE_API_TOKEN, версию модели по умолчанию и GENERATION_TIMEOUT_SECONDS.", live.failures.len(), live.sent),
        ));
    }
}

async fn sample(ctx: &Context) -> Result<LiveSample, CheckError> {
    let settings = &ctx.settings;
    let token = settings
        .replicate_api_token
        .as_ref()
        .ok_or(CheckError::NothingMeasured(
            "REPLICATE_API_TOKEN is not set",
        ))?;
    let client = ReplicateClient::new(settings.replicate_api_url.clone(), Some(token))?
        .with_limiter(Arc::new(LocalRateLimiter::new(
            settings.replicate_rate_limit_per_min,
            1,
        )));
    let catalogue = Catalogue::load(settings.models_file.as_deref(), &settings.default_model)?;
    let dir = tempfile::tempdir().map_err(CheckError::setup("temporary directory"))?;
    let store = Store::Sqlite(SqliteStore::open(&dir.path().join("live.db"), 2)?);
    let mut config = engine_config(1, 1, 100);
    config.timeout = settings.generation_timeout;
    let (engine, mut events) = start_engine(store, catalogue, client, config).await?;
    let user = UserId(1);
    engine
        .users()
        .upsert(NewUser {
            id: user,
            username: None,
            language: None,
            initial_credits: 1_000,
        })
        .await?;

    let mut live = LiveSample {
        sent: 0,
        succeeded: 0,
        latencies: Latencies::new(),
        failures: Vec::new(),
    };
    // One at a time: the sample measures latency, not throughput, and bills at most `n`.
    let patience = settings.generation_timeout + Duration::from_secs(30);
    for _ in 0..sample_size(ctx.quick) {
        let sent_at = Instant::now();
        let submitted = engine
            .submit(GenerationRequest {
                user,
                prompt: PROMPT.to_owned(),
                model: None,
                params: Default::default(),
                source_update: None,
                reply: None,
            })
            .await;
        live.sent += 1;
        if let Err(e) = submitted {
            live.failures.push(e.to_string());
            continue;
        }
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Some(JobEvent::Started { .. })) => continue,
                Ok(Some(JobEvent::Succeeded { .. })) => {
                    live.succeeded += 1;
                    live.latencies.record(sent_at.elapsed());
                }
                Ok(Some(JobEvent::Failed { reason, .. })) => live.failures.push(reason.to_string()),
                Ok(None) | Err(_) => live.failures.push(format!("no answer within {patience:?}")),
            }
            break;
        }
    }
    engine.shutdown().await;
    Ok(live)
}
