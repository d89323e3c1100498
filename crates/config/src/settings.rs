//! The typed settings and their validation.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use url::Url;

use crate::parse::{
    http_url, integer_in, redact_url_text, replicate_webhook_key, stars_packages,
    telegram_secret_token, token, user_ids, StarsPackage,
};
use crate::{ConfigError, DatabaseUrl, Key, Origin, RedactedUrl, Sources};

/// Every setting genbot reads, parsed and validated. Built once at start-up by
/// [`Settings::load`] (or [`Settings::from_sources`] in tests) and passed down by reference.
///
/// `Debug` is safe to log: secrets print as `[REDACTED]`, credentials inside every URL as
/// `***` (see the `Debug` impl below).
#[derive(Clone)]
pub struct Settings {
    /// `TELEGRAM_BOT_TOKEN`; optional here because only `serve` needs it.
    pub telegram_bot_token: Option<SecretString>,
    /// `TELEGRAM_API_URL`.
    pub telegram_api_url: Url,
    /// `REPLICATE_API_TOKEN`; optional because the mock needs none.
    pub replicate_api_token: Option<SecretString>,
    /// `REPLICATE_API_URL`.
    pub replicate_api_url: Url,
    /// `DATABASE_URL`.
    pub database_url: DatabaseUrl,
    /// `DB_POOL_SIZE`.
    pub db_pool_size: u32,
    /// `DB_CONNECT_TIMEOUT_SECONDS`: PostgreSQL's pool acquire timeout.
    pub db_connect_timeout: Duration,
    /// `REDIS_URL`; `None` selects the in-process cache.
    pub redis_url: Option<RedactedUrl>,
    /// `REDIS_KEY_PREFIX`: every Redis key starts with it.
    pub redis_key_prefix: String,
    /// `CACHE_TTL_SECONDS`.
    pub cache_ttl: Duration,
    /// `CACHE_MAX_ENTRIES`.
    pub cache_max_entries: u64,
    /// `MAX_CONCURRENT_GENERATIONS`.
    pub max_concurrent_generations: u32,
    /// `MAX_CONCURRENT_GENERATIONS_PER_USER`; never above the global limit.
    pub max_concurrent_generations_per_user: u32,
    /// `DAILY_GENERATION_LIMIT`.
    pub daily_generation_limit: u32,
    /// `REPLICATE_RATE_LIMIT`, prediction creations per minute.
    pub replicate_rate_limit_per_min: u32,
    /// `GENERATION_TIMEOUT_SECONDS`.
    pub generation_timeout: Duration,
    /// `QUEUE_MAX_LENGTH`.
    pub queue_max_length: u32,
    /// `MODELS_FILE`; `None` selects the catalogue built into the binary.
    pub models_file: Option<PathBuf>,
    /// `DEFAULT_MODEL` (whether it exists is checked when the catalogue is loaded).
    pub default_model: String,
    /// `ADMIN_IDS`.
    pub admin_ids: Vec<i64>,
    /// `REPLICA_ID`, or the default for the database in use.
    pub replica_id: String,
    /// `JOB_LEASE_SECONDS`.
    pub job_lease: Duration,
    /// `JOB_HEARTBEAT_SECONDS`; always below the lease.
    pub job_heartbeat: Duration,
    /// `SHUTDOWN_GRACE_SECONDS`.
    pub shutdown_grace: Duration,
    /// `TELEGRAM_SENDS_PER_SECOND`.
    pub telegram_sends_per_sec: u32,
    /// `REPLICATE_WEBHOOK_URL`: predictions report their end here instead of being polled.
    pub replicate_webhook_url: Option<Url>,
    /// `REPLICATE_WEBHOOK_SECRET` (`whsec_…`); fetched from Replicate when unset.
    pub replicate_webhook_secret: Option<SecretString>,
    /// `REPLICATE_RECONCILE_SECONDS`: the poll interval left while webhooks are on.
    pub replicate_reconcile: Duration,
    /// `STARS_PACKAGES`: what `/buy` sells (empty: no payments).
    pub stars_packages: Vec<StarsPackage>,
    /// `WEBHOOK_SECRET`: sent by Telegram with every update in webhook mode (`serve
    /// --webhook-url`); only characters Telegram accepts.
    pub webhook_secret: Option<SecretString>,
    origins: Vec<(Key, Origin)>,
    file: Option<PathBuf>,
}

/// One line of `genbot config check`: a key, its value as safe to show, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EffectiveSetting {
    /// The key.
    pub key: Key,
    /// The value, secrets replaced by `***` and unset values by `(unset)`.
    pub shown: String,
    /// Which layer set it; `None` when it is unset.
    pub origin: Option<Origin>,
}

