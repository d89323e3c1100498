//! `genbot serve` as an operator starts it: refusals at start, an image end to end, SIGTERM,
//! and no credential in its logs; and `genbot demo`.

use std::process::{Command, Stdio};
use std::time::Duration;

use genbot_mocks::telegram::Entry;

use crate::process::{default_mocks, sigterm, wait_until, Bot, Log};

#[test]
fn serve_without_a_token_exits_2_and_says_why() {
    let out = Command::new(env!("CARGO_BIN_EXE_genbot"))
        .arg("serve")
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("genbot: TELEGRAM_BOT_TOKEN is not set"),
        "{stderr}"
    );
}

/// Test hooks are not on the command line; armed from the environment, a value out of range
/// is refused at start, naming the variable.
#[test]
fn test_hooks_are_no_flags_and_a_bad_one_exits_2() {
    let flag = Command::new(env!("CARGO_BIN_EXE_genbot"))
        .args(["serve", "--test-slow-handlers-ms", "300"])
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(flag.status.code(), Some(2), "{flag:?}");
    let help = Command::new(env!("CARGO_BIN_EXE_genbot"))
        .args(["serve", "--help"])
        .env_clear()
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("--initial-credits") && !help.to_lowercase().contains("test"),
        "{help}"
    );
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_genbot"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env_clear()
        .env("TELEGRAM_BOT_TOKEN", "123456:hooks")
        .env("TELEGRAM_API_URL", "http://127.0.0.1:9")
        .env("REPLICATE_API_URL", "http://127.0.0.1:9")
        .env(
            "DATABASE_URL",
            format!("sqlite://{}", dir.path().join("hooks.db").display()),
        )
        .env("GENBOT_TEST_HOOKS", "1")
        .env("GENBOT_TEST_SLOW_HANDLERS_MS", "99999")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("GENBOT_TEST_SLOW_HANDLERS_MS"), "{stderr}");
}

/// The real binary against both mocks: a user gets an image; SIGTERM stops it cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_answers_a_user_end_to_end_and_stops_on_sigterm() {
    let (telegram, replicate) = default_mocks().await;
    let dir = tempfile::tempdir().unwrap();
    let mut bot = Bot::new(
        &telegram,
        &replicate,
        &format!("sqlite://{}", dir.path().join("e2e.db").display()),
    )
    .with("TELEGRAM_BOT_TOKEN", "123456:e2e-secret-token")
    .with("REPLICATE_API_TOKEN", "r8_e2e-secret")
    .with("RUST_LOG", "debug");
    let log = bot.start_logged();

    let ann = telegram.user(555, "Ann", Some("en"));
    ann.send_text("/start");
    ann.send_text("a paper boat");
    let transcript = ann
        .wait_for(Duration::from_secs(30), |t| {
            t.iter().any(|e| matches!(e, Entry::BotPhoto { .. }))
        })
        .await
        .unwrap_or_else(|| panic!("no photo: {:?}", ann.transcript()));
    assert!(transcript
        .iter()
        .any(|e| matches!(e, Entry::BotPhoto { caption: Some(c), .. } if c == "a paper boat")));

    let port = bot.port().await;
    let health = reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    let (status, _) = bot.terminate(Duration::from_secs(20)).await;
    let logs = log.finish().await;
    assert!(status.success(), "exit: {status:?}");
    for secret in ["e2e-secret-token", "r8_e2e-secret"] {
        assert!(!logs.contains(secret), "{secret} appeared in the logs");
    }
}

#[test]
fn demo_shows_the_whole_flow() {
    let out = Command::new(env!("CARGO_BIN_EXE_genbot"))
        .args(["demo", "--latency-ms", "100"])
        .env_clear()
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("── chat with user 101 ──"), "{stdout}");
    assert!(stdout.contains("🖼"), "{stdout}");
    assert!(stdout.contains("Привет, Иван!"), "{stdout}");
}

