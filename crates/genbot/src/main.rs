//! The `genbot` binary: parses the command line, loads the settings, starts logging and runs
//! the chosen command. Everything else lives in the library crates.

mod app;
mod cli;
mod commands;
mod doctor;
mod telemetry;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command, ConfigCommand, MockCommand};

/// mimalloc instead of glibc's malloc: at 12,800 updates/s glibc's allocator took a fifth of
/// the CPU (malloc/free/consolidate in `perf`), and the bot allocates per update.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit code for bad arguments or configuration (clap uses it for argument errors too).
const EXIT_BAD_CONFIG: u8 = 2;

/// A problem the operator fixes in the configuration or the command line (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct UsageError(pub(crate) String);

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("Failed to start the async runtime")
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = telemetry::default_level(&cli.command);
    telemetry::init(cli.log_format, default_level);
    let settings = match genbot_config::Settings::load() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("genbot: {e}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    let outcome = match cli.command {
        Command::Config {
            command: ConfigCommand::Check,
        } => commands::config_check::run(&settings),
        Command::Serve(args) => {
            runtime().and_then(|rt| rt.block_on(commands::serve::run(settings, args)))
        }
        Command::Bench(args) => match runtime() {
            Ok(rt) => match rt.block_on(commands::bench::run(settings, *args)) {
                Ok(code) => return code,
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        },
        Command::Doctor(args) => match runtime() {
            // Its report is the output; logs would only interleave with it.
            Ok(rt) => {
                return if rt.block_on(commands::doctor::run(&settings, args)) {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Err(e) => Err(e),
        },
        Command::Demo(args) => {
            runtime().and_then(|rt| rt.block_on(commands::demo::run(settings, args)))
        }
        Command::Mock {
            command: MockCommand::Replicate(args),
        } => runtime().and_then(|rt| rt.block_on(commands::mock::replicate(args))),
        Command::Mock {
            command: MockCommand::Telegram(args),
        } => runtime().and_then(|rt| rt.block_on(commands::mock::telegram(args))),
        Command::Webhook { command } => {
            runtime().and_then(|rt| rt.block_on(commands::webhook::run(&settings, command)))
        }
        Command::Inbox { command } => {
            runtime().and_then(|rt| rt.block_on(commands::inbox::run(&settings, command)))
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<UsageError>().is_some() => {
            eprintln!("genbot: {e}");
            ExitCode::from(EXIT_BAD_CONFIG)
        }
        Err(e) => {
            eprintln!("genbot: {e:#}");
            ExitCode::FAILURE
        }
    }
}
