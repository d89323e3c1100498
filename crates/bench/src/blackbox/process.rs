//! The bot's process: started with `sh -c COMMAND` in its own process group (so a wrapper
//! script, `python3` and any worker it forks are one unit), stopped with SIGTERM then SIGKILL,
//! measured by the RSS and CPU time of every process in its group.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use rustix::process::Signal;
use tokio::process::{Child, Command};

/// How the bot stopped when the suite asked it to.
#[derive(Debug, Clone, PartialEq)]
pub enum Stopped {
    /// It exited within the grace period after SIGTERM.
    OnSigterm { after: Duration, status: String },
    /// It ignored SIGTERM for the grace period and was killed.
    Killed { grace: Duration },
    /// It had already exited on its own.
    AlreadyExited { status: String },
}

impl Stopped {
    pub fn describe(&self, en: bool) -> String {
        match (self, en) {
            (Stopped::OnSigterm { after, status }, true) => {
                format!("exited {:.1} s after SIGTERM ({status})", after.as_secs_f64())
            }
            (Stopped::OnSigterm { after, status }, false) => {
                format!("завершился через {:.1} с после SIGTERM ({status})", after.as_secs_f64())
            }
            (Stopped::Killed { grace }, true) => format!(
                "ignored SIGTERM for {:.0} s and was killed (SIGKILL): in-flight work may be lost on every deploy",
                grace.as_secs_f64()
            ),
            (Stopped::Killed { grace }, false) => format!(
                "не завершился за {:.0} с после SIGTERM и был убит (SIGKILL): при каждом деплое может теряться работа",
                grace.as_secs_f64()
            ),
            (Stopped::AlreadyExited { status }, true) => {
                format!("had already exited on its own ({status})")
            }
            (Stopped::AlreadyExited { status }, false) => {
                format!("уже завершился сам ({status})")
            }
        }
    }
}

/// A running bot command.
#[derive(Debug)]
pub(crate) struct BotCommand {
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
    pid: Option<u32>,
}

impl BotCommand {
    /// Starts `command` with `env` added to the suite's own environment; its output goes to
    /// `log` (appended).
    pub(crate) fn spawn(
        command: &str,
        env: Vec<(String, String)>,
        log: &Path,
    ) -> std::io::Result<BotCommand> {
        let mut bot = BotCommand {
            env,
            log: log.to_owned(),
            child: None,
            pid: None,
        };
        bot.start(command)?;
        Ok(bot)
    }

    /// Starts `command` (the same one, or a restart command) in a new process group.
    pub(crate) fn start(&mut self, command: &str) -> std::io::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let err = log.try_clone()?;
        let child = Command::new("sh")
            .arg("-c")
            .arg(shell_line(command))
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .process_group(0)
            .kill_on_drop(true)
            .spawn()?;
        self.pid = child.id();
        self.child = Some(child);
        Ok(())
    }

    /// The exit status, once it has exited on its own.
    pub(crate) fn exited(&mut self) -> Option<String> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            _ => None,
        }
    }

    /// The process group's id while it runs.
    pub(crate) fn group(&self) -> Option<u32> {
        self.child.as_ref().and(self.pid)
    }

    /// SIGTERM to the group, SIGKILL after `grace`.
    pub(crate) async fn stop(&mut self, grace: Duration) -> Stopped {
        let Some(mut child) = self.child.take() else {
            return Stopped::AlreadyExited {
                status: "not running".into(),
            };
        };
        if let Ok(Some(status)) = child.try_wait() {
            return Stopped::AlreadyExited {
                status: status.to_string(),
            };
        }
        let started = Instant::now();
        signal_group(self.pid, Signal::TERM);
        // The bot may be a grandchild (a shell line, a wrapper script): it has stopped when
        // no process of its group is left, not when the shell is gone.
        let mut status = None;
        while started.elapsed() < grace {
            if status.is_none() {
                if let Ok(Some(exit)) = child.try_wait() {
                    status = Some(exit.to_string());
                }
            }
            let left = self
                .pid
                .and_then(group_usage)
                .map_or(0, |usage| usage.processes);
            if status.is_some() && left == 0 {
                return Stopped::OnSigterm {
                    after: started.elapsed(),
                    status: status.unwrap_or_default(),
                };
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        signal_group(self.pid, Signal::KILL);
        let _ = child.wait().await;
        Stopped::Killed { grace }
    }

    /// The last `lines` lines of its output, for a verdict that must say why.
    pub(crate) fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log, lines)
    }
}

impl Drop for BotCommand {
    fn drop(&mut self) {
        if self.child.is_some() {
            signal_group(self.pid, Signal::KILL);
        }
    }
}

/// A simple command runs as the shell's replacement (`exec`), so the signal and the exit
/// status are the bot's own; a compound line (pipes, `&&`, redirections) runs as written.
fn shell_line(command: &str) -> String {
    let compound = command.chars().any(|c| {
        matches!(
            c,
            ';' | '&' | '|' | '<' | '>' | '(' | ')' | '$' | '`' | '\n'
        )
    });
    let first_word = command.split_whitespace().next().unwrap_or_default();
    if compound || first_word == "exec" || first_word.contains('=') {
        command.to_owned()
    } else {
        format!("exec {command}")
    }
}

/// The last `lines` non-empty lines of a log file, joined with " | ".
pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    all[all.len().saturating_sub(lines)..].join(" | ")
}

