//! `genbot bench …`: the readiness suite from the command line.
//!
//! The steps, in order: read the arguments into a [`Plan`], open the target, seed the test
//! users, run the suite (stopping cleanly on Ctrl-C), remove the test users, write the reports,
//! print the summary and decide the exit code.

use std::panic::AssertUnwindSafe;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use futures_util::FutureExt as _;
use genbot_bench::context::Context;
use genbot_bench::grade::{Lang, Thresholds};
use genbot_bench::report::{self, Environment};
use genbot_bench::suite::{self, Suite, SuiteReport};
use genbot_bench::target::{Target, TargetError};
use genbot_config::{DatabaseUrl, RedactedUrl, Settings};

mod blackbox;
mod compare;
mod progress;

use progress::{Display, Terminal};

use crate::cli::{BenchArgs, BenchCommand, BenchSuite, ReportFormat, ReportLang};
use crate::UsageError;

/// Exit code when readiness is below `--fail-under`.
const EXIT_BELOW_FAIL_UNDER: u8 = 1;
/// Exit code when the target cannot be reached.
const EXIT_UNREACHABLE: u8 = 3;
/// Exit code after Ctrl-C (128 + SIGINT, as shells report it).
const EXIT_INTERRUPTED: u8 = 130;

/// The run the arguments ask for, validated.
struct Plan {
    suite: Suite,
    /// `--bot-cmd` or `--attach`: another bot, measured from outside.
    black_box: bool,
    lang: Lang,
    thresholds: Thresholds,
    database: Option<DatabaseUrl>,
    redis: Option<RedactedUrl>,
    quick: bool,
    duration: Duration,
    seed_count: u32,
}

