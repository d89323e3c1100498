//! `crash_restart`: a steady load, the bot killed with SIGKILL at random moments and started
//! again each time; nothing may be lost or run twice, and it must answer again quickly.

use std::time::{Duration, Instant};

use genbot_mocks::replicate::ReplicateMockConfig;
use rand::Rng;

use super::{describe, grade, on_stage, settle_limit, timeline, until};
use crate::context::Context;
use crate::faults::audit::{self, Tally};
use crate::faults::load::Load;
use crate::faults::stage::{Stage, StageSpec};
use crate::faults::FaultError;
use crate::outcome::{TestId, TestOutcome};

/// From a restart's spawn to the bot's first answer: within this is EXCELLENT.
const RECOVERY_BOUND: Duration = Duration::from_secs(5);
const USERS: u32 = 30;
const PROMPTS_PER_S: f64 = 6.0;
/// Prompts per user in the burst before each kill (a full run; a quick one sends one each:
/// the kill still meets a whole batch fetched and not yet recorded, and every prompt costs
/// about 2.3 of Telegram's 30 sends a second to settle, so three each made a quick run wait
/// 6 s longer for the same exposure).
const BURST_ROUNDS: usize = 3;
const BURST_ROUNDS_QUICK: usize = 1;
/// Prediction creations a minute the replicas may make. The test is about what a kill loses,
/// not the account's rate: at `REPLICATE_RATE_LIMIT`'s default (600) the bursts' jobs were
/// still being created 15 s after the load, and the run waited for them. Raised, the kills meet
/// the same bursts, and the drain after the load is bound by Telegram's send budget only.
const CREATIONS_PER_MIN: u32 = 6_000;

struct Measured {
    tally: Tally,
    /// Spawn to first answer, per restart.
    recoveries: Vec<Option<Duration>>,
    kill_moments_s: Vec<f64>,
    /// Prompts per user in each burst.
    rounds: usize,
    settled: Option<Duration>,
    load: Load,
    database: String,
}

pub async fn run(ctx: &Context) -> TestOutcome {
    let id = TestId::CrashRestart;
    on_stage(
        id,
        ctx,
        spec(),
        |ctx, stage| Box::pin(measure(ctx, stage)),
        describe_run,
    )
    .await
}

fn spec() -> StageSpec {
    StageSpec {
        // Creates answered late, so kills land while predictions exist but are not recorded.
        replicate: ReplicateMockConfig {
            median_latency: Duration::from_millis(800),
            latency_sigma: 0.3,
            create_response_delay: Duration::from_millis(150),
            ..ReplicateMockConfig::default()
        },
        redis: true,
        env: vec![("REPLICATE_RATE_LIMIT", CREATIONS_PER_MIN.to_string())],
        ..StageSpec::default()
    }
}

/// Random kill moments in the load's middle, at least 1.5 s apart.
fn kill_moments(count: usize, load_s: f64) -> Vec<f64> {
    let mut rng = rand::rng();
    let slot = (load_s - 2.0) / count as f64;
    (0..count)
        .map(|n| 1.0 + slot * n as f64 + rng.random_range(0.0..(slot - 1.5).max(0.1)))
        .collect()
}

