//! Logging: `RUST_LOG` filters (default `info`), text on a terminal or JSON lines.

use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

/// Starts logging; `default_level` applies when `RUST_LOG` is unset.
pub(crate) fn init(format: LogFormat, default_level: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