impl Settings {
    /// Reads the process environment and the configuration file, then validates.
    ///
    /// # Errors
    /// The first invalid value, or an unreadable or malformed configuration file.
    pub fn load() -> Result<Self, ConfigError> {
        Settings::from_sources(&Sources::from_process()?)
    }

    /// Parses and validates settings from explicit sources.
    ///
    /// # Errors
    /// The first invalid value, naming the variable, the value and what is allowed.
    pub fn from_sources(sources: &Sources) -> Result<Self, ConfigError> {
        let raw = |key: Key| sources.lookup(key).map(|(value, _)| value);
        // Keys with a default always have a value; `required` reads them.
        let required = |key: Key| raw(key).unwrap_or_default();
        let int = |key: Key, min: u64, max: u64| integer_in(key, required(key), min, max);
        let as_u32 = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);

        let secret = |key: Key| {
            raw(key)
                .map(|v| token(key, v).map(SecretString::from))
                .transpose()
        };

        let database_url = DatabaseUrl::parse(required(Key::DatabaseUrl)).map_err(|allowed| {
            ConfigError::invalid(
                Key::DatabaseUrl.name(),
                &redact_url_text(required(Key::DatabaseUrl)),
                allowed,
            )
        })?;

        let redis_url = raw(Key::RedisUrl)
            .map(|text| {
                let refuse = || {
                    ConfigError::invalid(
                        Key::RedisUrl.name(),
                        &redact_url_text(text),
                        "expected redis://[:PASSWORD@]HOST[:PORT][/DB] or rediss://…; unset it for the in-process cache",
                    )
                };
                let url = Url::parse(text).map_err(|_| refuse())?;
                match url.scheme() {
                    "redis" | "rediss" if url.host_str().is_some() => Ok(RedactedUrl::new(url)),
                    _ => Err(refuse()),
                }
            })
            .transpose()?;

        let max_concurrent_generations = as_u32(int(Key::MaxConcurrentGenerations, 1, 10_000)?);
        let per_user_raw = required(Key::MaxConcurrentGenerationsPerUser);
        let max_concurrent_generations_per_user = as_u32(
            integer_in(Key::MaxConcurrentGenerationsPerUser, per_user_raw, 1, 10_000).and_then(
                |v| {
                    if v <= u64::from(max_concurrent_generations) {
                        Ok(v)
                    } else {
                        Err(ConfigError::invalid(
                            Key::MaxConcurrentGenerationsPerUser.name(),
                            per_user_raw,
                            format!(
                                "expected a whole number from 1 to MAX_CONCURRENT_GENERATIONS ({max_concurrent_generations})"
                            ),
                        ))
                    }
                },
            )?,
        );

        let models_file = raw(Key::ModelsFile)
            .map(|text| {
                let path = PathBuf::from(text);
                match std::fs::File::open(&path).and_then(|f| f.metadata()) {
                    Ok(meta) if meta.is_file() => Ok(path),
                    Ok(_) => Err(ConfigError::invalid(
                        Key::ModelsFile.name(),
                        text,
                        "expected a readable TOML file, found a directory",
                    )),
                    Err(e) => Err(ConfigError::invalid(
                        Key::ModelsFile.name(),
                        text,
                        format!("expected a readable TOML file ({e}); unset it for the built-in catalogue"),
                    )),
                }
            })
            .transpose()?;

