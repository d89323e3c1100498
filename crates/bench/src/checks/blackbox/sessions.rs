//! Concurrent users against a black-box bot: U simulated users each walk the scenario's steps
//! with its think times. Success = every expectation met in time; latency = update → the bot's
//! first answer, as the Bot API mock saw it. A failed session is named: step, user, what came.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use crate::blackbox::scenario::{Action, Answer, Scenario};
use crate::blackbox::{session, BlackBox, StepFailure};
use crate::context::Context;
use crate::grade::{Grade, Lang};
use crate::histogram::Latencies;
use crate::outcome::{TestId, TestOutcome};
use crate::timeline;
use genbot_mocks::telegram::FloodBudget;
use genbot_mocks::telegram::{SimUser, TelegramMock};

/// Users start their sessions at this rate.
const ARRIVALS_PER_SEC: f64 = 200.0;
/// Telegram's overall send limit for a bot, per second.
const TELEGRAM_SENDS_PER_S: u64 = 30;
/// Share of sends beyond that budget still counted as paced (network jitter bunches a paced
/// bot's sends a little at the mock).
const OVER_BUDGET_TOLERATED: f64 = 0.05;
/// The SLO for answers that are not images.
const P99_TARGET_MS: f64 = 100.0;
/// A bot whose text p99 is within this many times the floor Telegram's budget imposes…
const FLOOR_FACTOR: f64 = 1.2;
/// …plus this (the network, a poll's round trip) is at the floor: EXCELLENT, however long
/// the floor is.
const FLOOR_SLACK_MS: f64 = 500.0;

pub(super) async fn concurrent_users(ctx: &Context, bot: &BlackBox) -> TestOutcome {
    let users = bot.users(ctx.users.max(1), None);
    crowd(ctx, &bot.telegram, &bot.scenario, users).await
}

