//! System limits (open model): updates arrive at a constant rate, stepped up, until the p99
//! answer time or the error rate breaks the SLO. The last step within it is the knee: the
//! maximum RPS and the users that produce it; the bottleneck is named from evidence.
//!
//! Latency counts from each update's intended send time (coordinated omission corrected the
//! wrk2 way: a stalled bot cannot hide its delay by slowing the generator). The generator runs on
//! its own thread, off the bot's runtime; its lag behind its schedule and its own CPU are
//! reported, so a limit of the generator is not blamed on the bot.

use std::sync::Arc;
use std::time::{Duration, Instant};

use genbot_mocks::replicate::ReplicateMockConfig;
use genbot_mocks::telegram::{SimUser, TelegramMock};
use genbot_telegram::FrontConfig;
use tokio_util::sync::CancellationToken;

use crate::bot_rig::{crowd_engine, BotRig};
use crate::checks::CheckError;
use crate::context::Context;
use crate::cpu::{process_cpu, thread_cpu};
use crate::grade::{Grade, Lang};
use crate::histogram::Latencies;
use crate::outcome::{Line, Scale, Series, TestId, TestOutcome};
use crate::timeline;

/// The SLO: p99 answer time and share of unanswered updates.
pub(crate) const SLO_P99_MS: f64 = 100.0;
pub(crate) const SLO_ERRORS: f64 = 0.01;
/// How long after a step its stragglers may still be answered.
pub(crate) const DRAIN: Duration = Duration::from_secs(2);
/// Each user sends an update every this many seconds on average.
pub(crate) const SECONDS_PER_UPDATE_PER_USER: f64 = 5.0;

#[derive(Debug, Clone, Copy)]
struct Step {
    rate: f64,
    /// The second run of a step that broke the SLO.
    repeat: bool,
    users: f64,
    /// Answers counted in the step and its drain, per second of sending.
    answered_per_s: f64,
    p99_ms: f64,
    errors: f64,
    lag_p99_ms: f64,
    /// The whole process (bot, mocks, generator) while the step's updates were being sent.
    cpu_percent: f64,
    queue_growth: f64,
    /// The generator thread's own CPU while sending, in percent of one core.
    generator_cpu_percent: f64,
}

/// What the load generator did in one step.
struct GeneratorRun {
    /// How far each send fell behind its intended time.
    lag: Latencies,
    cpu: Option<Duration>,
    sending: Duration,
}

/// Sends `count` updates at `rate` per second from `started`, round-robin over `users` from
/// `first`, on the calling (dedicated) thread: a bot that stalls the async runtime cannot slow
/// the generator down, and the thread's CPU is the generator's alone.
fn generate(
    users: &[SimUser],
    first: usize,
    rate: f64,
    count: u64,
    started: Instant,
) -> GeneratorRun {
    let cpu_before = thread_cpu();
    let mut lag = Latencies::new();
    for i in 0..count {
        let intended = started + Duration::from_secs_f64(i as f64 / rate);
        let now = Instant::now();
        if intended > now {
            std::thread::sleep(intended - now);
        }
        lag.record(Instant::now().saturating_duration_since(intended));
        users[(first + i as usize) % users.len()].send_text("/balance");
    }
    GeneratorRun {
        lag,
        cpu: thread_cpu()
            .zip(cpu_before)
            .map(|(after, before)| after.saturating_sub(before)),
        sending: started.elapsed(),
    }
}

pub async fn run(ctx: &Context) -> TestOutcome {
    let mut out = TestOutcome::new(TestId::SystemLimits, ctx.lang);
    if let Err(e) = measure(ctx, &mut out).await {
        out.fact(format!("could not run: {e}"));
        out.grade = Grade::NeedsOptimization;
    }
    out
}

