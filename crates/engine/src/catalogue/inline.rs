//! Options written into a prompt: `a castle at dusk --ar 16:9 --seed 42 --no people`.
//!
//! A flag starts with `--` (or `—`, which phones make of `--`) and names a model input, by its
//! name or a short alias (`--ar`, `--steps`, `--guidance`, `--no`, `--w`, `--h`); its value is
//! every word up to the next flag. Each value is checked against the model's allowed values, so
//! a typo is refused with what the model accepts instead of being drawn into the picture.

use serde_json::{Map, Value};

use super::{Model, ParamError, ParamSpec};

/// Short names users type, and the inputs each may mean (the first the model has wins).
const ALIASES: &[(&str, &[&str])] = &[
    ("ar", &["aspect_ratio"]),
    ("steps", &["num_inference_steps"]),
    ("guidance", &["guidance", "guidance_scale"]),
    ("cfg", &["guidance_scale", "guidance"]),
    ("no", &["negative_prompt"]),
    ("w", &["width"]),
    ("h", &["height"]),
    ("format", &["output_format"]),
];

/// Why the options in a prompt were refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InlineError {
    #[error("--{flag} is not an option of {model} (its options: {})", allowed.join(", "))]
    Unknown {
        flag: String,
        model: String,
        allowed: Vec<String>,
    },
    #[error("--{flag} needs a value ({allowed})")]
    MissingValue { flag: String, allowed: String },
    #[error("--{flag} {value}: {allowed}")]
    Invalid {
        flag: String,
        value: String,
        allowed: String,
    },
}

/// A prompt with its options taken out.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct InlineOptions {
    /// The description to draw.
    pub prompt: String,
    /// The model's inputs the prompt set, checked.
    pub params: Map<String, Value>,
}

fn flag_of(word: &str) -> Option<&str> {
    let name = word.strip_prefix("--").or_else(|| word.strip_prefix('—'))?;
    name.starts_with(|c: char| c.is_ascii_alphabetic())
        .then_some(name)
}

/// The input `flag` names on `model`.
fn resolve<'m>(model: &'m Model, flag: &str) -> Option<(&'m String, &'m ParamSpec)> {
    let flag = flag.to_ascii_lowercase();
    if let Some(found) = model.params.get_key_value(flag.as_str()) {
        return Some(found);
    }
    ALIASES
        .iter()
        .filter(|(alias, _)| *alias == flag)
        .flat_map(|(_, names)| names.iter())
        .find_map(|name| model.params.get_key_value(*name))
}

/// What users may type for `model`: aliases where one fits, else the input's name.
pub fn flags_of(model: &Model) -> Vec<String> {
    model
        .params
        .keys()
        .map(|name| {
            ALIASES
                .iter()
                .find(|(alias, _)| {
                    resolve(model, alias).is_some_and(|(resolved, _)| resolved == name)
                })
                .map_or_else(|| name.clone(), |(alias, _)| (*alias).to_owned())
        })
        .map(|flag| format!("--{flag}"))
        .collect()
}

