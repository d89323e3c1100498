//! `deploy/`: the Prometheus rules pass `promtool check rules` and their unit tests
//! (`promtool test rules`), the Grafana dashboard's expressions are valid PromQL, and every
//! metric name the rules and the dashboard use is one a running `genbot serve` exposes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::process::{default_mocks, wait_until, Bot};

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

/// `promtool`, or `None` with a SKIPPED line outside CI (under CI a missing one fails:
/// `.ci/run` installs Debian's `prometheus` package, which has it).
fn promtool(test: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("promtool"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but promtool is missing (apt-get install prometheus)"
        );
        eprintln!("SKIPPED {test}: promtool not found (apt-get install prometheus)");
    }
    found
}

fn run_ok(program: &Path, args: &[&str], dir: &Path) -> String {
    let out = std::process::Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{program:?} {args:?}:\n{text}");
    text
}

/// The dashboard's PromQL expressions.
fn dashboard_expressions() -> Vec<String> {
    let text = std::fs::read_to_string(deploy_dir().join("grafana/genbot-dashboard.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter())
        .map(|t| t["expr"].as_str().unwrap().to_owned())
        .collect();
    assert!(exprs.len() >= 12, "{exprs:?}");
    exprs
}

#[test]
fn alert_rules_pass_promtool_and_their_unit_tests() {
    let Some(promtool) = promtool("alert_rules_pass_promtool_and_their_unit_tests") else {
        return;
    };
    let dir = deploy_dir().join("prometheus");
    let checked = run_ok(&promtool, &["check", "rules", "genbot-rules.yml"], &dir);
    assert!(checked.contains("SUCCESS: 12 rules found"), "{checked}");
    run_ok(&promtool, &["test", "rules", "genbot-rules.test.yml"], &dir);
    // Every alert has its unit test.
    let rules = std::fs::read_to_string(dir.join("genbot-rules.yml")).unwrap();
    let tests = std::fs::read_to_string(dir.join("genbot-rules.test.yml")).unwrap();
    for alert in rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
    {
        assert!(
            tests.contains(&format!("alertname: {alert}")),
            "no promtool test for {alert}"
        );
    }
    // The dashboard's expressions, as recording rules, must parse.
    let scratch = tempfile::tempdir().unwrap();
    let mut recording = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, expr) in dashboard_expressions().iter().enumerate() {
        recording.push_str(&format!(
            "      - record: dashboard_panel_{i}\n        expr: {}\n",
            serde_json::to_string(expr).unwrap()
        ));
    }
    std::fs::write(scratch.path().join("dashboard.yml"), recording).unwrap();
    run_ok(
        &promtool,
        &["check", "rules", "dashboard.yml"],
        scratch.path(),
    );
}

/// Every `genbot_…` name in `text` (and Prometheus' own `up`, which genbot does not expose).
fn metric_names(text: &str) -> std::collections::BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|token| token.starts_with("genbot_"))
        .map(str::to_owned)
        .collect()
}

/// The series names a `/metrics` page can carry: each `# TYPE` with its suffixes.
fn exposed(page: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    for line in page.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut parts = rest.split_whitespace();
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        match kind {
            "counter" => {
                names.insert(format!("{}_total", name.trim_end_matches("_total")));
            }
            "histogram" => {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
            _ => {
                names.insert(name.to_owned());
            }
        }
    }
    names
}

