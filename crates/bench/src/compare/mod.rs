//! Run-to-run comparison (`genbot bench compare OLD.json NEW.json`): every metric of every test
//! side by side, the change in percent, whether it is beyond run-to-run noise, and whether it
//! is a regression beyond the allowed one. Works on any two JSON reports of the same kind:
//! two builds of genbot, or two black-box bots.
//!
//! The comparison fails (the command exits 1) when a judged metric regressed beyond noise and
//! `--max-regression`, when a metric of the old report is missing from the new one, when a
//! test's grade is lower, or when readiness is lower: a worse run never passes for lack of a
//! figure to compare.
//!
//! Noise: with several runs on a side (`--old-repeat`, `--new-repeat`) each metric's band is
//! the spread those runs showed; otherwise each metric kind has a band measured on this suite
//! ([`kinds::noise_percent`]), narrowed by √repeats when both reports merge several runs
//! (`repeats` in the JSON). Direction: every metric the suite writes is listed as higher-better,
//! lower-better or informational ([`kinds`]).

mod kinds;
mod openmetrics;
mod render;
mod strict_json;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

pub use kinds::{direction, noise_floor, noise_percent, Direction};

/// Why a report cannot be compared.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "{path} is not a genbot readiness report (JSON with schema genbot.readiness/1, or the run's readiness_metrics.prom): {reason}"
    )]
    NotAReport { path: String, reason: String },
    #[error("{old} is a `{old_suite}` report and {new} a `{new_suite}` one: compare reports of the same kind")]
    DifferentKinds {
        old: String,
        new: String,
        old_suite: String,
        new_suite: String,
    },
    #[error("no report to compare on one side")]
    NoRuns,
    #[error("{path} is larger than {limit_mib} MiB (at least {bytes} bytes), more than any readiness report: not read")]
    TooLarge {
        path: String,
        limit_mib: u64,
        bytes: u64,
    },
    #[error("{path} is {kind}, not a regular file: not read (a report is a file a run wrote)")]
    NotAFile { path: String, kind: &'static str },
    #[error("{path}: {key} is {value}, not a figure a run measures: allowed is {allowed}")]
    BadValue {
        path: String,
        key: String,
        value: String,
        allowed: String,
    },
}

/// The largest magnitude a figure may have. No figure of the suite comes near it (a day in
/// ms is 8.6e7, a TiB in bytes 1.1e12); beyond it a difference of two figures overflows to
/// infinity (±1e308) and the table prints 300-digit numbers.
pub const MAX_FIGURE: f64 = 1e15;

/// `value` as the refusal shows it: exponent form when plain digits would run long.
fn shown(value: f64) -> String {
    if value.is_finite() && value.abs() < MAX_FIGURE {
        value.to_string()
    } else {
        format!("{value:e}")
    }
}

/// `value` of `metric` (named `key` in the file at `path`) if it is a figure a run can have:
/// finite, within [`MAX_FIGURE`], and not negative unless the metric is signed
/// ([`kinds::may_be_negative`]). A negative p99 was judged an improvement.
fn checked_metric(path: &str, key: &str, metric: &str, value: f64) -> Result<f64, CompareError> {
    let min = if kinds::may_be_negative(metric) {
        -MAX_FIGURE
    } else {
        0.0
    };
    checked(path, key, value, (min, MAX_FIGURE))
}

/// `value` if it is finite and within `min..=max`, else the refusal naming `path` and `key`.
fn checked(path: &str, key: &str, value: f64, (min, max): (f64, f64)) -> Result<f64, CompareError> {
    if value.is_finite() && (min..=max).contains(&value) {
        return Ok(value);
    }
    let allowed = if min == 0.0 {
        format!(
            "a finite number from 0 to {} (it cannot be negative)",
            shown(max)
        )
    } else {
        format!("a finite number from {} to {}", shown(min), shown(max))
    };
    Err(CompareError::BadValue {
        path: path.into(),
        key: key.into(),
        value: shown(value),
        allowed,
    })
}

/// A readiness percent, as [`checked`] (`key` names it in the file).
fn checked_percent(path: &str, key: &str, value: Option<f64>) -> Result<Option<f64>, CompareError> {
    value
        .map(|v| checked(path, key, v, (0.0, 100.0)))
        .transpose()
}

/// The largest report file read: a full run's JSON is a few MB, and an unbounded read of a
/// wrong path (`/dev/zero`, a disk image) would take all the memory there is.
pub const MAX_REPORT_BYTES: u64 = 64 * 1024 * 1024;

