//! Run-to-run comparison (`genbot bench compare OLD.json NEW.json`): every metric of every test
//! side by side, the change in percent, whether it is beyond run-to-run noise, and whether it
//! is a regression beyond the allowed one. Works on any two JSON reports of the same kind:
//! two builds of genbot, or two black-box bots.
//!
//! Noise: each metric kind has a run-to-run noise band measured on this suite (latencies vary
//! most, counts of losses not at all), narrowed by √repeats when both reports merge several
//! runs (`repeats` in the JSON). Direction: the metric's name says whether higher is better
//! (rates, throughput, success) or lower (latencies, memory, losses); metrics with no better
//! direction (limits, burst sizes) are shown but never judged.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;

use crate::report::xml_escape as escape;

/// Why a report cannot be compared.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "{path} is not a genbot readiness report (JSON with schema genbot.readiness/1): {reason}"
    )]
    NotAReport { path: String, reason: String },
    #[error("{old} is a `{old_suite}` report and {new} a `{new_suite}` one: compare reports of the same kind")]
    DifferentKinds {
        old: String,
        new: String,
        old_suite: String,
        new_suite: String,
    },
}

/// One run, as its JSON report has it.
#[derive(Debug, Clone)]
pub struct Run {
    /// The file, and the bot under test if the run was black-box.
    pub label: String,
    pub suite: String,
    pub repeats: u32,
    pub readiness: Option<f64>,
    /// Test id → (grade, metrics); tests that did not apply are left out.
    pub tests: BTreeMap<String, (String, BTreeMap<String, f64>)>,
}

impl Run {
    /// Reads a JSON report; `path` names it in errors and labels.
    ///
    /// # Errors
    /// The file cannot be read or is not a readiness report.
    pub fn load(path: &std::path::Path) -> Result<Run, CompareError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| CompareError::Read {
            path: shown.clone(),
            source,
        })?;
        Run::parse(&text, &shown)
    }

    /// As [`Run::load`], from the text.
    ///
    /// # Errors
    /// Not JSON, or not a readiness report.
    pub fn parse(text: &str, path: &str) -> Result<Run, CompareError> {
        let bad = |reason: &str| CompareError::NotAReport {
            path: path.into(),
            reason: reason.into(),
        };
        let value: Value = serde_json::from_str(text).map_err(|e| bad(&e.to_string()))?;
        if value["schema"] != "genbot.readiness/1" {
            return Err(bad("no \"schema\": \"genbot.readiness/1\""));
        }
        let tests = value["tests"]
            .as_array()
            .ok_or_else(|| bad("no \"tests\" array"))?;
        let mut runs = BTreeMap::new();
        for test in tests {
            if !test["not_applicable"].is_null() {
                continue;
            }
            let id = test["id"].as_str().ok_or_else(|| bad("a test has no id"))?;
            let metrics = test["metrics"]
                .as_object()
                .map(|m| {
                    // Reports name metrics `test.metric`; the table shows the test apart.
                    let prefix = format!("{id}.");
                    m.iter()
                        .filter_map(|(k, v)| {
                            let name = k.strip_prefix(&prefix).unwrap_or(k);
                            Some((name.to_owned(), v.as_f64()?))
                        })
                        .collect()
                })
                .unwrap_or_default();
            let grade = test["grade"].as_str().unwrap_or_default().to_owned();
            runs.insert(id.to_owned(), (grade, metrics));
        }
        let label = match value["environment"]["bot"].as_str() {
            Some(bot) => format!("{path} ({bot})"),
            None => path.to_owned(),
        };
        Ok(Run {
            label,
            suite: value["suite"].as_str().unwrap_or_default().to_owned(),
            repeats: value["repeats"]
                .as_u64()
                .map_or(1, |r| r.clamp(1, 1_000) as u32),
            readiness: value["readiness"]["percent"].as_f64(),
            tests: runs,
        })
    }
}

/// Which way a metric is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Higher,
    Lower,
    /// Neither (a limit, a burst size): shown, never judged.
    None,
}

/// What a metric's change amounts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within run-to-run noise.
    Same,
    Better,
    /// Worse beyond noise, but within the allowed regression.
    Worse,
    /// Worse beyond noise and beyond `--max-regression`.
    Regressed,
    /// No better direction, or only in one run.
    Unjudged,
}

