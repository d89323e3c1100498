//! Comparisons of canned reports.

use super::*;

fn report(p99: f64, lost: f64, rps: f64) -> String {
    serde_json::json!({
        "schema": "genbot.readiness/1",
        "suite": "performance",
        "readiness": { "percent": 90.0 },
        "tests": [
            { "id": "concurrent_users", "grade": "EXCELLENT",
              "metrics": { "concurrent_users.p50_ms": p99, "concurrent_users.users": 100.0,
                           "concurrent_users.updates_per_s": rps }, "not_applicable": null },
            { "id": "queue", "grade": "EXCELLENT", "metrics": { "queue.lost_jobs": lost }, "not_applicable": null },
            { "id": "db_read", "grade": "GOOD", "metrics": {}, "not_applicable": "black box" },
        ],
    })
    .to_string()
}

fn compare(old: &str, new: &str) -> Comparison {
    Comparison::new(
        Run::parse(old, "old.json").expect("old"),
        Run::parse(new, "new.json").expect("new"),
        10.0,
    )
    .expect("same kind")
}

#[test]
fn the_same_figures_within_noise_do_not_regress() {
    let c = compare(&report(40.0, 0.0, 100.0), &report(48.0, 0.0, 95.0));
    assert!(c.regressions().is_empty(), "{}", c.text());
    // 2 ms → 12 ms is +500 %, but within the absolute floor.
    let c = compare(&report(2.0, 0.0, 100.0), &report(12.0, 0.0, 100.0));
    assert!(c.regressions().is_empty(), "{}", c.text());
    assert!(!c.rows.iter().any(|r| r.test == "db_read"));
}

#[test]
fn a_few_megabytes_of_rss_spread_over_few_users_is_noise() {
    let memory = |growth_bytes: f64| {
        serde_json::json!({
            "schema": "genbot.readiness/1",
            "suite": "performance",
            "tests": [{ "id": "memory", "grade": "EXCELLENT", "not_applicable": null,
                "metrics": { "memory.users": 40.0,
                             "memory.growth_mb": growth_bytes / 1_048_576.0,
                             "memory.bytes_per_user": growth_bytes / 40.0 } }],
        })
        .to_string()
    };
    // Seen in CI: the same build measured 0 and then 2.05 MB (53 760 B per user).
    let c = compare(&memory(0.0), &memory(2_150_400.0));
    assert!(c.regressions().is_empty(), "{}", c.text());
    // 40 MB over 40 users is a real leak (1 MB per user), well beyond the floor.
    let c = compare(&memory(0.0), &memory(40.0 * 1_048_576.0));
    let names: Vec<&str> = c.regressions().iter().map(|r| r.metric.as_str()).collect();
    assert_eq!(names, ["bytes_per_user", "growth_mb"], "{}", c.text());
}

#[test]
fn a_slower_build_and_a_loss_are_named() {
    let c = compare(&report(40.0, 0.0, 100.0), &report(400.0, 2.0, 100.0));
    let names: Vec<String> = c
        .regressions()
        .iter()
        .map(|r| format!("{}.{}", r.test, r.metric))
        .collect();
    assert_eq!(names, ["concurrent_users.p50_ms", "queue.lost_jobs"]);
    assert!(c.text().contains("REGRESSED beyond 10 %"), "{}", c.text());
    assert!(c.html().contains("class=\"regressed\""));
}

#[test]
fn better_and_unjudged_metrics_never_regress() {
    let c = compare(&report(400.0, 2.0, 50.0), &report(40.0, 0.0, 100.0));
    assert!(c.regressions().is_empty());
    let users = c.rows.iter().find(|r| r.metric == "users").expect("row");
    assert_eq!(users.verdict, Verdict::Unjudged);
}

#[test]
fn reports_of_different_kinds_and_other_files_are_refused() {
    let other = report(1.0, 0.0, 1.0).replace("performance", "queue-only");
    let error = Comparison::new(
        Run::parse(&report(1.0, 0.0, 1.0), "a.json").expect("a"),
        Run::parse(&other, "b.json").expect("b"),
        10.0,
    )
    .expect_err("different kinds")
    .to_string();
    assert!(error.contains("same kind"), "{error}");
    let error = Run::parse("{\"x\":1}", "c.json")
        .expect_err("not a report")
        .to_string();
    assert!(
        error.contains("c.json") && error.contains("genbot.readiness/1"),
        "{error}"
    );
}

