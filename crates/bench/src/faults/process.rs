//! One replica of the bot under test: `genbot serve` as a child process, started, killed with
//! SIGKILL and started again; its `/metrics` read over loopback.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use genbot_mocks::telegram::repeats::Kill;
use parking_lot::Mutex;
use tokio::process::{Child, Command};

use super::FaultError;

/// Longest a replica may take to answer `/healthz` after it is started.
const START_LIMIT: Duration = Duration::from_secs(30);

/// A `genbot serve` process and what it takes to start it again.
#[derive(Debug)]
pub(crate) struct BotProcess {
    pub(crate) name: String,
    program: PathBuf,
    env: Vec<(String, String)>,
    port: u16,
    log: PathBuf,
    child: Option<Child>,
    http: reqwest::Client,
    /// The stage's record of every SIGKILL, for telling a send at the wire from a re-send.
    kills: Arc<Mutex<Vec<Kill>>>,
}

/// A free loopback port (bound, then released for the child to take).
fn free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

impl BotProcess {
    pub(crate) fn new(
        name: &str,
        program: &Path,
        env: Vec<(String, String)>,
        log_dir: &Path,
        kills: Arc<Mutex<Vec<Kill>>>,
    ) -> Result<BotProcess, FaultError> {
        Ok(BotProcess {
            name: name.to_owned(),
            program: program.to_owned(),
            env,
            port: free_port().map_err(FaultError::Mock)?,
            log: log_dir.join(format!("{name}.log")),
            child: None,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(2))
                .build()
                .unwrap_or_default(),
            kills,
        })
    }

    /// Starts the process (appending to its log) and waits until `/healthz` answers.
    pub(crate) async fn start(&mut self) -> Result<(), FaultError> {
        let spawn_failed = |source| FaultError::Spawn {
            program: self.program.display().to_string(),
            source,
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(spawn_failed)?;
        let err = log.try_clone().map_err(spawn_failed)?;
        let child = Command::new(&self.program)
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{}", self.port),
                "--initial-credits",
                "1000",
            ])
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .map_err(spawn_failed)?;
        self.child = Some(child);
        self.wait_healthy().await
    }

    async fn wait_healthy(&mut self) -> Result<(), FaultError> {
        let started = Instant::now();
        let url = format!("http://127.0.0.1:{}/healthz", self.port);
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(FaultError::Exited {
                        replica: self.name.clone(),
                        status: status.to_string(),
                        log: self.log_tail(5),
                    });
                }
            }
            if let Ok(answer) = self.http.get(&url).send().await {
                if answer.status().is_success() {
                    return Ok(());
                }
            }
            if started.elapsed() > START_LIMIT {
                return Err(FaultError::NotHealthy {
                    replica: self.name.clone(),
                    waited_s: started.elapsed().as_secs_f64(),
                    log: self.log_tail(5),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The exit status once the process has exited on its own (it is then forgotten, so
    /// [`BotProcess::start`] can start it again); `None` while it runs or before it started.
    pub(crate) fn exited(&mut self) -> Option<String> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        self.child = None;
        Some(status.to_string())
    }

    /// SIGKILL, as the kernel's OOM killer or a node failure would: no shutdown code runs.
    /// The moments of the signal and of the reaping are recorded on the stage.
    pub(crate) async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let signalled = Instant::now();
            let _ = child.start_kill();
            let _ = child.wait().await;
            self.kills.lock().push(Kill {
                signalled,
                dead: Instant::now(),
            });
        }
    }

    /// The value of counter or gauge `name` (summed over its labels) in `/metrics`.
    pub(crate) async fn metric(&self, name: &str) -> Option<f64> {
        let url = format!("http://127.0.0.1:{}/metrics", self.port);
        let text = self.http.get(url).send().await.ok()?.text().await.ok()?;
        let mut found = None;
        for line in text.lines() {
            let Some(rest) = line.strip_prefix(name) else {
                continue;
            };
            if !(rest.starts_with(' ') || rest.starts_with('{')) {
                continue;
            }
            let value = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok());
            if let Some(value) = value {
                *found.get_or_insert(0.0) += value;
            }
        }
        found
    }

    /// The last `lines` lines of the process's log, for a report that must say why.
    pub(crate) fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join(" | ")
    }
}
