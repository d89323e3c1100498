//! Running the suites: which tests, in which order, then the readiness score and the forecast.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::checks;
use crate::context::Context;
use crate::grade::{Grade, Lang};
use crate::monitor::{Monitor, Sample};
use crate::outcome::{TestId, TestOutcome};
use crate::readiness::{Criterion, Graded, Readiness};

/// Which tests to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Suite {
    /// DB read, cache, concurrent users, DB write, memory, system limits.
    Performance,
    /// Semaphores, rate limiting, model configuration, cache settings, operation simulation,
    /// queue, memory under load.
    GenerationSettings,
    /// Crash and restart, Redis outage, database outage, Replicate faults, Telegram faults,
    /// replica failover: the bot as real processes, broken on purpose.
    Faults,
    /// All three, then the readiness score and the load forecast.
    All,
}

impl Suite {
    /// The tests this suite runs, in report order.
    pub fn tests(self) -> Vec<TestId> {
        let performance = [
            TestId::DbRead,
            TestId::Cache,
            TestId::ConcurrentUsers,
            TestId::DbWrite,
            TestId::Memory,
            TestId::SystemLimits,
        ];
        let generation = [
            TestId::Semaphores,
            TestId::RateLimiting,
            TestId::ModelConfig,
            TestId::CacheSettings,
            TestId::OperationSimulation,
            TestId::Queue,
            TestId::MemoryUnderLoad,
        ];
        let faults = [
            TestId::CrashRestart,
            TestId::RedisOutage,
            TestId::DatabaseOutage,
            TestId::ReplicateFaults,
            TestId::TelegramFaults,
            TestId::ReplicaFailover,
            TestId::BadInput,
        ];
        match self {
            Suite::Performance => performance.to_vec(),
            Suite::GenerationSettings => generation.to_vec(),
            Suite::Faults => faults.to_vec(),
            Suite::All => performance
                .into_iter()
                .chain(generation)
                .chain(faults)
                .collect(),
        }
    }
}

/// Told about each test as it starts and ends (progress bars, logs).
pub trait Progress: Send + Sync {
    fn started(&self, test: TestId, index: usize, total: usize);
    /// The monitor's newest reading (CPU, memory, pool, logged problems), about once a second
    /// while a test runs.
    fn sampled(&self, sample: &Sample) {
        let _ = sample;
    }
    /// `latest` is the monitor's newest reading (CPU, memory, pool, logged problems).
    fn finished(&self, outcome: &TestOutcome, latest: Option<&Sample>);
}

/// Everything one run found.
#[derive(Debug, Clone, Serialize)]
pub struct SuiteReport {
    pub suite: Suite,
    pub started_at: DateTime<Utc>,
    pub duration_s: f64,
    pub quick: bool,
    pub tests: Vec<TestOutcome>,
    /// The seed's score: six criteria, exactly as the seed defines it.
    pub readiness: Readiness,
    /// The seed's six and fault tolerance.
    pub readiness_extended: Readiness,
    pub forecast: Forecast,
    /// One sample a second for the whole run.
    pub monitoring: Vec<Sample>,
}

/// What the measurements say the bot can carry.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Forecast {
    /// Most simulated users served within the SLO, if measured.
    pub max_concurrent_users: Option<f64>,
    /// Most updates per second served within the SLO, if measured.
    pub max_rps: Option<f64>,
    /// Generations per second the settings allow: min(concurrency ÷ latency, rate limit).
    pub generations_per_s: Option<f64>,
    /// Generations a day at the measured rate.
    pub daily_generation_capacity: Option<f64>,
    /// Users the daily limit is shared by (`--users`: the audience the operator plans for).
    pub planned_users: u32,
    /// Suggested `DAILY_GENERATION_LIMIT` and `MAX_CONCURRENT_GENERATIONS_PER_USER`.
    pub recommended_daily_limit: Option<u32>,
    pub recommended_per_user: Option<u32>,
    /// Named bottlenecks, from the evidence.
    pub bottlenecks: Vec<String>,
    /// Generations per second each part allows, as measured or configured; the lowest binds.
    pub ceilings: Vec<Ceiling>,
    /// Telegram messages (answers, edits, photos) the bot sent per generation, measured by the
    /// fault tests on `genbot serve` with Telegram's pacing.
    pub sends_per_job: Option<f64>,
    /// New users a minute Telegram's send budget sustains for the concurrent-users scenario's
    /// sessions, from the run under the budget (`genbot serve`, or the black-box bot).
    pub users_per_minute: Option<UsersPerMinute>,
}