/// One metric of one test in both runs.
#[derive(Debug, Clone)]
pub struct Row {
    pub test: String,
    pub metric: String,
    pub old: Option<f64>,
    pub new: Option<f64>,
    /// Change in percent of the old value; `None` when either is missing or the old is 0.
    pub change_percent: Option<f64>,
    pub noise_percent: f64,
    pub direction: Direction,
    pub verdict: Verdict,
}

/// Two runs side by side.
#[derive(Debug, Clone)]
pub struct Comparison {
    pub old: Run,
    pub new: Run,
    pub max_regression_percent: f64,
    pub rows: Vec<Row>,
    /// Tests whose grade changed: (test, old grade, new grade).
    pub grade_changes: Vec<(String, String, String)>,
}

impl Comparison {
    /// Compares two runs of the same kind.
    ///
    /// # Errors
    /// The reports are of different suites.
    pub fn new(
        old: Run,
        new: Run,
        max_regression_percent: f64,
    ) -> Result<Comparison, CompareError> {
        if old.suite != new.suite {
            return Err(CompareError::DifferentKinds {
                old: old.label.clone(),
                new: new.label.clone(),
                old_suite: old.suite.clone(),
                new_suite: new.suite.clone(),
            });
        }
        let repeats = old.repeats.min(new.repeats);
        let mut rows = Vec::new();
        let mut grade_changes = Vec::new();
        let ids: std::collections::BTreeSet<&String> =
            old.tests.keys().chain(new.tests.keys()).collect();
        for id in ids {
            let (old_grade, old_metrics) = old.tests.get(id).cloned().unwrap_or_default();
            let (new_grade, new_metrics) = new.tests.get(id).cloned().unwrap_or_default();
            if !old_grade.is_empty() && !new_grade.is_empty() && old_grade != new_grade {
                grade_changes.push((id.clone(), old_grade, new_grade));
            }
            let users = old_metrics
                .get("users")
                .into_iter()
                .chain(new_metrics.get("users"))
                .copied()
                .reduce(f64::min);
            let names: std::collections::BTreeSet<&String> =
                old_metrics.keys().chain(new_metrics.keys()).collect();
            for name in names {
                rows.push(row(
                    id,
                    name,
                    (
                        old_metrics.get(name).copied(),
                        new_metrics.get(name).copied(),
                    ),
                    noise_floor(name, users),
                    repeats,
                    max_regression_percent,
                ));
            }
        }
        Ok(Comparison {
            old,
            new,
            max_regression_percent,
            rows,
            grade_changes,
        })
    }

    /// The metrics that regressed beyond noise and the allowed regression.
    pub fn regressions(&self) -> Vec<&Row> {
        self.rows
            .iter()
            .filter(|r| r.verdict == Verdict::Regressed)
            .collect()
    }

