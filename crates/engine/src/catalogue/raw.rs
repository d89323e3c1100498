//! The catalogue file as written, and its checking into [`Model`]s with every problem's path.

use std::collections::{BTreeMap, HashSet};

use serde::Deserialize;

use super::{Model, ModelRef, ParamSpec};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalogue {
    #[serde(default)]
    models: Vec<RawModel>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    id: Option<String>,
    name: Option<String>,
    replicate: Option<String>,
    version: Option<String>,
    cost: Option<i64>,
    enabled: Option<bool>,
    /// The input that takes a picture (image-to-image), if the model has one.
    image_input: Option<String>,
    #[serde(default)]
    params: BTreeMap<String, RawParam>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawParam {
    min: Option<toml::Value>,
    max: Option<toml::Value>,
    default: Option<toml::Value>,
    choices: Option<Vec<toml::Value>>,
    max_chars: Option<i64>,
}

/// Parses and checks the whole file; on failure returns every problem found.
pub(super) fn parse(text: &str) -> Result<Vec<Model>, Vec<String>> {
    let raw: RawCatalogue =
        toml::from_str(text).map_err(|e| vec![e.to_string().replace('\n', " ")])?;
    if raw.models.is_empty() {
        return Err(vec!["no [[models]] entries".to_owned()]);
    }
    let mut problems = Vec::new();
    let mut models = Vec::new();
    let mut seen = HashSet::new();
    for (index, model) in raw.models.into_iter().enumerate() {
        let at = format!("models[{index}]");
        let before = problems.len();
        let id = model.id.clone().unwrap_or_default();
        if id.is_empty() {
            problems.push(format!("{at}.id: missing"));
        } else if !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            problems.push(format!(
                "{at}.id: `{id}` may use only letters, digits, '-', '_', '.'"
            ));
        } else if !seen.insert(id.clone()) {
            problems.push(format!("{at}.id: `{id}` is used by an earlier model"));
        }
        let name = model.name.clone().filter(|n| !n.trim().is_empty());
        if name.is_none() {
            problems.push(format!("{at}.name: missing"));
        }
        let replicate = model_ref(&at, &model, &mut problems);
        let cost = model.cost.unwrap_or(1);
        if cost < 0 {
            problems.push(format!(
                "{at}.cost: {cost} is negative; expected 0 or more credits"
            ));
        }
        let mut params = BTreeMap::new();
        for (param, spec) in &model.params {
            if param == "prompt" {
                problems.push(format!(
                    "{at}.params.prompt: the prompt is set by the user, not here"
                ));
                continue;
            }
            match param_spec(spec) {
                Ok(spec) => {
                    params.insert(param.clone(), spec);
                }
                Err(problem) => problems.push(format!("{at}.params.{param}: {problem}")),
            }
        }
        if let Some(input) = &model.image_input {
            if input.is_empty() || input == "prompt" || params.contains_key(input) {
                problems.push(format!(
                    "{at}.image_input: `{input}` must name an input that is neither the prompt nor one of params"
                ));
            }
        }
        if problems.len() == before {
            if let (Some(name), Some(replicate)) = (name, replicate) {
                models.push(Model {
                    id,
                    name,
                    replicate,
                    cost,
                    enabled: model.enabled.unwrap_or(true),
                    image_input: model.image_input.clone(),
                    params,
                });
            }
        }
    }
    if problems.is_empty() {
        Ok(models)
    } else {
        Err(problems)
    }
}

fn model_ref(at: &str, model: &RawModel, problems: &mut Vec<String>) -> Option<ModelRef> {
    match (&model.replicate, &model.version) {
        (Some(_), Some(_)) => {
            problems.push(format!(
                "{at}: set either `replicate` or `version`, not both"
            ));
            None
        }
        (None, None) => {
            problems.push(format!(
                "{at}.replicate: missing; expected \"owner/name\" or a `version` hash"
            ));
            None
        }
        (Some(reference), None) => match reference.split_once('/') {
            Some((owner, name)) if !owner.is_empty() && !name.is_empty() && !name.contains('/') => {
                Some(ModelRef::Official {
                    owner: owner.to_owned(),
                    name: name.to_owned(),
                })
            }
            _ => {
                problems.push(format!(
                    "{at}.replicate: `{reference}` is not \"owner/name\""
                ));
                None
            }
        },
        (None, Some(version)) => {
            if version.len() >= 8 && version.chars().all(|c| c.is_ascii_hexdigit()) {
                Some(ModelRef::Version(version.clone()))
            } else {
                problems.push(format!("{at}.version: `{version}` is not a version hash"));
                None
            }
        }
    }
}

