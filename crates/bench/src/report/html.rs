//! The HTML report: one self-contained page (inline CSS and SVG, no script, no network) with the
//! readiness score, a summary table, the measured curves (latency over time, throughput against
//! users) and the monitoring series (memory, CPU, database pool over time), then every test's
//! figures, facts and recommendations.

use std::fmt::Write as _;

use super::svg::line_chart;
use super::{
    ceiling_rows, monitoring_line, not_measured, number, pick, readiness_heading, run_line,
    score_text, title, users_per_minute_row, xml_escape, View,
};
use crate::grade::{Grade, Lang};
use crate::monitor::{MonitorSummary, Sample};
use crate::outcome::{Line, Scale, Series, TestOutcome};
use crate::readiness::{unmeasured_note, Readiness};
use crate::suite::Forecast;

const STYLE: &str = "body{font:14px/1.45 system-ui,sans-serif;max-width:1000px;margin:24px auto;padding:0 16px;color:#1a1a1a}\
h1{font-size:22px}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ddd}h3{font-size:15px}\
table{border-collapse:collapse;margin:8px 0}td,th{padding:3px 10px;border-bottom:1px solid #eee;text-align:left;vertical-align:top}\
td.num{text-align:right;font-variant-numeric:tabular-nums}.env{color:#555}\
.grade{padding:1px 8px;border-radius:10px;font-weight:600;white-space:nowrap}\
.excellent{background:#d8f3dc;color:#1b4332}.good{background:#fff3bf;color:#7a5b00}\
.needs_optimization{background:#ffd6d6;color:#8b0000}.needs_configuration{background:#e0e0ff;color:#26267a}\
.ready{font-size:28px;font-weight:700}.charts{display:flex;flex-wrap:wrap;gap:12px}\
svg{background:#fafafa;border:1px solid #e4e4e4;max-width:100%;height:auto}\
svg .t{font-size:13px;font-weight:600}svg .a{font-size:11px;fill:#444}svg .n{font-size:13px;fill:#999}\
svg .g{stroke:#e6e6e6}svg .x{stroke:#888}svg .fault{fill:#ffd6d6;opacity:.6}li.rec{color:#8b0000}\
.not_applicable{background:#eee;color:#555}";

fn grade_class(grade: Grade) -> &'static str {
    match grade {
        Grade::Excellent => "excellent",
        Grade::Good => "good",
        Grade::NeedsOptimization => "needs_optimization",
        Grade::NeedsConfiguration => "needs_configuration",
    }
}

fn badge(grade: Grade, lang: Lang) -> String {
    format!(
        r#"<span class="grade {}">{}</span>"#,
        grade_class(grade),
        // The colour carries what the label's emoji does in text; not every font has them.
        xml_escape(grade.word(lang))
    )
}

/// The monitoring time series as charts: memory, CPU, database pool.
fn monitoring_series(samples: &[Sample], lang: Lang) -> Vec<Series> {
    let over_time = |id: &str, title: &str, y_label: &str, lines: Vec<Line>| Series {
        id: id.to_owned(),
        title: title.to_owned(),
        x_label: pick(lang, "seconds since start", "секунды от начала").to_owned(),
        y_label: y_label.to_owned(),
        x_scale: Scale::Linear,
        lines,
        shaded: Vec::new(),
    };
    let line = |name: &str, f: &dyn Fn(&Sample) -> f64| Line {
        name: name.to_owned(),
        points: samples.iter().map(|s| (s.t_s, f(s))).collect(),
    };
    vec![
        over_time(
            "memory_over_time",
            pick(lang, "Memory over time (RSS)", "Память во времени (RSS)"),
            "MB",
            vec![line("RSS", &|s| s.rss_mb)],
        ),
        over_time(
            "cpu_over_time",
            pick(
                lang,
                "CPU over time (100 % = one core)",
                "CPU во времени (100 % = одно ядро)",
            ),
            "%",
            vec![line("CPU", &|s| s.cpu_percent)],
        ),
        over_time(
            "db_pool_over_time",
            pick(lang, "Database pool over time", "Пул БД во времени"),
            pick(lang, "connections", "соединения"),
            vec![
                line(pick(lang, "in use", "занято"), &|s| {
                    f64::from(s.pool_in_use)
                }),
                line(pick(lang, "waiting", "ждут"), &|s| {
                    s.pool_waiting.map_or(f64::NAN, f64::from)
                }),
                line(pick(lang, "size", "размер"), &|s| {
                    f64::from(s.pool_size)
                }),
            ],
        ),
    ]
}