/// Users a minute Telegram's budget sustains: `sends_per_s` × 60 ÷ `sends_per_user`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsersPerMinute {
    pub users: f64,
    /// `TELEGRAM_SENDS_PER_SECOND`.
    pub sends_per_s: u32,
    /// Messages and edits the bot sent per user session of the scenario as run (answers,
    /// progress, photos, invoices), measured at the Bot API mock.
    pub sends_per_user: f64,
    /// Which limit binds, when the system-limits ramp measured the bot's own
    /// (`max_rps`): `telegram_sends` when the bot answers more updates a second within the SLO
    /// than Telegram takes messages (each answer is at least one message, so the budget, not
    /// the bot's `max_concurrent_users`, sets how many users it serves), `bot` otherwise.
    pub binds: Option<&'static str>,
}

/// One part's ceiling on generations per second.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ceiling {
    /// `bot`, `database`, `replicate_rate`, `generation_slots` or `telegram_sends`.
    pub part: &'static str,
    pub generations_per_s: f64,
    /// Where the figure comes from, in words.
    pub basis: String,
}

impl Forecast {
    /// The part that limits first.
    pub fn binding(&self) -> Option<&Ceiling> {
        self.ceilings
            .iter()
            .min_by(|a, b| a.generations_per_s.total_cmp(&b.generations_per_s))
    }
}

/// Runs `suite` on `ctx`, reporting progress; never fails: a test that cannot run says so in
/// its outcome.
pub async fn run(suite: Suite, ctx: &Context, progress: &dyn Progress) -> SuiteReport {
    let started_at = Utc::now();
    let clock = Instant::now();
    let stop_monitor = CancellationToken::new();
    let monitor = Monitor::start(ctx.target.store.clone(), stop_monitor.clone());
    let tests = suite.tests();
    let total = tests.len();
    let mut outcomes: Vec<TestOutcome> = Vec::with_capacity(total);
    let mut pending_memory_under_load = None;
    for (index, test) in tests.iter().copied().enumerate() {
        progress.started(test, index, total);
        let running = run_one(test, ctx, &mut pending_memory_under_load);
        tokio::pin!(running);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut outcome = loop {
            tokio::select! {
                outcome = &mut running => break outcome,
                _ = tick.tick() => {
                    if let Some(sample) = monitor.latest() {
                        progress.sampled(&sample);
                    }
                }
            }
        };
        // Whatever the test said, a pass that counted nothing is not a pass.
        crate::measured::require_measured(&mut outcome, ctx.lang);
        progress.finished(&outcome, monitor.latest().as_ref());
        outcomes.push(outcome);
    }
    stop_monitor.cancel();
    let graded = graded_criteria(&outcomes, ctx.lang);
    let forecast = forecast(&outcomes, ctx);
    SuiteReport {
        suite,
        started_at,
        duration_s: clock.elapsed().as_secs_f64(),
        quick: ctx.quick,
        tests: outcomes,
        readiness: Readiness::score(&Criterion::SEED, &graded),
        readiness_extended: Readiness::score(&Criterion::EXTENDED, &graded),
        forecast,
        monitoring: monitor.samples(),
    }
}

