//! Report files: the seed's three text reports and the same data as JSON (stable schema:
//! `suite`, `started_at`, `duration_s`, `environment`, `tests[{id, name, grade, metrics,
//! facts, recommendations}]`, `readiness{percent, band, criteria}`, `forecast`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::json;

use crate::grade::Lang;
use crate::outcome::{TestId, TestOutcome};
use crate::readiness::Band;
use crate::suite::{Suite, SuiteReport};

/// Where the run happened, for the report header.
#[derive(Debug, Clone, Serialize)]
pub struct Environment {
    pub db: String,
    pub cache: String,
    pub cpus: usize,
    pub replicate: String,
    pub version: String,
}

/// The files written for one run.
#[derive(Debug, Clone, Default)]
pub struct Written {
    pub files: Vec<PathBuf>,
}

/// Why a report could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {path}: {source}")]
pub struct ReportError {
    pub path: String,
    pub source: std::io::Error,
}

/// Checks that `dir` can take the reports (creates it; writes and removes a probe file), so an
/// unwritable place fails before the tests run.
///
/// # Errors
/// The directory cannot be created or written.
pub fn prepare(dir: &Path) -> Result<(), ReportError> {
    let fail = |path: &Path, source| ReportError {
        path: path.display().to_string(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(|e| fail(dir, e))?;
    let probe = dir.join(".genbot-write-probe");
    std::fs::write(&probe, b"").map_err(|e| fail(&probe, e))?;
    std::fs::remove_file(&probe).map_err(|e| fail(&probe, e))?;
    Ok(())
}

/// Writes the reports a suite's run calls for: `performance_report`, `generation_settings_report`
/// and, for `all`, `comprehensive_performance_report_YYYYMMDD_HHMMSS` — each as `.txt` and, when
/// asked, `.json`.
///
/// # Errors
/// A file cannot be written.
pub fn write(
    dir: &Path,
    report: &SuiteReport,
    env: &Environment,
    lang: Lang,
    json: bool,
) -> Result<Written, ReportError> {
    let mut written = Written::default();
    let mut emit = |stem: String,
                    suite: Suite,
                    tests: Vec<&TestOutcome>,
                    overall: bool|
     -> Result<(), ReportError> {
        let text = render_text(report, env, lang, suite, &tests, overall);
        let path = dir.join(format!("{stem}.txt"));
        std::fs::write(&path, text).map_err(|source| ReportError {
            path: path.display().to_string(),
            source,
        })?;
        written.files.push(path);
        if json {
            let value = render_json(report, env, suite, &tests, overall);
            let path = dir.join(format!("{stem}.json"));
            let body = serde_json::to_string_pretty(&value).unwrap_or_default();
            std::fs::write(&path, body).map_err(|source| ReportError {
                path: path.display().to_string(),
                source,
            })?;
            written.files.push(path);
        }
        Ok(())
    };
    let of = |suite: Suite| -> Vec<&TestOutcome> {
        let ids = suite.tests();
        report
            .tests
            .iter()
            .filter(|t| ids.contains(&t.id))
            .collect()
    };
    if matches!(report.suite, Suite::Performance | Suite::All) {
        emit(
            "performance_report".into(),
            Suite::Performance,
            of(Suite::Performance),
            report.suite == Suite::Performance,
        )?;
    }
    if matches!(report.suite, Suite::GenerationSettings | Suite::All) {
        emit(
            "generation_settings_report".into(),
            Suite::GenerationSettings,
            of(Suite::GenerationSettings),
            report.suite == Suite::GenerationSettings,
        )?;
    }
    if report.suite == Suite::All {
        let stamp = report.started_at.format("%Y%m%d_%H%M%S");
        emit(
            format!("comprehensive_performance_report_{stamp}"),
            Suite::All,
            report.tests.iter().collect(),
            true,
        )?;
    }
    Ok(written)
}

fn band_text(band: Band, lang: Lang) -> &'static str {
    match (band, lang) {
        (Band::Ready, Lang::En) => "ready for production",
        (Band::PartlyReady, Lang::En) => "partly ready: some optimisation needed",
        (Band::NotReady, Lang::En) => "not ready: needs serious work",
        (Band::Ready, Lang::Ru) => "готов к продакшену",
        (Band::PartlyReady, Lang::Ru) => "частично готов: нужна оптимизация",
        (Band::NotReady, Lang::Ru) => "не готов: требуется серьёзная доработка",
    }
}

fn title(suite: Suite, lang: Lang) -> &'static str {
    match (suite, lang) {
        (Suite::Performance, Lang::En) => "Performance report",
        (Suite::GenerationSettings, Lang::En) => "Generation settings report",
        (Suite::All, Lang::En) => "Comprehensive performance report",
        (Suite::Performance, Lang::Ru) => "Отчёт о производительности",
        (Suite::GenerationSettings, Lang::Ru) => "Отчёт о настройках генерации",
        (Suite::All, Lang::Ru) => "Комплексный отчёт о производительности",
    }
}

