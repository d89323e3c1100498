//! `bad_input` from outside: a fragile aiogram bot that one message ("/ привет") takes down is
//! caught and named; `genbot serve` survives the same corpus with no death, and credits no
//! forged payment.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `genbot bench faults --quick --seed 7 ARGS --quiet --format json --out DIR/reports`.
fn faults(args: &[&str], dir: &Path, env: &[(&str, String)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_genbot"))
        .args(["bench", "faults", "--quick", "--seed", "7"])
        .args(args)
        .args(["--quiet", "--format", "json", "--out"])
        .arg(dir.join("reports"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .current_dir(dir)
        .output()
        .unwrap()
}

fn bad_input(dir: &Path) -> serde_json::Value {
    let path = dir.join("reports/fault_tolerance_report.json");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    report["tests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == "bad_input")
        .cloned()
        .unwrap_or_else(|| panic!("no bad_input in {report}"))
}

fn metric(test: &serde_json::Value, name: &str) -> f64 {
    test["metrics"][format!("bad_input.{name}")]
        .as_f64()
        .unwrap_or_else(|| panic!("no bad_input.{name} in {test}"))
}

#[test]
fn a_bot_that_one_message_kills_is_caught_and_the_message_named() {
    let python = workspace().join("target/pyenv/bin/python");
    let has_aiogram = Command::new(&python)
        .args(["-c", "import aiogram"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_aiogram {
        let why = format!(
            "{} with aiogram 3 is missing (`bash .ci/run` installs it)",
            python.display()
        );
        assert!(std::env::var("CI").is_err(), "{why}");
        eprintln!("SKIPPED a_bot_that_one_message_kills_is_caught_and_the_message_named: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let bot = workspace().join("examples/fragile_bots/slash_space_bot.py");
    let command = format!("{} {}", python.display(), bot.display());
    let output = faults(&["--bot-cmd", &command], dir.path(), &[]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let test = bad_input(dir.path());
    assert_eq!(test["grade"], "NEEDS_OPTIMIZATION", "{test}");
    assert!(metric(&test, "bot_deaths") >= 1.0, "{test}");
    let facts = test["facts"].to_string();
    assert!(
        facts.contains("the bot died") && facts.contains("slash, space, Cyrillic"),
        "{facts}"
    );
    assert!(facts.contains("/ привет"), "the update JSON: {facts}");
    assert!(facts.contains("seed 7"), "{facts}");
}

/// `genbot serve` as a black box (so only `bad_input` runs: the other fault tests start their
/// own replicas; `bench all` runs it on genbot's stage too). A whole fault-suite run (16 s), so
/// `.ci/run` runs it with `--ignored`; `cargo test` keeps the real `genbot serve` answering
/// hostile texts and setting a poison aside (`poison.rs`), and `bad_input` from outside on the
/// fragile bot above.
#[test]
#[ignore = "end-to-end suite run; .ci/run runs it"]
fn genbot_serve_survives_the_corpus() {
    let dir = tempfile::tempdir().unwrap();
    let serve = format!(
        "{} serve --listen 127.0.0.1:0 --initial-credits 1000",
        env!("CARGO_BIN_EXE_genbot")
    );
    let database = format!("sqlite://{}", dir.path().join("bot.db").display());
    let output = faults(
        &["--bot-cmd", &serve],
        dir.path(),
        &[("DATABASE_URL", database)],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let test = bad_input(dir.path());
    assert_eq!(metric(&test, "bot_deaths"), 0.0, "{test}");
    assert_eq!(metric(&test, "restart_deaths"), 0.0, "{test}");
    assert_eq!(metric(&test, "forged_payments_accepted"), 0.0, "{test}");
    assert_eq!(metric(&test, "unanswered"), 0.0, "{test}");
    assert!(metric(&test, "inputs_sent") >= 60.0, "{test}");
    assert_ne!(test["grade"], "NEEDS_OPTIMIZATION", "{test}");
}
