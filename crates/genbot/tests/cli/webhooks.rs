//! Replicate webhooks against the real `genbot serve`: the mock signs and posts each
//! prediction's end like Replicate; forged and replayed deliveries change nothing; a webhook
//! that never comes is made up for by the reconciler's polling.

use std::time::{Duration, Instant};

use genbot_mocks::replicate::{ReplicateMock, ReplicateMockConfig};
use genbot_mocks::telegram::{Entry, SimUser, TelegramMock, TelegramMockConfig};
use genbot_store::JobStatus;

use crate::process::{open, wait_until, Bot};

fn photos(user: &SimUser) -> usize {
    user.transcript()
        .iter()
        .filter(|e| matches!(e, Entry::BotPhoto { .. }))
        .count()
}

async fn post_webhook(
    url: &str,
    id: &str,
    timestamp: i64,
    signature: &str,
    body: &str,
) -> reqwest::StatusCode {
    reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_end_generations_forgeries_and_replays_change_nothing_and_the_reconciler_covers_drops(
) {
    let telegram = TelegramMock::start(TelegramMockConfig::default())
        .await
        .unwrap();
    let quick = ReplicateMockConfig {
        median_latency: Duration::from_millis(300),
        ..ReplicateMockConfig::default()
    };
    let replicate = ReplicateMock::start(quick.clone()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite://{}", dir.path().join("hooks.db").display());
    // Fixed: the webhook URL is given before the start, and the restart below must serve it.
    let port = crate::free_port();
    let hook_url = format!("http://127.0.0.1:{port}/replicate/webhook");
    // No REPLICATE_WEBHOOK_SECRET: the bot asks Replicate (the mock) for the default one.
    // The reconciler polls a running prediction once an interval has passed; an hour here, so
    // "no polls" in step 1 means that every generation ended by its webhook, and not that each
    // happened to end within the interval (step 4 restarts the bot with a short one).
    let mut bot = Bot::new(&telegram, &replicate, &database_url)
        .listen_on(port)
        .with("REPLICATE_WEBHOOK_URL", &hook_url)
        .with("REPLICATE_RECONCILE_SECONDS", "3600");
    bot.start();
    let store = open(&database_url).await;

    // 1. Every generation ends by its webhook: no polls at all.
    let users: Vec<SimUser> = (0..5)
        .map(|n| telegram.user(70_000 + n, &format!("w{n}"), Some("en")))
        .collect();
    let started = Instant::now();
    for user in &users {
        user.send_text(&format!("a lighthouse number {}", user.id()));
    }
    wait_until("5 photos", Duration::from_secs(60), || async {
        users.iter().all(|u| photos(u) == 1)
    })
    .await;
    let stats = replicate.stats();
    eprintln!(
        "webhooks: 5 photos in {:?}; mock: {} webhooks delivered, {} polls",
        started.elapsed(),
        stats.webhooks_delivered,
        stats.polls
    );
    assert_eq!(stats.webhooks_delivered, 5, "{stats:?}");
    assert_eq!(
        stats.polls, 0,
        "a generation polled although its webhook came"
    );

    // 2. Forged deliveries are refused and change nothing: a slow prediction stays running.
    replicate.reconfigure(ReplicateMockConfig {
        median_latency: Duration::from_secs(4),
        ..quick.clone()
    });
    let slow = telegram.user(70_100, "slow", Some("en"));
    slow.send_text("a slow sunrise");
    let running = wait_for_running_prediction(&store).await;
    let forged = format!(r#"{{"id":"{running}","status":"failed","error":"forged"}}"#);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let bad_signature = post_webhook(&hook_url, "msg_forged", now, "v1,Zm9yZ2Vk", &forged).await;
    assert_eq!(bad_signature, reqwest::StatusCode::UNAUTHORIZED);
    // A real signature of an old request (outside the 5-minute tolerance) fails too.
    let secret =
        genbot_engine::replicate::webhook::WebhookSecret::parse(&replicate.webhook_secret())
            .unwrap();
    let stale = now - 600;
    let signed_stale = secret.sign("msg_stale", stale, forged.as_bytes());
    assert_eq!(
        post_webhook(&hook_url, "msg_stale", stale, &signed_stale, &forged).await,
        reqwest::StatusCode::UNAUTHORIZED
    );
    let counts = store.count_jobs_by_status().await.unwrap();
    assert_eq!((counts.running, counts.failed), (1, 0), "{counts:?}");
    wait_until("the slow photo", Duration::from_secs(30), || async {
        photos(&slow) == 1
    })
    .await;

    // 3. A replayed delivery (same webhook-id, same signed body) has no effect.
    let first = replicate
        .sent_webhooks()
        .into_iter()
        .find(|w| w.status == Some(200))
        .unwrap();
    let replay = post_webhook(
        &hook_url,
        &first.id,
        first.timestamp,
        &first.signature,
        &first.body,
    )
    .await;
    assert_eq!(replay, reqwest::StatusCode::OK, "a replay is acknowledged");
    let metrics = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let replayed = metric(&metrics, "genbot_replicate_webhooks_replayed_total");
    let rejected = metric(
        &metrics,
        "genbot_replicate_webhook_signature_failures_total",
    );
    assert_eq!((replayed, rejected), (1.0, 2.0), "{metrics}");

    // Unauthenticated posts cannot make the receiver work hard: a body past 1 MiB is refused
    // unread, a signature header of 40,000 entries before any MAC (issue #20: four such posts
    // froze the bot for 94 s).
    let big = format!(r#"{{"id":"x","logs":"{}"}}"#, "a".repeat(1_500_000));
    // Refused unread: the 413 comes as soon as the headers name the length, and the connection
    // closes, so a client still writing the body may see the close (a broken pipe) first.
    let refused = reqwest::Client::new()
        .post(&hook_url)
        .header("content-type", "application/json")
        .header("webhook-id", "msg_big")
        .header("webhook-timestamp", now.to_string())
        .header("webhook-signature", "v1,Zm9yZ2Vk")
        .body(big)
        .send()
        .await;
    match refused {
        Ok(answer) => assert_eq!(answer.status(), reqwest::StatusCode::PAYLOAD_TOO_LARGE),
        Err(e) => assert!(
            e.is_request() && format!("{e:?}").contains("BodyWrite"),
            "the oversized body failed otherwise: {e:?}"
        ),
    }
    let flood = vec!["v1,AAAA"; 40_000].join(" ");
    let answer = reqwest::Client::new()
        .post(&hook_url)
        .header("webhook-id", "msg_flood")
        .header("webhook-timestamp", now.to_string())
        .header("webhook-signature", flood)
        .body(forged.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), reqwest::StatusCode::UNAUTHORIZED);
    let text = answer.text().await.unwrap();
    assert!(text.contains("more than 16 entries"), "{text}");

    // 4. Webhooks lost for good: the reconciler's poll (every 2 s) finishes the job. Nothing
    // is running, so the restart (same database, same port) loses nothing.
    bot.kill().await;
    bot.env
        .push(("REPLICATE_RECONCILE_SECONDS".into(), "2".into()));
    bot.start();
    replicate.reconfigure(ReplicateMockConfig {
        drop_webhooks: true,
        ..quick
    });
    let dropped = telegram.user(70_200, "dropped", Some("en"));
    let asked = Instant::now();
    dropped.send_text("a lost letter");
    wait_until(
        "the photo whose webhook never came",
        Duration::from_secs(30),
        || async { photos(&dropped) == 1 },
    )
    .await;
    let stats = replicate.stats();
    eprintln!(
        "reconciler: photo {:?} after the prompt; {} webhooks dropped, {} polls",
        asked.elapsed(),
        stats.webhooks_dropped,
        stats.polls
    );
    assert!(stats.webhooks_dropped >= 1 && stats.polls >= 1, "{stats:?}");
    let counts = store.count_jobs_by_status().await.unwrap();
    assert_eq!((counts.succeeded, counts.failed), (7, 0), "{counts:?}");
    for user in users.iter().chain([&slow, &dropped]) {
        assert_eq!(photos(user), 1, "user {}", user.id());
    }
    bot.kill().await;
}

/// The prediction id of the one running job, once it is recorded.
async fn wait_for_running_prediction(store: &genbot_store::Store) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let running = store
            .jobs_with_status(JobStatus::Running, 10)
            .await
            .unwrap();
        if let Some(id) = running.iter().find_map(|j| j.prediction_id.clone()) {
            return id;
        }
        assert!(Instant::now() < deadline, "no running prediction");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A sample's value in a Prometheus exposition (0 when absent).
fn metric(exposition: &str, name: &str) -> f64 {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (key, value) = line.rsplit_once(' ')?;
            (key == name).then(|| value.parse().ok()).flatten()
        })
        .unwrap_or(0.0)
}
