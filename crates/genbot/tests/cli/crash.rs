//! Crash tests: the real `genbot serve` processes against both mocks, killed with SIGKILL and
//! started again; outcomes are counted at the Replicate mock and in the database.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use genbot_mocks::replicate::{ReplicateMock, ReplicateMockConfig};
use genbot_mocks::telegram::{TelegramMock, TelegramMockConfig};
use genbot_store::{JobStatus, Store};

use crate::process::{database_url_text, default_mocks, open, scratch_postgres, wait_until, Bot};
use crate::wire::{
    assert_files_repeated_only_at_the_wire, assert_photos_repeated_only_at_the_wire,
};

/// Every job final, each succeeded job with its own prediction, every prediction at the mock
/// belonging to exactly one job, every balance equal to its ledger.
async fn assert_exactly_once(
    store: &Store,
    replicate: &ReplicateMock,
    users: std::ops::Range<i64>,
) {
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
    assert_eq!(
        distinct.len(),
        predictions.len(),
        "a prediction shared by two jobs"
    );
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
    let mut bot =
        Bot::new(&telegram, &replicate, &database_url).with("MAX_CONCURRENT_GENERATIONS", "20");
    bot.start();
    let users: Vec<_> = (0..100)
        .map(|n| telegram.user(10_000 + n, &format!("u{n}"), Some("en")))
        .collect();
    for user in &users {
        user.send_text("/start");
        user.send_text(&format!("a lighthouse number {}", user.id()));
    }
    wait_until(
        "30 predictions at the mock",
        Duration::from_secs(60),
        || async { replicate.stats().created >= 30 },
    )
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
    wait_until(
        "every update fetched again after the restart",
        Duration::from_secs(60),
        || async { telegram.stats().updates_delivered >= sent },
    )
    .await;
    // Updates taken from Telegram but not handled at the kill are replayed from the inbox:
    // every user's prompt becomes exactly one job.
    wait_until(
        "100 jobs, every one final, after the restart",
        Duration::from_secs(90),
        || async {
            let c = store.count_jobs_by_status().await.unwrap();
            c.queued == 0 && c.running == 0 && c.total() >= 100
        },
    )
    .await;
    bot.kill().await;
    assert_photos_repeated_only_at_the_wire(&telegram, bot.kills());
    assert_exactly_once(&store, &replicate, 10_000..10_100).await;
    assert_one_job_per_user(&store, 10_000..10_100).await;
}

/// Every user in `users` has exactly one job.
async fn assert_one_job_per_user(store: &Store, users: std::ops::Range<i64>) {
    let mut per_user = std::collections::HashMap::<i64, usize>::new();
    for status in [JobStatus::Succeeded, JobStatus::Failed, JobStatus::Canceled] {
        for job in store.jobs_with_status(status, 100_000).await.unwrap() {
            *per_user.entry(job.user_id.0).or_default() += 1;
        }
    }
    let wrong: Vec<(i64, usize)> = users
        .map(|u| (u, per_user.get(&u).copied().unwrap_or(0)))
        .filter(|(_, n)| *n != 1)
        .collect();
    assert!(
        wrong.is_empty(),
        "users without exactly one job (user, jobs): {wrong:?}"
    );
}

/// How long B may take to take A's running jobs over before the test calls it lost: ten times
/// the lease (3 s) and heartbeat (1 s) a healthy take-over needs (3–5 s on this machine; what
/// each run took is printed). Only a build that never takes over, or ignores the lease by far,
/// fails it; a loaded machine does not.
const TAKEOVER_BOUND: Duration = Duration::from_secs(40);
/// How long after the take-over until B starts one of A's queued jobs: a slot frees when a
/// prediction ends (median 1 s, log-normal), with the same room.
const QUEUED_START_BOUND: Duration = Duration::from_secs(20);
/// Users with one prompt each: more than the slots (10) and the 12 creates waited for, so the
/// kill leaves jobs queued and running; more would only lengthen the drain.
const REPLICA_USERS: i64 = 30;

