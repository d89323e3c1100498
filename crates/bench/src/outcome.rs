//! One test's result: its grade, the measured figures, facts worth stating, recommendations.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::grade::{Grade, Lang};

/// The seed's thirteen tests and the six fault tests, with their report ids and names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TestId {
    DbRead,
    Cache,
    ConcurrentUsers,
    DbWrite,
    Memory,
    SystemLimits,
    Semaphores,
    RateLimiting,
    ModelConfig,
    CacheSettings,
    OperationSimulation,
    Queue,
    MemoryUnderLoad,
    CrashRestart,
    RedisOutage,
    DatabaseOutage,
    ReplicateFaults,
    TelegramFaults,
    ReplicaFailover,
    BadInput,
}

impl TestId {
    /// The id used in JSON and metric names.
    pub fn as_str(self) -> &'static str {
        match self {
            TestId::DbRead => "db_read",
            TestId::Cache => "cache",
            TestId::ConcurrentUsers => "concurrent_users",
            TestId::DbWrite => "db_write",
            TestId::Memory => "memory",
            TestId::SystemLimits => "system_limits",
            TestId::Semaphores => "semaphores",
            TestId::RateLimiting => "rate_limiting",
            TestId::ModelConfig => "model_config",
            TestId::CacheSettings => "cache_settings",
            TestId::OperationSimulation => "operation_simulation",
            TestId::Queue => "queue",
            TestId::MemoryUnderLoad => "memory_under_load",
            TestId::CrashRestart => "crash_restart",
            TestId::RedisOutage => "redis_outage",
            TestId::DatabaseOutage => "database_outage",
            TestId::ReplicateFaults => "replicate_faults",
            TestId::TelegramFaults => "telegram_faults",
            TestId::ReplicaFailover => "replica_failover",
            TestId::BadInput => "bad_input",
        }
    }

    /// The seed's name of the test.
    pub fn name(self, lang: Lang) -> &'static str {
        match (self, lang) {
            (TestId::DbRead, Lang::En) => "DB read test",
            (TestId::Cache, Lang::En) => "Cache test",
            (TestId::ConcurrentUsers, Lang::En) => "Concurrent users test",
            (TestId::DbWrite, Lang::En) => "DB write test",
            (TestId::Memory, Lang::En) => "Memory test",
            (TestId::SystemLimits, Lang::En) => "System limits test",
            (TestId::Semaphores, Lang::En) => "Semaphore test",
            (TestId::RateLimiting, Lang::En) => "Rate limiting test",
            (TestId::ModelConfig, Lang::En) => "Model configuration test",
            (TestId::CacheSettings, Lang::En) => "Cache settings test",
            (TestId::OperationSimulation, Lang::En) => "Operation simulation",
            (TestId::Queue, Lang::En) => "Queue test",
            (TestId::MemoryUnderLoad, Lang::En) => "Memory under load test",
            (TestId::DbRead, Lang::Ru) => "Тест чтения из БД",
            (TestId::Cache, Lang::Ru) => "Тест кэша",
            (TestId::ConcurrentUsers, Lang::Ru) => "Тест одновременных пользователей",
            (TestId::DbWrite, Lang::Ru) => "Тест записи в БД",
            (TestId::Memory, Lang::Ru) => "Тест памяти",
            (TestId::SystemLimits, Lang::Ru) => "Тест пределов системы",
            (TestId::Semaphores, Lang::Ru) => "Тест семафоров",
            (TestId::RateLimiting, Lang::Ru) => "Тест ограничения частоты",
            (TestId::ModelConfig, Lang::Ru) => "Тест конфигурации моделей",
            (TestId::CacheSettings, Lang::Ru) => "Тест настроек кэша",
            (TestId::OperationSimulation, Lang::Ru) => "Симуляция операций",
            (TestId::Queue, Lang::Ru) => "Тест очереди",
            (TestId::MemoryUnderLoad, Lang::Ru) => "Тест памяти под нагрузкой",
            (TestId::CrashRestart, Lang::En) => "Crash and restart",
            (TestId::RedisOutage, Lang::En) => "Redis outage",
            (TestId::DatabaseOutage, Lang::En) => "Database outage",
            (TestId::ReplicateFaults, Lang::En) => "Replicate faults",
            (TestId::TelegramFaults, Lang::En) => "Telegram faults",
            (TestId::BadInput, Lang::En) => "Bad input",
            (TestId::BadInput, Lang::Ru) => "Плохой ввод",
            (TestId::ReplicaFailover, Lang::En) => "Replica failover",
            (TestId::CrashRestart, Lang::Ru) => "Падение и перезапуск",
            (TestId::RedisOutage, Lang::Ru) => "Отказ Redis",
            (TestId::DatabaseOutage, Lang::Ru) => "Отказ базы данных",
            (TestId::ReplicateFaults, Lang::Ru) => "Сбои Replicate",
            (TestId::TelegramFaults, Lang::Ru) => "Сбои Telegram",
            (TestId::ReplicaFailover, Lang::Ru) => "Отказ реплики",
        }
    }
}

