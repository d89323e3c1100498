//! The comparison as a terminal table and as a self-contained HTML page.

use std::fmt::Write as _;

use super::{Comparison, Direction, Row, Verdict};
use crate::report::xml_escape as escape;

impl Comparison {
    /// The comparison as a terminal table.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "old: {}", self.old.label);
        let _ = writeln!(out, "new: {}", self.new.label);
        if let (Some(a), Some(b)) = (self.old.readiness, self.new.readiness) {
            let _ = writeln!(out, "readiness: {a:.1} % → {b:.1} %");
        }
        for g in &self.grade_changes {
            let _ = writeln!(
                out,
                "grade of {}: {} → {}{}",
                g.test,
                g.old,
                g.new,
                if g.lower { "  LOWER" } else { "" }
            );
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
        let _ = writeln!(out, "\n{}", self.summary());
        out
    }

    /// One line: what failed, or that nothing did.
    fn summary(&self) -> String {
        let failures = self.failures();
        if failures.is_empty() {
            format!(
                "no metric regressed beyond noise and {:.0} %, none went missing, no grade or readiness fell",
                self.max_regression_percent
            )
        } else {
            format!(
                "REGRESSED beyond {:.0} % (or missing, or graded lower): {}",
                self.max_regression_percent,
                failures.join(", ")
            )
        }
    }

    /// The comparison as a self-contained HTML page.
    pub fn html(&self) -> String {
        let mut rows = String::new();
        for r in &self.rows {
            let class = match r.verdict {
                Verdict::Regressed | Verdict::Missing => "regressed",
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
            .map(|g| {
                format!(
                    "<li>{}: {} → {}{}</li>",
                    escape(&g.test),
                    escape(&g.old),
                    escape(&g.new),
                    if g.lower { " (lower)" } else { "" }
                )
            })
            .collect();
        let summary = escape(&self.summary());
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

fn number(value: Option<f64>) -> String {
    match value {
        None => "–".into(),
        Some(v) if v.abs() >= 100.0 || v.fract() == 0.0 => format!("{v:.0}"),
        Some(v) => format!("{v:.3}"),
    }
}

pub(super) fn change(row: &Row) -> String {
    match (row.change_percent, row.old, row.new) {
        (Some(c), _, _) => format!("{c:+.1} %"),
        (None, Some(a), Some(b)) if a == b => "0 %".into(),
        (None, Some(_), Some(_)) => "from 0".into(),
        _ => "–".into(),
    }
}

fn verdict_text(row: &Row) -> String {
    let band = if row.noise_observed {
        format!("±{:.0} % seen across runs", row.noise_percent)
    } else {
        format!("±{:.0} %", row.noise_percent)
    };
    match row.verdict {
        Verdict::Same => format!("within noise ({band})"),
        Verdict::Better => "better".into(),
        Verdict::Worse => format!("worse beyond noise ({band}), within the allowed regression"),
        Verdict::Regressed => format!("REGRESSED (noise {band})"),
        Verdict::Missing => "MISSING in the new report".into(),
        Verdict::Unjudged if row.old.is_none() => "new in this run".into(),
        Verdict::Unjudged if row.direction == Direction::None => "informational".into(),
        Verdict::Unjudged => String::new(),
    }
}
