//! The seed's text reports: a header, one block per test (grade, metrics, facts,
//! recommendations), the monitoring summary and, for the overall report, readiness and forecast.

use std::fmt::Write as _;

use super::{
    ceiling_rows, monitoring_line, not_measured, number, pick, readiness_heading, run_line,
    score_text, title, users_per_minute_row, View,
};
use crate::grade::Lang;
use crate::monitor::MonitorSummary;
use crate::readiness::{unmeasured_note, Readiness};

/// A readiness block: heading with the score, one row per criterion (`only` limits the rows),
/// and the note on what was not measured.
fn readiness_block(out: &mut String, r: &Readiness, extended: bool, lang: Lang) {
    let _ = writeln!(
        out,
        "{}: {}",
        readiness_heading(extended, lang),
        score_text(r, lang)
    );
    let rows = r.criteria.iter().skip(if extended { 6 } else { 0 });
    for c in rows {
        let _ = writeln!(
            out,
            "   {:<28} {:<26} {}",
            c.criterion.label(lang),
            c.grade.map_or(not_measured(lang), |g| g.label(lang)),
            c.evidence
        );
    }
    if let Some(note) = unmeasured_note(r, lang) {
        let _ = writeln!(out, "   ({note})");
    }
}

/// The text report: header, one block per test, then readiness and forecast when `overall`.
pub fn render(view: &View<'_>) -> String {
    let View {
        report,
        env,
        lang,
        suite,
        tests,
        overall,
    } = *view;
    let mut out = String::new();
    let _ = writeln!(out, "genbot — {}", title(suite, lang));
    let _ = writeln!(out, "{}", "=".repeat(72));
    let _ = writeln!(out, "{}\n", run_line(report, env, lang));
    for (n, test) in tests.iter().enumerate() {
        let _ = writeln!(out, "{}. {} — {}", n + 1, test.name, test.verdict(lang));
        if let Some(reason) = &test.not_applicable {
            let _ = writeln!(out, "   · {reason}\n");
            continue;
        }
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
    if let Some(lines) = super::refusal_lines(tests, lang) {
        let _ = writeln!(out, "{}:", super::refusal_heading(lang));
        for line in lines {
            let _ = writeln!(out, "   {line}");
        }
        let _ = writeln!(out);
    }
    if let Some(m) = MonitorSummary::of(&report.monitoring) {
        let heading = pick(
            lang,
            "Monitoring (sampled every second)",
            "Мониторинг (замер каждую секунду)",
        );
        let _ = writeln!(out, "{heading}:");
        let _ = writeln!(out, "   {}\n", monitoring_line(&m, lang));
    }
    if overall {
        readiness_block(&mut out, &report.readiness, false, lang);
        readiness_block(&mut out, &report.readiness_extended, true, lang);
        let f = &report.forecast;
        let heading = pick(lang, "Load forecast", "Прогноз нагрузки");
        let _ = writeln!(out, "\n{heading}:");
        let opt = |v: Option<f64>| v.map_or_else(|| not_measured(lang).to_owned(), number);
        let whole =
            |v: Option<u32>| v.map_or_else(|| not_measured(lang).to_owned(), |v| v.to_string());
        let daily_basis = f.daily_generation_capacity.map_or_else(String::new, |day| {
            if lang == Lang::En {
                format!(" ({day:.0} generations a day at the measured rate ÷ {} planned users, --users)", f.planned_users)
            } else {
                format!(" ({day:.0} генераций в день при измеренной скорости ÷ {} пользователей, --users)", f.planned_users)
            }
        });
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
                pick(
                    lang,
                    "recommended daily limit",
                    "рекомендуемый дневной лимит",
                ),
                whole(f.recommended_daily_limit) + &daily_basis,
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
        for (name, value) in rows
            .into_iter()
            .map(|(n, v)| (n.to_owned(), v))
            .chain(users_per_minute_row(f, lang))
            .chain(ceiling_rows(f, lang))
        {
            let _ = writeln!(out, "   {name:<34} {value}");
        }
    }
    out
}