async fn measure(ctx: &Context, stage: &Stage) -> Result<Measured, FaultError> {
    let (kills, load_s, rounds) = if ctx.quick {
        (2, 6.5, BURST_ROUNDS_QUICK)
    } else {
        (5, 25.0, BURST_ROUNDS)
    };
    let mut bot = stage.replica("bench-crash")?;
    bot.start().await?;
    let users = Load::users(&stage.telegram, USERS);
    let mut load = Load::start(&stage.telegram, users, PROMPTS_PER_S);
    let moments = kill_moments(kills, load_s);
    let mut recoveries = Vec::new();
    for &at in &moments {
        until(&load, at).await;
        // The most exposed moment: a burst the bot has just fetched from Telegram (and
        // confirmed with its next poll) but not yet turned into jobs.
        for _ in 0..rounds {
            load.burst();
        }
        let sent = stage.telegram.stats().updates_sent;
        let _ =
            super::time_until_every(Duration::from_secs(5), Duration::from_millis(2), || async {
                stage.telegram.stats().updates_delivered >= sent
            })
            .await;
        bot.kill().await;
        let answered = stage.telegram.stats().answer_latencies.len();
        let spawned = Instant::now();
        bot.start().await?;
        let first_answer = super::time_until(Duration::from_secs(30), || async {
            stage.telegram.stats().answer_latencies.len() > answered
        })
        .await
        .map(|_| spawned.elapsed());
        recoveries.push(first_answer);
    }
    until(&load, load_s).await;
    load.stop_prompting().await;
    let settled = audit::settle(stage, &load, settle_limit(ctx)).await;
    load.finish().await;
    let tally = audit::count(stage, &load, &[]).await?;
    bot.kill().await;
    Ok(Measured {
        tally,
        recoveries,
        kill_moments_s: moments,
        rounds,
        settled,
        load,
        database: stage.database_label.clone(),
    })
}

fn describe_run(ctx: &Context, m: &Measured) -> TestOutcome {
    let mut out = TestOutcome::new(TestId::CrashRestart, ctx.lang);
    let worst = m.recoveries.iter().copied().max().flatten();
    let all_recovered = m.recoveries.iter().all(Option::is_some);
    let in_bound = all_recovered && worst.is_some_and(|w| w <= RECOVERY_BOUND);
    out.grade = grade(&m.tally, &[], in_bound && m.settled.is_some());
    out.metric("kills", m.recoveries.len() as f64);
    if let Some(worst) = worst {
        out.metric(
            "restart_to_first_answer_max_ms",
            worst.as_secs_f64() * 1000.0,
        );
    }
    if let Some(settled) = m.settled {
        out.metric("settle_after_load_s", settled.as_secs_f64());
    }
    describe(&mut out, ctx, &m.tally, &[]);
    let moments: Vec<String> = m
        .kill_moments_s
        .iter()
        .zip(&m.recoveries)
        .map(|(at, r)| format!("{at:.1} s → {}", super::seconds(*r, ctx)))
        .collect();
    out.fact(ctx.text(
        format!(
            "{USERS} users, {PROMPTS_PER_S} prompts/s, creations limited at {CREATIONS_PER_MIN}/min; at each kill a burst of {} prompt(s) per user, SIGKILL as soon as the bot has fetched it; kills at (load time → spawn to first answer): {}; {}",
            m.rounds,
            moments.join(", "),
            m.database
        ),
        format!(
            "{USERS} пользователей, {PROMPTS_PER_S} запросов/с, создание предсказаний не чаще {CREATIONS_PER_MIN}/мин; перед каждым SIGKILL — всплеск по {} запрос(а) от каждого пользователя, убийство сразу после того, как бот его забрал; моменты (время нагрузки → от запуска до первого ответа): {}; {}",
            m.rounds,
            moments.join(", "),
            m.database
        ),
    ));
    out.fact(ctx.text(
        format!(
            "bound: first answer within {} s of a restart; every prompt one job, every success one photo, every balance equal to its ledger",
            RECOVERY_BOUND.as_secs()
        ),
        format!(
            "граница: первый ответ в течение {} с после перезапуска; каждый запрос — одно задание, каждый успех — одно фото, каждый баланс равен журналу",
            RECOVERY_BOUND.as_secs()
        ),
    ));
    if !in_bound && m.tally.is_clean() {
        out.recommend(ctx.text(
            "nothing was lost, but the bot answered late after a restart: check start-up time (migrations, cache warm-up) and the replay of recorded updates",
            "ничего не потеряно, но после перезапуска бот ответил поздно: проверьте время запуска (миграции, прогрев кэша) и повтор записанных обновлений",
        ));
    }
    let windows = m
        .kill_moments_s
        .iter()
        .zip(&m.recoveries)
        .map(|(at, r)| (*at, at + r.map_or(1.0, |d| d.as_secs_f64())));
    for series in timeline(ctx, &m.load, windows.collect()) {
        out.series(series);
    }
    out
}