/// The concurrent-users measurement of whatever bot answers at `telegram` (the Bot API mock,
/// enforcing Telegram's flood control): `users` walk `scenario`, arriving at
/// [`ARRIVALS_PER_SEC`]; graded against the floor Telegram's budget imposes on the run.
pub(crate) async fn crowd(
    ctx: &Context,
    telegram: &TelegramMock,
    scenario: &Scenario,
    users: Vec<SimUser>,
) -> TestOutcome {
    let mut out = TestOutcome::new(TestId::ConcurrentUsers, ctx.lang);
    let count = u32::try_from(users.len()).unwrap_or(u32::MAX).max(1);
    let failures: Arc<Mutex<Vec<StepFailure>>> = Arc::default();
    let times: Arc<Mutex<(Latencies, Latencies)>> = Arc::default();
    let from = telegram.stats().answer_latencies.len();
    let sends_before = telegram.stats().sends;
    let charges_before = telegram.charges().len();
    let stop_sampling = CancellationToken::new();
    let sampler = timeline::sample(
        telegram.answers(),
        Duration::from_millis(if ctx.quick { 250 } else { 1000 }),
        stop_sampling.clone(),
    );
    let started = Instant::now();
    let mut sessions = Vec::with_capacity(users.len());
    for (n, user) in users.into_iter().enumerate() {
        let (failures, times) = (failures.clone(), times.clone());
        let scenario = scenario.clone();
        sessions.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs_f64(n as f64 / ARRIVALS_PER_SEC)).await;
            match session(&user, &scenario, n as u64).await {
                Ok(steps) => {
                    let mut times = times.lock();
                    for (kind, took) in steps {
                        match kind {
                            Answer::Photo => times.1.record(took),
                            Answer::Text | Answer::Edit | Answer::Invoice => times.0.record(took),
                        }
                    }
                }
                Err(failure) => failures.lock().push(failure),
            }
        }));
        crate::checks::pace_spawns(n).await;
    }
    for running in sessions {
        let _ = running.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    stop_sampling.cancel();
    let windows = sampler.await.unwrap_or_default();
    for series in timeline::series(
        &windows,
        ctx.lang,
        &ctx.text(
            "seconds since the first user",
            "секунды от первого пользователя",
        ),
        &ctx.text("Concurrent users", "Одновременные пользователи"),
    ) {
        out.series(series);
    }
    let answers_seen = telegram.answers().latencies_since(from).len();
    let stats = telegram.stats();
    // Messages and edits in the busiest calendar second of the mock's clock. Not a rate: the
    // budget the mock keeps (30 a second with a burst of 30, `sends_over_telegram_budget_share`
    // counts what exceeds it) lets a second that starts with a full bucket hold up to 60, so a
    // figure above 30 with nothing over budget is the burst, not a breach.
    let peak_sends = stats.peak_sends_per_s;
    let over_budget = stats.sends_over_budget as f64 / stats.sends.max(1) as f64;
    // What one user's session costs of Telegram's budget: every message and edit the bot
    // sent during the run (answers, progress, photos, invoices) over the users.
    let sends_per_user = stats.sends.saturating_sub(sends_before) as f64 / f64::from(count);
    let (summary, images) = {
        let times = times.lock();
        (times.0.summary(), times.1.summary())
    };
    let failures = std::mem::take(&mut *failures.lock());
    let success = (f64::from(count) - failures.len() as f64) / f64::from(count);
    out.metric("users", f64::from(count))
        .metric("success_rate", success)
        .metric("updates_per_s", answers_seen as f64 / elapsed)
        .metric("p50_ms", summary.p50_ms)
        .metric("p95_ms", summary.p95_ms)
        .metric("p99_ms", summary.p99_ms)
        .metric("max_ms", summary.max_ms)
        .metric("peak_sends_per_s", peak_sends as f64)
        .metric("sends_per_user", sends_per_user)
        .metric("sends_over_telegram_budget_share", over_budget);
    if images.count > 0 {
        out.metric("image_p50_ms", images.p50_ms)
            .metric("image_p99_ms", images.p99_ms);
    }
    let pays = scenario
        .steps
        .iter()
        .filter(|step| matches!(step.action, Action::Pay))
        .count();
    if pays > 0 {
        // Counted at the mock: payments Telegram completed because the bot said yes at checkout.
        let payments = telegram.charges().len().saturating_sub(charges_before);
        out.metric("payments", payments as f64);
        out.fact(ctx.text(
            format!(
                "{payments} Telegram Stars payments completed ({} expected: {pays} per session)",
                pays * count as usize
            ),
            format!(
                "{payments} оплат в Telegram Stars прошло (ожидалось {}: {pays} за сессию)",
                pays * count as usize
            ),
        ));
    }
    let steps = scenario.steps.len();
    out.fact(ctx.text(
        format!("{count} users arriving at {ARRIVALS_PER_SEC} per second, each walking the scenario's {steps} steps with its think times (scenario: {}); latency = a step's message → the answer it expects; p99 target for text answers {P99_TARGET_MS} ms (images are reported apart: prompt → photo p50 {:.0} ms, p99 {:.0} ms)", scenario.name, images.p50_ms, images.p99_ms),
        format!("{count} пользователей (прибывают по {ARRIVALS_PER_SEC} в секунду), каждый проходит {steps} шагов сценария с его паузами (сценарий: {}); задержка = сообщение шага → ожидаемый ответ; цель p99 для текстовых ответов {P99_TARGET_MS} мс (изображения отдельно: запрос → фото p50 {:.0} мс, p99 {:.0} мс)", scenario.name, images.p50_ms, images.p99_ms),
    ));
    // The floor for the scenario as run: each session's answers sent the moment their step
    // arrives (images after the measured median), within Telegram's budget.
    let image_s = if images.count > 0 {
        images.p50_ms / 1000.0
    } else {
        0.0
    };
    let floor_p99_ms = floor_p99_ms(scenario, count, image_s);
    let at_floor = summary.p99_ms <= FLOOR_FACTOR * floor_p99_ms + FLOOR_SLACK_MS;
    out.metric("floor_p99_ms", floor_p99_ms);
    if floor_p99_ms > 0.0 {
        out.metric("p99_to_floor", summary.p99_ms / floor_p99_ms);
    }
    out.fact(ctx.text(
        format!("the floor Telegram's budget imposes on this run: text answers' p99 ≥ {floor_p99_ms:.0} ms (every answer sent the moment its step arrives, first come first sent, at {TELEGRAM_SENDS_PER_S} a second per bot, about 1 a second per chat after a burst of 3, 20 a minute per group); measured p99 {:.0} ms = {:.2} × the floor; at most {FLOOR_FACTOR} × the floor + {FLOOR_SLACK_MS:.0} ms counts as at the floor", summary.p99_ms, summary.p99_ms / floor_p99_ms.max(1e-9)),
        format!("нижняя граница, которую бюджет Telegram задаёт этому запуску: p99 текстовых ответов ≥ {floor_p99_ms:.0} мс (каждый ответ отправлен, как только пришёл шаг, в порядке прихода, {TELEGRAM_SENDS_PER_S} в секунду на бота, около 1 в секунду на чат после всплеска из 3, 20 в минуту на группу); измеренный p99 {:.0} мс = {:.2} × граница; не более {FLOOR_FACTOR} × граница + {FLOOR_SLACK_MS:.0} мс считается на границе", summary.p99_ms, summary.p99_ms / floor_p99_ms.max(1e-9)),
    ));
    out.grade = ctx.thresholds.success(success);
    // A bot at the floor is as fast as Telegram lets any bot be: EXCELLENT even when the
    // floor is seconds. Above both the SLO and the floor, it is the bot's own delay.
    if summary.p99_ms > P99_TARGET_MS && !at_floor && out.grade == Grade::Excellent {
        out.grade = Grade::Good;
    }
    describe_failures(ctx, &failures, &mut out);
    let paced = over_budget <= OVER_BUDGET_TOLERATED;
    if !failures.is_empty() && paced {
        out.recommend(ctx.text(
            format!("While sessions waited, the bot kept within Telegram's send budget (about {TELEGRAM_SENDS_PER_S} a second after a burst; at most {peak_sends} messages and edits in one calendar second, which a burst of {TELEGRAM_SENDS_PER_S} on top of {TELEGRAM_SENDS_PER_S} a second allows up to twice over): it paces its sends, and {count} users arriving at once outrun that budget. Send command answers ahead of progress edits, or send fewer messages per user."),
            format!("Пока сессии ждали, бот укладывался в бюджет отправки Telegram (около {TELEGRAM_SENDS_PER_S} в секунду после всплеска; не более {peak_sends} сообщений и правок за календарную секунду — всплеск в {TELEGRAM_SENDS_PER_S} поверх {TELEGRAM_SENDS_PER_S} в секунду допускает до вдвое большего): он соблюдает лимит, а {count} одновременно пришедших пользователей превышают этот бюджет. Отправляйте ответы на команды раньше правок прогресса или шлите меньше сообщений на пользователя."),
        ));
    }
    if !paced {
        // Figures the real API would not allow are not excellent ones.
        if out.grade == Grade::Excellent {
            out.grade = Grade::Good;
        }
        out.recommend(ctx.text(
            format!("{:.0} % of the bot's messages went beyond Telegram's budget of about {TELEGRAM_SENDS_PER_S} a second (up to {peak_sends} messages and edits in one calendar second): the mock answered those 429 as the real API does, so each such answer waited out retry_after or was lost. Pace sends and honour retry_after.", over_budget * 100.0),
            format!("{:.0} % сообщений бота вышли за бюджет Telegram (около {TELEGRAM_SENDS_PER_S} в секунду; до {peak_sends} сообщений и правок за календарную секунду): мок, как и настоящий API, ответил на них 429, так что каждый такой ответ ждал retry_after или потерялся. Ограничьте частоту отправки и соблюдайте retry_after.", over_budget * 100.0),
        ));
    }
    if out.grade != Grade::Excellent && failures.is_empty() {
        out.recommend(ctx.text(
            format!("p99 {:.0} ms for answers: keep handlers non-blocking (no synchronous HTTP or database calls on the event loop).", summary.p99_ms),
            format!("p99 ответов {:.0} мс: не блокируйте обработчики (никаких синхронных HTTP-запросов и обращений к базе в цикле событий).", summary.p99_ms),
        ));
    }
    out
}