/// `Run::load` on another thread, given up on after a deadline (a blocking open would hang
/// the test run instead of failing it).
fn load_within_deadline(path: &std::path::Path) -> String {
    let (sender, answer) = std::sync::mpsc::channel();
    let owned = path.to_owned();
    std::thread::spawn(move || {
        let _ = sender.send(Run::load(&owned).map(|_| ()));
    });
    match answer.recv_timeout(std::time::Duration::from_secs(10)) {
        Ok(result) => result.expect_err("not a report").to_string(),
        Err(_) => panic!("reading {} did not end within 10 s", path.display()),
    }
}

#[test]
fn a_device_is_refused_without_reading_it_naming_it() {
    // /dev/zero never ends: an unbounded read took 9.9 GB, a bounded one 64 MiB.
    let error = load_within_deadline(std::path::Path::new("/dev/zero"));
    assert!(
        error.contains("/dev/zero") && error.contains("a character device"),
        "{error}"
    );
}

#[cfg(unix)]
#[test]
fn a_fifo_without_a_writer_is_refused_at_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fifo = dir.path().join("report.json");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("run mkfifo");
    assert!(made.success());
    let error = load_within_deadline(&fifo);
    assert!(
        error.contains("report.json") && error.contains("a FIFO"),
        "{error}"
    );
}

#[test]
fn a_file_over_the_limit_is_refused_by_its_size_before_reading() {
    let file = tempfile::NamedTempFile::new().expect("temp file");
    // Sparse: the size is in the metadata, no bytes are written. Twice the limit, so the
    // size shown is the metadata's, not the limit + 1 a bounded read stops at.
    let size = MAX_REPORT_BYTES * 2;
    file.as_file().set_len(size).expect("set length");
    let error = load_within_deadline(file.path());
    assert!(
        error.contains("64 MiB") && error.contains(&format!("at least {size} bytes")),
        "{error}"
    );
}

/// A copy of a real `bench performance --quick` report's figures (trimmed to what the seen
/// cases touch); each case below makes one thing worse.
fn real(edit: impl FnOnce(&mut serde_json::Value)) -> String {
    let mut report = serde_json::json!({
        "schema": "genbot.readiness/1",
        "suite": "performance",
        "quick": true,
        "readiness": { "percent": 100.0 },
        "tests": [
            { "id": "db_read", "grade": "EXCELLENT", "not_applicable": null, "metrics": {
                "db_read.rps": 48_211.0, "db_read.p50_ms": 1.1, "db_read.p99_ms": 4.2,
                "db_read.errors": 0.0 } },
            { "id": "cache", "grade": "EXCELLENT", "not_applicable": null, "metrics": {
                "cache.hit_rate": 0.93, "cache.hit_ms": 0.01, "cache.miss_ms": 1.3,
                "cache.speed_up": 41.0 } },
            { "id": "db_write", "grade": "EXCELLENT", "not_applicable": null, "metrics": {
                "db_write.rps": 3_120.0, "db_write.job_insert_rps": 2_870.0,
                "db_write.p99_ms": 9.0, "db_write.errors": 0.0 } },
            { "id": "system_limits", "grade": "EXCELLENT", "not_applicable": null, "metrics": {
                "system_limits.max_rps": 12_800.0, "system_limits.max_users": 12_800.0,
                "system_limits.slo_p99_ms": 500.0, "system_limits.steps": 8.0 } },
        ],
    });
    edit(&mut report);
    report.to_string()
}

fn set(report: &mut serde_json::Value, test: usize, metric: &str, value: f64) {
    report["tests"][test]["metrics"][metric] = serde_json::json!(value);
}

/// Whether `bench compare` would exit non-zero.
fn fails(c: &Comparison) -> bool {
    c.fails()
}

#[test]
fn seen_a_halved_knee_is_a_regression() {
    let c = compare(
        &real(|_| {}),
        &real(|r| set(r, 3, "system_limits.max_rps", 6_400.0)),
    );
    assert!(fails(&c), "{}", c.text());
    assert!(!c.text().contains("within noise (±50 %)"), "{}", c.text());
}

