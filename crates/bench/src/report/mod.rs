//! Report files: the seed's three text reports ([`text`]), the same data as JSON ([`json`],
//! stable schema), a self-contained HTML page with charts ([`html`]) and JUnit XML ([`junit`]).
//! This module owns file names and which tests go in which file; it measures nothing.

pub mod html;
pub mod json;
pub mod junit;
pub mod openmetrics;
mod svg;
pub mod text;

use std::path::{Path, PathBuf};

use serde::Serialize;

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
    /// The bot measured from outside (`--bot-cmd` / `--attach`): its name, how it was started
    /// and how it stopped; `None` for genbot's own parts in-process.
    pub bot: Option<String>,
}

/// Which files besides the text reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Formats {
    /// The same data as JSON.
    pub json: bool,
    /// `readiness_junit.xml`: one test case per seed test, failed when graded NEEDS
    /// OPTIMIZATION (or NEEDS CONFIGURATION), for CI dashboards.
    pub junit: bool,
    /// A self-contained HTML page per report, with charts.
    pub html: bool,
    /// `readiness_metrics.prom`: scores, grades and figures as OpenMetrics text.
    pub openmetrics: bool,
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
/// and, for `all`, `comprehensive_performance_report_YYYYMMDD_HHMMSS` — each as `.txt` and, as
/// asked, `.json` and `.html` — and, when asked, one `readiness_junit.xml` for the whole run.
///
/// # Errors
/// A file cannot be written.
pub fn write(
    dir: &Path,
    report: &SuiteReport,
    env: &Environment,
    lang: Lang,
    formats: Formats,
) -> Result<Written, ReportError> {
    let mut written = Written::default();
    let mut save = |name: String, body: String| -> Result<(), ReportError> {
        let path = dir.join(name);
        std::fs::write(&path, body).map_err(|source| ReportError {
            path: path.display().to_string(),
            source,
        })?;
        written.files.push(path);
        Ok(())
    };
    for part in parts(report) {
        let tests: Vec<&TestOutcome> = report
            .tests
            .iter()
            .filter(|t| part.suite.tests().contains(&t.id))
            .collect();
        let view = View {
            report,
            env,
            lang,
            suite: part.suite,
            tests: &tests,
            overall: part.overall,
        };
        save(format!("{}.txt", part.stem), text::render(&view))?;
        if formats.json {
            let body = serde_json::to_string_pretty(&json::render(&view)).unwrap_or_default();
            save(format!("{}.json", part.stem), body)?;
        }
        if formats.html {
            save(format!("{}.html", part.stem), html::render(&view))?;
        }
    }
    if formats.junit {
        save(JUNIT_FILE.to_owned(), junit::render(report))?;
    }
    if formats.openmetrics {
        save(OPENMETRICS_FILE.to_owned(), openmetrics::render(report))?;
    }
    Ok(written)
}

/// The JUnit file's name.
pub const JUNIT_FILE: &str = "readiness_junit.xml";

/// The OpenMetrics file's name (`.prom`, as node_exporter's textfile collector wants).
pub const OPENMETRICS_FILE: &str = "readiness_metrics.prom";

/// One report file set: which tests it shows and whether it carries readiness and forecast.
struct Part {
    stem: String,
    suite: Suite,
    overall: bool,
}

fn parts(report: &SuiteReport) -> Vec<Part> {
    let mut parts = Vec::new();
    if matches!(report.suite, Suite::Performance | Suite::All) {
        parts.push(Part {
            stem: "performance_report".into(),
            suite: Suite::Performance,
            overall: report.suite == Suite::Performance,
        });
    }
    if matches!(report.suite, Suite::GenerationSettings | Suite::All) {
        parts.push(Part {
            stem: "generation_settings_report".into(),
            suite: Suite::GenerationSettings,
            overall: report.suite == Suite::GenerationSettings,
        });
    }
    if matches!(report.suite, Suite::Faults | Suite::All) {
        parts.push(Part {
            stem: "fault_tolerance_report".into(),
            suite: Suite::Faults,
            overall: report.suite == Suite::Faults,
        });
    }
    if report.suite == Suite::All {
        parts.push(Part {
            stem: format!(
                "comprehensive_performance_report_{}",
                report.started_at.format("%Y%m%d_%H%M%S")
            ),
            suite: Suite::All,
            overall: true,
        });
    }
    parts
}