/// Two replicas on one PostgreSQL (+ Redis when `REDIS_URL` is set); A receives 30 prompts and
/// is killed mid-run (with 12 predictions created of 10 slots, most of the 30 are still
/// queued); B starts A's queued jobs and takes over its running ones when their leases
/// expire. Predictions == jobs, and the mock never saw more running than the one global
/// `MAX_CONCURRENT_GENERATIONS`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_one_queue_and_a_killed_ones_jobs_are_taken_over() {
    let Some(database) =
        scratch_postgres("two_replicas_share_one_queue_and_a_killed_ones_jobs_are_taken_over")
            .await
    else {
        return;
    };
    let database_url = database_url_text(&database);
    let front = TelegramMock::start(TelegramMockConfig::default())
        .await
        .unwrap();
    let idle = TelegramMock::start(TelegramMockConfig::default())
        .await
        .unwrap();
    let replicate = ReplicateMock::start(ReplicateMockConfig {
        median_latency: Duration::from_millis(1000),
        create_response_delay: Duration::from_millis(100),
        ..ReplicateMockConfig::default()
    })
    .await
    .unwrap();
    let limit = 10;
    let replica = |telegram: &TelegramMock, id: &str| {
        let mut bot = Bot::new(telegram, &replicate, &database_url)
            .with("REPLICA_ID", id)
            .with("MAX_CONCURRENT_GENERATIONS", &limit.to_string());
        if let Ok(redis) = std::env::var("REDIS_URL") {
            bot = bot.with("REDIS_URL", &redis);
        }
        bot
    };
    let mut a = replica(&front, "replica-a");
    let mut b = replica(&idle, "replica-b");
    a.start();
    // A migrates first, so both do not race to create the schema on an empty database.
    let store = {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let store = open(&database_url).await;
            if store.count_jobs_by_status().await.is_ok() {
                break store;
            }
            assert!(
                Instant::now() < deadline,
                "replica A never created the schema"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    b.start();
    let users: Vec<_> = (0..REPLICA_USERS)
        .map(|n| front.user(20_000 + n, &format!("u{n}"), Some("en")))
        .collect();
    for user in &users {
        user.send_text("/start");
        user.send_text(&format!("a harbour number {}", user.id()));
    }
    wait_until(
        "12 predictions at the mock",
        Duration::from_secs(60),
        || async { replicate.stats().created >= 12 },
    )
    .await;
    a.kill().await;
    let killed_at = Instant::now();
    let at_kill = store.count_jobs_by_status().await.unwrap();
    assert!(at_kill.queued > 0 && at_kill.running > 0, "{at_kill:?}");
    // The jobs queued at the kill, by id: B also records A's unhandled updates as it takes
    // them over, so the count of queued jobs can stay up while these start.
    let queued_at_kill: std::collections::HashSet<_> = store
        .jobs_with_status(JobStatus::Queued, 10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.id)
        .collect();
    // A held every global slot: its predictions still run at Replicate, so B may start queued
    // jobs only as they end; it takes them over when their leases (3 s) expire.
    wait_until("B takes over A's running jobs", TAKEOVER_BOUND, || async {
        let running = store
            .jobs_with_status(JobStatus::Running, 1_000)
            .await
            .unwrap();
        running
            .iter()
            .all(|j| j.owner.as_deref() != Some("replica-a"))
    })
    .await;
    let taken_over_after = killed_at.elapsed();
    wait_until(
        "B starts A's queued jobs",
        TAKEOVER_BOUND + QUEUED_START_BOUND,
        || async {
            let still: std::collections::HashSet<_> = store
                .jobs_with_status(JobStatus::Queued, 10_000)
                .await
                .unwrap()
                .into_iter()
                .map(|j| j.id)
                .collect();
            queued_at_kill.iter().any(|id| !still.contains(id))
        },
    )
    .await;
    let queued_started_after = killed_at.elapsed();
    wait_until("every job final on B", Duration::from_secs(120), || async {
        let c = store.count_jobs_by_status().await.unwrap();
        c.queued == 0 && c.running == 0
    })
    .await;
    // B's outbox settles every result on PostgreSQL too (A's users are unknown to B's Telegram,
    // so their deliveries end as recorded refusals rather than photos).
    wait_until(
        "every delivery recorded",
        Duration::from_secs(60),
        || async { store.undelivered().await.unwrap() == 0 },
    )
    .await;
    b.kill().await;
    eprintln!(
        "two replicas: A killed with {at_kill:?}; B took its running jobs over after {taken_over_after:?} and started its queued ones after {queued_started_after:?}"
    );
    let max_running = replicate.stats().max_running;
    assert!(
        max_running <= limit,
        "the mock saw {max_running} running at once; MAX_CONCURRENT_GENERATIONS={limit} over both replicas"
    );
    assert_exactly_once(&store, &replicate, 20_000..20_000 + REPLICA_USERS).await;
    if let Store::Postgres(pg) = &store {
        pg.close().await;
    }
    database.drop_now().await.unwrap();
}

/// Webhook mode with no traffic stops within 10 s of SIGTERM (it used to hang on).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_mode_stops_within_ten_seconds_of_sigterm() {
    let (telegram, replicate) = default_mocks().await;
    let dir = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite://{}", dir.path().join("webhook.db").display());
    // Fixed: the webhook URL naming it is an argument.
    let port = crate::free_port();
    let mut bot = Bot::new(&telegram, &replicate, &database_url)
        .listen_on(port)
        .with_args(&[
            "--webhook-url",
            &format!("http://127.0.0.1:{port}/telegram/webhook"),
        ]);
    bot.start();
    wait_until("the webhook is set", Duration::from_secs(30), || async {
        telegram
            .stats()
            .methods
            .get("setwebhook")
            .copied()
            .unwrap_or(0)
            > 0
    })
    .await;
    let health = format!("http://127.0.0.1:{port}/healthz");
    wait_until("/healthz answers", Duration::from_secs(30), || async {
        reqwest::get(&health).await.is_ok_and(|r| r.status() == 200)
    })
    .await;
    let (status, took) = bot.terminate(Duration::from_secs(10)).await;
    assert!(status.success(), "{status:?}");
    eprintln!("webhook mode stopped {took:?} after SIGTERM");
}

