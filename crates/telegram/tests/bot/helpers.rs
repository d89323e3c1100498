//! `spawn_bot()`: both mocks, a fresh SQLite store and the whole bot built by `genbot serve`'s
//! own assembly from settings that point at the mocks, with long polling (or a webhook) over
//! loopback HTTP. What the tests change is said through the assembly's named overrides.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use genbot_assembly::BotAssembly;
use genbot_config::{Settings, Sources};
use genbot_engine::replicate::PollPolicy;
use genbot_engine::EngineConfig;
use genbot_mocks::replicate::{ReplicateMock, ReplicateMockConfig};
use genbot_mocks::telegram::{Entry, SimUser, TelegramMock, TelegramMockConfig};
use genbot_store::{SqliteOptions, SqliteStore, Store};
use genbot_telegram::run::{Mode, WebhookSettings};
use genbot_telegram::{Front, FrontConfig, SendLimits};
use tokio_util::sync::CancellationToken;

pub(crate) const WAIT: Duration = Duration::from_secs(15);
/// The SQLite file in the test bot's directory.
const DATABASE_FILE: &str = "bot.db";

pub(crate) struct Options {
    pub(crate) engine: EngineConfig,
    pub(crate) front: FrontConfig,
    pub(crate) replicate: ReplicateMockConfig,
    pub(crate) webhook: bool,
    /// Make the Bot API mock answer 429 when the bot sends faster than Telegram allows.
    pub(crate) enforce_telegram_limits: bool,
    /// The store's SQLite options (tests that hold the database's lock shorten its busy
    /// timeout so a few failed tries take a second).
    pub(crate) sqlite: SqliteOptions,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            engine: EngineConfig {
                max_concurrent: 50,
                per_user: 2,
                daily_limit: 50,
                queue_max: 10_000,
                timeout: Duration::from_secs(30),
                max_prompt_chars: 1000,
                replica: genbot_engine::ReplicaConfig::single_process(),
            },
            front: FrontConfig {
                admin_ids: vec![1],
                // Tests measure the bot, not Telegram's pacing.
                send_limits: SendLimits::UNLIMITED,
                ..FrontConfig::default()
            },
            replicate: ReplicateMockConfig {
                median_latency: Duration::from_millis(50),
                ..ReplicateMockConfig::default()
            },
            webhook: false,
            enforce_telegram_limits: false,
            sqlite: SqliteOptions::default(),
        }
    }
}

impl Options {
    /// The defaults with production's send pacing (30 a second, one a second per chat after a
    /// burst, 20 a minute per group), for tests of what waits behind Telegram's limits.
    pub(crate) fn paced_like_telegram() -> Self {
        let defaults = Options::default();
        Options {
            front: FrontConfig {
                send_limits: SendLimits::TELEGRAM,
                ..defaults.front
            },
            ..defaults
        }
    }

    /// These options with SQLite's busy timeout at `busy_timeout`.
    pub(crate) fn busy_timeout(self, busy_timeout: Duration) -> Self {
        Options {
            sqlite: SqliteOptions { busy_timeout },
            ..self
        }
    }

    /// The defaults with the per-user flood limit out of the way, for tests that send one user's
    /// many messages to see each one handled.
    pub(crate) fn without_flood_limit() -> Self {
        let defaults = Options::default();
        Options {
            front: FrontConfig {
                user_updates_per_sec: 1000,
                user_burst: 1000,
                ..defaults.front
            },
            ..defaults
        }
    }
}

pub(crate) struct TestBot {
    pub(crate) telegram: TelegramMock,
    pub(crate) replicate: Arc<ReplicateMock>,
    pub(crate) store: Store,
    pub(crate) front: Front,
    pub(crate) webhook_url: Option<String>,
    stop: CancellationToken,
    dir: tempfile::TempDir,
}

/// The mock's sub-second latency polled tightly, so tests wait on the bot, not on the poll.
const POLL: PollPolicy = PollPolicy {
    initial: Duration::from_millis(20),
    factor: 1.5,
    max: Duration::from_millis(100),
};

/// The test bot's settings, read the way `genbot serve` reads its environment: the mocks'
/// URLs, throwaway tokens, the private SQLite file, and creations limited only loosely (the
/// tests are not about Replicate's rate).
fn settings(telegram: &TelegramMock, replicate: &ReplicateMock, database: &Path) -> Settings {
    let env: HashMap<String, String> = [
        ("TELEGRAM_BOT_TOKEN", "123456:TEST".to_owned()),
        ("TELEGRAM_API_URL", telegram.url().to_string()),
        ("REPLICATE_API_TOKEN", "r8_t".to_owned()),
        ("REPLICATE_API_URL", replicate.url().to_string()),
        ("DATABASE_URL", format!("sqlite://{}", database.display())),
        ("DB_POOL_SIZE", "4".to_owned()),
        ("CACHE_TTL_SECONDS", "60".to_owned()),
        ("REPLICATE_RATE_LIMIT", "100000".to_owned()),
        ("SHUTDOWN_GRACE_SECONDS", "5".to_owned()),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value))
    .collect();
    Settings::from_sources(&Sources::from_env(env)).unwrap()
}

