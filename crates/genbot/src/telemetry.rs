//! Logging: `RUST_LOG` filters (default `info`), text on a terminal or JSON lines.

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter, Layer};

use crate::cli::LogFormat;

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
