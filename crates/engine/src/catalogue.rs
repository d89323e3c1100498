//! The model catalogue: which Replicate models users may pick, their inputs and their cost.
//!
//! Loaded from TOML (`MODELS_FILE`, or the built-in `models.toml`). Loading checks everything
//! and reports every bad entry with its path (`models[2].params.steps: max (1) < min (4)`), not
//! only the first, so one edit fixes the file.

pub mod inline;
mod params;
mod raw;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde_json::{Map, Value};

pub use inline::{InlineError, InlineOptions};
pub use params::{ParamError, ParamSpec};

/// The catalogue compiled into the binary.
pub const BUILT_IN: &str = include_str!("../models.toml");

/// Where a model runs at Replicate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelRef {
    /// An official model by name (`POST /v1/models/{owner}/{name}/predictions`).
    Official { owner: String, name: String },
    /// A pinned version (`POST /v1/predictions` with `version`).
    Version(String),
}

impl fmt::Display for ModelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelRef::Official { owner, name } => write!(f, "{owner}/{name}"),
            ModelRef::Version(hash) => write!(f, "version {hash}"),
        }
    }
}

/// One model users can pick.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    /// What users pick (`flux-schnell`).
    pub id: String,
    /// What users see.
    pub name: String,
    pub replicate: ModelRef,
    /// Credits one generation costs.
    pub cost: i64,
    pub enabled: bool,
    /// The input that takes a picture (`image`): the model can work image-to-image.
    pub image_input: Option<String>,
    /// Inputs sent to Replicate, by name.
    pub params: BTreeMap<String, ParamSpec>,
}

impl Model {
    /// The Replicate input for `prompt`: every parameter's default, replaced by `overrides`
    /// where given, each checked against its allowed values.
    ///
    /// # Errors
    /// An override names an unknown parameter or a value outside its range or choices.
    pub fn input(&self, prompt: &str, overrides: &Map<String, Value>) -> Result<Value, ParamError> {
        let mut input = Map::new();
        for (name, spec) in &self.params {
            input.insert(name.clone(), spec.default_value());
        }
        for (name, value) in overrides {
            if self.image_input.as_ref() == Some(name) {
                input.insert(name.clone(), image_reference(name, value)?);
                continue;
            }
            let spec = self.params.get(name).ok_or_else(|| ParamError::Unknown {
                name: name.clone(),
                allowed: self.params.keys().cloned().collect(),
            })?;
            input.insert(name.clone(), spec.check(name, value)?);
        }
        input.insert("prompt".into(), Value::String(prompt.to_owned()));
        Ok(Value::Object(input))
    }
}

/// A picture given to an image input: a data URL of an image, or an HTTPS URL.
fn image_reference(name: &str, value: &Value) -> Result<Value, ParamError> {
    match value.as_str() {
        Some(text) if text.starts_with("data:image/") || text.starts_with("https://") => {
            Ok(value.clone())
        }
        _ => Err(ParamError::OutOfRange {
            name: name.to_owned(),
            value: value.to_string().chars().take(40).collect(),
            allowed: "an image as a data URL or an https:// URL".to_owned(),
        }),
    }
}

/// Every model, in file order, with the default one known to exist and be enabled.
#[derive(Debug, Clone, PartialEq)]
pub struct Catalogue {
    models: Vec<Model>,
    default_model: String,
}

/// Why a catalogue could not be loaded: every problem found, each with its path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} problem(s) in model catalogue {source_name}:\n  {}", problems.len(), problems.join("\n  "))]
pub struct CatalogueError {
    /// The file (or `built-in`).
    pub source_name: String,
    /// One line per problem, `models[2].params.steps: max (1) < min (4)`.
    pub problems: Vec<String>,
}