/// The p99 (ms) of text answers' latency if the bot sent every answer the moment its step
/// arrived, within Telegram's budget ([`FloodBudget`], the mock's own rules), first come first
/// sent: `users` sessions arriving at [`ARRIVALS_PER_SEC`], each walking the scenario with its
/// think times; a photo goes out `image_s` after its step (the measured median). Each expected
/// answer is one send: the least any bot must send, so the floor is a lower bound.
pub(crate) fn floor_p99_ms(scenario: &Scenario, users: u32, image_s: f64) -> f64 {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    /// Seconds as whole nanoseconds, so events order in a heap.
    fn key(seconds: f64) -> u64 {
        (seconds.max(0.0) * 1e9) as u64
    }
    // (when, user, step, asked at, ready to send): a step is asked, then (after the image for
    // a photo) its answer queues for the budget.
    let mut events = BinaryHeap::new();
    for user in 0..users {
        let at = f64::from(user) / ARRIVALS_PER_SEC;
        events.push(Reverse((key(at), user, 0_usize, key(at), false)));
    }
    let mut budget = FloodBudget::default();
    let mut latencies = Latencies::default();
    while let Some(Reverse((when, user, index, asked, ready))) = events.pop() {
        let Some(step) = scenario.steps.get(index) else {
            continue;
        };
        let now = when as f64 / 1e9;
        let chat = i64::from(user) + 1;
        let answered = match (&step.expect, ready) {
            (None, _) => now,
            (Some(expect), false) if expect.kind == Answer::Photo => {
                events.push(Reverse((key(now + image_s), user, index, asked, true)));
                continue;
            }
            (Some(expect), _) => {
                let sent = budget.earliest(chat, now);
                if expect.kind != Answer::Photo {
                    latencies.record(Duration::from_secs_f64(sent - asked as f64 / 1e9));
                }
                sent
            }
        };
        let next = answered + step.think.as_secs_f64();
        events.push(Reverse((key(next), user, index + 1, key(next), false)));
    }
    latencies.summary().p99_ms
}

