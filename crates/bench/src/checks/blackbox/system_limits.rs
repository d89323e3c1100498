//! System limits of a black-box bot (open model): the scenario's first text message arrives at
//! a constant rate, stepped up until the p99 answer time or the share of unanswered updates
//! breaks the SLO twice in a row (a breaking step runs once more: one stall of a shared machine
//! is not a limit). The last step within it is the knee; the bot's CPU, read from its process
//! group, tells a saturated bot from one that is waiting (I/O, locks, its own send pacing).

use std::time::{Duration, Instant};

use genbot_mocks::telegram::SimUser;

use crate::blackbox::scenario::{fill, Action, Answer};
use crate::blackbox::BlackBox;
use crate::checks::system_limits::{
    breaks_slo, chart_points, drain, grade_knee, step_length, ChartPoint, Ramp,
    SECONDS_PER_UPDATE_PER_USER, SLO_ERRORS, SLO_P99_MS,
};
use crate::context::Context;
use crate::histogram::Latencies;
use crate::outcome::{TestId, TestOutcome};

#[derive(Debug, Clone, Copy)]
struct Step {
    rate: f64,
    answered_per_s: f64,
    p99_ms: f64,
    errors: f64,
    lag_p99_ms: f64,
    /// The bot's processes' CPU while the step sent, in % of one core.
    cpu_percent: f64,
    /// This run repeats the previous step, which broke the SLO.
    repeat: bool,
}

pub(super) async fn run(ctx: &Context, bot: &BlackBox) -> TestOutcome {
    let test = TestId::SystemLimits;
    let Some(text) =
        bot.scenario
            .steps
            .iter()
            .find_map(|step| match (&step.action, &step.expect) {
                (Action::Send(text), Some(expect)) if expect.kind == Answer::Text => {
                    Some(text.clone())
                }
                _ => None,
            })
    else {
        return TestOutcome::not_applicable(test, ctx.lang, ctx.text(
            "not measured: the scenario has no text message answered with text (the load this test steps up)",
            "не измерялось: в сценарии нет текстового сообщения с текстовым ответом (нагрузка этого теста)",
        ));
    };
    let mut out = TestOutcome::new(test, ctx.lang);
    let step_length = step_length(ctx);
    let rates: &[f64] = if ctx.quick {
        &[25.0, 50.0, 100.0, 200.0, 400.0, 800.0]
    } else {
        &[
            25.0, 50.0, 100.0, 200.0, 400.0, 800.0, 1600.0, 3200.0, 6400.0,
        ]
    };
    let max_rate = rates.iter().copied().fold(0.0, f64::max);
    let pool = bot.users((max_rate * SECONDS_PER_UPDATE_PER_USER) as u32, Some("en"));
    let steps = ramp(bot, &pool, &text, rates, step_length).await;
    let within = |s: &Step| !breaks_slo(s.p99_ms, s.errors);
    let knee = steps.iter().rev().find(|s| within(s)).copied();
    let broke = steps.last().filter(|s| !within(s)).copied();
    for (i, s) in steps.iter().enumerate() {
        out.fact(ctx.text(
            format!("step {}{}: {:.0} updates/s → p99 {:.1} ms, unanswered {:.2} %, sender lag p99 {:.1} ms, the bot's CPU {:.0} % of a core", i + 1, if s.repeat { " (repeat)" } else { "" }, s.rate, s.p99_ms, s.errors * 100.0, s.lag_p99_ms, s.cpu_percent),
            format!("ступень {}{}: {:.0} обновлений/с → p99 {:.1} мс, без ответа {:.2} %, отставание отправителя p99 {:.1} мс, CPU бота {:.0} % ядра", i + 1, if s.repeat { " (повтор)" } else { "" }, s.rate, s.p99_ms, s.errors * 100.0, s.lag_p99_ms, s.cpu_percent),
        ));
    }
    let max_rps = knee.map_or(0.0, |k| k.rate);
    out.metric("max_rps", max_rps)
        .metric("max_users", max_rps * SECONDS_PER_UPDATE_PER_USER)
        .metric("steps", steps.len() as f64)
        .metric("slo_p99_ms", SLO_P99_MS);
    if let Some(s) = broke {
        out.metric("cpu_percent_at_break", s.cpu_percent);
    }
    let bottleneck = bottleneck(ctx, broke, max_rps);
    out.fact(ctx.text(
        format!("bottleneck: {bottleneck}"),
        format!("узкое место: {bottleneck}"),
    ));
    out.fact(ctx.text(
        format!("open model: {text:?} at a constant rate per step ({step_length:?} each), users sending one every {SECONDS_PER_UPDATE_PER_USER} s; SLO p99 ≤ {SLO_P99_MS} ms, ≤ {:.0} % unanswered; a step that breaks it runs once more before it counts", SLO_ERRORS * 100.0),
        format!("открытая модель: {text:?} с постоянной частотой на ступени ({step_length:?}), пользователь шлёт раз в {SECONDS_PER_UPDATE_PER_USER} с; SLO p99 ≤ {SLO_P99_MS} мс, ≤ {:.0} % без ответа; ступень, нарушившая SLO, повторяется один раз", SLO_ERRORS * 100.0),
    ));
    chart(ctx, &mut out, &steps);
    grade_knee(
        ctx.lang,
        &mut out,
        knee.map(|k| k.rate),
        broke.is_some(),
        &bottleneck,
        broke.as_ref().is_some_and(generator_limited),
    );
    out
}