/// What a path that is not a regular file is, for the refusal.
fn kind_of(file_type: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt as _;
        if file_type.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if file_type.is_char_device() {
            return "a character device";
        }
        if file_type.is_block_device() {
            return "a block device";
        }
        if file_type.is_socket() {
            return "a socket";
        }
    }
    if file_type.is_dir() {
        "a directory"
    } else {
        "not a file"
    }
}

/// One run, as its JSON report (or OpenMetrics file) has it.
#[derive(Debug, Clone)]
pub struct Run {
    /// The file, and the bot under test if the run was black-box.
    pub label: String,
    pub suite: String,
    pub repeats: u32,
    pub readiness: Option<f64>,
    pub readiness_extended: Option<f64>,
    /// Test id → (grade, metrics); tests that did not apply are left out.
    pub tests: BTreeMap<String, (String, BTreeMap<String, f64>)>,
}

impl Run {
    /// Reads a JSON report; `path` names it in errors and labels.
    ///
    /// # Errors
    /// The file cannot be read or is not a readiness report.
    pub fn load(path: &std::path::Path) -> Result<Run, CompareError> {
        use std::io::Read as _;
        let shown = path.display().to_string();
        let read_error = |source| CompareError::Read {
            path: shown.clone(),
            source,
        };
        let too_large = |path, bytes| CompareError::TooLarge {
            path,
            limit_mib: MAX_REPORT_BYTES / 1024 / 1024,
            bytes,
        };
        // Looked at before opening: opening a FIFO with no writer blocks for ever, and a
        // device or an oversized file would be read up to the limit (RSS 229 MB) to no use.
        let metadata = std::fs::metadata(path).map_err(read_error)?;
        if !metadata.is_file() {
            return Err(CompareError::NotAFile {
                path: shown,
                kind: kind_of(&metadata.file_type()),
            });
        }
        if metadata.len() > MAX_REPORT_BYTES {
            return Err(too_large(shown, metadata.len()));
        }
        // Still bounded: the file may grow between the look and the read.
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|file| file.take(MAX_REPORT_BYTES + 1).read_to_end(&mut bytes))
            .map_err(read_error)?;
        if bytes.len() as u64 > MAX_REPORT_BYTES {
            return Err(too_large(shown, bytes.len() as u64));
        }
        let text = String::from_utf8(bytes)
            .map_err(|e| read_error(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
        Run::parse(&text, &shown)
    }

    /// As [`Run::load`], from the text: a JSON report, or the run's OpenMetrics file
    /// (`--format openmetrics`), told apart by their content.
    ///
    /// # Errors
    /// Not JSON nor OpenMetrics, or not a readiness report.
    pub fn parse(text: &str, path: &str) -> Result<Run, CompareError> {
        if !text.trim_start().starts_with('{') && openmetrics::looks_like(text) {
            return openmetrics::parse(text, path);
        }
        let bad = |reason: &str| CompareError::NotAReport {
            path: path.into(),
            reason: reason.into(),
        };
        let value: Value = strict_json::parse(text).map_err(|e| bad(&e.to_string()))?;
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
            let mut metrics = BTreeMap::new();
            // Reports name metrics `test.metric`; the table shows the test apart.
            let prefix = format!("{id}.");
            for (key, value) in test["metrics"].as_object().into_iter().flatten() {
                // null (not measured) and non-numbers are left out, as before.
                let Some(value) = value.as_f64() else {
                    continue;
                };
                let name = key.strip_prefix(&prefix).unwrap_or(key);
                let value = checked_metric(path, &format!("metric \"{key}\""), name, value)?;
                if metrics.insert(name.to_owned(), value).is_some() {
                    return Err(bad(&format!("test {id:?} has the metric {name:?} twice")));
                }
            }
            let grade = test["grade"].as_str().unwrap_or_default().to_owned();
            if runs.insert(id.to_owned(), (grade, metrics)).is_some() {
                return Err(bad(&format!("the test {id:?} appears twice")));
            }
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
            readiness: checked_percent(
                path,
                "readiness.percent",
                value["readiness"]["percent"].as_f64(),
            )?,
            readiness_extended: checked_percent(
                path,
                "readiness_extended.percent",
                value["readiness_extended"]["percent"].as_f64(),
            )?,
            tests: runs,
        })
    }
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
    /// In the old report, not in the new one: a figure that stopped being measured.
    Missing,
    /// No better direction, or only in the new run.
    Unjudged,
}

/// One metric of one test in both runs.
#[derive(Debug, Clone)]
pub struct Row {
    pub test: String,
    pub metric: String,
    /// The median over the side's runs (one run: its value).
    pub old: Option<f64>,
    pub new: Option<f64>,
    /// Change in percent of the old value; `None` when either is missing or the old is 0.
    pub change_percent: Option<f64>,
    pub noise_percent: f64,
    /// Whether the band is the spread the repeated runs showed (else the table's).
    pub noise_observed: bool,
    pub direction: Direction,
    pub verdict: Verdict,
}

