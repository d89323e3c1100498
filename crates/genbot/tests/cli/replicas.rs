//! Replicas on one Telegram: two `genbot serve --webhook-url` processes of one bot behind one
//! URL. Telegram keeps one webhook and one secret per bot: both replicas must set the same
//! secret (or the other's requests get 401), and a stopping replica must leave the webhook set
//! (or the other goes silent). Polling while a webhook is set is refused unless asked.

use std::time::Duration;

use genbot_mocks::telegram::{SimUser, TelegramMock};

use crate::process::{
    answered, database_url_text, default_mocks, scratch_postgres, start_first_replica, wait_until,
    Bot, FirstReplica,
};

const WAIT: Duration = Duration::from_secs(30);

/// The webhook URL the Bot API mock has set for the test bot, if any.
pub(crate) async fn webhook_url_at_telegram(telegram: &TelegramMock) -> Option<String> {
    let info: serde_json::Value = reqwest::get(format!(
        "{}/bot123456:crash-secret/getWebhookInfo",
        telegram.url()
    ))
    .await
    .ok()?
    .json()
    .await
    .ok()?;
    info["result"]["url"]
        .as_str()
        .filter(|u| !u.is_empty())
        .map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_webhook_replicas_share_the_webhook_and_a_stop_silences_neither() {
    let Some(database) =
        scratch_postgres("two_webhook_replicas_share_the_webhook_and_a_stop_silences_neither")
            .await
    else {
        return;
    };
    let database_url = database_url_text(&database);
    let (telegram, replicate) = default_mocks().await;
    // The load balancer's URL is replica A's address: Telegram delivers everything there. It is
    // an argument of both replicas, so A's port is fixed before A starts.
    let port_a = crate::free_port();
    let url = format!("http://127.0.0.1:{port_a}/telegram/webhook");
    let mut a = Bot::new(&telegram, &replicate, &database_url)
        .with("REPLICA_ID", "replica-a")
        .listen_on(port_a)
        .with_args(&["--webhook-url", &url]);
    let mut b = Bot::new(&telegram, &replicate, &database_url)
        .with("REPLICA_ID", "replica-b")
        .with_args(&["--webhook-url", &url]);
    a.start();
    let set_calls = || {
        telegram
            .stats()
            .methods
            .get("setwebhook")
            .copied()
            .unwrap_or(0)
    };
    wait_until("replica A set the webhook", WAIT, || async {
        set_calls() >= 1
    })
    .await;
    b.start();
    wait_until("replica B set the webhook", WAIT, || async {
        set_calls() >= 2
    })
    .await;
    // B's stop: a rolling deploy's first step.
    let (stopped, _) = b.terminate(WAIT).await;
    assert!(
        stopped.success(),
        "replica B did not stop cleanly: {stopped:?}"
    );
    assert_eq!(
        webhook_url_at_telegram(&telegram).await.as_deref(),
        Some(url.as_str()),
        "the stopping replica deleted or changed the webhook"
    );
    let users: Vec<SimUser> = (0..20)
        .map(|n| telegram.user(71_000 + n, &format!("w{n}"), Some("en")))
        .collect();
    for user in &users {
        user.send_text("/start");
    }
    wait_until(
        "every user answered by replica A (with the secret B set)",
        WAIT,
        || async { users.iter().all(answered) },
    )
    .await;
    let stats = telegram.stats();
    assert!(
        stats.updates_delivered >= 20,
        "deliveries the webhook accepted: {}",
        stats.updates_delivered
    );
    a.kill().await;
    database.drop_now().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_while_a_webhook_is_set_is_refused_unless_asked() {
    let (telegram, replicate) = default_mocks().await;
    let dir = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite://{}", dir.path().join("modes.db").display());
    let set = std::process::Command::new(env!("CARGO_BIN_EXE_genbot"))
        .args(["webhook", "set", "https://bot.example.org/telegram/webhook"])
        .env_clear()
        .env("TELEGRAM_BOT_TOKEN", "123456:crash-secret")
        .env("TELEGRAM_API_URL", telegram.url())
        .output()
        .unwrap();
    assert!(set.status.success(), "{set:?}");
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_genbot"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env_clear()
        .env("TELEGRAM_BOT_TOKEN", "123456:crash-secret")
        .env("TELEGRAM_API_URL", telegram.url())
        .env("REPLICATE_API_URL", replicate.url())
        .env("DATABASE_URL", &database_url)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("webhook is set") && stderr.contains("--drop-webhook"),
        "{stderr}"
    );
    assert!(webhook_url_at_telegram(&telegram).await.is_some());
    let info = std::process::Command::new(env!("CARGO_BIN_EXE_genbot"))
        .args(["webhook", "info"])
        .env_clear()
        .env("TELEGRAM_BOT_TOKEN", "123456:crash-secret")
        .env("TELEGRAM_API_URL", telegram.url())
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&info.stdout);
    assert!(
        shown.contains("url: https://bot.example.org/telegram/webhook"),
        "{shown}"
    );
    let mut bot = Bot::new(&telegram, &replicate, &database_url).with_args(&["--drop-webhook"]);
    bot.start();
    // (The mock, unlike Telegram, drops what it fails to push to a webhook: wait for the drop.)
    wait_until("the webhook dropped", WAIT, || async {
        webhook_url_at_telegram(&telegram).await.is_none()
    })
    .await;
    let user = telegram.user(72_001, "Poll", Some("en"));
    user.send_text("/start");
    wait_until("answered by polling after --drop-webhook", WAIT, || async {
        answered(&user)
    })
    .await;
    bot.kill().await;
}

