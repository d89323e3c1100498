//! A model input's allowed values, and checking a value against them.

use serde_json::Value;

/// The allowed values of one model input, with its default.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamSpec {
    Int {
        min: i64,
        max: i64,
        default: i64,
    },
    Float {
        min: f64,
        max: f64,
        default: f64,
    },
    Choice {
        choices: Vec<String>,
        default: String,
    },
    Bool {
        default: bool,
    },
    /// A whole number picked at random for each job unless the user sets it (`seed`): the
    /// job keeps the value it ran with, so "same seed" can run it again.
    RandomInt {
        min: i64,
        max: i64,
    },
    /// Free text up to `max_chars` (`negative_prompt`).
    Text {
        max_chars: usize,
        default: String,
    },
}

/// Why a requested input value was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParamError {
    #[error("unknown parameter `{name}` (allowed: {})", allowed.join(", "))]
    Unknown { name: String, allowed: Vec<String> },
    #[error("{name}={value} is not allowed: {allowed}")]
    OutOfRange {
        name: String,
        value: String,
        allowed: String,
    },
}

impl ParamSpec {
    /// The value a job gets when the user sets none (a fresh one each call for random ones).
    pub fn default_value(&self) -> Value {
        match self {
            ParamSpec::Int { default, .. } => Value::from(*default),
            ParamSpec::Float { default, .. } => Value::from(*default),
            ParamSpec::Choice { default, .. } => Value::from(default.clone()),
            ParamSpec::Bool { default } => Value::from(*default),
            ParamSpec::RandomInt { min, max } => Value::from(rand::random_range(*min..=*max)),
            ParamSpec::Text { default, .. } => Value::from(default.clone()),
        }
    }

    /// A value typed as text (`16:9`, `42`, `3,5`, `yes`), read as this input's type; checked
    /// separately with [`ParamSpec::check`].
    pub fn value_from_text(&self, text: &str) -> Value {
        match self {
            ParamSpec::Int { .. } | ParamSpec::RandomInt { .. } => text
                .parse::<i64>()
                .map_or_else(|_| Value::from(text), Value::from),
            ParamSpec::Float { .. } => text
                .replace(',', ".")
                .parse::<f64>()
                .map_or_else(|_| Value::from(text), Value::from),
            ParamSpec::Bool { .. } => match text.to_ascii_lowercase().as_str() {
                "true" | "yes" | "on" | "1" => Value::from(true),
                "false" | "no" | "off" | "0" => Value::from(false),
                _ => Value::from(text),
            },
            ParamSpec::Choice { choices, .. } => Value::from(
                choices
                    .iter()
                    .find(|c| c.eq_ignore_ascii_case(text))
                    .map_or(text, String::as_str),
            ),
            ParamSpec::Text { .. } => Value::from(text),
        }
    }

    /// What is allowed, in words.
    pub fn allowed(&self) -> String {
        match self {
            ParamSpec::Int { min, max, .. } => format!("a whole number from {min} to {max}"),
            ParamSpec::Float { min, max, .. } => format!("a number from {min} to {max}"),
            ParamSpec::Choice { choices, .. } => format!("one of {}", choices.join(", ")),
            ParamSpec::Bool { .. } => "true or false".to_owned(),
            ParamSpec::RandomInt { min, max } => {
                format!("a whole number from {min} to {max} (random when not set)")
            }
            ParamSpec::Text { max_chars, .. } => format!("text of at most {max_chars} characters"),
        }
    }

    /// `value` if allowed, normalized; else why not.
    ///
    /// # Errors
    /// [`ParamError::OutOfRange`] with what is allowed.
    pub fn check(&self, name: &str, value: &Value) -> Result<Value, ParamError> {
        let accepted = match self {
            ParamSpec::Int { min, max, .. } | ParamSpec::RandomInt { min, max } => value
                .as_i64()
                .filter(|v| (*min..=*max).contains(v))
                .map(Value::from),
            ParamSpec::Text { max_chars, .. } => value
                .as_str()
                .filter(|v| v.chars().count() <= *max_chars)
                .map(Value::from),
            ParamSpec::Float { min, max, .. } => value
                .as_f64()
                .filter(|v| *min <= *v && *v <= *max)
                .map(Value::from),
            ParamSpec::Choice { choices, .. } => value
                .as_str()
                .filter(|v| choices.iter().any(|c| c == v))
                .map(Value::from),
            ParamSpec::Bool { .. } => value.as_bool().map(Value::from),
        };
        accepted.ok_or_else(|| ParamError::OutOfRange {
            name: name.to_owned(),
            value: value.to_string(),
            allowed: self.allowed(),
        })
    }
}
