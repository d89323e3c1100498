use std::path::Path;
use std::process::{Command, Output};

use genbot_config::DatabaseUrl;
use genbot_store::{NewUser, Store, UserId};

fn bench(args: &[&str], dir: &Path) -> Output {
    bench_with_env(args, dir, &[])
}

/// As [`bench`], with these variables set (the rest of the environment cleared).
fn bench_with_env(args: &[&str], dir: &Path, env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_genbot"))
        .arg("bench")
        .args(args)
        .args(["--quiet", "--out"])
        .arg(dir.join("reports"))
        .env_clear()
        .envs(env.iter().copied())
        .current_dir(dir)
        .output()
        .unwrap()
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

const ALL_IDS: [&str; 20] = [
    "db_read",
    "cache",
    "concurrent_users",
    "db_write",
    "memory",
    "system_limits",
    "semaphores",
    "rate_limiting",
    "model_config",
    "cache_settings",
    "operation_simulation",
    "queue",
    "memory_under_load",
    "crash_restart",
    "redis_outage",
    "database_outage",
    "replicate_faults",
    "telegram_faults",
    "replica_failover",
    "bad_input",
];

/// The fault tests that run on the embedded default (no PostgreSQL, no Redis).
const EMBEDDED_FAULTS: [&str; 3] = ["crash_restart", "replicate_faults", "telegram_faults"];

/// A fault test ran, and nothing was lost, duplicated or mis-charged.
/// `bad_input` against today's genbot: no death, no crash loop, no forged payment credited,
/// every hostile text answered.
fn assert_bad_input_survived(test: &serde_json::Value) {
    assert!(
        test["not_applicable"].is_null(),
        "bad_input did not run: {test}"
    );
    for metric in [
        "bot_deaths",
        "restart_deaths",
        "forged_payments_accepted",
        "unanswered",
    ] {
        assert_eq!(
            test["metrics"][format!("bad_input.{metric}")].as_f64(),
            Some(0.0),
            "bad_input.{metric}: {test}"
        );
    }
    assert!(
        test["metrics"]["bad_input.inputs_sent"].as_f64().unwrap() > 0.0,
        "{test}"
    );
    assert_ne!(test["grade"], "NEEDS_OPTIMIZATION", "{test}");
}

fn assert_fault_survived(test: &serde_json::Value) {
    let id = test["id"].as_str().unwrap();
    assert!(test["not_applicable"].is_null(), "{id} did not run: {test}");
    for metric in [
        "jobs_lost",
        "jobs_duplicated",
        "predictions_duplicated",
        "photos_missing",
        "photos_duplicated",
        "balances_broken",
    ] {
        assert_eq!(
            test["metrics"][format!("{id}.{metric}")].as_f64(),
            Some(0.0),
            "{id}.{metric}: {test}"
        );
    }
    // A photo re-sent because a kill caught its first copy at the wire is reported, allowed,
    // and bounded by the sends the kills caught (`photos_duplicated` counts only the others).
    let at_wire = test["metrics"][format!("{id}.photos_duplicated_at_wire")]
        .as_f64()
        .unwrap_or_else(|| panic!("{id}.photos_duplicated_at_wire missing: {test}"));
    let caught = test["metrics"][format!("{id}.photo_sends_at_kills")]
        .as_f64()
        .unwrap_or_else(|| panic!("{id}.photo_sends_at_kills missing: {test}"));
    assert!(at_wire <= caught, "{id}: {test}");
    assert!(
        test["metrics"][format!("{id}.prompts")].as_f64().unwrap() >= 10.0,
        "{test}"
    );
    assert_ne!(test["grade"], "NEEDS_OPTIMIZATION", "{test}");
}

const REQUIRED_METRICS: [&str; 17] = [
    "db_read.rps",
    "db_read.p99_ms",
    "db_write.rps",
    "cache.hit_rate",
    "concurrent_users.users",
    "concurrent_users.success_rate",
    "concurrent_users.updates_per_s",
    "concurrent_users.p99_ms",
    "memory.growth_mb",
    "system_limits.max_users",
    "system_limits.max_rps",
    "semaphores.limit",
    "semaphores.max_in_flight",
    "rate_limiting.configured_per_min",
    "rate_limiting.measured_per_min",
    "operation_simulation.throughput_ratio",
    "queue.lost_jobs",
];

/// A grade's points in the readiness score.
fn points_of(grade: &str) -> f64 {
    match grade {
        "EXCELLENT" => 1.0,
        "GOOD" => 0.75,
        "NEEDS_OPTIMIZATION" | "NEEDS_CONFIGURATION" => 0.0,
        other => panic!("no such grade {other:?}"),
    }
}

/// Every test that applies has one of the four grades; one that does not has none.
fn assert_graded(tests: &[serde_json::Value]) {
    for test in tests {
        // A test not graded (not applicable, or it measured nothing) has no grade.
        if !test["not_applicable"].is_null() {
            assert!(test["grade"].is_null(), "{test}");
            continue;
        }
        points_of(test["grade"].as_str().unwrap());
    }
}

/// How many tests did not measure because the suite's own load generator, not the bot, was
/// the limit: system limits' ramp on a debug build at load 4+ can be cut short by the sender
/// (its report says so), and its criterion is then not graded. Any other test, or any other
/// reason, counts none, so the scores below still require it graded.
fn limited_by_the_generator(tests: &[serde_json::Value]) -> usize {
    tests
        .iter()
        .filter(|t| {
            let reason = t["not_applicable"].as_str().unwrap_or_default();
            t["id"] == "system_limits"
                && t["did_not_measure"] == true
                && (reason.contains("the load generator, not the bot")
                    || reason.contains("генератор нагрузки, а не бот"))
        })
        .count()
}

/// A readiness score of `criteria_count` criteria, `measured` of them graded: each graded
/// criterion's points its grade's, the percent their mean over the measured (one decimal).
fn check_score(score: &serde_json::Value, criteria_count: usize, measured: usize) {
    let criteria = score["criteria"].as_array().unwrap();
    assert_eq!(criteria.len(), criteria_count, "{score}");
    assert_eq!(score["measured"].as_u64(), Some(measured as u64), "{score}");
    let mut total = 0.0;
    let mut graded = 0;
    for c in criteria {
        let points = c["points"].as_f64().unwrap();
        let Some(grade) = c["grade"].as_str() else {
            assert_eq!(points, 0.0, "{c}");
            continue;
        };
        graded += 1;
        let full = points_of(grade);
        // A criterion some of whose tests were not graded earns that share of its grade.
        let missing = c["missing"].as_array().map_or(0, Vec::len);
        if missing == 0 {
            assert_eq!(points, full, "{c}");
        } else {
            assert!(points < full || full == 0.0, "{c}");
        }
        total += points;
    }
    assert_eq!(graded, measured, "{score}");
    let percent = score["percent"].as_f64().unwrap();
    let expected = (total / measured as f64 * 1000.0).round() / 10.0;
    assert!(
        (percent - expected).abs() < 1e-9,
        "{percent} != {expected}: {score}"
    );
}

/// A run's monitoring (one sample a second), the curves behind the performance charts in its
/// JSON, and its HTML self-contained with `charts` (their labels in the report's language).
fn assert_report_shape(json: &serde_json::Value, html: &Path, charts: &[&str]) {
    let samples = json["monitoring"].as_array().unwrap();
    let duration = json["duration_s"].as_f64().unwrap();
    assert!(
        samples.len() as f64 >= duration * 0.8 - 1.0,
        "{} samples in {duration} s",
        samples.len()
    );
    assert!(samples.iter().all(|s| s["rss_mb"].as_f64().unwrap() > 0.0));
    let tests = json["tests"].as_array().unwrap();
    let series_of = |id: &str| -> Vec<String> {
        tests.iter().find(|t| t["id"] == id).unwrap()["series"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| !s["lines"][0]["points"].as_array().unwrap().is_empty())
            .map(|s| s["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(series_of("concurrent_users").contains(&"latency_over_time".to_owned()));
    assert!(series_of("system_limits").contains(&"throughput_vs_users".to_owned()));

    // HTML: self-contained (nothing fetched), with the promised charts.
    let html = std::fs::read_to_string(html).unwrap();
    assert!(html.starts_with("<!doctype html>"));
    for forbidden in ["<script", "src=", "<link", "@import", "url("] {
        assert!(!html.contains(forbidden), "HTML contains {forbidden}");
    }
    for chart in charts {
        assert!(
            html.contains(&format!("aria-label=\"{chart}\"")),
            "no chart {chart}"
        );
    }
}

/// JUnit: one test case per test, as many failures as failing grades, a skip for each test
/// not graded.
fn assert_junit(reports: &Path, tests: &[serde_json::Value]) {
    let junit = std::fs::read_to_string(reports.join("readiness_junit.xml")).unwrap();
    assert_eq!(junit.matches("<testcase ").count(), tests.len());
    let failing = tests
        .iter()
        .filter(|t| {
            t["not_applicable"].is_null()
                && t["grade"]
                    .as_str()
                    .is_some_and(|g| ["NEEDS_OPTIMIZATION", "NEEDS_CONFIGURATION"].contains(&g))
        })
        .count();
    assert_eq!(junit.matches("<failure ").count(), failing, "{junit}");
    let ungraded = tests.iter().filter(|t| t["grade"].is_null()).count();
    assert_eq!(junit.matches("<skipped ").count(), ungraded, "{junit}");
}

/// The quick run of the whole suite on the embedded default: the seed's three files with their
/// exact names, and JSON carrying every test and every promised metric. A whole-suite run
/// (about two minutes on two cores, most of it the fault tests' real processes), so `.ci/run`
/// runs it with `--ignored`; in `cargo test` the performance report's shape is checked on the
/// run of `bench_on_a_deployment_with_redis_down_in_russian`.
#[test]
#[ignore = "end-to-end suite run; .ci/run runs it"]
fn bench_all_quick_writes_the_three_reports_with_every_test() {
    let dir = tempfile::tempdir().unwrap();
    let out = bench(
        &[
            "all",
            "--quick",
            "--duration",
            "1",
            "--users",
            "20",
            "--format",
            "txt,json,html,junit",
        ],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reports = dir.path().join("reports");
    for name in [
        "performance_report.txt",
        "generation_settings_report.txt",
        "performance_report.json",
        "generation_settings_report.json",
    ] {
        assert!(reports.join(name).is_file(), "{name} missing");
    }
    let names: Vec<String> = std::fs::read_dir(&reports)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let comprehensive = names
        .iter()
        .find(|n| {
            n.strip_prefix("comprehensive_performance_report_")
                .and_then(|rest| rest.strip_suffix(".txt"))
                .is_some_and(|stamp| {
                    stamp.len() == 15
                        && stamp.as_bytes()[8] == b'_'
                        && stamp.replace('_', "").chars().all(|c| c.is_ascii_digit())
                })
        })
        .unwrap_or_else(|| {
            panic!("no comprehensive_performance_report_YYYYMMDD_HHMMSS.txt in {names:?}")
        });
    let json = read_json(&reports.join(comprehensive.replace(".txt", ".json")));
    let tests = json["tests"].as_array().unwrap();
    let ids: Vec<&str> = tests.iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ALL_IDS);
    let metrics: Vec<String> = tests
        .iter()
        .flat_map(|t| {
            t["metrics"]
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect::<Vec<_>>()
        })
        .collect();
    for metric in REQUIRED_METRICS {
        assert!(metrics.iter().any(|m| m == metric), "{metric} missing");
    }
    assert_graded(tests);
    // Readiness: every one of the six measured, each criterion's points its grade's, the
    // percent their mean (one decimal).
    let unmeasured = limited_by_the_generator(tests);
    check_score(&json["readiness"], 6, 6 - unmeasured);
    // The extended score: the same six and fault tolerance, graded from the fault tests (the
    // worst of those that ran, bad input included: on a loaded machine its hostile answers'
    // p99 can grade it GOOD while the others are EXCELLENT).
    let extended = &json["readiness_extended"];
    check_score(extended, 7, 7 - unmeasured);
    assert_eq!(extended["criteria"][6]["criterion"], "fault_tolerance");
    let worst_fault = tests
        .iter()
        .filter(|t| {
            let id = t["id"].as_str().unwrap();
            EMBEDDED_FAULTS.contains(&id) || id == "bad_input"
        })
        .filter_map(|t| t["grade"].as_str())
        .min_by(|a, b| points_of(a).total_cmp(&points_of(b)))
        .unwrap();
    assert_eq!(
        points_of(extended["criteria"][6]["grade"].as_str().unwrap()),
        points_of(worst_fault),
        "{extended}"
    );
    assert!(json["forecast"].is_object());
    // Faults: the three that apply here ran and lost nothing; the others say why not.
    for test in tests {
        let id = test["id"].as_str().unwrap();
        if EMBEDDED_FAULTS.contains(&id) {
            assert_fault_survived(test);
        } else if id == "bad_input" {
            assert_bad_input_survived(test);
        } else if ["redis_outage", "database_outage", "replica_failover"].contains(&id) {
            assert!(test["not_applicable"].is_string(), "{test}");
        }
    }
    let ceilings = json["forecast"]["ceilings"].as_array().unwrap();
    let parts: Vec<&str> = ceilings
        .iter()
        .map(|c| c["part"].as_str().unwrap())
        .collect();
    for part in [
        "replicate_rate",
        "generation_slots",
        "bot",
        "database",
        "telegram_sends",
    ] {
        assert!(parts.contains(&part), "no {part} ceiling: {ceilings:?}");
    }
    for c in ceilings {
        let per_s = c["generations_per_s"].as_f64().unwrap();
        assert!(per_s.is_finite() && per_s > 0.0, "{c}");
    }
    // The configured ones, from the defaults: REPLICATE_RATE_LIMIT 600/min is 10 a second.
    let ceiling = |part: &str| {
        ceilings.iter().find(|c| c["part"] == part).unwrap()["generations_per_s"]
            .as_f64()
            .unwrap()
    };
    assert!(
        (ceiling("replicate_rate") - 10.0).abs() < 1e-9,
        "{ceilings:?}"
    );
    let lost = tests.iter().find(|t| t["id"] == "queue").unwrap()["metrics"]["queue.lost_jobs"]
        .as_f64()
        .unwrap();
    assert_eq!(lost, 0.0);
    // What users see: the crowd (20 users, --users) on a `genbot serve` child under
    // Telegram's budget, beside the in-process capacity; the forecast's users a minute follow
    // from its messages per session.
    let users = tests
        .iter()
        .find(|t| t["id"] == "concurrent_users")
        .unwrap();
    for metric in [
        "serve_users",
        "serve_success_rate",
        "serve_p99_ms",
        "serve_floor_p99_ms",
        "serve_sends_per_user",
    ] {
        assert!(
            users["metrics"][format!("concurrent_users.{metric}")].is_number(),
            "{metric} missing: {users}"
        );
    }
    assert_eq!(users["metrics"]["concurrent_users.serve_users"], 20.0);
    let per_minute = &json["forecast"]["users_per_minute"];
    let sends = users["metrics"]["concurrent_users.serve_sends_per_user"]
        .as_f64()
        .unwrap();
    assert_eq!(
        per_minute["sends_per_user"].as_f64(),
        Some(sends),
        "{per_minute}"
    );
    let expected = per_minute["sends_per_s"].as_f64().unwrap() * 60.0 / sends;
    assert!(
        (per_minute["users"].as_f64().unwrap() - expected).abs() < 1e-9,
        "{per_minute}"
    );
    let text = std::fs::read_to_string(reports.join(comprehensive)).unwrap();
    for shown in [
        "what users see (genbot serve, Telegram's budget): ",
        "capacity without Telegram's send budget",
        "users per minute Telegram's budget sustains",
    ] {
        assert!(text.contains(shown), "{shown} not in:\n{text}");
    }

    let html = reports.join(comprehensive.replace(".txt", ".html"));
    assert_report_shape(
        &json,
        &html,
        &[
            "Concurrent users: latency over time",
            "System limits: throughput vs concurrent users",
            "Memory over time (RSS)",
        ],
    );
    let html = std::fs::read_to_string(html).unwrap();
    assert!(html.matches("<polyline").count() >= 3);
    // Fault windows are shaded on the fault tests' charts.
    assert!(html.contains(r#"class="fault""#));

    assert_junit(&reports, tests);
    // Skipped: the three fault tests that need PostgreSQL or Redis, and any that measured
    // nothing (graded null).
    let ungraded = tests.iter().filter(|t| t["grade"].is_null()).count();
    assert!(ungraded >= 3, "{ungraded}");
}

/// Against a deployment database with real users, a closed Redis port and Russian reports:
/// the cache is graded "needs configuration", the run completes with every report in shape,
/// the real users are byte-for-byte unchanged and no test user remains.
#[test]
fn bench_on_a_deployment_with_redis_down_in_russian() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("prod.db");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let url = DatabaseUrl::Sqlite { path: db.clone() };
    let before = runtime.block_on(async {
        let store = Store::connect(&url, 2).await.unwrap();
        let mut users = Vec::new();
        for id in [5, 777, 999_999] {
            users.push(
                store
                    .upsert_user(NewUser {
                        id: UserId(id),
                        username: Some(format!("real{id}")),
                        language: Some("ru".into()),
                        initial_credits: 3,
                    })
                    .await
                    .unwrap(),
            );
        }
        users
    });
    let out = bench(
        &[
            "performance",
            "--quick",
            "--duration",
            "1",
            "--users",
            "20",
            "--lang",
            "ru",
            "--format",
            "txt,json,html,junit",
            "--redis-url",
            "redis://127.0.0.1:1",
            "--database-url",
            &format!("sqlite://{}", db.display()),
        ],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reports = dir.path().join("reports");
    let json = read_json(&reports.join("performance_report.json"));
    let cache = json["tests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == "cache")
        .unwrap()
        .clone();
    assert_eq!(cache["grade"], "NEEDS_CONFIGURATION");
    let text = std::fs::read_to_string(reports.join("performance_report.txt")).unwrap();
    assert!(text.contains("Тест кэша — ТРЕБУЕТ НАСТРОЙКИ"), "{text}");
    assert!(text.contains("Отчёт о производительности"), "{text}");
    // The performance report's shape (the whole suite's is checked by
    // `bench_all_quick_writes_the_three_reports_with_every_test` in .ci/run): the six tests in
    // order, graded, scored over the five criteria they measure (not generation settings),
    // monitored, charted and in JUnit.
    let tests = json["tests"].as_array().unwrap();
    let ids: Vec<&str> = tests.iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ALL_IDS[..6]);
    assert_graded(tests);
    check_score(&json["readiness"], 6, 5 - limited_by_the_generator(tests));
    assert_report_shape(
        &json,
        &reports.join("performance_report.html"),
        &[
            "Одновременные пользователи: задержка во времени",
            "Пределы системы: пропускная способность и пользователи",
            "Память во времени (RSS)",
        ],
    );
    assert_junit(&reports, tests);

    runtime.block_on(async {
        let store = Store::connect(&url, 2).await.unwrap();
        for user in before {
            assert_eq!(store.get_user(user.id).await.unwrap().unwrap(), user);
        }
        assert_eq!(
            store
                .count_users_in_range(1_000_000..i64::MAX)
                .await
                .unwrap(),
            0
        );
        assert_eq!(store.count_users().await.unwrap(), 3);
    });
}

/// Against PostgreSQL and Redis all six fault tests run, each on a scratch database of its own
/// that is gone afterwards, and none loses, duplicates or mis-charges anything. The whole
/// fault suite (about a hundred seconds on two cores), so `.ci/run` runs it with `--ignored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "end-to-end suite run; .ci/run runs it"]
async fn bench_faults_against_postgres_and_redis_runs_all_six() {
    let Some(database) =
        crate::process::scratch_postgres("bench_faults_against_postgres_and_redis_runs_all_six")
            .await
    else {
        return;
    };
    let Ok(redis) = std::env::var("REDIS_URL") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but REDIS_URL is not"
        );
        eprintln!(
            "SKIPPED bench_faults_against_postgres_and_redis_runs_all_six: set REDIS_URL to run it"
        );
        database.drop_now().await.unwrap();
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let url = crate::process::database_url_text(&database);
    let args = [
        "faults",
        "--quick",
        "--lang",
        "ru",
        "--format",
        "txt,json,html",
        "--database-url",
        &url,
        "--redis-url",
        &redis,
    ];
    // A prefix of this run's own: another run beside it (two CI runs at once) has keys of its
    // stages in the same Redis while this one checks that none of its own are left.
    let prefix = format!(
        "genbot-test-{}-{:x}:",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    );
    let stages = format!("{prefix}bench:*");
    // Seen while the suite runs, so the check after it is not empty by construction.
    let seen_in_use = {
        let (redis, stages) = (redis.clone(), stages.clone());
        tokio::spawn(async move {
            let mut conn = redis::Client::open(redis.as_str())
                .unwrap()
                .get_multiplexed_async_connection()
                .await
                .unwrap();
            loop {
                let used: Vec<String> = redis::cmd("KEYS")
                    .arg(&stages)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                if !used.is_empty() {
                    return used.len();
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        })
    };
    let out = tokio::task::block_in_place(|| {
        bench_with_env(&args, dir.path(), &[("REDIS_KEY_PREFIX", &prefix)])
    });
    assert!(
        seen_in_use.is_finished(),
        "no key under {stages} while the suite ran: its stages did not use this run's prefix"
    );
    seen_in_use.await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reports = dir.path().join("reports");
    let json = read_json(&reports.join("fault_tolerance_report.json"));
    let tests = json["tests"].as_array().unwrap();
    assert_eq!(tests.len(), 7);
    for test in tests {
        if test["id"] == "bad_input" {
            assert_bad_input_survived(test);
        } else {
            assert_fault_survived(test);
        }
    }
    // Users who wrote while PostgreSQL did not answer were told their message is delayed.
    let outage = tests.iter().find(|t| t["id"] == "database_outage").unwrap();
    let told = outage["metrics"]["database_outage.answers_during_outage"]
        .as_f64()
        .unwrap();
    assert!(told > 0.0, "silence during the database outage: {outage}");
    let failover = tests
        .iter()
        .find(|t| t["id"] == "replica_failover")
        .unwrap();
    let takeover = failover["metrics"]["replica_failover.takeover_s"]
        .as_f64()
        .unwrap();
    assert!(
        takeover < 10.0,
        "take-over took {takeover} s with a 3 s lease"
    );
    // Scored over what it measured: fault tolerance alone, no verdict from the seed's six.
    assert!(
        json["readiness"]["percent"].is_null(),
        "{}",
        json["readiness"]
    );
    assert_eq!(json["readiness_extended"]["measured"], 1);
    let text = std::fs::read_to_string(reports.join("fault_tolerance_report.txt")).unwrap();
    assert!(text.contains("Отчёт об отказоустойчивости"), "{text}");
    assert!(text.contains("Мониторинг"), "{text}");
    assert!(
        !text.contains("in use at most"),
        "English left in the Russian report: {text}"
    );
    // Nothing of the stages is left in Redis (their scratch databases are dropped as well).
    let mut conn = redis::Client::open(redis.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let left: Vec<String> = redis::cmd("KEYS")
        .arg(&stages)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(left.is_empty(), "Redis keys left behind: {left:?}");
    database.drop_now().await.unwrap();
}

#[test]
fn bad_bench_arguments_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = bench(&["all", "--thresholds", "/nonexistent.toml"], dir.path());
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent.toml"));
    let out = bench(&["all", "--live-replicate"], dir.path());
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("REPLICATE_API_TOKEN"));
    let out = bench(&["all", "--database-url", "mysql://x"], dir.path());
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

/// `--live-replicate` sends its few generations to whatever REPLICATE_API_URL names (here a
/// Replicate mock in another runtime, standing in for api.replicate.com), with the token, and
/// reports their latency; the token appears in no report.
#[test]
fn live_replicate_sends_a_bounded_sample_to_the_configured_api() {
    use genbot_mocks::replicate::{ReplicateMock, ReplicateMockConfig};

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let live = runtime
        .block_on(ReplicateMock::start(ReplicateMockConfig {
            median_latency: std::time::Duration::from_millis(300),
            ..ReplicateMockConfig::default()
        }))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let token = "r8_live_sample_secret_9f2c";
    let out = Command::new(env!("CARGO_BIN_EXE_genbot"))
        .args(["bench", "generation-settings", "--quick", "--duration", "1"])
        .args([
            "--live-replicate",
            "--quiet",
            "--format",
            "txt,json,html",
            "--out",
        ])
        .arg(dir.path().join("reports"))
        .env_clear()
        .env("REPLICATE_API_URL", live.url())
        .env("REPLICATE_API_TOKEN", token)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        live.stats().created,
        2,
        "the quick sample is two generations"
    );

    let reports = dir.path().join("reports");
    let json = read_json(&reports.join("generation_settings_report.json"));
    let sim = json["tests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == "operation_simulation")
        .unwrap();
    let metric = |name: &str| sim["metrics"][format!("operation_simulation.{name}")].as_f64();
    assert_eq!(metric("live_sent"), Some(2.0));
    assert_eq!(metric("live_succeeded"), Some(2.0));
    assert!(metric("live_p50_ms").unwrap() >= 100.0, "{sim}");
    assert!(json["environment"]["replicate"]
        .as_str()
        .unwrap()
        .contains(live.url()));
    for entry in std::fs::read_dir(&reports).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        assert!(
            !text.contains(token),
            "the Replicate token leaked into a report"
        );
    }
    assert!(!String::from_utf8_lossy(&out.stderr).contains(token));
}

/// Ctrl-C while test users exist (while they are being created, then in the middle of a
/// test): the run stops with 130, no test user remains, the real users are unchanged.
#[cfg(unix)]
#[test]
fn ctrl_c_or_sigterm_removes_the_test_users() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("prod.db");
    let url = DatabaseUrl::Sqlite { path: db.clone() };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let store = runtime.block_on(Store::connect(&url, 2)).unwrap();
    let real = runtime
        .block_on(store.upsert_user(NewUser {
            id: UserId(999_999),
            username: Some("real".into()),
            language: Some("en".into()),
            initial_credits: 3,
        }))
        .unwrap();
    let test_users = || {
        runtime
            .block_on(store.count_users_in_range(1_000_000..i64::MAX))
            .unwrap()
    };

    // Full (not quick) run: 50,000 test users, 30 s per measurement, so it is interrupted:
    // by Ctrl-C while seeding, by an orchestrator's SIGTERM mid-test.
    for (interrupt_when_seeded, signal) in [(1, "-INT"), (50_000, "-TERM")] {
        let child = Command::new(env!("CARGO_BIN_EXE_genbot"))
            .args([
                "bench",
                "performance",
                "--duration",
                "30",
                "--quiet",
                "--out",
            ])
            .arg(dir.path().join("reports"))
            .arg("--database-url")
            .arg(format!("sqlite://{}", db.display()))
            .env_clear()
            .current_dir(dir.path())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while test_users() < interrupt_when_seeded {
            assert!(
                std::time::Instant::now() < deadline,
                "no test users appeared"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let killed = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(130), "{stderr}");
        assert!(
            stderr.contains("interrupted; test users removed"),
            "{stderr}"
        );
        assert_eq!(test_users(), 0, "test users left after {signal}: {stderr}");
        assert_eq!(
            runtime.block_on(store.get_user(UserId(999_999))).unwrap(),
            Some(real.clone())
        );
    }
}

/// On the embedded default the concurrent-users test also walks the default scenario on
/// `genbot serve` as a child process under Telegram's flood control, and its report shows both
/// figures, each labelled: what users see under the budget, and the in-process capacity
/// without it. A handful of users each, so it runs in seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_users_measures_genbot_serve_beside_the_in_process_capacity() {
    use genbot_bench::grade::{Lang, Thresholds};
    use genbot_bench::readiness::{Criterion, Readiness};
    use genbot_bench::suite::{Forecast, Suite, SuiteReport};

    let settings = genbot_config::Settings::from_sources(&genbot_config::Sources::from_env(
        std::collections::HashMap::new(),
    ))
    .unwrap();
    let target = genbot_bench::target::Target::embedded(
        None,
        settings.cache_ttl,
        settings.cache_max_entries,
        settings.db_pool_size,
    )
    .await
    .unwrap();
    let ctx = genbot_bench::context::Context {
        settings,
        thresholds: Thresholds::default(),
        lang: Lang::En,
        quick: true,
        users: 6,
        duration: std::time::Duration::from_secs(1),
        target,
        seeded: 0..0,
        live_replicate: false,
        replicate_webhooks: false,
        database_url: None,
        bot_program: Some(env!("CARGO_BIN_EXE_genbot").into()),
        blackbox: None,
        seed: 1,
    };
    let outcome = genbot_bench::checks::concurrent_users::run(&ctx).await;
    let metric = |name: &str| {
        outcome
            .get(name)
            .unwrap_or_else(|| panic!("{name} missing: {:#?}", outcome))
    };
    // The child's crowd: every session completed, under the budget, measured against the
    // floor; the in-process crowd's own figures stay beside it.
    assert_eq!(metric("serve_users"), 6.0);
    assert_eq!(metric("serve_success_rate"), 1.0, "{outcome:#?}");
    assert!(metric("serve_p99_ms") > 0.0);
    // Six users fit Telegram's bursts: the floor is about nothing (so no ratio to it).
    assert!(metric("serve_floor_p99_ms") >= 0.0);
    assert!(metric("serve_sends_per_user") >= 7.0, "{outcome:#?}");
    assert_eq!(metric("users"), 6.0);
    assert!(metric("p99_ms") > 0.0);

    let dir = tempfile::tempdir().unwrap();
    let report = SuiteReport {
        suite: Suite::Performance,
        started_at: chrono::Utc::now(),
        duration_s: 1.0,
        quick: true,
        tests: vec![outcome],
        readiness: Readiness::score(&Criterion::SEED, &[]),
        readiness_extended: Readiness::score(&Criterion::EXTENDED, &[]),
        forecast: Forecast::default(),
        monitoring: Vec::new(),
    };
    let env = genbot_bench::report::Environment {
        db: "embedded SQLite".into(),
        cache: "in-process".into(),
        cpus: 2,
        replicate: "in-process mock".into(),
        version: "test".into(),
        bot: None,
    };
    let formats = genbot_bench::report::Formats {
        json: true,
        ..Default::default()
    };
    genbot_bench::report::write(dir.path(), &report, &env, Lang::En, formats).unwrap();
    let text = std::fs::read_to_string(dir.path().join("performance_report.txt")).unwrap();
    for shown in [
        "concurrent_users.serve_floor_p99_ms",
        "concurrent_users.serve_sends_per_user",
        "what users see (genbot serve, Telegram's budget): ",
        "capacity without Telegram's send budget",
    ] {
        assert!(text.contains(shown), "{shown} not in:\n{text}");
    }
    let json = read_json(&dir.path().join("performance_report.json"));
    assert!(
        json["tests"][0]["metrics"]["concurrent_users.serve_p99_ms"].is_number(),
        "{json}"
    );
}
