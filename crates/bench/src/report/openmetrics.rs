//! The run as OpenMetrics text (`readiness_metrics.prom`), for node_exporter's textfile
//! collector or a Pushgateway, so readiness can be graphed and alerted on across runs:
//! both readiness scores and each criterion's points, every test's grade, and every measured
//! figure. All gauges: a run's results are a state, not a count. Labels carry the test and
//! metric ids, so the family names stay few and fixed.

use std::fmt::Write as _;

use crate::grade::Grade;
use crate::readiness::Readiness;
use crate::suite::SuiteReport;

/// A grade as a number that orders them: higher is better.
fn grade_value(grade: Grade) -> u8 {
    match grade {
        Grade::NeedsOptimization => 0,
        Grade::NeedsConfiguration => 1,
        Grade::Good => 2,
        Grade::Excellent => 3,
    }
}

/// A label value with `\`, `"` and newlines escaped.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} gauge");
}

/// A finite value as OpenMetrics writes numbers (`NaN` and infinities never reach a report).
fn value(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        "NaN".to_owned()
    }
}

fn scores(out: &mut String, which: &str, readiness: &Readiness) {
    for criterion in &readiness.criteria {
        let name = serde_json::to_value(criterion.criterion)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        if criterion.grade.is_some() {
            let _ = writeln!(
                out,
                "genbot_bench_readiness_criterion_points{{score=\"{which}\",criterion=\"{}\"}} {}",
                label(&name),
                value(criterion.points)
            );
        }
    }
}

/// The whole run; every family is written (empty when nothing was measured for it).
pub fn render(report: &SuiteReport) -> String {
    let mut out = String::new();
    family(
        &mut out,
        "genbot_bench_run_timestamp_seconds",
        "When the run started (Unix time)",
    );
    let _ = writeln!(
        out,
        "genbot_bench_run_timestamp_seconds {}",
        report.started_at.timestamp()
    );
    family(
        &mut out,
        "genbot_bench_run_info",
        "The run's suite (always 1): bench compare refuses to compare runs of different suites",
    );
    let suite = serde_json::to_value(report.suite)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "genbot_bench_run_info{{suite=\"{}\"}} 1",
        label(&suite)
    );
    family(
        &mut out,
        "genbot_bench_run_duration_seconds",
        "How long the run took",
    );
    let _ = writeln!(
        out,
        "genbot_bench_run_duration_seconds {}",
        value(report.duration_s)
    );
    family(
        &mut out,
        "genbot_bench_readiness_ratio",
        "Readiness score from 0 to 1 (seed: the six criteria; extended: with fault tolerance); absent when the run measured no criterion",
    );
    for (which, readiness) in [
        ("seed", &report.readiness),
        ("extended", &report.readiness_extended),
    ] {
        if let Some(percent) = readiness.percent {
            let _ = writeln!(
                out,
                "genbot_bench_readiness_ratio{{score=\"{which}\"}} {}",
                value(percent / 100.0)
            );
        }
    }
    family(
        &mut out,
        "genbot_bench_readiness_criterion_points",
        "Points a criterion earned toward the score (measured criteria only)",
    );
    scores(&mut out, "seed", &report.readiness);
    scores(&mut out, "extended", &report.readiness_extended);
    family(
        &mut out,
        "genbot_bench_test_grade",
        "Each graded test's grade: 3 EXCELLENT, 2 GOOD, 1 NEEDS CONFIGURATION, 0 NEEDS OPTIMIZATION (tests not applicable or that measured nothing are absent)",
    );
    for test in report.tests.iter().filter(|t| t.applies()) {
        let _ = writeln!(
            out,
            "genbot_bench_test_grade{{test=\"{}\"}} {}",
            test.id.as_str(),
            grade_value(test.grade)
        );
    }
    family(
        &mut out,
        "genbot_bench_metric",
        "Every figure a test measured, in the unit its name states (the JSON reports' metrics)",
    );
    for test in &report.tests {
        for (key, v) in &test.metrics {
            let metric = key
                .strip_prefix(test.id.as_str())
                .and_then(|rest| rest.strip_prefix('.'))
                .unwrap_or(key);
            let _ = writeln!(
                out,
                "genbot_bench_metric{{test=\"{}\",metric=\"{}\"}} {}",
                test.id.as_str(),
                label(metric),
                value(*v)
            );
        }
    }
    out.push_str("# EOF\n");
    out
}
