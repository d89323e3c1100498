//! The conversation the black-box suite simulates (`--scenario FILE`, TOML), and the limits the
//! bot claims so they can be checked from outside. genbot's own flow is the default.
//!
//! ```toml
//! name = "my aiogram bot"              # names the bot in the report
//! token = "123456:TEST"                # the token the bot is started with (any well-formed one)
//! startup_timeout_s = 30               # until it polls or sets a webhook (its waits for a CPU
//!                                      # not counted, at most 10x this of wall time)
//! stop_grace_s = 10                    # SIGTERM, then SIGKILL after this
//!
//! [env]                                # the names the bot reads (these are the defaults)
//! telegram_api_url = "TELEGRAM_API_URL"
//! telegram_bot_token = "TELEGRAM_BOT_TOKEN"
//! replicate_api_url = "REPLICATE_API_URL"
//! replicate_api_token = "REPLICATE_API_TOKEN"
//! extra = { LOG_LEVEL = "warning" }    # set as given
//!
//! [limits]                             # what the bot claims; each is checked when given
//! max_concurrent_generations = 10
//! max_concurrent_generations_per_user = 2
//! replicate_rate_limit = 600           # creations per minute
//! queue_max_length = 1000
//! models = ["black-forest-labs/flux-schnell"]   # a pinned version: "version/<first 12 chars>"
//!
//! [[step]]
//! send = "/start"
//! expect = { text = "(?i)welcome", within_s = 10 }
//! think_s = 0.5
//!
//! [[step]]
//! press = "(?i)flux"                   # the inline button whose text matches
//! expect = { edit = "(?i)chosen" }
//!
//! [[step]]
//! photo = { caption = "make it blue" } # a photo with a caption
//! expect = { photo = "", within_s = 60 }
//!
//! [[step]]
//! send = "/buy"
//! expect = { text = "" }
//! [[step]]
//! press = "(?i)credits"
//! expect = { invoice = "(?i)credits" }   # sendInvoice; matched against its title
//! [[step]]
//! pay = true                           # pay the bot's latest invoice in Telegram Stars
//! expect = { text = "(?i)thank" }      # the bot must say yes at checkout, then answer the payment
//!
//! [generation]                         # the message that makes one image (load tests)
//! send = "a lighthouse at dawn {n}"    # {n}: a counter, {user}: the user's id
//! within_s = 60
//! ```

use std::path::Path;
use std::time::Duration;

use regex::Regex;
use serde::Deserialize;

use genbot_config::Settings;

/// Why a scenario file is refused: which file, which step, which field.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read the scenario {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("scenario {path}: {message}")]
    Syntax { path: String, message: String },
    #[error("scenario {path}: step {step}, field `{field}`: {reason}")]
    Step {
        path: String,
        step: usize,
        field: &'static str,
        reason: String,
    },
    #[error("scenario {path}: field `{field}`: {reason}")]
    Field {
        path: String,
        field: &'static str,
        reason: String,
    },
}

/// A validated scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Names the bot in reports.
    pub name: String,
    pub token: String,
    pub startup_timeout: Duration,
    pub stop_grace: Duration,
    pub env: EnvNames,
    pub steps: Vec<Step>,
    /// The message that makes one image; `None` when the scenario has none (the load tests
    /// that count images then say they were not run).
    pub generation: Option<Generation>,
    pub limits: ClaimedLimits,
}

/// The environment variable names the bot reads its four values from, and extra variables.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnvNames {
    pub telegram_api_url: String,
    pub telegram_bot_token: String,
    pub replicate_api_url: String,
    pub replicate_api_token: String,
    pub extra: std::collections::BTreeMap<String, String>,
}

impl Default for EnvNames {
    fn default() -> Self {
        EnvNames {
            telegram_api_url: "TELEGRAM_API_URL".into(),
            telegram_bot_token: "TELEGRAM_BOT_TOKEN".into(),
            replicate_api_url: "REPLICATE_API_URL".into(),
            replicate_api_token: "REPLICATE_API_TOKEN".into(),
            extra: Default::default(),
        }
    }
}

