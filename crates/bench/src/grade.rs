//! Grades and the thresholds that give them: the seed's, overridable from a TOML file.
//!
//! The seed writes "> 100 RPS is excellent": a figure exactly on a threshold gets the lower
//! grade for "more is better" metrics written with `>`, and the higher one for `>=`
//! (generation limit) and for "less is better" metrics written with `<` (memory growth).

use std::path::Path;

use serde::{Deserialize, Serialize};

/// A metric's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Grade {
    /// ❌ changes needed.
    NeedsOptimization,
    /// A dependency is missing or unreachable (Redis unavailable): set it up.
    NeedsConfiguration,
    /// ⚠️ stable, room to improve.
    Good,
    /// ✅ ready for high load.
    Excellent,
}

impl Grade {
    /// The label in the report's language.
    pub fn label(self, lang: Lang) -> &'static str {
        match (self, lang) {
            (Grade::Excellent, Lang::En) => "EXCELLENT ✅",
            (Grade::Good, Lang::En) => "GOOD ⚠️",
            (Grade::NeedsOptimization, Lang::En) => "NEEDS OPTIMIZATION ❌",
            (Grade::NeedsConfiguration, Lang::En) => "NEEDS CONFIGURATION ⚙️",
            (Grade::Excellent, Lang::Ru) => "ОТЛИЧНО ✅",
            (Grade::Good, Lang::Ru) => "ХОРОШО ⚠️",
            (Grade::NeedsOptimization, Lang::Ru) => "ТРЕБУЕТ ОПТИМИЗАЦИИ ❌",
            (Grade::NeedsConfiguration, Lang::Ru) => "ТРЕБУЕТ НАСТРОЙКИ ⚙️",
        }
    }

    /// The label without its emoji, for running text (evidence lines, fonts without emoji).
    pub fn word(self, lang: Lang) -> &'static str {
        self.label(lang)
            .trim_end_matches(|c: char| !c.is_alphanumeric())
    }

    /// Whether a CI dashboard should count the test as failed.
    pub fn is_failure(self) -> bool {
        matches!(self, Grade::NeedsOptimization | Grade::NeedsConfiguration)
    }
}

/// The report's language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    En,
    Ru,
}

/// A pair of bounds: above (or below) `excellent` is EXCELLENT, above `good` is GOOD.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bounds {
    pub excellent: f64,
    pub good: f64,
}

/// Every threshold the suite grades with. Defaults are the seed's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Thresholds {
    /// DB reads per second: > excellent, > good.
    pub db_read_rps: Bounds,
    /// DB writes per second: > excellent, > good.
    pub db_write_rps: Bounds,
    /// Cache hit rate, 0–1: > excellent, > good.
    pub cache_hit_rate: Bounds,
    /// Success rate of simulated users, 0–1: > excellent, > good.
    pub success_rate: Bounds,
    /// Memory growth in MB: < excellent, < good.
    pub memory_growth_mb: Bounds,
    /// `MAX_CONCURRENT_GENERATIONS`: >= excellent, >= good.
    pub generation_limit: Bounds,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            db_read_rps: Bounds {
                excellent: 100.0,
                good: 50.0,
            },
            db_write_rps: Bounds {
                excellent: 50.0,
                good: 25.0,
            },
            cache_hit_rate: Bounds {
                excellent: 0.80,
                good: 0.50,
            },
            success_rate: Bounds {
                excellent: 0.95,
                good: 0.80,
            },
            memory_growth_mb: Bounds {
                excellent: 50.0,
                good: 100.0,
            },
            generation_limit: Bounds {
                excellent: 80.0,
                good: 50.0,
            },
        }
    }
}

/// Why a thresholds file was refused.
#[derive(Debug, thiserror::Error)]
#[error("thresholds file {path}: {reason}")]
pub struct ThresholdsError {
    pub path: String,
    pub reason: String,
}

