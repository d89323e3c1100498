use std::process::{Command, Stdio};
use std::time::Duration;

use genbot_mocks::replicate::{ReplicateMock, ReplicateMockConfig};
use genbot_mocks::telegram::{Entry, TelegramMock, TelegramMockConfig};

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

/// The real binary against both mocks: a user gets an image; SIGTERM stops it cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_answers_a_user_end_to_end_and_stops_on_sigterm() {
    let telegram = TelegramMock::start(TelegramMockConfig::default())
        .await
        .unwrap();
    let replicate = ReplicateMock::start(ReplicateMockConfig::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = crate::free_port();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_genbot"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env_clear()
        .env("TELEGRAM_BOT_TOKEN", "123456:e2e-secret-token")
        .env("TELEGRAM_API_URL", telegram.url())
        .env("REPLICATE_API_URL", replicate.url())
        .env("REPLICATE_API_TOKEN", "r8_e2e-secret")
        .env(
            "DATABASE_URL",
            format!("sqlite://{}", dir.path().join("e2e.db").display()),
        )
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

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

    let health = reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    let pid = child.id().unwrap().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("genbot did not stop within 20 s of SIGTERM")
        .unwrap();
    assert!(out.status.success(), "exit: {:?}", out.status);
    let logs = String::from_utf8_lossy(&out.stderr);
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
