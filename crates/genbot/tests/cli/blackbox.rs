//! Black-box runs (`--bot-cmd`, `--attach`): other bots — a crashing command, misbehaving
//! Python bots, the aiogram 3 example — and `genbot serve` as a separate process, measured from
//! outside; and `bench compare` on two runs of one build and on a deliberately slowed one.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The workspace root (examples/ and target/ live there).
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .display()
        .to_string()
}

/// `genbot bench ARGS --quiet --out DIR/OUT` with only PATH and `env` set.
fn bench(args: &[&str], dir: &Path, out: &str, env: &[(&str, String)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_genbot"))
        .arg("bench")
        .args(args)
        .args(["--quiet", "--out"])
        .arg(dir.join(out))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .current_dir(dir)
        .output()
        .unwrap()
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn test<'a>(report: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    report["tests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id)
        .unwrap_or_else(|| panic!("no {id} in {report}"))
}

fn metric(report: &serde_json::Value, id: &str, name: &str) -> f64 {
    let t = test(report, id);
    t["metrics"][format!("{id}.{name}")]
        .as_f64()
        .unwrap_or_else(|| panic!("no {id}.{name} in {t}"))
}

/// The outcome when a fixture's interpreter is missing: SKIPPED outside CI, a failure in CI
/// (where `.ci/run` installs it).
fn missing(test: &str, why: &str) {
    assert!(
        std::env::var("CI").is_err(),
        "{test}: {why} (in CI, .ci/run must install it)"
    );
    eprintln!("SKIPPED {test}: {why}");
}

/// `python3` if it runs here.
fn python3() -> Option<&'static str> {
    let works = Command::new("python3")
        .args(["-c", "pass"])
        .output()
        .is_ok_and(|o| o.status.success());
    works.then_some("python3")
}

/// genbot's own bot as a separate process, on its own SQLite file in `dir`.
fn genbot_serve(extra: &str) -> String {
    format!(
        "{} serve --listen 127.0.0.1:0 --initial-credits 100000{extra}",
        env!("CARGO_BIN_EXE_genbot")
    )
}

fn sqlite_env(dir: &Path, name: &str) -> (&'static str, String) {
    (
        "DATABASE_URL",
        format!("sqlite://{}", dir.join(name).display()),
    )
}