/// A test's grade on both sides; with repeats, the old side's worst and the new side's median.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GradeChange {
    pub test: String,
    pub old: String,
    pub new: String,
    /// The new grade is below the old one (or the test is gone).
    pub lower: bool,
}

/// Two sides side by side.
#[derive(Debug, Clone)]
pub struct Comparison {
    pub old: Run,
    pub new: Run,
    /// Runs on each side (1 without `--old-repeat` / `--new-repeat`).
    pub old_runs: usize,
    pub new_runs: usize,
    pub max_regression_percent: f64,
    pub rows: Vec<Row>,
    pub grade_changes: Vec<GradeChange>,
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
        Comparison::repeated(vec![old], vec![new], max_regression_percent)
    }

    /// Compares several runs of one build with several of another: each metric's value is its
    /// median on that side, its noise band the widest spread (max − min over the median) seen
    /// on either side when a side has two runs or more.
    ///
    /// # Errors
    /// No run on a side, or reports of different suites.
    pub fn repeated(
        olds: Vec<Run>,
        news: Vec<Run>,
        max_regression_percent: f64,
    ) -> Result<Comparison, CompareError> {
        let (Some(first_old), Some(first_new)) = (olds.first(), news.first()) else {
            return Err(CompareError::NoRuns);
        };
        for other in olds.iter().chain(&news) {
            if other.suite != first_old.suite {
                return Err(CompareError::DifferentKinds {
                    old: first_old.label.clone(),
                    new: other.label.clone(),
                    old_suite: first_old.suite.clone(),
                    new_suite: other.suite.clone(),
                });
            }
        }
        let repeats = first_old.repeats.min(first_new.repeats);
        let observed = olds.len() > 1 || news.len() > 1;
        let mut rows = Vec::new();
        let mut grade_changes = Vec::new();
        let ids: BTreeSet<&String> = olds
            .iter()
            .chain(&news)
            .flat_map(|r| r.tests.keys())
            .collect();
        for id in ids {
            if let Some(change) = grade_change(id, &olds, &news) {
                grade_changes.push(change);
            }
            let values = |runs: &[Run], name: &str| -> Vec<f64> {
                runs.iter()
                    .filter_map(|r| r.tests.get(id).and_then(|(_, m)| m.get(name)).copied())
                    .collect()
            };
            let names: BTreeSet<&String> = olds
                .iter()
                .chain(&news)
                .filter_map(|r| r.tests.get(id))
                .flat_map(|(_, m)| m.keys())
                .collect();
            let users = median(
                &olds
                    .iter()
                    .chain(&news)
                    .filter_map(|r| r.tests.get(id).and_then(|(_, m)| m.get("users")))
                    .copied()
                    .collect::<Vec<_>>(),
            );
            for name in names {
                let (a, b) = (values(&olds, name), values(&news, name));
                let band = if observed {
                    Band::Observed(spread_percent(&a).max(spread_percent(&b)))
                } else {
                    Band::Table(repeats)
                };
                rows.push(row(
                    id,
                    name,
                    (median(&a), median(&b)),
                    (band, noise_floor(name, users)),
                    max_regression_percent,
                ));
            }
        }
        // Readiness falls only below the old runs' worst: a new run between two old ones is
        // within what the old build already did.
        let old = merged(&olds, |v| v.iter().copied().reduce(f64::min));
        let new = merged(&news, median);
        Ok(Comparison {
            old_runs: olds.len(),
            new_runs: news.len(),
            old,
            new,
            max_regression_percent,
            rows,
            grade_changes,
        })
    }

    /// The metrics that regressed beyond noise and the allowed regression, or went missing.
    pub fn regressions(&self) -> Vec<&Row> {
        self.rows
            .iter()
            .filter(|r| matches!(r.verdict, Verdict::Regressed | Verdict::Missing))
            .collect()
    }

    /// Everything that makes the new side worse, in words: regressed or missing metrics,
    /// lower grades, lower readiness. Empty when the comparison passes.
    pub fn failures(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .regressions()
            .into_iter()
            .map(|r| match r.verdict {
                Verdict::Missing => format!("{}.{} missing from the new report", r.test, r.metric),
                _ => format!("{}.{} ({})", r.test, r.metric, render::change(r)),
            })
            .collect();
        for g in self.grade_changes.iter().filter(|g| g.lower) {
            out.push(format!("grade of {}: {} → {}", g.test, g.old, g.new));
        }
        for (name, a, b) in [
            ("readiness", self.old.readiness, self.new.readiness),
            (
                "extended readiness",
                self.old.readiness_extended,
                self.new.readiness_extended,
            ),
        ] {
            if let Some(a) = a {
                match b {
                    Some(b) if b >= a => {}
                    Some(b) => out.push(format!("{name}: {a:.1} % → {b:.1} %")),
                    None => out.push(format!("{name}: {a:.1} % → not scored")),
                }
            }
        }
        out
    }

    /// Whether `bench compare` exits non-zero.
    pub fn fails(&self) -> bool {
        !self.failures().is_empty()
    }
}

