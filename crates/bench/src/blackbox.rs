//! Any Telegram bot as the target: a process started from a command (`--bot-cmd`) or by hand
//! (`--attach`), talking to the suite's Bot API and Replicate mocks on loopback ports, measured
//! only from outside (what reaches the mocks, the process group's RSS and CPU).
//!
//! Owns the two mocks, the bot's process and its environment for one run. Must not touch the
//! bot's storage: tests that need its internals run only with `--database-url`, as before.

mod conversation;
mod process;
pub mod scenario;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use genbot_mocks::replicate::{ReplicateMock, ReplicateMockConfig};
use genbot_mocks::telegram::{SimUser, TelegramMock, TelegramMockConfig};
use tokio::sync::Mutex;

pub use conversation::{Failure, StepFailure};
pub use process::{GroupUsage, Stopped};
pub use scenario::{Scenario, ScenarioError};

pub(crate) use conversation::session;
pub(crate) use process::group_usage;

use crate::target::TEST_IDS;

/// How the bot gets started.
#[derive(Debug, Clone, PartialEq)]
pub enum Launch {
    /// `sh -c COMMAND`; restarted with `restart` if given, else with the command again.
    Command {
        command: String,
        restart: Option<String>,
    },
    /// Started by hand; the suite prints the variables and waits for it to connect.
    Attach,
}

/// Why the bot under test could not be brought up.
#[derive(Debug, thiserror::Error)]
pub enum BlackBoxError {
    #[error("cannot start a mock server: {0}")]
    Mock(std::io::Error),
    #[error("cannot start `{command}`: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("the bot exited before it polled or set a webhook ({status}); its last output: {log}")]
    ExitedAtStart { status: String, log: String },
    #[error(
        "the bot did not call getUpdates or setWebhook within {waited_s:.0} s ({cpu_wait_s:.0} s \
         of it waiting for a CPU); is it reading {api_url_name} (the Bot API's address)? Its \
         last output: {log}"
    )]
    NeverConnected {
        waited_s: f64,
        cpu_wait_s: f64,
        api_url_name: String,
        log: String,
    },
}

/// The bot under test and the mocks it talks to.
#[derive(Debug)]
pub struct BlackBox {
    pub telegram: TelegramMock,
    pub replicate: ReplicateMock,
    pub scenario: Scenario,
    launch: Launch,
    process: Mutex<Option<process::BotCommand>>,
    log: PathBuf,
    next_user: AtomicI64,
    /// How each stop went, in order (restarts included).
    stops: parking_lot::Mutex<Vec<Stopped>>,
}

impl BlackBox {
    /// Starts both mocks and the bot, and waits until it polls or sets a webhook. With
    /// [`Launch::Attach`], `announce` is given the variables to set and the suite waits
    /// `attach_patience` for a bot started by hand.
    ///
    /// # Errors
    /// A mock cannot bind, the command cannot be spawned, or the bot exits or stays silent.
    pub async fn start(
        launch: Launch,
        scenario: Scenario,
        log: &Path,
        announce: impl FnOnce(&[(String, String)]),
        attach_patience: Duration,
    ) -> Result<BlackBox, BlackBoxError> {
        let telegram = TelegramMock::start(TelegramMockConfig {
            // What users see is measured under Telegram's send budget (429 + retry_after
            // past 30/s per bot, ~1/s per chat, 20/min per group): a bot's 429 handling is
            // measured, not its absence rewarded.
            enforce_limits: true,
            ..TelegramMockConfig::default()
        })
        .await
        .map_err(BlackBoxError::Mock)?;
        let replicate = ReplicateMock::start(ReplicateMockConfig::default())
            .await
            .map_err(BlackBoxError::Mock)?;
        let env = bot_env(&scenario, &telegram, &replicate);
        let _ = std::fs::remove_file(log);
        let process = match &launch {
            Launch::Command { command, .. } => Some(
                process::BotCommand::spawn(command, env, log).map_err(|source| {
                    BlackBoxError::Spawn {
                        command: command.clone(),
                        source,
                    }
                })?,
            ),
            Launch::Attach => {
                announce(&env);
                None
            }
        };
        let patience = match launch {
            Launch::Attach => attach_patience,
            Launch::Command { .. } => scenario.startup_timeout,
        };
        let bot = BlackBox {
            telegram,
            replicate,
            scenario,
            launch,
            process: Mutex::new(process),
            log: log.to_owned(),
            next_user: AtomicI64::new(TEST_IDS.start),
            stops: parking_lot::Mutex::new(Vec::new()),
        };
        bot.wait_connected(0, patience).await?;
        Ok(bot)
    }