/// Limits the bot claims; a check whose limit is not claimed says it was not run.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimedLimits {
    pub max_concurrent_generations: Option<u32>,
    pub max_concurrent_generations_per_user: Option<u32>,
    /// Creations per minute.
    pub replicate_rate_limit: Option<u32>,
    pub queue_max_length: Option<u32>,
    /// Models (`owner/name`) the bot may ask Replicate for.
    pub models: Option<Vec<String>>,
}

/// One step of a simulated user's session.
#[derive(Debug, Clone)]
pub struct Step {
    pub action: Action,
    pub expect: Option<Expect>,
    pub think: Duration,
}

#[derive(Debug, Clone)]
pub enum Action {
    /// Send this text (`{n}` and `{user}` are filled in).
    Send(String),
    /// Press the inline button whose text matches, under the bot's latest message that has one.
    Press(Regex),
    /// Send a photo with this caption (or none).
    Photo { caption: Option<String> },
    /// Pay the bot's latest invoice: a `pre_checkout_query`, then, if the bot says ok, the
    /// `successful_payment` message.
    Pay,
}

/// What the bot must do after a step, within a time.
#[derive(Debug, Clone)]
pub struct Expect {
    pub kind: Answer,
    /// Matched against the text, the caption or the edited text; `None` accepts any.
    pub pattern: Option<Regex>,
    pub within: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Text,
    Photo,
    Edit,
    /// An invoice (`sendInvoice`), matched against its title.
    Invoice,
}

/// The message that makes one image, and how long the image may take.
#[derive(Debug, Clone)]
pub struct Generation {
    pub send: String,
    pub within: Duration,
}

impl Generation {
    /// The prompt for user `user`'s `n`th generation.
    pub fn prompt(&self, user: i64, n: u64) -> String {
        fill(&self.send, user, n)
    }
}

/// `{n}` and `{user}` filled in.
pub fn fill(text: &str, user: i64, n: u64) -> String {
    text.replace("{n}", &n.to_string())
        .replace("{user}", &user.to_string())
}