/// One test; operation simulation also measures memory under load, kept for that test.
async fn run_one(
    test: TestId,
    ctx: &Context,
    pending_memory_under_load: &mut Option<TestOutcome>,
) -> TestOutcome {
    if let Some(bot) = &ctx.blackbox {
        return checks::blackbox::run(test, ctx, bot, pending_memory_under_load).await;
    }
    match test {
        TestId::DbRead => checks::storage::db_read(ctx).await,
        TestId::Cache => checks::storage::cache(ctx).await,
        TestId::DbWrite => checks::storage::db_write(ctx).await,
        TestId::Memory => checks::storage::memory(ctx).await,
        TestId::ConcurrentUsers => checks::concurrent_users::run(ctx).await,
        TestId::SystemLimits => checks::system_limits::run(ctx).await,
        TestId::Semaphores => checks::semaphores::run(ctx).await,
        TestId::RateLimiting => checks::rate_limiting::run(ctx).await,
        TestId::ModelConfig => checks::model_config::run(ctx).await,
        TestId::CacheSettings => checks::cache_settings::run(ctx).await,
        TestId::OperationSimulation => {
            let (sim, memory) = checks::operation_simulation::run(ctx).await;
            *pending_memory_under_load = Some(memory);
            sim
        }
        TestId::MemoryUnderLoad => match pending_memory_under_load.take() {
            Some(memory) => memory,
            None => checks::operation_simulation::run(ctx).await.1,
        },
        TestId::Queue => checks::queue::run(ctx).await,
        TestId::CrashRestart => checks::faults::crash_restart::run(ctx).await,
        TestId::RedisOutage => checks::faults::redis_outage::run(ctx).await,
        TestId::DatabaseOutage => checks::faults::database_outage::run(ctx).await,
        TestId::ReplicateFaults => checks::faults::replicate_faults::run(ctx).await,
        TestId::TelegramFaults => checks::faults::telegram_faults::run(ctx).await,
        TestId::ReplicaFailover => checks::faults::replica_failover::run(ctx).await,
        TestId::BadInput => checks::faults::bad_input::run(ctx).await,
    }
}

fn find(outcomes: &[TestOutcome], id: TestId) -> Option<&TestOutcome> {
    outcomes.iter().find(|o| o.id == id)
}

/// Each criterion the run measured, with its grade (the worst of its graded tests), evidence,
/// and the share of its tests that were graded: a test that ran but did not apply or measured
/// nothing names itself and weighs against the criterion.
fn graded_criteria(outcomes: &[TestOutcome], lang: Lang) -> Vec<Graded> {
    let en = lang == Lang::En;
    let mut graded = Vec::new();
    let mut from = |criterion: Criterion, ids: &[TestId], what: &dyn Fn(&TestOutcome) -> String| {
        let ran: Vec<&TestOutcome> = ids.iter().filter_map(|id| find(outcomes, *id)).collect();
        let found: Vec<&TestOutcome> = ran.iter().copied().filter(|o| o.applies()).collect();
        if found.is_empty() {
            return;
        }
        let grade = found
            .iter()
            .map(|o| o.grade)
            .min()
            .unwrap_or(Grade::NeedsOptimization);
        let missing: Vec<String> = ran
            .iter()
            .filter(|o| !o.applies())
            .map(|o| o.name.clone())
            .collect();
        let mut evidence = found.iter().map(|o| what(o)).collect::<Vec<_>>().join("; ");
        if !missing.is_empty() {
            let _ = write!(
                evidence,
                "; {} {}",
                if en {
                    "not graded (weighed as missing):"
                } else {
                    "без оценки (учтены как отсутствующие):"
                },
                missing.join(", ")
            );
        }
        graded.push(Graded {
            criterion,
            grade,
            evidence,
            missing,
            share: found.len() as f64 / ran.len() as f64,
        });
    };
    let metric =
        |o: &TestOutcome, name: &str| o.get(name).map_or("n/a".to_owned(), |v| format!("{v:.1}"));
    let graded_as = |o: &TestOutcome| format!("{}: {}", o.name, o.grade.word(lang));
    from(Criterion::DbRead, &[TestId::DbRead], &|o| {
        format!("{} RPS", metric(o, "rps"))
    });
    from(Criterion::Cache, &[TestId::Cache], &|o| {
        let rate = o
            .get("hit_rate")
            .map_or("n/a".into(), |v| format!("{:.1} %", v * 100.0));
        if en {
            format!("hit rate {rate}")
        } else {
            format!("доля попаданий {rate}")
        }
    });
    from(
        Criterion::StabilityUnderLoad,
        &[TestId::ConcurrentUsers, TestId::OperationSimulation],
        &graded_as,
    );
    from(
        Criterion::Memory,
        &[TestId::Memory, TestId::MemoryUnderLoad],
        &|o| {
            let growth = metric(o, "growth_mb");
            if en {
                format!("{}: +{growth} MB", o.name)
            } else {
                format!("{}: +{growth} МБ", o.name)
            }
        },
    );
    from(
        Criterion::GenerationSettings,
        &[
            TestId::Semaphores,
            TestId::RateLimiting,
            TestId::ModelConfig,
            TestId::CacheSettings,
            TestId::Queue,
        ],
        &graded_as,
    );
    from(
        Criterion::NoBottlenecks,
        &[TestId::SystemLimits],
        &graded_as,
    );
    from(
        Criterion::FaultTolerance,
        &Suite::Faults.tests(),
        &graded_as,
    );
    graded
}

