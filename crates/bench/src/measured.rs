//! A test that measured nothing never grades. Each test has the counts that show it measured
//! something (prompts sent, kills landed, sessions completed, photos delivered); a test graded
//! as a pass (EXCELLENT or GOOD) with any of them zero or absent is turned into "did not
//! measure", named, and weighed as missing by readiness. A failing grade stays: zero sessions
//! completed against a bot that answers nothing is a measured failure.

use crate::grade::{Grade, Lang};
use crate::outcome::{TestId, TestOutcome};

/// The counts that must be above zero for `test` to have measured anything.
pub fn key_counts(test: TestId) -> &'static [&'static str] {
    match test {
        TestId::DbRead | TestId::Cache => &["reads"],
        TestId::DbWrite => &["rps"],
        TestId::ConcurrentUsers => &["users", "success_rate"],
        TestId::Memory => &["users"],
        TestId::SystemLimits => &["steps", "max_rps"],
        TestId::Semaphores => &["completed"],
        TestId::RateLimiting => &["creations"],
        // A catalogue check (black-box: the models asked for), not a count.
        TestId::ModelConfig => &[],
        TestId::CacheSettings => &["capacity_tested"],
        TestId::OperationSimulation => &["completed"],
        // Order and fairness are measured even when the restart part is not (black-box
        // without a restart command); the queue's own checks name what was not measured.
        TestId::Queue => &[],
        // Memory under load with no image delivered held no generation's state.
        TestId::MemoryUnderLoad => &["photos"],
        TestId::CrashRestart => &["kills", "prompts"],
        TestId::RedisOutage => &["prompts", "cache_errors"],
        TestId::DatabaseOutage | TestId::ReplicateFaults | TestId::TelegramFaults => &["prompts"],
        TestId::ReplicaFailover => &["prompts", "running_on_killed_replica"],
        TestId::BadInput => &["inputs_sent", "normal_steps"],
    }
}

/// Turns a passing outcome whose key counts are zero into "did not measure".
pub fn require_measured(outcome: &mut TestOutcome, lang: Lang) {
    if !outcome.applies() || !matches!(outcome.grade, Grade::Excellent | Grade::Good) {
        return;
    }
    let zero: Vec<&str> = key_counts(outcome.id)
        .iter()
        .copied()
        .filter(|name| !outcome.get(name).is_some_and(|v| v > 0.0))
        .collect();
    if zero.is_empty() {
        return;
    }
    let names = zero.join(", ");
    let was = outcome.grade.word(lang);
    outcome.did_not_measure(match lang {
        Lang::En => format!(
            "did not measure: {names} zero or absent, so the {was} it would have had rests on nothing"
        ),
        Lang::Ru => format!(
            "не измерено: {names} — ноль или нет значения, оценка {was} ни на чём не основана"
        ),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pass_that_counted_nothing_does_not_grade() {
        let mut out = TestOutcome::new(TestId::CrashRestart, Lang::En);
        out.grade = Grade::Excellent;
        out.metric("kills", 0.0).metric("prompts", 40.0);
        require_measured(&mut out, Lang::En);
        assert!(!out.applies());
        assert_eq!(out.verdict(Lang::En), "DID NOT MEASURE");
        let reason = out.not_applicable.clone().unwrap_or_default();
        assert!(reason.contains("kills"), "{reason}");
    }

    #[test]
    fn a_measured_pass_and_a_measured_failure_stay() {
        let mut out = TestOutcome::new(TestId::ConcurrentUsers, Lang::En);
        out.grade = Grade::Good;
        out.metric("users", 100.0).metric("success_rate", 0.9);
        require_measured(&mut out, Lang::En);
        assert!(out.applies());
        let mut failed = TestOutcome::new(TestId::ConcurrentUsers, Lang::En);
        failed.metric("users", 100.0).metric("success_rate", 0.0);
        require_measured(&mut failed, Lang::En);
        assert!(failed.applies());
        assert_eq!(failed.grade, Grade::NeedsOptimization);
    }

    #[test]
    fn an_empty_outage_window_does_not_grade() {
        // Seen: a Redis outage the bot never noticed (no cache error) graded EXCELLENT.
        let mut out = TestOutcome::new(TestId::RedisOutage, Lang::En);
        out.grade = Grade::Excellent;
        out.metric("prompts", 40.0).metric("cache_errors", 0.0);
        require_measured(&mut out, Lang::En);
        assert!(!out.applies());
    }
}