/// Two processes on one SQLite file would both be `local` and take each other's running jobs
/// over: the second is refused at start, and may start once the first is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_serve_on_one_sqlite_file_is_refused() {
    let (telegram, replicate) = default_mocks().await;
    let dir = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite://{}", dir.path().join("one.db").display());
    let mut first = Bot::new(&telegram, &replicate, &database_url);
    first.start();
    let user = telegram.user(73_001, "One", Some("en"));
    user.send_text("/start");
    wait_until("the first process answers", WAIT, || async {
        answered(&user)
    })
    .await;
    let second = tokio::process::Command::new(env!("CARGO_BIN_EXE_genbot"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env_clear()
        .envs(first.env.iter().map(|(k, v)| (k, v)))
        .output();
    let second = tokio::time::timeout(WAIT, second)
        .await
        .expect("the second process kept running")
        .unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("another genbot serve") && stderr.contains("PostgreSQL"),
        "{stderr}"
    );
    // A hard link is another real path to the same file: two processes on it each kept their
    // own WAL, doubled every generation and corrupted the database.
    let link = dir.path().join("link.db");
    std::fs::hard_link(dir.path().join("one.db"), &link).unwrap();
    let through_link = tokio::process::Command::new(env!("CARGO_BIN_EXE_genbot"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env_clear()
        .envs(first.env.iter().map(|(k, v)| (k, v)))
        .env("DATABASE_URL", format!("sqlite://{}", link.display()))
        .output();
    let through_link = tokio::time::timeout(WAIT, through_link)
        .await
        .expect("the process on a hard link kept running")
        .unwrap();
    let stderr = String::from_utf8_lossy(&through_link.stderr);
    assert_eq!(through_link.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("hard link"), "{stderr}");
    first.kill().await;
    let mut again = Bot::new(&telegram, &replicate, &database_url);
    again.start();
    let next = telegram.user(73_002, "Two", Some("en"));
    next.send_text("/start");
    wait_until("a start after the first is gone", WAIT, || async {
        answered(&next)
    })
    .await;
    again.kill().await;
}

/// Two polling replicas of one bot: one polls at a time (Telegram ends a waiting getUpdates
/// when another comes, so two pollers only fight); when the poller dies the other takes over
/// within the lease and everyone is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_polling_replicas_poll_one_at_a_time_and_take_over() {
    let Some(database) =
        scratch_postgres("two_polling_replicas_poll_one_at_a_time_and_take_over").await
    else {
        return;
    };
    let database_url = database_url_text(&database);
    let (telegram, replicate) = default_mocks().await;
    let mut a = Bot::new(&telegram, &replicate, &database_url).with("REPLICA_ID", "poll-a");
    // B's statements are logged (sqlx logs each at debug): its requests for the lease show.
    let mut b = Bot::new(&telegram, &replicate, &database_url)
        .with("REPLICA_ID", "poll-b")
        .with("RUST_LOG", "info,sqlx::query=debug");
    a.start();
    let first = telegram.user(74_001, "First", Some("en"));
    first.send_text("/start");
    wait_until("replica A answers", WAIT, || async { answered(&first) }).await;
    let b_log = b.start_logged();
    let store = crate::process::open(&database_url).await;
    let api = url::Url::parse(telegram.url()).unwrap();
    let lease = format!(
        "telegram-poller:123456@{}:{}",
        api.host_str().unwrap(),
        api.port().unwrap()
    );
    // B stands by beside A for a while: several of A's long polls and several of B's requests
    // for the lease, each refused (the only statement on `leases`, and it changed no row).
    let refused = || b_log.count_all(&["INSERT INTO leases", "rows_affected=0"]);
    let polls = || {
        telegram
            .stats()
            .methods
            .get("getupdates")
            .copied()
            .unwrap_or(0)
    };
    wait_until("replica B asks for the lease", WAIT, || async {
        refused() >= 1
    })
    .await;
    let before = (refused(), polls());
    wait_until(
        "4 more of B's requests for the lease and of A's polls",
        WAIT,
        || async { refused() >= before.0 + 4 && polls() >= before.1 + 4 },
    )
    .await;
    assert_eq!(
        telegram.stats().poll_conflicts,
        0,
        "two replicas fought over getUpdates"
    );
    assert_eq!(
        store.lease_holder(&lease).await.unwrap().as_deref(),
        Some("poll-a")
    );
    // The poller dies: B takes over within the lease (3 s here) and answers.
    a.kill().await;
    let users: Vec<SimUser> = (0..10)
        .map(|n| telegram.user(74_100 + n, &format!("p{n}"), Some("en")))
        .collect();
    for user in &users {
        user.send_text("/start");
    }
    wait_until("every user answered by replica B", WAIT, || async {
        users.iter().all(answered)
    })
    .await;
    assert_eq!(
        store.lease_holder(&lease).await.unwrap().as_deref(),
        Some("poll-b")
    );
    assert!(
        telegram.stats().poll_conflicts <= 2,
        "conflicts at the take-over: {}",
        telegram.stats().poll_conflicts
    );
    b.kill().await;
    database.drop_now().await.unwrap();
}

/// Switching modes the other way: a webhook replica started while another replica of the bot
/// polls (same database) is refused at start, naming the poller and its lease, and sets no
/// webhook (Telegram would end the poller's getUpdates); once the pollers stopped it starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_replica_is_refused_while_another_polls() {
    let Some(FirstReplica {
        database,
        database_url,
        telegram,
        replicate,
        bot: mut poller,
        ..
    }) = start_first_replica(
        "a_webhook_replica_is_refused_while_another_polls",
        "poll-p",
        "the polling replica answers",
        WAIT,
    )
    .await
    else {
        return;
    };
    let set_calls = || {
        telegram
            .stats()
            .methods
            .get("setwebhook")
            .copied()
            .unwrap_or(0)
    };
    let url = "https://bot.example.org/telegram/webhook";
    let hooked = Bot::new(&telegram, &replicate, &database_url).with("REPLICA_ID", "hook-w");
    let refused = tokio::process::Command::new(env!("CARGO_BIN_EXE_genbot"))
        .args(["serve", "--listen", "127.0.0.1:0", "--webhook-url", url])
        .env_clear()
        .envs(hooked.env.iter().map(|(k, v)| (k, v)))
        .output();
    let refused = tokio::time::timeout(WAIT, refused)
        .await
        .expect("the webhook replica kept running beside the poller")
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("replica poll-p polls Telegram")
            && stderr.contains("lease runs until")
            && stderr.contains("stop every polling replica"),
        "{stderr}"
    );
    assert_eq!(set_calls(), 0, "the refused replica set a webhook");
    assert_eq!(webhook_url_at_telegram(&telegram).await, None);
    let second = telegram.user(75_002, "Second", Some("en"));
    second.send_text("/start");
    wait_until("the poller still answers", WAIT, || async {
        answered(&second)
    })
    .await;
    // A stopping poller gives its lease up: now the webhook replica may start.
    let (stopped, _) = poller.terminate(WAIT).await;
    assert!(stopped.success(), "{stopped:?}");
    let mut hooked = hooked.with_args(&["--webhook-url", url]);
    hooked.start();
    wait_until("the webhook set once no replica polls", WAIT, || async {
        set_calls() >= 1
    })
    .await;
    assert_eq!(
        webhook_url_at_telegram(&telegram).await.as_deref(),
        Some(url)
    );
    assert!(hooked.exited().is_none(), "the webhook replica exited");
    hooked.kill().await;
    database.drop_now().await.unwrap();
}