#[test]
fn seen_db_write_rps_down_40_percent_is_a_regression() {
    let c = compare(
        &real(|_| {}),
        &real(|r| set(r, 2, "db_write.rps", 3_120.0 * 0.6)),
    );
    assert!(fails(&c), "{}", c.text());
    // Within noise, the DB write figures are still judged (said so), not left blank.
    let c = compare(
        &real(|_| {}),
        &real(|r| {
            set(r, 2, "db_write.rps", 3_120.0 * 0.936);
            set(r, 2, "db_write.job_insert_rps", 2_870.0 * 0.847);
        }),
    );
    for metric in ["rps", "job_insert_rps"] {
        let row = c
            .rows
            .iter()
            .find(|r| r.test == "db_write" && r.metric == metric)
            .expect("row");
        assert_ne!(row.verdict, Verdict::Unjudged, "{metric}: {}", c.text());
    }
}

#[test]
fn seen_a_metric_removed_from_the_new_report_fails() {
    let c = compare(
        &real(|_| {}),
        &real(|r| {
            r["tests"][0]["metrics"]
                .as_object_mut()
                .expect("metrics")
                .remove("db_read.rps");
        }),
    );
    assert!(fails(&c), "{}", c.text());
    assert!(c.text().contains("db_read.rps"), "{}", c.text());
}

#[test]
fn seen_a_lower_grade_fails() {
    let c = compare(
        &real(|_| {}),
        &real(|r| r["tests"][1]["grade"] = "NEEDS_OPTIMIZATION".into()),
    );
    assert!(fails(&c), "{}", c.text());
    // A lower readiness alone fails too.
    let c = compare(
        &real(|_| {}),
        &real(|r| r["readiness"]["percent"] = 87.5.into()),
    );
    assert!(fails(&c), "{}", c.text());
}

#[test]
fn every_metric_the_suite_writes_has_a_listed_direction() {
    // Read the sources: each `.metric("name"` literal must be in one of the lists, so a new
    // figure is never left unjudged by its name alone.
    fn walk(dir: &std::path::Path, found: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, found);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                for piece in text.split(".metric(").skip(1) {
                    let piece = piece.trim_start();
                    if let Some(rest) = piece.strip_prefix('"') {
                        let name: String = rest
                            .chars()
                            .take_while(|c| {
                                c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_'
                            })
                            .collect();
                        // `.metric("name", …)` in the outcome's own docs and tests is no figure.
                        if rest[name.len()..].starts_with('"') && !name.is_empty() && name != "name"
                        {
                            found.push(name);
                        }
                    }
                }
            }
        }
    }
    let mut names = Vec::new();
    walk(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut names,
    );
    assert!(names.len() > 50, "{names:?}");
    let unlisted: Vec<&String> = names.iter().filter(|n| !kinds::listed(n)).collect();
    assert!(
        unlisted.is_empty(),
        "metrics with no listed direction: {unlisted:?}"
    );
    for (name, direction) in [
        ("rps", Direction::Higher),
        ("job_insert_rps", Direction::Higher),
        ("errors", Direction::Lower),
        ("balances_broken", Direction::Lower),
        ("recovery_s", Direction::Lower),
        ("takeover_s", Direction::Lower),
        ("settle_after_load_s", Direction::Lower),
        ("payments", Direction::None),
        ("photos_duplicated_at_wire", Direction::None),
        // The concurrent-users figures from `genbot serve` are judged as the black-box ones.
        ("serve_success_rate", Direction::Higher),
        ("serve_p99_to_floor", Direction::Lower),
        ("serve_floor_p99_ms", Direction::None),
        ("serve_sends_per_user", Direction::None),
    ] {
        assert_eq!(super::direction(name), direction, "{name}");
    }
}

