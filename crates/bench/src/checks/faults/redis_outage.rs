//! `redis_outage`: Redis blackholed under load (connections accepted, nothing answered). The
//! bot must keep answering from its database, lose nothing, and serve no stale balances once
//! Redis is back.

use std::time::Duration;

use genbot_cache::{RedisCache, UserCache};
use genbot_mocks::fault_proxy::Fault;
use genbot_mocks::replicate::ReplicateMockConfig;
use genbot_store::UserId;

use super::{describe, grade, on_stage, settle_limit, timeline, until};
use crate::context::Context;
use crate::faults::audit::{self, Tally};
use crate::faults::load::Load;
use crate::faults::stage::{Stage, StageSpec};
use crate::faults::FaultError;
use crate::outcome::{TestId, TestOutcome};

const USERS: u32 = 30;
const PROMPTS_PER_S: f64 = 6.0;
/// p99 during the outage within this many times p99 before (or under a second) is EXCELLENT.
const P99_FACTOR: f64 = 3.0;

struct Measured {
    tally: Tally,
    window: (f64, f64),
    p99_before_ms: f64,
    p99_during_ms: f64,
    p99_after_ms: f64,
    cache_errors: f64,
    limiter_fallbacks: f64,
    /// Users whose Redis entry disagrees with the database after the outage.
    stale: Vec<String>,
    unanswered: u64,
    /// Prompts sent while Redis was down, and those of them never answered.
    sent_during: u64,
    unanswered_during: u64,
    settled: Option<Duration>,
    load: Load,
}