#[test]
fn a_bot_that_crashes_at_start_gets_a_clear_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let output = bench(
        &[
            "performance",
            "--quick",
            "--bot-cmd",
            "echo 'token refused' >&2; exit 3",
        ],
        dir.path(),
        "reports",
        &[],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("the bot exited before it polled or set a webhook (exit status: 3)")
            && stderr.contains("token refused"),
        "{stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn bad_scenarios_are_refused_naming_the_step_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("bad.toml");
    std::fs::write(
        &scenario,
        "[[step]]\nsend = \"/start\"\n[[step]]\npress = \"(unclosed\"\n",
    )
    .unwrap();
    let output = bench(
        &[
            "performance",
            "--bot-cmd",
            "sleep 60",
            "--scenario",
            scenario.to_str().unwrap(),
        ],
        dir.path(),
        "reports",
        &[],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("step 2, field `press`: not a regular expression"),
        "{stderr}"
    );
    let output = bench(
        &["performance", "--scenario", scenario.to_str().unwrap()],
        dir.path(),
        "reports",
        &[],
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--scenario describes another bot"));
}

#[test]
fn bots_that_never_answer_or_answer_wrongly_are_named_by_step_and_user() {
    let Some(python) = python3() else {
        missing(
            "bots_that_never_answer_or_answer_wrongly_are_named_by_step_and_user",
            "python3 is not installed",
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("hello.toml");
    std::fs::write(
        &scenario,
        "name = \"hello fixture\"\n[[step]]\nsend = \"/start\"\nexpect = { text = \"(?i)hello\", within_s = 2 }\n",
    )
    .unwrap();
    // The two runs wait on the bots (the suite's CPU is near 0 %): side by side they take the
    // time of one.
    let run = |mode: &str, wanted: &str| {
        let started = Instant::now();
        let command = format!("{python} {} {mode}", fixture("stdlib_bot.py"));
        let output = bench(
            &[
                "performance",
                "--quick",
                "--users",
                "5",
                "--format",
                "json",
                "--bot-cmd",
                &command,
                "--scenario",
                scenario.to_str().unwrap(),
            ],
            dir.path(),
            mode,
            &[],
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{mode}: {stderr}");
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{mode} took {:?}",
            started.elapsed()
        );
        let report = read_json(&dir.path().join(mode).join("performance_report.json"));
        let users = test(&report, "concurrent_users");
        assert_eq!(users["grade"], "NEEDS_OPTIMIZATION", "{users}");
        assert_eq!(metric(&report, "concurrent_users", "success_rate"), 0.0);
        let advice = users["recommendations"][0].as_str().unwrap();
        assert!(advice.contains(wanted), "{mode}: {advice}");
        let came = if mode == "silent" {
            "no answer within 2.0 s (expected a message matching /(?i)hello/)"
        } else {
            "expected a message matching /(?i)hello/, got message \"Bonjour\""
        };
        assert!(advice.contains(came), "{mode}: {advice}");
        assert_eq!(
            test(&report, "db_read")["not_applicable"]
                .as_str()
                .map(|r| r.contains("black-box bot")),
            Some(true)
        );
        assert!(report["environment"]["bot"]
            .as_str()
            .unwrap()
            .contains("stdlib_bot.py"));
    };
    std::thread::scope(|s| {
        let silent = s.spawn(|| run("silent", "step 1, user 100000"));
        let wrong = s.spawn(|| run("wrong", "step 1, user 100000"));
        for (mode, outcome) in [("silent", silent.join()), ("wrong", wrong.join())] {
            if let Err(panic) = outcome {
                eprintln!("the {mode} bot's run failed (its message is above)");
                std::panic::resume_unwind(panic);
            }
        }
    });
}

/// The generation-settings suite twice, on `genbot serve` from outside and in-process: both
/// measure the same slots, rate and queue. Two whole suite runs (about a minute on two cores),
/// so `.ci/run` runs it with `--ignored`, not `cargo test`.
#[test]
#[ignore = "end-to-end suite run; .ci/run runs it"]
fn genbot_serve_black_box_sees_what_the_in_process_checks_see() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        sqlite_env(dir.path(), "bot.db"),
        ("MAX_CONCURRENT_GENERATIONS", "8".to_owned()),
        ("MAX_CONCURRENT_GENERATIONS_PER_USER", "2".to_owned()),
        ("REPLICATE_RATE_LIMIT", "600".to_owned()),
    ];
    let command = genbot_serve("");
    let outside = bench(
        &[
            "generation-settings",
            "--quick",
            "--format",
            "json",
            "--bot-cmd",
            &command,
        ],
        dir.path(),
        "outside",
        &env,
    );
    assert!(
        outside.status.success(),
        "{}",
        String::from_utf8_lossy(&outside.stderr)
    );
    let inside = bench(
        &["generation-settings", "--quick", "--format", "json"],
        dir.path(),
        "inside",
        &env,
    );
    assert!(inside.status.success());
    let outside = read_json(&dir.path().join("outside/generation_settings_report.json"));
    let inside = read_json(&dir.path().join("inside/generation_settings_report.json"));
    for name in ["max_in_flight", "per_user_max_in_flight"] {
        assert_eq!(
            metric(&outside, "semaphores", name),
            metric(&inside, "semaphores", name),
            "semaphores.{name}: outside {}, inside {}",
            test(&outside, "semaphores"),
            test(&inside, "semaphores")
        );
    }
    assert_eq!(metric(&outside, "semaphores", "max_in_flight"), 8.0);
    let (rate_out, rate_in) = (
        metric(&outside, "rate_limiting", "measured_per_min"),
        metric(&inside, "rate_limiting", "measured_per_min"),
    );
    assert!(
        (rate_out - rate_in).abs() / rate_in <= 0.05,
        "rate outside {rate_out}/min, inside {rate_in}/min"
    );
    for name in ["a_order_kept", "lost_jobs", "finished_twice"] {
        assert_eq!(
            metric(&outside, "queue", name),
            metric(&inside, "queue", name),
            "queue.{name}: outside {}, inside {}",
            test(&outside, "queue"),
            test(&inside, "queue")
        );
    }
    assert_eq!(metric(&outside, "queue", "lost_jobs"), 0.0);
    for report in [&outside, &inside] {
        let b = metric(report, "queue", "b_started_at");
        assert!((0.0..=3.0).contains(&b), "B served late: {b}");
    }
    let bot = outside["environment"]["bot"].as_str().unwrap();
    assert!(
        bot.contains("exited") && bot.contains("after SIGTERM"),
        "{bot}"
    );
}

/// `bench compare` end to end on canned reports: three real black-box runs of `genbot serve`
/// (`bench performance --quick --users 20 --format json --bot-cmd "genbot serve …"` with
/// `TELEGRAM_SENDS_PER_SECOND=1000`; two of one build, one slowed by the test hook
/// `GENBOT_TEST_HOOKS=1 GENBOT_TEST_SLOW_HANDLERS_MS=300`, a flag when they were recorded),
/// recorded in `tests/fixtures/compare/` without their series and monitoring, which compare
/// does not read. Running the three here took 105 s of every test run; the comparison logic
/// has unit tests in `genbot_bench::compare`, and what a black-box run of `genbot serve`
/// measures (payments included) is checked live by `a_webhook_bot_is_measured_…`.
#[test]
fn compare_passes_one_build_twice_and_names_the_metric_a_slowed_build_regressed() {
    let dir = tempfile::tempdir().unwrap();
    let canned = |name: &str| PathBuf::from(fixture(&format!("compare/{name}.json")));
    let (first, second, slowed) = (canned("first"), canned("second"), canned("slowed"));
    let compare = |old: &Path, new: &Path| {
        Command::new(env!("CARGO_BIN_EXE_genbot"))
            .args(["bench", "compare"])
            .args([old, new])
            .arg("--old-repeat")
            .arg(&second)
            .arg("--out")
            .arg(dir.path().join("comparison"))
            .env_clear()
            .output()
            .unwrap()
    };
    // The recorded runs are what they say: the default scenario's purchase went through for
    // each of the 20 users, and the slowed build's handlers were slower.
    for run in [&first, &second, &slowed] {
        assert_eq!(
            metric(&read_json(run), "concurrent_users", "payments"),
            20.0,
            "{}",
            run.display()
        );
    }
    let p50 = |run: &Path| metric(&read_json(run), "concurrent_users", "p50_ms");
    assert!(
        p50(&slowed) >= p50(&first) + 250.0,
        "the slowed run is not slower"
    );
    let same = compare(&first, &second);
    let text = String::from_utf8_lossy(&same.stdout);
    assert_eq!(same.status.code(), Some(0), "{text}");
    assert!(text.contains("no metric regressed"), "{text}");
    let worse = compare(&first, &slowed);
    let text = String::from_utf8_lossy(&worse.stdout);
    assert_eq!(worse.status.code(), Some(1), "{text}");
    assert!(
        text.contains("REGRESSED beyond 10 %") && text.contains("concurrent_users.p50_ms"),
        "{text}"
    );
    let page = std::fs::read_to_string(dir.path().join("comparison/comparison.html")).unwrap();
    assert!(page.contains("class=\"regressed\""));
}

/// The venv's python and `examples/aiogram_bot.py` when the venv has aiogram 3 (`.ci/run`
/// installs it), else why not.
fn aiogram_python_and_example() -> Result<(PathBuf, PathBuf), String> {
    let python = workspace().join("target/pyenv/bin/python");
    let has_aiogram = Command::new(&python)
        .args(["-c", "import aiogram"])
        .output()
        .is_ok_and(|o| o.status.success());
    if has_aiogram {
        Ok((python, workspace().join("examples/aiogram_bot.py")))
    } else {
        Err(format!(
            "{} with aiogram 3 is missing (`bash .ci/run` installs it)",
            python.display()
        ))
    }
}

/// `target/pyenv/bin/python examples/aiogram_bot.py`, or `None` (SKIPPED, or a failure in CI)
/// when the venv with aiogram 3 is missing.
fn aiogram_example(test: &str) -> Option<String> {
    match aiogram_python_and_example() {
        Ok((python, example)) => Some(format!("{} {}", python.display(), example.display())),
        Err(why) => {
            missing(test, &why);
            None
        }
    }
}

/// What the performance tests measure of the aiogram example from outside, in a run of
/// `performance` or of `all`, started by the suite or by hand: every session served and paid, a
/// knee on the ramp, and the in-process tests not applicable.
fn assert_aiogram_performance(report: &serde_json::Value, users: f64) {
    assert_eq!(metric(report, "concurrent_users", "success_rate"), 1.0);
    // The default scenario buys credits: every user paid once, through aiogram's checkout.
    assert_eq!(metric(report, "concurrent_users", "payments"), users);
    // The knee is a step of the quick ramp (25 doubling to 800 updates/s), or 0 when even the
    // first broke the SLO; the users follow from it.
    let knee = metric(report, "system_limits", "max_rps");
    assert!(
        [0.0, 25.0, 50.0, 100.0, 200.0, 400.0, 800.0].contains(&knee),
        "knee {knee} is no step of the ramp"
    );
    let users = metric(report, "system_limits", "max_users");
    assert!(
        (knee == 0.0) == (users == 0.0) && users >= knee,
        "{users} users at {knee} updates/s"
    );
    for id in ["db_read", "cache", "db_write"] {
        assert!(test(report, id)["not_applicable"].is_string(), "{id}");
    }
}

/// As [`assert_aiogram_performance`], for a run that started the example itself (`--bot-cmd`):
/// the report names it and read its process group's RSS.
fn assert_aiogram_started_and_measured(report: &serde_json::Value, users: f64) {
    let bot = report["environment"]["bot"].as_str().unwrap();
    assert!(bot.contains("aiogram_bot.py"), "{bot}");
    assert_aiogram_performance(report, users);
    // A Python process with aiogram loaded is tens of MB; the group's RSS was read, not zero.
    let rss = metric(report, "memory", "rss_before_mb");
    assert!((10.0..2_000.0).contains(&rss), "{rss} MB");
}

/// Readiness scored over what was measured (DB read and cache cannot be, black-box), each
/// graded criterion's points summed into the percent; `graded` is how many were.
fn assert_scored_over_what_was_measured(
    report: &serde_json::Value,
    graded: std::ops::RangeInclusive<usize>,
) {
    let readiness = &report["readiness"];
    let criteria = readiness["criteria"].as_array().unwrap();
    let measured: Vec<&serde_json::Value> =
        criteria.iter().filter(|c| !c["grade"].is_null()).collect();
    assert_eq!(readiness["measured"].as_u64(), Some(measured.len() as u64));
    assert!(
        graded.contains(&measured.len()),
        "DB read and cache are not measured black-box: {readiness}"
    );
    let points: f64 = measured.iter().map(|c| c["points"].as_f64().unwrap()).sum();
    let percent = readiness["percent"].as_f64().unwrap();
    assert!(
        (percent - 100.0 * points / measured.len() as f64).abs() < 0.1,
        "{readiness}"
    );
}

/// `bench all --quick` on the aiogram example, started by the suite: the performance tests
/// (its RSS read), and the generation settings (semaphores, rate limiting, the queue across a restart) measured from
/// outside. An end-to-end run of the whole suite (over three minutes on two cores), so it is
/// left out of `cargo test` and run by `.ci/run` with `--ignored`.
#[test]
#[ignore = "end-to-end suite run; .ci/run runs it"]
fn the_whole_quick_suite_measures_an_aiogram_bot() {
    let Some(command) = aiogram_example("the_whole_quick_suite_measures_an_aiogram_bot") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let output = bench(
        &[
            "all",
            "--quick",
            "--duration",
            "1",
            "--users",
            "10",
            "--format",
            "json",
            "--bot-cmd",
            &command,
        ],
        dir.path(),
        "reports",
        &[],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let reports = dir.path().join("reports");
    let path = std::fs::read_dir(&reports)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("comprehensive_performance_report_")
                && p.extension().is_some_and(|e| e == "json")
        })
        .unwrap();
    let report = read_json(&path);
    assert_aiogram_started_and_measured(&report, 10.0);
    let limit = metric(&report, "semaphores", "limit");
    let seen = metric(&report, "semaphores", "max_in_flight");
    assert!(seen > 0.0 && seen <= limit, "{seen} of {limit}");
    let rate = metric(&report, "rate_limiting", "measured_per_min");
    assert!(
        rate <= metric(&report, "rate_limiting", "configured_per_min") * 1.05,
        "{rate}"
    );
    for id in ["cache_settings", "crash_restart"] {
        assert!(test(&report, id)["not_applicable"].is_string(), "{id}");
    }
    // The example keeps its queue in memory: what a restart loses is reported, not hidden —
    // any loss grades the queue NEEDS OPTIMIZATION.
    let queue = test(&report, "queue");
    let lost = metric(&report, "queue", "lost_jobs");
    assert!(lost >= 0.0 && lost.fract() == 0.0, "{queue}");
    if lost > 0.0 {
        assert_eq!(queue["grade"], "NEEDS_OPTIMIZATION", "{queue}");
    }
    assert_scored_over_what_was_measured(&report, 1..=4);
}

