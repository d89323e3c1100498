//! The seed's tests against a black-box bot ([`crate::blackbox::BlackBox`]): everything is
//! measured from outside — the answers and photos at the Bot API mock, the predictions at the
//! Replicate mock, the RSS and CPU of the bot's process group. Tests that need the bot's
//! internals (DB read and write, cache, cache settings) do not apply (with `--database-url`
//! they would measure genbot's own queries, not the bot's); the fault tests start
//! `genbot serve` themselves, so they do not apply to another bot either.

mod generation;
mod load;
mod queue;
pub(crate) mod sessions;
mod system_limits;

use std::time::{Duration, Instant};

use genbot_mocks::telegram::{Entry, SimUser};

use crate::blackbox::scenario::Generation;
use crate::blackbox::BlackBox;
use crate::context::Context;
use crate::grade::Grade;
use crate::outcome::{TestId, TestOutcome};

/// Runs `test` against the black-box bot. Operation simulation also measures memory under
/// load, kept in `pending_memory_under_load` for that test.
pub async fn run(
    test: TestId,
    ctx: &Context,
    bot: &BlackBox,
    pending_memory_under_load: &mut Option<TestOutcome>,
) -> TestOutcome {
    if let Some((status, log)) = bot.crashed().await {
        let mut out = TestOutcome::new(test, ctx.lang);
        out.fact(ctx.text(
            format!("could not run: the bot's process exited ({status}); its last output: {log}"),
            format!("не запущен: процесс бота завершился ({status}); последний вывод: {log}"),
        ));
        out.grade = Grade::NeedsOptimization;
        return out;
    }
    let telegram_before = bot.telegram.stats();
    let mut out = run_test(test, ctx, bot, pending_memory_under_load).await;
    if out.applies() {
        // The mock is shared by every test: each reports the refusals of its own run.
        out.telegram_since(&telegram_before, &bot.telegram.stats());
        out.cap_for_refusals(ctx.lang);
    }
    out
}

async fn run_test(
    test: TestId,
    ctx: &Context,
    bot: &BlackBox,
    pending_memory_under_load: &mut Option<TestOutcome>,
) -> TestOutcome {
    match test {
        // With --database-url these would time genbot's own queries and cache on that
        // database, not the bot's: a grade for something the bot does not run. The suite
        // cannot see inside a black-box bot, so they do not apply.
        TestId::DbRead | TestId::Cache | TestId::DbWrite | TestId::CacheSettings => {
            TestOutcome::not_applicable(test, ctx.lang, ctx.text(
                "not applicable to a black-box bot: the suite sees it only from outside, and with --database-url it would time genbot's own queries and cache on that database, not this bot's",
                "не применимо к внешнему боту: набор видит его только снаружи, а с --database-url измерял бы собственные запросы и кэш genbot на этой базе, а не бота",
            ))
        }
        TestId::ConcurrentUsers => sessions::concurrent_users(ctx, bot).await,
        TestId::SystemLimits => system_limits::run(ctx, bot).await,
        TestId::Semaphores => generation::semaphores(ctx, bot).await,
        TestId::RateLimiting => generation::rate_limiting(ctx, bot).await,
        TestId::ModelConfig => generation::model_config(ctx, bot).await,
        TestId::Queue => queue::run(ctx, bot).await,
        TestId::Memory => load::memory(ctx, bot).await,
        TestId::OperationSimulation => {
            let (simulation, memory) = load::operation_simulation(ctx, bot).await;
            *pending_memory_under_load = Some(memory);
            simulation
        }
        TestId::MemoryUnderLoad => match pending_memory_under_load.take() {
            Some(memory) => memory,
            None => load::operation_simulation(ctx, bot).await.1,
        },
        TestId::BadInput => crate::checks::faults::bad_input::run_blackbox(ctx, bot).await,
        TestId::CrashRestart
        | TestId::RedisOutage
        | TestId::DatabaseOutage
        | TestId::ReplicateFaults
        | TestId::TelegramFaults
        | TestId::ReplicaFailover => TestOutcome::not_applicable(
            test,
            ctx.lang,
            ctx.text(
                "not run black-box: the fault tests start `genbot serve` replicas themselves and cut their database and Redis",
                "не запускается для внешнего бота: тесты отказов сами запускают реплики `genbot serve` и обрывают их базу и Redis",
            ),
        ),
    }
}