fn forecast(outcomes: &[TestOutcome], ctx: &Context) -> Forecast {
    let mut forecast = Forecast::default();
    if let Some(sim) = find(outcomes, TestId::OperationSimulation) {
        forecast.generations_per_s = sim.get("throughput_per_s");
    }
    if let Some(limits) = find(outcomes, TestId::SystemLimits) {
        forecast.max_concurrent_users = limits.get("max_users");
        forecast.max_rps = limits.get("max_rps");
    }
    forecast.planned_users = ctx.users.max(1);
    if let Some(per_s) = forecast.generations_per_s {
        // A day's measured generation capacity shared by the users the operator plans for
        // (`--users`), each of whom might use their whole limit: a starting point, stated as
        // such in the report.
        let daily_capacity = per_s * 86_400.0;
        forecast.daily_generation_capacity = Some(daily_capacity);
        forecast.recommended_daily_limit = Some(
            ((daily_capacity / f64::from(forecast.planned_users)).floor() as u32).clamp(1, 1_000),
        );
        // At most a fifth of the slots per user, so five users can always generate at once.
        forecast.recommended_per_user = claimed(
            ctx,
            |l| l.max_concurrent_generations,
            |s| s.max_concurrent_generations,
        )
        .map(|slots| (slots / 5).clamp(1, 5));
    }
    for outcome in outcomes {
        if outcome.applies() && outcome.grade.is_failure() {
            forecast
                .bottlenecks
                .push(format!("{} ({:?})", outcome.name, outcome.grade));
        }
    }
    forecast.sends_per_job = Suite::Faults
        .tests()
        .into_iter()
        .filter_map(|id| find(outcomes, id))
        .find_map(|o| o.get("sends_per_job"));
    forecast.ceilings = ceilings(outcomes, ctx, forecast.sends_per_job);
    forecast.users_per_minute = users_per_minute(
        outcomes,
        ctx.settings.telegram_sends_per_sec,
        forecast.max_rps,
    );
    forecast
}

