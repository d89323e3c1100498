//! What users see: the concurrent-users crowd on `genbot serve` as a child process — this very
//! binary, started as the fault tests start it, on their stage (both mocks, the Bot API mock
//! enforcing Telegram's flood control, a temporary SQLite file, the in-process cache) — walking
//! genbot's default black-box scenario and graded against the floor Telegram's budget imposes,
//! by the black-box test's own measurement ([`crate::checks::blackbox::sessions::crowd`]).
//!
//! On the embedded default the concurrent-users test reports these figures (`serve_*`) beside
//! its in-process ones, which are capacity without Telegram's send budget.

use genbot_config::{Key, Settings};

use crate::blackbox::Scenario;
use crate::checks::blackbox::sessions::crowd;
use crate::checks::faults::could_not_run;
use crate::context::Context;
use crate::faults::stage::{Stage, StageSpec};
use crate::faults::FaultError;
use crate::grade::Grade;
use crate::outcome::{TestId, TestOutcome};
use crate::target::TEST_IDS;

/// What the concurrent-users test's figures from `genbot serve` start with
/// (`concurrent_users.serve_p99_ms`); the rest of the name is the black-box test's.
pub const PREFIX: &str = "serve_";

/// The crowd: the default black-box run's 100 users, never more than `--users`. A crowd
/// arriving at 200 a second already puts Telegram's floor at seconds; more users measure the
/// budget, not the bot.
const USERS: u32 = 100;
/// With `--quick`: 25 users still outrun Telegram's burst (a floor of about 0.6 s) and walk
/// the scenario in about 10 s (50 took 14 s: their prompts wait for `REPLICATE_RATE_LIMIT`),
/// which keeps `bench all --quick` near its 90 s.
const QUICK_USERS: u32 = 25;

/// How the report names these figures.
pub(crate) fn label(ctx: &Context) -> String {
    ctx.text(
        "what users see (genbot serve, Telegram's budget)",
        "что видят пользователи (genbot serve, бюджет Telegram)",
    )
}

/// The crowd on `genbot serve`, or `None` where it is not run: a black-box bot (measured so
/// already), a deployment's database (`--database-url`: not the embedded default), or no
/// `genbot` binary to start.
pub(crate) async fn measure(ctx: &Context) -> Option<TestOutcome> {
    if ctx.blackbox.is_some() || ctx.database_url.is_some() {
        return None;
    }
    let program = ctx.bot_program.clone()?;
    let users = ctx
        .users
        .clamp(1, if ctx.quick { QUICK_USERS } else { USERS });
    let spec = StageSpec {
        env: serve_env(&ctx.settings),
        ..StageSpec::default()
    };
    let stage = match Stage::open(ctx, program, spec).await {
        Ok(stage) => stage,
        Err(e) => return Some(could_not_run(TestId::ConcurrentUsers, ctx, &e)),
    };
    let measured = on_stage(ctx, &stage, users).await;
    stage.close().await;
    Some(measured.unwrap_or_else(|e| could_not_run(TestId::ConcurrentUsers, ctx, &e)))
}

async fn on_stage(ctx: &Context, stage: &Stage, users: u32) -> Result<TestOutcome, FaultError> {
    let mut bot = stage.replica("serve")?;
    bot.start().await?;
    let scenario = Scenario::genbot(&ctx.settings);
    let crowd_users = (0..i64::from(users))
        .map(|n| stage.telegram.user(TEST_IDS.start + n, "Sim", None))
        .collect();
    let before = stage.telegram.stats();
    let mut out = crowd(ctx, &stage.telegram, &scenario, crowd_users).await;
    out.telegram_since(&before, &stage.telegram.stats());
    out.cap_for_refusals(ctx.lang);
    if let Some(status) = bot.exited() {
        out.grade = Grade::NeedsOptimization;
        out.recommend(ctx.text(
            format!(
                "`genbot serve` exited during the run ({status}); its log ends: {}",
                bot.log_tail(5)
            ),
            format!(
                "`genbot serve` завершился во время запуска ({status}); конец его журнала: {}",
                bot.log_tail(5)
            ),
        ));
    }
    bot.kill().await;
    out.fact(ctx.text(
        format!("`genbot serve` as a child process on {}, the in-process cache and both mocks; the Bot API mock enforces Telegram's flood control; settings as configured (TELEGRAM_SENDS_PER_SECOND={}), a user's daily and queue limits lifted", stage.database_label, ctx.settings.telegram_sends_per_sec),
        format!("`genbot serve` дочерним процессом на {}, кэш в процессе и оба мока; мок Bot API соблюдает контроль флуда Telegram; настройки как заданы (TELEGRAM_SENDS_PER_SECOND={}), дневной лимит и лимит очереди сняты", stage.database_label, ctx.settings.telegram_sends_per_sec),
    ));
    Ok(out)
}