        let default_model = required(Key::DefaultModel).trim().to_owned();
        if default_model.is_empty()
            || !default_model
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(ConfigError::invalid(
                Key::DefaultModel.name(),
                &default_model,
                "expected a model id from the catalogue (letters, digits, '-', '_', '.')",
            ));
        }

        // Set empty, it would count as unset and take the default `genbot:`, while whoever
        // wrote `REDIS_KEY_PREFIX=` most likely meant no prefix: two deployments sharing one
        // Redis could then share keys unawares. Refused, as a prefix of spaces is.
        let redis_key_prefix = if sources.set_empty(Key::RedisKeyPrefix) {
            String::new()
        } else {
            required(Key::RedisKeyPrefix).trim().to_owned()
        };
        if redis_key_prefix.is_empty()
            || redis_key_prefix.len() > 64
            || !redis_key_prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
        {
            return Err(ConfigError::invalid(
                Key::RedisKeyPrefix.name(),
                &redis_key_prefix,
                "expected 1 to 64 of letters, digits, '-', '_', '.', ':' (e.g. genbot:staging:); \
                 a prefix is required (unset it for the default genbot:)",
            ));
        }

        let replica_id = match sources.lookup(Key::ReplicaId) {
            Some((text, _)) => {
                let id = text.trim();
                if id.is_empty()
                    || id.len() > 100
                    || !id
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
                {
                    return Err(ConfigError::invalid(
                        Key::ReplicaId.name(),
                        id,
                        "expected 1 to 100 of letters, digits, '-', '_', '.', ':' (e.g. the pod name)",
                    ));
                }
                id.to_owned()
            }
            None => default_replica_id(&database_url),
        };
        let job_lease = Duration::from_secs(int(Key::JobLeaseSeconds, 2, 3_600)?);
        let job_heartbeat = Duration::from_secs(int(Key::JobHeartbeatSeconds, 1, 1_800)?);
        if job_heartbeat >= job_lease {
            return Err(ConfigError::invalid(
                Key::JobHeartbeatSeconds.name(),
                &job_heartbeat.as_secs().to_string(),
                format!(
                    "expected fewer seconds than JOB_LEASE_SECONDS ({}), or leases expire between heartbeats",
                    job_lease.as_secs()
                ),
            ));
        }

        let replicate_webhook_secret = secret(Key::ReplicateWebhookSecret)?;
        if let Some(text) = raw(Key::ReplicateWebhookSecret) {
            if let Err(reason) = replicate_webhook_key(text) {
                return Err(ConfigError::invalid(
                    Key::ReplicateWebhookSecret.name(),
                    "***",
                    format!("expected whsec_<base64> of a non-empty key, as `GET /v1/webhooks/default/secret` answers ({reason})"),
                ));
            }
        }

        // `STARS_PACKAGES=` is a setting (nothing on sale), not the default it does not take:
        // labelled with where it was set empty.
        let origins = Key::ALL
            .into_iter()
            .filter_map(|key| {
                let set_empty = (key == Key::StarsPackages)
                    .then(|| sources.empty_origin(key))
                    .flatten();
                set_empty
                    .or_else(|| sources.lookup(key).map(|(_, origin)| origin))
                    .map(|origin| (key, origin))
            })
            .collect();

        Ok(Settings {
            telegram_bot_token: secret(Key::TelegramBotToken)?,
            telegram_api_url: telegram_api_url(required(Key::TelegramApiUrl))?,
            replicate_api_token: secret(Key::ReplicateApiToken)?,
            replicate_api_url: http_url(Key::ReplicateApiUrl, required(Key::ReplicateApiUrl))?,
            database_url,
            db_pool_size: as_u32(int(Key::DbPoolSize, 1, 1_000)?),
            db_connect_timeout: Duration::from_secs(int(Key::DbConnectTimeoutSeconds, 1, 600)?),
            redis_url,
            redis_key_prefix,
            cache_ttl: Duration::from_secs(int(Key::CacheTtlSeconds, 1, 30 * 86_400)?),
            cache_max_entries: int(Key::CacheMaxEntries, 1, 100_000_000)?,
            max_concurrent_generations,
            max_concurrent_generations_per_user,
            daily_generation_limit: as_u32(int(Key::DailyGenerationLimit, 1, 1_000_000)?),
            replicate_rate_limit_per_min: as_u32(int(Key::ReplicateRateLimit, 1, 100_000)?),
            generation_timeout: Duration::from_secs(int(Key::GenerationTimeoutSeconds, 1, 86_400)?),
            queue_max_length: as_u32(int(Key::QueueMaxLength, 1, 10_000_000)?),
            models_file,
            default_model,
            admin_ids: user_ids(Key::AdminIds, required(Key::AdminIds))?,
            replica_id,
            job_lease,
            job_heartbeat,
            shutdown_grace: Duration::from_secs(int(Key::ShutdownGraceSeconds, 1, 600)?),
            telegram_sends_per_sec: as_u32(int(Key::TelegramSendsPerSecond, 1, 1_000)?),
            replicate_webhook_url: raw(Key::ReplicateWebhookUrl)
                .map(|text| http_url(Key::ReplicateWebhookUrl, text))
                .transpose()?,
            replicate_webhook_secret,
            replicate_reconcile: Duration::from_secs(int(
                Key::ReplicateReconcileSeconds,
                1,
                3_600,
            )?),
            // Set empty, it means what the README says: nothing on sale (unset, the default
            // packages). Taken as unset, `STARS_PACKAGES=` would have switched payments on.
            stars_packages: if sources.set_empty(Key::StarsPackages) {
                Vec::new()
            } else {
                stars_packages(Key::StarsPackages, required(Key::StarsPackages))?
            },
            webhook_secret: raw(Key::WebhookSecret)
                .map(|text| telegram_secret_token(Key::WebhookSecret.name(), text))
                .transpose()?
                .map(SecretString::from),
            origins,
            file: sources.file_path().map(ToOwned::to_owned),
        })
    }

    /// The configuration file that was read, if any.
    pub fn file(&self) -> Option<&std::path::Path> {
        self.file.as_deref()
    }

    /// Every setting as `config check` shows it: redacted, with its origin.
    pub fn effective(&self) -> Vec<EffectiveSetting> {
        Key::ALL
            .into_iter()
            .map(|key| {
                let origin = self
                    .origins
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, o)| *o);
                EffectiveSetting {
                    key,
                    shown: self.shown(key),
                    origin,
                }
            })
            .collect()
    }

    fn shown(&self, key: Key) -> String {
        let unset = || "(unset)".to_owned();
        let secret = |s: &Option<SecretString>| s.as_ref().map_or_else(unset, |_| "***".into());
        match key {
            Key::TelegramBotToken => secret(&self.telegram_bot_token),
            Key::ReplicateApiToken => secret(&self.replicate_api_token),
            Key::TelegramApiUrl => redact_url_text(self.telegram_api_url.as_str()),
            Key::ReplicateApiUrl => redact_url_text(self.replicate_api_url.as_str()),
            Key::DatabaseUrl => self.database_url.to_string(),
            Key::DbPoolSize => self.db_pool_size.to_string(),
            Key::RedisUrl => self
                .redis_url
                .as_ref()
                .map_or_else(|| "(unset: in-process cache)".into(), ToString::to_string),
            Key::RedisKeyPrefix => self.redis_key_prefix.clone(),
            Key::CacheTtlSeconds => self.cache_ttl.as_secs().to_string(),
            Key::CacheMaxEntries => self.cache_max_entries.to_string(),
            Key::MaxConcurrentGenerations => self.max_concurrent_generations.to_string(),
            Key::MaxConcurrentGenerationsPerUser => {
                self.max_concurrent_generations_per_user.to_string()
            }
            Key::DailyGenerationLimit => self.daily_generation_limit.to_string(),
            Key::ReplicateRateLimit => self.replicate_rate_limit_per_min.to_string(),
            Key::GenerationTimeoutSeconds => self.generation_timeout.as_secs().to_string(),
            Key::QueueMaxLength => self.queue_max_length.to_string(),
            Key::ModelsFile => self.models_file.as_ref().map_or_else(
                || "(unset: built-in catalogue)".into(),
                |p| p.display().to_string(),
            ),
            Key::DefaultModel => self.default_model.clone(),
            Key::ReplicaId => self.replica_id.clone(),
            Key::JobLeaseSeconds => self.job_lease.as_secs().to_string(),
            Key::JobHeartbeatSeconds => self.job_heartbeat.as_secs().to_string(),
            Key::ShutdownGraceSeconds => self.shutdown_grace.as_secs().to_string(),
            Key::DbConnectTimeoutSeconds => self.db_connect_timeout.as_secs().to_string(),
            Key::TelegramSendsPerSecond => self.telegram_sends_per_sec.to_string(),
            Key::ReplicateWebhookUrl => self.replicate_webhook_url.as_ref().map_or_else(
                || "(unset: polling)".into(),
                |url| redact_url_text(url.as_str()),
            ),
            Key::ReplicateWebhookSecret => secret(&self.replicate_webhook_secret),
            Key::WebhookSecret => secret(&self.webhook_secret),
            Key::ReplicateReconcileSeconds => self.replicate_reconcile.as_secs().to_string(),
            Key::StarsPackages => {
                if self.stars_packages.is_empty() {
                    "(none: no payments)".into()
                } else {
                    self.stars_packages
                        .iter()
                        .map(|p| format!("{}:{}", p.credits, p.stars))
                        .collect::<Vec<_>>()
                        .join(",")
                }
            }
            Key::AdminIds => {
                if self.admin_ids.is_empty() {
                    "(none)".into()
                } else {
                    self.admin_ids
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(",")
                }
            }
        }
    }
}

