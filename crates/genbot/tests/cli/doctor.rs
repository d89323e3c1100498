//! `genbot doctor` against the in-repo mocks: a healthy deployment passes, and each fault an
//! operator meets (wrong token, webhook set while configured for polling, unreachable database,
//! unknown model, skewed clock, unreachable Redis) fails its own check with exit code 1.

use std::process::Output;

use genbot_mocks::replicate::ReplicateMock;
use genbot_mocks::telegram::TelegramMock;
use serde_json::Value;

use crate::process::{database_url_text, default_mocks, scratch_postgres};

/// The variables a deployment on both mocks needs, on a fresh SQLite file in `dir`.
fn deployment(
    telegram: &TelegramMock,
    replicate: &ReplicateMock,
    dir: &std::path::Path,
) -> Vec<(String, String)> {
    [
        ("TELEGRAM_BOT_TOKEN", "123456:doctor-secret"),
        ("TELEGRAM_API_URL", telegram.url()),
        ("REPLICATE_API_URL", replicate.url()),
        ("REPLICATE_API_TOKEN", "r8_doctor-secret"),
        (
            "DATABASE_URL",
            &format!("sqlite://{}", dir.join("genbot.db").display()),
        ),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect()
}

fn with(mut env: Vec<(String, String)>, key: &str, value: &str) -> Vec<(String, String)> {
    env.retain(|(k, _)| k != key);
    env.push((key.to_owned(), value.to_owned()));
    env
}

async fn run(env: &[(String, String)], args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    tokio::process::Command::new(env!("CARGO_BIN_EXE_genbot"))
        .arg("doctor")
        .args(args)
        .env_clear()
        .current_dir(dir.path())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .await
        .unwrap()
}

/// Runs `doctor --format json`: the exit code and each check's status by name.
async fn doctor(env: &[(String, String)]) -> (Option<i32>, Value) {
    let out = run(env, &["--format", "json"]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    for secret in ["doctor-secret", "pw-secret"] {
        assert!(!stdout.contains(secret), "a secret was printed: {stdout}");
    }
    (out.status.code(), report)
}

fn status<'a>(report: &'a Value, name: &str) -> &'a str {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name}: {report:#}"))["status"]
        .as_str()
        .unwrap()
}

fn failed(report: &Value) -> Vec<String> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "FAIL")
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect()
}

/// Armed test hooks are a WARN naming them; a value `serve` would refuse is a FAIL; none set,
/// no line.
#[tokio::test]
async fn armed_test_hooks_are_flagged() {
    let (telegram, replicate) = default_mocks().await;
    let dir = tempfile::tempdir().unwrap();
    let env = deployment(&telegram, &replicate, dir.path());
    let (_, report) = doctor(&env).await;
    assert!(
        !report.to_string().contains("process.test_hooks"),
        "{report:#}"
    );
    let armed = with(
        with(env.clone(), "GENBOT_TEST_HOOKS", "1"),
        "GENBOT_TEST_HOLD_WEBHOOK_UPDATES_MS",
        "500",
    );
    let (code, report) = doctor(&armed).await;
    assert_eq!(status(&report, "process.test_hooks"), "WARN", "{report:#}");
    assert_eq!(code, Some(0), "{report:#}");
    let bad = with(armed, "GENBOT_TEST_HOLD_WEBHOOK_UPDATES_MS", "soon");
    let (code, report) = doctor(&bad).await;
    assert_eq!(status(&report, "process.test_hooks"), "FAIL", "{report:#}");
    assert_eq!(code, Some(1), "{report:#}");
}