#[tokio::test]
async fn every_metric_the_rules_and_dashboard_use_is_exposed_by_genbot_serve() {
    let (telegram, replicate) = default_mocks().await;
    let dir = tempfile::tempdir().unwrap();
    let mut bot = Bot::new(
        &telegram,
        &replicate,
        &format!("sqlite://{}", dir.path().join("genbot.db").display()),
    );
    // A labelled counter has no series (and no # TYPE) before its first event: one 429 from
    // Telegram makes genbot_telegram_send_errors_total{code="429"} exist, as the rule expects.
    telegram.throttle_next("sendMessage", 1, 1);
    bot.start();
    let user = telegram.user(7001, "Ops", Some("en"));
    let metrics_url = format!("http://127.0.0.1:{}/metrics", bot.port().await);
    let page = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    wait_until(
        "a 429 from Telegram counted on /metrics",
        Duration::from_secs(30),
        || {
            let url = metrics_url.clone();
            let page = page.clone();
            user.send_text("/start");
            async move {
                let Ok(answer) = reqwest::get(&url).await else {
                    return false;
                };
                let text = answer.text().await.unwrap_or_default();
                let counted = text.contains("genbot_telegram_send_errors_total{code=\"429\"}");
                *page.lock().unwrap() = text;
                counted
            }
        },
    )
    .await;
    let page = page.lock().unwrap().clone();
    let exposed = exposed(&page);
    let rules = std::fs::read_to_string(deploy_dir().join("prometheus/genbot-rules.yml")).unwrap();
    let dashboard =
        std::fs::read_to_string(deploy_dir().join("grafana/genbot-dashboard.json")).unwrap();
    let used = metric_names(&format!("{rules}\n{dashboard}"));
    assert!(used.len() >= 20, "{used:?}");
    let missing: Vec<&String> = used.iter().filter(|n| !exposed.contains(*n)).collect();
    assert!(
        missing.is_empty(),
        "used in deploy/ but not on /metrics: {missing:?}\nexposed: {exposed:?}"
    );
    bot.terminate(Duration::from_secs(20)).await;
}

/// The value of `key=` in a unit or env file (the last one wins, as in systemd).
fn setting<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix(key)?.strip_prefix('='))
        .next_back()
        .map(str::trim)
}

#[test]
fn the_systemd_unit_is_hardened_and_verifies() {
    let dir = deploy_dir().join("systemd");
    let unit = std::fs::read_to_string(dir.join("genbot.service")).unwrap();
    let env = std::fs::read_to_string(dir.join("genbot.env.example")).unwrap();
    for (key, wanted) in [
        ("DynamicUser", "yes"),
        ("ProtectSystem", "strict"),
        ("PrivateTmp", "yes"),
        ("StateDirectory", "genbot"),
        ("Restart", "on-failure"),
        ("RestartPreventExitStatus", "2"),
        ("NoNewPrivileges", "yes"),
    ] {
        assert_eq!(setting(&unit, key), Some(wanted), "{key}");
    }
    assert!(setting(&unit, "RestartSec").is_some());
    let seconds = |text: &str| -> u64 { text.trim_end_matches('s').parse().unwrap() };
    let stop = seconds(setting(&unit, "TimeoutStopSec").unwrap());
    let grace = seconds(setting(&env, "SHUTDOWN_GRACE_SECONDS").unwrap());
    assert!(
        stop >= grace + 5,
        "TimeoutStopSec={stop} leaves SIGTERM's grace ({grace} s) no room"
    );
    let database = setting(&env, "DATABASE_URL").unwrap();
    assert!(
        database.starts_with("sqlite:///var/lib/genbot/"),
        "the SQLite file must be in the StateDirectory: {database}"
    );

    let Ok(version) = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
    else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but systemd-analyze is missing (apt-get install systemd)"
        );
        eprintln!("SKIPPED the_systemd_unit_is_hardened_and_verifies: no systemd-analyze");
        return;
    };
    assert!(version.status.success());
    // verify needs ExecStart's program to exist: the binary under test stands in for it.
    let scratch = tempfile::tempdir().unwrap();
    let copy = scratch.path().join("genbot.service");
    std::fs::write(
        &copy,
        unit.replace("/usr/local/bin/genbot", env!("CARGO_BIN_EXE_genbot")),
    )
    .unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .unwrap();
    // Unknown keys and bad values are only warnings (exit 0): any output is a failure.
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify: {:?}\n{said}",
        out.status
    );
}