/// A finished test.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TestOutcome {
    pub id: TestId,
    pub name: String,
    pub grade: Grade,
    /// Measured figures, keyed `test_id.metric` (e.g. `db_read.rps`).
    pub metrics: BTreeMap<String, f64>,
    /// Facts the reader needs to trust the figures (durability mode, load shape, scaling).
    pub facts: Vec<String>,
    /// What to change, with the measured numbers, when the grade is not EXCELLENT.
    pub recommendations: Vec<String>,
    /// Measured curves for the HTML charts (latency over time, throughput against users).
    pub series: Vec<Series>,
    /// Why the test does not apply to this deployment (a Redis outage without Redis); such a
    /// test counts toward no score.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_applicable: Option<String>,
    /// The test ran but measured nothing (no prompt sent, no kill landed, an empty window):
    /// `not_applicable` says what was missing, and the test is graded nowhere.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub did_not_measure: bool,
    /// Requests the bot sent that Telegram would have refused, as the Bot API mock counted
    /// them (method, description, count, first examples): defects the mock answered 400 where
    /// a kinder mock would have said yes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub telegram_refused: Vec<genbot_mocks::telegram::Refused>,
    /// Sends answered 429 by the mock's flood control: Telegram's answer to a bot sending too
    /// fast, kept apart from the refusals (a bot that waits them out loses nothing).
    #[serde(skip_serializing_if = "is_zero")]
    pub telegram_throttled: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A chart's worth of measured curves sharing axes (e.g. p50 and p99 over time).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Series {
    /// Short id, e.g. `latency_over_time`.
    pub id: String,
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    /// How the x axis is drawn: `log` where x doubles step by step (users, rates).
    pub x_scale: Scale,
    pub lines: Vec<Line>,
    /// Ranges of x drawn shaded (the windows a fault was on).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub shaded: Vec<(f64, f64)>,
}

/// An axis scale.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scale {
    #[default]
    Linear,
    Log,
}

/// One curve: `points` are `(x, y)` in the units the series' labels name.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Line {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

impl TestOutcome {
    pub fn new(id: TestId, lang: Lang) -> Self {
        TestOutcome {
            id,
            name: id.name(lang).to_owned(),
            grade: Grade::NeedsOptimization,
            metrics: BTreeMap::new(),
            facts: Vec::new(),
            recommendations: Vec::new(),
            series: Vec::new(),
            not_applicable: None,
            did_not_measure: false,
            telegram_refused: Vec::new(),
            telegram_throttled: 0,
        }
    }

    /// Takes in what the Bot API mock refused and throttled during the test (the metrics
    /// `refused_by_telegram` and `telegram_429`).
    pub fn telegram(&mut self, stats: &genbot_mocks::telegram::TelegramMockStats) -> &mut Self {
        self.telegram_refused = stats.refused.clone();
        self.telegram_throttled = stats.throttled;
        let refused: u64 = stats.refused.iter().map(|r| r.count).sum();
        self.metric("refused_by_telegram", refused as f64)
            .metric("telegram_429", stats.throttled as f64)
    }

