//! `telegram_faults`: the Bot API misbehaving under load — 5xx and 429 with `retry_after` on
//! sends, users who blocked the bot (403), slow answers. Each photo must arrive exactly once,
//! a 403 must not be retried, and the other users must not wait much longer.

use std::time::Duration;

use genbot_mocks::replicate::ReplicateMockConfig;

use super::{describe, grade, on_stage, settle_limit, timeline, until};
use crate::context::Context;
use crate::faults::audit::{self, Tally};
use crate::faults::load::Load;
use crate::faults::stage::{Stage, StageSpec};
use crate::faults::FaultError;
use crate::outcome::{TestId, TestOutcome};
use crate::target::TEST_IDS;

const USERS: u32 = 30;
const BLOCKED: i64 = 3;
const PROMPTS_PER_S: f64 = 6.0;
const SEND_DELAY: Duration = Duration::from_millis(300);
/// p99 of the other users during the faults within this much of p99 before is EXCELLENT.
const P99_ALLOWANCE_MS: f64 = 1500.0;

struct Measured {
    tally: Tally,
    window: (f64, f64),
    p99_before_ms: f64,
    p99_during_ms: f64,
    p50_before_ms: f64,
    p50_during_ms: f64,
    /// `(user, 403 answers, distinct messages the bot had for them)` per blocked user.
    refusals: Vec<(i64, u64, u64)>,
    /// Prompts other users sent during the faults, and those of them never answered.
    sent_during: u64,
    unanswered_during: u64,
    settled: Option<Duration>,
    load: Load,
}

pub async fn run(ctx: &Context) -> TestOutcome {
    let id = TestId::TelegramFaults;
    let spec = StageSpec {
        redis: true,
        replicate: ReplicateMockConfig {
            median_latency: Duration::from_millis(500),
            ..ReplicateMockConfig::default()
        },
        ..StageSpec::default()
    };
    on_stage(
        id,
        ctx,
        spec,
        |ctx, stage| Box::pin(measure(ctx, stage)),
        describe_run,
    )
    .await
}

fn blocked_ids() -> std::ops::Range<i64> {
    TEST_IDS.start..TEST_IDS.start + BLOCKED
}

async fn measure(ctx: &Context, stage: &Stage) -> Result<Measured, FaultError> {
    let (before_s, faults_s, after_s) = if ctx.quick {
        (2.0, 3.0, 2.0)
    } else {
        (5.0, 10.0, 5.0)
    };
    let telegram = &stage.telegram;
    let mut bot = stage.replica("bench-telegram")?;
    bot.start().await?;
    for user in blocked_ids() {
        telegram.block(user);
    }
    let users = Load::users(telegram, USERS);
    let mut load = Load::start(telegram, users, PROMPTS_PER_S);
    until(&load, before_s).await;
    telegram.fail_next("sendPhoto", 502, "Bad Gateway", 3);
    telegram.throttle_next("sendPhoto", 1, 3);
    telegram.fail_next("sendMessage", 500, "Internal Server Error", 2);
    telegram.fail_next("editMessageText", 502, "Bad Gateway", 2);
    telegram.set_send_delay(SEND_DELAY);
    until(&load, before_s + faults_s).await;
    telegram.set_send_delay(Duration::ZERO);
    until(&load, before_s + faults_s + after_s).await;
    load.stop_prompting().await;
    let settled = audit::settle(stage, &load, settle_limit(ctx)).await;
    load.finish().await;
    bot.kill().await;
    let stats = telegram.stats();
    let refusals = blocked_ids()
        .enumerate()
        .map(|(n, user)| {
            let refused = stats.blocked_refusals.get(&user).copied().unwrap_or(0);
            // The answer to /start, then an answer and a photo per prompt.
            let distinct = 1 + 2 * u64::from(load.prompts_of(n));
            (user, refused, distinct)
        })
        .collect();
    let blocked: Vec<i64> = blocked_ids().collect();
    let end = before_s + faults_s;
    // Grouped by when each update was sent, the blocked users' (never answerable) left out.
    let sent_during = load
        .sent_in(before_s, end)
        .iter()
        .filter(|(_, user)| !blocked.contains(user))
        .count() as u64;
    let unanswered_during = load.unanswered_in(before_s, end, &blocked);
    Ok(Measured {
        sent_during,
        unanswered_during,
        tally: audit::count(stage, &load, &blocked).await?,
        window: (before_s, end),
        p99_before_ms: load.window(0.0, before_s).summary().p99_ms,
        p99_during_ms: load.window(before_s, end).summary().p99_ms,
        p50_before_ms: load.window(0.0, before_s).summary().p50_ms,
        p50_during_ms: load.window(before_s, end).summary().p50_ms,
        refusals,
        settled,
        load,
    })
}