/// The scenario's generation message, or the outcome that says why `test` did not run.
fn generation_of(
    test: TestId,
    ctx: &Context,
    bot: &BlackBox,
) -> Result<Generation, Box<TestOutcome>> {
    bot.scenario.generation.clone().ok_or_else(|| {
        Box::new(TestOutcome::not_applicable(
            test,
            ctx.lang,
            ctx.text(
                "not measured: the scenario has no message that makes an image (add [generation] send = \"…\", or a step expecting a photo)",
                "не измерялось: в сценарии нет сообщения, создающего изображение (добавьте [generation] send = \"…\" или шаг, ожидающий фото)",
            ),
        ))
    })
}

/// A limit the scenario must claim for `test` to check it, or the outcome that says so.
fn claimed(
    test: TestId,
    ctx: &Context,
    name: &str,
    value: Option<u32>,
) -> Result<u32, Box<TestOutcome>> {
    value.ok_or_else(|| {
        Box::new(TestOutcome::not_applicable(
            test,
            ctx.lang,
            ctx.text(
                format!("not measured: the scenario claims no {name}; add it under [limits] to have it checked from outside"),
                format!("не измерялось: сценарий не заявляет {name}; добавьте его в [limits], чтобы проверить снаружи"),
            ),
        ))
    })
}

/// Photos in a transcript.
fn photos(transcript: &[Entry]) -> usize {
    transcript
        .iter()
        .filter(|e| matches!(e, Entry::BotPhoto { .. }))
        .count()
}

/// What a batch of prompts came to.
#[derive(Debug, Clone, Default)]
struct Delivered {
    prompts: usize,
    photos: usize,
    /// Users with fewer photos than prompts: (user, missing).
    short: Vec<(i64, usize)>,
    /// Photos beyond the prompts (a generation delivered twice).
    extra: usize,
    elapsed: Duration,
}

/// Each user sends `per_user` generation prompts at once (numbered from `first`); waits until
/// each has that many more photos or `patience` passes, then a short settle for extras.
async fn prompt_and_collect(
    users: &[SimUser],
    generation: &Generation,
    per_user: u32,
    first: u64,
    patience: Duration,
) -> Delivered {
    let started = Instant::now();
    let before: Vec<usize> = users.iter().map(|u| photos(&u.transcript())).collect();
    for n in 0..u64::from(per_user) {
        for user in users {
            user.send_text(&generation.prompt(user.id(), first + n));
        }
    }
    collect(users, &before, per_user as usize, started, patience).await
}

/// Waits until each user has `per_user` photos more than `before`, or `patience` passes.
async fn collect(
    users: &[SimUser],
    before: &[usize],
    per_user: usize,
    started: Instant,
    patience: Duration,
) -> Delivered {
    let deadline = started + patience;
    let waits = users.iter().zip(before).map(|(user, before)| {
        let wanted = before + per_user;
        let remaining = deadline.saturating_duration_since(Instant::now());
        async move { user.wait_for(remaining, |t| photos(t) >= wanted).await }
    });
    futures_util::future::join_all(waits).await;
    let elapsed = started.elapsed();
    // A generation delivered twice shows up a little after the last one.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut delivered = Delivered {
        prompts: users.len() * per_user,
        elapsed,
        ..Delivered::default()
    };
    for (user, before) in users.iter().zip(before) {
        let got = photos(&user.transcript()) - before;
        delivered.photos += got.min(per_user);
        delivered.extra += got.saturating_sub(per_user);
        if got < per_user {
            delivered.short.push((user.id(), per_user - got));
        }
    }
    delivered
}

impl Delivered {
    fn missing(&self) -> usize {
        self.prompts - self.photos
    }

    /// "3 of 30 prompts got no photo (users 1000004: 2, 1000007: 1)", or `None` if all did.
    fn describe_missing(&self, en: bool) -> Option<String> {
        if self.missing() == 0 {
            return None;
        }
        let users = self
            .short
            .iter()
            .take(5)
            .map(|(user, n)| format!("{user}: {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        Some(if en {
            format!(
                "{} of {} prompts got no photo within {:.0} s (users {users})",
                self.missing(),
                self.prompts,
                self.elapsed.as_secs_f64()
            )
        } else {
            format!(
                "{} из {} запросов остались без фото за {:.0} с (пользователи {users})",
                self.missing(),
                self.prompts,
                self.elapsed.as_secs_f64()
            )
        })
    }
}
