//! A real Prometheus (Debian's `prometheus` package) scraping a real `genbot serve` against the
//! mocks, evaluating deploy/prometheus/genbot-rules.yml: two faults provoked one after the
//! other (Telegram answering 429 to every send; Replicate failing every prediction) fire
//! their alerts, which clear when the fault ends, and the README's latency quantile over
//! `genbot_update_seconds_bucket` gives a value. Everything is read back through Prometheus'
//! HTTP API, as Grafana or an on-call engineer would.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use genbot_mocks::replicate::ReplicateMockConfig;

use crate::process::{default_mocks, wait_until, Bot};

/// How much faster time runs in the rules under test: every `for:` and every range (`[5m]`)
/// of the deployed rules is divided by it (5m → 1250ms), so an alert that would take minutes
/// to fire and clear does so in seconds while its expression stays the deployed one.
const TIME_SCALE: u64 = 240;
/// Prometheus' scrape and evaluation interval, in milliseconds: a compressed range holds
/// several scrapes (the shortest one the alerts under test use, `[5m]`, holds five).
const SCRAPE_MS: u64 = 250;

/// `name` on `PATH`, or `None` with a SKIPPED line outside CI (under CI a missing one fails:
/// `.ci/run` installs Debian's `prometheus` package).
fn program(name: &str, test: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but {name} is missing (apt-get install prometheus)"
        );
        eprintln!("SKIPPED {test}: {name} not found (apt-get install prometheus)");
    }
    found
}

/// A Prometheus duration (`90s`, `5m`, `1h`) in seconds.
fn seconds(duration: &str) -> Option<u64> {
    let split = duration.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = duration.split_at(split);
    let n: u64 = n.parse().ok()?;
    match unit {
        "s" => Some(n),
        "m" => Some(n * 60),
        "h" => Some(n * 3600),
        "d" => Some(n * 86_400),
        _ => None,
    }
}

/// `duration` divided by [`TIME_SCALE`], at least two scrapes, in milliseconds as Prometheus
/// writes them.
fn scaled(duration: &str) -> String {
    let s = seconds(duration).unwrap_or_else(|| panic!("not a duration: {duration}"));
    format!("{}ms", (s * 1000 / TIME_SCALE).max(2 * SCRAPE_MS))
}

/// The deployed rules with time compressed by [`TIME_SCALE`]: each `for:` and each range
/// selector rewritten, nothing else (thresholds, labels and expressions stay as deployed).
fn compressed_rules(rules: &str) -> String {
    let mut out = String::with_capacity(rules.len());
    for line in rules.lines() {
        let trimmed = line.trim_start();
        if let Some(duration) = trimmed.strip_prefix("for: ") {
            let indent = &line[..line.len() - trimmed.len()];
            out.push_str(&format!("{indent}for: {}\n", scaled(duration.trim())));
            continue;
        }
        // Range selectors: `[10m]` → `[2500ms]`.
        let mut rest = line;
        while let Some(open) = rest.find('[') {
            let Some(close) = rest[open..].find(']').map(|c| open + c) else {
                break;
            };
            let inside = &rest[open + 1..close];
            out.push_str(&rest[..=open]);
            if seconds(inside).is_some() {
                out.push_str(&scaled(inside));
            } else {
                out.push_str(inside);
            }
            out.push(']');
            rest = &rest[close + 1..];
        }
        out.push_str(rest);
        out.push('\n');
    }
    out
}