/// `REPLICA_ID` must be unique among live replicas: a second process started with a live one's
/// id waits, saying why, without taking any of that replica's jobs or updates, while the live
/// one goes on answering; when the live one is killed the waiting one starts and answers (a
/// restart under a killed process's id is not refused either).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_with_a_live_replicas_id_waits_for_it() {
    let Some(FirstReplica {
        database,
        database_url,
        telegram,
        replicate,
        bot: mut live,
        ..
    }) = start_first_replica(
        "a_second_process_with_a_live_replicas_id_waits_for_it",
        "twin",
        "the live replica answers",
        WAIT,
    )
    .await
    else {
        return;
    };

    let mut twin = Bot::new(&telegram, &replicate, &database_url).with("REPLICA_ID", "twin");
    let log = twin.start_logged();
    let held = "REPLICA_ID=\"twin\" is held by another live genbot process";
    wait_until("the twin says the id is held", WAIT, || async {
        log.count(held) >= 1
    })
    .await;
    assert!(
        log.count("listening on") == 0,
        "the twin started beside the live replica:\n{}",
        log.text()
    );
    // Waiting, the twin keeps one connection and asks again on it: one backend pid of its own
    // for seconds, beside the live one's (each try opened and closed a connection, 4 a second).
    let mut admin = admin_connection(&database_url).await;
    let mut pids = std::collections::BTreeSet::new();
    let sampled_until = std::time::Instant::now() + Duration::from_secs(4);
    let mut samples = 0;
    while std::time::Instant::now() < sampled_until {
        let now = replica_sessions(&mut admin, database.name(), "twin").await;
        // Both there at every look: a connection per try would be missing between tries.
        assert_eq!(now.len(), 2, "sample {samples}: pids {now:?}");
        pids.extend(now);
        samples += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        pids.len(),
        2,
        "backend pids of the holder and its waiting twin over 4 s ({samples} samples): {pids:?}"
    );
    let second = telegram.user(75_002, "Second", Some("en"));
    second.send_text("/start");
    wait_until("the live replica still answers", WAIT, || async {
        answered(&second)
    })
    .await;
    assert!(twin.exited().is_none(), "the twin gave up:\n{}", log.text());

    // Killed, the live replica's connection ends with it: the twin starts and answers.
    live.kill().await;
    let third = telegram.user(75_003, "Third", Some("en"));
    third.send_text("/start");
    wait_until("the twin, started, answers", WAIT, || async {
        answered(&third)
    })
    .await;
    assert!(log.count("listening on") >= 1, "{}", log.text());
    twin.kill().await;
    database.drop_now().await.unwrap();
}