pub(crate) async fn spawn_bot(options: Options) -> TestBot {
    let telegram = TelegramMock::start(TelegramMockConfig {
        enforce_limits: options.enforce_telegram_limits,
        ..TelegramMockConfig::default()
    })
    .await
    .unwrap();
    let replicate = Arc::new(ReplicateMock::start(options.replicate).await.unwrap());
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join(DATABASE_FILE);
    let settings = settings(&telegram, &replicate, &database);
    // Opened here rather than from `DATABASE_URL` only to pass the SQLite options.
    let store = SqliteStore::open_with(&database, settings.db_pool_size, options.sqlite).unwrap();
    let bot = BotAssembly::from_settings(&settings)
        .with_store(Store::Sqlite(store))
        .with_engine(options.engine)
        .with_front(options.front)
        .with_poll(POLL)
        .build()
        .await
        .unwrap();
    let store = bot.store().clone();
    let front = bot.front().clone();
    let stop = CancellationToken::new();
    let mut webhook_url = None;
    let mode = if options.webhook {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/telegram/webhook", listener.local_addr().unwrap());
        webhook_url = Some(url.clone());
        let settings = WebhookSettings {
            url: url.parse().unwrap(),
            secret: "test-secret".into(),
        };
        Mode::Webhook { listener, settings }
    } else {
        Mode::Polling {
            http: None,
            drop_webhook: false,
        }
    };
    tokio::spawn(bot.serve(mode, stop.clone()));
    TestBot {
        telegram,
        replicate,
        store,
        front,
        webhook_url,
        stop,
        dir,
    }
}

impl TestBot {
    /// The bot's SQLite file.
    pub(crate) fn database_path(&self) -> std::path::PathBuf {
        self.dir.path().join(DATABASE_FILE)
    }
}

impl Drop for TestBot {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The newest bot text in the transcript after `seen` entries, waiting for it.
pub(crate) async fn reply_after(
    user: &SimUser,
    seen: usize,
) -> (i64, String, Vec<(String, String)>) {
    let transcript = user
        .wait_for(WAIT, |t| {
            t[seen.min(t.len())..]
                .iter()
                .any(|e| matches!(e, Entry::BotText { .. }))
        })
        .await
        .unwrap_or_else(|| panic!("no reply for user {}: {:?}", user.id(), user.transcript()));
    transcript[seen..]
        .iter()
        .find_map(|e| match e {
            Entry::BotText {
                message_id,
                text,
                buttons,
                ..
            } => Some((*message_id, text.clone(), buttons.clone())),
            _ => None,
        })
        .unwrap()
}

/// Sends `text` and returns the bot's first text reply to it.
pub(crate) async fn say(user: &SimUser, text: &str) -> (i64, String, Vec<(String, String)>) {
    let seen = user.transcript().len();
    user.send_text(text);
    reply_after(user, seen).await
}

/// Waits for a photo in the chat; returns its caption.
pub(crate) async fn photo(user: &SimUser) -> Option<String> {
    let transcript = user
        .wait_for(WAIT, |t| {
            t.iter().any(|e| matches!(e, Entry::BotPhoto { .. }))
        })
        .await
        .unwrap_or_else(|| panic!("no photo for user {}: {:?}", user.id(), user.transcript()));
    transcript.iter().find_map(|e| match e {
        Entry::BotPhoto { caption, .. } => caption.clone(),
        _ => None,
    })
}

/// Presses the button `data` under the bot's message `message`; returns the text the press was
/// answered with (`None` for a silent answer).
pub(crate) async fn press(user: &SimUser, message: i64, data: &str) -> Option<String> {
    let seen = user.transcript().len();
    user.press(message, data)
        .unwrap_or_else(|| panic!("no message {message} to press {data} under"));
    let transcript = user
        .wait_for(WAIT, |t| {
            t[seen.min(t.len())..]
                .iter()
                .any(|e| matches!(e, Entry::CallbackAnswered(_)))
        })
        .await
        .unwrap_or_else(|| {
            panic!(
                "the press of {data} was not answered: {:?}",
                user.transcript()
            )
        });
    transcript[seen..].iter().find_map(|e| match e {
        Entry::CallbackAnswered(text) => Some(text.clone()),
        _ => None,
    })?
}
