//! `database_outage`: PostgreSQL blackholed under load. Users should hear something rather
//! than silence, nothing may be lost, and the bot must catch up soon after the database is
//! back.

use std::time::Duration;

use genbot_mocks::fault_proxy::Fault;
use genbot_mocks::replicate::ReplicateMockConfig;

use super::{describe, grade, on_stage, settle_limit, timeline, until};
use crate::context::Context;
use crate::faults::audit::{self, Tally};
use crate::faults::load::Load;
use crate::faults::stage::{Stage, StageSpec};
use crate::faults::FaultError;
use crate::outcome::{TestId, TestOutcome};

/// From the database's return until every update is answered: within this is EXCELLENT.
const RECOVERY_BOUND: Duration = Duration::from_secs(5);
/// A user who writes during the outage hears something (the "delayed, not lost" notice, or
/// the answer itself) before the database returns, or within this long of writing.
const HEARD_WITHIN_S: f64 = 2.0;
const USERS: u32 = 30;
const PROMPTS_PER_S: f64 = 6.0;

struct Measured {
    tally: Tally,
    window: (f64, f64),
    /// Answers that arrived while the database did not answer.
    answers_during: u64,
    /// Updates unanswered when the database came back.
    unanswered_at_return: u64,
    /// Users who wrote during the outage, and those of them who heard nothing in time.
    writers: u64,
    unheard: Vec<i64>,
    recovery: Option<Duration>,
    settled: Option<Duration>,
    load: Load,
}

pub async fn run(ctx: &Context) -> TestOutcome {
    let id = TestId::DatabaseOutage;
    if !Stage::has_postgres(ctx) {
        return TestOutcome::not_applicable(
            id,
            ctx.lang,
            ctx.text(
                "embedded SQLite lives in the bot's process: it has no outage of its own (give --database-url postgres://… to test one)",
                "встроенная SQLite живёт в процессе бота: отдельного отказа у неё нет (укажите --database-url postgres://…, чтобы проверить)",
            ),
        );
    }
    let spec = StageSpec {
        database_proxy: true,
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
    let Some(proxy) = &stage.database_proxy else {
        return Err(FaultError::Store(genbot_store::StoreError::Commit(
            "the stage has no database proxy".into(),
        )));
    };
    let (before_s, outage_s, after_s) = if ctx.quick {
        (2.0, 3.0, 3.0)
    } else {
        (5.0, 5.0, 5.0)
    };
    let mut bot = stage.replica("bench-database")?;
    bot.start().await?;
    let users = Load::users(&stage.telegram, USERS);
    let mut load = Load::start(&stage.telegram, users, PROMPTS_PER_S);
    until(&load, before_s).await;
    let answered_before = stage.telegram.stats().answer_latencies.len();
    proxy.set(Fault::Blackhole);
    until(&load, before_s + outage_s).await;
    let at_return = stage.telegram.stats();
    proxy.set(Fault::Pass);
    let recovery = super::time_until(Duration::from_secs(30), || async {
        stage.telegram.stats().unanswered == 0
    })
    .await;
    until(&load, before_s + outage_s + after_s).await;
    load.stop_prompting().await;
    let settled = audit::settle(stage, &load, settle_limit(ctx)).await;
    load.finish().await;
    bot.kill().await;
    let end = before_s + outage_s;
    let mut writers: Vec<i64> = load
        .sent_in(before_s, end)
        .iter()
        .map(|(_, u)| *u)
        .collect();
    writers.sort_unstable();
    writers.dedup();
    let unheard = load.users_unheard(before_s, end, |sent_s| end.max(sent_s + HEARD_WITHIN_S));
    Ok(Measured {
        tally: audit::count(stage, &load, &[]).await?,
        window: (before_s, end),
        writers: writers.len() as u64,
        unheard,
        answers_during: at_return
            .answer_latencies
            .len()
            .saturating_sub(answered_before) as u64,
        unanswered_at_return: at_return.unanswered,
        recovery,
        settled,
        load,
    })
}

fn describe_run(ctx: &Context, m: &Measured) -> TestOutcome {
    let mut out = TestOutcome::new(TestId::DatabaseOutage, ctx.lang);
    // Each user who wrote during the outage must have heard something (the bot's "delayed,
    // not lost" notice) rather than silence: judged per user, for updates sent during it.
    let heard = m.unheard.is_empty();
    let in_bound = heard && m.settled.is_some() && m.recovery.is_some_and(|r| r <= RECOVERY_BOUND);
    out.grade = grade(&m.tally, &[], in_bound);
    out.metric("outage_s", m.window.1 - m.window.0)
        .metric("answers_during_outage", m.answers_during as f64)
        .metric("unanswered_when_back", m.unanswered_at_return as f64)
        .metric("users_wrote_during_outage", m.writers as f64)
        .metric("users_unanswered_during_outage", m.unheard.len() as f64);
    if let Some(recovery) = m.recovery {
        out.metric("recovery_s", recovery.as_secs_f64());
    }
    describe(&mut out, ctx, &m.tally, &[]);
    out.fact(ctx.text(
        format!(
            "PostgreSQL blackholed from {:.0} s to {:.0} s of the load; {USERS} users, {PROMPTS_PER_S} prompts/s; recovery = from the database's return until every update is answered: {} (bound {} s, and users who wrote during the outage hear something)",
            m.window.0,
            m.window.1,
            super::seconds(m.recovery, ctx),
            RECOVERY_BOUND.as_secs()
        ),
        format!(
            "PostgreSQL в «чёрной дыре» с {:.0} по {:.0} с нагрузки; {USERS} пользователей, {PROMPTS_PER_S} запросов/с; восстановление = от возврата БД до ответа на каждое обновление: {} (граница {} с, и написавшие во время сбоя получают ответ)",
            m.window.0,
            m.window.1,
            super::seconds(m.recovery, ctx),
            RECOVERY_BOUND.as_secs()
        ),
    ));
    if !m.unheard.is_empty() {
        let users: Vec<String> = m.unheard.iter().take(5).map(i64::to_string).collect();
        out.recommend(ctx.text(
            format!("{} of the {} users who wrote while the database did not answer heard nothing before it returned or within {HEARD_WITHIN_S:.0} s (users {}…): tell users their request is delayed (nothing is lost: unrecorded updates stay with Telegram)", m.unheard.len(), m.writers, users.join(", ")),
            format!("{} из {} пользователей, писавших, пока БД не отвечала, ничего не услышали до её возврата или за {HEARD_WITHIN_S:.0} с (пользователи {}…): сообщайте о задержке (ничего не теряется: незаписанные обновления остаются у Telegram)", m.unheard.len(), m.writers, users.join(", ")),
        ));
    }
    for series in timeline(ctx, &m.load, vec![m.window]) {
        out.series(series);
    }
    out
}