/// With the Bot API unreachable, serve waits (saying what it waits for) instead of exiting,
/// and SIGTERM still stops it at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_bot_api_is_waited_for_not_fatal() {
    let (telegram, replicate) = default_mocks().await;
    let dir = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite://{}", dir.path().join("w.db").display());
    let (_held, closed) = crate::closed_port();
    let mut bot = Bot::new(&telegram, &replicate, &database_url)
        .with("TELEGRAM_BOT_TOKEN", "123456:wait-secret")
        .with("TELEGRAM_API_URL", &format!("http://127.0.0.1:{closed}"));
    let log = bot.start_logged();
    // Asked twice (the backoff's first pause is 0.5 s): it keeps waiting, not just says so.
    wait_until(
        "two \"waiting for the Telegram Bot API\" lines",
        Duration::from_secs(30),
        || async { log.count("waiting for the Telegram Bot API") >= 2 },
    )
    .await;
    assert!(
        bot.exited().is_none(),
        "serve exited instead of waiting for the Bot API:\n{}",
        log.text()
    );
    let (status, _) = bot.terminate(Duration::from_secs(10)).await;
    let stderr = log.finish().await;
    assert!(status.success(), "{status:?}: {stderr}");
    assert!(!stderr.contains("refused the bot"), "{stderr}");
    assert!(
        !stderr.contains("wait-secret"),
        "token in the logs: {stderr}"
    );
}

/// 100 users; SIGKILL while results are being delivered (some sent, some finished but not yet
/// sent, some still generating); after a restart every user has their photo, and only a send
/// that was on the wire at the kill can arrive twice (Telegram has no idempotency key).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_delivery_then_restart_every_user_gets_their_photo() {
    kill_during_delivery(30_000, None).await;
}

/// As above, with every image a panorama Telegram refuses as a photo, so each goes as a
/// document after its photo's refusal: a document Telegram took before the kill (its id kept,
/// the delivery not recorded) is recorded at the restart, never sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_delivery_then_restart_every_user_gets_their_document() {
    kill_during_delivery(31_000, Some((2_100, 100))).await;
}