pub(crate) async fn run(settings: Settings, args: BenchArgs) -> anyhow::Result<ExitCode> {
    if let Some(BenchCommand::Compare(compare)) = &args.command {
        return compare::run(compare);
    }
    let plan = plan(&settings, &args)?;
    report::prepare(&args.out).map_err(|e| UsageError(e.to_string()))?;
    let blackbox = match blackbox::open(&settings, &plan, &args).await {
        Ok(blackbox) => blackbox,
        Err(blackbox::OpenError::Scenario(e)) => return Err(UsageError(e.to_string()).into()),
        Err(e) => {
            eprintln!("genbot: {e}");
            return Ok(ExitCode::from(EXIT_UNREACHABLE));
        }
    };
    let target = match open_target(&settings, &plan).await? {
        Ok(target) => target,
        Err(code) => return Ok(code),
    };
    let mut env = environment(&settings, &args, &plan, &target);
    if let Some(bot) = &blackbox {
        blackbox::describe_in(&mut env, bot, &plan);
    }
    // From here on test users may exist: Ctrl-C or SIGTERM must not kill the process before
    // they go.
    let interrupted = crate::commands::mock::shutdown_signal();
    tokio::pin!(interrupted);
    let seeded = tokio::select! {
        seeded = target.seed_users(plan.seed_count) => seeded,
        _ = &mut interrupted => return Ok(stop_interrupted(&target).await),
    };
    let seeded = match seeded {
        Ok(seeded) => seeded,
        Err(e) => {
            // Some users may have been created before the failure.
            let _ = target.cleanup().await;
            return Err(anyhow::Error::new(e).context("Failed to create test users"));
        }
    };
    let ctx = context(settings, &args, &plan, target, seeded, blackbox);
    let progress = Terminal::new(
        Display::detect(args.quiet),
        plan.lang,
        plan.suite.tests().len(),
    );
    // A test that panics (a bug) must not leave test users behind either.
    let run = AssertUnwindSafe(suite::run(plan.suite, &ctx, &progress)).catch_unwind();
    let outcome = tokio::select! {
        report = run => Some(report),
        _ = &mut interrupted => None,
    };
    let Some(report) = outcome else {
        return Ok(stop_interrupted(&ctx.target).await);
    };
    // Test users go, whatever the grades.
    ctx.target
        .cleanup()
        .await
        .context("Failed to remove the test users; run the suite's cleanup again")?;
    let report = report.map_err(|_| {
        anyhow::anyhow!("a test crashed (its message is above); the test users were removed")
    })?;
    if let Some(bot) = &ctx.blackbox {
        blackbox::stop_and_record(bot, &mut env, plan.lang).await;
    }
    let written = write_reports(&args, &report, &env, plan.lang)?;
    if !args.quiet {
        progress.summary(&report.tests);
        print_scores(&report, plan.lang);
        eprintln!(
            "done in {:.1} s; reports: {}",
            report.duration_s,
            written
                .files
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(exit_code(&report, args.fail_under))
}

/// Reads and checks the arguments (a bad one is a usage error, before anything runs).
fn plan(settings: &Settings, args: &BenchArgs) -> anyhow::Result<Plan> {
    if args.live_replicate && settings.replicate_api_token.is_none() {
        return Err(UsageError(format!(
            "--live-replicate needs REPLICATE_API_TOKEN (it sends {} real, billed generations to {})",
            genbot_bench::checks::live_replicate::sample_size(args.quick),
            settings.replicate_api_url
        ))
        .into());
    }
    let thresholds = match &args.thresholds {
        Some(path) => Thresholds::load(path).map_err(|e| UsageError(e.to_string()))?,
        None => Thresholds::default(),
    };
    let database = args
        .database_url
        .as_deref()
        .map(|text| {
            DatabaseUrl::parse(text)
                .map_err(|allowed| UsageError(format!("invalid --database-url: {allowed}")))
        })
        .transpose()?;
    let redis = match args.redis_url.as_deref() {
        Some(text) => Some(RedactedUrl::new(text.parse().map_err(|_| {
            UsageError("invalid --redis-url: expected redis://HOST[:PORT]".into())
        })?)),
        None => settings.redis_url.clone(),
    };
    let quick = args.quick;
    let Some(suite) = args.suite else {
        return Err(UsageError(
            "name a suite (performance, generation-settings, faults, all) or `compare`".into(),
        )
        .into());
    };
    let black_box = args.bot_cmd.is_some() || args.attach;
    if args.scenario.is_some() && !black_box {
        return Err(UsageError(
            "--scenario describes another bot's conversation: give it with --bot-cmd or --attach"
                .into(),
        )
        .into());
    }
    if args.bot_cmd.as_deref().is_some_and(|c| c.trim().is_empty()) {
        return Err(
            UsageError("--bot-cmd is empty: give the command that starts the bot".into()).into(),
        );
    }
    Ok(Plan {
        suite: match suite {
            BenchSuite::Performance => Suite::Performance,
            BenchSuite::GenerationSettings => Suite::GenerationSettings,
            BenchSuite::Faults => Suite::Faults,
            BenchSuite::All => Suite::All,
        },
        black_box,
        lang: match args.lang {
            ReportLang::En => Lang::En,
            ReportLang::Ru => Lang::Ru,
        },
        thresholds,
        database,
        redis,
        quick,
        duration: Duration::from_secs(args.duration.unwrap_or(if quick { 2 } else { 10 })),
        // A black-box bot has its own users; the suite's target only seeds when it measures
        // a database (--database-url).
        seed_count: match (black_box, args.database_url.is_some(), quick) {
            (true, false, _) => 0,
            (_, _, true) => 10_000,
            (_, _, false) => 50_000,
        },
    })
}

/// The embedded default or the deployment's database; `Err(exit code)` when unreachable.
async fn open_target(settings: &Settings, plan: &Plan) -> anyhow::Result<Result<Target, ExitCode>> {
    let target = match &plan.database {
        None => {
            Target::embedded(
                plan.redis.as_ref(),
                settings.cache_ttl,
                settings.cache_max_entries,
                settings.db_pool_size,
            )
            .await
        }
        Some(url) => {
            Target::deployment(
                url,
                plan.redis.as_ref(),
                settings.cache_ttl,
                settings.cache_max_entries,
                settings.db_pool_size,
            )
            .await
        }
    };
    match target {
        Ok(target) => Ok(Ok(target)),
        Err(e @ TargetError::RangeInUse(_)) => Err(UsageError(e.to_string()).into()),
        Err(e) => {
            eprintln!("genbot: {e}");
            Ok(Err(ExitCode::from(EXIT_UNREACHABLE)))
        }
    }
}

/// What the report header says the run ran on.
fn environment(settings: &Settings, args: &BenchArgs, plan: &Plan, target: &Target) -> Environment {
    let (in_process, redis_word) = match plan.lang {
        Lang::En => ("in-process (moka)", "redis"),
        Lang::Ru => ("в процессе (moka)", "redis"),
    };
    Environment {
        db: if target.is_embedded() && plan.lang == Lang::Ru {
            "встроенная SQLite (временный файл)".to_owned()
        } else {
            target.database.clone()
        },
        cache: plan.redis.as_ref().map_or_else(
            || in_process.to_owned(),
            |url| format!("{redis_word} {url}"),
        ),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        replicate: match (args.live_replicate, plan.lang) {
            (true, Lang::En) => format!(
                "in-process mock for load; {} live generations at {}",
                genbot_bench::checks::live_replicate::sample_size(plan.quick),
                settings.replicate_api_url
            ),
            (true, Lang::Ru) => format!(
                "мок в процессе для нагрузки; {} живых генераций на {}",
                genbot_bench::checks::live_replicate::sample_size(plan.quick),
                settings.replicate_api_url
            ),
            (false, Lang::En) => "in-process mock".into(),
            (false, Lang::Ru) => "мок в процессе".into(),
        },
        version: env!("CARGO_PKG_VERSION").into(),
        bot: None,
    }
}

/// Everything the checks share.
fn context(
    mut settings: Settings,
    args: &BenchArgs,
    plan: &Plan,
    target: Target,
    seeded: std::ops::Range<i64>,
    blackbox: Option<genbot_bench::blackbox::BlackBox>,
) -> Context {
    // The settings under test name the Redis the run actually uses (--redis-url wins).
    settings.redis_url = plan.redis.clone();
    let replicate_webhooks = args.replicate_webhooks || settings.replicate_webhook_url.is_some();
    Context {
        settings,
        thresholds: plan.thresholds,
        lang: plan.lang,
        quick: plan.quick,
        // A black-box bot paces its sends as Telegram requires (about 30 a second): a crowd
        // of thousands would measure that pacing, not the bot.
        users: args.users.unwrap_or(match (plan.black_box, plan.quick) {
            (true, true) => 100,
            (true, false) => 500,
            (false, true) => 1_000,
            (false, false) => 10_000,
        }),
        duration: plan.duration,
        target,
        seeded,
        live_replicate: args.live_replicate,
        replicate_webhooks,
        database_url: plan.database.clone(),
        // The fault tests start this very binary as `genbot serve`.
        bot_program: std::env::current_exe().ok(),
        blackbox,
        // Below 2^53, so the report's JSON keeps it exact.
        seed: args.seed.unwrap_or_else(|| rand::random::<u64>() >> 11),
    }
}

fn write_reports(
    args: &BenchArgs,
    report: &SuiteReport,
    env: &Environment,
    lang: Lang,
) -> anyhow::Result<report::Written> {
    let formats = report::Formats {
        json: args.format.contains(&ReportFormat::Json),
        junit: args.format.contains(&ReportFormat::Junit),
        html: args.format.contains(&ReportFormat::Html),
        openmetrics: args.format.contains(&ReportFormat::Openmetrics),
    };
    report::write(&args.out, report, env, lang, formats).context("Failed to write the reports")
}

/// Both scores, when the run measured anything they count.
fn print_scores(report: &SuiteReport, lang: Lang) {
    for (extended, readiness) in [
        (false, &report.readiness),
        (true, &report.readiness_extended),
    ] {
        if readiness.percent.is_some() {
            eprintln!(
                "{}: {}",
                report::readiness_heading(extended, lang),
                report::score_text(readiness, lang)
            );
        }
    }
}

/// 1 when the seed's readiness is below `--fail-under` (an `all` run), else success.
fn exit_code(report: &SuiteReport, fail_under: Option<u8>) -> ExitCode {
    let (Some(floor), Some(percent)) = (fail_under, report.readiness.percent) else {
        return ExitCode::SUCCESS;
    };
    if report.suite == Suite::All && percent < f64::from(floor) {
        eprintln!("genbot: readiness {percent:.1} % is below --fail-under {floor}");
        return ExitCode::from(EXIT_BELOW_FAIL_UNDER);
    }
    ExitCode::SUCCESS
}

/// After Ctrl-C or SIGTERM: removes the test users and says so; the exit code is the shell's for SIGINT.
async fn stop_interrupted(target: &Target) -> ExitCode {
    let cleaned = target.cleanup().await;
    eprintln!(
        "genbot: interrupted; test users removed: {}",
        cleaned.map_or_else(|e| format!("no ({e})"), |d| d.users.to_string())
    );
    ExitCode::from(EXIT_INTERRUPTED)
}
