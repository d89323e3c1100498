//! Operation simulation: the full generation flow under load against the Replicate mock's
//! latency and failure model, throughput compared with its bound
//! min(concurrency ÷ mean latency, rate limit); and memory under that load. With
//! `--live-replicate`, a few real generations add the real latency (see [`super::live_replicate`]).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use genbot_engine::JobEvent;
use genbot_mocks::replicate::ReplicateMockConfig;

use crate::checks::CheckError;
use crate::context::Context;
use crate::grade::Grade;
use crate::histogram::Latencies;
use crate::outcome::{TestId, TestOutcome};
use crate::rig::{engine_config, Rig};
use crate::rss::{megabytes, rss_bytes};

/// Spread of the simulated latency (log-normal σ) and the share of failing predictions.
const SIGMA: f64 = 0.3;
const FAILURE_RATE: f64 = 0.02;

/// Runs the simulation; returns (operation simulation, memory under load).
pub async fn run(ctx: &Context) -> (TestOutcome, TestOutcome) {
    let mut sim = TestOutcome::new(TestId::OperationSimulation, ctx.lang);
    let mut memory = TestOutcome::new(TestId::MemoryUnderLoad, ctx.lang);
    if let Err(e) = measure(ctx, &mut sim, &mut memory).await {
        sim.fact(format!("could not run: {e}"));
        memory.fact(format!("could not run: {e}"));
    }
    if ctx.live_replicate {
        super::live_replicate::add_to(ctx, &mut sim).await;
    }
    (sim, memory)
}

