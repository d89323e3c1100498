//! The production-readiness score: the seed's six criteria, each scored from its grade, as a
//! percentage with a band (≥ 90 ready, 70–89 partly ready, < 70 not ready).

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
        }
    }

    pub const ALL: [Criterion; 6] = [
        Criterion::DbRead,
        Criterion::Cache,
        Criterion::StabilityUnderLoad,
        Criterion::Memory,
        Criterion::GenerationSettings,
        Criterion::NoBottlenecks,
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
}

/// The score.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Readiness {
    pub percent: f64,
    pub band: Band,
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
    (!missing.is_empty()).then(|| match lang {
        Lang::En => format!(
            "not measured by this run, counted as 0: {}; `genbot bench all` scores all six",
            missing.join(", ")
        ),
        Lang::Ru => format!(
            "не измерено в этом прогоне, засчитано как 0: {}; `genbot bench all` оценивает все шесть",
            missing.join(", ")
        ),
    })
}

impl Readiness {
    /// Scores graded criteria; a criterion not given (its test did not run) earns nothing.
    pub fn score(graded: Vec<(Criterion, Grade, String)>) -> Readiness {
        let criteria: Vec<CriterionScore> = Criterion::ALL
            .into_iter()
            .map(|criterion| {
                let (grade, evidence) = graded
                    .iter()
                    .find(|(c, _, _)| *c == criterion)
                    .map_or((None, String::new()), |(_, g, e)| (Some(*g), e.clone()));
                CriterionScore {
                    criterion,
                    grade,
                    points: grade.map_or(0.0, points),
                    evidence,
                }
            })
            .collect();
        let total: f64 = criteria.iter().map(|c| c.points).sum();
        let percent = (total / Criterion::ALL.len() as f64 * 1000.0).round() / 10.0;
        Readiness {
            percent,
            band: Band::of(percent),
            criteria,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(grade: Grade) -> Vec<(Criterion, Grade, String)> {
        Criterion::ALL
            .into_iter()
            .map(|c| (c, grade, String::new()))
            .collect()
    }

    #[test]
    fn percent_and_band_from_known_grades() {
        let ready = Readiness::score(all(Grade::Excellent));
        assert_eq!((ready.percent, ready.band), (100.0, Band::Ready));

        let partly = Readiness::score(all(Grade::Good));
        assert_eq!((partly.percent, partly.band), (75.0, Band::PartlyReady));

        // Five excellent, one failing: 5/6 = 83.3 %.
        let mut one_bad = all(Grade::Excellent);
        one_bad[1].1 = Grade::NeedsConfiguration;
        let scored = Readiness::score(one_bad);
        assert_eq!((scored.percent, scored.band), (83.3, Band::PartlyReady));

        // Unmeasured criteria earn nothing.
        let half = Readiness::score(all(Grade::Excellent).into_iter().take(3).collect());
        assert_eq!((half.percent, half.band), (50.0, Band::NotReady));
        assert_eq!(half.criteria[5].grade, None);
        let note = unmeasured_note(&half, Lang::En).unwrap();
        assert!(
            note.contains("Memory use, Generation settings, No bottlenecks"),
            "{note}"
        );
        assert_eq!(unmeasured_note(&ready, Lang::En), None);
    }

    #[test]
    fn band_boundaries() {
        assert_eq!(Band::of(90.0), Band::Ready);
        assert_eq!(Band::of(89.9), Band::PartlyReady);
        assert_eq!(Band::of(70.0), Band::PartlyReady);
        assert_eq!(Band::of(69.9), Band::NotReady);
    }
}
