//! Rate limiting: the creation rate measured at the Replicate mock against
//! `REPLICATE_RATE_LIMIT`, and a 429 (with and without Retry-After) handled.

use std::time::Duration;

use genbot_engine::JobEvent;
use genbot_mocks::replicate::{ReplicateMockConfig, ScriptedFault};

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

async fn measure(ctx: &Context, out: &mut TestOutcome) -> Result<(), String> {
    let per_min = ctx.settings.replicate_rate_limit_per_min;
    let span = Duration::from_secs(if ctx.quick { 3 } else { 15 });
    let intervals =
        ((f64::from(per_min) / 60.0 * span.as_secs_f64()).floor() as usize).clamp(4, 2_000);
    let jobs = intervals + 1;
    let mock = ReplicateMockConfig {
        median_latency: Duration::from_millis(20),
        ..ReplicateMockConfig::default()
    };
    // Concurrency out of the way: this test is about the creation rate.
    let mut rig = Rig::start(engine_config(10_000, 10_000, 1_000_000), per_min, mock).await?;
    rig.register(1..2).await?;
    for n in 0..jobs {
        rig.submit(1, &format!("rate {n}"))
            .await
            .map_err(|e| e.to_string())?;
    }
    let patience = Duration::from_secs_f64(60.0 / f64::from(per_min) * jobs as f64 + 30.0);
    rig.finals(jobs, patience).await;
    let stats = rig.mock.stats();
    let measured = stats
        .creation_rate_per_min()
        .ok_or("fewer than two creations")?;
    let error = (measured - f64::from(per_min)) / f64::from(per_min);
    let limiter = rig.engine.stats().limiter.unwrap_or_default();
    out.metric("configured_per_min", f64::from(per_min))
        .metric("measured_per_min", measured)
        .metric("error_percent", error * 100.0)
        .metric("creations", stats.created as f64)
        .metric("limiter_waits", limiter.waited as f64);

    // 429s: one with Retry-After, one without; the job must still succeed.
    rig.mock.script([
        ScriptedFault::Throttle {
            retry_after_secs: Some(1),
        },
        ScriptedFault::Throttle {
            retry_after_secs: None,
        },
    ]);
    rig.submit(1, "after throttling")
        .await
        .map_err(|e| e.to_string())?;
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