fn describe_run(ctx: &Context, m: &Measured) -> TestOutcome {
    let mut out = TestOutcome::new(TestId::TelegramFaults, ctx.lang);
    let retried: Vec<String> = m
        .refusals
        .iter()
        .filter(|(_, refused, distinct)| refused > distinct)
        .map(|(user, refused, distinct)| {
            format!("403 retried: user {user} got {refused} refused sends for {distinct} messages")
        })
        .collect();
    let in_bound = m.settled.is_some()
        && m.unanswered_during == 0
        && m.p99_during_ms <= m.p99_before_ms + P99_ALLOWANCE_MS;
    out.grade = grade(&m.tally, &retried, in_bound);
    let refused: u64 = m.refusals.iter().map(|r| r.1).sum();
    out.metric("p50_before_ms", m.p50_before_ms)
        .metric("p50_during_ms", m.p50_during_ms)
        .metric("p99_before_ms", m.p99_before_ms)
        .metric("p99_during_ms", m.p99_during_ms)
        .metric("blocked_users", m.refusals.len() as f64)
        .metric("refused_sends_403", refused as f64)
        .metric("users_with_403_retried", retried.len() as f64)
        .metric("prompts_during_faults", m.sent_during as f64)
        .metric("unanswered_during_faults", m.unanswered_during as f64);
    describe(&mut out, ctx, &m.tally, &retried);
    out.fact(ctx.text(
        format!(
            "from {:.0} s to {:.0} s of the load: sendPhoto 3 × 502 and 3 × 429 (retry_after 1), sendMessage 2 × 500, editMessageText 2 × 502, every send answered {} ms late; {BLOCKED} of {USERS} users blocked the bot before their first message",
            m.window.0, m.window.1, SEND_DELAY.as_millis()
        ),
        format!(
            "с {:.0} по {:.0} с нагрузки: sendPhoto 3 × 502 и 3 × 429 (retry_after 1), sendMessage 2 × 500, editMessageText 2 × 502, каждый ответ Bot API на {} мс позже; {BLOCKED} из {USERS} пользователей заблокировали бота до первого сообщения",
            m.window.0, m.window.1, SEND_DELAY.as_millis()
        ),
    ));
    out.fact(ctx.text(
        format!("bound: each photo exactly once to everyone else, no more 403s per blocked user than messages the bot had for them, other users' p99 within {P99_ALLOWANCE_MS:.0} ms of before"),
        format!("граница: каждое фото ровно один раз остальным, не больше 403 на заблокировавшего, чем сообщений для него, p99 остальных не более чем на {P99_ALLOWANCE_MS:.0} мс выше, чем до сбоев"),
    ));
    if m.p99_during_ms > m.p99_before_ms + P99_ALLOWANCE_MS {
        out.recommend(ctx.text(
            format!(
                "answers slowed beyond the send delay: p50 {:.0} → {:.0} ms, p99 {:.0} → {:.0} ms. An answer whose send fails with 5xx is not retried (only 429 is), so that user first hears from a later message; retry answers once on 5xx",
                m.p50_before_ms, m.p50_during_ms, m.p99_before_ms, m.p99_during_ms
            ),
            format!(
                "ответы замедлились сильнее задержки отправки: p50 {:.0} → {:.0} мс, p99 {:.0} → {:.0} мс. Ответ, отправка которого упала с 5xx, не повторяется (повторяется только 429), и пользователь узнаёт о запросе из следующего сообщения; повторяйте ответы один раз при 5xx",
                m.p50_before_ms, m.p50_during_ms, m.p99_before_ms, m.p99_during_ms
            ),
        ));
    }
    if m.unanswered_during > 0 {
        out.recommend(ctx.text(
            format!("{} of the {} updates other users sent during the faults were never answered", m.unanswered_during, m.sent_during),
            format!("{} из {} обновлений остальных пользователей, отправленных во время сбоев, остались без ответа", m.unanswered_during, m.sent_during),
        ));
    }
    for series in timeline(ctx, &m.load, vec![m.window]) {
        out.series(series);
    }
    // The faults must have reached the bot: updates sent while sends were slowed and failing,
    // and a 403 seen for a blocked user.
    if m.sent_during == 0 || refused == 0 {
        let reason = ctx.text(
            format!("did not measure: {} updates were sent during the faults and the bot met {refused} refusals (403), so the faults may never have reached it", m.sent_during),
            format!("не измерено: во время сбоев отправлено {} обновлений, бот получил {refused} отказов (403) — сбои могли до него не дойти", m.sent_during),
        );
        out.did_not_measure(reason);
    }
    out
}