/// The first few failed sessions, grouped by step: which step, which user, what came instead.
pub(super) fn describe_failures(ctx: &Context, failures: &[StepFailure], out: &mut TestOutcome) {
    if failures.is_empty() {
        return;
    }
    let mut by_step = std::collections::BTreeMap::<usize, usize>::new();
    for failure in failures {
        *by_step.entry(failure.step).or_default() += 1;
    }
    let counts = by_step
        .iter()
        .map(|(step, n)| ctx.text(format!("step {step}: {n}"), format!("шаг {step}: {n}")))
        .collect::<Vec<_>>()
        .join(", ");
    out.metric("failed_sessions", failures.len() as f64);
    out.recommend(ctx.text(
        format!(
            "{} sessions failed ({counts}); first: {}",
            failures.len(),
            failures[0].describe(true)
        ),
        format!(
            "{} сессий не завершились ({counts}); первая: {}",
            failures.len(),
            failures[0].describe(false)
        ),
    ));
    for failure in failures.iter().skip(1).take(2) {
        out.fact(failure.describe(ctx.lang == Lang::En));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(steps: &str) -> Scenario {
        Scenario::parse(&format!("name = \"floor\"\n{steps}"), "floor.toml").expect("scenario")
    }

    #[test]
    fn the_floor_is_the_answers_queued_ahead_at_telegrams_budget() {
        let one = scenario("[[step]]\nsend = \"/start\"\nexpect = { text = \".\" }\n");
        // 10 users: within the burst, nobody waits.
        assert!(floor_p99_ms(&one, 10, 0.0) < 1.0);
        // 100 users arriving at 200/s: after a burst of 30, answers go at 30 a second, so the
        // last ones wait about (100 - 30) / 30 s less their later arrival (~0.5 s).
        let hundred = floor_p99_ms(&one, 100, 0.0);
        assert!((1500.0..2000.0).contains(&hundred), "{hundred}");
        // Twice the users, more than twice the wait: the budget, not the arrivals, sets it.
        assert!(floor_p99_ms(&one, 200, 0.0) > 2.0 * hundred);
        // A second step in the same chat with no think time waits for the chat's own budget
        // only after its burst of 3: four quick answers to one user put the fourth ~1 s out.
        let four = scenario(&"[[step]]\nsend = \"/start\"\nexpect = { text = \".\" }\n".repeat(4));
        let single_user = floor_p99_ms(&four, 1, 0.0);
        assert!((900.0..1100.0).contains(&single_user), "{single_user}");
    }
}