/// The text report: header, one block per test, then readiness and forecast when `overall`.
pub fn render_text(
    report: &SuiteReport,
    env: &Environment,
    lang: Lang,
    suite: Suite,
    tests: &[&TestOutcome],
    overall: bool,
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "genbot — {}", title(suite, lang));
    let _ = writeln!(out, "{}", "=".repeat(72));
    let _ = writeln!(
        out,
        "{} · {:.1} s{} · db: {} · cache: {} · replicate: {} · {} CPUs · genbot {}",
        report.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
        report.duration_s,
        if report.quick { " · quick" } else { "" },
        env.db,
        env.cache,
        env.replicate,
        env.cpus,
        env.version
    );
    let _ = writeln!(out);
    for (n, test) in tests.iter().enumerate() {
        let _ = writeln!(out, "{}. {} — {}", n + 1, test.name, test.grade.label(lang));
        for (name, value) in &test.metrics {
            let _ = writeln!(out, "     {name:<40} {}", number(*value));
        }
        for fact in &test.facts {
            let _ = writeln!(out, "   · {fact}");
        }
        for rec in &test.recommendations {
            let _ = writeln!(out, "   → {rec}");
        }
        let _ = writeln!(out);
    }
    if overall {
        let r = &report.readiness;
        let heading = match lang {
            Lang::En => "Production readiness",
            Lang::Ru => "Готовность к продакшену",
        };
        let _ = writeln!(
            out,
            "{heading}: {:.1} % — {}",
            r.percent,
            band_text(r.band, lang)
        );
        for c in &r.criteria {
            let _ = writeln!(
                out,
                "   {:<22} {:<26} {}",
                format!("{:?}", c.criterion),
                c.grade.label(lang),
                c.evidence
            );
        }
        let f = &report.forecast;
        let heading = match lang {
            Lang::En => "Load forecast",
            Lang::Ru => "Прогноз нагрузки",
        };
        let _ = writeln!(out, "\n{heading}:");
        let opt = |v: Option<f64>| v.map_or("not measured".to_owned(), number);
        let _ = writeln!(
            out,
            "   max concurrent users      {}",
            opt(f.max_concurrent_users)
        );
        let _ = writeln!(out, "   max requests per second   {}", opt(f.max_rps));
        let _ = writeln!(
            out,
            "   generations per second    {}",
            opt(f.generations_per_s)
        );
        let _ = writeln!(
            out,
            "   recommended daily limit   {}",
            f.recommended_daily_limit
                .map_or("n/a".into(), |v| v.to_string())
        );
        let _ = writeln!(
            out,
            "   recommended per user      {}",
            f.recommended_per_user
                .map_or("n/a".into(), |v| v.to_string())
        );
        let _ = writeln!(
            out,
            "   bottlenecks               {}",
            if f.bottlenecks.is_empty() {
                "none found".to_owned()
            } else {
                f.bottlenecks.join("; ")
            }
        );
    }
    out
}

fn number(value: f64) -> String {
    if value.is_nan() {
        "n/a".into()
    } else if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else if value.abs() >= 100.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.3}")
    }
}

/// The JSON report (see the module doc for the schema).
pub fn render_json(
    report: &SuiteReport,
    env: &Environment,
    suite: Suite,
    tests: &[&TestOutcome],
    overall: bool,
) -> serde_json::Value {
    let tests: Vec<serde_json::Value> = tests
        .iter()
        .map(|t| {
            json!({
                "id": t.id.as_str(),
                "name": t.name,
                "grade": t.grade,
                "metrics": t.metrics.iter().map(|(k, v)| (k.clone(), if v.is_finite() { json!(v) } else { serde_json::Value::Null })).collect::<serde_json::Map<_, _>>(),
                "facts": t.facts,
                "recommendations": t.recommendations,
            })
        })
        .collect();
    let mut value = json!({
        "schema": "genbot.readiness/1",
        "suite": suite,
        "started_at": report.started_at,
        "duration_s": report.duration_s,
        "quick": report.quick,
        "environment": env,
        "tests": tests,
    });
    if overall {
        value["readiness"] = json!(report.readiness);
        value["forecast"] = json!(report.forecast);
    }
    value
}

/// The ids the JSON report carries for a suite, for checks of completeness.
pub fn test_ids(suite: Suite) -> Vec<&'static str> {
    suite.tests().into_iter().map(TestId::as_str).collect()
}