const DEFAULT_WITHIN_S: f64 = 10.0;
const DEFAULT_GENERATION_WITHIN_S: f64 = 60.0;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    name: Option<String>,
    token: Option<String>,
    startup_timeout_s: Option<f64>,
    stop_grace_s: Option<f64>,
    #[serde(default)]
    env: EnvNames,
    #[serde(default)]
    limits: ClaimedLimits,
    #[serde(default)]
    step: Vec<StepFile>,
    generation: Option<GenerationFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StepFile {
    send: Option<String>,
    press: Option<String>,
    photo: Option<PhotoFile>,
    pay: Option<bool>,
    expect: Option<ExpectFile>,
    think_s: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PhotoFile {
    caption: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectFile {
    text: Option<String>,
    photo: Option<String>,
    edit: Option<String>,
    invoice: Option<String>,
    within_s: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GenerationFile {
    send: String,
    within_s: Option<f64>,
}

impl Scenario {
    /// genbot's own flow: /start, /models, /balance, a prompt answered with a photo, then, when
    /// the settings sell credits (`STARS_PACKAGES`), /buy → a package → paying the invoice; the
    /// limits claimed are the settings' (the environment the suite runs in, as genbot reads it).
    pub fn genbot(settings: &Settings) -> Scenario {
        let step = |action: Action, kind: Answer, pattern: Option<Regex>| Step {
            action,
            expect: Some(Expect {
                kind,
                pattern,
                within: Duration::from_secs_f64(DEFAULT_WITHIN_S),
            }),
            think: Duration::from_millis(200),
        };
        let text = |send: &str| step(Action::Send(send.into()), Answer::Text, None);
        let generation = Generation {
            send: "a lighthouse at dawn {n}".into(),
            within: Duration::from_secs_f64(DEFAULT_GENERATION_WITHIN_S),
        };
        let mut scenario = Scenario {
            name: "genbot's flow (the default scenario)".into(),
            token: "123456:genbot-bench".into(),
            startup_timeout: Duration::from_secs(30),
            stop_grace: Duration::from_secs(10),
            env: EnvNames::default(),
            steps: vec![
                text("/start"),
                text("/models"),
                text("/balance"),
                Step {
                    action: Action::Send(generation.send.clone()),
                    expect: Some(Expect {
                        kind: Answer::Photo,
                        pattern: None,
                        within: generation.within,
                    }),
                    think: Duration::ZERO,
                },
            ],
            generation: Some(generation),
            limits: ClaimedLimits {
                max_concurrent_generations: Some(settings.max_concurrent_generations),
                max_concurrent_generations_per_user: Some(
                    settings.max_concurrent_generations_per_user,
                ),
                replicate_rate_limit: Some(settings.replicate_rate_limit_per_min),
                queue_max_length: Some(settings.queue_max_length),
                models: genbot_models(settings),
            },
        };
        // Patterns that hold in both languages: the offer names Telegram Stars, the package
        // buttons carry ⭐, the receipt "+N". A user looks at the image, the packages and the
        // invoice for a second each, as Telegram's one message a second per chat expects.
        if let (false, Ok(offer), Ok(package), Ok(receipt)) = (
            settings.stars_packages.is_empty(),
            Regex::new("Telegram Stars"),
            Regex::new("⭐"),
            Regex::new(r"\+\d+"),
        ) {
            let reading = Duration::from_secs(2);
            if let Some(image) = scenario.steps.last_mut() {
                image.think = reading;
            }
            scenario.steps.extend([
                Step {
                    think: reading,
                    ..step(Action::Send("/buy".into()), Answer::Text, Some(offer))
                },
                Step {
                    think: reading,
                    ..step(Action::Press(package), Answer::Invoice, None)
                },
                step(Action::Pay, Answer::Text, Some(receipt)),
            ]);
        }
        scenario
    }

    /// Reads and validates a scenario file.
    ///
    /// # Errors
    /// The file cannot be read, is not TOML of this shape, or a step or field is invalid.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: shown.clone(),
            source,
        })?;
        Scenario::parse(&text, &shown)
    }

    /// Validates scenario text; `path` names it in errors.
    ///
    /// # Errors
    /// As [`Scenario::load`].
    pub fn parse(text: &str, path: &str) -> Result<Scenario, ScenarioError> {
        let file: File = toml::from_str(text).map_err(|e| ScenarioError::Syntax {
            path: path.into(),
            message: e.to_string().trim().replace('\n', " "),
        })?;
        let field = |field: &'static str, reason: String| ScenarioError::Field {
            path: path.into(),
            field,
            reason,
        };
        let token = file.token.unwrap_or_else(|| "123456:genbot-bench".into());
        if !valid_token(&token) {
            return Err(field(
                "token",
                format!("{token:?} is not shaped like a bot token (digits, ':', then letters, digits, '_' or '-')"),
            ));
        }
        let startup_timeout = seconds(file.startup_timeout_s, 30.0)
            .map_err(|reason| field("startup_timeout_s", reason))?;
        let stop_grace =
            seconds(file.stop_grace_s, 10.0).map_err(|reason| field("stop_grace_s", reason))?;
        for (name, value) in [
            ("env.telegram_api_url", &file.env.telegram_api_url),
            ("env.telegram_bot_token", &file.env.telegram_bot_token),
            ("env.replicate_api_url", &file.env.replicate_api_url),
            ("env.replicate_api_token", &file.env.replicate_api_token),
        ] {
            if !valid_env_name(value) {
                return Err(field(
                    name,
                    format!("{value:?} is not an environment variable name (letters, digits, '_')"),
                ));
            }
        }
        if let Some(bad) = file.env.extra.keys().find(|k| !valid_env_name(k)) {
            return Err(field(
                "env.extra",
                format!("{bad:?} is not an environment variable name"),
            ));
        }
        check_limits(&file.limits).map_err(|(name, reason)| field(name, reason))?;
        if file.step.is_empty() {
            return Err(field(
                "step",
                "the scenario has no [[step]]; add at least one, e.g. send = \"/start\"".into(),
            ));
        }
        let steps = file
            .step
            .into_iter()
            .enumerate()
            .map(|(index, step)| {
                step_from(step).map_err(|(field, reason)| ScenarioError::Step {
                    path: path.into(),
                    step: index + 1,
                    field,
                    reason,
                })
            })
            .collect::<Result<Vec<Step>, _>>()?;
        let generation = match file.generation {
            Some(g) => Some(Generation {
                send: g.send,
                within: seconds(g.within_s, DEFAULT_GENERATION_WITHIN_S)
                    .map_err(|reason| field("generation.within_s", reason))?,
            }),
            None => steps
                .iter()
                .rev()
                .find_map(|step| match (&step.action, &step.expect) {
                    (Action::Send(send), Some(expect)) if expect.kind == Answer::Photo => {
                        Some(Generation {
                            send: send.clone(),
                            within: expect.within,
                        })
                    }
                    _ => None,
                }),
        };
        Ok(Scenario {
            name: file.name.unwrap_or_else(|| path.into()),
            token,
            startup_timeout,
            stop_grace,
            env: file.env,
            steps,
            generation,
            limits: file.limits,
        })
    }
}

