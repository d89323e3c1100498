//! `spawn_bot()`: both mocks, a fresh SQLite store, the engine and the front end wired as
//! `genbot serve` wires them, with long polling (or a webhook) over loopback HTTP.

use std::sync::Arc;
use std::time::Duration;

use genbot_cache::{MemoryCache, UserCache, Users};
use genbot_engine::catalogue::Catalogue;
use genbot_engine::limiter::LocalRateLimiter;
use genbot_engine::replicate::{PollPolicy, ReplicateClient};
use genbot_engine::{Engine, EngineConfig};
use genbot_mocks::replicate::{ReplicateMock, ReplicateMockConfig};
use genbot_mocks::telegram::{Entry, SimUser, TelegramMock, TelegramMockConfig};
use genbot_store::{SqliteStore, Store};
use genbot_telegram::run::{Mode, WebhookSettings};
use genbot_telegram::{connect_bot, Front, FrontConfig, SendLimits};
use secrecy::SecretString;
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

pub(crate) async fn spawn_bot(options: Options) -> TestBot {
    let telegram = TelegramMock::start(TelegramMockConfig {
        enforce_limits: options.enforce_telegram_limits,
        ..TelegramMockConfig::default()
    })
    .await
    .unwrap();
    let replicate = Arc::new(ReplicateMock::start(options.replicate).await.unwrap());
    let dir = tempfile::tempdir().unwrap();
    let store = Store::Sqlite(SqliteStore::open(&dir.path().join(DATABASE_FILE), 4).unwrap());
    let users = Users::new(
        store.clone(),
        UserCache::Memory(MemoryCache::new(Duration::from_secs(60), 100_000)),
    );
    let client = ReplicateClient::new(
        replicate.url().parse().unwrap(),
        Some(&SecretString::from("r8_t")),
    )
    .unwrap()
    .with_poll(PollPolicy {
        initial: Duration::from_millis(20),
        factor: 1.5,
        max: Duration::from_millis(100),
    })
    .with_limiter(Arc::new(LocalRateLimiter::new(600_000, 1)));
    let (events_tx, events) = tokio::sync::mpsc::unbounded_channel();
    let engine = Engine::start(
        users,
        Catalogue::load(None, "flux-schnell").unwrap(),
        client,
        options.engine,
        Some(events_tx),
    )
    .await
    .unwrap();
    let bot = connect_bot(
        &SecretString::from("123456:TEST"),
        telegram.url().parse().unwrap(),
    );
    let front = Front::new(bot, engine, options.front);
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
    tokio::spawn(genbot_telegram::run::serve_bot(
        front.clone(),
        events,
        mode,
        stop.clone(),
        Duration::from_secs(5),
    ));
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