    /// How the bot is started, for reports: the command, or "started by hand".
    pub fn launched_as(&self) -> String {
        match &self.launch {
            Launch::Command { command, .. } => command.clone(),
            Launch::Attach => "started by hand (--attach)".into(),
        }
    }

    /// Whether the suite can measure the bot's process (not when attached).
    pub fn has_process(&self) -> bool {
        matches!(self.launch, Launch::Command { .. })
    }

    /// Bot API calls that show the bot is listening: getUpdates and setWebhook.
    fn connections(&self) -> u64 {
        let methods = self.telegram.stats().methods;
        methods.get("getupdates").copied().unwrap_or(0)
            + methods.get("setwebhook").copied().unwrap_or(0)
    }

    /// Waits until the bot polls or sets a webhook. `patience` is the bot's own start time:
    /// the time it waited for a CPU behind other processes is not counted (at load 8.5 on two
    /// cores the aiogram example took 21-24 s to its first getUpdates, 7-9 s at load 5: its
    /// import costs 4-5 s of CPU), up to [`STARVED_PATIENCE`] times `patience` of wall time.
    async fn wait_connected(&self, before: u64, patience: Duration) -> Result<(), BlackBoxError> {
        let started = Instant::now();
        let mut cpu_wait = Duration::ZERO;
        loop {
            if self.connections() > before {
                return Ok(());
            }
            if let Some(process) = self.process.lock().await.as_mut() {
                if let Some(status) = process.exited() {
                    return Err(BlackBoxError::ExitedAtStart {
                        status,
                        log: process.log_tail(5),
                    });
                }
                // The processes of a start are new: their waits began with it.
                if let Some(usage) = process.group().and_then(process::group_usage) {
                    cpu_wait = cpu_wait.max(usage.cpu_wait);
                }
            }
            if out_of_patience(started.elapsed(), cpu_wait, patience) {
                return Err(BlackBoxError::NeverConnected {
                    waited_s: started.elapsed().as_secs_f64(),
                    cpu_wait_s: cpu_wait.as_secs_f64(),
                    api_url_name: self.scenario.env.telegram_api_url.clone(),
                    log: process::log_tail(&self.log, 5),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `count` fresh simulated users (ids never used before in this run, from [`TEST_IDS`]).
    pub fn users(&self, count: u32, language: Option<&str>) -> Vec<SimUser> {
        let first = self
            .next_user
            .fetch_add(i64::from(count), Ordering::Relaxed);
        (first..first + i64::from(count))
            .map(|id| self.telegram.user(id, "Sim", language))
            .collect()
    }

    /// The bot's process group while it runs (not when attached).
    pub(crate) async fn group(&self) -> Option<u32> {
        self.process.lock().await.as_ref()?.group()
    }

    /// RSS and CPU of the bot's process group now; `None` when attached or without `/proc`.
    pub async fn usage(&self) -> Option<GroupUsage> {
        let group = self.process.lock().await.as_ref()?.group()?;
        process::group_usage(group).filter(|u| u.processes > 0)
    }

    /// Whether the bot's process has exited on its own (a crash), with its status and output.
    pub async fn crashed(&self) -> Option<(String, String)> {
        let mut process = self.process.lock().await;
        let process = process.as_mut()?;
        let status = process.exited()?;
        Some((status, process.log_tail(5)))
    }

    /// Stops the bot (SIGTERM, then SIGKILL after the scenario's grace) and starts it again
    /// with the restart command (or the same one), then waits until it listens again.
    ///
    /// # Errors
    /// Attached bots cannot be restarted; a restart that does not come up.
    pub async fn restart(&self) -> Result<Stopped, BlackBoxError> {
        let Launch::Command { command, restart } = &self.launch else {
            return Err(BlackBoxError::Spawn {
                command: "(attached bot)".into(),
                source: std::io::Error::other("an attached bot cannot be restarted by the suite"),
            });
        };
        let command = restart.as_ref().unwrap_or(command);
        let before = self.connections();
        let stopped = {
            let mut process = self.process.lock().await;
            let Some(process) = process.as_mut() else {
                return Err(BlackBoxError::Spawn {
                    command: command.clone(),
                    source: std::io::Error::other("no process"),
                });
            };
            let stopped = process.stop(self.scenario.stop_grace).await;
            process
                .start(command)
                .map_err(|source| BlackBoxError::Spawn {
                    command: command.clone(),
                    source,
                })?;
            stopped
        };
        self.stops.lock().push(stopped.clone());
        self.wait_connected(before, self.scenario.startup_timeout)
            .await?;
        Ok(stopped)
    }

    /// Stops the bot for good; how it stopped (also kept for [`BlackBox::stops`]).
    pub async fn stop(&self) -> Option<Stopped> {
        let mut process = self.process.lock().await;
        let stopped = process.as_mut()?.stop(self.scenario.stop_grace).await;
        self.stops.lock().push(stopped.clone());
        Some(stopped)
    }

    /// Every stop so far, restarts included.
    pub fn stops(&self) -> Vec<Stopped> {
        self.stops.lock().clone()
    }

    /// The file the bot's output goes to.
    pub fn log(&self) -> &Path {
        &self.log
    }
}

/// A bot starved of CPU is given at most this many times its patience of wall time: one that
/// spins forever on a busy machine still gets a verdict.
const STARVED_PATIENCE: u32 = 10;

/// Whether a start has used up `patience`: wall time less the time the bot waited for a CPU,
/// or [`STARVED_PATIENCE`] times `patience` of wall time.
fn out_of_patience(elapsed: Duration, cpu_wait: Duration, patience: Duration) -> bool {
    elapsed.saturating_sub(cpu_wait) > patience || elapsed > patience * STARVED_PATIENCE
}

/// The variables the bot is started with: the mocks' addresses, a token, and the extras.
fn bot_env(
    scenario: &Scenario,
    telegram: &TelegramMock,
    replicate: &ReplicateMock,
) -> Vec<(String, String)> {
    let names = &scenario.env;
    let mut env = vec![
        (names.telegram_api_url.clone(), telegram.url().to_owned()),
        (names.telegram_bot_token.clone(), scenario.token.clone()),
        (names.replicate_api_url.clone(), replicate.url().to_owned()),
        (
            names.replicate_api_token.clone(),
            "r8_genbot_bench_mock".to_owned(),
        ),
    ];
    env.extend(names.extra.iter().map(|(k, v)| (k.clone(), v.clone())));
    env
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::out_of_patience;

    #[test]
    fn time_spent_waiting_for_a_cpu_does_not_use_up_a_starts_patience() {
        let s = Duration::from_secs;
        // Idle machine: wall time is the bot's own.
        assert!(!out_of_patience(s(29), s(0), s(30)));
        assert!(out_of_patience(s(31), s(0), s(30)));
        // The aiogram example at load 8.5: 24 s of wall time, most of it in a run queue.
        assert!(!out_of_patience(s(40), s(18), s(30)));
        assert!(out_of_patience(s(50), s(18), s(30)));
        // A bot that spins forever on a busy machine still gets a verdict.
        assert!(out_of_patience(s(301), s(300), s(30)));
    }
}