pub async fn run(ctx: &Context) -> TestOutcome {
    let id = TestId::RedisOutage;
    if ctx.settings.redis_url.is_none() {
        return TestOutcome::not_applicable(
            id,
            ctx.lang,
            ctx.text(
                "no Redis in this run (in-process cache); give --redis-url or REDIS_URL",
                "в этом прогоне нет Redis (кэш в процессе); укажите --redis-url или REDIS_URL",
            ),
        );
    }
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

async fn measure(ctx: &Context, stage: &Stage) -> Result<Measured, FaultError> {
    let Some(redis) = &stage.redis else {
        return Err(FaultError::Redis(
            "(none)".into(),
            "the stage has no Redis".into(),
        ));
    };
    let (before_s, outage_s, after_s) = if ctx.quick {
        (2.0, 2.0, 3.0)
    } else {
        (5.0, 5.0, 5.0)
    };
    let mut bot = stage.replica("bench-redis")?;
    bot.start().await?;
    let users = Load::users(&stage.telegram, USERS);
    let mut load = Load::start(&stage.telegram, users, PROMPTS_PER_S);
    until(&load, before_s).await;
    redis.proxy.set(Fault::Blackhole);
    until(&load, before_s + outage_s).await;
    redis.proxy.set(Fault::Pass);
    until(&load, before_s + outage_s + after_s).await;
    load.stop_prompting().await;
    let settled = audit::settle(stage, &load, settle_limit(ctx)).await;
    // Answers still on their way after the last job are given a moment.
    let _ = super::time_until(Duration::from_secs(5), || async {
        stage.telegram.stats().unanswered == 0
    })
    .await;
    load.finish().await;
    let cache_errors = bot.metric("genbot_cache_errors_total").await.unwrap_or(0.0);
    let limiter_fallbacks = bot
        .metric("genbot_rate_limiter_fallbacks_total")
        .await
        .unwrap_or(0.0);
    bot.kill().await;
    let stale = stale_entries(stage, &load, redis).await?;
    // Grouped by when each update was sent: an update sent during the outage and answered
    // after it counts in the outage's p99, and one never answered is a breach.
    let p99 = |from: f64, to: f64| load.window(from, to).summary().p99_ms;
    let end = before_s + outage_s;
    let sent_during = load.sent_in(before_s, end).len() as u64;
    let unanswered_during = load.unanswered_in(before_s, end, &[]);
    Ok(Measured {
        tally: audit::count(stage, &load, &[]).await?,
        window: (before_s, end),
        p99_before_ms: p99(0.0, before_s),
        p99_during_ms: p99(before_s, end),
        p99_after_ms: p99(end, f64::MAX),
        cache_errors,
        limiter_fallbacks,
        stale,
        unanswered: stage.telegram.stats().unanswered,
        sent_during,
        unanswered_during,
        settled,
        load,
    })
}

/// Users whose cached entry (read straight from Redis) disagrees with the database.
async fn stale_entries(
    stage: &Stage,
    load: &Load,
    redis: &crate::faults::stage::StageRedis,
) -> Result<Vec<String>, FaultError> {
    let cache = UserCache::Redis(
        RedisCache::new(&redis.url, Duration::from_secs(300), &redis.prefix)
            .map_err(|e| FaultError::Redis(redis.url.to_string(), e.to_string()))?,
    );
    let mut stale = Vec::new();
    for user in &load.users {
        let id = UserId(user.id());
        let cached = cache
            .get(id)
            .await
            .map_err(|e| FaultError::Redis(redis.url.to_string(), e.to_string()))?;
        let stored = stage.store.get_user(id).await?;
        if let (Some(cached), Some(stored)) = (cached, stored) {
            if cached.credits != stored.credits {
                stale.push(format!(
                    "user {}: Redis says {} credits, the database {}",
                    id.0, cached.credits, stored.credits
                ));
            }
        }
    }
    Ok(stale)
}

fn describe_run(ctx: &Context, m: &Measured) -> TestOutcome {
    let mut out = TestOutcome::new(TestId::RedisOutage, ctx.lang);
    let p99_bound = (m.p99_before_ms * P99_FACTOR).max(1000.0);
    let in_bound = m.settled.is_some()
        && m.unanswered == 0
        && m.unanswered_during == 0
        && m.p99_during_ms <= p99_bound
        && m.stale.is_empty();
    out.grade = grade(&m.tally, &[], in_bound);
    out.metric("outage_s", m.window.1 - m.window.0)
        .metric("prompts_during_outage", m.sent_during as f64)
        .metric("unanswered_during_outage", m.unanswered_during as f64)
        .metric("p99_before_ms", m.p99_before_ms)
        .metric("p99_during_ms", m.p99_during_ms)
        .metric("p99_after_ms", m.p99_after_ms)
        .metric("unanswered_updates", m.unanswered as f64)
        .metric("cache_errors", m.cache_errors)
        .metric("rate_limiter_fallbacks", m.limiter_fallbacks)
        .metric("stale_cache_entries_after", m.stale.len() as f64);
    describe(&mut out, ctx, &m.tally, &[]);
    out.fact(ctx.text(
        format!(
            "Redis blackholed (connections accepted, nothing answered) from {:.0} s to {:.0} s of the load; {USERS} users, {PROMPTS_PER_S} prompts/s; bound: p99 of the updates sent during the outage ≤ max({P99_FACTOR}× before, 1 s), every update answered, no stale entry after",
            m.window.0, m.window.1
        ),
        format!(
            "Redis в «чёрной дыре» (соединения приняты, ответов нет) с {:.0} по {:.0} с нагрузки; {USERS} пользователей, {PROMPTS_PER_S} запросов/с; граница: p99 во время ≤ max({P99_FACTOR}× до, 1 с), ответ на каждое обновление, нет устаревших записей после",
            m.window.0, m.window.1
        ),
    ));
    for stale in m.stale.iter().take(5) {
        out.fact(stale.clone());
    }
    if !m.stale.is_empty() {
        out.recommend(ctx.text(
            format!("{} cached users kept a balance the database no longer has after Redis came back: invalidations that failed during the outage must be retried (or the entries expire sooner)", m.stale.len()),
            format!("{} пользователей в кэше сохранили баланс, которого уже нет в БД, после возврата Redis: неудавшиеся во время сбоя инвалидации нужно повторять (или сократить срок жизни записей)", m.stale.len()),
        ));
    }
    if m.p99_during_ms > p99_bound {
        out.recommend(ctx.text(
            format!("p99 rose from {:.0} ms to {:.0} ms while Redis did not answer: lower the Redis timeout or open the breaker sooner", m.p99_before_ms, m.p99_during_ms),
            format!("p99 вырос с {:.0} до {:.0} мс, пока Redis не отвечал: уменьшите тайм-аут Redis или раньше размыкайте предохранитель", m.p99_before_ms, m.p99_during_ms),
        ));
    }
    if m.unanswered_during > 0 {
        out.recommend(ctx.text(
            format!("{} of the {} updates sent while Redis did not answer were never answered: an outage of the cache must not silence the bot", m.unanswered_during, m.sent_during),
            format!("{} из {} обновлений, отправленных, пока Redis не отвечал, остались без ответа: отказ кэша не должен заставлять бота молчать", m.unanswered_during, m.sent_during),
        ));
    }
    for series in timeline(ctx, &m.load, vec![m.window]) {
        out.series(series);
    }
    // No evidence the outage reached the bot (no cache error counted), or no update sent
    // during it: the window says nothing about the bot, so it is not graded.
    if m.sent_during == 0 || m.cache_errors <= 0.0 {
        let reason = ctx.text(
            format!("did not measure: {} prompts were sent during the outage and the bot counted {} cache errors, so the outage may never have reached it", m.sent_during, m.cache_errors),
            format!("не измерено: во время сбоя отправлено {} запросов, бот насчитал {} ошибок кэша — сбой мог до него не дойти", m.sent_during, m.cache_errors),
        );
        out.did_not_measure(reason);
    }
    out
}