/// What one report file shows.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    pub report: &'a SuiteReport,
    pub env: &'a Environment,
    pub lang: Lang,
    /// The suite this file covers (a part of an `all` run, or the run itself).
    pub suite: Suite,
    pub tests: &'a [&'a TestOutcome],
    /// Whether readiness and forecast belong in this file.
    pub overall: bool,
}

/// The line under a report's title: when, how long, on what.
pub(crate) fn run_line(report: &SuiteReport, env: &Environment, lang: Lang) -> String {
    let [quick, db, cache, replicate, cpus] = match lang {
        Lang::En => [" · quick", "db", "cache", "replicate", "CPUs"],
        Lang::Ru => [" · быстрый", "БД", "кэш", "replicate", "CPU"],
    };
    let bot = env.bot.as_ref().map_or_else(String::new, |bot| match lang {
        Lang::En => format!(" · bot under test: {bot}"),
        Lang::Ru => format!(" · тестируемый бот: {bot}"),
    });
    format!(
        "{} · {:.1} s{} · {db}: {} · {cache}: {} · {replicate}: {} · {} {cpus} · genbot {}{bot}",
        report.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
        report.duration_s,
        if report.quick { quick } else { "" },
        env.db,
        env.cache,
        env.replicate,
        env.cpus,
        env.version
    )
}

/// The monitoring summary in one line, in the report's language.
pub(crate) fn monitoring_line(m: &crate::monitor::MonitorSummary, lang: Lang) -> String {
    let waiting = m.pool_waiting_max.map_or_else(String::new, |w| match lang {
        Lang::En => format!(", {w} waiting at most"),
        Lang::Ru => format!(", ожидали не более {w}"),
    });
    match lang {
        Lang::En => format!(
            "CPU median {:.0} %, max {:.0} % · RSS {:.1} → max {:.1} → {:.1} MB · DB pool {} of {} in use at most{waiting} · warnings/errors logged {}",
            m.cpu_median_percent, m.cpu_max_percent, m.rss_first_mb, m.rss_max_mb, m.rss_last_mb,
            m.pool_in_use_max, m.pool_size, m.log_problems
        ),
        Lang::Ru => format!(
            "CPU медиана {:.0} %, максимум {:.0} % · RSS {:.1} → макс. {:.1} → {:.1} МБ · пул БД: занято не более {} из {}{waiting} · предупреждений/ошибок в логе {}",
            m.cpu_median_percent, m.cpu_max_percent, m.rss_first_mb, m.rss_max_mb, m.rss_last_mb,
            m.pool_in_use_max, m.pool_size, m.log_problems
        ),
    }
}

/// `85.7 % — partly ready…`, or "not measured" when the run measured none of its criteria. A
/// run that measured only some says so in the same line: no verdict from tests not run.
pub fn score_text(readiness: &crate::readiness::Readiness, lang: Lang) -> String {
    let all = readiness.criteria.len();
    match (readiness.percent, readiness.band) {
        (Some(percent), Some(_)) if readiness.measured < all => match lang {
            Lang::En => format!(
                "{percent:.1} % over the {} of {all} criteria measured — no verdict on readiness (`genbot bench all` measures all {all})",
                readiness.measured
            ),
            Lang::Ru => format!(
                "{percent:.1} % по {} из {all} измеренных критериев — без вердикта о готовности (`genbot bench all` измеряет все {all})",
                readiness.measured
            ),
        },
        (Some(percent), Some(band)) => format!("{percent:.1} % — {}", band_text(band, lang)),
        _ => not_measured(lang).to_owned(),
    }
}

/// Headings of the two scores.
pub fn readiness_heading(extended: bool, lang: Lang) -> &'static str {
    match (extended, lang) {
        (false, Lang::En) => "Production readiness (the seed's six criteria)",
        (false, Lang::Ru) => "Готовность к продакшену (шесть критериев исходного README)",
        (true, Lang::En) => "Production readiness with fault tolerance (seven criteria)",
        (true, Lang::Ru) => "Готовность к продакшену с отказоустойчивостью (семь критериев)",
    }
}