    /// As [`TestOutcome::telegram`], for what the mock counted between two snapshots: a mock
    /// shared by several tests (the black-box bot's) reports each test its own refusals.
    pub fn telegram_since(
        &mut self,
        before: &genbot_mocks::telegram::TelegramMockStats,
        after: &genbot_mocks::telegram::TelegramMockStats,
    ) -> &mut Self {
        let mut delta = after.clone();
        delta.throttled = after.throttled.saturating_sub(before.throttled);
        delta.refused = after
            .refused
            .iter()
            .filter_map(|now| {
                let earlier = before
                    .refused
                    .iter()
                    .find(|r| r.method == now.method && r.description == now.description);
                let (count, seen) = earlier.map_or((0, 0), |r| (r.count, r.examples.len()));
                let mut refused = now.clone();
                refused.count = now.count.checked_sub(count).filter(|n| *n > 0)?;
                // Examples are the first few since the mock started: this test's own when
                // there are any, else the kind's earlier ones (still that kind of request).
                if now.examples.len() > seen {
                    refused.examples.drain(..seen);
                }
                Some(refused)
            })
            .collect();
        self.telegram(&delta)
    }

    /// Any request Telegram would have refused caps the grade at GOOD: users of the real
    /// Telegram would have missed those answers, however fast the rest came.
    pub fn cap_for_refusals(&mut self, lang: Lang) {
        let refused = self.refused_by_telegram();
        if refused == 0 {
            return;
        }
        if self.grade == Grade::Excellent {
            self.grade = Grade::Good;
        }
        let kinds: Vec<String> = self
            .telegram_refused
            .iter()
            .map(|r| format!("{} × {} \"{}\"", r.count, r.method, r.description))
            .collect();
        let kinds = kinds.join("; ");
        self.recommend(match lang {
            Lang::En => format!("{refused} request(s) Telegram would have refused (graded GOOD at best: those answers never reach users on the real Bot API): {kinds}. Fix what the bot sends."),
            Lang::Ru => format!("{refused} запрос(ов) Telegram отклонил бы (не выше ХОРОШО: на настоящем Bot API эти ответы не дошли бы до пользователей): {kinds}. Исправьте то, что отправляет бот."),
        });
    }

    /// Requests Telegram would have refused, in all.
    pub fn refused_by_telegram(&self) -> u64 {
        self.telegram_refused.iter().map(|r| r.count).sum()
    }

    /// A test that does not apply here, with the reason; graded nothing and scored nowhere.
    /// Its grade is `null` in the JSON; inside, the lowest, so nothing that forgets to ask
    /// [`TestOutcome::applies`] can count it as a pass.
    pub fn not_applicable(id: TestId, lang: Lang, reason: impl Into<String>) -> Self {
        let mut outcome = TestOutcome::new(id, lang);
        outcome.grade = Grade::NeedsOptimization;
        outcome.not_applicable = Some(reason.into());
        outcome
    }

    /// Marks a test that ran but measured nothing: its figures stay, its grade goes (reports
    /// say "did not measure" and why), and readiness weighs it as missing.
    pub fn did_not_measure(&mut self, reason: impl Into<String>) -> &mut Self {
        self.grade = Grade::NeedsOptimization;
        self.did_not_measure = true;
        self.not_applicable = Some(reason.into());
        self
    }

    /// The grade's label, or "NOT APPLICABLE" / "DID NOT MEASURE" for a test not graded.
    pub fn verdict(&self, lang: Lang) -> &'static str {
        match (&self.not_applicable, self.did_not_measure, lang) {
            (Some(_), true, Lang::En) => "DID NOT MEASURE",
            (Some(_), true, Lang::Ru) => "НЕ ИЗМЕРЕНО",
            (Some(_), false, Lang::En) => "NOT APPLICABLE",
            (Some(_), false, Lang::Ru) => "НЕ ПРИМЕНИМО",
            (None, _, _) => self.grade.label(lang),
        }
    }

    /// Whether the test counts: it ran and applies.
    pub fn applies(&self) -> bool {
        self.not_applicable.is_none()
    }

    /// Records `test_id.name = value`.
    pub fn metric(&mut self, name: &str, value: f64) -> &mut Self {
        self.metrics
            .insert(format!("{}.{name}", self.id.as_str()), value);
        self
    }

    /// A measured figure by its short name.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.metrics
            .get(&format!("{}.{name}", self.id.as_str()))
            .copied()
    }

    pub fn fact(&mut self, text: impl Into<String>) -> &mut Self {
        self.facts.push(text.into());
        self
    }

    pub fn series(&mut self, series: Series) -> &mut Self {
        self.series.push(series);
        self
    }

    pub fn recommend(&mut self, text: impl Into<String>) -> &mut Self {
        self.recommendations.push(text.into());
        self
    }
}

