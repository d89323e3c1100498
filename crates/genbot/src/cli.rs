//! The command line, as clap types. Each field's doc comment is its `--help` text.

use clap::{Parser, Subcommand, ValueEnum};

/// genbot: a Telegram bot that turns prompts into images through Replicate, and the readiness
/// suite that tells whether it is ready for production.
///
/// Settings come from environment variables (or genbot.toml); see `genbot config check`.
#[derive(Debug, Parser)]
#[command(name = "genbot", version, propagate_version = true)]
pub(crate) struct Cli {
    /// Log format: human-readable text, or one JSON object per line.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub(crate) log_format: LogFormat,

    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Inspect the configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Run the bot (long polling, or a webhook with --webhook-url).
    Serve(ServeArgs),
    /// Preflight a deployment from its settings: Bot API token and webhook, database and
    /// schema, SQLite's disk, Redis and its eviction policy, Replicate token and models,
    /// clocks, Stars packages. One line per check (OK / WARN / FAIL and what to do); exit 1
    /// when any fails. Changes nothing.
    Doctor(DoctorArgs),
    /// Run the bot against both mocks with a few simulated users and print their chats:
    /// the whole flow, with no tokens and no network.
    Demo(DemoArgs),
    /// Run the readiness suite: measure every part, grade it, score readiness, write reports.
    Bench(Box<BenchArgs>),
    /// Run a mock server (Replicate or Telegram) for local trials.
    Mock {
        #[command(subcommand)]
        command: MockCommand,
    },
    /// The update inbox's dead letters: updates set aside after failing again and again.
    Inbox {
        #[command(subcommand)]
        command: InboxCommand,
    },
    /// The bot's Telegram webhook (one per bot, shared by every replica): set, delete, show.
    Webhook {
        #[command(subcommand)]
        command: WebhookCommand,
    },
}

