//! Where raw setting values come from: the process environment and an optional `genbot.toml`.
//!
//! The environment wins over the file, the file over the defaults in [`crate::Key`]. An empty
//! environment variable counts as unset, as container tooling often exports empty ones; which
//! variables were set empty is kept, for the one setting where empty could mean something else
//! (see [`Sources::set_empty`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::{ConfigError, Key};

/// Which layer a setting's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The built-in default.
    Default,
    /// The configuration file.
    File,
    /// An environment variable.
    Env,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Origin::Default => "default",
            Origin::File => "file",
            Origin::Env => "env",
        })
    }
}

/// Raw text values, layered; parsed into [`crate::Settings`] by `Settings::from_sources`.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    env: HashMap<String, String>,
    /// Variables set in the environment (or keys in the file) with an empty value, and which
    /// layer set them so (the environment's when both did).
    empty: HashMap<String, Origin>,
    file: HashMap<Key, String>,
    file_path: Option<PathBuf>,
}

/// The variable that points at a configuration file other than `./genbot.toml`.
pub const CONFIG_FILE_VARIABLE: &str = "GENBOT_CONFIG";

impl Sources {
    /// Reads the process environment, and `$GENBOT_CONFIG` or else `./genbot.toml` if it exists.
    ///
    /// # Errors
    /// The file named by `GENBOT_CONFIG` is missing, or a file cannot be read or parsed, or it
    /// holds an unknown key.
    pub fn from_process() -> Result<Self, ConfigError> {
        let env = unicode_env(std::env::vars_os())?;
        let mut sources = Sources::from_env(env);
        match sources.env.get(CONFIG_FILE_VARIABLE).cloned() {
            Some(path) => sources = sources.with_file(Path::new(&path))?,
            None => {
                let default = Path::new("genbot.toml");
                if default.exists() {
                    sources = sources.with_file(default)?;
                }
            }
        }
        Ok(sources)
    }

    /// Sources from the given environment only (used by tests and embedders).
    pub fn from_env(env: HashMap<String, String>) -> Self {
        let (empty, env): (HashMap<String, String>, HashMap<String, String>) =
            env.into_iter().partition(|(_, v)| v.is_empty());
        Sources {
            env,
            empty: empty.into_keys().map(|name| (name, Origin::Env)).collect(),
            ..Sources::default()
        }
    }

    /// Adds a configuration file layer read from `path`.
    ///
    /// # Errors
    /// The file cannot be read, is not TOML, or holds an unknown key or an unusable value type.
    pub fn with_file(self, path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        self.with_file_text(path, &text)
    }

    /// Adds a configuration file layer from TOML text; `path` is only used in messages.
    ///
    /// # Errors
    /// As [`Sources::with_file`], minus the reading.
    pub fn with_file_text(mut self, path: &Path, text: &str) -> Result<Self, ConfigError> {
        let file_error = |reason: String| ConfigError::File {
            path: path.to_owned(),
            reason,
        };
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| file_error(e.message().to_owned()))?;
        // Keys are read in any case: two spellings of one key would leave which wins to the
        // table's order, so they are refused.
        let mut spelled: HashMap<Key, String> = HashMap::new();
        for (name, value) in table {
            let key = Key::from_name(&name).ok_or_else(|| ConfigError::UnknownKey {
                path: path.to_owned(),
                key: name.clone(),
            })?;
            if let Some(first) = spelled.insert(key, name.clone()) {
                return Err(file_error(format!(
                    "`{first}` and `{name}` are the same setting ({}): keep one",
                    key.name()
                )));
            }
            let text = match value {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Array(items) => items
                    .iter()
                    .map(|item| match item {
                        toml::Value::Integer(i) => Ok(i.to_string()),
                        toml::Value::String(s) => Ok(s.clone()),
                        other => Err(file_error(format!(
                            "{name}: list items must be integers or strings, found {}",
                            other.type_str()
                        ))),
                    })
                    .collect::<Result<Vec<_>, _>>()?
                    .join(","),
                other => {
                    return Err(file_error(format!(
                        "{name}: expected a string or an integer, found {}",
                        other.type_str()
                    )))
                }
            };
            if text.is_empty() {
                self.empty
                    .entry(key.name().to_owned())
                    .or_insert(Origin::File);
            }
            self.file.insert(key, text);
        }
        self.file_path = Some(path.to_owned());
        Ok(self)
    }

    /// The configuration file in use, if any.
    pub fn file_path(&self) -> Option<&Path> {
        self.file_path.as_deref()
    }

    /// Whether `key` was set with an empty value (in the environment or the file) and nothing
    /// else sets it: it would take its default, as if unset.
    pub fn set_empty(&self, key: Key) -> bool {
        self.empty.contains_key(key.name())
            && matches!(self.lookup(key), None | Some((_, Origin::Default)))
    }

    /// Where `key` was set empty, when [`Sources::set_empty`] holds: for a setting whose empty
    /// value means something, the label `config check` shows.
    pub fn empty_origin(&self, key: Key) -> Option<Origin> {
        if !self.set_empty(key) {
            return None;
        }
        self.empty.get(key.name()).copied()
    }

    /// The raw value of `key` and where it came from; `None` when it is unset everywhere.
    pub fn lookup(&self, key: Key) -> Option<(&str, Origin)> {
        if let Some(value) = self.env.get(key.name()) {
            return Some((value, Origin::Env));
        }
        if let Some(value) = self.file.get(&key).filter(|v| !v.is_empty()) {
            return Some((value, Origin::File));
        }
        key.default_value().map(|v| (v, Origin::Default))
    }
}