async fn admin_connection(database_url: &str) -> sqlx::PgConnection {
    use sqlx::Connection;
    sqlx::PgConnection::connect(database_url).await.unwrap()
}

/// Backend pids of the scratch database `datname` whose `application_name` names replica id
/// `id` (holding or waiting): this test's processes only.
async fn replica_sessions(admin: &mut sqlx::PgConnection, datname: &str, id: &str) -> Vec<i32> {
    sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name IN ($2, $3)",
    )
    .bind(datname)
    .bind(genbot_store::ReplicaIdHold::application_name(id))
    .bind(genbot_store::ReplicaIdHold::waiting_application_name(id))
    .fetch_all(admin)
    .await
    .unwrap()
}

/// The backend pid holding replica id `id` in the scratch database `datname`, if any.
async fn holder(admin: &mut sqlx::PgConnection, datname: &str, id: &str) -> Option<i32> {
    sqlx::query_scalar(
        "SELECT a.pid FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid
         WHERE a.datname = $1 AND a.application_name = $2 AND l.locktype = 'advisory' AND l.granted",
    )
    .bind(datname)
    .bind(genbot_store::ReplicaIdHold::application_name(id))
    .fetch_optional(admin)
    .await
    .unwrap()
}

/// Ends backend `pid` of the scratch database `datname` (never another test's session).
async fn end_backend(admin: &mut sqlx::PgConnection, datname: &str, pid: i32) {
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = $1 AND datname = $2",
    )
    .bind(pid)
    .bind(datname)
    .execute(admin)
    .await
    .unwrap();
}