/// The users a minute Telegram's budget sustains, as a row with its basis (none if not
/// measured).
pub(crate) fn users_per_minute_row(
    forecast: &crate::suite::Forecast,
    lang: Lang,
) -> Option<(String, String)> {
    let f = forecast.users_per_minute.as_ref()?;
    let binds = match (f.binds, forecast.max_rps, forecast.max_concurrent_users, lang) {
        (Some("telegram_sends"), Some(rps), users, Lang::En) => format!(
            "; Telegram's send budget binds, not the bot: the bot answers {} updates/s within the SLO{} but Telegram takes {} messages/s",
            number(rps),
            users.map_or_else(String::new, |u| format!(" ({} concurrent users)", number(u))),
            f.sends_per_s
        ),
        (Some("telegram_sends"), Some(rps), users, Lang::Ru) => format!(
            "; ограничивает бюджет отправок Telegram, а не бот: бот отвечает на {} обновлений/с в пределах SLO{}, а Telegram принимает {} сообщений/с",
            number(rps),
            users.map_or_else(String::new, |u| format!(" ({} одновременных пользователей)", number(u))),
            f.sends_per_s
        ),
        (Some("bot"), Some(rps), _, Lang::En) => format!(
            "; the bot binds before Telegram's budget: it answers {} updates/s within the SLO, Telegram takes {} messages/s",
            number(rps),
            f.sends_per_s
        ),
        (Some("bot"), Some(rps), _, Lang::Ru) => format!(
            "; бот ограничивает раньше бюджета Telegram: он отвечает на {} обновлений/с в пределах SLO, Telegram принимает {} сообщений/с",
            number(rps),
            f.sends_per_s
        ),
        _ => String::new(),
    };
    Some((
        pick(
            lang,
            "users per minute Telegram's budget sustains",
            "пользователей в минуту в бюджете Telegram",
        )
        .to_owned(),
        match lang {
            Lang::En => format!(
                "{} (TELEGRAM_SENDS_PER_SECOND {} × 60 ÷ {} messages the bot sent per user session of the concurrent-users scenario, measured under the budget){binds}",
                number(f.users), f.sends_per_s, number(f.sends_per_user)
            ),
            Lang::Ru => format!(
                "{} (TELEGRAM_SENDS_PER_SECOND {} × 60 ÷ {} сообщений бота на сессию пользователя в сценарии теста одновременных пользователей, измерено под бюджетом){binds}",
                number(f.users), f.sends_per_s, number(f.sends_per_user)
            ),
        },
    ))
}

/// The forecast's ceilings as rows: part, generations/s, basis; the binding one marked.
pub(crate) fn ceiling_rows(forecast: &crate::suite::Forecast, lang: Lang) -> Vec<(String, String)> {
    let binding = forecast.binding().map(|c| c.part);
    forecast
        .ceilings
        .iter()
        .map(|c| {
            let name = match (c.part, lang) {
                ("bot", Lang::En) => "ceiling: the bot",
                ("bot", Lang::Ru) => "предел: бот",
                ("database", Lang::En) => "ceiling: the database",
                ("database", Lang::Ru) => "предел: база данных",
                ("replicate_rate", Lang::En) => "ceiling: Replicate's creation rate",
                ("replicate_rate", Lang::Ru) => "предел: частота созданий Replicate",
                ("generation_slots", Lang::En) => "ceiling: generation slots",
                ("generation_slots", Lang::Ru) => "предел: слоты генерации",
                (_, Lang::En) => "ceiling: Telegram's send budget",
                (_, Lang::Ru) => "предел: бюджет отправок Telegram",
            };
            let binds = if Some(c.part) == binding {
                pick(lang, " ← binds first", " ← ограничивает первым")
            } else {
                ""
            };
            (
                name.to_owned(),
                format!(
                    "{} {}/s ({}){binds}",
                    number(c.generations_per_s),
                    pick(lang, "generations", "генераций"),
                    c.basis
                ),
            )
        })
        .collect()
}

pub fn band_text(band: Band, lang: Lang) -> &'static str {
    match (band, lang) {
        (Band::Ready, Lang::En) => "ready for production",
        (Band::PartlyReady, Lang::En) => "partly ready: some optimisation needed",
        (Band::NotReady, Lang::En) => "not ready: needs serious work",
        (Band::Ready, Lang::Ru) => "готов к продакшену",
        (Band::PartlyReady, Lang::Ru) => "частично готов: нужна оптимизация",
        (Band::NotReady, Lang::Ru) => "не готов: требуется серьёзная доработка",
    }
}

