//! Logging: `RUST_LOG` filters (default `info`), text on a terminal or JSON lines.

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter, Layer};

use crate::cli::{Command, LogFormat};

/// The log level a command shows when `RUST_LOG` is unset.
pub(crate) fn default_level(command: &Command) -> &'static str {
    // The suite and the demo print their own progress; their engines' info logs would
    // interleave with it. An operator's one-shot commands print an answer: a database's info
    // line (sqlx's notice of a slow statement, a migration's) is no part of it. `bench --quiet`
    // prints nothing but the reports: its engines' warnings (a retried step, a slow query)
    // stay out too, and only errors reach stderr.
    match command {
        Command::Bench(args) if args.quiet => "error",
        Command::Bench(_)
        | Command::Demo(_)
        | Command::Doctor(_)
        | Command::Inbox { .. }
        | Command::Webhook { .. }
        | Command::Config { .. } => "warn",
        _ => "info",
    }
}

/// Starts logging; `default_level` applies when `RUST_LOG` is unset.
pub(crate) fn init(format: LogFormat, default_level: &str) {
    let mut filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    // sqlx warns of a connection parameter it does not know with its value, which may be a
    // password (`?sslpassword=…`), at every connect: never shown, whatever RUST_LOG says.
    if let Ok(quiet) = "sqlx_postgres::options::parse=off".parse() {
        filter = filter.add_directive(quiet);
    }
    // The monitor counts warnings and errors whatever the filter shows.
    let counting = genbot_bench::monitor::ErrorCountLayer;
    let registry = tracing_subscriber::registry().with(counting);
    match format {
        LogFormat::Text => registry
            .with(
                fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_filter(filter),
            )
            .init(),
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .with_writer(std::io::stderr)
                    .with_filter(filter),
            )
            .init(),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::default_level;
    use crate::cli::Cli;

    fn level(args: &[&str]) -> &'static str {
        let cli = Cli::try_parse_from(args).expect("a valid command line");
        default_level(&cli.command)
    }

    #[test]
    fn bench_quiet_logs_only_errors() {
        assert_eq!(level(&["genbot", "bench", "all", "--quiet"]), "error");
        assert_eq!(level(&["genbot", "bench", "all"]), "warn");
        assert_eq!(level(&["genbot", "serve"]), "info");
    }
}