/// The environment as text. A genbot variable whose value is not UTF-8 is refused (taken as
/// unset, `STARS_PACKAGES` would have sold the default packages and `DATABASE_URL` opened
/// `genbot.db`); other variables are none of genbot's business and are skipped.
fn unicode_env(
    vars: impl IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
) -> Result<HashMap<String, String>, ConfigError> {
    let mut env = HashMap::new();
    for (name, value) in vars {
        let Ok(name) = name.into_string() else {
            continue;
        };
        match value.into_string() {
            Ok(value) => {
                env.insert(name, value);
            }
            Err(_) => {
                let ours = Key::ALL
                    .iter()
                    .map(|key| key.name())
                    .chain([CONFIG_FILE_VARIABLE])
                    .find(|known| *known == name);
                if let Some(variable) = ours {
                    return Err(ConfigError::invalid(
                        variable,
                        "(bytes that are not UTF-8)",
                        "a UTF-8 value",
                    ));
                }
            }
        }
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn a_genbot_variable_that_is_not_utf8_is_refused_not_taken_as_unset() {
        use std::os::unix::ffi::OsStringExt;
        let bytes = |b: &[u8]| std::ffi::OsString::from_vec(b.to_vec());
        let error = unicode_env([(bytes(b"STARS_PACKAGES"), bytes(b"\xff\xfe"))])
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "invalid STARS_PACKAGES=(bytes that are not UTF-8): a UTF-8 value"
        );
        assert!(unicode_env([(bytes(b"GENBOT_CONFIG"), bytes(b"\xff"))]).is_err());
        // Not ours: skipped, the rest kept.
        let env = unicode_env([
            (bytes(b"LS_COLORS"), bytes(b"\xff")),
            (bytes(b"DATABASE_URL"), bytes(b"sqlite://a.db")),
        ])
        .unwrap();
        assert_eq!(env.len(), 1);
    }

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn env_wins_over_file_and_file_over_default() {
        let sources = Sources::from_env(env(&[("DB_POOL_SIZE", "3")]))
            .with_file_text(
                Path::new("genbot.toml"),
                "db_pool_size = 5\nqueue_max_length = 7\nADMIN_IDS = [1, 2]\n",
            )
            .unwrap();
        assert_eq!(sources.lookup(Key::DbPoolSize), Some(("3", Origin::Env)));
        assert_eq!(
            sources.lookup(Key::QueueMaxLength),
            Some(("7", Origin::File))
        );
        assert_eq!(sources.lookup(Key::AdminIds), Some(("1,2", Origin::File)));
        assert_eq!(
            sources.lookup(Key::CacheTtlSeconds),
            Some(("300", Origin::Default))
        );
        assert_eq!(sources.lookup(Key::RedisUrl), None);
    }

    #[test]
    fn one_key_in_two_spellings_is_refused_naming_both() {
        let error = Sources::default()
            .with_file_text(
                Path::new("genbot.toml"),
                "db_pool_size = 5\nDB_POOL_SIZE = 7\n",
            )
            .unwrap_err()
            .to_string();
        for named in [
            "genbot.toml",
            "`db_pool_size`",
            "`DB_POOL_SIZE`",
            "keep one",
        ] {
            assert!(error.contains(named), "{named} not in {error}");
        }
    }

    #[test]
    fn empty_env_var_counts_as_unset() {
        let sources = Sources::from_env(env(&[("REDIS_URL", "")]));
        assert_eq!(sources.lookup(Key::RedisUrl), None);
    }

    #[test]
    fn unknown_file_key_is_named() {
        let err = Sources::default()
            .with_file_text(Path::new("genbot.toml"), "max_concurent_generations = 3")
            .unwrap_err();
        assert!(
            err.to_string().contains("max_concurent_generations"),
            "{err}"
        );
    }

    #[test]
    fn malformed_file_is_reported_with_its_path() {
        let err = Sources::default()
            .with_file_text(Path::new("/etc/genbot.toml"), "db_pool_size = ")
            .unwrap_err();
        assert!(err.to_string().contains("/etc/genbot.toml"), "{err}");
    }
}