impl Thresholds {
    /// Reads overrides from a TOML file; keys not given keep the seed's values.
    ///
    /// # Errors
    /// The file cannot be read, is not TOML, names an unknown threshold, or a pair is inverted.
    pub fn load(path: &Path) -> Result<Self, ThresholdsError> {
        let fail = |reason: String| ThresholdsError {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        let thresholds: Thresholds =
            toml::from_str(&text).map_err(|e| fail(e.message().to_owned()))?;
        let more_is_better = [
            ("db_read_rps", thresholds.db_read_rps),
            ("db_write_rps", thresholds.db_write_rps),
            ("cache_hit_rate", thresholds.cache_hit_rate),
            ("success_rate", thresholds.success_rate),
            ("generation_limit", thresholds.generation_limit),
        ];
        for (name, bounds) in more_is_better {
            if bounds.excellent < bounds.good {
                return Err(fail(format!(
                    "{name}.excellent ({}) is below {name}.good ({})",
                    bounds.excellent, bounds.good
                )));
            }
        }
        let memory = thresholds.memory_growth_mb;
        if memory.excellent > memory.good {
            return Err(fail(format!(
                "memory_growth_mb.excellent ({}) is above memory_growth_mb.good ({}): less memory is better",
                memory.excellent, memory.good
            )));
        }
        Ok(thresholds)
    }

    pub fn db_read(&self, rps: f64) -> Grade {
        above(rps, self.db_read_rps)
    }

    pub fn db_write(&self, rps: f64) -> Grade {
        above(rps, self.db_write_rps)
    }

    /// `None` hit rate means the cache could not be reached.
    pub fn cache(&self, hit_rate: Option<f64>) -> Grade {
        hit_rate.map_or(Grade::NeedsConfiguration, |rate| {
            above(rate, self.cache_hit_rate)
        })
    }

    pub fn success(&self, rate: f64) -> Grade {
        above(rate, self.success_rate)
    }

    pub fn memory_growth(&self, megabytes: f64) -> Grade {
        let Bounds { excellent, good } = self.memory_growth_mb;
        if megabytes < excellent {
            Grade::Excellent
        } else if megabytes < good {
            Grade::Good
        } else {
            Grade::NeedsOptimization
        }
    }

    pub fn generation_limit(&self, limit: u32) -> Grade {
        let Bounds { excellent, good } = self.generation_limit;
        let limit = f64::from(limit);
        if limit >= excellent {
            Grade::Excellent
        } else if limit >= good {
            Grade::Good
        } else {
            Grade::NeedsOptimization
        }
    }
}

fn above(value: f64, Bounds { excellent, good }: Bounds) -> Grade {
    if value > excellent {
        Grade::Excellent
    } else if value > good {
        Grade::Good
    } else {
        Grade::NeedsOptimization
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_seed_boundary() {
        let t = Thresholds::default();
        assert_eq!(t.db_read(100.1), Grade::Excellent);
        assert_eq!(t.db_read(100.0), Grade::Good);
        assert_eq!(t.db_read(50.1), Grade::Good);
        assert_eq!(t.db_read(50.0), Grade::NeedsOptimization);

        assert_eq!(t.db_write(50.1), Grade::Excellent);
        assert_eq!(t.db_write(50.0), Grade::Good);
        assert_eq!(t.db_write(25.1), Grade::Good);
        assert_eq!(t.db_write(25.0), Grade::NeedsOptimization);

        assert_eq!(t.cache(Some(0.801)), Grade::Excellent);
        assert_eq!(t.cache(Some(0.80)), Grade::Good);
        assert_eq!(t.cache(Some(0.50)), Grade::NeedsOptimization);
        assert_eq!(t.cache(None), Grade::NeedsConfiguration);

        assert_eq!(t.success(0.951), Grade::Excellent);
        assert_eq!(t.success(0.95), Grade::Good);
        assert_eq!(t.success(0.801), Grade::Good);
        assert_eq!(t.success(0.80), Grade::NeedsOptimization);

        assert_eq!(t.memory_growth(49.9), Grade::Excellent);
        assert_eq!(t.memory_growth(50.0), Grade::Good);
        assert_eq!(t.memory_growth(99.9), Grade::Good);
        assert_eq!(t.memory_growth(100.0), Grade::NeedsOptimization);

        assert_eq!(t.generation_limit(80), Grade::Excellent);
        assert_eq!(t.generation_limit(79), Grade::Good);
        assert_eq!(t.generation_limit(50), Grade::Good);
        assert_eq!(t.generation_limit(49), Grade::NeedsOptimization);
    }

    #[test]
    fn labels_in_both_languages() {
        assert_eq!(Grade::Excellent.label(Lang::Ru), "ОТЛИЧНО ✅");
        assert_eq!(Grade::Good.label(Lang::Ru), "ХОРОШО ⚠️");
        assert_eq!(
            Grade::NeedsOptimization.label(Lang::Ru),
            "ТРЕБУЕТ ОПТИМИЗАЦИИ ❌"
        );
        assert_eq!(
            Grade::NeedsOptimization.label(Lang::En),
            "NEEDS OPTIMIZATION ❌"
        );
    }

    #[test]
    fn a_thresholds_file_overrides_and_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        std::fs::write(
            &path,
            "db_read_rps = { excellent = 100000.0, good = 20000.0 }\n",
        )
        .unwrap();
        let t = Thresholds::load(&path).unwrap();
        assert_eq!(t.db_read(50_000.0), Grade::Good);
        assert_eq!(
            t.db_write(60.0),
            Grade::Excellent,
            "others keep the seed's values"
        );

        std::fs::write(&path, "db_read_rps = { excellent = 10.0, good = 20.0 }\n").unwrap();
        let err = Thresholds::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("db_read_rps.excellent (10) is below db_read_rps.good (20)"),
            "{err}"
        );
        std::fs::write(&path, "db_reed_rps = { excellent = 1.0, good = 0.0 }\n").unwrap();
        assert!(Thresholds::load(&path)
            .unwrap_err()
            .to_string()
            .contains("db_reed_rps"));
    }
}