#[cfg(test)]
mod refusal_tests {
    use super::*;
    use genbot_mocks::telegram::{Refused, TelegramMockStats};

    #[test]
    fn one_request_telegram_would_refuse_caps_the_grade_at_good() {
        let mut out = TestOutcome::new(TestId::ConcurrentUsers, Lang::En);
        out.grade = Grade::Excellent;
        let mut stats = TelegramMockStats::default();
        stats.refused = vec![Refused {
            method: "sendmessage".into(),
            description: "Bad Request: message is too long".into(),
            count: 1,
            examples: vec!["chat_id=1, text: 4097 UTF-16 units".into()],
        }];
        stats.throttled = 4;
        out.telegram(&stats);
        out.cap_for_refusals(Lang::En);
        assert_eq!(out.grade, Grade::Good);
        assert_eq!(out.get("refused_by_telegram"), Some(1.0));
        assert_eq!(out.get("telegram_429"), Some(4.0));
        assert!(out.recommendations[0].contains("message is too long"));
        let lines = crate::report::refusal_lines(&[&out], Lang::En).unwrap_or_default();
        assert!(
            lines.iter().any(|l| l.contains("4097 UTF-16 units")),
            "{lines:?}"
        );

        // 429s alone are flood control's answers, not refusals: no cap.
        let mut out = TestOutcome::new(TestId::ConcurrentUsers, Lang::En);
        out.grade = Grade::Excellent;
        let mut stats = TelegramMockStats::default();
        stats.throttled = 9;
        out.telegram(&stats);
        out.cap_for_refusals(Lang::En);
        assert_eq!(out.grade, Grade::Excellent);
    }

    fn refused(method: &str, count: u64, examples: &[&str]) -> Refused {
        Refused {
            method: method.into(),
            description: "Bad Request: message is too long".into(),
            count,
            examples: examples.iter().map(|e| (*e).to_owned()).collect(),
        }
    }

    #[test]
    fn a_shared_mock_reports_each_test_only_its_own_refusals() {
        let mut before = TelegramMockStats::default();
        before.refused = vec![refused("sendmessage", 2, &["a", "b"])];
        before.throttled = 5;
        let mut after = TelegramMockStats::default();
        after.refused = vec![
            refused("sendmessage", 5, &["a", "b", "c"]),
            refused("editmessagetext", 1, &["d"]),
        ];
        after.throttled = 7;
        let mut out = TestOutcome::new(TestId::Queue, Lang::En);
        out.grade = Grade::Excellent;
        out.telegram_since(&before, &after);
        out.cap_for_refusals(Lang::En);
        assert_eq!(out.get("refused_by_telegram"), Some(4.0));
        assert_eq!(out.get("telegram_429"), Some(2.0));
        assert_eq!(out.telegram_refused[0].count, 3);
        assert_eq!(out.telegram_refused[0].examples, vec!["c".to_owned()]);
        assert_eq!(out.grade, Grade::Good);

        // Nothing new since the snapshot: nothing reported, no cap.
        let mut out = TestOutcome::new(TestId::Queue, Lang::En);
        out.grade = Grade::Excellent;
        out.telegram_since(&after, &after);
        out.cap_for_refusals(Lang::En);
        assert_eq!(out.get("refused_by_telegram"), Some(0.0));
        assert!(out.telegram_refused.is_empty());
        assert_eq!(out.grade, Grade::Excellent);
    }
}
