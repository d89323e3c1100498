//! The configuration keys genbot understands, with their documented defaults.
//!
//! This is the one table of defaults: `Settings`, `genbot config check` and the README's
//! configuration table all follow it.

/// A configuration key. Its name is the environment variable, and also the key in `genbot.toml`
/// (where lower case is accepted too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Key {
    TelegramBotToken,
    TelegramApiUrl,
    ReplicateApiToken,
    ReplicateApiUrl,
    DatabaseUrl,
    DbPoolSize,
    DbConnectTimeoutSeconds,
    RedisUrl,
    RedisKeyPrefix,
    CacheTtlSeconds,
    CacheMaxEntries,
    MaxConcurrentGenerations,
    MaxConcurrentGenerationsPerUser,
    DailyGenerationLimit,
    ReplicateRateLimit,
    GenerationTimeoutSeconds,
    QueueMaxLength,
    ModelsFile,
    DefaultModel,
    AdminIds,
    ReplicaId,
    JobLeaseSeconds,
    JobHeartbeatSeconds,
    ShutdownGraceSeconds,
    TelegramSendsPerSecond,
    ReplicateWebhookUrl,
    ReplicateWebhookSecret,
    ReplicateReconcileSeconds,
    StarsPackages,
    WebhookSecret,
}

impl Key {
    /// Every key, in the order `config check` prints them.
    pub const ALL: [Key; 30] = [
        Key::TelegramBotToken,
        Key::TelegramApiUrl,
        Key::ReplicateApiToken,
        Key::ReplicateApiUrl,
        Key::DatabaseUrl,
        Key::DbPoolSize,
        Key::DbConnectTimeoutSeconds,
        Key::RedisUrl,
        Key::RedisKeyPrefix,
        Key::CacheTtlSeconds,
        Key::CacheMaxEntries,
        Key::MaxConcurrentGenerations,
        Key::MaxConcurrentGenerationsPerUser,
        Key::DailyGenerationLimit,
        Key::ReplicateRateLimit,
        Key::GenerationTimeoutSeconds,
        Key::QueueMaxLength,
        Key::ModelsFile,
        Key::DefaultModel,
        Key::AdminIds,
        Key::ReplicaId,
        Key::JobLeaseSeconds,
        Key::JobHeartbeatSeconds,
        Key::ShutdownGraceSeconds,
        Key::TelegramSendsPerSecond,
        Key::ReplicateWebhookUrl,
        Key::ReplicateWebhookSecret,
        Key::ReplicateReconcileSeconds,
        Key::StarsPackages,
        Key::WebhookSecret,
    ];

