//! Semaphores: a burst above `MAX_CONCURRENT_GENERATIONS` must never run more at once (observed
//! at the Replicate mock), and one user never more than `MAX_CONCURRENT_GENERATIONS_PER_USER`.

use std::time::Duration;

use genbot_mocks::replicate::ReplicateMockConfig;

use crate::checks::CheckError;
use crate::context::Context;
use crate::grade::Grade;
use crate::outcome::{TestId, TestOutcome};
use crate::rig::{engine_config, Rig};

pub async fn run(ctx: &Context) -> TestOutcome {
    let mut out = TestOutcome::new(TestId::Semaphores, ctx.lang);
    if let Err(e) = measure(ctx, &mut out).await {
        out.fact(format!("could not run: {e}"));
        out.grade = Grade::NeedsOptimization;
    }
    out
}

async fn measure(ctx: &Context, out: &mut TestOutcome) -> Result<(), CheckError> {
    let limit = ctx.settings.max_concurrent_generations;
    let per_user = ctx.settings.max_concurrent_generations_per_user;
    let latency = Duration::from_millis(if ctx.quick { 300 } else { 1000 });
    let mock = ReplicateMockConfig {
        median_latency: latency,
        ..ReplicateMockConfig::default()
    };
    // Rate limit out of the way: this test is about concurrency.
    let mut rig = Rig::start(
        engine_config(limit, per_user, 1_000_000),
        6_000_000,
        mock.clone(),
    )
    .await?;

    let burst = (limit * 3) as usize;
    let users = (burst as u32).div_ceil(per_user.max(1)) as i64;
    rig.register(1..users + 1).await?;
    for n in 0..burst {
        rig.submit(1 + (n as i64 % users), &format!("burst {n}"))
            .await?;
    }
    let finals = rig.finals(burst, Duration::from_secs(120)).await;
    let stats = rig.engine.stats();
    let observed = rig.mock.stats().max_running;
    out.metric("limit", f64::from(limit))
        .metric("per_user_limit", f64::from(per_user))
        .metric("burst", burst as f64)
        .metric("max_in_flight", observed as f64)
        .metric("engine_max_in_flight", stats.max_in_flight as f64)
        .metric(
            "completed",
            finals
                .iter()
                .filter(|e| !matches!(e, genbot_engine::JobEvent::Started { .. }))
                .count() as f64,
        )
        .metric("waits", stats.semaphore_waits as f64)
        .metric(
            "mean_wait_ms",
            if stats.semaphore_waits == 0 {
                0.0
            } else {
                stats.semaphore_wait.as_secs_f64() * 1000.0 / stats.semaphore_waits as f64
            },
        );

    // One user alone: never more than the per-user limit at once.
    let mut solo = Rig::start(engine_config(limit, per_user, 1_000_000), 6_000_000, mock).await?;
    solo.register(1..2).await?;
    let solo_jobs = (per_user * 3) as usize;
    for n in 0..solo_jobs {
        solo.submit(1, &format!("solo {n}")).await?;
    }
    solo.finals(solo_jobs, Duration::from_secs(120)).await;
    let solo_max = solo.mock.stats().max_running;
    out.metric("per_user_max_in_flight", solo_max as f64);

    out.fact(ctx.text(
        format!("burst of {burst} generations from {users} users, mock latency {latency:?}: at most {observed} ran at once at the mock (limit {limit}); one user with {solo_jobs} jobs: at most {solo_max} at once (limit {per_user})"),
        format!("всплеск из {burst} генераций от {users} пользователей, задержка мока {latency:?}: одновременно не более {observed} (лимит {limit}); один пользователь с {solo_jobs} задачами: не более {solo_max} (лимит {per_user})"),
    ));
    let violated = observed > u64::from(limit) || solo_max > u64::from(per_user);
    // The limit is only seen working when the burst filled it: a burst that never ran near
    // the limit at once says nothing about the semaphore, so it caps the grade at GOOD.
    let filled = observed as f64 >= 0.9 * f64::from(limit);
    out.grade = if violated {
        Grade::NeedsOptimization
    } else if !filled {
        ctx.thresholds.generation_limit(limit).min(Grade::Good)
    } else {
        ctx.thresholds.generation_limit(limit)
    };
    if !filled && !violated {
        out.fact(ctx.text(
            format!("the burst never filled the limit: at most {observed} of {limit} ran at once (0.9 × the limit needed to see it hold), so the grade is at most GOOD"),
            format!("всплеск не заполнил лимит: одновременно не более {observed} из {limit} (нужно 0,9 × лимита), поэтому оценка не выше ХОРОШО"),
        ));
    }
    if violated {
        out.recommend(ctx.text(
            format!("The semaphore let {observed} generations run with a limit of {limit}: this is a bug, report it."),
            format!("Семафор пропустил {observed} генераций при лимите {limit}: это ошибка, сообщите о ней."),
        ));
    } else if out.grade != Grade::Excellent {
        out.recommend(ctx.text(
            format!("MAX_CONCURRENT_GENERATIONS={limit}: raise it towards 80 if your Replicate plan allows, so bursts wait less (mean wait here {:.0} ms).", out.get("mean_wait_ms").unwrap_or(0.0)),
            format!("MAX_CONCURRENT_GENERATIONS={limit}: увеличьте до 80, если позволяет тариф Replicate, чтобы всплески ждали меньше (среднее ожидание {:.0} мс).", out.get("mean_wait_ms").unwrap_or(0.0)),
        ));
    }
    rig.engine.shutdown().await;
    solo.engine.shutdown().await;
    Ok(())
}