/// 100 users' prompts, a SIGKILL once 20 results are delivered, a restart: every user gets
/// exactly one result (less repeats the kill caught at the wire). `dimensions`: the outputs'
/// size (`None`: the tiny default photo; a panorama goes as a document).
async fn kill_during_delivery(first_user: i64, dimensions: Option<(u32, u32)>) {
    use genbot_mocks::telegram::Entry;
    let as_document = dimensions.is_some();
    let telegram = TelegramMock::start(TelegramMockConfig::default())
        .await
        .unwrap();
    let replicate = ReplicateMock::start(ReplicateMockConfig {
        median_latency: Duration::from_millis(300),
        ..ReplicateMockConfig::default()
    })
    .await
    .unwrap();
    replicate.set_output_dimensions(dimensions);
    let dir = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite://{}", dir.path().join("deliver.db").display());
    let mut bot = Bot::new(&telegram, &replicate, &database_url);
    bot.start();
    let users: Vec<_> = (0..100)
        .map(|n| telegram.user(first_user + n, &format!("u{n}"), Some("en")))
        .collect();
    for user in &users {
        user.send_text("/start");
        user.send_text(&format!("a kite number {}", user.id()));
    }
    let photos = |user: &genbot_mocks::telegram::SimUser| {
        user.transcript()
            .iter()
            .filter(|e| match e {
                Entry::BotPhoto { .. } => !as_document,
                Entry::BotDocument { .. } => as_document,
                _ => false,
            })
            .count()
    };
    wait_until("20 photos delivered", Duration::from_secs(60), || async {
        users.iter().map(photos).sum::<usize>() >= 20
    })
    .await;
    bot.kill().await;
    let store = open(&database_url).await;
    let at_kill = users.iter().map(photos).sum::<usize>();
    let undelivered = store.undelivered().await.unwrap();
    bot.start();
    let sent = telegram.stats().updates_sent;
    wait_until(
        "every update fetched again",
        Duration::from_secs(60),
        || async { telegram.stats().updates_delivered >= sent },
    )
    .await;
    wait_until(
        "100 jobs, every one final and delivered",
        Duration::from_secs(120),
        || async {
            let c = store.count_jobs_by_status().await.unwrap();
            c.total() >= 100
                && c.queued == 0
                && c.running == 0
                && store.undelivered().await.unwrap() == 0
        },
    )
    .await;
    let with_job: HashSet<i64> = store
        .jobs_with_status(JobStatus::Succeeded, 1_000)
        .await
        .unwrap()
        .iter()
        .map(|j| j.user_id.0)
        .collect();
    wait_until(
        "every user with a job has a photo",
        Duration::from_secs(30),
        || async {
            users
                .iter()
                .filter(|u| with_job.contains(&u.id()))
                .all(|u| photos(u) >= 1)
        },
    )
    .await;
    bot.kill().await;
    // A photo sent twice is allowed only when the kill caught its first copy at the wire.
    let at_wire = assert_files_repeated_only_at_the_wire(&telegram, bot.kills(), as_document);
    let twice: Vec<i64> = users
        .iter()
        .filter(|u| photos(u) > 1)
        .map(|u| u.id())
        .collect();
    eprintln!(
        "delivery: {at_kill} photos before the kill, {undelivered} finished but undelivered at the kill; {} jobs, every one delivered; users with two photos (each at the wire): {twice:?}",
        with_job.len()
    );
    assert_eq!(
        with_job.len(),
        users.len(),
        "every user's prompt became a job (updates unhandled at the kill are replayed)"
    );
    assert!(
        undelivered > 0 || at_kill < with_job.len(),
        "the kill came after every delivery"
    );
    let beyond: Vec<(i64, usize)> = users
        .iter()
        .map(|u| {
            (
                u.id(),
                photos(u) - at_wire.get(&u.id()).copied().unwrap_or(0),
            )
        })
        .filter(|(_, different)| *different != 1)
        .collect();
    assert!(
        beyond.is_empty(),
        "users without exactly one different photo (user, photos less repeats at the wire): {beyond:?}"
    );
    let ids = first_user..first_user + 100;
    assert_exactly_once(&store, &replicate, ids.clone()).await;
    assert_one_job_per_user(&store, ids).await;
}