/// A `prometheus` server in its own temporary directory; killed on drop.
struct Prometheus {
    child: std::process::Child,
    url: String,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts `binary` scraping `target`'s /metrics and evaluating `rules` every
    /// [`SCRAPE_MS`], on a port it picks itself.
    async fn start(binary: &Path, target: &str, rules: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("rules.yml"), rules).unwrap();
        let config = format!(
            "global:\n  scrape_interval: {SCRAPE_MS}ms\n  scrape_timeout: {SCRAPE_MS}ms\n  evaluation_interval: {SCRAPE_MS}ms\n\
             rule_files:\n  - rules.yml\n\
             scrape_configs:\n  - job_name: genbot\n    static_configs:\n      - targets: [\"{target}\"]\n"
        );
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = std::process::Command::new(binary)
            .current_dir(dir.path())
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg("--web.listen-address=127.0.0.1:0")
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut prometheus = Prometheus {
            child,
            url: String::new(),
            dir,
        };
        // It logs the address it bound: `msg="Listening on" address=127.0.0.1:PORT`.
        let bound = |log: &str| {
            log.lines().find_map(|line| {
                let (_, rest) = line.split_once("msg=\"Listening on\" address=127.0.0.1:")?;
                rest.split(|c: char| !c.is_ascii_digit())
                    .next()?
                    .parse::<u16>()
                    .ok()
            })
        };
        wait_until(
            "Prometheus says where it listens",
            Duration::from_secs(30),
            || async { bound(&prometheus.log()).is_some() },
        )
        .await;
        let port = bound(&prometheus.log()).expect("just seen");
        prometheus.url = format!("http://127.0.0.1:{port}");
        prometheus
    }

    /// Its log so far, for a failure message.
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    async fn get(&self, path: &str, query: &[(&str, &str)]) -> Option<serde_json::Value> {
        let answer = reqwest::Client::new()
            .get(format!("{}{path}", self.url))
            .query(query)
            .send()
            .await
            .ok()?;
        let body: serde_json::Value = answer.json().await.ok()?;
        (body["status"] == "success").then(|| body["data"].clone())
    }

    /// The state (`pending`, `firing`) of each active alert, by name.
    async fn alerts(&self) -> std::collections::BTreeMap<String, String> {
        let Some(data) = self.get("/api/v1/alerts", &[]).await else {
            return Default::default();
        };
        data["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| {
                Some((
                    a["labels"]["alertname"].as_str()?.to_owned(),
                    a["state"].as_str()?.to_owned(),
                ))
            })
            .collect()
    }

    /// The values of an instant query's series.
    async fn query(&self, promql: &str) -> Vec<f64> {
        let Some(data) = self.get("/api/v1/query", &[("query", promql)]).await else {
            return Vec::new();
        };
        data["result"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["value"][1].as_str()?.parse().ok())
            .collect()
    }

    /// Waits until `alert` is in `state` (`None`: not active at all), polling the API.
    async fn wait_alert(&self, alert: &str, state: Option<&str>, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let alerts = self.alerts().await;
            if alerts.get(alert).map(String::as_str) == state {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "waited {limit:?} for {alert} to be {state:?}; active: {alerts:?}\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn compressed_rules_rewrite_every_for_and_range_and_nothing_else() {
    let rules = "      - alert: A\n        expr: rate(x[10m]) > 0.1 and y[1h] \n        for: 5m\n        annotations:\n          summary: \"{{ $labels.a }} [sic]\"\n";
    assert_eq!(
        compressed_rules(rules),
        "      - alert: A\n        expr: rate(x[2500ms]) > 0.1 and y[15000ms] \n        for: 1250ms\n        annotations:\n          summary: \"{{ $labels.a }} [sic]\"\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_fires_and_clears_the_alerts_for_telegram_and_replicate_faults() {
    const TEST: &str =
        "a_real_prometheus_fires_and_clears_the_alerts_for_telegram_and_replicate_faults";
    let Some(binary) = program("prometheus", TEST) else {
        return;
    };
    let started = Instant::now();
    let (telegram, replicate) = default_mocks().await;
    let dir = tempfile::tempdir().unwrap();
    let bot = Bot::new(
        &telegram,
        &replicate,
        &format!("sqlite://{}", dir.path().join("genbot.db").display()),
    )
    .with("DAILY_GENERATION_LIMIT", "1000000")
    .with_args(&["--initial-credits", "100000"]);
    // Fixed, so that Prometheus starts beside the bot instead of after it.
    let port = crate::free_port();
    let mut bot = bot.listen_on(port);
    bot.start();

    let deployed = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/prometheus/genbot-rules.yml"),
    )
    .unwrap();
    let prometheus = Prometheus::start(
        &binary,
        &format!("127.0.0.1:{port}"),
        &compressed_rules(&deployed),
    )
    .await;
    // Prometheus hands new targets to its scrapers every 5 s: the first scrape comes then.
    wait_until(
        "Prometheus scrapes genbot serve (up == 1)",
        Duration::from_secs(20),
        || async { prometheus.query("up{job=\"genbot\"} == 1").await.len() == 1 },
    )
    .await;

    // Steady traffic all along: users writing prompts in turn, so every window of the rules
    // has sends and generations to judge (and updates for the latency quantile).
    let users: Vec<_> = (0..6)
        .map(|i| telegram.user(7100 + i, &format!("Prom{i}"), Some("en")))
        .collect();
    for user in &users {
        user.send_text("/start");
    }
    let scraped = started.elapsed();
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                users[n % users.len()].send_text(&format!("a lighthouse number {n}"));
                n += 1;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };

    let telegram_alert = "GenbotTelegramThrottled";
    let replicate_alert = "GenbotGenerationsFailing";
    let limit = Duration::from_secs(30);

    // Fault 1: Telegram refuses every send with 429 (retry after 1 s).
    for method in [
        "sendMessage",
        "sendPhoto",
        "editMessageText",
        "sendChatAction",
    ] {
        telegram.throttle_next(method, 1, 1_000_000);
    }
    prometheus
        .wait_alert(telegram_alert, Some("firing"), limit)
        .await;
    assert_eq!(
        prometheus.alerts().await.get(replicate_alert),
        None,
        "Replicate's alert fired on Telegram's fault"
    );
    let telegram_fired = started.elapsed();
    telegram.clear_faults();
    prometheus.wait_alert(telegram_alert, None, limit).await;
    let telegram_cleared = started.elapsed();

    // Fault 2: Replicate fails every prediction.
    replicate.reconfigure(ReplicateMockConfig {
        failure_rate: 1.0,
        ..ReplicateMockConfig::default()
    });
    prometheus
        .wait_alert(replicate_alert, Some("firing"), limit)
        .await;
    assert_eq!(
        prometheus.alerts().await.get(telegram_alert),
        None,
        "Telegram's alert fired on Replicate's fault"
    );
    let replicate_fired = started.elapsed();
    replicate.reconfigure(ReplicateMockConfig::default());
    prometheus.wait_alert(replicate_alert, None, limit).await;
    let replicate_cleared = started.elapsed();

    // The README's p99 of update handling, as a dashboard would ask it.
    let p99 = prometheus
        .query("histogram_quantile(0.99, sum(rate(genbot_update_seconds_bucket[1m])) by (le))")
        .await;
    assert!(
        p99.len() == 1 && p99[0].is_finite() && p99[0] > 0.0,
        "p99 of genbot_update_seconds: {p99:?}"
    );
    let throttled = prometheus
        .query("genbot_telegram_send_errors_total{code=\"429\"}")
        .await;
    assert!(throttled.iter().any(|v| *v > 0.0), "{throttled:?}");

    stop.store(true, Ordering::Relaxed);
    traffic.await.unwrap();
    // SIGKILL: a clean stop is other tests' business, and SIGTERM's grace would only add time.
    bot.kill().await;
    eprintln!(
        "prometheus end-to-end: scraping after {scraped:.1?}; {telegram_alert} fired at \
         {telegram_fired:.1?}, cleared at {telegram_cleared:.1?}; {replicate_alert} fired at \
         {replicate_fired:.1?}, cleared at {replicate_cleared:.1?}; p99 update {:.4} s; {} 429s \
         counted; {:.1?} in all",
        p99[0],
        throttled.iter().sum::<f64>(),
        started.elapsed()
    );
}