#[test]
fn repeated_runs_that_spread_one_knee_step_call_it_noise() {
    let knee = |k: f64| Run::parse(&real(|r| set(r, 3, "system_limits.max_rps", k)), "r.json");
    let olds = vec![
        knee(12_800.0).expect("old"),
        knee(6_400.0).expect("old"),
        knee(12_800.0).expect("old"),
    ];
    let c = Comparison::repeated(olds.clone(), vec![knee(6_400.0).expect("new")], 10.0)
        .expect("same kind");
    assert!(!c.fails(), "{}", c.text());
    assert!(c.text().contains("seen across runs"), "{}", c.text());
    // Runs that never wavered: the same one-step drop is a regression.
    let steady = vec![knee(12_800.0).expect("old"), knee(12_800.0).expect("old")];
    let c =
        Comparison::repeated(steady, vec![knee(6_400.0).expect("new")], 10.0).expect("same kind");
    assert!(c.fails(), "{}", c.text());
}

#[test]
fn a_new_run_within_the_old_runs_readiness_passes() {
    let with = |percent: f64| {
        Run::parse(
            &real(|r| r["readiness"]["percent"] = percent.into()),
            "r.json",
        )
        .expect("run")
    };
    // One build run twice (100 %, 87.5 %) as the baseline, the second again as new.
    let c = Comparison::repeated(vec![with(100.0), with(87.5)], vec![with(87.5)], 10.0)
        .expect("same kind");
    assert!(!c.fails(), "{}", c.text());
    let c = Comparison::repeated(vec![with(100.0), with(87.5)], vec![with(75.0)], 10.0)
        .expect("same kind");
    assert!(c.fails(), "{}", c.text());
}

#[test]
fn a_photo_re_sent_at_the_wire_is_shown_but_a_duplicate_is_a_regression() {
    let faults = |at_wire: f64, duplicated: f64| {
        serde_json::json!({
            "schema": "genbot.readiness/1",
            "suite": "performance",
            "tests": [{ "id": "crash_restart", "grade": "EXCELLENT", "not_applicable": null,
                "metrics": {
                    "crash_restart.photos_duplicated_at_wire": at_wire,
                    "crash_restart.photo_sends_at_kills": at_wire * 4.0,
                    "crash_restart.photos_duplicated": duplicated,
                } }],
        })
        .to_string()
    };
    let c = compare(&faults(0.0, 0.0), &faults(3.0, 0.0));
    assert!(c.regressions().is_empty(), "{}", c.text());
    let shown = c
        .rows
        .iter()
        .find(|r| r.metric == "photos_duplicated_at_wire")
        .expect("the at-the-wire row");
    assert_eq!((shown.new, shown.verdict), (Some(3.0), Verdict::Unjudged));
    let c = compare(&faults(3.0, 0.0), &faults(0.0, 1.0));
    let names: Vec<&str> = c.regressions().iter().map(|r| r.metric.as_str()).collect();
    assert_eq!(names, ["photos_duplicated"]);
}

#[test]
fn figures_no_run_can_have_are_refused_naming_file_key_and_what_is_allowed() {
    // A negative p99 was judged an improvement; ±1e308 overflowed the change to infinity.
    for (test, key, value) in [
        (0, "db_read.p99_ms", -5.0),
        (0, "db_read.rps", -1.0),
        (0, "db_read.errors", -1.0),
        (0, "db_read.p99_ms", 1e308),
        (0, "db_read.p99_ms", -1e308),
        (1, "cache.speed_up", 1e308),
    ] {
        let error = Run::parse(&real(|r| set(r, test, key, value)), "new.json")
            .expect_err("refused")
            .to_string();
        assert!(
            error.contains("new.json")
                && error.contains(&format!("\"{key}\""))
                && error.contains(&super::shown(value))
                && error.contains("finite number from"),
            "{key} = {value}: {error}"
        );
        if value < 0.0 && value > -1e15 {
            assert!(error.contains("cannot be negative"), "{error}");
        }
    }
    let error = Run::parse(
        &real(|r| r["readiness"]["percent"] = 1e308.into()),
        "new.json",
    )
    .expect_err("refused")
    .to_string();
    assert!(error.contains("readiness.percent"), "{error}");
    // The limiter's deviation from its setting, and a position that is −1 for "never", are
    // signed: still read.
    let signed = real(|r| {
        set(r, 0, "db_read.error_percent", -3.5);
        set(r, 0, "db_read.b_started_at", -1.0);
    });
    let run = Run::parse(&signed, "r.json").expect("signed figures are figures");
    assert_eq!(run.tests["db_read"].1["error_percent"], -3.5);
}

