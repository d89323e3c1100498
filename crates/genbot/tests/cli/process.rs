//! Running the real `genbot serve` as a child process, and waiting on conditions with deadlines.

use std::process::Stdio;
use std::time::{Duration, Instant};

use genbot_config::DatabaseUrl;
use genbot_mocks::replicate::{ReplicateMock, ReplicateMockConfig};
use genbot_mocks::telegram::repeats::Kill;
use genbot_mocks::telegram::{Entry, SimUser, TelegramMock, TelegramMockConfig};
use genbot_store::scratch::ScratchDatabase;
use genbot_store::Store;
use tokio::process::{Child, Command};

/// A `genbot serve` process and how to start it again.
pub(crate) struct Bot {
    pub(crate) env: Vec<(String, String)>,
    /// Extra `serve` arguments.
    args: Vec<String>,
    child: Option<Child>,
    /// The `--listen` port: fixed when set (see [`crate::free_port`]), else the child binds
    /// port 0 itself (nothing to pick and lose between a probe and the bind) and [`Bot::port`]
    /// reads the one it got from its log.
    port: Option<u16>,
    /// The current start's stderr, as it comes.
    lines: Option<Lines>,
    /// Every SIGKILL so far: a photo sent again is judged against them.
    kills: Vec<Kill>,
}

impl Bot {
    pub(crate) fn new(
        telegram: &TelegramMock,
        replicate: &ReplicateMock,
        database_url: &str,
    ) -> Bot {
        let env = [
            ("TELEGRAM_BOT_TOKEN", "123456:crash-secret"),
            ("TELEGRAM_API_URL", telegram.url()),
            ("REPLICATE_API_URL", replicate.url()),
            ("REPLICATE_API_TOKEN", "r8_crash-secret"),
            ("DATABASE_URL", database_url),
            ("REPLICATE_RATE_LIMIT", "100000"),
            ("JOB_LEASE_SECONDS", "3"),
            ("JOB_HEARTBEAT_SECONDS", "1"),
            ("RUST_LOG", "info"),
        ];
        Bot {
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            args: Vec::new(),
            child: None,
            port: None,
            lines: None,
            kills: Vec::new(),
        }
    }

    /// Sets `key` (over the default's value, if it has one).
    pub(crate) fn with(mut self, key: &str, value: &str) -> Bot {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    pub(crate) fn with_args(mut self, args: &[&str]) -> Bot {
        self.args.extend(args.iter().map(|a| (*a).to_owned()));
        self
    }

    /// Listens on `port` at every start, for a URL that must name it before the start (a
    /// webhook's) or a port that must stay this bot's after it died. Otherwise leave the port
    /// to the child and ask [`Bot::port`].
    pub(crate) fn listen_on(mut self, port: u16) -> Bot {
        self.port = Some(port);
        self
    }

    pub(crate) fn start(&mut self) {
        self.spawn();
    }

    /// Starts it and hands over its stderr, for a test that waits for a log line or reads the
    /// whole log after the stop.
    pub(crate) fn start_logged(&mut self) -> Log {
        self.spawn()
    }

    fn spawn(&mut self) -> Log {
        let port = self.port.unwrap_or(0);
        let mut child = Command::new(env!("CARGO_BIN_EXE_genbot"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(&self.args)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        // Read whether or not the test wants the log: a full pipe would stop the child.
        let log = Log::collect(child.stderr.take().expect("stderr is piped"));
        self.lines = Some(log.lines.clone());
        self.child = Some(child);
        log
    }

    /// The port the current start listens on: the fixed one, or the one the child says it
    /// bound (`listening on 127.0.0.1:PORT`, logged once the database answered), waited for.
    pub(crate) async fn port(&self) -> u16 {
        if let Some(port) = self.port {
            return port;
        }
        let lines = self.lines.clone().expect("the bot was started");
        let bound = || {
            lines.lock().unwrap().iter().find_map(|line| {
                let (_, rest) = line.split_once("listening on 127.0.0.1:")?;
                rest.split(|c: char| !c.is_ascii_digit())
                    .next()?
                    .parse::<u16>()
                    .ok()
            })
        };
        wait_until(
            "genbot serve says where it listens",
            Duration::from_secs(60),
            || async { bound().is_some() },
        )
        .await;
        bound().expect("just seen")
    }

    /// How the process ended, if it did.
    pub(crate) fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    pub(crate) async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let signalled = Instant::now();
            child.start_kill().unwrap(); // SIGKILL
            child.wait().await.unwrap();
            self.kills.push(Kill {
                signalled,
                dead: Instant::now(),
            });
        }
    }

    /// SIGTERM, then waits up to `limit` for the exit (failing after it); returns the status
    /// and how long the stop took.
    pub(crate) async fn terminate(
        &mut self,
        limit: Duration,
    ) -> (std::process::ExitStatus, Duration) {
        let mut child = self.child.take().expect("the bot is running");
        let signalled = Instant::now();
        sigterm(child.id().expect("the bot has not exited"));
        let status = tokio::time::timeout(limit, child.wait())
            .await
            .unwrap_or_else(|_| panic!("genbot serve still running {limit:?} after SIGTERM"))
            .unwrap();
        (status, signalled.elapsed())
    }

    /// The SIGKILLs of this bot so far.
    pub(crate) fn kills(&self) -> &[Kill] {
        &self.kills
    }
}

/// Both mocks with their default settings, for a test that needs nothing special of them.
pub(crate) async fn default_mocks() -> (TelegramMock, ReplicateMock) {
    let telegram = TelegramMock::start(TelegramMockConfig::default())
        .await
        .unwrap();
    let replicate = ReplicateMock::start(ReplicateMockConfig::default())
        .await
        .unwrap();
    (telegram, replicate)
}

/// Polls `check` every 50 ms until it holds or `limit` passes; says what it waited for.
pub(crate) async fn wait_until<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "waited {limit:?} for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) async fn open(database_url: &str) -> Store {
    Store::connect(&DatabaseUrl::parse(database_url).unwrap(), 2)
        .await
        .unwrap()
}