/// Credentials inside TELEGRAM_API_URL, REPLICATE_API_URL and REPLICATE_WEBHOOK_URL never
/// reach serve's log, at debug level, while it waits for an unreachable Bot API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_never_logs_credentials_inside_the_configured_urls() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on this port: serve keeps waiting for the Bot API and says so.
    let (_held, closed) = crate::closed_port();
    let vars = [
        // A token of the real shape: teloxide then masks only the token in its errors, leaving
        // the rest of the URL, credentials included, for genbot to mask.
        (
            "TELEGRAM_BOT_TOKEN",
            "123456:AAlog-test-token-0123456789abcdefgh".to_owned(),
        ),
        (
            "TELEGRAM_API_URL",
            format!("http://tg-user:tg-pass-1@127.0.0.1:{closed}/?token=tg-tok-2"),
        ),
        (
            "REPLICATE_API_URL",
            format!("http://r-user:r-pass-3@127.0.0.1:{closed}/?api_key=r-key-4"),
        ),
        (
            "REPLICATE_WEBHOOK_URL",
            "https://hook:hook-pass-5@bot.example/replicate?token=hook-tok-6".into(),
        ),
        (
            "REPLICATE_WEBHOOK_SECRET",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
        ),
        (
            "DATABASE_URL",
            format!("sqlite://{}", dir.path().join("logs.db").display()),
        ),
        ("RUST_LOG", "debug".into()),
    ];
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_genbot"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env_clear()
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let log = Log::collect(child.stderr.take().unwrap());
    wait_until(
        "serve to say it waits for the Bot API",
        Duration::from_secs(30),
        || async { log.count("waiting for the Telegram Bot API") >= 1 },
    )
    .await;
    sigterm(child.id().unwrap());
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("genbot did not stop within 20 s of SIGTERM")
        .unwrap();
    let logs = log.finish().await;
    assert!(status.success(), "exit {status:?}: {logs}");
    for secret in [
        "tg-pass-1",
        "tg-tok-2",
        "r-pass-3",
        "r-key-4",
        "hook-pass-5",
        "hook-tok-6",
        "AAlog-test-token",
    ] {
        assert!(!logs.contains(secret), "{secret} logged:\n{logs}");
    }
    assert!(
        logs.contains("predictions report their end by webhook"),
        "{logs}"
    );
}

/// The start-up refusal for a remote Replicate without a token names the URL, redacted.
#[test]
fn a_refusal_at_start_names_the_url_without_its_credentials() {
    let out = Command::new(env!("CARGO_BIN_EXE_genbot"))
        .arg("serve")
        .env_clear()
        .env("TELEGRAM_BOT_TOKEN", "123456:x")
        .env(
            "REPLICATE_API_URL",
            "https://r-user:r-pass-7@r.example/?token=r-tok-8",
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("REPLICATE_API_TOKEN is not set"),
        "{stderr}"
    );
    assert!(stderr.contains("r.example"), "{stderr}");
    for secret in ["r-pass-7", "r-tok-8"] {
        assert!(!stderr.contains(secret), "{secret} shown: {stderr}");
    }
}

/// A WEBHOOK_SECRET Telegram would refuse stops serve with exit 2 and one line, before it
/// reaches the Bot API (it used to panic inside teloxide once the Bot API answered).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_secret_telegram_refuses_exits_2_instead_of_panicking() {
    let (telegram, replicate) = default_mocks().await;
    let dir = tempfile::tempdir().unwrap();
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_genbot"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--webhook-url",
                "https://bot.example/telegram/webhook",
            ])
            .env_clear()
            .env("TELEGRAM_BOT_TOKEN", "123456:secret-test")
            .env("TELEGRAM_API_URL", telegram.url())
            .env("REPLICATE_API_URL", replicate.url())
            .env("WEBHOOK_SECRET", "not allowed!")
            .env(
                "DATABASE_URL",
                format!("sqlite://{}", dir.path().join("secret.db").display()),
            )
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("genbot neither failed nor stopped within 60 s")
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.starts_with("genbot: invalid WEBHOOK_SECRET=***: expected 1 to 256 of"),
        "{stderr}"
    );
    assert!(!stderr.contains("not allowed!"), "{stderr}");
}