/// Written out (not derived) so that the URLs, which are plain `Url`s for the code that
/// connects, print with their credentials masked. The destructuring names every field: a new
/// one does not compile until it is shown here, redacted if it needs to be.
impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Settings {
            telegram_bot_token,
            telegram_api_url,
            replicate_api_token,
            replicate_api_url,
            database_url,
            db_pool_size,
            db_connect_timeout,
            redis_url,
            redis_key_prefix,
            cache_ttl,
            cache_max_entries,
            max_concurrent_generations,
            max_concurrent_generations_per_user,
            daily_generation_limit,
            replicate_rate_limit_per_min,
            generation_timeout,
            queue_max_length,
            models_file,
            default_model,
            admin_ids,
            replica_id,
            job_lease,
            job_heartbeat,
            shutdown_grace,
            telegram_sends_per_sec,
            replicate_webhook_url,
            replicate_webhook_secret,
            replicate_reconcile,
            stars_packages,
            webhook_secret,
            origins,
            file,
        } = self;
        let url = |url: &Url| RedactedUrl::new(url.clone());
        f.debug_struct("Settings")
            .field("telegram_bot_token", telegram_bot_token)
            .field("telegram_api_url", &url(telegram_api_url))
            .field("replicate_api_token", replicate_api_token)
            .field("replicate_api_url", &url(replicate_api_url))
            .field("database_url", database_url)
            .field("db_pool_size", db_pool_size)
            .field("db_connect_timeout", db_connect_timeout)
            .field("redis_url", redis_url)
            .field("redis_key_prefix", redis_key_prefix)
            .field("cache_ttl", cache_ttl)
            .field("cache_max_entries", cache_max_entries)
            .field("max_concurrent_generations", max_concurrent_generations)
            .field(
                "max_concurrent_generations_per_user",
                max_concurrent_generations_per_user,
            )
            .field("daily_generation_limit", daily_generation_limit)
            .field("replicate_rate_limit_per_min", replicate_rate_limit_per_min)
            .field("generation_timeout", generation_timeout)
            .field("queue_max_length", queue_max_length)
            .field("models_file", models_file)
            .field("default_model", default_model)
            .field("admin_ids", admin_ids)
            .field("replica_id", replica_id)
            .field("job_lease", job_lease)
            .field("job_heartbeat", job_heartbeat)
            .field("shutdown_grace", shutdown_grace)
            .field("telegram_sends_per_sec", telegram_sends_per_sec)
            .field(
                "replicate_webhook_url",
                &replicate_webhook_url.as_ref().map(url),
            )
            .field("replicate_webhook_secret", replicate_webhook_secret)
            .field("replicate_reconcile", replicate_reconcile)
            .field("stars_packages", stars_packages)
            .field("webhook_secret", webhook_secret)
            .field("origins", origins)
            .field("file", file)
            .finish()
    }
}