#[derive(Debug, clap::Args)]
pub(crate) struct DoctorArgs {
    /// The `--webhook-url` `genbot serve` will run with (the webhook Telegram should have);
    /// without it, serve is expected to poll.
    #[arg(long, value_parser = WebhookUrl)]
    pub(crate) webhook_url: Option<url::Url>,
    /// Output: one line per check, or a JSON document.
    #[arg(long, value_enum, default_value_t = DoctorFormat::Text)]
    pub(crate) format: DoctorFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum DoctorFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub(crate) enum WebhookCommand {
    /// Point Telegram at URL, with the secret every replica derives from the token (or
    /// WEBHOOK_SECRET) and the update kinds genbot handles.
    Set {
        /// The public HTTPS URL `genbot serve --webhook-url` serves.
        #[arg(value_parser = WebhookUrl)]
        url: url::Url,
        /// Secret Telegram must send with each request (default: WEBHOOK_SECRET, else derived
        /// from the bot token, as `serve` does).
        #[arg(long)]
        secret: Option<String>,
    },
    /// Delete the webhook (the bot can then poll); updates waiting at Telegram are kept.
    Delete,
    /// Show Telegram's view: URL, updates waiting, the last delivery error and its age.
    Info,
}

#[derive(Debug, Subcommand)]
pub(crate) enum InboxCommand {
    /// List the dead letters, newest first (id, attempts, when, error; never the text).
    List {
        /// At most this many.
        #[arg(long, default_value_t = 50, value_parser = at_least_one)]
        limit: u32,
    },
    /// Give a dead letter another try: a running replica (polling or webhook) takes it within
    /// a fraction of a second.
    Retry {
        /// The update id `genbot inbox list` shows.
        update_id: i64,
    },
}

#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// Receive updates by webhook at this public URL instead of long polling.
    #[arg(long, value_parser = WebhookUrl)]
    pub(crate) webhook_url: Option<url::Url>,
    /// Secret Telegram must send with each webhook request: 1-256 of A-Z, a-z, 0-9, _ and -
    /// (default: WEBHOOK_SECRET, else one derived from the bot token, the same for every
    /// replica).
    #[arg(long)]
    pub(crate) webhook_secret: Option<String>,
    /// In polling mode, delete a webhook that is set (otherwise the start is refused: Telegram
    /// does not let a bot poll while a webhook is set).
    #[arg(long)]
    pub(crate) drop_webhook: bool,
    /// Address for the webhook (if any), /healthz and /metrics (port 0 picks a free one; the
    /// log says `listening on ADDRESS`).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub(crate) listen: std::net::SocketAddr,
    /// Credits a new user starts with.
    #[arg(long, default_value_t = genbot_telegram::FrontConfig::DEFAULT_INITIAL_CREDITS)]
    pub(crate) initial_credits: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum BenchSuite {
    /// DB read, cache, concurrent users, DB write, memory, system limits.
    Performance,
    /// Semaphores, rate limiting, model configuration, cache settings, operation simulation,
    /// queue, memory under load.
    GenerationSettings,
    /// Crash and restart, Redis outage, database outage, Replicate faults, Telegram faults,
    /// replica failover: `genbot serve` processes broken on purpose, graded on what survived.
    Faults,
    /// All of them, then the readiness score and the load forecast.
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ReportLang {
    En,
    Ru,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ReportFormat {
    Txt,
    Json,
    Junit,
    Html,
    /// `readiness_metrics.prom`: readiness scores, grades and every figure as OpenMetrics
    /// text, for node_exporter's textfile collector or a Pushgateway.
    Openmetrics,
}

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub(crate) struct BenchArgs {
    #[command(subcommand)]
    pub(crate) command: Option<BenchCommand>,
    /// Which tests to run.
    #[arg(value_enum, required = true)]
    pub(crate) suite: Option<BenchSuite>,
    /// Shorter measurements (about a minute for `all`), for CI and a first look.
    #[arg(long)]
    pub(crate) quick: bool,
    /// Simulated users for the concurrent-users test (at most 1,000,000: the test user ids).
    #[arg(long, value_parser = simulated_users)]
    pub(crate) users: Option<u32>,
    /// Seconds each timed measurement runs (default 2 with --quick, 10 otherwise).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub(crate) duration: Option<u64>,
    /// Directory for the reports.
    #[arg(long, default_value = "reports")]
    pub(crate) out: std::path::PathBuf,
    /// Language of the reports.
    #[arg(long, value_enum, default_value_t = ReportLang::En)]
    pub(crate) lang: ReportLang,
    /// Report formats, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "txt,json,html"
    )]
    pub(crate) format: Vec<ReportFormat>,
    /// Exit with code 1 when readiness is below this percentage.
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub(crate) fail_under: Option<u8>,
    /// Run against this database instead of a fresh temporary SQLite file (test users only in
    /// ids 1,000,000–1,999,999, refused if any exist there, removed afterwards).
    #[arg(long)]
    pub(crate) database_url: Option<String>,
    /// Cache in this Redis instead of in-process (default: REDIS_URL if set).
    #[arg(long)]
    pub(crate) redis_url: Option<String>,
    /// Grade with these thresholds (TOML) instead of the seed's.
    #[arg(long)]
    pub(crate) thresholds: Option<std::path::PathBuf>,
    /// Also send 3 real generations (2 with --quick) to REPLICATE_API_URL with REPLICATE_API_TOKEN,
    /// to state throughput at the real latency (billed by Replicate). Load stays on the mock.
    #[arg(long)]
    pub(crate) live_replicate: bool,
    /// Operation simulation with Replicate webhooks (signed, verified, polling as reconciler)
    /// instead of polling; on by default when REPLICATE_WEBHOOK_URL is set.
    #[arg(long)]
    pub(crate) replicate_webhooks: bool,
    /// No progress output (CI).
    #[arg(long)]
    pub(crate) quiet: bool,
    /// Test any Telegram bot as a black box: start it with this shell command, with
    /// TELEGRAM_API_URL, TELEGRAM_BOT_TOKEN, REPLICATE_API_URL and REPLICATE_API_TOKEN pointing
    /// at the suite's mocks; stopped with SIGTERM (SIGKILL after a grace period) at the end.
    #[arg(long, value_name = "COMMAND", conflicts_with = "attach")]
    pub(crate) bot_cmd: Option<String>,
    /// With --bot-cmd: the command the queue test restarts the bot with (default: --bot-cmd).
    #[arg(long, value_name = "COMMAND", requires = "bot_cmd")]
    pub(crate) restart_cmd: Option<String>,
    /// Test a bot you start by hand: print the variables to set, then wait up to 5 minutes for
    /// it to poll or set a webhook.
    #[arg(long)]
    pub(crate) attach: bool,
    /// With --bot-cmd or --attach: the conversation to simulate and the limits the bot claims
    /// (TOML; default: genbot's own flow, and the limits genbot's settings give).
    #[arg(long, value_name = "FILE")]
    pub(crate) scenario: Option<std::path::PathBuf>,
    /// The seed of the `bad_input` test's corpus (default: random; the report prints it so a
    /// failure can be repeated).
    #[arg(long)]
    pub(crate) seed: Option<u64>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum BenchCommand {
    /// Compare two runs' JSON reports (or their readiness_metrics.prom files, from
    /// --format openmetrics) metric by metric (two builds, or two bots); exit 1 when
    /// a metric regressed beyond --max-regression and beyond run-to-run noise, a metric went
    /// missing, a test's grade fell, or readiness fell.
    Compare(CompareArgs),
}

#[derive(Debug, clap::Args)]
pub(crate) struct CompareArgs {
    /// The earlier run's JSON report (e.g. reports/readiness_report.json), or its
    /// readiness_metrics.prom.
    pub(crate) old: std::path::PathBuf,
    /// The later run's JSON report (or .prom) of the same kind.
    pub(crate) new: std::path::PathBuf,
    /// Largest regression allowed, in percent of the old value.
    #[arg(long, default_value_t = 10.0, value_parser = parse_percent)]
    pub(crate) max_regression: f64,
    /// Where to write comparison.html (default: the directory of NEW).
    #[arg(long)]
    pub(crate) out: Option<std::path::PathBuf>,
    /// Another run of the old build (repeatable): each metric's noise band becomes the spread
    /// the runs showed, and values their median.
    #[arg(long, value_name = "OLD.json")]
    pub(crate) old_repeat: Vec<std::path::PathBuf>,
    /// Another run of the new build (repeatable), as --old-repeat.
    #[arg(long, value_name = "NEW.json")]
    pub(crate) new_repeat: Vec<std::path::PathBuf>,
}

fn parse_percent(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if (0.0..=1000.0).contains(&value) => Ok(value),
        _ => Err(format!(
            "{text:?} is not a percentage from 0 to 1000 (e.g. 10 for 10 %)"
        )),
    }
}

#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// Median time the mock Replicate takes per image, in milliseconds.
    #[arg(long, default_value_t = 1500)]
    pub(crate) latency_ms: u64,
}