    /// The environment variable's name.
    pub const fn name(self) -> &'static str {
        match self {
            Key::TelegramBotToken => "TELEGRAM_BOT_TOKEN",
            Key::TelegramApiUrl => "TELEGRAM_API_URL",
            Key::ReplicateApiToken => "REPLICATE_API_TOKEN",
            Key::ReplicateApiUrl => "REPLICATE_API_URL",
            Key::DatabaseUrl => "DATABASE_URL",
            Key::DbPoolSize => "DB_POOL_SIZE",
            Key::DbConnectTimeoutSeconds => "DB_CONNECT_TIMEOUT_SECONDS",
            Key::RedisUrl => "REDIS_URL",
            Key::RedisKeyPrefix => "REDIS_KEY_PREFIX",
            Key::CacheTtlSeconds => "CACHE_TTL_SECONDS",
            Key::CacheMaxEntries => "CACHE_MAX_ENTRIES",
            Key::MaxConcurrentGenerations => "MAX_CONCURRENT_GENERATIONS",
            Key::MaxConcurrentGenerationsPerUser => "MAX_CONCURRENT_GENERATIONS_PER_USER",
            Key::DailyGenerationLimit => "DAILY_GENERATION_LIMIT",
            Key::ReplicateRateLimit => "REPLICATE_RATE_LIMIT",
            Key::GenerationTimeoutSeconds => "GENERATION_TIMEOUT_SECONDS",
            Key::QueueMaxLength => "QUEUE_MAX_LENGTH",
            Key::ModelsFile => "MODELS_FILE",
            Key::DefaultModel => "DEFAULT_MODEL",
            Key::AdminIds => "ADMIN_IDS",
            Key::ReplicaId => "REPLICA_ID",
            Key::JobLeaseSeconds => "JOB_LEASE_SECONDS",
            Key::JobHeartbeatSeconds => "JOB_HEARTBEAT_SECONDS",
            Key::ShutdownGraceSeconds => "SHUTDOWN_GRACE_SECONDS",
            Key::TelegramSendsPerSecond => "TELEGRAM_SENDS_PER_SECOND",
            Key::ReplicateWebhookUrl => "REPLICATE_WEBHOOK_URL",
            Key::ReplicateWebhookSecret => "REPLICATE_WEBHOOK_SECRET",
            Key::ReplicateReconcileSeconds => "REPLICATE_RECONCILE_SECONDS",
            Key::StarsPackages => "STARS_PACKAGES",
            Key::WebhookSecret => "WEBHOOK_SECRET",
        }
    }

    /// The default, as the text a user would write; `None` when the key is unset by default.
    pub const fn default_value(self) -> Option<&'static str> {
        match self {
            Key::TelegramBotToken
            | Key::ReplicateApiToken
            | Key::RedisUrl
            | Key::ModelsFile
            | Key::ReplicaId
            | Key::ReplicateWebhookUrl
            | Key::ReplicateWebhookSecret
            | Key::WebhookSecret => None,
            Key::ReplicateReconcileSeconds => Some("30"),
            Key::StarsPackages => Some("10:50,60:250,150:500"),
            Key::JobLeaseSeconds => Some("30"),
            Key::JobHeartbeatSeconds => Some("10"),
            Key::ShutdownGraceSeconds => Some("10"),
            Key::TelegramSendsPerSecond => Some("30"),
            Key::TelegramApiUrl => Some("https://api.telegram.org"),
            Key::ReplicateApiUrl => Some("https://api.replicate.com"),
            Key::DatabaseUrl => Some("sqlite://genbot.db"),
            Key::DbPoolSize => Some("8"),
            Key::DbConnectTimeoutSeconds => Some("10"),
            Key::RedisKeyPrefix => Some("genbot:"),
            Key::CacheTtlSeconds => Some("300"),
            Key::CacheMaxEntries => Some("100000"),
            Key::MaxConcurrentGenerations => Some("80"),
            Key::MaxConcurrentGenerationsPerUser => Some("2"),
            Key::DailyGenerationLimit => Some("50"),
            Key::ReplicateRateLimit => Some("600"),
            Key::GenerationTimeoutSeconds => Some("300"),
            Key::QueueMaxLength => Some("1000"),
            Key::DefaultModel => Some("flux-schnell"),
            Key::AdminIds => Some(""),
        }
    }

    /// What the key means, in one line (used by `config check` and the README).
    pub const fn description(self) -> &'static str {
        match self {
            Key::TelegramBotToken => "Bot API token from @BotFather (required by `serve`)",
            Key::TelegramApiUrl => "Bot API base URL (a local Bot API server or the mock)",
            Key::ReplicateApiToken => "Replicate API token (required for live generations)",
            Key::ReplicateApiUrl => "Replicate API base URL (the mock in tests)",
            Key::DatabaseUrl => "sqlite://PATH (embedded default) or postgres://…",
            Key::DbPoolSize => "database connections in the pool",
            Key::DbConnectTimeoutSeconds => {
                "PostgreSQL: longest wait for a connection (each try at start, a busy pool later)"
            }
            Key::RedisUrl => "redis://… ; unset = in-process cache",
            Key::RedisKeyPrefix => {
                "start of every Redis key (cache, shared rate limit): deployments sharing one Redis use different ones"
            }
            Key::CacheTtlSeconds => "how long a cached user stays fresh",
            Key::CacheMaxEntries => "users kept by the in-process cache",
            Key::MaxConcurrentGenerations => "predictions running at once, all users",
            Key::MaxConcurrentGenerationsPerUser => "predictions running at once, per user",
            Key::DailyGenerationLimit => "generations per user per day (UTC)",
            Key::ReplicateRateLimit => "prediction creations per minute (Replicate allows 600)",
            Key::GenerationTimeoutSeconds => "a prediction is canceled after this long",
            Key::QueueMaxLength => "queued jobs accepted before new ones are refused",
            Key::ModelsFile => "model catalogue (TOML); unset = the built-in catalogue",
            Key::DefaultModel => "model id used until a user picks one",
            Key::AdminIds => {
                "comma-separated Telegram user ids allowed the admin commands (/stats, /refund, /ban, /unban, /broadcast)"
            }
            Key::StarsPackages => {
                "credit packages /buy offers for Telegram Stars, CREDITS:STARS,… ; empty = no payments"
            }
            Key::ReplicaId => {
                "this process among the replicas; unset = `local` on SQLite, HOST-PID on PostgreSQL"
            }
            Key::JobLeaseSeconds => {
                "a running job whose owner stops renewing is taken over after this"
            }
            Key::JobHeartbeatSeconds => "how often a replica renews its leases (below the lease)",
            Key::ShutdownGraceSeconds => "SIGTERM: longest wait for running handlers before exit",
            Key::TelegramSendsPerSecond => {
                "messages per second to Telegram, all chats (30 unless Telegram raised the bot's limit)"
            }
            Key::ReplicateWebhookUrl => {
                "public URL Replicate posts finished predictions to (served on --listen); unset = polling"
            }
            Key::ReplicateWebhookSecret => {
                "whsec_… signing secret of Replicate's webhooks; unset = fetched from Replicate at start"
            }
            Key::ReplicateReconcileSeconds => {
                "with webhooks: how often a running prediction is still polled (a missed webhook)"
            }
            Key::WebhookSecret => {
                "serve --webhook-url: the secret Telegram sends with each update (1-256 of A-Z a-z 0-9 _ -); unset = a random one"
            }
        }
    }

    /// Secrets are never printed, whole or in part.
    pub const fn is_secret(self) -> bool {
        matches!(
            self,
            Key::TelegramBotToken
                | Key::ReplicateApiToken
                | Key::ReplicateWebhookSecret
                | Key::WebhookSecret
        )
    }

    /// Finds a key by its name as written in the environment or `genbot.toml` (any case).
    pub fn from_name(name: &str) -> Option<Key> {
        Key::ALL
            .into_iter()
            .find(|key| key.name().eq_ignore_ascii_case(name))
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_in_any_case() {
        for key in Key::ALL {
            assert_eq!(Key::from_name(key.name()), Some(key));
            assert_eq!(Key::from_name(&key.name().to_lowercase()), Some(key));
        }
        assert_eq!(Key::from_name("MAX_CONCURRENT_GENERATION"), None);
    }
}