/// The enabled models of the catalogue genbot would load, as the Replicate mock names them
/// (`owner/name`, or `version/` and a version's first 12 characters).
fn genbot_models(settings: &Settings) -> Option<Vec<String>> {
    use genbot_engine::catalogue::{Catalogue, ModelRef};
    let catalogue =
        Catalogue::load(settings.models_file.as_deref(), &settings.default_model).ok()?;
    Some(
        catalogue
            .enabled()
            .map(|model| match &model.replicate {
                ModelRef::Official { owner, name } => format!("{owner}/{name}"),
                ModelRef::Version(hash) => format!("version/{}", &hash[..hash.len().min(12)]),
            })
            .collect(),
    )
}

fn step_from(step: StepFile) -> Result<Step, (&'static str, String)> {
    if step.pay == Some(false) {
        return Err((
            "pay",
            "pay = true pays the bot's latest invoice; leave it out otherwise".into(),
        ));
    }
    let action = match (step.send, step.press, step.photo, step.pay) {
        (Some(send), None, None, None) if !send.is_empty() => Action::Send(send),
        (Some(_), None, None, None) => return Err(("send", "the text to send is empty".into())),
        (None, Some(press), None, None) => Action::Press(
            Regex::new(&press).map_err(|e| ("press", format!("not a regular expression: {e}")))?,
        ),
        (None, None, Some(photo), None) => Action::Photo {
            caption: photo.caption,
        },
        (None, None, None, Some(_)) => Action::Pay,
        (None, None, None, None) => return Err((
            "send",
            "a step needs one action: send = \"…\", press = \"…\", photo = { caption = \"…\" } or pay = true"
                .into(),
        )),
        _ => {
            return Err((
                "send",
                "a step has one action: only one of send, press, photo and pay".into(),
            ))
        }
    };
    let expect = step.expect.map(expect_from).transpose()?;
    let think = seconds(step.think_s, 0.0).map_err(|reason| ("think_s", reason))?;
    Ok(Step {
        action,
        expect,
        think,
    })
}

fn expect_from(expect: ExpectFile) -> Result<Expect, (&'static str, String)> {
    let (kind, name, pattern) =
        match (expect.text, expect.photo, expect.edit, expect.invoice) {
            (Some(p), None, None, None) => (Answer::Text, "expect.text", p),
            (None, Some(p), None, None) => (Answer::Photo, "expect.photo", p),
            (None, None, Some(p), None) => (Answer::Edit, "expect.edit", p),
            (None, None, None, Some(p)) => (Answer::Invoice, "expect.invoice", p),
            _ => return Err((
                "expect",
                "give exactly one of text, photo, edit or invoice (a regular expression; \"\" accepts any)"
                    .into(),
            )),
        };
    let pattern = if pattern.is_empty() {
        None
    } else {
        Some(Regex::new(&pattern).map_err(|e| (name, format!("not a regular expression: {e}")))?)
    };
    let default = if kind == Answer::Photo {
        DEFAULT_GENERATION_WITHIN_S
    } else {
        DEFAULT_WITHIN_S
    };
    let within = seconds(expect.within_s, default).map_err(|reason| ("expect.within_s", reason))?;
    Ok(Expect {
        kind,
        pattern,
        within,
    })
}

fn check_limits(limits: &ClaimedLimits) -> Result<(), (&'static str, String)> {
    for (name, value) in [
        (
            "limits.max_concurrent_generations",
            limits.max_concurrent_generations,
        ),
        (
            "limits.max_concurrent_generations_per_user",
            limits.max_concurrent_generations_per_user,
        ),
        ("limits.replicate_rate_limit", limits.replicate_rate_limit),
        ("limits.queue_max_length", limits.queue_max_length),
    ] {
        if value == Some(0) {
            return Err((
                name,
                "0 is not a limit; leave it out if the bot has none".into(),
            ));
        }
    }
    Ok(())
}