/// 50 users each send /start and a prompt at once, under Telegram's 30 sends/s (100 answers
/// against a burst of 30, so the pacer holds answers for seconds while predictions end): every
/// /start is answered and every image delivered, with at most one progress message per job
/// (sends per job ≤ 3: the queue message, one progress message, the photo). A queue position
/// stands aside while answers wait for the short budget, so a prompt whose job started first
/// gets none; one that gets it gets it before its image.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_the_send_budget_answers_go_first_and_a_job_costs_at_most_three_sends() {
    use genbot_mocks::telegram::Entry;
    let telegram = TelegramMock::start(TelegramMockConfig::default())
        .await
        .unwrap();
    let replicate = ReplicateMock::start(ReplicateMockConfig {
        median_latency: Duration::from_millis(800),
        ..ReplicateMockConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite://{}", dir.path().join("budget.db").display());
    let mut bot = Bot::new(&telegram, &replicate, &database_url);
    bot.start();
    let users: Vec<_> = (0..50)
        .map(|n| telegram.user(40_000 + n, &format!("u{n}"), Some("en")))
        .collect();
    for user in &users {
        user.send_text("/start");
        user.send_text(&format!("a lantern number {}", user.id()));
    }
    let photo = |e: &Entry| matches!(e, Entry::BotPhoto { .. });
    wait_until(
        "every user has a photo",
        Duration::from_secs(120),
        || async { users.iter().all(|u| u.transcript().iter().any(photo)) },
    )
    .await;
    bot.kill().await;
    let mut worst = 0;
    for user in &users {
        let transcript = user.transcript();
        let texts: Vec<(u32, &str)> = transcript
            .iter()
            .filter_map(|e| match e {
                Entry::BotText { text, edits, .. } => Some((*edits, text.as_str())),
                _ => None,
            })
            .collect();
        assert!(
            (1..=2).contains(&texts.len()),
            "a greeting and at most one queue message: {transcript:?}"
        );
        if texts.len() == 2 {
            let position = transcript
                .iter()
                .position(|e| matches!(e, Entry::BotText { text, .. } if !text.starts_with("Hi")));
            let image = transcript.iter().position(photo);
            assert!(
                position < image,
                "the queue message came after the image: {transcript:?}"
            );
        }
        // Sends for the job: the queue message and its edits (if any), chat actions and the
        // photo.
        let queue_message = texts.get(1).map_or(0, |(edits, _)| 1 + *edits as usize);
        let sends = queue_message
            + transcript
                .iter()
                .filter(|e| matches!(e, Entry::BotAction(_)) || photo(e))
                .count();
        worst = worst.max(sends);
        assert_eq!(transcript.iter().filter(|e| photo(e)).count(), 1);
    }
    let latencies = telegram.answers().latencies_since(0);
    let mut sorted = latencies.clone();
    sorted.sort();
    let median = sorted[sorted.len() / 2];
    eprintln!(
        "send budget: 50 users, {} answers, median answer {median:?}, most sends for one job {worst}",
        latencies.len()
    );
    assert!(worst <= 3, "a job cost {worst} sends");
    // Answers before progress: every greeting went out before the first progress edit.
    let greetings: HashSet<(i64, i64)> = users
        .iter()
        .filter_map(|u| {
            u.transcript().iter().find_map(|e| match e {
                Entry::BotText { message_id, .. } => Some((u.id(), *message_id)),
                _ => None,
            })
        })
        .collect();
    let order = telegram.sent_in_order();
    let last_greeting = order
        .iter()
        .rposition(|s| !s.edit && greetings.contains(&(s.chat, s.message_id)))
        .unwrap();
    let first_edit = order.iter().position(|s| s.edit);
    eprintln!(
        "send order: last greeting at {last_greeting}, first progress edit at {first_edit:?} of {}",
        order.len()
    );
    assert!(
        first_edit.is_none_or(|edit| edit > last_greeting),
        "a progress edit (send {first_edit:?}) went out before the last /start answer (send {last_greeting})"
    );
}

/// Telegram answers a photo 502: it is delivered once, on the next try, from the bytes kept
/// when the prediction succeeded. A user who blocked the bot: one attempt, then the delivery is
/// recorded as given up, never retried. (teloxide waits 10 s after a 5xx before returning it:
/// the blocked user's part runs within that pause.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_502_is_retried_until_delivered_and_a_403_is_not_retried() {
    use genbot_mocks::telegram::Entry;
    let telegram = TelegramMock::start(TelegramMockConfig::default())
        .await
        .unwrap();
    // Outputs vanish after their first download (Replicate's hour, compressed): every send
    // after the first, and every retry, must use the bytes kept when the prediction succeeded.
    let replicate = ReplicateMock::start(ReplicateMockConfig {
        outputs_served_once: true,
        ..ReplicateMockConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite://{}", dir.path().join("faults.db").display());
    let mut bot = Bot::new(&telegram, &replicate, &database_url);
    bot.start();
    let store = open(&database_url).await;
    let photos = |user: &genbot_mocks::telegram::SimUser| {
        user.transcript()
            .iter()
            .filter(|e| matches!(e, Entry::BotPhoto { .. }))
            .count()
    };
    let sendphoto_calls = || {
        telegram
            .stats()
            .methods
            .get("sendphoto")
            .copied()
            .unwrap_or(0)
    };

    let started = Instant::now();
    let bea = telegram.user(50_001, "Bea", Some("en"));
    let cid = telegram.user(50_002, "Cid", Some("en"));
    cid.send_text("/start");
    wait_until("Cid greeted", Duration::from_secs(30), || async {
        cid.transcript()
            .iter()
            .any(|e| matches!(e, Entry::BotText { .. }))
    })
    .await;
    telegram.block(50_002);
    telegram.fail_next("sendPhoto", 502, "Bad Gateway", 1);
    bea.send_text("a bridge in fog");
    wait_until(
        "Bea's photo answered 502",
        Duration::from_secs(30),
        || async { sendphoto_calls() == 1 },
    )
    .await;
    assert_eq!(photos(&bea), 0, "a 502 was taken for a delivery");

    // While teloxide holds the 502 back: the blocked user's delivery.
    cid.send_text("a quiet harbour");
    wait_until(
        "Cid's photo refused and its delivery recorded",
        Duration::from_secs(30),
        || async {
            let c = store.count_jobs_by_status().await.unwrap();
            c.succeeded == 2 && sendphoto_calls() >= 2 && store.undelivered().await.unwrap() <= 1
        },
    )
    .await;
    eprintln!("403: recorded {:?} after start", started.elapsed());
    assert_eq!(photos(&cid), 0);

    wait_until(
        "Bea's photo after the 502",
        Duration::from_secs(60),
        || async { photos(&bea) == 1 },
    )
    .await;
    eprintln!("502: delivered {:?} after start", started.elapsed());
    wait_until(
        "every delivery recorded",
        Duration::from_secs(30),
        || async {
            let c = store.count_jobs_by_status().await.unwrap();
            c.succeeded == 2 && store.undelivered().await.unwrap() == 0
        },
    )
    .await;
    // Recorded as done (nothing undelivered) after one attempt: a misread 403 would have been
    // left undelivered for a retry, and the waits above would have timed out (or counted it).
    assert_eq!(
        sendphoto_calls(),
        3,
        "Bea: a failure and a delivery; Cid: one attempt"
    );
    let uploaded = bea
        .transcript()
        .iter()
        .any(|e| matches!(e, Entry::BotPhoto { url, .. } if url.starts_with("upload:image.png")));
    assert!(
        uploaded,
        "the photo was not uploaded from kept bytes: {:?}",
        bea.transcript()
    );
    let outputs = replicate.stats();
    assert_eq!(
        (outputs.output_downloads, outputs.outputs_gone),
        (2, 0),
        "each output was downloaded once, when its prediction succeeded, and never needed again"
    );
    bot.kill().await;
}
