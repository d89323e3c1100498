//! Crash tests: the real `genbot serve` processes against both mocks, killed with SIGKILL and
//! started again; outcomes are counted at the Replicate mock and in the database.

use std::collections::HashSet;
use std::process::Stdio;
use std::time::{Duration, Instant};

use genbot_config::DatabaseUrl;
use genbot_mocks::replicate::{ReplicateMock, ReplicateMockConfig};
use genbot_mocks::telegram::{TelegramMock, TelegramMockConfig};
use genbot_store::{JobStatus, Store};
use tokio::process::{Child, Command};

/// A `genbot serve` process and how to start it again.
struct Bot {
    env: Vec<(String, String)>,
    child: Option<Child>,
}

impl Bot {
    fn new(telegram: &TelegramMock, replicate: &ReplicateMock, database_url: &str) -> Bot {
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
            child: None,
        }
    }

    fn with(mut self, key: &str, value: &str) -> Bot {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    fn start(&mut self) {
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        };
        let child = Command::new(env!("CARGO_BIN_EXE_genbot"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.start_kill().unwrap(); // SIGKILL
            child.wait().await.unwrap();
        }
    }
}

/// Polls `check` every 50 ms until it holds or `limit` passes; says what it waited for.
async fn wait_until<F, Fut>(what: &str, limit: Duration, mut check: F)
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

async fn open(database_url: &str) -> Store {
    Store::connect(&DatabaseUrl::parse(database_url).unwrap(), 2)
        .await
        .unwrap()
}

/// Every job final, each succeeded job with its own prediction, every prediction at the mock
/// belonging to exactly one job, every balance equal to its ledger.
async fn assert_exactly_once(store: &Store, replicate: &ReplicateMock, users: std::ops::Range<i64>) {
    let mut jobs = Vec::new();
    for status in [JobStatus::Succeeded, JobStatus::Failed, JobStatus::Canceled] {
        jobs.extend(store.jobs_with_status(status, 100_000).await.unwrap());
    }
    let counts = store.count_jobs_by_status().await.unwrap();
    assert_eq!((counts.queued, counts.running), (0, 0), "{counts:?}");
    let predictions: Vec<&str> = jobs
        .iter()
        .filter_map(|j| j.prediction_id.as_deref())
        .collect();
    let distinct: HashSet<&str> = predictions.iter().copied().collect();
    assert_eq!(distinct.len(), predictions.len(), "a prediction shared by two jobs");
    let created = replicate.stats().created;
    assert_eq!(
        created,
        predictions.len() as u64,
        "predictions at the mock ({created}) != predictions of jobs ({}): duplicated or lost",
        predictions.len()
    );
    assert_eq!(
        counts.succeeded, created,
        "every job succeeded once with its one prediction: {counts:?}"
    );
    for audit in store.credit_audit(users).await.unwrap() {
        assert_eq!(
            audit.credits, audit.expected,
            "user {}: credits != initial + added − charged + refunded",
            audit.user
        );
    }
}

/// 100 users, SIGKILL while creates are in flight (the mock holds every create's answer back)
/// and jobs are queued and running; after a restart every job ends exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_run_then_restart_runs_every_job_exactly_once() {
    let telegram = TelegramMock::start(TelegramMockConfig::default())
        .await
        .unwrap();
    let replicate = ReplicateMock::start(ReplicateMockConfig {
        median_latency: Duration::from_millis(800),
        create_response_delay: Duration::from_millis(400),
        ..ReplicateMockConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite://{}", dir.path().join("crash.db").display());
    let mut bot = Bot::new(&telegram, &replicate, &database_url)
        .with("MAX_CONCURRENT_GENERATIONS", "20");
    bot.start();
    let users: Vec<_> = (0..100)
        .map(|n| telegram.user(10_000 + n, &format!("u{n}"), Some("en")))
        .collect();
    for user in &users {
        user.send_text("/start");
        user.send_text(&format!("a lighthouse number {}", user.id()));
    }
    wait_until("30 predictions at the mock", Duration::from_secs(60), || async {
        replicate.stats().created >= 30
    })
    .await;
    bot.kill().await;
    let store = open(&database_url).await;
    let before = store.count_jobs_by_status().await.unwrap();
    assert!(
        before.queued + before.running > 0,
        "the kill came too late to test anything: {before:?}"
    );
    bot.start();
    let sent = telegram.stats().updates_sent;
    wait_until("every update fetched again after the restart", Duration::from_secs(60), || async {
        telegram.stats().updates_delivered >= sent
    })
    .await;
    wait_until("every job final after the restart", Duration::from_secs(90), || async {
        let c = store.count_jobs_by_status().await.unwrap();
        c.queued == 0 && c.running == 0 && c.total() > 0
    })
    .await;
    bot.kill().await;
    assert_exactly_once(&store, &replicate, 10_000..10_100).await;
}