/// Users a minute the send budget sustains, from the concurrent-users run under the budget:
/// `genbot serve`'s figures on the embedded default, the black-box bot's otherwise.
fn users_per_minute(
    outcomes: &[TestOutcome],
    sends_per_s: u32,
    max_rps: Option<f64>,
) -> Option<UsersPerMinute> {
    let test = find(outcomes, TestId::ConcurrentUsers).filter(|o| o.applies())?;
    let served = format!("{}sends_per_user", checks::served_users::PREFIX);
    let sends_per_user = test
        .get(&served)
        .or_else(|| test.get("sends_per_user"))
        .filter(|s| *s > 0.0)?;
    Some(UsersPerMinute {
        users: f64::from(sends_per_s) * 60.0 / sends_per_user,
        sends_per_s,
        sends_per_user,
        binds: max_rps.filter(|r| r.is_finite()).map(|rps| {
            if rps > f64::from(sends_per_s) {
                "telegram_sends"
            } else {
                "bot"
            }
        }),
    })
}

/// A limit of the bot under test: the scenario's claim for a black-box bot (none if it claims
/// none), genbot's setting otherwise.
fn claimed(
    ctx: &Context,
    from_scenario: impl Fn(&crate::blackbox::scenario::ClaimedLimits) -> Option<u32>,
    from_settings: impl Fn(&genbot_config::Settings) -> u32,
) -> Option<u32> {
    match &ctx.blackbox {
        Some(bot) => from_scenario(&bot.scenario.limits),
        None => Some(from_settings(&ctx.settings)),
    }
}

