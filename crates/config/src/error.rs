//! Errors raised while reading and validating settings.

use std::path::PathBuf;

/// Why the settings could not be loaded. Each variant names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A variable holds a value outside what is allowed.
    #[error("invalid {variable}={value}: {allowed}")]
    Invalid {
        /// The variable's name, as in the environment (`MAX_CONCURRENT_GENERATIONS`).
        variable: &'static str,
        /// The offending value, already redacted when the variable is a secret.
        value: String,
        /// What would have been accepted.
        allowed: String,
    },
    /// `genbot.toml` exists but cannot be read or is not valid TOML.
    #[error("cannot read configuration file {}: {reason}", path.display())]
    File {
        /// The file that failed.
        path: PathBuf,
        /// What went wrong, in one line.
        reason: String,
    },
    /// `genbot.toml` sets a key genbot does not know (most often a typo).
    #[error("unknown key `{key}` in {}: allowed keys are the environment variable names, e.g. MAX_CONCURRENT_GENERATIONS", path.display())]
    UnknownKey {
        /// The file holding the key.
        path: PathBuf,
        /// The key as written.
        key: String,
    },
}

impl ConfigError {
    pub(crate) fn invalid(variable: &'static str, value: &str, allowed: impl Into<String>) -> Self {
        ConfigError::Invalid {
            variable,
            // Empty, or holding a newline or another control character: shown quoted and
            // escaped, so the error stays one line and says what was really set.
            value: if value.is_empty() || value.chars().any(char::is_control) {
                format!("{value:?}")
            } else {
                value.to_owned()
            },
            allowed: allowed.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ConfigError;

    #[test]
    fn a_value_with_a_newline_is_shown_escaped_on_one_line() {
        let error = ConfigError::invalid("DB_POOL_SIZE", "5\nx", "1-1000").to_string();
        assert_eq!(error, "invalid DB_POOL_SIZE=\"5\\nx\": 1-1000");
        assert!(!error.contains('\n'), "{error}");
        // Plain values stay as written; an empty one is shown as "".
        let error = ConfigError::invalid("DB_POOL_SIZE", "0", "1-1000").to_string();
        assert_eq!(error, "invalid DB_POOL_SIZE=0: 1-1000");
        let error = ConfigError::invalid("DB_POOL_SIZE", "", "1-1000").to_string();
        assert_eq!(error, "invalid DB_POOL_SIZE=\"\": 1-1000");
    }
}