#[tokio::test]
async fn a_healthy_deployment_passes_with_one_line_per_check() {
    let (telegram, replicate) = default_mocks().await;
    let dir = tempfile::tempdir().unwrap();
    let env = deployment(&telegram, &replicate, dir.path());
    let (code, report) = doctor(&env).await;
    assert_eq!(code, Some(0), "{report:#}");
    assert!(failed(&report).is_empty(), "{report:#}");
    for name in [
        "telegram.token",
        "telegram.privacy",
        "telegram.webhook",
        "database.reachable",
        "database.schema",
        "sqlite.disk",
        "redis",
        "replicate.token",
        "clock.telegram",
        "clock.replicate",
        "payments.stars",
    ] {
        assert_eq!(status(&report, name), "OK", "{name}: {report:#}");
    }
    // sdxl is pinned by a bare version, which Replicate cannot look up on its own.
    assert_eq!(status(&report, "replicate.models"), "WARN", "{report:#}");
    assert!(
        !dir.path().join("genbot.db").exists(),
        "doctor created the SQLite file"
    );

    let out = run(&env, &[]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    let checks = report["checks"].as_array().unwrap().len();
    assert_eq!(text.lines().count(), checks + 1, "{text}");
    for line in text.lines().take(checks) {
        assert!(
            ["OK ", "WARN", "FAIL"].iter().any(|s| line.starts_with(s)),
            "{line}"
        );
    }
    assert!(text.contains("@genbot_mock_bot"), "{text}");
}

#[tokio::test]
async fn a_rejected_token_fails() {
    let (telegram, replicate) = default_mocks().await;
    let dir = tempfile::tempdir().unwrap();
    telegram.fail_next("getMe", 401, "Unauthorized", 1);
    let (code, report) = doctor(&deployment(&telegram, &replicate, dir.path())).await;
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(failed(&report), ["telegram.token"], "{report:#}");
}

#[tokio::test]
async fn a_webhook_while_polling_an_unreachable_database_an_unknown_model_and_skewed_clocks_fail() {
    let (telegram, replicate) = default_mocks().await;
    let dir = tempfile::tempdir().unwrap();
    let env = deployment(&telegram, &replicate, dir.path());
    // Set as an operator would, with the real command.
    let set = run_command(
        &env,
        &["webhook", "set", "https://bot.example/telegram/webhook"],
    )
    .await;
    assert!(set.status.success(), "{set:?}");
    replicate.forget_model("black-forest-labs/flux-dev");
    replicate.skew_clock(600);
    telegram.skew_clock(-600);
    // Nothing listens on port 1.
    let env = with(
        env,
        "DATABASE_URL",
        "postgres://genbot:pw-secret@127.0.0.1:1/genbot",
    );
    let (code, report) = doctor(&env).await;
    assert_eq!(code, Some(1), "{report:#}");
    let mut failed = failed(&report);
    failed.sort();
    assert_eq!(
        failed,
        [
            "clock.replicate",
            "clock.telegram",
            "database.reachable",
            "replicate.models",
            "telegram.webhook"
        ],
        "{report:#}"
    );
    assert_eq!(status(&report, "telegram.token"), "OK", "{report:#}");
    let models = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "replicate.models")
        .unwrap();
    assert!(
        models["detail"].as_str().unwrap().contains("flux-dev"),
        "{models:#}"
    );

    // The same webhook is right for a deployment that receives there.
    let (_, report) = doctor_with_args(
        &env,
        &["--webhook-url", "https://bot.example/telegram/webhook"],
    )
    .await;
    assert_eq!(status(&report, "telegram.webhook"), "OK", "{report:#}");
}

#[tokio::test]
async fn postgres_and_redis_are_looked_at_without_changes() {
    let Some(database) = scratch_postgres("postgres_and_redis_are_looked_at_without_changes").await
    else {
        return;
    };
    let (telegram, replicate) = default_mocks().await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = deployment(&telegram, &replicate, dir.path());
    env = with(env, "DATABASE_URL", &database_url_text(&database));
    let redis = std::env::var("REDIS_URL").ok();
    if let Some(url) = &redis {
        env = with(env, "REDIS_URL", url);
    }
    let (_, report) = doctor(&env).await;
    assert_eq!(status(&report, "database.reachable"), "OK", "{report:#}");
    // An empty database: serve would migrate it; doctor did not.
    assert_eq!(status(&report, "database.schema"), "WARN", "{report:#}");
    assert_eq!(status(&report, "clock.database"), "OK", "{report:#}");
    assert_ne!(status(&report, "database.rights"), "FAIL", "{report:#}");
    if redis.is_some() {
        assert_eq!(status(&report, "redis.reachable"), "OK", "{report:#}");
        assert!(
            report["checks"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["name"] == "redis.eviction"),
            "{report:#}"
        );
    }
    // Migrated, the schema is current.
    let store = crate::process::open(&database_url_text(&database)).await;
    drop(store);
    let (_, report) = doctor(&env).await;
    assert_eq!(status(&report, "database.schema"), "OK", "{report:#}");

    let env = with(env, "REDIS_URL", "redis://127.0.0.1:1");
    let (code, report) = doctor(&env).await;
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(status(&report, "redis.reachable"), "FAIL", "{report:#}");
    database.drop_now().await.unwrap();
}

async fn run_command(env: &[(String, String)], args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_genbot"))
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .await
        .unwrap()
}

async fn doctor_with_args(env: &[(String, String)], args: &[&str]) -> (Option<i32>, Value) {
    let mut all = vec!["--format", "json"];
    all.extend_from_slice(args);
    let out = run(env, &all).await;
    let report = serde_json::from_slice(&out.stdout).unwrap();
    (out.status.code(), report)
}