pub(crate) fn title(suite: Suite, lang: Lang) -> &'static str {
    match (suite, lang) {
        (Suite::Performance, Lang::En) => "Performance report",
        (Suite::GenerationSettings, Lang::En) => "Generation settings report",
        (Suite::Faults, Lang::En) => "Fault tolerance report",
        (Suite::Faults, Lang::Ru) => "Отчёт об отказоустойчивости",
        (Suite::All, Lang::En) => "Comprehensive performance report",
        (Suite::Performance, Lang::Ru) => "Отчёт о производительности",
        (Suite::GenerationSettings, Lang::Ru) => "Отчёт о настройках генерации",
        (Suite::All, Lang::Ru) => "Комплексный отчёт о производительности",
    }
}

/// The English or the Russian text, by the report's language.
pub(crate) fn pick(lang: Lang, en: &'static str, ru: &'static str) -> &'static str {
    match lang {
        Lang::En => en,
        Lang::Ru => ru,
    }
}

/// What a report shows for a criterion or figure the run did not measure.
pub(crate) fn not_measured(lang: Lang) -> &'static str {
    match lang {
        Lang::En => "not measured",
        Lang::Ru => "не измерено",
    }
}

pub(crate) fn number(value: f64) -> String {
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

/// The ids the JSON report carries for a suite, for checks of completeness.
pub fn test_ids(suite: Suite) -> Vec<&'static str> {
    suite.tests().into_iter().map(TestId::as_str).collect()
}

/// The "requests Telegram would have refused" section, as lines: per test that talked to the
/// Bot API mock, each (method, description) with its count and first examples, then flood
/// control's 429s apart (Telegram's answer to sending too fast, not a refusal of content).
/// `None` when no test reported on the mock.
pub(crate) fn refusal_lines(tests: &[&TestOutcome], lang: Lang) -> Option<Vec<String>> {
    let checked: Vec<&&TestOutcome> = tests
        .iter()
        .filter(|t| {
            t.metrics
                .contains_key(&format!("{}.refused_by_telegram", t.id.as_str()))
        })
        .collect();
    if checked.is_empty() {
        return None;
    }
    let mut lines = Vec::new();
    for test in checked {
        let refused = test.refused_by_telegram();
        lines.push(match lang {
            Lang::En => format!(
                "{}: {refused} refused, {} answered 429 by flood control",
                test.name, test.telegram_throttled
            ),
            Lang::Ru => format!(
                "{}: {refused} отклонено, {} получили 429 от ограничения частоты",
                test.name, test.telegram_throttled
            ),
        });
        for r in &test.telegram_refused {
            lines.push(format!("  {} × {} — {}", r.count, r.method, r.description));
            for example in &r.examples {
                lines.push(format!("      {} {example}", pick(lang, "e.g.", "напр.")));
            }
        }
    }
    Some(lines)
}

pub(crate) fn refusal_heading(lang: Lang) -> &'static str {
    pick(
        lang,
        "Requests Telegram would have refused",
        "Запросы, которые Telegram отклонил бы",
    )
}