    /// The comparison as a terminal table.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "old: {}", self.old.label);
        let _ = writeln!(out, "new: {}", self.new.label);
        if let (Some(a), Some(b)) = (self.old.readiness, self.new.readiness) {
            let _ = writeln!(out, "readiness: {a:.1} % → {b:.1} %");
        }
        for (test, a, b) in &self.grade_changes {
            let _ = writeln!(out, "grade of {test}: {a} → {b}");
        }
        let _ = writeln!(
            out,
            "\n{:<22} {:<28} {:>12} {:>12} {:>9}  verdict",
            "test", "metric", "old", "new", "change"
        );
        for r in &self.rows {
            let _ = writeln!(
                out,
                "{:<22} {:<28} {:>12} {:>12} {:>9}  {}",
                r.test,
                r.metric,
                number(r.old),
                number(r.new),
                change(r),
                verdict_text(r)
            );
        }
        let regressions = self.regressions();
        let _ = writeln!(
            out,
            "\n{}",
            if regressions.is_empty() {
                format!(
                    "no metric regressed beyond noise and {:.0} %",
                    self.max_regression_percent
                )
            } else {
                format!(
                    "REGRESSED beyond {:.0} %: {}",
                    self.max_regression_percent,
                    regressions
                        .iter()
                        .map(|r| format!("{}.{} ({})", r.test, r.metric, change(r)))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        );
        out
    }

    /// The comparison as a self-contained HTML page.
    pub fn html(&self) -> String {
        let mut rows = String::new();
        for r in &self.rows {
            let class = match r.verdict {
                Verdict::Regressed => "regressed",
                Verdict::Worse => "worse",
                Verdict::Better => "better",
                Verdict::Same | Verdict::Unjudged => "",
            };
            let _ = write!(
                rows,
                "<tr class=\"{class}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&r.test),
                escape(&r.metric),
                number(r.old),
                number(r.new),
                change(r),
                escape(&verdict_text(r))
            );
        }
        let grades: String = self
            .grade_changes
            .iter()
            .map(|(t, a, b)| format!("<li>{}: {} → {}</li>", escape(t), escape(a), escape(b)))
            .collect();
        let regressions = self.regressions();
        let summary = if regressions.is_empty() {
            format!(
                "No metric regressed beyond noise and {:.0} %.",
                self.max_regression_percent
            )
        } else {
            format!(
                "Regressed beyond {:.0} %: {}.",
                self.max_regression_percent,
                regressions
                    .iter()
                    .map(|r| escape(&format!("{}.{} ({})", r.test, r.metric, change(r))))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>genbot bench compare</title><style>\
             body{{font-family:system-ui,sans-serif;margin:2em}}table{{border-collapse:collapse}}\
             td,th{{padding:.2em .6em;border-bottom:1px solid #ddd;text-align:right}}\
             td:nth-child(-n+2),th:nth-child(-n+2){{text-align:left}}\
             tr.regressed{{background:#fdd}}tr.worse{{background:#fff3d6}}tr.better{{background:#e3f6e3}}\
             </style></head><body><h1>Run-to-run comparison</h1>\
             <p>old: {}<br>new: {}</p><p>readiness: {} → {}</p><ul>{grades}</ul><p><b>{summary}</b></p>\
             <table><tr><th>test</th><th>metric</th><th>old</th><th>new</th><th>change</th><th>verdict</th></tr>{rows}</table>\
             </body></html>",
            escape(&self.old.label),
            escape(&self.new.label),
            self.old.readiness.map_or("–".into(), |p| format!("{p:.1} %")),
            self.new.readiness.map_or("–".into(), |p| format!("{p:.1} %")),
        )
    }
}

fn row(
    test: &str,
    metric: &str,
    (old, new): (Option<f64>, Option<f64>),
    floor: f64,
    repeats: u32,
    max_regression: f64,
) -> Row {
    let direction = direction(metric);
    let noise = noise_percent(metric) / f64::from(repeats).sqrt();
    let change_percent = match (old, new) {
        (Some(a), Some(b)) if a != 0.0 => Some((b - a) / a.abs() * 100.0),
        _ => None,
    };
    let within_floor = match (old, new) {
        (Some(a), Some(b)) => (b - a).abs() <= floor,
        _ => false,
    };
    let verdict = match (old, new, direction) {
        (_, _, Direction::None) | (None, _, _) | (_, None, _) => Verdict::Unjudged,
        (Some(a), Some(b), _) if a == b => Verdict::Same,
        (Some(a), Some(b), direction) => {
            let worse = match direction {
                Direction::Higher => b < a,
                Direction::Lower => b > a,
                Direction::None => false,
            };
            // From zero (nothing lost before, something lost now) any change is beyond noise.
            let size = change_percent.map_or(f64::INFINITY, f64::abs);
            if size <= noise || within_floor {
                Verdict::Same
            } else if !worse {
                Verdict::Better
            } else if size > max_regression {
                Verdict::Regressed
            } else {
                Verdict::Worse
            }
        }
    };
    Row {
        test: test.into(),
        metric: metric.into(),
        old,
        new,
        change_percent,
        noise_percent: noise,
        direction,
        verdict,
    }
}

/// Which way a metric is better, from its name.
pub fn direction(metric: &str) -> Direction {
    const LOWER: &[&str] = &[
        "lost",
        "missing",
        "duplicat",
        "twice",
        "failed_sessions",
        "unanswered",
        "flood_dropped",
        "wait",
        "growth_mb",
        "bytes_per",
        "problems",
        "over_telegram_budget",
        "mismatch",
    ];
    const HIGHER: &[&str] = &[
        "success_rate",
        "hit_rate",
        "throughput",
        "max_rps",
        "max_users",
        "per_s",
        "ops_per",
    ];
    if metric.starts_with("peak_sends") || metric.starts_with("slo_") {
        // How fast the bot sent, or a bound the test set: neither better nor worse by itself.
        Direction::None
    } else if metric.ends_with("_at_wire") || metric.ends_with("_at_kills") {
        // What the kills happened to catch on the wire (a send re-sent after a SIGKILL, which
        // Telegram cannot deduplicate): depends on where the random kills land, not the build.
        Direction::None
    } else if metric.ends_with("_ms") || LOWER.iter().any(|m| metric.contains(m)) {
        Direction::Lower
    } else if HIGHER.iter().any(|m| metric.contains(m)) {
        Direction::Higher
    } else {
        Direction::None
    }
}

/// Run-to-run noise of one run, in percent, by metric kind (measured: two runs of the same
/// build on a shared 2-core machine differ by up to about this much).
pub fn noise_percent(metric: &str) -> f64 {
    let tail = metric.contains("p99") || metric.starts_with("max_ms") || metric.contains("p95");
    if metric.ends_with("_ms") && tail {
        // A tail of a few hundred samples on a shared machine: one stall doubles it.
        100.0
    } else if metric.ends_with("_ms") {
        30.0
    } else if metric == "max_rps" || metric == "max_users" {
        // The knee is a step of a doubling ramp: one step down (−50 %) is noise, two are not.
        50.0
    } else if metric.contains("_mb") || metric.contains("bytes_per") {
        20.0
    } else if metric.contains("rate") && !metric.contains("per") {
        1.0
    } else if direction(metric) == Direction::Lower {
        // Losses and failures: none is expected either time.
        0.0
    } else {
        // Rates and throughput over a few seconds of a shared machine.
        25.0
    }
}

/// RSS moves by this much between two runs of one build (allocator arenas, page cache).
const RSS_NOISE_MB: f64 = 5.0;

/// Absolute changes this small are noise whatever the percentage (a few milliseconds on a
/// 3 ms latency, a few MB of RSS from the allocator). `users` is the test's user count: a
/// per-user figure is RSS noise spread over the users, so 2 MB over 40 users (53 KB each) is
/// as much noise as 2 MB over 1000.
pub fn noise_floor(metric: &str, users: Option<f64>) -> f64 {
    if metric.ends_with("_ms") {
        // One scheduler hiccup on a busy 2-core machine.
        20.0
    } else if metric.contains("_mb") {
        RSS_NOISE_MB
    } else if metric.contains("bytes_per") {
        let spread = users
            .filter(|u| *u >= 1.0)
            .map_or(0.0, |u| RSS_NOISE_MB * 1024.0 * 1024.0 / u);
        spread.max(10_000.0)
    } else if metric.ends_with("_share") {
        // A share of sends that fell in busy seconds: which second a burst lands in is timing.
        0.05
    } else {
        0.0
    }
}

fn number(value: Option<f64>) -> String {
    match value {
        None => "–".into(),
        Some(v) if v.abs() >= 100.0 || v.fract() == 0.0 => format!("{v:.0}"),
        Some(v) => format!("{v:.3}"),
    }
}

fn change(row: &Row) -> String {
    match (row.change_percent, row.old, row.new) {
        (Some(c), _, _) => format!("{c:+.1} %"),
        (None, Some(a), Some(b)) if a == b => "0 %".into(),
        (None, Some(_), Some(_)) => "from 0".into(),
        _ => "–".into(),
    }
}

fn verdict_text(row: &Row) -> String {
    match row.verdict {
        Verdict::Same => format!("within noise (±{:.0} %)", row.noise_percent),
        Verdict::Better => "better".into(),
        Verdict::Worse => "worse (within the allowed regression)".into(),
        Verdict::Regressed => "REGRESSED".into(),
        Verdict::Unjudged if row.old.is_none() || row.new.is_none() => "in one run only".into(),
        Verdict::Unjudged => String::new(),
    }
}

#[cfg(test)]
mod tests {
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
        assert!(c.text().contains("REGRESSED beyond 10 %"));
        assert!(c.html().contains("class=\"regressed\""));
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
}
