//! A run read back from its OpenMetrics file (`readiness_metrics.prom`, written by
//! [`crate::report::openmetrics`]), so `bench compare` judges two `.prom` files as it judges
//! two JSON reports: the same tests (those graded; a test not applicable has no grade line and
//! its figures are left out, as the JSON's are), grades, figures and readiness.

use std::collections::{BTreeMap, BTreeSet};

use super::{checked_metric, checked_percent, CompareError, Run};

/// One sample: family name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

/// Whether `text` looks like the suite's OpenMetrics file rather than JSON.
pub(super) fn looks_like(text: &str) -> bool {
    text.lines().any(|l| l.starts_with("# TYPE genbot_bench_"))
}

/// The grade a value of `genbot_bench_test_grade` stands for, as the JSON spells it.
fn grade(value: f64) -> Option<&'static str> {
    // The file writes small integers; anything else is not one of ours.
    [
        (3.0, "EXCELLENT"),
        (2.0, "GOOD"),
        (1.0, "NEEDS_CONFIGURATION"),
        (0.0, "NEEDS_OPTIMIZATION"),
    ]
    .into_iter()
    .find(|(v, _)| *v == value)
    .map(|(_, name)| name)
}

/// Parses `name{a="x",b="y"} value` (labels optional, `\\`, `\"`, `\n` escapes in values).
fn sample(line: &str) -> Option<Sample> {
    let name_end = line.find(['{', ' '])?;
    let name = line[..name_end].to_owned();
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(mut inner) = rest.strip_prefix('{') {
        loop {
            inner = inner.trim_start_matches(',');
            if let Some(after) = inner.strip_prefix('}') {
                rest = after;
                break;
            }
            let (key, after) = inner.split_once("=\"")?;
            let mut value = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                let (i, c) = chars.next()?;
                match c {
                    '"' => break i + 1,
                    '\\' => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    other => value.push(other),
                }
            };
            // A label twice in one sample is no OpenMetrics: not one of ours.
            if labels.insert(key.trim().to_owned(), value).is_some() {
                return None;
            }
            inner = &after[end..];
        }
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some((name, labels, value))
}

/// `ratio × 100` without the binary fraction's tail (0.873 × 100 = 87.30000000000001), so a
/// score read from a `.prom` equals the JSON's percent.
fn percent(ratio: f64) -> f64 {
    (ratio * 100.0 * 1e9).round() / 1e9
}

/// Reads the OpenMetrics text of a run; `path` names it in errors and labels.
///
/// # Errors
/// A line that is neither a comment nor a sample, or no test grade at all.
pub(super) fn parse(text: &str, path: &str) -> Result<Run, CompareError> {
    let bad = |reason: String| CompareError::NotAReport {
        path: path.into(),
        reason,
    };
    let mut run = Run {
        label: path.to_owned(),
        suite: String::new(),
        repeats: 1,
        readiness: None,
        readiness_extended: None,
        tests: BTreeMap::new(),
    };
    let mut figures: Vec<(String, String, f64)> = Vec::new();
    // Every sample once: the same series twice (whatever its value, NaN included) would be
    // read as whichever came last.
    let mut series = BTreeSet::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (name, mut labels, value) =
            sample(line).ok_or_else(|| bad(format!("not an OpenMetrics sample: {line}")))?;
        if !series.insert((name.clone(), labels.clone())) {
            return Err(bad(format!("a sample said twice: {line}")));
        }
        let mut label = |key: &str| labels.remove(key).unwrap_or_default();
        match name.as_str() {
            "genbot_bench_run_info" => run.suite = label("suite"),
            // NaN stands for a score the JSON writes as null.
            "genbot_bench_readiness_ratio" if !value.is_nan() => {
                let score = label("score");
                let key = format!("genbot_bench_readiness_ratio{{score=\"{score}\"}} × 100");
                let percent = checked_percent(path, &key, Some(percent(value)))?;
                match score.as_str() {
                    "seed" => run.readiness = percent,
                    "extended" => run.readiness_extended = percent,
                    _ => {}
                }
            }
            "genbot_bench_test_grade" => {
                let test = label("test");
                let grade = grade(value).ok_or_else(|| bad(format!("not a grade: {line}")))?;
                let graded = &mut run.tests.entry(test.clone()).or_default().0;
                if !graded.is_empty() {
                    return Err(bad(format!("the test {test:?} is graded twice")));
                }
                *graded = grade.to_owned();
            }
            // NaN stands for a figure the JSON writes as null: not measured.
            "genbot_bench_metric" if !value.is_nan() => {
                let (test, metric) = (label("test"), label("metric"));
                let key = format!("genbot_bench_metric{{test=\"{test}\",metric=\"{metric}\"}}");
                let value = checked_metric(path, &key, &metric, value)?;
                figures.push((test, metric, value));
            }
            _ => {}
        }
    }
    if run.tests.is_empty() {
        return Err(bad("no genbot_bench_test_grade sample".into()));
    }
    for (test, metric, value) in figures {
        // Only graded tests' figures, as the JSON reader keeps only applicable tests.
        if let Some((_, metrics)) = run.tests.get_mut(&test) {
            if metrics.insert(metric.clone(), value).is_some() {
                return Err(bad(format!(
                    "test {test:?} has the metric {metric:?} twice"
                )));
            }
        }
    }
    Ok(run)
}