/// Grades in order, worst first, as the JSON spells them.
fn grade_rank(grade: &str) -> u8 {
    match grade {
        "EXCELLENT" => 3,
        "GOOD" => 2,
        "NEEDS_CONFIGURATION" => 1,
        _ => 0,
    }
}

/// The test's grade on both sides, when it changed: the old side's worst against the new
/// side's median, so a grade the old runs already wavered down to is noise.
fn grade_change(id: &str, olds: &[Run], news: &[Run]) -> Option<GradeChange> {
    let grades = |runs: &[Run]| -> Vec<String> {
        let mut g: Vec<String> = runs
            .iter()
            .filter_map(|r| r.tests.get(id).map(|(g, _)| g.clone()))
            .filter(|g| !g.is_empty())
            .collect();
        g.sort_by_key(|g| grade_rank(g));
        g
    };
    let (a, b) = (grades(olds), grades(news));
    let worst_old = a.first()?.clone();
    let Some(median_new) = b.get(b.len() / 2).cloned() else {
        return Some(GradeChange {
            test: id.into(),
            old: worst_old,
            new: "not run or not applicable".into(),
            lower: true,
        });
    };
    let median_old = a[a.len() / 2].clone();
    if median_old == median_new && worst_old == median_new {
        return None;
    }
    Some(GradeChange {
        test: id.into(),
        lower: grade_rank(&median_new) < grade_rank(&worst_old),
        old: median_old,
        new: median_new,
    })
}

/// One side's runs as one: the first's label (and how many more), readiness as `combine`
/// makes it of the runs'.
fn merged(runs: &[Run], combine: fn(&[f64]) -> Option<f64>) -> Run {
    let mut run = runs[0].clone();
    if runs.len() > 1 {
        run.label = format!("{} and {} more", run.label, runs.len() - 1);
        let pick =
            |f: fn(&Run) -> Option<f64>| combine(&runs.iter().filter_map(f).collect::<Vec<_>>());
        run.readiness = pick(|r| r.readiness);
        run.readiness_extended = pick(|r| r.readiness_extended);
    }
    run
}

fn median(values: &[f64]) -> Option<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => None,
        n if n % 2 == 1 => Some(v[n / 2]),
        n => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// (max − min) over the median, in percent; 0 for fewer than two values.
fn spread_percent(values: &[f64]) -> f64 {
    let (Some(lo), Some(hi), Some(mid)) = (
        values.iter().copied().reduce(f64::min),
        values.iter().copied().reduce(f64::max),
        median(values),
    ) else {
        return 0.0;
    };
    if values.len() < 2 || hi == lo {
        0.0
    } else if mid == 0.0 {
        f64::INFINITY
    } else {
        (hi - lo) / mid.abs() * 100.0
    }
}

/// Where a metric's noise band comes from.
#[derive(Debug, Clone, Copy)]
enum Band {
    /// The spread repeated runs showed, in percent.
    Observed(f64),
    /// The table's band for the kind, narrowed by √repeats.
    Table(u32),
}

fn row(
    test: &str,
    metric: &str,
    (old, new): (Option<f64>, Option<f64>),
    (band, floor): (Band, f64),
    max_regression: f64,
) -> Row {
    let direction = direction(metric);
    let (noise, noise_observed) = match band {
        Band::Observed(spread) => (spread, true),
        Band::Table(repeats) => (noise_percent(metric) / f64::from(repeats).sqrt(), false),
    };
    let change_percent = match (old, new) {
        (Some(a), Some(b)) if a != 0.0 => Some((b - a) / a.abs() * 100.0),
        _ => None,
    };
    let within_floor = match (old, new) {
        (Some(a), Some(b)) => (b - a).abs() <= floor,
        _ => false,
    };
    let verdict = match (old, new, direction) {
        // A figure measured before and not now is lost evidence, whatever its kind.
        (Some(_), None, _) => Verdict::Missing,
        (_, _, Direction::None) | (None, _, _) => Verdict::Unjudged,
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
        noise_observed,
        direction,
        verdict,
    }
}