/// Steps through `rates` until one breaks the SLO twice in a row.
async fn ramp(
    bot: &BlackBox,
    pool: &[SimUser],
    text: &str,
    rates: &[f64],
    step_length: Duration,
) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let mut ramp = Ramp::default();
    while let Some((rate, repeat)) = ramp.next(rates) {
        let step = run_step(bot, pool, text, rate, step_length, repeat).await;
        ramp.after(breaks_slo(step.p99_ms, step.errors));
        steps.push(step);
    }
    steps
}

/// One step: `rate` updates a second for `step_length` from the pool, then the drain.
async fn run_step(
    bot: &BlackBox,
    pool: &[SimUser],
    text: &str,
    rate: f64,
    step_length: Duration,
    repeat: bool,
) -> Step {
    let users = ((rate * SECONDS_PER_UPDATE_PER_USER) as usize).clamp(1, pool.len());
    let count = (rate * step_length.as_secs_f64()) as usize;
    let answered_before = bot.telegram.stats().answer_latencies.len();
    let cpu_before = bot.usage().await.map(|u| u.cpu);
    let started = Instant::now();
    let mut lag = Latencies::new();
    for n in 0..count {
        let intended = started + Duration::from_secs_f64(n as f64 / rate);
        tokio::time::sleep_until(intended.into()).await;
        lag.record(intended.elapsed());
        let user = &pool[n % users];
        user.send_text(&fill(text, user.id(), n as u64));
    }
    let sending = started.elapsed();
    let cpu_after = bot.usage().await.map(|u| u.cpu);
    // Until every update of the step is answered, for at most DRAIN: a bot that keeps up does
    // not sit out the whole drain after each step (it cost the suite's tests 2 s a step).
    drain(&bot.telegram, answered_before, started, count as u64).await;
    let latencies = bot.telegram.answers().latencies_since(answered_before);
    let answer: Latencies = latencies.iter().copied().collect();
    let lag_p99 = lag.summary().p99_ms;
    Step {
        rate,
        answered_per_s: latencies.len() as f64 / step_length.as_secs_f64(),
        // From the intended send: the sender's lag is added for coordinated omission.
        p99_ms: answer.summary().p99_ms + lag_p99,
        errors: 1.0 - (latencies.len() as f64 / count.max(1) as f64).min(1.0),
        lag_p99_ms: lag_p99,
        cpu_percent: match (cpu_before, cpu_after) {
            (Some(a), Some(b)) => {
                b.saturating_sub(a).as_secs_f64() / sending.as_secs_f64().max(1e-3) * 100.0
            }
            _ => f64::NAN,
        },
        repeat,
    }
}

/// Whether a step broke the SLO because the sender fell behind its schedule, not the bot.
fn generator_limited(s: &Step) -> bool {
    s.lag_p99_ms > SLO_P99_MS / 2.0
}

fn bottleneck(ctx: &Context, broke: Option<Step>, max_rps: f64) -> String {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    match broke {
        None => ctx.text(
            format!("none found up to {max_rps:.0} updates/s (the highest step)"),
            format!("не найдено до {max_rps:.0} обновлений/с (верхняя ступень)"),
        ),
        Some(s) if generator_limited(&s) => ctx.text(
            format!("the load generator fell {:.0} ms behind at {:.0}/s: the bot's limit is at least this high", s.lag_p99_ms, s.rate),
            format!("генератор нагрузки отстал на {:.0} мс при {:.0}/с: предел бота не ниже", s.lag_p99_ms, s.rate),
        ),
        Some(s) if s.cpu_percent >= 85.0 * cores => ctx.text(
            format!("CPU: the bot's processes used {:.0} % of a core ({cores:.0} cores) at {:.0} updates/s", s.cpu_percent, s.rate),
            format!("CPU: процессы бота заняли {:.0} % ядра ({cores:.0} ядер) при {:.0} обновлений/с", s.cpu_percent, s.rate),
        ),
        Some(s) if s.cpu_percent >= 85.0 => ctx.text(
            format!("CPU of one core: the bot's processes used {:.0} % of a core at {:.0} updates/s (a single event loop — asyncio, Node — saturates at 100 %; run more workers)", s.cpu_percent, s.rate),
            format!("CPU одного ядра: процессы бота заняли {:.0} % ядра при {:.0} обновлений/с (один цикл событий — asyncio, Node — упирается в 100 %; запустите больше воркеров)", s.cpu_percent, s.rate),
        ),
        Some(s) => ctx.text(
            format!("waiting, not CPU, at {:.0} updates/s (the bot's CPU {:.0} % of a core): I/O, a lock, or the bot pacing its own sends (Telegram allows about 30 messages/s)", s.rate, s.cpu_percent),
            format!("ожидание, а не CPU, при {:.0} обновлений/с (CPU бота {:.0} % ядра): ввод-вывод, блокировка или собственное ограничение отправки (Telegram допускает около 30 сообщений/с)", s.rate, s.cpu_percent),
        ),
    }
}

fn chart(ctx: &Context, out: &mut TestOutcome, steps: &[Step]) {
    // A step's curve point is its last run (a repeat replaces the run it repeated).
    let points: Vec<ChartPoint> = steps
        .iter()
        .enumerate()
        .filter(|(i, _)| !steps.get(i + 1).is_some_and(|next| next.repeat))
        .map(|(_, s)| ChartPoint {
            users: s.rate * SECONDS_PER_UPDATE_PER_USER,
            offered: s.rate,
            answered: s.answered_per_s,
            p99_ms: s.p99_ms,
        })
        .collect();
    chart_points(ctx, out, &points);
}
