//! `genbot bench …`: the readiness suite from the command line.

use std::panic::AssertUnwindSafe;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use futures_util::FutureExt as _;
use genbot_bench::context::Context;
use genbot_bench::grade::{Lang, Thresholds};
use genbot_bench::report::{self, Environment};
use genbot_bench::suite::{self, Suite};
use genbot_bench::target::{Target, TargetError};
use genbot_config::{DatabaseUrl, RedactedUrl, Settings};

mod progress;

use progress::{Display, Terminal};

use crate::cli::{BenchArgs, BenchSuite, ReportFormat, ReportLang};
use crate::UsageError;

/// Exit code when readiness is below `--fail-under`.
const EXIT_BELOW_FAIL_UNDER: u8 = 1;
/// Exit code when the target cannot be reached.
const EXIT_UNREACHABLE: u8 = 3;
/// Exit code after Ctrl-C (128 + SIGINT, as shells report it).
const EXIT_INTERRUPTED: u8 = 130;

pub(crate) async fn run(settings: Settings, args: BenchArgs) -> anyhow::Result<ExitCode> {
    if args.live_replicate && settings.replicate_api_token.is_none() {
        return Err(UsageError(format!(
            "--live-replicate needs REPLICATE_API_TOKEN (it sends {} real, billed generations to {})",
            genbot_bench::checks::live_replicate::sample_size(args.quick),
            settings.replicate_api_url
        ))
        .into());
    }
    let lang = match args.lang {
        ReportLang::En => Lang::En,
        ReportLang::Ru => Lang::Ru,
    };
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
    report::prepare(&args.out).map_err(|e| UsageError(e.to_string()))?;

    let quick = args.quick;
    let duration = Duration::from_secs(args.duration.unwrap_or(if quick { 2 } else { 10 }));
    let seed_count = if quick { 10_000 } else { 50_000 };
    let target = match &database {
        None => Target::embedded(redis.as_ref(), settings.cache_ttl, settings.db_pool_size).await,
        Some(url) => {
            Target::deployment(
                url,
                redis.as_ref(),
                settings.cache_ttl,
                settings.db_pool_size,
            )
            .await
        }
    };
    let target = match target {
        Ok(target) => target,
        Err(e @ TargetError::RangeInUse(_)) => return Err(UsageError(e.to_string()).into()),
        Err(e) => {
            eprintln!("genbot: {e}");
            return Ok(ExitCode::from(EXIT_UNREACHABLE));
        }
    };
    let env = Environment {
        db: target.database.clone(),
        cache: redis.as_ref().map_or_else(
            || "in-process (moka)".to_owned(),
            |url| format!("redis {url}"),
        ),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        replicate: if args.live_replicate {
            format!(
                "in-process mock for load; {} live generations at {}",
                genbot_bench::checks::live_replicate::sample_size(quick),
                settings.replicate_api_url
            )
        } else {
            "in-process mock".into()
        },
        version: env!("CARGO_PKG_VERSION").into(),
    };
    // From here on test users may exist: Ctrl-C or SIGTERM must not kill the process before
    // they go.
    let interrupted = crate::commands::mock::shutdown_signal();
    tokio::pin!(interrupted);
    let seeded = tokio::select! {
        seeded = target.seed_users(seed_count) => seeded,
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
    // The settings under test name the Redis the run actually uses (--redis-url wins).
    let mut settings = settings;
    settings.redis_url = redis.clone();
    let replicate_webhooks = args.replicate_webhooks || settings.replicate_webhook_url.is_some();
    let ctx = Context {
        settings,
        thresholds,
        lang,
        quick,
        users: args.users.unwrap_or(if quick { 1_000 } else { 10_000 }),
        duration,
        target,
        seeded,
        live_replicate: args.live_replicate,
        replicate_webhooks,
        database_url: database.clone(),
        // The fault tests start this very binary as `genbot serve`.
        bot_program: std::env::current_exe().ok(),
    };
    let suite = match args.suite {
        BenchSuite::Performance => Suite::Performance,
        BenchSuite::GenerationSettings => Suite::GenerationSettings,
        BenchSuite::Faults => Suite::Faults,
        BenchSuite::All => Suite::All,
    };
    let progress = Terminal::new(Display::detect(args.quiet), lang, suite.tests().len());
    // A test that panics (a bug) must not leave test users behind either.
    let run = AssertUnwindSafe(suite::run(suite, &ctx, &progress)).catch_unwind();
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

    let formats = report::Formats {
        json: args.format.contains(&ReportFormat::Json),
        junit: args.format.contains(&ReportFormat::Junit),
        html: args.format.contains(&ReportFormat::Html),
    };
    let written = report::write(&args.out, &report, &env, lang, formats)
        .context("Failed to write the reports")?;
    if !args.quiet {
        progress.summary(&report.tests);
        if suite == Suite::All {
            eprintln!(
                "readiness {:.1} % — {}",
                report.readiness.percent,
                report::band_text(report.readiness.band, lang)
            );
        }
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
    if let Some(floor) = args.fail_under {
        if suite == Suite::All && report.readiness.percent < f64::from(floor) {
            eprintln!(
                "genbot: readiness {:.1} % is below --fail-under {floor}",
                report.readiness.percent
            );
            return Ok(ExitCode::from(EXIT_BELOW_FAIL_UNDER));
        }
    }
    Ok(ExitCode::SUCCESS)
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
