//! The production-readiness score: the seed's six criteria, each scored from its grade, as a
//! percentage with a band (≥ 90 ready, 70–89 partly ready, < 70 not ready); and the extended
//! score, the same with a seventh criterion, fault tolerance.
//!
//! A run that measured only some criteria (`bench performance` alone) is scored over those:
//! it gives no verdict caused by tests it did not run, and says which were not measured.
//!
//! Within a criterion, a test that ran but did not apply or measured nothing is not a pass: the
//! criterion's points are those of its worst graded test times the share of its tests that were
//! graded, and it names the ones missing. A criterion with half its tests not applicable reads
//! at most 50 %.

use serde::Serialize;

use crate::grade::{Grade, Lang};

/// The seed's six criteria, in its order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Criterion {
    DbRead,
    Cache,
    StabilityUnderLoad,
    Memory,
    GenerationSettings,
    NoBottlenecks,
    /// Not the seed's: what crashes, outages and failing services cost (the fault tests).
    FaultTolerance,
}

impl Criterion {
    /// The criterion as the seed names it.
    pub fn label(self, lang: Lang) -> &'static str {
        match (self, lang) {
            (Criterion::DbRead, Lang::En) => "DB read performance",
            (Criterion::Cache, Lang::En) => "Cache present and effective",
            (Criterion::StabilityUnderLoad, Lang::En) => "Stability under load",
            (Criterion::Memory, Lang::En) => "Memory use",
            (Criterion::GenerationSettings, Lang::En) => "Generation settings",
            (Criterion::NoBottlenecks, Lang::En) => "No bottlenecks",
            (Criterion::DbRead, Lang::Ru) => "Скорость чтения из БД",
            (Criterion::Cache, Lang::Ru) => "Кэш есть и работает",
            (Criterion::StabilityUnderLoad, Lang::Ru) => "Стабильность под нагрузкой",
            (Criterion::Memory, Lang::Ru) => "Использование памяти",
            (Criterion::GenerationSettings, Lang::Ru) => "Настройки генерации",
            (Criterion::NoBottlenecks, Lang::Ru) => "Нет узких мест",
            (Criterion::FaultTolerance, Lang::En) => "Fault tolerance",
            (Criterion::FaultTolerance, Lang::Ru) => "Отказоустойчивость",
        }
    }

    /// The seed's six, in its order.
    pub const SEED: [Criterion; 6] = [
        Criterion::DbRead,
        Criterion::Cache,
        Criterion::StabilityUnderLoad,
        Criterion::Memory,
        Criterion::GenerationSettings,
        Criterion::NoBottlenecks,
    ];

    /// The seed's six and fault tolerance.
    pub const EXTENDED: [Criterion; 7] = [
        Criterion::DbRead,
        Criterion::Cache,
        Criterion::StabilityUnderLoad,
        Criterion::Memory,
        Criterion::GenerationSettings,
        Criterion::NoBottlenecks,
        Criterion::FaultTolerance,
    ];
}

/// Points a criterion earns: all for EXCELLENT, three quarters for GOOD (stable, room to
/// improve), none for a grade that asks for changes. So a bot GOOD everywhere is "partly ready".
pub fn points(grade: Grade) -> f64 {
    match grade {
        Grade::Excellent => 1.0,
        Grade::Good => 0.75,
        Grade::NeedsOptimization | Grade::NeedsConfiguration => 0.0,
    }
}

/// How ready the bot is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Band {
    Ready,
    PartlyReady,
    NotReady,
}

impl Band {
    pub fn of(percent: f64) -> Band {
        if percent >= 90.0 {
            Band::Ready
        } else if percent >= 70.0 {
            Band::PartlyReady
        } else {
            Band::NotReady
        }
    }
}

/// One criterion's verdict, with the evidence behind it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CriterionScore {
    pub criterion: Criterion,
    /// `None` when the run did not include the criterion's test (`bench performance` alone
    /// measures no generation settings): it earns nothing, and reports say "not measured".
    pub grade: Option<Grade>,
    pub points: f64,
    /// The measured figures that decided it, in words.
    pub evidence: String,
    /// Its tests that ran but were not graded (not applicable, or measured nothing): each
    /// weighs against the criterion's points.
    pub missing: Vec<String>,
}

/// A criterion as the run's tests graded it.
#[derive(Debug, Clone, PartialEq)]
pub struct Graded {
    pub criterion: Criterion,
    /// The worst grade of its graded tests.
    pub grade: Grade,
    pub evidence: String,
    /// Its tests that ran but were not graded, by name.
    pub missing: Vec<String>,
    /// Graded tests ÷ tests that ran, 0–1.
    pub share: f64,
}

impl Graded {
    /// Every test of the criterion graded.
    pub fn full(criterion: Criterion, grade: Grade, evidence: impl Into<String>) -> Graded {
        Graded {
            criterion,
            grade,
            evidence: evidence.into(),
            missing: Vec::new(),
            share: 1.0,
        }
    }
}

/// The score.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Readiness {
    /// Points over the criteria measured, in percent; `None` when the run measured none.
    pub percent: Option<f64>,
    pub band: Option<Band>,
    /// Criteria this run measured, of `criteria.len()`.
    pub measured: usize,
    pub criteria: Vec<CriterionScore>,
}