impl Catalogue {
    /// The catalogue `MODELS_FILE` names, or the built-in one when it is `None`.
    ///
    /// # Errors
    /// The file cannot be read, or any entry is invalid, or `default_model` is not an enabled
    /// model of the catalogue.
    pub fn load(models_file: Option<&Path>, default_model: &str) -> Result<Self, CatalogueError> {
        match models_file {
            None => Catalogue::parse(BUILT_IN, "built-in", default_model),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| CatalogueError {
                    source_name: path.display().to_string(),
                    problems: vec![format!("cannot read: {e}")],
                })?;
                Catalogue::parse(&text, &path.display().to_string(), default_model)
            }
        }
    }

    /// Parses and checks catalogue TOML; `source_name` is used in messages.
    ///
    /// # Errors
    /// As [`Catalogue::load`].
    pub fn parse(
        text: &str,
        source_name: &str,
        default_model: &str,
    ) -> Result<Self, CatalogueError> {
        let fail = |problems| CatalogueError {
            source_name: source_name.to_owned(),
            problems,
        };
        let models = raw::parse(text).map_err(fail)?;
        match models.iter().find(|m| m.id == default_model) {
            Some(model) if model.enabled => Ok(Catalogue {
                models,
                default_model: default_model.to_owned(),
            }),
            Some(_) => Err(fail(vec![format!(
                "DEFAULT_MODEL={default_model} is disabled in the catalogue"
            )])),
            None => Err(fail(vec![format!(
                "DEFAULT_MODEL={default_model} is not in the catalogue (ids: {})",
                models
                    .iter()
                    .map(|m| m.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )])),
        }
    }

    /// Every model, enabled or not, in file order.
    pub fn models(&self) -> &[Model] {
        &self.models
    }

    /// Models users may pick now.
    pub fn enabled(&self) -> impl Iterator<Item = &Model> {
        self.models.iter().filter(|m| m.enabled)
    }

    /// The model with this id, if any (enabled or not).
    pub fn get(&self, id: &str) -> Option<&Model> {
        self.models.iter().find(|m| m.id == id)
    }

    /// The model a photo is drawn from for a user who chose `selected`: that one if it takes
    /// images, else the first enabled one that does.
    pub fn image_model_for(&self, selected: Option<&str>) -> Option<&Model> {
        let takes_images = |m: &&Model| m.enabled && m.image_input.is_some();
        selected
            .and_then(|id| self.get(id))
            .filter(takes_images)
            .or_else(|| self.enabled().find(takes_images))
    }

    /// The model used until a user picks one.
    pub fn default_model(&self) -> &Model {
        // `parse` refuses catalogues without it.
        self.get(&self.default_model)
            .unwrap_or_else(|| &self.models[0])
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_built_in_catalogue_is_valid() {
        let catalogue = Catalogue::load(None, "flux-schnell").unwrap();
        assert!(catalogue.models().len() >= 3);
        assert_eq!(catalogue.default_model().id, "flux-schnell");
        let sdxl = catalogue.get("sdxl").unwrap();
        assert!(matches!(sdxl.replicate, ModelRef::Version(_)));
    }

    #[test]
    fn a_range_of_nan_or_inf_must_be_finite_numbers() {
        for (param, problem) in [
            (
                "{ min = nan, max = 1.0 }",
                "min (NaN) must be a finite number",
            ),
            (
                "{ min = 0.0, max = inf }",
                "max (inf) must be a finite number",
            ),
            (
                "{ min = 0.0, max = 1.0, default = nan }",
                "default (NaN) must be a finite number",
            ),
        ] {
            let text = format!(
                "[[models]]\nid = \"a\"\nname = \"A\"\nreplicate = \"owner/a\"\ncost = 1\n[models.params]\nguidance = {param}\n"
            );
            let err = Catalogue::parse(&text, "test.toml", "a").unwrap_err();
            assert_eq!(
                err.problems,
                [format!("models[0].params.guidance: {problem}")],
                "{param}"
            );
        }
    }

    #[test]
    fn a_file_with_three_distinct_errors_reports_all_three() {
        let text = r#"
            [[models]]
            id = "a"
            name = "A"
            replicate = "owner/a"
            cost = 1
            [models.params]
            steps = { min = 4, max = 1, default = 2 }

            [[models]]
            id = "b"
            name = "B"
            replicate = "not-a-model-ref"
            cost = 1

            [[models]]
            id = "c"
            name = "C"
            replicate = "owner/c"
            cost = -5
        "#;
        let err = Catalogue::parse(text, "test.toml", "a").unwrap_err();
        assert_eq!(err.problems.len(), 3, "{err}");
        assert!(
            err.problems[0].starts_with("models[0].params.steps: max (1) < min (4)"),
            "{err}"
        );
        assert!(err.problems[1].starts_with("models[1].replicate"), "{err}");
        assert!(err.problems[2].starts_with("models[2].cost"), "{err}");
        assert!(err
            .to_string()
            .starts_with("3 problem(s) in model catalogue test.toml"));
    }

    #[test]
    fn the_default_model_must_exist_and_be_enabled() {
        let err = Catalogue::load(None, "midjourney").unwrap_err();
        assert!(err.problems[0].contains("DEFAULT_MODEL=midjourney is not in the catalogue"));
        let text = r#"
            [[models]]
            id = "a"
            name = "A"
            replicate = "o/a"
            cost = 1
            enabled = false
        "#;
        let err = Catalogue::parse(text, "t", "a").unwrap_err();
        assert!(err.problems[0].contains("disabled"), "{err}");
    }

    #[test]
    fn inputs_take_defaults_and_checked_overrides() {
        let catalogue = Catalogue::load(None, "flux-schnell").unwrap();
        let model = catalogue.get("flux-schnell").unwrap();
        let input = model.input("a fox", &Map::new()).unwrap();
        assert_eq!(input["prompt"], "a fox");
        assert_eq!(input["num_inference_steps"], 4);
        assert_eq!(input["aspect_ratio"], "1:1");

        let overrides = json!({"aspect_ratio": "16:9", "num_inference_steps": 2});
        let input = model.input("x", overrides.as_object().unwrap()).unwrap();
        assert_eq!(
            (
                input["aspect_ratio"].as_str(),
                input["num_inference_steps"].as_i64()
            ),
            (Some("16:9"), Some(2))
        );

        for bad in [
            json!({"num_inference_steps": 9}),
            json!({"aspect_ratio": "2:1"}),
            json!({"seed_of_chaos": 1}),
            json!({"num_inference_steps": "four"}),
        ] {
            assert!(model.input("x", bad.as_object().unwrap()).is_err(), "{bad}");
        }
    }
}
