//! Rate limiting: the creation rate measured at the Replicate mock against
//! `REPLICATE_RATE_LIMIT`, and a 429 (with and without Retry-After) handled.

use std::sync::Arc;
use std::time::Duration;

use genbot_engine::limiter::{LocalRateLimiter, RateLimiter, SharedRateLimiter};
use genbot_engine::JobEvent;
use genbot_mocks::replicate::{ReplicateMockConfig, ScriptedFault};

use crate::checks::CheckError;
use crate::context::Context;
use crate::grade::Grade;
use crate::outcome::{TestId, TestOutcome};
use crate::rig::{engine_config, Rig};

/// Replicate's documented limit on prediction creations.
const REPLICATE_DOCUMENTED_PER_MIN: u32 = 600;

pub async fn run(ctx: &Context) -> TestOutcome {
    let mut out = TestOutcome::new(TestId::RateLimiting, ctx.lang);
    if let Err(e) = measure(ctx, &mut out).await {
        out.fact(format!("could not run: {e}"));
        out.grade = Grade::NeedsOptimization;
    }
    out
}

async fn measure(ctx: &Context, out: &mut TestOutcome) -> Result<(), CheckError> {
    let per_min = ctx.settings.replicate_rate_limit_per_min;
    let span = Duration::from_secs(if ctx.quick { 3 } else { 15 });
    let intervals =
        ((f64::from(per_min) / 60.0 * span.as_secs_f64()).floor() as usize).clamp(4, 2_000);
    let jobs = intervals + 1;
    let mock = ReplicateMockConfig {
        median_latency: Duration::from_millis(20),
        ..ReplicateMockConfig::default()
    };
    // The limiter the bot would use: shared through Redis when the run has one (under a key
    // of its own, so a deployment's budget is not touched), else local.
    let shared = ctx.settings.redis_url.as_ref();
    let limiter: Arc<dyn RateLimiter> = match shared {
        Some(url) => Arc::new(
            SharedRateLimiter::new(
                url,
                &format!("genbot:bench:{:016x}:ratelimit", rand::random::<u64>()),
                per_min,
                1,
            )
            .map_err(CheckError::invalid("shared rate limiter"))?,
        ),
        None => Arc::new(LocalRateLimiter::new(per_min, 1)),
    };
    // Concurrency out of the way: this test is about the creation rate.
    let mut rig = Rig::start_with(engine_config(10_000, 10_000, 1_000_000), limiter, mock).await?;
    rig.register(1..2).await?;
    for n in 0..jobs {
        rig.submit(1, &format!("rate {n}")).await?;
    }
    let patience = Duration::from_secs_f64(60.0 / f64::from(per_min) * jobs as f64 + 30.0);
    rig.finals(jobs, patience).await;
    let stats = rig.mock.stats();
    let measured = stats
        .creation_rate_per_min()
        .ok_or(CheckError::NothingMeasured("fewer than two creations"))?;
    let error = (measured - f64::from(per_min)) / f64::from(per_min);
    let limiter = rig.engine.stats().limiter.unwrap_or_default();
    out.metric("configured_per_min", f64::from(per_min))
        .metric("measured_per_min", measured)
        .metric("error_percent", error * 100.0)
        .metric("creations", stats.created as f64)
        .metric("limiter_waits", limiter.waited as f64)
        .metric("limiter_fallbacks", limiter.fallbacks as f64);
    match shared {
        Some(url) if limiter.fallbacks > 0 => {
            out.fact(ctx.text(
                format!("limiter shared through Redis at {url}, but Redis did not answer for {} of {} creations: they were limited by this process alone", limiter.fallbacks, limiter.admitted),
                format!("лимитер общий через Redis ({url}), но Redis не ответил для {} из {} созданий: их ограничивал только этот процесс", limiter.fallbacks, limiter.admitted),
            ));
            out.recommend(ctx.text(
                format!("Redis at {url} did not answer the rate limiter: while it is down every replica uses the full REPLICATE_RATE_LIMIT={per_min}/min on its own; make Redis reachable."),
                format!("Redis ({url}) не ответил лимитеру: пока он недоступен, каждая реплика использует весь REPLICATE_RATE_LIMIT={per_min}/мин; обеспечьте доступность Redis."),
            ));
        }
        Some(url) => {
            out.fact(ctx.text(
                format!("limiter shared through Redis at {url} (as the bot with REDIS_URL): one budget for all replicas"),
                format!("лимитер общий через Redis ({url}), как у бота с REDIS_URL: один бюджет на все реплики"),
            ));
        }
        None => {
            out.fact(ctx.text(
                "limiter local to the process (no REDIS_URL): with several replicas each would use the full rate",
                "лимитер локальный (нет REDIS_URL): при нескольких репликах каждая использовала бы весь лимит",
            ));
        }
    }

    // 429s: one with Retry-After, one without; the job must still succeed.
    rig.mock.script([
        ScriptedFault::Throttle {
            retry_after_secs: Some(1),
        },
        ScriptedFault::Throttle {
            retry_after_secs: None,
        },
    ]);
    rig.submit(1, "after throttling").await?;
    let after = rig.finals(1, Duration::from_secs(30)).await;
    let handled = matches!(after.last(), Some(JobEvent::Succeeded { .. }));
    out.metric("throttled_handled", if handled { 1.0 } else { 0.0 });
    out.fact(ctx.text(
        format!("{jobs} creations at REPLICATE_RATE_LIMIT={per_min}/min: measured {measured:.1}/min ({:+.2} %); two 429 answers (with and without Retry-After) {}", error * 100.0, if handled { "were waited out and the job succeeded" } else { "were NOT handled" }),
        format!("{jobs} созданий при REPLICATE_RATE_LIMIT={per_min}/мин: измерено {measured:.1}/мин ({:+.2} %); два ответа 429 (с Retry-After и без) {}", error * 100.0, if handled { "переждали, задача выполнена" } else { "НЕ обработаны" }),
    ));
    out.grade = match (error.abs(), handled) {
        (_, false) => Grade::NeedsOptimization,
        (e, true) if e <= 0.02 => Grade::Excellent,
        (e, true) if e <= 0.05 => Grade::Good,
        _ => Grade::NeedsOptimization,
    };
    if per_min > REPLICATE_DOCUMENTED_PER_MIN {
        out.recommend(ctx.text(
            format!("REPLICATE_RATE_LIMIT={per_min}/min is above Replicate's documented {REPLICATE_DOCUMENTED_PER_MIN}/min for creating predictions: expect 429s; lower it unless your account has a higher limit."),
            format!("REPLICATE_RATE_LIMIT={per_min}/мин выше документированного лимита Replicate ({REPLICATE_DOCUMENTED_PER_MIN}/мин): будут ответы 429; уменьшите, если для аккаунта не поднят лимит."),
        ));
    }
    if out.grade != Grade::Excellent && handled {
        out.recommend(ctx.text(
            format!("The measured rate is {measured:.1}/min for a setting of {per_min}/min; the machine may be overloaded (check CPU during the run)."),
            format!("Измеренная частота {measured:.1}/мин при настройке {per_min}/мин; возможно, машина перегружена (проверьте CPU)."),
        ));
    }
    rig.engine.shutdown().await;
    Ok(())
}