/// Says that a run measured only some criteria, so its score is not the whole picture.
pub fn unmeasured_note(readiness: &Readiness, lang: Lang) -> Option<String> {
    let missing: Vec<&str> = readiness
        .criteria
        .iter()
        .filter(|c| c.grade.is_none())
        .map(|c| c.criterion.label(lang))
        .collect();
    let all = readiness.criteria.len();
    (!missing.is_empty()).then(|| match lang {
        Lang::En => format!(
            "scored over the {} of {all} criteria this run measured; not measured: {}; `genbot bench all` scores all {all}",
            readiness.measured,
            missing.join(", ")
        ),
        Lang::Ru => format!(
            "оценка по {} из {all} критериев, измеренных в этом прогоне; не измерено: {}; `genbot bench all` оценивает все {all}",
            readiness.measured,
            missing.join(", ")
        ),
    })
}

impl Readiness {
    /// Scores `over` (the seed's six, or the extended seven) from the graded criteria; one not
    /// given (its test did not run) is shown as not measured and left out of the percentage.
    /// A criterion earns its worst grade's points times the share of its tests graded.
    pub fn score(over: &[Criterion], graded: &[Graded]) -> Readiness {
        let criteria: Vec<CriterionScore> = over
            .iter()
            .copied()
            .map(
                |criterion| match graded.iter().find(|g| g.criterion == criterion) {
                    Some(g) => CriterionScore {
                        criterion,
                        grade: Some(g.grade),
                        points: points(g.grade) * g.share.clamp(0.0, 1.0),
                        evidence: g.evidence.clone(),
                        missing: g.missing.clone(),
                    },
                    None => CriterionScore {
                        criterion,
                        grade: None,
                        points: 0.0,
                        evidence: String::new(),
                        missing: Vec::new(),
                    },
                },
            )
            .collect();
        let measured = criteria.iter().filter(|c| c.grade.is_some()).count();
        let total: f64 = criteria.iter().map(|c| c.points).sum();
        let percent = (measured > 0).then(|| (total / measured as f64 * 1000.0).round() / 10.0);
        Readiness {
            percent,
            band: percent.map(Band::of),
            measured,
            criteria,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(grade: Grade) -> Vec<Graded> {
        Criterion::SEED
            .into_iter()
            .map(|c| Graded::full(c, grade, ""))
            .collect()
    }

    #[test]
    fn percent_and_band_from_known_grades() {
        let seed = &Criterion::SEED;
        let ready = Readiness::score(seed, &all(Grade::Excellent));
        assert_eq!(
            (ready.percent, ready.band),
            (Some(100.0), Some(Band::Ready))
        );

        let partly = Readiness::score(seed, &all(Grade::Good));
        assert_eq!(
            (partly.percent, partly.band),
            (Some(75.0), Some(Band::PartlyReady))
        );

        // Five excellent, one failing: 5/6 = 83.3 %.
        let mut one_bad = all(Grade::Excellent);
        one_bad[1].grade = Grade::NeedsConfiguration;
        let scored = Readiness::score(seed, &one_bad);
        assert_eq!(
            (scored.percent, scored.band),
            (Some(83.3), Some(Band::PartlyReady))
        );

        // A partial run is scored over what it measured: no verdict from tests not run.
        let half: Vec<_> = all(Grade::Excellent).into_iter().take(3).collect();
        let half = Readiness::score(seed, &half);
        assert_eq!(
            (half.percent, half.band, half.measured),
            (Some(100.0), Some(Band::Ready), 3)
        );
        assert_eq!(half.criteria[5].grade, None);
        let note = unmeasured_note(&half, Lang::En).unwrap();
        assert!(
            note.contains("3 of 6")
                && note.contains("Memory use, Generation settings, No bottlenecks"),
            "{note}"
        );
        assert_eq!(unmeasured_note(&ready, Lang::En), None);
        // The score's own line says so too: the terminal shows it without the note.
        let line = crate::report::score_text(&half, Lang::En);
        assert!(
            line.contains("3 of 6") && !line.contains("ready for production"),
            "{line}"
        );
        assert!(crate::report::score_text(&ready, Lang::En).contains("ready for production"));
        let nothing = Readiness::score(seed, &[]);
        assert_eq!((nothing.percent, nothing.band), (None, None));

        // The extended score adds fault tolerance: six excellent and one failing = 85.7 %.
        let mut seven = all(Grade::Excellent);
        seven.push(Graded::full(
            Criterion::FaultTolerance,
            Grade::NeedsOptimization,
            "",
        ));
        let extended = Readiness::score(&Criterion::EXTENDED, &seven);
        assert_eq!(extended.percent, Some(85.7));
        assert_eq!(Readiness::score(seed, &seven).percent, Some(100.0));
    }

    #[test]
    fn a_criterion_with_half_its_tests_not_applicable_is_not_full() {
        let mut graded = all(Grade::Excellent);
        graded.push(Graded {
            criterion: Criterion::FaultTolerance,
            grade: Grade::Excellent,
            evidence: String::new(),
            missing: vec![
                "Redis outage".into(),
                "Database outage".into(),
                "Replica failover".into(),
            ],
            share: 0.5,
        });
        let scored = Readiness::score(&Criterion::EXTENDED, &graded);
        let fault = &scored.criteria[6];
        assert_eq!(fault.points, 0.5);
        assert_eq!(fault.missing.len(), 3);
        // Six full criteria and one half: 6.5 / 7.
        assert_eq!(scored.percent, Some(92.9));
    }

    #[test]
    fn band_boundaries() {
        assert_eq!(Band::of(90.0), Band::Ready);
        assert_eq!(Band::of(89.9), Band::PartlyReady);
        assert_eq!(Band::of(70.0), Band::PartlyReady);
        assert_eq!(Band::of(69.9), Band::NotReady);
    }
}