/// How long each step of the ramp sends: `--duration`, at most 2 s with `--quick` and 5 s
/// without (so the default durations, 2 and 10 s, give 2 and 5 s steps; a shorter
/// `--duration` shortens the ramp too).
pub(crate) fn step_length(ctx: &Context) -> Duration {
    let longest = Duration::from_secs(if ctx.quick { 2 } else { 5 });
    ctx.duration.min(longest)
}

async fn measure(ctx: &Context, out: &mut TestOutcome) -> Result<(), CheckError> {
    let step_length = step_length(ctx);
    let rates: &[f64] = if ctx.quick {
        &[100.0, 200.0, 400.0, 800.0, 1600.0]
    } else {
        &[
            100.0, 200.0, 400.0, 800.0, 1600.0, 3200.0, 6400.0, 12800.0, 25600.0, 51200.0,
        ]
    };
    let rig = start_rig(ctx).await?;
    let pool = user_pool(&rig, rates);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let stop_sampling = CancellationToken::new();
    let sampler = timeline::sample(
        rig.telegram.answers(),
        Duration::from_millis(if ctx.quick { 250 } else { 1000 }),
        stop_sampling.clone(),
    );
    let steps = ramp(&rig, &pool, rates, step_length).await?;
    stop_sampling.cancel();
    let windows = sampler.await.unwrap_or_default();
    for series in timeline::series(
        &windows,
        ctx.lang,
        &ctx.text("seconds since the first step", "секунды от первой ступени"),
        &ctx.text("System limits", "Пределы системы"),
    ) {
        out.series(series);
    }
    chart(ctx, out, &steps);
    let within = |s: &Step| !breaks_slo(s.p99_ms, s.errors);
    let knee = steps.iter().rev().find(|s| within(s)).copied();
    let broke = steps.last().filter(|s| !within(s)).copied();
    for (i, s) in steps.iter().enumerate() {
        out.fact(format!(
            "step {}{}: {:.0} updates/s → p99 {:.1} ms, unanswered {:.2} %, generator lag p99 {:.1} ms and CPU {:.0} % of a core, process CPU {:.0} % of {cores:.0} cores, queue {:+.0}",
            i + 1, if s.repeat { " (repeated)" } else { "" }, s.rate, s.p99_ms, s.errors * 100.0, s.lag_p99_ms, s.generator_cpu_percent, s.cpu_percent, s.queue_growth
        ));
    }
    let max_rps = knee.map_or(0.0, |k| k.rate);
    let max_users = max_rps * SECONDS_PER_UPDATE_PER_USER;
    out.metric("max_rps", max_rps)
        .metric("max_users", max_users)
        .metric("steps", steps.len() as f64)
        .metric("slo_p99_ms", SLO_P99_MS);
    let pool_waiting = rig.store.pool_stats().waiting.unwrap_or(0) > 0;
    let bottleneck = bottleneck(ctx, broke, max_rps, cores, pool_waiting);
    out.fact(ctx.text(
        format!("bottleneck: {bottleneck}"),
        format!("узкое место: {bottleneck}"),
    ));
    out.fact(ctx.text(
        format!("open model: /balance updates at a constant rate per step ({step_length:?} each), users sending one every {SECONDS_PER_UPDATE_PER_USER} s; SLO p99 ≤ {SLO_P99_MS} ms from the intended send time, ≤ {:.0} % unanswered; a step that breaks it runs once more before it counts", SLO_ERRORS * 100.0),
        format!("открытая модель: /balance с постоянной частотой на ступени ({step_length:?}), пользователь шлёт раз в {SECONDS_PER_UPDATE_PER_USER} с; SLO p99 ≤ {SLO_P99_MS} мс от плановой отправки, ≤ {:.0} % без ответа; ступень, нарушившая SLO, повторяется один раз", SLO_ERRORS * 100.0),
    ));
    out.fact(rig.budget_fact(ctx));
    grade_knee(
        ctx.lang,
        out,
        knee.map(|k| k.rate),
        broke.is_some(),
        &bottleneck,
        broke.as_ref().is_some_and(generator_limited),
    );
    out.telegram(&rig.telegram.stats());
    out.cap_for_refusals(ctx.lang);
    rig.stop().await;
    Ok(())
}

