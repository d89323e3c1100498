use std::process::{Command, Output};

/// Runs `genbot config check` with a clean environment plus `vars`.
fn config_check(vars: &[(&str, &str)]) -> Output {
    let dir = tempfile::tempdir().expect("temp dir");
    Command::new(env!("CARGO_BIN_EXE_genbot"))
        .args(["config", "check"])
        .env_clear()
        .current_dir(dir.path())
        .envs(vars.iter().copied())
        .output()
        .expect("run genbot")
}

#[test]
fn defaults_are_valid() {
    let out = config_check(&[]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("DATABASE_URL"), "{stdout}");
    assert!(stdout.contains("sqlite://genbot.db"), "{stdout}");
}

#[test]
fn each_invalid_value_exits_2_with_one_line_naming_it() {
    let cases = [
        ("MAX_CONCURRENT_GENERATIONS", "abc"),
        ("MAX_CONCURRENT_GENERATIONS", "0"),
        ("MAX_CONCURRENT_GENERATIONS", "-3"),
        ("DATABASE_URL", "mysql://localhost/genbot"),
        ("MODELS_FILE", "/nonexistent/models.toml"),
        ("ADMIN_IDS", "12,x"),
        ("REPLICATE_RATE_LIMIT", "fast"),
        ("CACHE_TTL_SECONDS", "0"),
    ];
    for (variable, value) in cases {
        let out = config_check(&[(variable, value)]);
        assert_eq!(out.status.code(), Some(2), "{variable}={value}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with(&format!("genbot: invalid {variable}={value}: expected")),
            "{stderr}"
        );
    }
}

#[test]
fn a_default_model_missing_from_the_catalogue_exits_2_naming_it() {
    let out = config_check(&[("DEFAULT_MODEL", "nope")]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("DEFAULT_MODEL=nope is not in the catalogue"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "nothing promised valid: {out:?}");
}

#[test]
fn secrets_are_never_printed() {
    let out = config_check(&[
        ("TELEGRAM_BOT_TOKEN", "123:bot-secret-value"),
        ("REPLICATE_API_TOKEN", "r8_replicate-secret"),
        (
            "DATABASE_URL",
            "postgres://bot:db-secret@127.0.0.1:5432/test",
        ),
        ("REDIS_URL", "redis://:redis-secret@127.0.0.1:6379"),
        ("RUST_LOG", "trace"),
    ]);
    assert!(out.status.success(), "{out:?}");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for secret in [
        "bot-secret-value",
        "r8_replicate-secret",
        "db-secret",
        "redis-secret",
    ] {
        assert!(!all.contains(secret), "{secret} printed:\n{all}");
    }
}

#[test]
fn a_config_file_is_read_and_the_environment_wins() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("genbot.toml");
    std::fs::write(&file, "db_pool_size = 5\nqueue_max_length = 77\n").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_genbot"))
        .args(["config", "check"])
        .env_clear()
        .current_dir(dir.path())
        .env("DB_POOL_SIZE", "3")
        .output()
        .expect("run genbot");
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = |key: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(line("DB_POOL_SIZE ").contains(" 3 ") && line("DB_POOL_SIZE ").contains("[env]"));
    assert!(line("QUEUE_MAX_LENGTH").contains("77") && line("QUEUE_MAX_LENGTH").contains("[file]"));
}