/// The hold of `REPLICA_ID` is watched while the bot runs: its connection ended (as by
/// pg_terminate_backend, idle_session_timeout or a proxy), the id is taken again and the bot
/// goes on; when another process took the id first, the bot stops with exit code 1 (a failure
/// a supervisor restarts, not 2, which the systemd unit does not restart).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_whose_id_hold_ended_takes_it_again_or_stops() {
    let Some(FirstReplica {
        database,
        database_url,
        telegram,
        replicate: _replicate,
        mut bot,
        log,
    }) = start_first_replica(
        "a_replica_whose_id_hold_ended_takes_it_again_or_stops",
        "watched",
        "the replica answers",
        WAIT,
    )
    .await
    else {
        return;
    };
    let datname = database.name().to_owned();
    let mut admin = admin_connection(&database_url).await;
    let ended = holder(&mut admin, &datname, "watched")
        .await
        .expect("the replica holds its id");

    end_backend(&mut admin, &datname, ended).await;
    let retaken = "REPLICA_ID taken again on a new connection";
    wait_until("the replica takes its id again", WAIT, || async {
        log.count(retaken) >= 1
    })
    .await;
    let now = holder(&mut admin, &datname, "watched").await;
    assert!(
        now.is_some_and(|pid| pid != ended),
        "holder {now:?} after {ended} ended:\n{}",
        log.text()
    );
    let second = telegram.user(75_102, "Second", Some("en"));
    second.send_text("/start");
    wait_until("the replica still answers", WAIT, || async {
        answered(&second)
    })
    .await;

    // Ended again, and this test takes the id first (as a process started meanwhile would):
    // the replica must stop. Should the replica win the race, its hold is ended once more.
    let mut other = admin_connection(&database_url).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    'taken: loop {
        if let Some(pid) = holder(&mut admin, &datname, "watched").await {
            end_backend(&mut admin, &datname, pid).await;
        }
        let tried_until = std::time::Instant::now() + Duration::from_secs(2);
        while std::time::Instant::now() < tried_until {
            let got: bool = sqlx::query_scalar(
                "SELECT pg_try_advisory_lock(hashtextextended('genbot replica id: watched in schema ' || coalesce(current_schema(), ''), 0))",
            )
            .fetch_one(&mut other)
            .await
            .unwrap();
            if got {
                break 'taken;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never took the id from the replica:\n{}",
            log.text()
        );
    }
    wait_until("the replica stops", WAIT, || {
        let stopped = bot.exited().is_some();
        async move { stopped }
    })
    .await;
    let status = bot.exited().expect("just seen");
    assert_eq!(status.code(), Some(1), "{status:?}:\n{}", log.text());
    assert!(
        log.count("REPLICA_ID=\"watched\" was taken by another live genbot process") >= 1,
        "{}",
        log.text()
    );
    // What is filed under the id now belongs to whoever took it: the stop released none of it
    // (a graceful stop gives the poller lease up, and would hand the taker's work to a third).
    let poller_leases: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM leases WHERE name LIKE 'telegram-poller:%' AND owner = 'watched'",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!(
        poller_leases,
        1,
        "the stop released the id's poller lease:\n{}",
        log.text()
    );
    drop(other);
    drop(admin);
    database.drop_now().await.unwrap();
}
