//! The JSON report (schema `genbot.readiness/1`, documented in the README).

use serde_json::json;

use super::View;

/// The JSON report (see the module doc for the schema).
pub fn render(view: &View<'_>) -> serde_json::Value {
    let View {
        report,
        env,
        suite,
        tests,
        overall,
        ..
    } = *view;
    let tests: Vec<serde_json::Value> = tests
        .iter()
        .map(|t| {
            json!({
                "id": t.id.as_str(),
                "name": t.name,
                // A test not graded (not applicable, or it measured nothing) has no grade.
                "grade": if t.applies() { json!(t.grade) } else { serde_json::Value::Null },
                "did_not_measure": t.did_not_measure,
                "metrics": t.metrics.iter().map(|(k, v)| (k.clone(), if v.is_finite() { json!(v) } else { serde_json::Value::Null })).collect::<serde_json::Map<_, _>>(),
                "facts": t.facts,
                "recommendations": t.recommendations,
                "series": t.series,
                "not_applicable": t.not_applicable,
            })
        })
        .collect();
    let mut value = json!({
        "schema": "genbot.readiness/1",
        "suite": suite,
        "started_at": report.started_at,
        "duration_s": report.duration_s,
        "quick": report.quick,
        // Runs merged into this report; `bench compare` narrows its noise bands by √repeats.
        "repeats": 1,
        "environment": env,
        "tests": tests,
    });
    if overall {
        value["readiness"] = json!(report.readiness);
        value["readiness_extended"] = json!(report.readiness_extended);
        value["forecast"] = json!(report.forecast);
    }
    value["monitoring"] = json!(report.monitoring);
    value
}
