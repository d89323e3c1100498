//! Start and stop (README, "Start and stop" and "Every paid job runs exactly once"): what
//! `genbot serve` waits for at start, what makes it exit, how long SIGTERM waits for running
//! handlers, and that a graceful stop hands its leases over at once.

use std::io::{Read, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use genbot_mocks::replicate::{ReplicateMock, ReplicateMockConfig};
use genbot_mocks::telegram::{Entry, SimUser, TelegramMock, TelegramMockConfig};
use genbot_store::JobStatus;
use tokio::process::Command;

use crate::process::{default_mocks, open, wait_until, Bot};

fn texts(user: &SimUser) -> usize {
    user.transcript()
        .iter()
        .filter(|e| matches!(e, Entry::BotText { .. }))
        .count()
}

/// PostgreSQL does not answer at start: serve waits with backoff, naming what it waits for
/// (the password redacted), and SIGTERM during the wait ends it cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_postgres_is_waited_for_at_start() {
    let (telegram, replicate) = default_mocks().await;
    let (_held, closed) = crate::closed_port();
    // Each try takes the pool's acquire timeout (sqlx retries a refused connection within
    // it): 1 s instead of the default 10 s lets the test see two tries, i.e. the wait goes on.
    let mut bot = Bot::new(
        &telegram,
        &replicate,
        &format!("postgres://genbot:pg-secret-pw@127.0.0.1:{closed}/genbot"),
    )
    .with("DB_CONNECT_TIMEOUT_SECONDS", "1");
    let log = bot.start_logged();
    // Two lines: a build that gave up after the first try would not log a second, nor end with
    // "stopped before the database answered" and exit 0.
    let waiting = |lines: usize| {
        let log = &log;
        async move { log.count("waiting for the database") >= lines }
    };
    wait_until(
        "a \"waiting for the database\" line",
        Duration::from_secs(30),
        || waiting(1),
    )
    .await;
    let first = Instant::now();
    wait_until(
        "a second \"waiting for the database\" line",
        Duration::from_secs(30),
        || waiting(2),
    )
    .await;
    // Between the two: the 0.5 s pause and a second try of DB_CONNECT_TIMEOUT_SECONDS=1, i.e.
    // 1.5 s; a build ignoring the setting tries for the default 10 s (10.5 s). The lower bound
    // shows the try waited for the server rather than failing at once.
    let between = first.elapsed();
    assert!(
        between >= Duration::from_millis(1000) && between < Duration::from_secs(6),
        "{between:?} between the two tries' lines; DB_CONNECT_TIMEOUT_SECONDS=1 gives 1.5 s:\n{}",
        log.text()
    );
    assert!(
        bot.exited().is_none(),
        "serve exited instead of waiting for PostgreSQL:\n{}",
        log.text()
    );
    let (status, _) = bot.terminate(Duration::from_secs(10)).await;
    let stderr = log.finish().await;
    assert!(status.success(), "{status:?}: {stderr}");
    assert!(
        stderr.contains("stopped before the database answered"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("pg-secret-pw"),
        "password in the logs: {stderr}"
    );
    assert_eq!(
        telegram
            .stats()
            .methods
            .get("getupdates")
            .copied()
            .unwrap_or(0),
        0,
        "polled Telegram without a database"
    );
}

/// A Bot API that answers every call 401 Unauthorized (a revoked token): serve does not wait,
/// it exits 2 saying the token was rejected, without printing it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_token_exits_2_at_once() {
    let replicate = ReplicateMock::start(ReplicateMockConfig::default())
        .await
        .unwrap();
    let api = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let api_url = format!("http://{}", api.local_addr().unwrap());
    // Answers each connection's requests with Telegram's 401 until the test ends.
    std::thread::spawn(move || {
        for stream in api.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                while matches!(stream.read(&mut buf), Ok(n) if n > 0) {
                    let body = r#"{"ok":false,"error_code":401,"description":"Unauthorized"}"#;
                    let answer = format!(
                        "HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if stream.write_all(answer.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_genbot"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env_clear()
        .env("TELEGRAM_BOT_TOKEN", "123456:revoked-secret")
        .env("TELEGRAM_API_URL", &api_url)
        .env("REPLICATE_API_URL", replicate.url())
        .env(
            "DATABASE_URL",
            format!("sqlite://{}", dir.path().join("t.db").display()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("a rejected token did not end serve within 30 s")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("rejected TELEGRAM_BOT_TOKEN"), "{stderr}");
    assert!(
        !stderr.contains("waiting for the Telegram Bot API"),
        "a rejected token was waited on: {stderr}"
    );
    assert!(
        !stderr.contains("revoked-secret"),
        "token in the logs: {stderr}"
    );
    eprintln!("rejected token: exited after {:?}", started.elapsed());
}

/// SIGTERM gives a running handler up to `SHUTDOWN_GRACE_SECONDS`: one that ends within it is
/// answered before the exit; one that would take longer is abandoned when the grace is over
/// (not waited for), its update left unhandled in the inbox and answered after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_waits_for_handlers_at_most_shutdown_grace_seconds() {
    let (telegram, replicate) = default_mocks().await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("grace.db").display());
    let slow = |handler_ms: u64, grace_s: u64| {
        Bot::new(&telegram, &replicate, &url)
            .with("SHUTDOWN_GRACE_SECONDS", &grace_s.to_string())
            .with("GENBOT_TEST_HOOKS", "1")
            .with("GENBOT_TEST_SLOW_HANDLERS_MS", &handler_ms.to_string())
    };
    let taken = |n: u64| {
        let telegram = &telegram;
        move || async move { telegram.stats().updates_delivered >= n }
    };

    // 1. The handler needs 1.5 s, the grace is 10 s: answered, then the process ends.
    let ann = telegram.user(80_001, "Ann", Some("en"));
    let mut bot = slow(1_500, 10);
    bot.start();
    ann.send_text("/start");
    wait_until("the bot took /start", Duration::from_secs(30), taken(1)).await;
    let (status, took) = bot.terminate(Duration::from_secs(20)).await;
    assert!(status.success(), "{status:?}");
    assert_eq!(
        texts(&ann),
        1,
        "the handler within the grace was not answered: {:?}",
        ann.transcript()
    );
    assert!(
        took < Duration::from_secs(8),
        "stopping took {took:?} for a 1.5 s handler"
    );

    // 2. The handler needs 10 s (the most `GENBOT_TEST_SLOW_HANDLERS_MS` allows), the grace is
    //    2 s: the stop waits about 2 s, no longer.
    let bea = telegram.user(80_002, "Bea", Some("en"));
    let mut bot = slow(10_000, 2);
    bot.start();
    bea.send_text("/start");
    wait_until("the bot took /start", Duration::from_secs(30), taken(2)).await;
    let (status, took) = bot.terminate(Duration::from_secs(30)).await;
    assert!(status.success(), "{status:?}");
    assert!(
        took >= Duration::from_millis(1_800),
        "stopped after {took:?}: the 2 s grace was not given"
    );
    assert!(
        took < Duration::from_secs(8),
        "stopped after {took:?}: the 2 s grace did not bound the wait for a 10 s handler"
    );
    assert_eq!(texts(&bea), 0, "{:?}", bea.transcript());

    // 3. The abandoned update stayed in the inbox: the next start answers it.
    let mut bot = Bot::new(&telegram, &replicate, &url);
    bot.start();
    wait_until(
        "Bea answered after the restart",
        Duration::from_secs(30),
        || async { texts(&bea) >= 1 },
    )
    .await;
    bot.kill().await;
}

/// SIGTERM ends the replica's leases at once: with a 30 s lease, another replica takes its
/// running jobs over within a few heartbeats, not after 30 s (a SIGKILL leaves them to expire).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_leases_so_another_replica_takes_over_at_once() {
    let telegram = TelegramMock::start(TelegramMockConfig::default())
        .await
        .unwrap();
    // Predictions outlive the test: the jobs stay running until someone takes them over.
    let replicate = ReplicateMock::start(ReplicateMockConfig {
        median_latency: Duration::from_secs(60),
        latency_sigma: 0.0,
        ..ReplicateMockConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("lease.db").display());
    let replica = |id: &str| {
        Bot::new(&telegram, &replicate, &url)
            .with("REPLICA_ID", id)
            .with("JOB_LEASE_SECONDS", "30")
            .with("JOB_HEARTBEAT_SECONDS", "1")
    };
    let mut a = replica("replica-a");
    a.start();
    let users: Vec<SimUser> = (0..3)
        .map(|n| telegram.user(81_000 + n, &format!("l{n}"), Some("en")))
        .collect();
    for user in &users {
        user.send_text(&format!("a long exposure number {}", user.id()));
    }
    let store = open(&url).await;
    let owned_by = |owner: &'static str| {
        let store = store.clone();
        async move {
            store
                .jobs_with_status(JobStatus::Running, 100)
                .await
                .unwrap()
                .iter()
                .filter(|j| j.owner.as_deref() == Some(owner) && j.prediction_id.is_some())
                .count()
        }
    };
    wait_until("A runs 3 predictions", Duration::from_secs(30), || async {
        owned_by("replica-a").await == 3
    })
    .await;
    let (status, _) = a.terminate(Duration::from_secs(20)).await;
    assert!(status.success(), "{status:?}");
    let stopped = Instant::now();
    let mut b = replica("replica-b");
    b.start();
    wait_until(
        "B takes A's 3 running jobs over",
        Duration::from_secs(15),
        || async { owned_by("replica-b").await == 3 },
    )
    .await;
    let took = stopped.elapsed();
    b.kill().await;
    eprintln!("lease hand-over: B owned A's jobs {took:?} after A stopped (lease 30 s)");
    assert!(
        took < Duration::from_secs(15),
        "took {took:?}: A's leases were left to expire"
    );
    assert_eq!(
        replicate.stats().created,
        3,
        "B adopted A's predictions rather than creating new ones"
    );
}