#[test]
fn credentials_in_urls_never_reach_the_output() {
    let out = config_check(&[
        (
            "DATABASE_URL",
            "postgres://bot@db.internal/genbot?password=pg-secret-1",
        ),
        ("REDIS_URL", "rediss://redis-token-2@cache.internal:6380"),
    ]);
    assert!(out.status.success(), "{out:?}");
    let shown = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for secret in ["pg-secret-1", "redis-token-2"] {
        assert!(!shown.contains(secret), "{secret} shown: {shown}");
    }
    assert!(shown.contains("db.internal"), "{shown}");
    // libpq's keyword form is no URL genbot takes: refused, its password not echoed.
    let out = config_check(&[(
        "DATABASE_URL",
        "host=db user=bob password=pg-Secret&9 dbname=x",
    )]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("DATABASE_URL"), "{stderr}");
    assert!(
        !stderr.contains("pg-Secret") && !stderr.contains("&9"),
        "{stderr}"
    );
    // A value refused as invalid is echoed redacted too.
    let out = config_check(&[("REDIS_URL", "http://user:bad-3@h?token=bad-4")]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for secret in ["bad-3", "bad-4"] {
        assert!(!stderr.contains(secret), "{secret} shown: {stderr}");
    }
}

#[test]
fn credentials_in_the_api_and_webhook_urls_never_reach_the_output() {
    let out = config_check(&[
        (
            "TELEGRAM_API_URL",
            "https://tg-user:tg-pass-5@tg.internal/?token=tg-tok-6",
        ),
        (
            "REPLICATE_API_URL",
            "https://r-user:r-pass-7@r.internal/?api_key=r-key-8",
        ),
        (
            "REPLICATE_WEBHOOK_URL",
            "https://hook:hook-pass-9@bot.example/replicate?token=hook-tok-10",
        ),
    ]);
    assert!(out.status.success(), "{out:?}");
    let shown = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for secret in [
        "tg-user",
        "tg-pass-5",
        "tg-tok-6",
        "r-user",
        "r-pass-7",
        "r-key-8",
        "hook-pass-9",
        "hook-tok-10",
    ] {
        assert!(!shown.contains(secret), "{secret} shown: {shown}");
    }
    for host in ["tg.internal", "r.internal", "bot.example/replicate"] {
        assert!(shown.contains(host), "{host} missing: {shown}");
    }
    // A refused value is echoed redacted as well.
    for variable in [
        "TELEGRAM_API_URL",
        "REPLICATE_API_URL",
        "REPLICATE_WEBHOOK_URL",
    ] {
        let out = config_check(&[(variable, "ftp://u:bad-11@h/?token=bad-12")]);
        assert_eq!(out.status.code(), Some(2), "{variable}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.starts_with(&format!("genbot: invalid {variable}=")),
            "{stderr}"
        );
        for secret in ["bad-11", "bad-12"] {
            assert!(!stderr.contains(secret), "{secret} shown: {stderr}");
        }
    }
}

#[test]
fn a_webhook_secret_telegram_would_refuse_exits_2_without_echoing_it() {
    let too_long = "a".repeat(257);
    for bad in [
        "has-a space",
        "semi;colon-secret",
        "ünïcode-secret",
        "slash/secret",
        too_long.as_str(),
    ] {
        let out = config_check(&[("WEBHOOK_SECRET", bad)]);
        assert_eq!(out.status.code(), Some(2), "{bad}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with("genbot: invalid WEBHOOK_SECRET=***: expected 1 to 256 of"),
            "{stderr}"
        );
        assert!(!stderr.contains(bad), "{bad} echoed: {stderr}");
    }
    let max = "Az09_-".repeat(42) + "abcd";
    assert_eq!(max.len(), 256);
    for good in ["s3cret_Token-1", max.as_str()] {
        let out = config_check(&[("WEBHOOK_SECRET", good)]);
        assert!(out.status.success(), "{good}: {out:?}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!stdout.contains(good), "{stdout}");
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with("WEBHOOK_SECRET ") && l.contains("***")),
            "{stdout}"
        );
    }
}

/// Test hooks are checked as `serve` reads them: a value `serve` refuses exits 2 naming it
/// (before, `config check` passed it and `serve` then refused to start), and armed hooks pass
/// with a warning naming each, never printed among the settings.
#[test]
fn test_hooks_are_checked_like_serve_and_warned_of_when_armed() {
    let bad = config_check(&[
        ("GENBOT_TEST_HOOKS", "1"),
        ("GENBOT_TEST_SLOW_HANDLERS_MS", "99999"),
    ]);
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(
            "GENBOT_TEST_SLOW_HANDLERS_MS=\"99999\": expected whole milliseconds from 0 to 10000"
        ),
        "{stderr}"
    );
    assert!(bad.stdout.is_empty(), "nothing promised valid: {bad:?}");

    let armed = config_check(&[
        ("GENBOT_TEST_HOOKS", "1"),
        ("GENBOT_TEST_SLOW_HANDLERS_MS", "300"),
        ("GENBOT_TEST_POISON_TEXT", "secret poison"),
    ]);
    assert!(armed.status.success(), "{armed:?}");
    let stderr = String::from_utf8_lossy(&armed.stderr);
    assert!(
        stderr.contains("warning: test hooks armed")
            && stderr.contains("GENBOT_TEST_SLOW_HANDLERS_MS=300")
            && stderr.contains("GENBOT_TEST_POISON_TEXT"),
        "{stderr}"
    );
    assert!(!stderr.contains("secret poison"), "{stderr}");

    let unarmed = config_check(&[]);
    assert!(
        !String::from_utf8_lossy(&unarmed.stderr).contains("test hooks"),
        "{unarmed:?}"
    );
}

#[test]
fn a_replicate_webhook_secret_serve_would_refuse_exits_2_without_echoing_it() {
    for bad in ["whsec_", "whsec_!!!", "c2VjcmV0LWtleQ=="] {
        let stderr = refused_in_one_line(&config_check(&[("REPLICATE_WEBHOOK_SECRET", bad)]));
        assert!(
            stderr.starts_with(
                "genbot: invalid REPLICATE_WEBHOOK_SECRET=***: expected whsec_<base64>"
            ),
            "{stderr}"
        );
        // The message names the prefix itself, so only what follows it must not show.
        let payload = bad.trim_start_matches("whsec_");
        assert!(
            payload.is_empty() || !stderr.contains(payload),
            "{bad} echoed: {stderr}"
        );
    }
    let good = "whsec_c2VjcmV0LWtleQ==";
    let out = config_check(&[("REPLICATE_WEBHOOK_SECRET", good)]);
    assert!(out.status.success(), "{out:?}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains(good));
}

/// The stderr of a run that must have exited 2 with one line.
fn refused_in_one_line(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    stderr
}