#[test]
fn a_webhook_bot_is_measured_through_the_url_it_sets() {
    let dir = tempfile::tempdir().unwrap();
    // Fixed: the webhook URL naming it is an argument.
    let port = crate::free_port();
    let command = genbot_serve(&format!(
        " --webhook-url http://127.0.0.1:{port}/telegram/webhook"
    ))
    .replace(
        "--listen 127.0.0.1:0",
        &format!("--listen 127.0.0.1:{port}"),
    );
    let output = bench(
        &[
            "performance",
            "--quick",
            "--users",
            "10",
            "--format",
            "json",
            "--bot-cmd",
            &command,
        ],
        dir.path(),
        "reports",
        &[sqlite_env(dir.path(), "bot.db")],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = read_json(&dir.path().join("reports/performance_report.json"));
    assert_eq!(metric(&report, "concurrent_users", "success_rate"), 1.0);
    // The default scenario ends with a purchase: genbot's checkout said yes to each user.
    assert_eq!(metric(&report, "concurrent_users", "payments"), 10.0);
    // The suite started the bot (`--bot-cmd`) and read its process group's RSS, not zero.
    let rss = metric(&report, "memory", "rss_before_mb");
    assert!((5.0..2_000.0).contains(&rss), "{rss} MB");
    let log = std::fs::read_to_string(dir.path().join("reports/bot-under-test.log")).unwrap();
    assert!(log.contains("webhook"), "{log}");
}

/// `--attach` prints the four variables and waits; the aiogram 3 example, started by hand with
/// them, is measured through the performance tests from outside: every user served and paid,
/// a knee on the ramp, memory said not measured (there is no process to read). This is the
/// normal run's black-box measurement of another framework's bot; the suite starting it itself
/// (`--bot-cmd`, its RSS read) is `the_whole_quick_suite_measures_an_aiogram_bot` (`.ci/run`)
/// and `bad_input`'s fragile aiogram bot. Without the venv (outside CI), `genbot serve` is the
/// bot started by hand.
#[test]
fn attach_prints_the_variables_and_measures_a_bot_started_by_hand() {
    use std::io::{BufRead, BufReader};
    const USERS: u32 = 10;
    let dir = tempfile::tempdir().unwrap();
    let mut suite = Command::new(env!("CARGO_BIN_EXE_genbot"))
        .args(["bench", "performance", "--quick", "--users"])
        .arg(USERS.to_string())
        .args(["--format", "json", "--attach", "--out"])
        .arg(dir.path().join("reports"))
        .env_clear()
        .current_dir(dir.path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(suite.stderr.take().unwrap()).lines();
    let mut exports = Vec::new();
    while exports.len() < 4 {
        let line = lines
            .next()
            .expect("the suite printed the variables")
            .unwrap();
        if let Some((name, value)) = line
            .trim()
            .strip_prefix("export ")
            .and_then(|l| l.split_once('='))
        {
            exports.push((name.to_owned(), value.to_owned()));
        }
    }
    let names: Vec<&str> = exports.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "TELEGRAM_API_URL",
            "TELEGRAM_BOT_TOKEN",
            "REPLICATE_API_URL",
            "REPLICATE_API_TOKEN"
        ]
    );
    let aiogram = aiogram_python_and_example();
    let mut by_hand = match &aiogram {
        Ok((python, example)) => {
            let mut command = Command::new(python);
            command.arg(example);
            command
        }
        Err(why) => {
            assert!(
                std::env::var("CI").is_err(),
                "{why} (in CI, .ci/run must install it)"
            );
            eprintln!("attach: {why}; starting genbot serve by hand instead");
            let mut command = Command::new(env!("CARGO_BIN_EXE_genbot"));
            command
                .args(["serve", "--listen", "127.0.0.1:0"])
                .args(["--initial-credits", "1000"])
                .env(
                    "DATABASE_URL",
                    format!("sqlite://{}", dir.path().join("bot.db").display()),
                );
            command
        }
    };
    let mut bot = by_hand
        .envs(exports)
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Drain the rest so the suite never blocks on a full pipe.
    let drained = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());
    let status = suite.wait().unwrap();
    let _ = bot.kill();
    let _ = bot.wait();
    let rest = drained.join().unwrap().join("\n");
    assert!(status.success(), "{rest}");
    let report = read_json(&dir.path().join("reports/performance_report.json"));
    if aiogram.is_ok() {
        assert_aiogram_performance(&report, f64::from(USERS));
    } else {
        assert_eq!(metric(&report, "concurrent_users", "success_rate"), 1.0);
        assert_eq!(
            metric(&report, "concurrent_users", "payments"),
            f64::from(USERS)
        );
    }
    let memory = test(&report, "memory");
    assert!(
        memory["not_applicable"]
            .as_str()
            .is_some_and(|why| why.contains("attached")),
        "memory is said to be not measured: {memory}"
    );
    // Concurrent users and system limits: memory is not measured, DB read and cache cannot be.
    assert_scored_over_what_was_measured(&report, 1..=2);
}