/// Takes `model`'s options out of `text`.
///
/// # Errors
/// The first flag that is unknown, has no value, or whose value the model does not allow.
pub fn parse(model: &Model, text: &str) -> Result<InlineOptions, InlineError> {
    let mut prompt: Vec<&str> = Vec::new();
    let mut params = Map::new();
    let mut words = text.split_whitespace().peekable();
    while let Some(word) = words.next() {
        let Some(flag) = flag_of(word) else {
            prompt.push(word);
            continue;
        };
        let (name, spec) = resolve(model, flag).ok_or_else(|| InlineError::Unknown {
            flag: flag.to_owned(),
            model: model.name.clone(),
            allowed: flags_of(model),
        })?;
        let mut value: Vec<&str> = Vec::new();
        while let Some(next) = words.next_if(|w| flag_of(w).is_none()) {
            value.push(next);
            // Only free text takes several words; the rest of the words are the prompt.
            if !matches!(spec, ParamSpec::Text { .. }) {
                break;
            }
        }
        if value.is_empty() {
            return Err(InlineError::MissingValue {
                flag: flag.to_owned(),
                allowed: spec.allowed(),
            });
        }
        let value = value.join(" ");
        let checked =
            spec.check(name, &spec.value_from_text(&value))
                .map_err(|_: ParamError| InlineError::Invalid {
                    flag: flag.to_owned(),
                    value: value.clone(),
                    allowed: spec.allowed(),
                })?;
        params.insert(name.clone(), checked);
    }
    Ok(InlineOptions {
        prompt: prompt.join(" "),
        params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::Catalogue;

    fn model(id: &str) -> Model {
        Catalogue::load(None, "flux-schnell")
            .unwrap()
            .get(id)
            .unwrap()
            .clone()
    }

    #[test]
    fn flags_are_taken_out_and_checked() {
        let flux = model("flux-schnell");
        let parsed = parse(&flux, "a castle at dusk --ar 16:9 --seed 42 in fog").unwrap();
        assert_eq!(parsed.prompt, "a castle at dusk in fog");
        assert_eq!(parsed.params["aspect_ratio"], "16:9");
        assert_eq!(parsed.params["seed"], 42);
        let phone = parse(&flux, "a fox —ar 9:16 —steps 2").unwrap();
        assert_eq!(
            (phone.prompt.as_str(), &phone.params["num_inference_steps"]),
            ("a fox", &Value::from(2))
        );
        assert_eq!(
            parse(&flux, "no flags — just text").unwrap().params.len(),
            0
        );
    }

    #[test]
    fn free_text_takes_every_word_up_to_the_next_flag() {
        let sdxl = model("sdxl");
        let parsed = parse(&sdxl, "a harbour --no people, boats --cfg 9").unwrap();
        assert_eq!(parsed.params["negative_prompt"], "people, boats");
        assert_eq!(parsed.params["guidance_scale"], 9.0);
    }

    #[test]
    fn refusals_say_what_is_allowed() {
        let flux = model("flux-schnell");
        let error = parse(&flux, "a fox --ar 5:4").unwrap_err().to_string();
        assert!(
            error.contains("--ar 5:4") && error.contains("16:9"),
            "{error}"
        );
        let error = parse(&flux, "a fox --seed").unwrap_err().to_string();
        assert!(error.contains("needs a value"), "{error}");
        let error = parse(&flux, "a fox --no people").unwrap_err().to_string();
        assert!(
            error.contains("--no is not an option") && error.contains("--ar"),
            "{error}"
        );
        let error = parse(&flux, "a fox --steps 9").unwrap_err().to_string();
        assert!(error.contains("from 1 to 4"), "{error}");
    }

    /// A prompt as users type it: any Unicode, with what options are made of weighted in
    /// (flags and their dashes, numbers, ratios) and what broke text parsers elsewhere
    /// (whitespace of every class, zero-width and RTL marks, combining marks, emoji, controls),
    /// up to Telegram's 4096 characters.
    fn typed_prompt() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let piece = prop_oneof![
            3 => any::<char>().prop_map(String::from),
            2 => prop::sample::select(vec![
                "--", "—", "--ar", "—ar", "--seed", "--steps", "--no", "--cfg", "--w", "--AR",
                "16:9", "9:16", "42", "-1", "1e309", "NaN", " ", "\t", "\n", "\u{a0}",
                "\u{3000}", "\u{2003}", "\u{200b}", "\u{200d}", "\u{200f}", "\u{202e}",
                "e\u{301}", "🦊\u{200d}🔥", "\u{0}", "\u{7f}", "кот", "猫",
            ])
            .prop_map(String::from),
        ];
        prop::collection::vec(piece, 0..64)
            .prop_map(|pieces| pieces.concat().chars().take(4096).collect())
    }

    proptest::proptest! {
        /// Every model's options parse any prompt without panicking; what is taken out is
        /// checked, and what is left is words of the prompt.
        #[test]
        fn any_prompt_parses_for_every_model(text in typed_prompt()) {
            let catalogue = Catalogue::load(None, "flux-schnell").unwrap();
            for model in catalogue.models() {
                if let Ok(parsed) = parse(model, &text) {
                    for word in parsed.prompt.split_whitespace() {
                        proptest::prop_assert!(text.split_whitespace().any(|w| w == word));
                    }
                    for (name, value) in &parsed.params {
                        let rechecked = model.params[name].check(name, value);
                        proptest::prop_assert_eq!(rechecked.as_ref(), Ok(value));
                    }
                }
                let _ = crate::engine::says_nothing(&text);
            }
        }

        /// A value typed for any input (an option, or a /settings button's data) is read and
        /// checked without panicking.
        #[test]
        fn any_value_is_read_and_checked(text in typed_prompt()) {
            let catalogue = Catalogue::load(None, "flux-schnell").unwrap();
            for model in catalogue.models() {
                for (name, spec) in &model.params {
                    let _ = spec.check(name, &spec.value_from_text(&text));
                }
            }
        }
    }
}