/// The whole bot on a private store, with the settings' limits, sending without Telegram's
/// budget: the ramp finds the bot's own knee (capacity), which the report says.
async fn start_rig(ctx: &Context) -> Result<BotRig, CheckError> {
    BotRig::start(
        &ctx.settings,
        ReplicateMockConfig::default(),
        |bot, settings| {
            bot.with_engine(crowd_engine(settings))
                .with_front(FrontConfig {
                    initial_credits: 100,
                    ..FrontConfig::from_settings(settings)
                })
                .without_send_budget()
        },
    )
    .await
}

/// Enough simulated users for the highest rate (each sends one update every 5 s).
fn user_pool(rig: &BotRig, rates: &[f64]) -> Arc<Vec<SimUser>> {
    let max_rate = rates.iter().copied().fold(0.0, f64::max);
    let pool_size = (max_rate * SECONDS_PER_UPDATE_PER_USER) as i64;
    Arc::new(
        (0..pool_size)
            .map(|n| {
                rig.telegram
                    .user(crate::target::TEST_IDS.start + n, "Load", Some("en"))
            })
            .collect(),
    )
}

/// Steps through `rates` until one breaks the SLO twice in a row (a breaking step runs once
/// more: one stall on a shared machine is not a limit).
async fn ramp(
    rig: &BotRig,
    pool: &Arc<Vec<SimUser>>,
    rates: &[f64],
    step_length: Duration,
) -> Result<Vec<Step>, CheckError> {
    let mut steps: Vec<Step> = Vec::new();
    let mut next_user = 0usize;
    let mut ramp = Ramp::default();
    while let Some((rate, repeat)) = ramp.next(rates) {
        let step = run_step(rig, pool, rate, step_length, next_user, repeat).await?;
        next_user += (rate * step_length.as_secs_f64()) as usize;
        ramp.after(breaks_slo(step.p99_ms, step.errors));
        steps.push(step);
    }
    Ok(steps)
}

/// Whether a step with this p99 and share of unanswered updates breaks the SLO.
pub(crate) fn breaks_slo(p99_ms: f64, errors: f64) -> bool {
    p99_ms > SLO_P99_MS || errors > SLO_ERRORS
}

/// Where a ramp of rates goes next: a step that breaks the SLO runs once more (one stall of a
/// shared machine is not a limit), and a second break in a row ends the ramp.
#[derive(Debug, Default)]
pub(crate) struct Ramp {
    index: usize,
    repeating: bool,
    ended: bool,
}

impl Ramp {
    /// The next rate to run, and whether that run repeats a broken step; `None` when done.
    pub(crate) fn next(&self, rates: &[f64]) -> Option<(f64, bool)> {
        if self.ended {
            return None;
        }
        rates.get(self.index).map(|rate| (*rate, self.repeating))
    }

    /// Takes in whether the step just run broke the SLO.
    pub(crate) fn after(&mut self, broken: bool) {
        match (broken, self.repeating) {
            (true, false) => self.repeating = true,
            (true, true) => self.ended = true,
            (false, _) => {
                self.repeating = false;
                self.index += 1;
            }
        }
    }
}