async fn measure(
    ctx: &Context,
    sim: &mut TestOutcome,
    memory: &mut TestOutcome,
) -> Result<(), CheckError> {
    let limit = ctx.settings.max_concurrent_generations;
    let per_user = ctx.settings.max_concurrent_generations_per_user;
    let per_min = ctx.settings.replicate_rate_limit_per_min;
    let median = Duration::from_millis(if ctx.quick { 400 } else { 2_000 });
    let mean = median.mul_f64((SIGMA * SIGMA / 2.0).exp());
    let bound = (f64::from(limit) / mean.as_secs_f64()).min(f64::from(per_min) / 60.0);
    let span = if ctx.quick { 6.0 } else { 60.0 };
    let jobs = ((bound * span).ceil() as usize).clamp(20, 20_000);
    let users = (jobs as u32).div_ceil(2).max(1) as i64;

    let rss_before = rss_bytes();
    let mut rig = Rig::start_hooked(
        engine_config(limit, per_user, 10_000_000),
        per_min,
        ReplicateMockConfig {
            median_latency: median,
            latency_sigma: SIGMA,
            failure_rate: FAILURE_RATE,
            ..ReplicateMockConfig::default()
        },
        ctx.replicate_webhooks,
    )
    .await?;
    rig.register(1..users + 1).await?;
    let started = Instant::now();
    let mut submitted_at = HashMap::with_capacity(jobs);
    for n in 0..jobs {
        let job = rig
            .submit(1 + (n as i64 % users), &format!("simulated {n}"))
            .await?;
        submitted_at.insert(job.job, Instant::now());
    }
    let mut latencies = Latencies::new();
    let mut finished_at = Vec::with_capacity(jobs);
    let (mut succeeded, mut failed, mut finals) = (0u64, 0u64, 0usize);
    let mut rss_peak = rss_before.unwrap_or(0);
    let deadline = tokio::time::Instant::now()
        + Duration::from_secs_f64(jobs as f64 / bound.max(0.01) * 3.0 + 60.0);
    while finals < jobs {
        let Ok(Some(event)) = tokio::time::timeout_at(deadline, rig.events.recv()).await else {
            break;
        };
        let (job, ok) = match event {
            JobEvent::Started { .. } => continue,
            JobEvent::Succeeded { job, .. } => (job, true),
            JobEvent::Failed { job, .. } => (job, false),
        };
        finals += 1;
        finished_at.push(started.elapsed().as_secs_f64());
        if ok {
            succeeded += 1
        } else {
            failed += 1
        }
        if let Some(at) = submitted_at.get(&job) {
            latencies.record(at.elapsed());
        }
        if finals % 16 == 0 {
            rss_peak = rss_peak.max(rss_bytes().unwrap_or(0));
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let throughput = finals as f64 / elapsed;
    let ratio = throughput / bound;
    // The whole-run figure carries the ramp-up and the final drain (one prediction latency
    // plus polling); the steady figure is the middle 80 % of completions.
    let steady_ratio = steady_rate(&finished_at).map_or(ratio, |rate| rate / bound);
    let summary = latencies.summary();
    let mock = rig.mock.stats();
    sim.metric("jobs", jobs as f64)
        .metric("completed", finals as f64)
        .metric("succeeded", succeeded as f64)
        .metric(
            "failure_rate",
            if finals == 0 {
                0.0
            } else {
                failed as f64 / finals as f64
            },
        )
        .metric("throughput_per_s", throughput)
        .metric("theoretical_per_s", bound)
        .metric("throughput_ratio", ratio)
        .metric("steady_throughput_ratio", steady_ratio)
        .metric("p50_ms", summary.p50_ms)
        .metric("p95_ms", summary.p95_ms)
        .metric("p99_ms", summary.p99_ms)
        .metric("mock_max_running", mock.max_running as f64)
        .metric("mock_polls", mock.polls as f64)
        .metric("webhooks_delivered", mock.webhooks_delivered as f64);
    let limited_by = if f64::from(limit) / mean.as_secs_f64() < f64::from(per_min) / 60.0 {
        "concurrency"
    } else {
        "rate limit"
    };
    let completion = if ctx.replicate_webhooks {
        ctx.text(
            format!(
                "ends by signed Replicate webhook ({} delivered, {} polls)",
                mock.webhooks_delivered, mock.polls
            ),
            format!(
                "окончание по подписанному вебхуку Replicate ({} доставлено, {} опросов)",
                mock.webhooks_delivered, mock.polls
            ),
        )
    } else {
        ctx.text(
            format!("ends found by polling ({} polls)", mock.polls),
            format!("окончание находится опросом ({} опросов)", mock.polls),
        )
    };
    sim.fact(completion);
    sim.fact(ctx.text(
        format!("{jobs} generations from {users} users; mock latency log-normal, median {median:?} (mean {mean:?}), {:.0} % failures; bound {bound:.2}/s set by the {limited_by} (MAX_CONCURRENT_GENERATIONS={limit}, REPLICATE_RATE_LIMIT={per_min}/min); measured {throughput:.2}/s over the whole run ({:.1} % of the bound, the final drain included), {:.1} % of the bound in steady state (completions between the 10th and 90th percentile of finish times; graded on this)", FAILURE_RATE * 100.0, ratio * 100.0, steady_ratio * 100.0),
        format!("{jobs} генераций от {users} пользователей; задержка мока логнормальная, медиана {median:?} (среднее {mean:?}), {:.0} % ошибок; предел {bound:.2}/с задаёт {} (MAX_CONCURRENT_GENERATIONS={limit}, REPLICATE_RATE_LIMIT={per_min}/мин); измерено {throughput:.2}/с за весь прогон ({:.1} % предела, с учётом завершающего слива), {:.1} % предела в установившемся режиме (завершения между 10-м и 90-м перцентилями времени окончания; оценка по нему)", FAILURE_RATE * 100.0, if limited_by == "concurrency" { "параллельность" } else { "лимит частоты" }, ratio * 100.0, steady_ratio * 100.0),
    ));
    sim.grade = steady_grade(finals < jobs, steady_ratio);
    if sim.grade != Grade::Excellent {
        sim.recommend(ctx.text(
            format!("Steady throughput is {:.0} % of its bound: polling and queueing overhead eat the rest; check CPU and the database during the run.", steady_ratio * 100.0),
            format!("Пропускная способность в установившемся режиме — {:.0} % от предела: остальное съедают опрос и очередь; проверьте CPU и БД во время прогона.", steady_ratio * 100.0),
        ));
    }
    if limited_by == "concurrency" && f64::from(per_min) / 60.0 > bound * 1.5 {
        sim.recommend(ctx.text(
            format!("Concurrency limits throughput: MAX_CONCURRENT_GENERATIONS={limit} allows {bound:.1}/s while REPLICATE_RATE_LIMIT allows {:.1}/s; raise the former to use the rate you pay for.", f64::from(per_min) / 60.0),
            format!("Пропускную способность ограничивает параллельность: MAX_CONCURRENT_GENERATIONS={limit} даёт {bound:.1}/с, а REPLICATE_RATE_LIMIT — {:.1}/с; увеличьте первое.", f64::from(per_min) / 60.0),
        ));
    }

    let rss_after = rss_bytes();
    rig.engine.shutdown().await;
    match (rss_before, rss_after) {
        (Some(before), Some(after)) => {
            let growth = megabytes(after.saturating_sub(before));
            let peak = megabytes(rss_peak.saturating_sub(before));
            memory
                .metric("rss_before_mb", megabytes(before))
                .metric("rss_after_mb", megabytes(after))
                .metric("growth_mb", growth)
                .metric("peak_growth_mb", peak)
                .metric(
                    "bytes_per_job",
                    after.saturating_sub(before) as f64 / jobs as f64,
                )
                .metric("photos", succeeded as f64);
            memory.grade = ctx.thresholds.memory_growth(growth);
            memory.fact(ctx.text(
                format!("RSS {:.1} MB before {jobs} simulated generations, {:.1} MB after (peak +{peak:.1} MB)", megabytes(before), megabytes(after)),
                format!("RSS {:.1} МБ до {jobs} генераций, {:.1} МБ после (пик +{peak:.1} МБ)", megabytes(before), megabytes(after)),
            ));
            if memory.grade != Grade::Excellent {
                memory.recommend(ctx.text(
                    format!("Memory grew {growth:.1} MB under load: check for leaks (jobs kept after they finish), store less per job, consider weak references for caches."),
                    format!("Память выросла на {growth:.1} МБ под нагрузкой: проверьте утечки (задачи, хранимые после завершения), храните меньше на задачу, рассмотрите слабые ссылки."),
                ));
            }
        }
        _ => {
            memory.fact("RSS is not readable on this platform (needs /proc)");
            memory.grade = Grade::NeedsOptimization;
        }
    }
    Ok(())
}

/// The simulation's grade: nothing may go missing, then steady throughput against its bound.
pub(crate) fn steady_grade(missing: bool, steady_ratio: f64) -> Grade {
    if missing {
        Grade::NeedsOptimization
    } else if steady_ratio >= 0.9 {
        Grade::Excellent
    } else if steady_ratio >= 0.7 {
        Grade::Good
    } else {
        Grade::NeedsOptimization
    }
}

/// Completions per second between the 10th and the 90th percentile of finish times (seconds
/// since the start, in order): the rate once the pipeline is full and before it drains.
pub(crate) fn steady_rate(finished_at: &[f64]) -> Option<f64> {
    let n = finished_at.len();
    if n < 10 {
        return None;
    }
    let (from, to) = (n / 10, n - n / 10 - 1);
    let span = finished_at[to] - finished_at[from];
    (span > 0.0).then(|| (to - from) as f64 / span)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steady_rate_leaves_out_ramp_and_drain() {
        // 100 completions at 10/s, then a drain: 10 more spread over 5 s.
        let mut times: Vec<f64> = (0..100).map(|k| f64::from(k) / 10.0).collect();
        times.extend((0..10).map(|k| 10.0 + f64::from(k) * 0.5));
        let whole = times.len() as f64 / times[times.len() - 1];
        let steady = steady_rate(&times).unwrap();
        assert!((steady - 10.0).abs() < 0.3, "steady {steady}");
        assert!(whole < 8.0, "whole {whole}");
        assert_eq!(steady_rate(&[1.0, 2.0]), None);
    }
}
