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
}