/// One step: `rate` updates a second for `step_length`, then the drain; what it measured.
async fn run_step(
    rig: &BotRig,
    pool: &Arc<Vec<SimUser>>,
    rate: f64,
    step_length: Duration,
    first: usize,
    repeat: bool,
) -> Result<Step, CheckError> {
    let users_this_step = ((rate * SECONDS_PER_UPDATE_PER_USER) as usize)
        .min(pool.len())
        .max(1);
    // A count, not `stats()`: that copies every latency recorded so far (all steps').
    let answers = rig.telegram.answers();
    let answered_before = answers.count();
    let queue_before = rig.front.engine().stats().queue_length as f64;
    let cpu_before = process_cpu();
    let started = Instant::now();
    let count = (rate * step_length.as_secs_f64()) as u64;
    let sending = {
        let pool = pool.clone();
        tokio::task::spawn_blocking(move || {
            generate(&pool[..users_this_step], first, rate, count, started)
        })
    };
    let generator = sending.await?;
    // CPU while sending only: the drain is mostly idle and would dilute a saturation.
    let cpu_percent = match (cpu_before, process_cpu()) {
        (Some(a), Some(b)) => {
            (b - a).as_secs_f64() / started.elapsed().as_secs_f64().max(1e-3) * 100.0
        }
        _ => f64::NAN,
    };
    drain(&rig.telegram, answered_before, started, count).await;
    let step_latencies = answers.latencies_since(answered_before);
    let answered = step_latencies.len();
    let latency: Latencies = step_latencies.iter().copied().collect();
    let lag_p99 = generator.lag.summary().p99_ms;
    Ok(Step {
        rate,
        repeat,
        users: users_this_step as f64,
        answered_per_s: answered as f64 / step_length.as_secs_f64(),
        // Measured from the actual send; the generator's lag is added to correct for
        // coordinated omission.
        p99_ms: latency.summary().p99_ms + lag_p99,
        errors: 1.0 - (answered as f64 / count.max(1) as f64).min(1.0),
        lag_p99_ms: lag_p99,
        cpu_percent,
        queue_growth: rig.front.engine().stats().queue_length as f64 - queue_before,
        generator_cpu_percent: generator.cpu.map_or(f64::NAN, |cpu| {
            cpu.as_secs_f64() / generator.sending.as_secs_f64().max(1e-3) * 100.0
        }),
    })
}

