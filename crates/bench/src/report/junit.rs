//! JUnit XML for CI dashboards: one `testcase` per test, failed when the grade is NEEDS
//! OPTIMIZATION or NEEDS CONFIGURATION, skipped when the test does not apply.

use std::fmt::Write as _;

use super::{number, xml_escape};
use crate::suite::SuiteReport;

/// JUnit XML: one `testcase` per seed test; a failure carries the grade and recommendations.
pub fn render(report: &SuiteReport) -> String {
    let failures = report
        .tests
        .iter()
        .filter(|t| t.applies() && t.grade.is_failure())
        .count();
    let skipped = report.tests.iter().filter(|t| !t.applies()).count();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"genbot readiness\" tests=\"{}\" failures=\"{failures}\" time=\"{:.3}\">",
        report.tests.len(),
        report.duration_s
    );
    let _ = writeln!(out, "  <testsuite name=\"genbot.{}\" tests=\"{}\" failures=\"{failures}\" skipped=\"{skipped}\" time=\"{:.3}\" timestamp=\"{}\">",
        serde_json::to_value(report.suite).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default(),
        report.tests.len(), report.duration_s, report.started_at.format("%Y-%m-%dT%H:%M:%S"));
    for test in &report.tests {
        let _ = writeln!(
            out,
            "    <testcase classname=\"genbot.readiness\" name=\"{}\">",
            test.id.as_str()
        );
        if let Some(reason) = &test.not_applicable {
            let _ = writeln!(out, "      <skipped message=\"{}\"/>", xml_escape(reason));
        } else if test.grade.is_failure() {
            let grade = serde_json::to_value(test.grade)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "      <failure message=\"{grade}\">{}</failure>",
                xml_escape(&test.recommendations.join("\n"))
            );
        }
        let metrics: Vec<String> = test
            .metrics
            .iter()
            .map(|(k, v)| format!("{k} = {}", number(*v)))
            .collect();
        let _ = writeln!(
            out,
            "      <system-out>{}</system-out>",
            xml_escape(&metrics.join("\n"))
        );
        let _ = writeln!(out, "    </testcase>");
    }
    let _ = writeln!(out, "  </testsuite>\n</testsuites>");
    out
}
