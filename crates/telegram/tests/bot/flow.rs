use std::time::Duration;

use genbot_mocks::telegram::Entry;
use genbot_store::{JobStatus, UserId};

use crate::helpers::{photo, say, spawn_bot, Options, WAIT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_starts_picks_a_model_and_gets_their_image() {
    let bot = spawn_bot(Options::default()).await;
    let ann = bot.telegram.user(1001, "Ann", Some("en"));

    let (_, welcome, _) = say(&ann, "/start").await;
    assert!(welcome.starts_with("Hi, Ann!"), "{welcome}");
    assert!(welcome.contains("Credits: 10"), "{welcome}");

    let (menu, text, buttons) = say(&ann, "/models").await;
    assert_eq!(text, "Choose a model:");
    let (label, data) = buttons
        .iter()
        .find(|(_, d)| d == "model:flux-dev")
        .unwrap()
        .clone();
    assert!(label.contains("FLUX.1 [dev]"), "{label}");
    assert!(
        buttons.iter().any(|(l, _)| l.starts_with("✅")),
        "current model marked: {buttons:?}"
    );

    let seen = ann.transcript().len();
    ann.press(menu, &data).unwrap();
    ann.wait_for(WAIT, |t| {
        t[seen..]
            .iter()
            .any(|e| matches!(e, Entry::CallbackAnswered(_)))
    })
    .await
    .unwrap();
    let user = bot.store.get_user(UserId(1001)).await.unwrap().unwrap();
    assert_eq!(user.selected_model.as_deref(), Some("flux-dev"));

    let (_, queued, _) = say(&ann, "a red fox in the snow").await;
    assert!(
        queued.starts_with("In the queue: position") || queued == "Generating…",
        "{queued}"
    );
    assert_eq!(photo(&ann).await.as_deref(), Some("a red fox in the snow"));

    let job = bot
        .store
        .jobs_with_status(JobStatus::Succeeded, 10)
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(
        (job.user_id, job.model.as_str()),
        (UserId(1001), "flux-dev")
    );
    assert!(job.result_url.unwrap().starts_with(bot.replicate.url()));
    let user = bot.store.get_user(UserId(1001)).await.unwrap().unwrap();
    assert_eq!(user.credits, 7, "flux-dev costs 3");

    let (_, balance, _) = say(&ann, "/balance").await;
    assert!(
        balance.contains("Credits: 7") && balance.contains("49 of 50"),
        "{balance}"
    );
    // Everything the bot sent on the way would have passed the real Bot API.
    let refused = bot.telegram.stats().refused;
    assert!(refused.is_empty(), "Telegram would refuse: {refused:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn russian_speakers_get_russian_texts() {
    let bot = spawn_bot(Options::default()).await;
    let ivan = bot.telegram.user(1002, "Иван", Some("ru"));
    let (_, welcome, _) = say(&ivan, "/start").await;
    assert!(welcome.starts_with("Привет, Иван!"), "{welcome}");
    let (_, help, _) = say(&ivan, "/help").await;
    assert!(help.contains("Отправьте любой текст"), "{help}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_mode_handles_pushed_updates_and_refuses_a_wrong_secret() {
    let bot = spawn_bot(Options {
        webhook: true,
        ..Options::default()
    })
    .await;
    // Wait until the bot registered its webhook with the mock.
    let deadline = tokio::time::Instant::now() + WAIT;
    while !bot.telegram.stats().methods.contains_key("setwebhook") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "setWebhook never called"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let eve = bot.telegram.user(1003, "Eve", None);
    let (_, welcome, _) = say(&eve, "/start").await;
    assert!(welcome.starts_with("Hi, Eve!"), "{welcome}");
    say(&eve, "a lighthouse").await;
    assert_eq!(photo(&eve).await.as_deref(), Some("a lighthouse"));

    let url = bot.webhook_url.clone().unwrap();
    let update = serde_json::json!({"update_id": 999, "message": {
        "message_id": 1, "date": 0, "chat": {"id": 1003, "type": "private", "first_name": "Eve"},
        "from": {"id": 1003, "is_bot": false, "first_name": "Eve"}, "text": "/start"}});
    let client = reqwest::Client::new();
    let forged = client
        .post(&url)
        .header("X-Telegram-Bot-Api-Secret-Token", "wrong")
        .json(&update)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    let missing = client.post(&url).json(&update).send().await.unwrap();
    assert_eq!(missing.status(), 401);
    // A post without the secret is refused before its body is read: one that promises a body
    // and never sends it held the connection (and a graceful stop) for as long as it liked.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let parsed = url::Url::parse(&url).unwrap();
        let address = format!(
            "{}:{}",
            parsed.host_str().unwrap(),
            parsed.port_or_known_default().unwrap()
        );
        let mut stalled = tokio::net::TcpStream::connect(address).await.unwrap();
        let head = format!(
            "POST {} HTTP/1.1\r\nHost: bot\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{{",
            parsed.path()
        );
        stalled.write_all(head.as_bytes()).await.unwrap();
        let mut answer = [0u8; 12];
        let read = tokio::time::timeout(Duration::from_secs(3), stalled.read_exact(&mut answer))
            .await
            .expect("answered before the body came")
            .unwrap();
        assert_eq!(
            &answer[..read],
            b"HTTP/1.1 401",
            "{:?}",
            String::from_utf8_lossy(&answer)
        );
    }

    // With the right secret, a body over the 2 MiB an update can be is refused (Telegram
    // retries a 4xx/5xx, so nothing is lost), and the bot still answers afterwards.
    let oversize = client
        .post(&url)
        .header("X-Telegram-Bot-Api-Secret-Token", "test-secret")
        .header("Content-Type", "application/json")
        .body(vec![b' '; 2 * 1024 * 1024 + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(oversize.status(), 413);
    let (_, again, _) = say(&eve, "/start").await;
    assert!(again.starts_with("Hi, Eve!"), "{again}");

    let health = client
        .get(url.replace("/telegram/webhook", "/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let metrics = client
        .get(url.replace("/telegram/webhook", "/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // OpenMetrics: counters end in `_total`, the cache gives hits and misses (not a rate).
    for sample in [
        "genbot_updates_total ",
        "genbot_cache_hits_total ",
        "genbot_cache_misses_total ",
        "genbot_rate_limiter_waits_total ",
        "genbot_generations_succeeded_total ",
        "genbot_outbox_undelivered ",
        "# TYPE genbot_generations_succeeded counter",
        "# TYPE genbot_queue_length gauge",
        "# EOF",
    ] {
        assert!(
            metrics.contains(sample),
            "{sample:?} missing in:\n{metrics}"
        );
    }
    assert!(!metrics.contains("hit_rate"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_from_telegram_is_waited_out_and_nothing_is_lost() {
    let bot = spawn_bot(Options {
        enforce_telegram_limits: true,
        ..Options::default()
    })
    .await;
    let fay = bot.telegram.user(1004, "Fay", Some("en"));
    // Telegram lets a short burst (3) into a chat, then about one a second: five commands
    // answered at once meet its 429.
    let commands = ["/start", "/help", "/balance", "/help", "/balance"];
    for command in commands {
        fay.send_text(command);
    }
    let transcript = fay
        .wait_for(WAIT, |t| {
            t.iter()
                .filter(|e| matches!(e, Entry::BotText { .. }))
                .count()
                >= commands.len()
        })
        .await
        .unwrap_or_else(|| panic!("answers lost: {:?}", fay.transcript()));
    assert_eq!(
        transcript
            .iter()
            .filter(|e| matches!(e, Entry::BotText { .. }))
            .count(),
        commands.len(),
        "each command answered once"
    );
    assert!(
        bot.telegram.stats().throttled >= 1,
        "the mock did refuse a send"
    );
}

/// A delivery whose lease passes while its photo is still being sent (a database outage held
/// up the lease renewal; here, a heartbeat slower than the lease) is not claimed and sent again
/// by its own process: the photo arrives once. CI saw the outbox send one twice during a 3 s
/// PostgreSQL outage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_photo_still_being_sent_when_its_lease_passes_is_not_sent_again() {
    let bot = spawn_bot(Options {
        engine: genbot_engine::EngineConfig {
            replica: genbot_engine::ReplicaConfig {
                id: "local".into(),
                lease: Duration::from_millis(300),
                heartbeat: Duration::from_secs(60),
            },
            ..Options::default().engine
        },
        ..Options::default()
    })
    .await;
    let gus = bot.telegram.user(1005, "Gus", Some("en"));
    say(&gus, "/start").await;
    // Every send now takes 2.5 s to be answered: the outbox looks again (each second) while
    // the photo's lease has long passed.
    bot.telegram.set_send_delay(Duration::from_millis(2500));
    gus.send_text("a lighthouse at dusk");
    photo(&gus).await;
    bot.telegram.set_send_delay(Duration::ZERO);
    // A second send would have been claimed a second after the first; give it three.
    let twice = gus
        .wait_for(Duration::from_secs(3), |t| {
            t.iter()
                .filter(|e| matches!(e, Entry::BotPhoto { .. }))
                .count()
                > 1
        })
        .await;
    assert!(twice.is_none(), "the photo was sent twice: {twice:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prompt_of_emoji_gets_its_image_with_a_caption_telegram_takes() {
    let bot = spawn_bot(Options::default()).await;
    let zoe = bot.telegram.user(1004, "Zoe", None);
    say(&zoe, "/start").await;
    // 999 characters, under the 1,000-character prompt limit, but 1,998 UTF-16 units: twice
    // Telegram's caption limit, which the Bot API mock enforces as Telegram does.
    let prompt = "😀".repeat(999);
    say(&zoe, &prompt).await;
    let caption = photo(&zoe).await.expect("the image reaches its user");
    assert_eq!(caption.encode_utf16().count(), 1024);
    assert!(prompt.starts_with(&caption));
}