/// Mock servers that speak the real protocols, for trying genbot without tokens or network.
#[derive(Debug, Subcommand)]
pub(crate) enum MockCommand {
    /// Serve a Replicate-compatible predictions API on 127.0.0.1.
    Replicate(ReplicateMockArgs),
    /// Serve a Telegram Bot API on 127.0.0.1 (simulated users are driven from tests and the suite).
    Telegram(TelegramMockArgs),
}

#[derive(Debug, clap::Args)]
pub(crate) struct TelegramMockArgs {
    /// Port to listen on (0 picks a free one and prints it).
    #[arg(long, default_value_t = 8081)]
    pub(crate) port: u16,
    /// Answer 429 when the bot sends faster than Telegram allows (30/s overall, 1/s per chat).
    #[arg(long)]
    pub(crate) enforce_limits: bool,
}

#[derive(Debug, clap::Args)]
pub(crate) struct ReplicateMockArgs {
    /// Port to listen on (0 picks a free one and prints it).
    #[arg(long, default_value_t = 8090)]
    pub(crate) port: u16,
    /// Median time from creation to a final status, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    pub(crate) median_ms: u64,
    /// Spread of the log-normal latency (0 = every prediction takes the median).
    #[arg(long, default_value_t = 0.3)]
    pub(crate) sigma: f64,
    /// Fraction of predictions that end failed, 0 to 1.
    #[arg(long, default_value_t = 0.0, value_parser = fraction)]
    pub(crate) failure_rate: f64,
    /// Answer 429 above this many creations per second (Replicate-style throttling).
    #[arg(long, value_parser = at_least_one)]
    pub(crate) rate_limit: Option<u32>,
}

/// A webhook URL Telegram can post to: https (http only to a local Bot API server), with a
/// host. One rule for `serve`, `webhook set` and `doctor`: `serve --webhook-url ftp://x` ran and
/// asked Telegram to post there. A refused value is echoed redacted (clap's own message would
/// quote it whole, credentials included).
#[derive(Debug, Clone, Copy)]
struct WebhookUrl;

