//! The seed's text reports: a header, one block per test (grade, metrics, facts,
//! recommendations), the monitoring summary and, for the overall report, readiness and forecast.

use std::fmt::Write as _;

use super::{band_text, number, run_line, title, View};
use crate::grade::Lang;
use crate::monitor::MonitorSummary;

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
    let _ = writeln!(out, "{}\n", run_line(report, env));
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
    if let Some(m) = MonitorSummary::of(&report.monitoring) {
        let heading = match lang {
            Lang::En => "Monitoring (sampled every second)",
            Lang::Ru => "Мониторинг (замер каждую секунду)",
        };
        let _ = writeln!(out, "{heading}:");
        let _ = writeln!(
            out,
            "   CPU median {:.0} %, max {:.0} % · RSS {:.1} → max {:.1} → {:.1} MB · DB pool {} of {} in use at most{} · warnings/errors logged {}",
            m.cpu_median_percent,
            m.cpu_max_percent,
            m.rss_first_mb,
            m.rss_max_mb,
            m.rss_last_mb,
            m.pool_in_use_max,
            m.pool_size,
            m.pool_waiting_max
                .map_or_else(String::new, |w| format!(", {w} waiting at most")),
            m.log_problems
        );
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
            "   recommended daily limit   {}{}",
            f.recommended_daily_limit
                .map_or("n/a".into(), |v| v.to_string()),
            f.daily_generation_capacity.map_or_else(String::new, |day| match lang {
                Lang::En => format!(
                    " ({day:.0} generations a day at the measured rate ÷ {} planned users, --users)",
                    f.planned_users
                ),
                Lang::Ru => format!(
                    " ({day:.0} генераций в день при измеренной скорости ÷ {} пользователей, --users)",
                    f.planned_users
                ),
            })
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
