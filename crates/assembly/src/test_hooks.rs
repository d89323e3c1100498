//! Test hooks: deliberate flaws the suite's own tests arm in a `genbot serve` child process.
//! They are not part of the command line; the binary reads them from the environment, and only
//! when `GENBOT_TEST_HOOKS=1` says they are wanted:
//!
//! | variable | effect | range |
//! |---|---|---|
//! | `GENBOT_TEST_SLOW_HANDLERS_MS` | every message handler waits this long first (a slowed build, for showing that `bench compare` catches a regression, and for the shutdown grace's tests) | 0–10,000 |
//! | `GENBOT_TEST_HOLD_WEBHOOK_UPDATES_MS` | every update received on the webhook waits this long before it is recorded (a window for killing a replica between receiving and recording) | 0–60,000 |
//! | `GENBOT_TEST_POISON_TEXT` | a message whose text is exactly this makes its handler panic, every time (a poison update, for the dead letters' tests) | any text; empty = none |
//!
//! Without the switch the variables are ignored (with a warning), so a stray one in a
//! deployment's environment cannot slow the bot.

use std::time::Duration;

use genbot_telegram::FrontConfig;

/// The switch: the hooks below are read only when it is `1`.
pub const SWITCH: &str = "GENBOT_TEST_HOOKS";
/// Milliseconds every message handler waits first.
pub const SLOW_HANDLERS_MS: &str = "GENBOT_TEST_SLOW_HANDLERS_MS";
/// Milliseconds every webhook update waits before it is recorded.
pub const HOLD_WEBHOOK_UPDATES_MS: &str = "GENBOT_TEST_HOLD_WEBHOOK_UPDATES_MS";
/// The text of a message whose handler panics.
pub const POISON_TEXT: &str = "GENBOT_TEST_POISON_TEXT";

/// The hooks armed; none by default (production).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TestHooks {
    /// Every message handler first waits this long.
    pub slow_handlers: Duration,
    /// Every update received on the webhook waits this long before it is recorded.
    pub hold_webhook_updates: Duration,
    /// A message whose text is exactly this makes its handler panic.
    pub poison: Option<String>,
}

/// A hook variable whose value is not allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}={value:?}: expected whole milliseconds from 0 to {max}")]
pub struct TestHookError {
    pub variable: &'static str,
    pub value: String,
    pub max: u64,
}