fn param_spec(raw: &RawParam) -> Result<ParamSpec, String> {
    if let Some(choices) = &raw.choices {
        if raw.min.is_some() || raw.max.is_some() {
            return Err("set either `choices` or `min`/`max`, not both".into());
        }
        let choices: Vec<String> = choices
            .iter()
            .map(|c| {
                c.as_str()
                    .map(str::to_owned)
                    .ok_or("choices must be strings")
            })
            .collect::<Result<_, _>>()?;
        if choices.is_empty() {
            return Err("choices is empty".into());
        }
        let default = match raw.default.as_ref().map(toml::Value::as_str) {
            None => choices[0].clone(),
            Some(Some(d)) if choices.iter().any(|c| c == d) => d.to_owned(),
            Some(_) => return Err("default is not one of the choices".into()),
        };
        return Ok(ParamSpec::Choice { choices, default });
    }
    if let Some(max_chars) = raw.max_chars {
        if raw.min.is_some() || raw.max.is_some() {
            return Err("set either `max_chars` or `min`/`max`, not both".into());
        }
        let max_chars = usize::try_from(max_chars)
            .ok()
            .filter(|m| *m > 0)
            .ok_or("max_chars must be a positive whole number")?;
        let default = match &raw.default {
            None => String::new(),
            Some(toml::Value::String(d)) if d.chars().count() <= max_chars => d.clone(),
            Some(_) => {
                return Err(format!(
                    "default must be text of at most {max_chars} characters"
                ))
            }
        };
        return Ok(ParamSpec::Text { max_chars, default });
    }
    match (&raw.min, &raw.max, &raw.default) {
        (None, None, Some(toml::Value::Boolean(default))) => {
            Ok(ParamSpec::Bool { default: *default })
        }
        (
            Some(toml::Value::Integer(min)),
            Some(toml::Value::Integer(max)),
            Some(toml::Value::String(random)),
        ) if random == "random" => {
            if max < min {
                return Err(format!("max ({max}) < min ({min})"));
            }
            Ok(ParamSpec::RandomInt {
                min: *min,
                max: *max,
            })
        }
        (Some(toml::Value::Integer(min)), Some(toml::Value::Integer(max)), default) => {
            if max < min {
                return Err(format!("max ({max}) < min ({min})"));
            }
            let default = match default {
                None => *min,
                Some(toml::Value::Integer(d)) if (min..=max).contains(&d) => *d,
                Some(d) => return Err(format!("default ({d}) is outside {min}..={max}")),
            };
            Ok(ParamSpec::Int {
                min: *min,
                max: *max,
                default,
            })
        }
        (Some(min), Some(max), default) => {
            let number =
                |v: &toml::Value| v.as_float().or_else(|| v.as_integer().map(|i| i as f64));
            let (Some(min), Some(max)) = (number(min), number(max)) else {
                return Err("min and max must be numbers".into());
            };
            // TOML reads `nan` and `inf` as floats: no range a user could pick from.
            if let Some(bad) = [("min", min), ("max", max)]
                .into_iter()
                .find(|(_, v)| !v.is_finite())
            {
                return Err(format!("{} ({}) must be a finite number", bad.0, bad.1));
            }
            if max < min {
                return Err(format!("max ({max}) < min ({min})"));
            }
            let default = match default.as_ref().map(number) {
                None => min,
                Some(Some(d)) if min <= d && d <= max => d,
                Some(Some(d)) if !d.is_finite() => {
                    return Err(format!("default ({d}) must be a finite number"))
                }
                Some(_) => return Err(format!("default is outside {min}..={max}")),
            };
            Ok(ParamSpec::Float { min, max, default })
        }
        _ => Err(
            "expected { min, max, default }, { min, max, default = \"random\" }, { choices, default }, { max_chars, default } or { default = true|false }"
                .into(),
        ),
    }
}
