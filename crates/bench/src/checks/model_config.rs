//! Model configuration: every catalogue entry valid, the default model present and enabled.

use genbot_engine::catalogue::Catalogue;

use crate::context::Context;
use crate::grade::Grade;
use crate::outcome::{TestId, TestOutcome};

pub async fn run(ctx: &Context) -> TestOutcome {
    let mut out = TestOutcome::new(TestId::ModelConfig, ctx.lang);
    let source = ctx.settings.models_file.as_ref().map_or_else(
        || "built-in catalogue".to_owned(),
        |p| p.display().to_string(),
    );
    match Catalogue::load(
        ctx.settings.models_file.as_deref(),
        &ctx.settings.default_model,
    ) {
        Ok(catalogue) => {
            let enabled = catalogue.enabled().count();
            out.metric("models", catalogue.models().len() as f64)
                .metric("enabled", enabled as f64)
                .metric("problems", 0.0);
            out.fact(format!(
                "{source}: {} models, {enabled} enabled, default `{}`",
                catalogue.models().len(),
                catalogue.default_model().id
            ));
            for model in catalogue.models() {
                out.fact(format!(
                    "{} → {} · cost {} · {} params{}",
                    model.id,
                    model.replicate,
                    model.cost,
                    model.params.len(),
                    if model.enabled { "" } else { " · disabled" }
                ));
            }
            out.grade = if enabled >= 2 {
                Grade::Excellent
            } else {
                Grade::Good
            };
            if enabled < 2 {
                out.recommend(ctx.text(
                    "Only one model is enabled: offer a second one so users have a fallback when it is slow or down.",
                    "Включена только одна модель: добавьте вторую, чтобы было на что переключиться.",
                ));
            }
        }
        Err(error) => {
            out.metric("problems", error.problems.len() as f64);
            out.grade = Grade::NeedsOptimization;
            for problem in &error.problems {
                out.recommend(format!("{source}: {problem}"));
            }
        }
    }
    out
}