/// The page: header, readiness, summary, charts, monitoring, every test, forecast.
pub fn render(view: &View<'_>) -> String {
    let mut out = String::new();
    head(&mut out, view);
    if view.overall {
        readiness_section(&mut out, &view.report.readiness, false, view.lang);
        readiness_section(&mut out, &view.report.readiness_extended, true, view.lang);
    }
    summary_section(&mut out, view);
    charts_section(&mut out, view);
    monitoring_paragraph(&mut out, view);
    tests_section(&mut out, view);
    if view.overall {
        forecast_section(&mut out, &view.report.forecast, view.lang);
    }
    out.push_str("</body></html>\n");
    out
}

fn head(out: &mut String, view: &View<'_>) {
    let lang = view.lang;
    let heading = format!("genbot — {}", title(view.suite, lang));
    let _ = write!(
        out,
        r#"<!doctype html><html lang="{}"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>{}</title><style>{STYLE}</style></head><body><h1>{}</h1><p class="env">{}</p>"#,
        pick(lang, "en", "ru"),
        xml_escape(&heading),
        xml_escape(&heading),
        xml_escape(&run_line(view.report, view.env, lang))
    );
}

/// A score with its criteria (the extended one shows only the criterion it adds).
fn readiness_section(out: &mut String, r: &Readiness, extended: bool, lang: Lang) {
    let _ = write!(
        out,
        r#"<h2 id="{}">{}</h2><p><span class="ready">{}</span></p><table><tr><th>{}</th><th>{}</th><th>{}</th></tr>"#,
        if extended {
            "readiness_extended"
        } else {
            "readiness"
        },
        xml_escape(readiness_heading(extended, lang)),
        xml_escape(&score_text(r, lang)),
        pick(lang, "Criterion", "Критерий"),
        pick(lang, "Grade", "Оценка"),
        pick(lang, "Evidence", "Основание")
    );
    for c in r.criteria.iter().skip(if extended { 6 } else { 0 }) {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            xml_escape(c.criterion.label(lang)),
            c.grade.map_or_else(
                || xml_escape(not_measured(lang)),
                |grade| badge(grade, lang)
            ),
            xml_escape(&c.evidence)
        );
    }
    out.push_str("</table>");
    if let Some(note) = unmeasured_note(r, lang) {
        let _ = write!(out, "<p>{}</p>", xml_escape(&note));
    }
}

/// A test's verdict as a badge (grade, or not applicable).
fn verdict_badge(test: &TestOutcome, lang: Lang) -> String {
    if test.applies() {
        badge(test.grade, lang)
    } else {
        format!(
            r#"<span class="grade not_applicable">{}</span>"#,
            xml_escape(test.verdict(lang))
        )
    }
}

fn summary_section(out: &mut String, view: &View<'_>) {
    let lang = view.lang;
    let _ = write!(
        out,
        "<h2 id=\"summary\">{}</h2><table><tr><th>#</th><th>{}</th><th>{}</th></tr>",
        pick(lang, "Summary", "Сводка"),
        pick(lang, "Test", "Тест"),
        pick(lang, "Grade", "Оценка")
    );
    for (n, test) in view.tests.iter().enumerate() {
        let _ = write!(
            out,
            r##"<tr><td class="num">{}</td><td><a href="#{}">{}</a></td><td>{}</td></tr>"##,
            n + 1,
            test.id.as_str(),
            xml_escape(&test.name),
            verdict_badge(test, lang)
        );
    }
    out.push_str("</table>");
}

fn charts_section(out: &mut String, view: &View<'_>) {
    let _ = write!(
        out,
        r#"<h2 id="charts">{}</h2><div class="charts">"#,
        pick(view.lang, "Charts", "Графики")
    );
    for test in view.tests {
        for series in &test.series {
            let mut series = series.clone();
            // Fault tests draw the same two charts: the test's name tells them apart.
            if !series.shaded.is_empty() {
                series.title = format!("{}: {}", test.name, series.title);
            }
            out.push_str(&line_chart(&series));
        }
    }
    for series in monitoring_series(&view.report.monitoring, view.lang) {
        out.push_str(&line_chart(&series));
    }
    out.push_str("</div>");
}