/// `local` on SQLite (one process per file, so a restart takes its own running jobs over at
/// once); `HOST-PID` on PostgreSQL (unique among live replicas; a dead one's jobs are taken
/// over when their leases expire).
/// The Bot API's base URL: a token pasted into it (`…/bot123:AAH…/`) is refused, since the
/// bot would then call `…/bot<token>/bot<token>/getMe` and the token belongs in
/// `TELEGRAM_BOT_TOKEN`, where it is kept secret.
fn telegram_api_url(raw: &str) -> Result<Url, ConfigError> {
    let url = http_url(Key::TelegramApiUrl, raw)?;
    let token_in_query = url
        .query_pairs()
        .any(|(_, value)| crate::urls::is_bot_token_segment(&value));
    if token_in_query || url.path().split('/').any(crate::urls::is_bot_token_segment) {
        return Err(ConfigError::invalid(
            Key::TelegramApiUrl.name(),
            &RedactedUrl::new(url).to_string(),
            "expected the Bot API's base URL without a bot token (e.g. https://api.telegram.org/); \
             the token goes in TELEGRAM_BOT_TOKEN",
        ));
    }
    Ok(url)
}

fn default_replica_id(database: &DatabaseUrl) -> String {
    match database {
        DatabaseUrl::Sqlite { .. } => "local".into(),
        DatabaseUrl::Postgres(_) => {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .or_else(|| std::env::var("HOSTNAME").ok())
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "host".into());
            format!("{host}-{}", std::process::id())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use secrecy::ExposeSecret;

    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let env: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_sources(&Sources::from_env(env))
    }

    fn error_line(pairs: &[(&str, &str)]) -> String {
        settings(pairs).unwrap_err().to_string()
    }

    #[test]
    fn defaults_make_the_embedded_default() {
        let s = settings(&[]).unwrap();
        assert_eq!(
            s.database_url,
            DatabaseUrl::Sqlite {
                path: "genbot.db".into()
            }
        );
        assert!(s.redis_url.is_none());
        assert!(s.models_file.is_none());
        assert_eq!(s.max_concurrent_generations, 80);
        assert_eq!(s.replicate_rate_limit_per_min, 600);
        assert_eq!(s.cache_ttl, Duration::from_secs(300));
        assert!(s.admin_ids.is_empty());
    }

    #[test]
    fn non_numeric_zero_and_negative_limits_are_refused_with_the_variable_named() {
        for value in ["abc", "0", "-3"] {
            let line = error_line(&[("MAX_CONCURRENT_GENERATIONS", value)]);
            assert_eq!(
                line,
                format!(
                    "invalid MAX_CONCURRENT_GENERATIONS={value}: expected a whole number from 1 to 10000"
                )
            );
        }
    }

    #[test]
    fn per_user_limit_cannot_exceed_the_global_one() {
        let line = error_line(&[
            ("MAX_CONCURRENT_GENERATIONS", "4"),
            ("MAX_CONCURRENT_GENERATIONS_PER_USER", "5"),
        ]);
        assert!(
            line.starts_with("invalid MAX_CONCURRENT_GENERATIONS_PER_USER=5"),
            "{line}"
        );
        assert!(line.contains("(4)"), "{line}");
    }

    #[test]
    fn unknown_database_scheme_is_refused() {
        let line = error_line(&[("DATABASE_URL", "mysql://root:pw@localhost/test")]);
        assert!(
            line.starts_with("invalid DATABASE_URL=mysql://***:***@localhost/test"),
            "{line}"
        );
        assert!(line.contains("sqlite://PATH"), "{line}");
        assert!(!line.contains(":pw@"), "{line}");
    }

    #[test]
    fn unreadable_models_file_is_refused() {
        let line = error_line(&[("MODELS_FILE", "/nonexistent/models.toml")]);
        assert!(
            line.starts_with(
                "invalid MODELS_FILE=/nonexistent/models.toml: expected a readable TOML file"
            ),
            "{line}"
        );
        let dir = std::env::temp_dir();
        let line = error_line(&[("MODELS_FILE", dir.to_str().unwrap())]);
        assert!(line.contains("found a directory"), "{line}");
    }

    #[test]
    fn malformed_admin_ids_are_refused() {
        let line = error_line(&[("ADMIN_IDS", "123,abc")]);
        assert_eq!(
            line,
            "invalid ADMIN_IDS=123,abc: expected comma-separated positive Telegram user ids, e.g. 12345,67890"
        );
        assert_eq!(
            settings(&[("ADMIN_IDS", "7,8")]).unwrap().admin_ids,
            vec![7, 8]
        );
    }

    /// `STARS_PACKAGES=` turns `/buy` off, as the README says; unset sells the default packages.
    #[test]
    fn an_empty_stars_packages_sells_nothing() {
        assert!(settings(&[("STARS_PACKAGES", "")])
            .unwrap()
            .stars_packages
            .is_empty());
        assert!(!settings(&[]).unwrap().stars_packages.is_empty());
        let file = Sources::from_env(HashMap::new())
            .with_file_text(std::path::Path::new("genbot.toml"), "stars_packages = \"\"")
            .unwrap();
        assert!(Settings::from_sources(&file)
            .unwrap()
            .stars_packages
            .is_empty());
    }

    /// Set empty, the prefix was taken as unset (the default `genbot:`), though whoever wrote
    /// it most likely meant no prefix: refused, naming the variable and what is allowed.
    #[test]
    fn an_empty_redis_key_prefix_is_refused() {
        let line = error_line(&[("REDIS_KEY_PREFIX", "")]);
        assert!(
            line.starts_with("invalid REDIS_KEY_PREFIX=\"\": expected 1 to 64"),
            "{line}"
        );
        assert!(line.contains("unset it for the default genbot:"), "{line}");
        let file = Sources::from_env(HashMap::new())
            .with_file_text(
                std::path::Path::new("genbot.toml"),
                "redis_key_prefix = \"\"",
            )
            .unwrap();
        assert!(Settings::from_sources(&file).is_err());
        // Empty in the environment, set in the file: the file's, as for every setting.
        let both = Sources::from_env(HashMap::from([(
            "REDIS_KEY_PREFIX".to_owned(),
            String::new(),
        )]))
        .with_file_text(
            std::path::Path::new("genbot.toml"),
            "redis_key_prefix = \"a:\"",
        )
        .unwrap();
        let prefix = Settings::from_sources(&both).map(|s| s.redis_key_prefix);
        assert_eq!(prefix.ok().as_deref(), Some("a:"));
        // Other empty variables still count as unset.
        assert!(settings(&[("REDIS_URL", ""), ("CACHE_TTL_SECONDS", "")]).is_ok());
    }

    #[test]
    fn bad_redis_url_is_refused_without_its_password() {
        let line = error_line(&[("REDIS_URL", "http://:s3cret@cache:6379")]);
        assert!(line.starts_with("invalid REDIS_URL="), "{line}");
        assert!(!line.contains("s3cret"), "{line}");
    }

    #[test]
    fn secrets_never_appear_in_debug_or_config_check() {
        let s = settings(&[
            ("TELEGRAM_BOT_TOKEN", "123456:AAE-bot-secret"),
            ("REPLICATE_API_TOKEN", "r8_replicate_secret"),
            ("DATABASE_URL", "postgres://bot:db-secret@127.0.0.1/genbot"),
            ("REDIS_URL", "redis://:redis-secret@127.0.0.1:6379/0"),
        ])
        .unwrap();
        let debug = format!("{s:?}");
        let check: String = s
            .effective()
            .iter()
            .map(|e| format!("{} {}\n", e.key, e.shown))
            .collect();
        for shown in [&debug, &check] {
            for secret in [
                "AAE-bot-secret",
                "r8_replicate_secret",
                "db-secret",
                "redis-secret",
            ] {
                assert!(!shown.contains(secret), "{secret} leaked in:\n{shown}");
            }
        }
        assert!(check.contains("TELEGRAM_BOT_TOKEN ***"), "{check}");
        assert_eq!(
            s.telegram_bot_token.as_ref().unwrap().expose_secret(),
            "123456:AAE-bot-secret"
        );
    }

    #[test]
    fn credentials_in_every_configured_url_stay_out_of_debug_and_config_check() {
        let s = settings(&[
            (
                "TELEGRAM_API_URL",
                "https://tg-user:tg-pass@tg.internal/?token=tg-token",
            ),
            (
                "REPLICATE_API_URL",
                "https://r-user:r-pass@r.internal/?api_key=r-key",
            ),
            (
                "REPLICATE_WEBHOOK_URL",
                "https://hook:hook-pass@bot.example/replicate?token=hook-token",
            ),
        ])
        .unwrap();
        let debug = format!("{s:?} {s:#?}");
        let check: String = s
            .effective()
            .iter()
            .map(|e| format!("{} {}\n", e.key, e.shown))
            .collect();
        for shown in [&debug, &check] {
            for secret in [
                "tg-pass",
                "tg-token",
                "r-pass",
                "r-key",
                "hook-pass",
                "hook-token",
            ] {
                assert!(!shown.contains(secret), "{secret} leaked in:\n{shown}");
            }
        }
        assert!(
            check.contains("TELEGRAM_API_URL https://***:***@tg.internal/?token=***"),
            "{check}"
        );
        // The code that connects still gets the real URL.
        assert_eq!(s.telegram_api_url.password(), Some("tg-pass"));
    }

    #[test]
    fn a_refused_url_is_echoed_without_its_credentials() {
        for variable in [
            "TELEGRAM_API_URL",
            "REPLICATE_API_URL",
            "REPLICATE_WEBHOOK_URL",
        ] {
            let line = error_line(&[(variable, "ftp://u:pw-1@h/?token=tok-2")]);
            assert!(line.starts_with(&format!("invalid {variable}=")), "{line}");
            assert!(!line.contains("pw-1") && !line.contains("tok-2"), "{line}");
        }
    }

    #[test]
    fn a_bot_token_pasted_into_the_api_url_is_refused_without_echoing_it() {
        for pasted in [
            "https://api.telegram.org/bot123456:AAH-secret_9/",
            "https://api.telegram.org/bot123456:AAH-secret_9",
            "http://127.0.0.1:8081/proxy/bot42:xyz-secret/getMe",
            // However the paste was spelled.
            "http://127.0.0.1:8081/BOT123:abc-secret/",
            "http://127.0.0.1:8081/Bot123:abc-secret",
            "http://127.0.0.1:8081/bot123%3Aabc-secret/",
            "http://127.0.0.1:8081/%62ot123%3aabc-secret/",
            "http://127.0.0.1:8081/1234567890:AAHabc-secret_0123456789/",
            "http://127.0.0.1:8081/?tok=1234567890:AAHabc-secret_0123456789",
        ] {
            let line = error_line(&[("TELEGRAM_API_URL", pasted)]);
            assert!(line.starts_with("invalid TELEGRAM_API_URL="), "{line}");
            assert!(line.contains("TELEGRAM_BOT_TOKEN"), "{line}");
            assert!(!line.contains("secret"), "{line}");
        }
        // A path that merely starts with "bot" is a base URL like any other.
        let ok = settings(&[("TELEGRAM_API_URL", "http://127.0.0.1:8081/botapi/")]).unwrap();
        assert_eq!(ok.telegram_api_url.path(), "/botapi/");
        // Unparseable or with the token in a fragment: never echoed either.
        let line = error_line(&[("TELEGRAM_API_URL", "not a url bot123:abc-secret")]);
        assert!(!line.contains("secret"), "{line}");
        let fragment = settings(&[(
            "TELEGRAM_API_URL",
            "http://127.0.0.1:8081/api#bot123:abc-secret",
        )])
        .unwrap();
        let shown = format!("{fragment:?}");
        let check: String = fragment
            .effective()
            .iter()
            .map(|e| e.shown.clone())
            .collect();
        assert!(
            !check.contains("abc-secret") && !shown.contains("abc-secret"),
            "{check} {shown}"
        );
        // Nor is a short `a:b` segment a token.
        let ok = settings(&[("TELEGRAM_API_URL", "http://127.0.0.1:8081/v1:x/")]).unwrap();
        assert_eq!(ok.telegram_api_url.path(), "/v1:x/");
    }

    #[test]
    fn the_webhook_secret_is_what_telegram_accepts_and_never_echoed() {
        let too_long = "a".repeat(257);
        for bad in [
            "with space",
            "semi;colon",
            "ünïcode",
            "a/b",
            "a+b=",
            too_long.as_str(),
        ] {
            let line = error_line(&[("WEBHOOK_SECRET", bad)]);
            assert_eq!(
                line,
                "invalid WEBHOOK_SECRET=***: expected 1 to 256 of A-Z, a-z, 0-9, '_' and '-' \
                 (what Telegram accepts as a webhook secret token)",
                "{bad}"
            );
        }
        let fine = settings(&[("WEBHOOK_SECRET", "Az09_-")]).unwrap();
        let shown: Vec<String> = fine
            .effective()
            .iter()
            .filter(|e| e.key.name() == "WEBHOOK_SECRET")
            .map(|e| e.shown.clone())
            .collect();
        assert_eq!(shown, ["***"]);
        assert!(!format!("{fine:?}").contains("Az09_-"));
        assert!(settings(&[("WEBHOOK_SECRET", &"a".repeat(256))]).is_ok());
    }

    #[test]
    fn a_bad_token_is_reported_without_echoing_it() {
        let line = error_line(&[("TELEGRAM_BOT_TOKEN", "has a space")]);
        assert_eq!(
            line,
            "invalid TELEGRAM_BOT_TOKEN=***: expected a token without spaces"
        );
    }

    #[test]
    fn effective_settings_name_their_origin() {
        let s = settings(&[("DB_POOL_SIZE", "3")]).unwrap();
        let effective = s.effective();
        let pool = effective.iter().find(|e| e.key == Key::DbPoolSize).unwrap();
        assert_eq!((pool.shown.as_str(), pool.origin), ("3", Some(Origin::Env)));
        let redis = effective.iter().find(|e| e.key == Key::RedisUrl).unwrap();
        assert_eq!(redis.origin, None);
    }

    #[test]
    fn stars_packages_set_empty_is_labelled_where_it_was_set() {
        let origin = |s: &Settings| {
            s.effective()
                .into_iter()
                .find(|e| e.key == Key::StarsPackages)
                .and_then(|e| e.origin)
        };
        let s = settings(&[("STARS_PACKAGES", "")]).unwrap();
        assert!(s.stars_packages.is_empty());
        assert_eq!(origin(&s), Some(Origin::Env));
        let file = Sources::from_env(HashMap::new())
            .with_file_text(std::path::Path::new("genbot.toml"), "STARS_PACKAGES = \"\"")
            .unwrap();
        let s = Settings::from_sources(&file).unwrap();
        assert!(s.stars_packages.is_empty());
        assert_eq!(origin(&s), Some(Origin::File));
        // Unset, it takes the default packages and says so.
        assert_eq!(origin(&settings(&[]).unwrap()), Some(Origin::Default));
    }

    #[test]
    fn redaction_of_unparseable_urls() {
        assert_eq!(redact_url_text("x://u:p@h"), "x://***:***@h");
        assert_eq!(
            redact_url_text("not a url://u:p@h?token=t"),
            "not a url://***@h?***"
        );
        assert_eq!(redact_url_text("nothing here"), "nothing here");
    }
}