pub(crate) fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone as _, Utc};

    use super::*;
    use crate::grade::Grade;
    use crate::monitor::Sample;
    use crate::outcome::{Line, Scale, Series};
    use crate::readiness::{Criterion, Readiness};
    use crate::suite::Forecast;

    fn outcome(id: TestId, grade: Grade) -> TestOutcome {
        let mut t = TestOutcome::new(id, Lang::En);
        t.grade = grade;
        t.metric("rps", 1234.5);
        t.fact("fact <with> & markup");
        t.recommend("raise the pool");
        t
    }

    fn report() -> SuiteReport {
        let mut users = outcome(TestId::ConcurrentUsers, Grade::Good);
        users.series(Series {
            id: "latency_over_time".into(),
            title: "Concurrent users: latency over time".into(),
            x_label: "s".into(),
            y_label: "ms".into(),
            x_scale: Scale::Linear,
            lines: vec![Line {
                name: "p99".into(),
                points: vec![(1.0, 2.0), (2.0, 3.0)],
            }],
            shaded: Vec::new(),
        });
        SuiteReport {
            suite: Suite::All,
            started_at: Utc.with_ymd_and_hms(2026, 11, 24, 12, 30, 5).unwrap(),
            duration_s: 12.0,
            quick: true,
            tests: vec![
                outcome(TestId::DbRead, Grade::Excellent),
                users,
                outcome(TestId::Queue, Grade::NeedsOptimization),
            ],
            readiness: Readiness::score(
                &Criterion::SEED,
                &[crate::readiness::Graded::full(
                    Criterion::DbRead,
                    Grade::Excellent,
                    "evidence",
                )],
            ),
            readiness_extended: Readiness::score(
                &Criterion::EXTENDED,
                &[crate::readiness::Graded::full(
                    Criterion::DbRead,
                    Grade::Excellent,
                    "evidence",
                )],
            ),
            forecast: Forecast::default(),
            monitoring: vec![Sample {
                t_s: 1.0,
                cpu_percent: 50.0,
                rss_mb: 20.0,
                pool_size: 8,
                pool_in_use: 1,
                pool_waiting: Some(0),
                log_problems: 0,
            }],
        }
    }

    fn env() -> Environment {
        Environment {
            db: "sqlite (temporary)".into(),
            cache: "in-process".into(),
            cpus: 2,
            replicate: "mock".into(),
            version: "0".into(),
            bot: None,
        }
    }

    #[test]
    fn every_format_lands_under_its_seed_name() {
        let dir = tempfile::tempdir().unwrap();
        let all = Formats {
            json: true,
            junit: true,
            html: true,
            openmetrics: true,
        };
        let written = write(dir.path(), &report(), &env(), Lang::En, all).unwrap();
        let mut names: Vec<String> = written
            .files
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let stem = "comprehensive_performance_report_20261124_123005";
        let mut expected = vec![JUNIT_FILE.to_owned(), OPENMETRICS_FILE.to_owned()];
        for s in [
            "performance_report",
            "generation_settings_report",
            "fault_tolerance_report",
            stem,
        ] {
            for ext in ["txt", "json", "html"] {
                expected.push(format!("{s}.{ext}"));
            }
        }
        expected.sort();
        assert_eq!(names, expected);
        let only_text = write(dir.path(), &report(), &env(), Lang::En, Formats::default()).unwrap();
        assert_eq!(only_text.files.len(), 4);
    }

    #[test]
    fn a_test_not_applicable_has_no_grade_in_the_json() {
        // Seen: not-applicable tests carried "grade": "EXCELLENT".
        let dir = tempfile::tempdir().unwrap();
        let mut run = report();
        run.tests.push(TestOutcome::not_applicable(
            TestId::RedisOutage,
            Lang::En,
            "no Redis",
        ));
        let formats = Formats {
            json: true,
            junit: false,
            html: false,
            openmetrics: false,
        };
        write(dir.path(), &run, &env(), Lang::En, formats).unwrap();
        let text = std::fs::read_to_string(dir.path().join("fault_tolerance_report.json")).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        let redis = json["tests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == "redis_outage")
            .unwrap();
        assert!(redis["grade"].is_null(), "{redis}");
    }

    #[test]
    fn openmetrics_has_the_scores_grades_and_figures_and_passes_promtool() {
        let text = openmetrics::render(&report());
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(
            text.contains("genbot_bench_readiness_ratio{score=\"seed\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("genbot_bench_test_grade{test=\"db_read\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("genbot_bench_test_grade{test=\"queue\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "genbot_bench_readiness_criterion_points{score=\"seed\",criterion=\"db_read\"}"
            ),
            "{text}"
        );
        let figures = report()
            .tests
            .iter()
            .map(|t| t.metrics.len())
            .sum::<usize>();
        assert!(figures > 0);
        assert_eq!(
            text.matches("genbot_bench_metric{").count(),
            figures,
            "{text}"
        );
        // `promtool check metrics` (Debian's prometheus package): SKIPPED without it outside CI.
        let Ok(mut child) = std::process::Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
        else {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set but promtool is missing"
            );
            eprintln!("SKIPPED promtool check metrics: promtool not found");
            return;
        };
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && said.trim().is_empty(),
            "promtool: {said}\n{text}"
        );
    }

    /// The run's files, both formats: (comprehensive JSON, OpenMetrics).
    fn json_and_prom(run: &SuiteReport) -> (String, String) {
        let dir = tempfile::tempdir().unwrap();
        let formats = Formats {
            json: true,
            junit: false,
            html: false,
            openmetrics: true,
        };
        let written = write(dir.path(), run, &env(), Lang::En, formats).unwrap();
        let json = written
            .files
            .iter()
            .find(|f| {
                let name = f.file_name().unwrap().to_string_lossy();
                name.starts_with("comprehensive_") && name.ends_with(".json")
            })
            .unwrap();
        (
            std::fs::read_to_string(json).unwrap(),
            std::fs::read_to_string(dir.path().join(OPENMETRICS_FILE)).unwrap(),
        )
    }

    #[test]
    fn bench_compare_reads_openmetrics_files_as_it_reads_json_reports() {
        use crate::compare::{Comparison, Run};
        let old = report();
        let (old_json, old_prom) = json_and_prom(&old);
        let (from_json, from_prom) = (
            Run::parse(&old_json, "old.json").unwrap(),
            Run::parse(&old_prom, "old.prom").unwrap(),
        );
        assert_eq!(from_prom.suite, "all");
        assert_eq!(from_prom.suite, from_json.suite);
        assert_eq!(from_prom.tests, from_json.tests);
        assert_eq!(from_prom.readiness, from_json.readiness);
        assert!(from_prom.readiness.is_some());
        assert_eq!(from_prom.readiness_extended, from_json.readiness_extended);

        // A worse run: a grade lower, a figure 40 % down, a figure gone, readiness lower.
        let mut new = report();
        new.tests[0].grade = Grade::Good;
        new.tests[1]
            .metrics
            .insert("concurrent_users.rps".into(), 740.7);
        new.tests[2].metrics.clear();
        new.readiness = Readiness::score(
            &Criterion::SEED,
            &[crate::readiness::Graded::full(
                Criterion::DbRead,
                Grade::Good,
                "evidence",
            )],
        );
        let (new_json, new_prom) = json_and_prom(&new);
        let judged = |old: &str, new: &str| {
            Comparison::new(
                Run::parse(old, "old").unwrap(),
                Run::parse(new, "new").unwrap(),
                10.0,
            )
            .unwrap()
            .failures()
        };
        let by_json = judged(&old_json, &new_json);
        assert_eq!(by_json.len(), 4, "{by_json:?}");
        assert_eq!(judged(&old_prom, &new_prom), by_json);
        // Either format against the other, too.
        assert_eq!(judged(&old_json, &new_prom), by_json);
        assert!(judged(&old_prom, &old_prom).is_empty());

        // Not a report: OpenMetrics of something else, a broken sample.
        assert!(Run::parse("# TYPE up gauge\nup 1\n# EOF\n", "other.prom").is_err());
        let broken = old_prom.replace(
            "genbot_bench_test_grade{test=\"queue\"} 0",
            "genbot_bench_test_grade{test=\"queue\" 0",
        );
        assert!(Run::parse(&broken, "broken.prom").is_err());
    }

    #[test]
    fn junit_fails_exactly_the_tests_that_need_work() {
        let xml = junit::render(&report());
        assert_eq!(xml.matches("<testcase ").count(), 3);
        assert_eq!(xml.matches("<failure ").count(), 1);
        assert!(xml.contains(r#"name="queue">"#));
        assert!(xml.contains(r#"<failure message="NEEDS_OPTIMIZATION">raise the pool</failure>"#));
    }

    #[test]
    fn html_is_self_contained_escaped_and_charted() {
        let report = report();
        let tests: Vec<&TestOutcome> = report.tests.iter().collect();
        let env = env();
        let page = html::render(&View {
            report: &report,
            env: &env,
            lang: Lang::Ru,
            suite: Suite::All,
            tests: &tests,
            overall: true,
        });
        assert!(page.starts_with("<!doctype html><html lang=\"ru\">"));
        assert!(page.contains("fact &lt;with&gt; &amp; markup"));
        assert!(!page.contains("<with>"));
        assert!(page.contains("Concurrent users: latency over time"));
        assert!(page.contains("Память во времени (RSS)"));
        assert!(page.contains("ТРЕБУЕТ ОПТИМИЗАЦИИ"));
        assert!(!page.contains("<script"));
    }
}