/// Waits for the step's stragglers: until each of the `count` updates the step sent from
/// `started` on (answers from index `from` on) is answered, for at most [`DRAIN`]. A step the
/// bot keeps up with ends at once; one it does not gets the whole drain, as before. The
/// black-box ramp waits the same way.
pub(crate) async fn drain(telegram: &TelegramMock, from: usize, started: Instant, count: u64) {
    let answers = telegram.answers();
    let deadline = tokio::time::Instant::now() + DRAIN;
    loop {
        let answered = answers.answered_since(from, started) as u64;
        if answered >= count || tokio::time::Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Throughput and p99 against users, one point per step (a repeat replaces the run it
/// repeated).
fn chart(ctx: &Context, out: &mut TestOutcome, steps: &[Step]) {
    // A step's curve point is its last run (a repeat replaces the run it repeated).
    let points: Vec<ChartPoint> = steps
        .iter()
        .enumerate()
        .filter(|(i, _)| !steps.get(i + 1).is_some_and(|next| next.repeat))
        .map(|(_, s)| ChartPoint {
            users: s.users,
            offered: s.rate,
            answered: s.answered_per_s,
            p99_ms: s.p99_ms,
        })
        .collect();
    chart_points(ctx, out, &points);
}

/// One step of the ramp, as the charts show it.
pub(crate) struct ChartPoint {
    pub(crate) users: f64,
    pub(crate) offered: f64,
    pub(crate) answered: f64,
    pub(crate) p99_ms: f64,
}

/// Throughput and p99 against users, one point per step (also drawn for black-box bots).
pub(crate) fn chart_points(ctx: &Context, out: &mut TestOutcome, points: &[ChartPoint]) {
    out.series(Series {
        id: "throughput_vs_users".into(),
        title: ctx.text(
            "System limits: throughput vs concurrent users",
            "Пределы системы: пропускная способность и пользователи",
        ),
        x_label: ctx.text(
            "users (one update every 5 s each)",
            "пользователи (по обновлению раз в 5 с)",
        ),
        y_label: ctx.text("updates/s", "обновлений/с"),
        x_scale: Scale::Log,
        lines: vec![
            Line {
                name: ctx.text("offered", "подано"),
                points: points.iter().map(|p| (p.users, p.offered)).collect(),
            },
            Line {
                name: ctx.text("answered", "отвечено"),
                points: points.iter().map(|p| (p.users, p.answered)).collect(),
            },
        ],
        shaded: Vec::new(),
    });
    out.series(Series {
        id: "p99_vs_users".into(),
        title: ctx.text(
            "System limits: p99 from intended send vs users",
            "Пределы системы: p99 от плановой отправки и пользователи",
        ),
        x_label: ctx.text("users", "пользователи"),
        y_label: "ms".into(),
        x_scale: Scale::Log,
        lines: vec![Line {
            name: "p99".into(),
            points: points.iter().map(|p| (p.users, p.p99_ms)).collect(),
        }],
        shaded: Vec::new(),
    });
}

/// Grades the knee (found, and either no step broke the SLO or it held ≥ 400 updates/s) and
/// names the bottleneck when it is not excellent; the in-process and black-box tests share it.
/// When the step that broke the SLO was the load generator's limit (`generator_limited`), a
/// grade below EXCELLENT would blame the bot for what the generator could not offer: the test
/// did not measure the bot's limit and says so.
pub(crate) fn grade_knee(
    lang: Lang,
    out: &mut TestOutcome,
    knee: Option<f64>,
    broke: bool,
    bottleneck: &str,
    generator_limited: bool,
) {
    let max_rps = knee.unwrap_or(0.0);
    out.grade = match knee {
        Some(rate) if !broke || rate >= 400.0 => Grade::Excellent,
        Some(_) => Grade::Good,
        None => Grade::NeedsOptimization,
    };
    if out.grade == Grade::Excellent {
        return;
    }
    if generator_limited {
        out.did_not_measure(match lang {
            Lang::En => format!("did not measure: the load generator, not the bot, was the limit ({bottleneck}); {max_rps:.0} updates/s held within the SLO before it"),
            Lang::Ru => format!("не измерено: предел — генератор нагрузки, а не бот ({bottleneck}); до него в пределах SLO {max_rps:.0} обновлений/с"),
        });
        return;
    }
    out.recommend(match lang {
        Lang::En => format!(
            "The bot holds {max_rps:.0} updates/s within the SLO; bottleneck: {bottleneck}."
        ),
        Lang::Ru => format!(
            "Бот держит {max_rps:.0} обновлений/с в пределах SLO; узкое место: {bottleneck}."
        ),
    });
}

/// Whether a step broke the SLO because the generator fell behind its schedule or ran out of
/// its core, not because the bot was slow.
fn generator_limited(s: &Step) -> bool {
    s.lag_p99_ms > SLO_P99_MS / 2.0 || s.generator_cpu_percent > 90.0
}

/// Names what broke the SLO, from the evidence of the breaking step.
fn bottleneck(
    ctx: &Context,
    broke: Option<Step>,
    max_rps: f64,
    cores: f64,
    pool_waiting: bool,
) -> String {
    match broke {
        None => ctx.text(
            format!("none found up to {max_rps:.0} updates/s (the highest step)"),
            format!("не найдено до {max_rps:.0} обновлений/с (верхняя ступень)"),
        ),
        Some(s) if generator_limited(&s) => ctx.text(
            format!("the load generator, not the bot (it fell {:.0} ms behind its schedule and used {:.0} % of a core at {:.0}/s): the bot's limit is at least this high", s.lag_p99_ms, s.generator_cpu_percent, s.rate),
            format!("генератор нагрузки, а не бот (отстал на {:.0} мс, занял {:.0} % ядра при {:.0}/с): предел бота не ниже", s.lag_p99_ms, s.generator_cpu_percent, s.rate),
        ),
        Some(s) if s.cpu_percent >= cores * 100.0 * 0.85 => ctx.text(
            format!("CPU: {:.0} % of {cores:.0} cores at {:.0} updates/s", s.cpu_percent, s.rate),
            format!("CPU: {:.0} % из {cores:.0} ядер при {:.0} обновлений/с", s.cpu_percent, s.rate),
        ),
        Some(s) if pool_waiting => ctx.text(
            format!("database pool wait at {:.0} updates/s (DB_POOL_SIZE={})", s.rate, ctx.settings.db_pool_size),
            format!("ожидание пула БД при {:.0} обновлений/с (DB_POOL_SIZE={})", s.rate, ctx.settings.db_pool_size),
        ),
        Some(s) if s.queue_growth > 0.0 => ctx.text(
            format!("the generation queue grew by {:.0} at {:.0} updates/s", s.queue_growth, s.rate),
            format!("очередь генераций выросла на {:.0} при {:.0} обновлений/с", s.queue_growth, s.rate),
        ),
        Some(s) => ctx.text(
            format!("update handling latency at {:.0} updates/s (CPU {:.0} %, no pool wait, no queue growth)", s.rate, s.cpu_percent),
            format!("задержка обработки обновлений при {:.0}/с (CPU {:.0} %, без ожидания пула и роста очереди)", s.rate, s.cpu_percent),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::{grade_knee, Ramp};
    use crate::grade::{Grade, Lang};
    use crate::outcome::{TestId, TestOutcome};

    fn graded(knee: Option<f64>, generator_limited: bool) -> TestOutcome {
        let mut out = TestOutcome::new(TestId::SystemLimits, Lang::En);
        grade_knee(
            Lang::En,
            &mut out,
            knee,
            true,
            "the load generator",
            generator_limited,
        );
        out
    }

    #[test]
    fn a_ramp_the_generator_could_not_offer_did_not_measure() {
        // The first step already broke, and the generator was why: the bot is not graded.
        let out = graded(None, true);
        assert!(out.did_not_measure, "{out:#?}");
        assert!(!out.applies());
        assert_eq!(out.verdict(Lang::En), "DID NOT MEASURE");
        assert!(out.recommendations.is_empty(), "{out:#?}");
        // A knee below 400/s cut short by the generator says nothing of the bot's limit.
        assert!(graded(Some(200.0), true).did_not_measure);
        // The bot's own break stays a measured failure.
        let out = graded(None, false);
        assert!(out.applies());
        assert_eq!(out.grade, Grade::NeedsOptimization);
        // A knee at 400/s or more is EXCELLENT whoever broke the step after it.
        assert_eq!(graded(Some(400.0), true).grade, Grade::Excellent);
        assert!(graded(Some(400.0), true).applies());
    }

    /// The (rate, repeat) runs a ramp makes when each run breaks the SLO as `breaks` says.
    fn runs(rates: &[f64], breaks: &[bool]) -> Vec<(f64, bool)> {
        let mut ramp = Ramp::default();
        let mut made = Vec::new();
        let mut breaks = breaks.iter();
        while let Some(run) = ramp.next(rates) {
            made.push(run);
            ramp.after(*breaks.next().unwrap_or(&false));
        }
        made
    }

    #[test]
    fn a_broken_step_runs_once_more_and_a_second_break_ends_the_ramp() {
        let rates = [25.0, 50.0, 100.0, 200.0];
        // 50 stalls once, then passes: the ramp goes on; 200 breaks twice: it ends there.
        assert_eq!(
            runs(&rates, &[false, true, false, false, true, true]),
            [
                (25.0, false),
                (50.0, false),
                (50.0, true),
                (100.0, false),
                (200.0, false),
                (200.0, true)
            ]
        );
        // Nothing breaks: every rate once.
        assert_eq!(runs(&rates, &[]).len(), 4);
        // The first step breaks twice: two runs in all.
        assert_eq!(runs(&rates, &[true, true]), [(25.0, false), (25.0, true)]);
    }
}