/// Generations per second each part allows, from the measurements and the settings.
fn ceilings(outcomes: &[TestOutcome], ctx: &Context, sends_per_job: Option<f64>) -> Vec<Ceiling> {
    let mut ceilings = Vec::new();
    if let Some(per_min) = claimed(
        ctx,
        |l| l.replicate_rate_limit,
        |s| s.replicate_rate_limit_per_min,
    ) {
        let per_min = f64::from(per_min);
        ceilings.push(Ceiling {
            part: "replicate_rate",
            generations_per_s: per_min / 60.0,
            basis: ctx.text(
                format!("REPLICATE_RATE_LIMIT {per_min:.0}/min"),
                format!("REPLICATE_RATE_LIMIT {per_min:.0}/мин"),
            ),
        });
    }
    if let Some(per_s) =
        find(outcomes, TestId::OperationSimulation).and_then(|o| o.get("theoretical_per_s"))
    {
        ceilings.push(Ceiling {
            part: "generation_slots",
            generations_per_s: per_s,
            basis: ctx.text(
                "MAX_CONCURRENT_GENERATIONS ÷ prediction latency (operation simulation's bound)",
                "MAX_CONCURRENT_GENERATIONS ÷ время генерации (граница симуляции операций)",
            ),
        });
    }
    if let Some(knee) = find(outcomes, TestId::SystemLimits).and_then(|o| o.get("max_rps")) {
        ceilings.push(Ceiling {
            part: "bot",
            generations_per_s: knee,
            basis: ctx.text(
                "the bot's measured knee (updates/s within the SLO; one prompt per generation)",
                "измеренный предел бота (обновлений/с в пределах SLO; один запрос на генерацию)",
            ),
        });
    }
    if let Some(inserts) = find(outcomes, TestId::DbWrite).and_then(|o| o.get("job_insert_rps")) {
        ceilings.push(Ceiling {
            part: "database",
            generations_per_s: inserts,
            basis: ctx.text(
                "jobs the database accepted per second (DB write test)",
                "заданий в секунду, принятых БД (тест записи)",
            ),
        });
    }
    if let Some(sends) = sends_per_job.filter(|s| *s > 0.0) {
        let budget = f64::from(ctx.settings.telegram_sends_per_sec);
        ceilings.push(Ceiling {
            part: "telegram_sends",
            generations_per_s: budget / sends,
            basis: ctx.text(
                format!("Telegram's {budget:.0} messages/s ÷ {sends:.2} messages per generation (measured)"),
                format!("{budget:.0} сообщений/с Telegram ÷ {sends:.2} сообщения на генерацию (измерено)"),
            ),
        });
    }
    ceilings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_a_minute_follow_from_the_messages_a_session_cost_under_the_budget() {
        // `genbot serve`'s figure on the embedded default: 30 a second × 60 ÷ 12 a session.
        let mut served = TestOutcome::new(TestId::ConcurrentUsers, Lang::En);
        served.metric("serve_sends_per_user", 12.0);
        let f = users_per_minute(&[served], 30, None).expect("measured");
        assert!((f.users - 150.0).abs() < 1e-9, "{f:?}");
        assert_eq!(f.binds, None, "no ramp measured: nothing to compare");
        assert_eq!((f.sends_per_s, f.sends_per_user), (30, 12.0));
        let forecast = Forecast {
            users_per_minute: Some(f),
            ..Forecast::default()
        };
        let (name, value) =
            crate::report::users_per_minute_row(&forecast, Lang::En).expect("a row");
        assert_eq!(name, "users per minute Telegram's budget sustains");
        assert!(value.starts_with("150 "), "{value}");
        assert!(value.contains("30 × 60 ÷ 12 messages"), "{value}");
        // A black-box bot's own run under the budget.
        let mut black_box = TestOutcome::new(TestId::ConcurrentUsers, Lang::En);
        black_box.metric("sends_per_user", 9.0);
        let f = users_per_minute(&[black_box], 30, None).expect("measured");
        assert!((f.users - 200.0).abs() < 1e-9, "{f:?}");
        // Nothing sent under the budget (the in-process crowd alone): nothing to state.
        let capacity_only = TestOutcome::new(TestId::ConcurrentUsers, Lang::En);
        assert_eq!(users_per_minute(&[capacity_only], 30, None), None);
    }

    #[test]
    fn the_forecast_says_which_limit_binds_the_users_served() {
        let mut served = TestOutcome::new(TestId::ConcurrentUsers, Lang::En);
        served.metric("serve_sends_per_user", 8.0);
        // The bot answers 1600 updates/s (8000 users at one update per 5 s); Telegram takes 30
        // messages/s: the budget binds.
        let f =
            users_per_minute(std::slice::from_ref(&served), 30, Some(1600.0)).expect("measured");
        assert_eq!(f.binds, Some("telegram_sends"));
        let forecast = Forecast {
            users_per_minute: Some(f),
            max_rps: Some(1600.0),
            max_concurrent_users: Some(8000.0),
            ..Forecast::default()
        };
        let (_, value) = crate::report::users_per_minute_row(&forecast, Lang::En).expect("a row");
        assert!(
            value.contains("Telegram's send budget binds, not the bot")
                && value.contains("8000 concurrent users"),
            "{value}"
        );
        // A bot slower than the budget binds itself.
        let f = users_per_minute(&[served], 30, Some(12.0)).expect("measured");
        assert_eq!(f.binds, Some("bot"));
    }

    #[test]
    fn a_criterion_with_tests_not_applicable_does_not_read_full() {
        // Seen: fault tolerance 100 % with three of its six tests not applicable.
        let mut outcomes = Vec::new();
        for id in Suite::Faults.tests() {
            let outcome = match id {
                TestId::RedisOutage | TestId::DatabaseOutage | TestId::ReplicaFailover => {
                    TestOutcome::not_applicable(id, Lang::En, "not here")
                }
                _ => {
                    let mut o = TestOutcome::new(id, Lang::En);
                    o.grade = Grade::Excellent;
                    o
                }
            };
            outcomes.push(outcome);
        }
        let scored = Readiness::score(&Criterion::EXTENDED, &graded_criteria(&outcomes, Lang::En));
        let fault = scored
            .criteria
            .iter()
            .find(|c| c.criterion == Criterion::FaultTolerance)
            .expect("fault tolerance");
        // Four of its seven tests graded (bad_input applies everywhere).
        assert!((fault.points - 4.0 / 7.0).abs() < 1e-9, "{fault:?}");
        assert_eq!(scored.percent, Some(57.1));
        assert!(
            fault.evidence.contains("Redis outage"),
            "{}",
            fault.evidence
        );
    }
}