impl TestHooks {
    /// The hooks `var` (the environment's lookup) arms; none unless [`SWITCH`] is `1`.
    ///
    /// # Errors
    /// With the switch on, a hook variable that is not a whole number of milliseconds in its
    /// range.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<TestHooks, TestHookError> {
        let hooks = [SLOW_HANDLERS_MS, HOLD_WEBHOOK_UPDATES_MS, POISON_TEXT];
        if var(SWITCH).as_deref() != Some("1") {
            for name in hooks.into_iter().filter(|name| var(name).is_some()) {
                tracing::warn!(
                    variable = name,
                    "a test hook is set without {SWITCH}=1; ignored"
                );
            }
            return Ok(TestHooks::default());
        }
        let millis = |variable: &'static str, max: u64| match var(variable) {
            None => Ok(Duration::ZERO),
            Some(value) => match value.trim().parse::<u64>() {
                Ok(ms) if ms <= max => Ok(Duration::from_millis(ms)),
                _ => Err(TestHookError {
                    variable,
                    value,
                    max,
                }),
            },
        };
        Ok(TestHooks {
            slow_handlers: millis(SLOW_HANDLERS_MS, 10_000)?,
            hold_webhook_updates: millis(HOLD_WEBHOOK_UPDATES_MS, 60_000)?,
            poison: var(POISON_TEXT).filter(|text| !text.is_empty()),
        })
    }

    /// The hooks this process's environment arms: what `serve` runs with, and what
    /// `config check` and `doctor` check, through this one parser.
    ///
    /// # Errors
    /// As [`TestHooks::from_vars`].
    pub fn from_env() -> Result<TestHooks, TestHookError> {
        TestHooks::from_vars(|name| std::env::var(name).ok())
    }

    /// What an operator is told when hooks are armed (each one named, with its value's
    /// length only for the poison text); `None` when none is.
    pub fn warning(&self) -> Option<String> {
        if !self.any() {
            return None;
        }
        let mut armed = Vec::new();
        if !self.slow_handlers.is_zero() {
            armed.push(format!(
                "{SLOW_HANDLERS_MS}={}",
                self.slow_handlers.as_millis()
            ));
        }
        if !self.hold_webhook_updates.is_zero() {
            armed.push(format!(
                "{HOLD_WEBHOOK_UPDATES_MS}={}",
                self.hold_webhook_updates.as_millis()
            ));
        }
        if let Some(poison) = &self.poison {
            armed.push(format!(
                "{POISON_TEXT} ({} characters)",
                poison.chars().count()
            ));
        }
        Some(format!(
            "test hooks armed ({SWITCH}=1: {}): this process is deliberately flawed, never a deployment",
            armed.join(", ")
        ))
    }

    /// Whether any hook is armed.
    pub fn any(&self) -> bool {
        *self != TestHooks::default()
    }

    pub(crate) fn apply(&self, front: &mut FrontConfig) {
        if self.any() {
            front.handler_delay = self.slow_handlers;
            front.intake_delay = self.hold_webhook_updates;
            front.poison.clone_from(&self.poison);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn hooks(vars: &[(&str, &str)]) -> Result<TestHooks, TestHookError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        TestHooks::from_vars(|name| vars.get(name).cloned())
    }

    #[test]
    fn hooks_are_read_only_behind_the_switch() {
        assert_eq!(
            hooks(&[(SLOW_HANDLERS_MS, "300")]),
            Ok(TestHooks::default())
        );
        assert_eq!(
            hooks(&[(SWITCH, "yes"), (SLOW_HANDLERS_MS, "300")]),
            Ok(TestHooks::default())
        );
        assert_eq!(
            hooks(&[(SWITCH, "1"), (SLOW_HANDLERS_MS, "300")]),
            Ok(TestHooks {
                slow_handlers: Duration::from_millis(300),
                hold_webhook_updates: Duration::ZERO,
                poison: None,
            })
        );
        assert_eq!(
            hooks(&[(POISON_TEXT, "☠")]).map(|h| h.poison),
            Ok(None),
            "read without the switch"
        );
        assert_eq!(
            hooks(&[(SWITCH, "1"), (POISON_TEXT, "☠")]).map(|h| h.poison),
            Ok(Some("☠".to_owned()))
        );
        assert_eq!(
            hooks(&[(SWITCH, "1"), (HOLD_WEBHOOK_UPDATES_MS, "60000")])
                .map(|h| h.hold_webhook_updates),
            Ok(Duration::from_secs(60))
        );
    }

    #[test]
    fn a_bad_value_names_the_variable_and_the_range() {
        let e = hooks(&[(SWITCH, "1"), (SLOW_HANDLERS_MS, "10001")]).unwrap_err();
        assert_eq!(e.variable, SLOW_HANDLERS_MS);
        assert!(e.to_string().contains("0 to 10000"), "{e}");
        assert!(hooks(&[(SWITCH, "1"), (HOLD_WEBHOOK_UPDATES_MS, "-1")]).is_err());
    }

    #[test]
    fn armed_hooks_reach_the_front_end_and_none_leave_it_as_configured() {
        let mut front = FrontConfig::default();
        TestHooks::default().apply(&mut front);
        assert_eq!(front.handler_delay, Duration::ZERO);
        assert_eq!(front.poison, None);
        TestHooks {
            slow_handlers: Duration::from_millis(5),
            hold_webhook_updates: Duration::from_millis(7),
            poison: Some("☠".into()),
        }
        .apply(&mut front);
        assert_eq!(front.handler_delay, Duration::from_millis(5));
        assert_eq!(front.intake_delay, Duration::from_millis(7));
        assert_eq!(front.poison.as_deref(), Some("☠"));
    }
}