/// A scratch PostgreSQL database on the `DATABASE_URL` server for one test (drop it after), or
/// `None` with a visible SKIPPED line when `DATABASE_URL` names no PostgreSQL server (a
/// failure under CI).
pub(crate) async fn scratch_postgres(test: &str) -> Option<ScratchDatabase> {
    match std::env::var("DATABASE_URL")
        .ok()
        .map(|u| DatabaseUrl::parse(&u))
    {
        Some(Ok(DatabaseUrl::Postgres(server))) => {
            Some(ScratchDatabase::create(&server).await.unwrap())
        }
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set but DATABASE_URL does not name a PostgreSQL server"
            );
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test}: set DATABASE_URL=postgres://… to run it"
            );
            None
        }
    }
}

/// Whether the bot has said anything to `user` yet.
pub(crate) fn answered(user: &SimUser) -> bool {
    user.transcript()
        .iter()
        .any(|e| matches!(e, Entry::BotText { .. }))
}

/// What a PostgreSQL replica test starts from: a scratch database (drop it at the end), both
/// mocks, and a first replica that has answered user 75 001's `/start` (later users of the
/// test take other ids).
pub(crate) struct FirstReplica {
    pub(crate) database: ScratchDatabase,
    pub(crate) database_url: String,
    pub(crate) telegram: TelegramMock,
    pub(crate) replicate: ReplicateMock,
    pub(crate) bot: Bot,
    /// The replica's stderr.
    pub(crate) log: Log,
}

/// Creates the scratch database for `test`, starts both mocks and a replica with `REPLICA_ID`
/// `replica_id`, and waits up to `limit` for it to answer a first user's `/start` (`what` names
/// the wait if it times out). `None`, said as SKIPPED, when `DATABASE_URL` is no PostgreSQL.
pub(crate) async fn start_first_replica(
    test: &str,
    replica_id: &str,
    what: &str,
    limit: Duration,
) -> Option<FirstReplica> {
    let database = scratch_postgres(test).await?;
    let database_url = database_url_text(&database);
    let (telegram, replicate) = default_mocks().await;
    let mut bot = Bot::new(&telegram, &replicate, &database_url).with("REPLICA_ID", replica_id);
    let log = bot.start_logged();
    let user = telegram.user(75_001, "First", Some("en"));
    user.send_text("/start");
    wait_until(what, limit, || async { answered(&user) }).await;
    Some(FirstReplica {
        database,
        database_url,
        telegram,
        replicate,
        bot,
        log,
    })
}

/// The scratch database's URL as text, credentials included (for a child's environment).
pub(crate) fn database_url_text(database: &ScratchDatabase) -> String {
    match database.url() {
        DatabaseUrl::Postgres(url) => url.expose().to_owned(),
        DatabaseUrl::Sqlite { path } => format!("sqlite://{}", path.display()),
    }
}

/// A child's stderr lines so far.
type Lines = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// A child's stderr, collected line by line as it comes, so a test can wait for a line with a
/// deadline (instead of sleeping and hoping it was written) and still read everything later.
pub(crate) struct Log {
    lines: Lines,
    reader: tokio::task::JoinHandle<()>,
}

impl Log {
    pub(crate) fn collect(stderr: tokio::process::ChildStderr) -> Log {
        use tokio::io::AsyncBufReadExt;
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = lines.clone();
        let reader = tokio::spawn(async move {
            let mut input = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = input.next_line().await {
                sink.lock().unwrap().push(without_colours(&line));
            }
        });
        Log { lines, reader }
    }

    pub(crate) fn text(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Lines containing `wanted` so far.
    pub(crate) fn count(&self, wanted: &str) -> usize {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(wanted))
            .count()
    }

    /// Lines containing each of `wanted` so far.
    pub(crate) fn count_all(&self, wanted: &[&str]) -> usize {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| wanted.iter().all(|w| l.contains(w)))
            .count()
    }

    /// Everything, once the child closed its stderr (it exited).
    pub(crate) async fn finish(self) -> String {
        let _ = tokio::time::timeout(Duration::from_secs(10), self.reader).await;
        self.lines.lock().unwrap().join("\n")
    }
}

/// `line` without its ANSI escape sequences (the log's colours), so a test matches its text
/// (`rows_affected=0`, not `rows_affected\x1b[0m\x1b[2m=\x1b[0m0`).
fn without_colours(line: &str) -> String {
    let mut plain = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters… final byte (a letter).
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
}

/// Sends SIGTERM to `pid`.
pub(crate) fn sigterm(pid: u32) {
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -TERM {pid} failed");
}