/// The settings under test the child gets beyond the stage's own (mocks, database, the
/// lifted per-user limits): what shapes the answers a crowd sees.
fn serve_env(settings: &Settings) -> Vec<(&'static str, String)> {
    let mut env = vec![
        (
            Key::TelegramSendsPerSecond.name(),
            settings.telegram_sends_per_sec.to_string(),
        ),
        (
            Key::CacheTtlSeconds.name(),
            settings.cache_ttl.as_secs().to_string(),
        ),
        (
            Key::CacheMaxEntries.name(),
            settings.cache_max_entries.to_string(),
        ),
        (Key::DbPoolSize.name(), settings.db_pool_size.to_string()),
        (
            Key::GenerationTimeoutSeconds.name(),
            settings.generation_timeout.as_secs().to_string(),
        ),
        // The stage's short lease is for the fault tests' take-overs; here the configured one.
        (
            Key::JobLeaseSeconds.name(),
            settings.job_lease.as_secs().to_string(),
        ),
        (
            Key::JobHeartbeatSeconds.name(),
            settings.job_heartbeat.as_secs().to_string(),
        ),
    ];
    // The scenario buys what the settings sell; the child must sell the same.
    if !settings.stars_packages.is_empty() {
        let packages = settings
            .stars_packages
            .iter()
            .map(|p| format!("{}:{}", p.credits, p.stars))
            .collect::<Vec<_>>()
            .join(",");
        env.push((Key::StarsPackages.name(), packages));
    }
    env
}

/// Adds the figures from `genbot serve` to the concurrent-users test's in-process ones, each
/// labelled: metrics as `serve_*`, facts, recommendations and charts under [`label`]. The test
/// is graded the lower of the two: users see the bot under the budget.
pub(crate) fn merge(ctx: &Context, out: &mut TestOutcome, served: TestOutcome) {
    let label = label(ctx);
    let own = format!("{}.", TestId::ConcurrentUsers.as_str());
    for (name, value) in &served.metrics {
        let short = name.strip_prefix(&own).unwrap_or(name);
        out.metric(&format!("{PREFIX}{short}"), *value);
    }
    for fact in served.facts {
        out.fact(format!("{label}: {fact}"));
    }
    for recommendation in served.recommendations {
        out.recommend(format!("{label}: {recommendation}"));
    }
    for mut series in served.series {
        series.id = format!("{PREFIX}{}", series.id);
        series.title = format!("{} — {label}", series.title);
        out.series(series);
    }
    out.telegram_refused.extend(served.telegram_refused);
    out.telegram_throttled += served.telegram_throttled;
    out.fact(ctx.text(
        format!(
            "graded the lower of capacity without Telegram's send budget ({}) and {label} ({})",
            out.grade.word(ctx.lang),
            served.grade.word(ctx.lang)
        ),
        format!(
            "оценка — меньшая из пропускной способности без бюджета отправки Telegram ({}) и того, {label} ({})",
            out.grade.word(ctx.lang),
            served.grade.word(ctx.lang)
        ),
    ));
    out.grade = out.grade.min(served.grade);
}