/// Seconds from 0 to one hour; `default` when not given.
fn seconds(value: Option<f64>, default: f64) -> Result<Duration, String> {
    let value = value.unwrap_or(default);
    if !(0.0..=3600.0).contains(&value) {
        return Err(format!(
            "{value} is out of range: give seconds from 0 to 3600"
        ));
    }
    Ok(Duration::from_secs_f64(value))
}

fn valid_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn valid_token(token: &str) -> bool {
    token.split_once(':').is_some_and(|(id, secret)| {
        !id.is_empty()
            && id.chars().all(|c| c.is_ascii_digit())
            && !secret.is_empty()
            && secret
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_scenario_is_read() {
        let scenario = Scenario::parse(
            r#"
            name = "echo"
            [limits]
            max_concurrent_generations = 4
            models = ["a/b"]
            [[step]]
            send = "/start"
            expect = { text = "(?i)hello" }
            think_s = 0.5
            [[step]]
            press = "Flux"
            [[step]]
            send = "draw {n}"
            expect = { photo = "", within_s = 30 }
            "#,
            "echo.toml",
        )
        .expect("valid");
        assert_eq!(scenario.name, "echo");
        assert_eq!(scenario.steps.len(), 3);
        assert_eq!(scenario.limits.max_concurrent_generations, Some(4));
        let generation = scenario.generation.expect("the photo step");
        assert_eq!(generation.prompt(7, 3), "draw 3");
        assert_eq!(generation.within, Duration::from_secs(30));
        assert_eq!(scenario.env.telegram_api_url, "TELEGRAM_API_URL");
    }

    #[test]
    fn bad_steps_are_named_with_their_field() {
        let cases = [
            (
                "[[step]]\nsend = \"a\"\npress = \"b\"",
                "step 1, field `send`",
            ),
            (
                "[[step]]\nsend = \"a\"\n[[step]]\npress = \"(\"",
                "step 2, field `press`",
            ),
            (
                "[[step]]\nsend = \"a\"\nexpect = { text = \"[\" }",
                "step 1, field `expect.text`",
            ),
            (
                "[[step]]\nsend = \"a\"\nexpect = { text = \"a\", photo = \"\" }",
                "step 1, field `expect`",
            ),
            (
                "[[step]]\nsend = \"a\"\nthink_s = -1",
                "step 1, field `think_s`",
            ),
            ("[[step]]\nsned = \"a\"", "unknown field `sned`"),
            ("[[step]]\npay = false", "step 1, field `pay`"),
            (
                "[[step]]\nsend = \"/buy\"\npay = true",
                "only one of send, press, photo and pay",
            ),
            (
                "[[step]]\npay = true\nexpect = { invoice = \"(\" }",
                "step 1, field `expect.invoice`",
            ),
            ("token = \"abc\"\n[[step]]\nsend = \"a\"", "field `token`"),
            (
                "[limits]\nmax_concurrent_generations = 0\n[[step]]\nsend = \"a\"",
                "field `limits.max_concurrent_generations`",
            ),
            (
                "[env]\ntelegram_api_url = \"API URL\"\n[[step]]\nsend = \"a\"",
                "field `env.telegram_api_url`",
            ),
            ("name = \"x\"", "field `step`"),
        ];
        for (text, wanted) in cases {
            let error = Scenario::parse(text, "s.toml").expect_err(text).to_string();
            assert!(error.contains(wanted), "{text:?} → {error}");
            assert!(error.starts_with("scenario s.toml"), "{error}");
        }
    }

    #[test]
    fn the_default_is_genbots_flow_with_the_settings_limits() {
        let settings =
            Settings::from_sources(&genbot_config::Sources::from_env(Default::default()))
                .expect("defaults");
        let scenario = Scenario::genbot(&settings);
        assert!(!settings.stars_packages.is_empty(), "Stars sold by default");
        assert_eq!(scenario.steps.len(), 7);
        assert!(matches!(scenario.steps[6].action, Action::Pay));
        assert_eq!(
            scenario.limits.max_concurrent_generations,
            Some(settings.max_concurrent_generations)
        );
        assert!(scenario.generation.is_some());
    }
}