fn signal_group(pid: Option<u32>, signal: Signal) {
    let Some(group) = pid
        .and_then(|p| i32::try_from(p).ok())
        .and_then(rustix::process::Pid::from_raw)
    else {
        return;
    };
    // The group may be gone already: nothing left to signal is not an error.
    let _ = rustix::process::kill_process_group(group, signal);
}

/// Resident memory and CPU time of every process in a process group (Linux `/proc`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GroupUsage {
    pub rss_bytes: u64,
    pub cpu: Duration,
    pub processes: u32,
    /// The longest time one of its processes was ready to run but waited for a CPU
    /// (`/proc/PID/schedstat`; zero where the kernel does not keep it).
    pub cpu_wait: Duration,
}

/// Sums `/proc/*/stat` over the processes whose group is `group`; `None` without `/proc`.
pub(crate) fn group_usage(group: u32) -> Option<GroupUsage> {
    let mut usage = GroupUsage::default();
    let (page, ticks_per_second) = (
        crate::rss::page_size(),
        crate::rss::clock_ticks_per_second(),
    );
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the command name (which may hold spaces) start after the last ')'.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // After the name: state(0) ppid(1) pgrp(2) … utime(11) stime(12) … rss(21).
        if fields.get(2).and_then(|g| g.parse::<u32>().ok()) != Some(group) {
            continue;
        }
        let number = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        usage.processes += 1;
        let ticks = number(11) + number(12);
        usage.cpu += Duration::from_secs_f64(ticks as f64 / ticks_per_second as f64);
        usage.rss_bytes += number(21) * page;
        usage.cpu_wait = usage.cpu_wait.max(run_delay(pid));
    }
    Some(usage)
}

/// How long `pid` has been runnable but waiting for a CPU: `/proc/PID/schedstat` is
/// "time on CPU, time waiting on a run queue, time slices", in nanoseconds.
fn run_delay(pid: u32) -> Duration {
    std::fs::read_to_string(format!("/proc/{pid}/schedstat"))
        .ok()
        .and_then(|line| line.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(Duration::ZERO, Duration::from_nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_commands_replace_the_shell_and_compound_ones_run_as_written() {
        assert_eq!(shell_line("python3 bot.py"), "exec python3 bot.py");
        assert_eq!(
            shell_line("cd bot && python3 bot.py"),
            "cd bot && python3 bot.py"
        );
        assert_eq!(shell_line("LOG=1 python3 bot.py"), "LOG=1 python3 bot.py");
        assert_eq!(shell_line("exec node bot.js"), "exec node bot.js");
    }

    #[tokio::test]
    async fn a_command_is_measured_and_stopped_with_sigterm() {
        let dir = tempfile::tempdir().expect("dir");
        let log = dir.path().join("bot.log");
        let mut bot = BotCommand::spawn(
            "echo started; exec sleep 30",
            vec![("GENBOT_X".into(), "1".into())],
            &log,
        )
        .expect("spawn");
        let group = bot.group().expect("running");
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut usage = None;
        while Instant::now() < deadline {
            // A process in the middle of exec(2) briefly shows no resident memory.
            usage = group_usage(group).filter(|u| u.processes > 0 && u.rss_bytes > 0);
            if usage.is_some() && bot.log_tail(1) == "started" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let Some(usage) = usage else {
            eprintln!("SKIPPED a_command_is_measured_and_stopped_with_sigterm: no /proc");
            return;
        };
        assert!(usage.rss_bytes > 0, "{usage:?}");
        match bot.stop(Duration::from_secs(5)).await {
            Stopped::OnSigterm { status, .. } => assert!(status.contains("15"), "{status}"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_group_with_more_busy_processes_than_cpus_is_seen_waiting_for_one() {
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        let dir = tempfile::tempdir().expect("dir");
        // Twice as many spinning shells as CPUs: each must queue for one.
        let spin = format!(
            "for i in $(seq {}); do (while :; do :; done) & done; wait",
            2 * cpus
        );
        let mut bot =
            BotCommand::spawn(&spin, Vec::new(), &dir.path().join("bot.log")).expect("spawn");
        let group = bot.group().expect("running");
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut waited = Duration::ZERO;
        while waited < Duration::from_millis(100) && Instant::now() < deadline {
            waited = group_usage(group).map_or(Duration::ZERO, |u| u.cpu_wait);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bot.stop(Duration::from_secs(5)).await;
        if !std::path::Path::new("/proc/self/schedstat").exists() {
            eprintln!("SKIPPED a_group_with_more_busy_processes_than_cpus_is_seen_waiting_for_one: no schedstat");
            return;
        }
        assert!(waited >= Duration::from_millis(100), "{waited:?}");
    }

    #[tokio::test]
    async fn a_command_that_ignores_sigterm_is_killed_after_the_grace() {
        let dir = tempfile::tempdir().expect("dir");
        let mut bot = BotCommand::spawn(
            "trap '' TERM; echo ready; while true; do sleep 0.05; done",
            Vec::new(),
            &dir.path().join("bot.log"),
        )
        .expect("spawn");
        let deadline = Instant::now() + Duration::from_secs(5);
        while bot.log_tail(1) != "ready" && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let stopped = bot.stop(Duration::from_millis(300)).await;
        assert_eq!(
            stopped,
            Stopped::Killed {
                grace: Duration::from_millis(300)
            }
        );
    }
}