#[test]
fn openmetrics_figures_no_run_can_have_are_refused() {
    let prom = |value: &str| {
        format!(
            "# TYPE genbot_bench_test_grade gauge\ngenbot_bench_test_grade{{test=\"db_read\"}} 3\n\
             # TYPE genbot_bench_metric gauge\n\
             genbot_bench_metric{{test=\"db_read\",metric=\"p99_ms\"}} {value}\n"
        )
    };
    // NaN is the file's null: not measured, left out.
    let run = Run::parse(&prom("NaN"), "r.prom").expect("NaN is not measured");
    assert!(run.tests["db_read"].1.is_empty());
    assert_eq!(
        Run::parse(&prom("4.5"), "r.prom").expect("a figure").tests["db_read"].1["p99_ms"],
        4.5
    );
    for value in ["-4.5", "+Inf", "-Inf", "1e308"] {
        let error = Run::parse(&prom(value), "r.prom")
            .expect_err("refused")
            .to_string();
        assert!(
            error.contains("r.prom") && error.contains("metric=\"p99_ms\""),
            "{value}: {error}"
        );
    }
}

/// A report that says one thing twice is refused, not read as whichever copy came last: a
/// second `p99_ms` of 1 ms would otherwise hide the first's 900 ms.
#[test]
fn a_report_that_says_a_figure_twice_is_refused() {
    let good = real(|_| {});
    let twice = good.replacen(
        "\"db_read.p99_ms\":4.2",
        "\"db_read.p99_ms\":900.0,\"db_read.p99_ms\":1.0",
        1,
    );
    assert_ne!(twice, good, "the edit must apply");
    let error = Run::parse(&twice, "twice.json").expect_err("a key twice");
    assert!(error.to_string().contains("appears twice"), "{error}");
    // The same metric under its full and its short name.
    let aliased = real(|r| set(r, 0, "p99_ms", 1.0));
    let error = Run::parse(&aliased, "aliased.json").expect_err("a metric twice");
    assert!(error.to_string().contains("\"p99_ms\" twice"), "{error}");
    // The same test twice.
    let repeated = real(|r| {
        let first = r["tests"][0].clone();
        r["tests"].as_array_mut().unwrap().push(first);
    });
    let error = Run::parse(&repeated, "repeated.json").expect_err("a test twice");
    assert!(
        error.to_string().contains("\"db_read\" appears twice"),
        "{error}"
    );
    assert!(Run::parse(&good, "good.json").is_ok());
}

/// The OpenMetrics file is judged as the JSON is: any sample said twice (a figure, a grade,
/// readiness, NaN then a number) or a label twice in one sample is refused.
#[test]
fn an_openmetrics_file_that_says_a_figure_twice_is_refused() {
    let grade =
        "# TYPE genbot_bench_test_grade gauge\ngenbot_bench_test_grade{test=\"db_read\"} 3\n";
    let metric = "genbot_bench_metric{test=\"db_read\",metric=\"p99_ms\"}";
    let readiness = "genbot_bench_readiness_ratio{score=\"seed\"}";
    for (case, twice) in [
        ("a figure", format!("{grade}{metric} 900\n{metric} 1\n")),
        (
            "NaN then a figure",
            format!("{grade}{metric} NaN\n{metric} 900\n"),
        ),
        (
            "a grade",
            format!("{grade}genbot_bench_test_grade{{test=\"db_read\"}} 0\n"),
        ),
        (
            "readiness",
            format!("{grade}{readiness} 0.2\n{readiness} 1\n"),
        ),
    ] {
        let error = Run::parse(&twice, "r.prom").expect_err(case).to_string();
        assert!(error.contains("said twice"), "{case}: {error}");
    }
    let label_twice = format!("{grade}genbot_bench_test_grade{{test=\"db_read\",test=\"zz\"}} 0\n");
    let error = Run::parse(&label_twice, "r.prom")
        .expect_err("a label twice")
        .to_string();
    assert!(error.contains("not an OpenMetrics sample"), "{error}");
    let once = format!("{grade}{metric} 4.5\n{readiness} 1\n");
    let run = Run::parse(&once, "r.prom").expect("each said once");
    assert_eq!(run.readiness, Some(100.0));
}