impl clap::builder::TypedValueParser for WebhookUrl {
    type Value = url::Url;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<url::Url, clap::Error> {
        let text = value.to_string_lossy();
        let refuse = |why: String| {
            let option = arg.map_or_else(|| "the webhook URL".to_owned(), ToString::to_string);
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!(
                    "invalid value '{}' for '{option}': {why}, expected https://HOST/PATH\n",
                    genbot_config::redact_urls_in(&text)
                ),
            )
            .with_cmd(cmd)
        };
        let url = url::Url::parse(&text).map_err(|e| refuse(format!("not a URL ({e})")))?;
        if !genbot_config::is_http_with_host(&url) {
            return Err(refuse(format!(
                "it uses {}: Telegram posts updates over https (http only to a local Bot API server)",
                url.scheme()
            )));
        }
        Ok(url)
    }
}

/// A count where zero means nothing to do (no users, no rows, no creations allowed): refused
/// rather than run as a test that measures nothing. Clap names the option and the value.
fn at_least_one(text: &str) -> Result<u32, String> {
    match text.parse::<u32>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("expected a whole number from 1 to {}", u32::MAX)),
    }
}

/// Most simulated users a bench run takes: one per test user id (1,000,000–1,999,999), so a
/// typo such as 4294967295 is refused rather than spawning sessions until memory runs out.
const MAX_SIMULATED_USERS: u32 = 1_000_000;

fn simulated_users(text: &str) -> Result<u32, String> {
    match text.parse::<u32>() {
        Ok(n) if (1..=MAX_SIMULATED_USERS).contains(&n) => Ok(n),
        _ => Err(format!(
            "expected a whole number from 1 to {MAX_SIMULATED_USERS} (one per test user id)"
        )),
    }
}

fn fraction(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("expected a number from 0 to 1, got {text}")),
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// Validate every setting and print the effective values, secrets redacted.
    Check,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn a_webhook_url_telegram_cannot_post_to_is_refused_without_its_credentials() {
        for args in [
            &["genbot", "serve", "--webhook-url", "ftp://u:pw-1@x/hook"][..],
            &["genbot", "webhook", "set", "ftp://u:pw-1@x/hook"],
            &["genbot", "doctor", "--webhook-url", "ftp://u:pw-1@x/hook"],
            &[
                "genbot",
                "serve",
                "--webhook-url",
                "https://u:pw-1@/no-host",
            ],
            &["genbot", "serve", "--webhook-url", "not a url pw-1"],
        ] {
            let Err(e) = Cli::try_parse_from(args) else {
                panic!("{args:?} was accepted");
            };
            let message = e.to_string();
            assert!(message.contains("https://HOST/PATH"), "{message}");
            if args[args.len() - 1].contains("@x") {
                assert!(message.contains("ftp://***:***@x/hook"), "{message}");
                assert!(message.contains("uses ftp"), "{message}");
            }
            if args[args.len() - 1].contains("://") {
                assert!(!message.contains("pw-1"), "{message}");
            }
        }
        let ok =
            Cli::try_parse_from(["genbot", "serve", "--webhook-url", "https://bot.example/tg"]);
        assert!(ok.is_ok(), "{ok:?}");
    }

    #[test]
    fn a_zero_count_is_refused_naming_the_option_the_value_and_the_range() {
        for args in [
            &["genbot", "inbox", "list", "--limit", "0"][..],
            &["genbot", "mock", "replicate", "--rate-limit", "0"],
        ] {
            let Err(e) = Cli::try_parse_from(args) else {
                panic!("{args:?} was accepted");
            };
            let message = e.to_string();
            let option = args[args.len() - 2];
            assert!(message.contains(option), "{message}");
            assert!(message.contains("'0'"), "{message}");
            assert!(message.contains("from 1 to 4294967295"), "{message}");
        }
    }

    #[test]
    fn simulated_users_are_bounded_by_the_test_user_ids() {
        for value in ["0", "1000001", "4294967295", "4294967296"] {
            let args = ["genbot", "bench", "all", "--users", value];
            let Err(e) = Cli::try_parse_from(args) else {
                panic!("{args:?} was accepted");
            };
            let message = e.to_string();
            assert!(message.contains("--users"), "{message}");
            assert!(message.contains(&format!("'{value}'")), "{message}");
            assert!(message.contains("from 1 to 1000000"), "{message}");
        }
        for value in ["1", "1000000"] {
            let parsed = Cli::try_parse_from(["genbot", "bench", "all", "--users", value]);
            assert!(parsed.is_ok(), "{parsed:?}");
        }
    }
}