fn monitoring_paragraph(out: &mut String, view: &View<'_>) {
    if let Some(m) = MonitorSummary::of(&view.report.monitoring) {
        let _ = write!(
            out,
            "<p>{}: {}</p>",
            pick(view.lang, "Monitoring", "Мониторинг"),
            xml_escape(&monitoring_line(&m, view.lang))
        );
    }
}

/// Every test: its figures, facts and recommendations.
fn tests_section(out: &mut String, view: &View<'_>) {
    let lang = view.lang;
    let _ = write!(
        out,
        r#"<h2 id="tests">{}</h2>"#,
        pick(lang, "Tests", "Тесты")
    );
    for test in view.tests {
        let _ = write!(
            out,
            r#"<h3 id="{}">{} {}</h3><table>"#,
            test.id.as_str(),
            xml_escape(&test.name),
            verdict_badge(test, lang)
        );
        for (name, value) in &test.metrics {
            let _ = write!(
                out,
                r#"<tr><td>{}</td><td class="num">{}</td></tr>"#,
                xml_escape(name),
                number(*value)
            );
        }
        out.push_str("</table><ul>");
        if let Some(reason) = &test.not_applicable {
            let _ = write!(out, "<li>{}</li>", xml_escape(reason));
        }
        for fact in &test.facts {
            let _ = write!(out, "<li>{}</li>", xml_escape(fact));
        }
        for rec in &test.recommendations {
            let _ = write!(out, r#"<li class="rec">→ {}</li>"#, xml_escape(rec));
        }
        out.push_str("</ul>");
    }
    if let Some(lines) = super::refusal_lines(view.tests, lang) {
        let _ = write!(
            out,
            r#"<h2 id="refused">{}</h2><pre>"#,
            super::refusal_heading(lang)
        );
        for line in lines {
            let _ = writeln!(out, "{}", xml_escape(&line));
        }
        out.push_str("</pre>");
    }
}

fn forecast_section(out: &mut String, f: &Forecast, lang: Lang) {
    let opt = |v: Option<f64>| v.map_or_else(|| "—".to_owned(), number);
    let whole = |v: Option<u32>| v.map_or_else(|| "—".to_owned(), |v| v.to_string());
    let _ = write!(
        out,
        r#"<h2 id="forecast">{}</h2><table>"#,
        pick(lang, "Load forecast", "Прогноз нагрузки")
    );
    let rows = [
        (
            pick(
                lang,
                "max concurrent users",
                "макс. одновременных пользователей",
            ),
            opt(f.max_concurrent_users),
        ),
        (
            pick(lang, "max requests per second", "макс. запросов в секунду"),
            opt(f.max_rps),
        ),
        (
            pick(lang, "generations per second", "генераций в секунду"),
            opt(f.generations_per_s),
        ),
        (
            pick(lang, "generations a day", "генераций в день"),
            opt(f.daily_generation_capacity),
        ),
        (
            pick(
                lang,
                "recommended daily limit",
                "рекомендуемый дневной лимит",
            ),
            whole(f.recommended_daily_limit),
        ),
        (
            pick(lang, "recommended per user", "рекомендуемо на пользователя"),
            whole(f.recommended_per_user),
        ),
        (
            pick(
                lang,
                "Telegram messages per generation",
                "сообщений Telegram на генерацию",
            ),
            opt(f.sends_per_job),
        ),
        (
            pick(lang, "bottlenecks", "узкие места"),
            if f.bottlenecks.is_empty() {
                pick(lang, "none found", "не найдены").to_owned()
            } else {
                f.bottlenecks.join("; ")
            },
        ),
    ];
    let rows = rows
        .into_iter()
        .map(|(n, v)| (n.to_owned(), v))
        .chain(users_per_minute_row(f, lang))
        .chain(ceiling_rows(f, lang));
    for (name, value) in rows {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td></tr>",
            xml_escape(&name),
            xml_escape(&value)
        );
    }
    out.push_str("</table>");
}
