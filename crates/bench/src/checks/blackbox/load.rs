//! Load on a black-box bot: the operation simulation (many generations at once, throughput
//! against the bound the claimed limits set) with its memory under load, and the memory test
//! (RSS of the bot's process group across two rounds of sessions: growth that does not level
//! off is a leak).

use std::sync::Arc;
use std::time::{Duration, Instant};

use genbot_mocks::replicate::ReplicateMockConfig;
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use super::{generation_of, photos};
use crate::blackbox::scenario::{Action, Answer, Scenario};
use crate::blackbox::{session, BlackBox};
use crate::checks::operation_simulation::{steady_grade, steady_rate};
use crate::context::Context;
use crate::grade::Grade;
use crate::histogram::Latencies;
use crate::outcome::{TestId, TestOutcome};
use crate::rss::megabytes;

/// Spread of the simulated latency (log-normal σ), as in the in-process simulation.
const SIGMA: f64 = 0.3;
/// Prompts each simulated user sends.
const PER_USER: u32 = 2;

/// Returns (operation simulation, memory under load).
pub(super) async fn operation_simulation(
    ctx: &Context,
    bot: &BlackBox,
) -> (TestOutcome, TestOutcome) {
    let mut memory = TestOutcome::new(TestId::MemoryUnderLoad, ctx.lang);
    let generation = match generation_of(TestId::OperationSimulation, ctx, bot) {
        Ok(g) => g,
        Err(out) => {
            let reason = out.not_applicable.clone().unwrap_or_default();
            return (
                *out,
                TestOutcome::not_applicable(TestId::MemoryUnderLoad, ctx.lang, reason),
            );
        }
    };
    let mut sim = TestOutcome::new(TestId::OperationSimulation, ctx.lang);
    let limits = &bot.scenario.limits;
    let median = Duration::from_millis(if ctx.quick { 400 } else { 2_000 });
    let mean = median.mul_f64((SIGMA * SIGMA / 2.0).exp());
    let by_concurrency = limits
        .max_concurrent_generations
        .map(|l| f64::from(l) / mean.as_secs_f64());
    let by_rate = limits.replicate_rate_limit.map(|r| f64::from(r) / 60.0);
    let bound = match (by_concurrency, by_rate) {
        (Some(c), Some(r)) => Some(c.min(r)),
        (one, other) => one.or(other),
    };
    // Seconds of load: three `--duration`s, at most 6 s, with `--quick`; six, at most 60 s,
    // without (the default durations, 2 and 10 s, give 6 and 60 s).
    let duration = ctx.duration.as_secs_f64();
    let span = if ctx.quick {
        (3.0 * duration).min(6.0)
    } else {
        (6.0 * duration).min(60.0)
    };
    let jobs = bound.map_or(40, |b| ((b * span).ceil() as u32).clamp(20, 2_000));
    bot.replicate.reconfigure(ReplicateMockConfig {
        median_latency: median,
        latency_sigma: SIGMA,
        ..ReplicateMockConfig::default()
    });
    let users = bot.users(jobs.div_ceil(PER_USER), Some("en"));
    let rss = RssSampler::start(bot).await;
    let started = Instant::now();
    let finished: Arc<Mutex<Vec<(f64, Duration)>>> = Arc::default();
    let mut waiting = Vec::with_capacity(users.len());
    for (n, user) in users.iter().cloned().enumerate() {
        let (generation, finished) = (generation.clone(), finished.clone());
        waiting.push(tokio::spawn(async move {
            let before = photos(&user.transcript());
            let sent = Instant::now();
            for k in 0..u64::from(PER_USER) {
                user.send_text(&generation.prompt(user.id(), n as u64 * 10 + k));
            }
            for k in 1..=PER_USER as usize {
                let remaining = generation.within.saturating_sub(sent.elapsed());
                if user
                    .wait_for(remaining, |t| photos(t) >= before + k)
                    .await
                    .is_none()
                {
                    return;
                }
                finished
                    .lock()
                    .push((started.elapsed().as_secs_f64(), sent.elapsed()));
            }
        }));
    }
    for task in waiting {
        let _ = task.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let memory_seen = rss.stop().await;
    let mut finished = std::mem::take(&mut *finished.lock());
    finished.sort_by(|a, b| a.0.total_cmp(&b.0));
    let completed = finished.len();
    let summary = finished
        .iter()
        .map(|(_, latency)| *latency)
        .collect::<Latencies>()
        .summary();
    let throughput = completed as f64 / elapsed.max(1e-3);
    let times: Vec<f64> = finished.iter().map(|(t, _)| *t).collect();
    let steady = steady_rate(&times).unwrap_or(throughput);
    sim.metric("jobs", f64::from(jobs))
        .metric("completed", completed as f64)
        .metric("throughput_per_s", throughput)
        .metric("p50_ms", summary.p50_ms)
        .metric("p95_ms", summary.p95_ms)
        .metric("p99_ms", summary.p99_ms);
    let missing = jobs as usize - completed;
    match bound {
        Some(bound) => {
            let (ratio, steady_ratio) = (throughput / bound, steady / bound);
            sim.metric("theoretical_per_s", bound)
                .metric("throughput_ratio", ratio)
                .metric("steady_throughput_ratio", steady_ratio);
            sim.fact(ctx.text(
                format!("{jobs} prompts from {} users at once; mock latency log-normal, median {median:?}; bound {bound:.2}/s from the claimed limits; {completed} photos, {throughput:.2}/s over the whole run ({:.1} % of the bound), {:.1} % in steady state (graded on this); prompt → photo p50 {:.0} ms, p99 {:.0} ms", users.len(), ratio * 100.0, steady_ratio * 100.0, summary.p50_ms, summary.p99_ms),
                format!("{jobs} запросов от {} пользователей сразу; задержка мока логнормальная, медиана {median:?}; предел {bound:.2}/с по заявленным лимитам; фото: {completed}, {throughput:.2}/с за прогон ({:.1} % предела), {:.1} % в установившемся режиме (оценка по нему); запрос → фото p50 {:.0} мс, p99 {:.0} мс", users.len(), ratio * 100.0, steady_ratio * 100.0, summary.p50_ms, summary.p99_ms),
            ));
            sim.grade = steady_grade(missing > 0, steady_ratio);
            if sim.grade != Grade::Excellent && missing == 0 {
                sim.recommend(ctx.text(
                    format!("Steady throughput is {:.0} % of what the claimed limits allow: something else (polling interval, a lock, the CPU) limits the bot first.", steady_ratio * 100.0),
                    format!("Пропускная способность — {:.0} % от допускаемой заявленными лимитами: бота раньше ограничивает что-то другое (интервал опроса, блокировка, CPU).", steady_ratio * 100.0),
                ));
            }
        }
        None => {
            sim.fact(ctx.text(
                format!("{jobs} prompts at once, mock median {median:?}: {completed} photos, {throughput:.2}/s; no bound (the scenario claims neither max_concurrent_generations nor replicate_rate_limit)"),
                format!("{jobs} запросов сразу, медиана мока {median:?}: фото {completed}, {throughput:.2}/с; предела нет (сценарий не заявляет max_concurrent_generations и replicate_rate_limit)"),
            ));
            sim.grade = if missing > 0 {
                Grade::NeedsOptimization
            } else {
                Grade::Good
            };
        }
    }
    if missing > 0 {
        sim.recommend(ctx.text(
            format!(
                "{missing} of {jobs} prompts got no photo within {:.0} s.",
                generation.within.as_secs_f64()
            ),
            format!(
                "{missing} из {jobs} запросов остались без фото за {:.0} с.",
                generation.within.as_secs_f64()
            ),
        ));
    }
    match memory_seen {
        Some(seen) => {
            let growth = megabytes(seen.after.saturating_sub(seen.before));
            let peak = megabytes(seen.peak.saturating_sub(seen.before));
            memory
                .metric("rss_before_mb", megabytes(seen.before))
                .metric("rss_after_mb", megabytes(seen.after))
                .metric("growth_mb", growth)
                .metric("peak_growth_mb", peak)
                .metric(
                    "bytes_per_job",
                    seen.after.saturating_sub(seen.before) as f64 / f64::from(jobs),
                )
                .metric("photos", completed as f64);
            memory.grade = ctx.thresholds.memory_growth(growth);
            memory.fact(ctx.text(
                format!("RSS of the bot's processes: {:.1} MB before {jobs} generations, {:.1} MB after (peak +{peak:.1} MB)", megabytes(seen.before), megabytes(seen.after)),
                format!("RSS процессов бота: {:.1} МБ до {jobs} генераций, {:.1} МБ после (пик +{peak:.1} МБ)", megabytes(seen.before), megabytes(seen.after)),
            ));
            memory.series(seen.series(ctx));
            if memory.grade != Grade::Excellent {
                memory.recommend(ctx.text(
                    format!("The bot's memory grew {growth:.1} MB under load: check for per-job state kept after the job ends."),
                    format!("Память бота выросла на {growth:.1} МБ под нагрузкой: проверьте, не хранится ли состояние задач после их завершения."),
                ));
            }
        }
        None => memory = no_process(TestId::MemoryUnderLoad, ctx),
    }
    (sim, memory)
}

pub(super) async fn memory(ctx: &Context, bot: &BlackBox) -> TestOutcome {
    let Some(baseline) = bot.usage().await else {
        return no_process(TestId::Memory, ctx);
    };
    let mut out = TestOutcome::new(TestId::Memory, ctx.lang);
    let scenario = text_only(&bot.scenario);
    let count = ctx.users.clamp(1, 1_000);
    let mut after = Vec::new();
    let mut failed = 0usize;
    for _round in 0..2 {
        let users = bot.users(count, Some("en"));
        let sessions = users.into_iter().enumerate().map(|(n, user)| {
            let scenario = scenario.clone();
            async move { session(&user, &scenario, n as u64).await.is_err() }
        });
        failed += futures_util::future::join_all(sessions)
            .await
            .into_iter()
            .filter(|f| *f)
            .count();
        match bot.usage().await {
            Some(usage) => after.push(usage.rss_bytes),
            None => return no_process(TestId::Memory, ctx),
        }
    }
    let before = baseline.rss_bytes;
    let growth = after[1].saturating_sub(before);
    let second_round = after[1].saturating_sub(after[0]);
    out.metric("rss_before_mb", megabytes(before))
        .metric("rss_after_mb", megabytes(after[1]))
        .metric("growth_mb", megabytes(growth))
        .metric("second_round_growth_mb", megabytes(second_round))
        .metric("bytes_per_user", growth as f64 / f64::from(count * 2))
        // Sessions that failed loaded less state than they should have: only completed ones
        // count as measured users.
        .metric("users", (count as usize * 2).saturating_sub(failed) as f64)
        .metric("failed_sessions", failed as f64)
        .metric("processes", f64::from(baseline.processes));
    out.fact(ctx.text(
        format!("RSS of the bot's {} processes: {:.1} MB, then {:.1} MB after {count} new users' sessions (without generations), {:.1} MB after {count} more (second round +{:.1} MB); {failed} sessions failed", baseline.processes, megabytes(before), megabytes(after[0]), megabytes(after[1]), megabytes(second_round)),
        format!("RSS процессов бота ({}): {:.1} МБ, затем {:.1} МБ после сессий {count} новых пользователей (без генераций), {:.1} МБ после ещё {count} (второй круг +{:.1} МБ); неудачных сессий: {failed}", baseline.processes, megabytes(before), megabytes(after[0]), megabytes(after[1]), megabytes(second_round)),
    ));
    out.grade = ctx.thresholds.memory_growth(megabytes(growth));
    if failed > 0 && out.grade == Grade::Excellent {
        out.grade = Grade::Good;
        out.fact(ctx.text(
            format!("at most GOOD: {failed} of {} sessions failed, so the bot held less per-user state than a full run would have loaded", count * 2),
            format!("не выше GOOD: {failed} из {} сессий не завершились, бот держал меньше состояния, чем в полном прогоне", count * 2),
        ));
    }
    if out.grade != Grade::Excellent {
        out.recommend(ctx.text(
            format!("The bot's memory grew {:.1} MB for {} users: bound per-user state (an LRU or TTL cache) instead of keeping every user forever.", megabytes(growth), count * 2),
            format!("Память бота выросла на {:.1} МБ на {} пользователей: ограничьте состояние на пользователя (LRU или TTL), а не храните всех навсегда.", megabytes(growth), count * 2),
        ));
    }
    out
}

/// The outcome when there is no process to measure (an attached bot, or no `/proc`).
fn no_process(test: TestId, ctx: &Context) -> TestOutcome {
    TestOutcome::not_applicable(
        test,
        ctx.lang,
        ctx.text(
            "not measured: no process to read memory from (the bot was attached, or this system has no /proc); give --bot-cmd on Linux",
            "не измерялось: нет процесса для измерения памяти (бот подключён вручную или нет /proc); укажите --bot-cmd на Linux",
        ),
    )
}

/// The scenario without the steps that wait for images: sessions that load the bot's
/// handlers and per-user state, not Replicate.
fn text_only(scenario: &Scenario) -> Scenario {
    let mut text = scenario.clone();
    text.steps.retain(|step| {
        !matches!(step.action, Action::Photo { .. })
            && step.expect.as_ref().is_none_or(|e| e.kind != Answer::Photo)
    });
    for step in &mut text.steps {
        step.think = Duration::ZERO;
    }
    text
}

/// RSS of the bot's process group sampled every 250 ms while a test runs.
struct RssSampler {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Vec<(f64, u64)>>,
    before: Option<u64>,
}

/// What the sampler saw.
struct RssSeen {
    before: u64,
    after: u64,
    peak: u64,
    samples: Vec<(f64, u64)>,
}

impl RssSampler {
    async fn start(bot: &BlackBox) -> RssSampler {
        let before = bot.usage().await.map(|u| u.rss_bytes);
        let stop = CancellationToken::new();
        let group = bot.group().await;
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let mut samples = Vec::new();
            let Some(group) = group else {
                return samples;
            };
            loop {
                if let Some(usage) = crate::blackbox::group_usage(group) {
                    samples.push((started.elapsed().as_secs_f64(), usage.rss_bytes));
                }
                tokio::select! {
                    _ = stopped.cancelled() => return samples,
                    _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                }
            }
        });
        RssSampler { stop, task, before }
    }

    async fn stop(self) -> Option<RssSeen> {
        self.stop.cancel();
        let samples = self.task.await.unwrap_or_default();
        let before = self.before?;
        let after = samples.last()?.1;
        let peak = samples.iter().map(|(_, rss)| *rss).max().unwrap_or(after);
        Some(RssSeen {
            before,
            after,
            peak,
            samples,
        })
    }
}

impl RssSeen {
    fn series(&self, ctx: &Context) -> crate::outcome::Series {
        crate::outcome::Series {
            id: "bot_rss".into(),
            title: ctx.text(
                "Memory under load: RSS of the bot's processes",
                "Память под нагрузкой: RSS процессов бота",
            ),
            x_label: ctx.text("seconds", "секунды"),
            y_label: "MB".into(),
            x_scale: crate::outcome::Scale::Linear,
            lines: vec![crate::outcome::Line {
                name: "RSS".into(),
                points: self
                    .samples
                    .iter()
                    .map(|(t, rss)| (*t, megabytes(*rss)))
                    .collect(),
            }],
            shaded: Vec::new(),
        }
    }
}
