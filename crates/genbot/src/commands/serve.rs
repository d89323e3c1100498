//! `genbot serve`: the real bot.

use anyhow::Context;
use genbot_assembly::{BotAssembly, TestHooks};
use genbot_config::{ExposeSecret, Settings};
use genbot_telegram::run::{Mode, WebhookSettings};
use genbot_telegram::FrontConfig;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::cli::ServeArgs;
use crate::commands::mock::shutdown_signal;
use crate::{app, UsageError};

pub(crate) async fn run(settings: Settings, args: ServeArgs) -> anyhow::Result<()> {
    // A handler's panic is reported by its place only: its message may quote a user's text.
    genbot_telegram::install_panic_hook();
    let token = settings.telegram_bot_token.clone().ok_or_else(|| {
        UsageError(
            "TELEGRAM_BOT_TOKEN is not set: `genbot serve` needs the bot's token from @BotFather"
                .into(),
        )
    })?;
    let replicate_is_local = matches!(
        settings.replicate_api_url.host_str(),
        Some("127.0.0.1" | "localhost" | "[::1]")
    );
    if settings.replicate_api_token.is_none() && !replicate_is_local {
        return Err(UsageError(format!(
            "REPLICATE_API_TOKEN is not set: {} needs one (only a local REPLICATE_API_URL may go without)",
            genbot_config::RedactedUrl::new(settings.replicate_api_url.clone())
        ))
        .into());
    }
    let hooks = test_hooks()?;
    // One bot process per SQLite file: two would both be `local` and take each other's jobs
    // and updates over. Held until the process ends.
    let mut sole_user = sole_user_of_sqlite(&settings.database_url)?;
    // Checked before anything starts: teloxide panics on a secret Telegram would refuse, and
    // only after the Bot API has answered. WEBHOOK_SECRET was checked with the settings.
    let webhook_secret = match &args.webhook_secret {
        Some(text) => Some(
            genbot_config::telegram_secret_token("--webhook-secret", text)
                .map_err(|e| UsageError(e.to_string()))?,
        ),
        None => settings
            .webhook_secret
            .as_ref()
            .map(|s| s.expose_secret().to_owned()),
    };
    // SIGTERM counts from now: a database or Bot API still being waited for does not delay it.
    let stop = CancellationToken::new();
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            tracing::info!("stop requested");
            stop.cancel();
        });
    }
    let Some(bot) = BotAssembly::from_settings(&settings)
        .with_front(FrontConfig {
            initial_credits: args.initial_credits,
            ..FrontConfig::from_settings(&settings)
        })
        .with_test_hooks(hooks)
        .one_process_per_replica_id()
        .build_waiting(&stop)
        .await
        .map_err(app::usage_or_failure)?
    else {
        tracing::info!("stopped before the database answered");
        return Ok(());
    };
    // A file this start created has an identity only now.
    if let Some(sole_user) = sole_user.as_mut() {
        sole_user.lock_the_file_itself()?;
    }
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("Failed to listen on {}", args.listen))?;
    // From the socket, not the argument: with `--listen …:0` it tells the port the system chose.
    let address = listener
        .local_addr()
        .context("Failed to read the listening address")?;
    tracing::info!("listening on {address}");
    let mode = match args.webhook_url {
        Some(url) => {
            // The same for every replica, so none refuses what Telegram sends with another's.
            let secret =
                webhook_secret.unwrap_or_else(|| genbot_telegram::webhook::derived_secret(&token));
            Mode::Webhook {
                listener,
                settings: WebhookSettings { url, secret },
            }
        }
        None => Mode::Polling {
            http: Some(listener),
            drop_webhook: args.drop_webhook,
        },
    };
    let ran = bot.serve(mode, stop).await;
    tracing::info!("stopped");
    match ran {
        Err(
            e @ (genbot_telegram::run::RunError::InvalidToken(_)
            | genbot_telegram::run::RunError::WebhookSet(_)
            | genbot_telegram::run::RunError::Polled { .. }),
        ) => Err(UsageError(e.to_string()).into()),
        Err(genbot_telegram::run::RunError::Stopped) => Ok(()),
        other => other.context("The bot stopped with an error"),
    }
}

/// The test hooks the environment arms (see [`genbot_assembly::test_hooks`]); none unless
/// `GENBOT_TEST_HOOKS=1`.
///
/// # Errors
/// A [`UsageError`] naming a hook variable whose value is out of range.
fn test_hooks() -> anyhow::Result<TestHooks> {
    let hooks = TestHooks::from_env().map_err(|e| UsageError(e.to_string()))?;
    if let Some(warning) = hooks.warning() {
        tracing::warn!("{warning}");
    }
    Ok(hooks)
}

/// Locks `<database>.serve.lock` beside an SQLite file, and the lock named by the file's
/// identity when it exists (see [`SoleUser`]), for this process's life; `None` for PostgreSQL
/// (replicas share it by design).
///
/// # Errors
/// A [`UsageError`] when another `genbot serve` holds it.
fn sole_user_of_sqlite(database: &genbot_config::DatabaseUrl) -> anyhow::Result<Option<SoleUser>> {
    let genbot_config::DatabaseUrl::Sqlite { path } = database else {
        return Ok(None);
    };
    // The file's real path: a symlink or another spelling of it must meet the same lock.
    let real =
        std::fs::canonicalize(path).unwrap_or_else(|_| match (path.parent(), path.file_name()) {
            (Some(dir), Some(name)) => std::fs::canonicalize(if dir.as_os_str().is_empty() {
                std::path::Path::new(".")
            } else {
                dir
            })
            .map_or_else(|_| path.clone(), |dir| dir.join(name)),
            _ => path.clone(),
        });
    let mut lock_path = real.into_os_string();
    lock_path.push(".serve.lock");
    let lock_path = std::path::PathBuf::from(lock_path);
    let file = lock_exclusively(&lock_path, || {
        format!(
            "another genbot serve is running on the SQLite file {}",
            path.display()
        )
    })?;
    let mut sole_user = SoleUser {
        path: path.clone(),
        _by_path: file,
        by_identity: None,
    };
    sole_user.lock_the_file_itself()?;
    Ok(Some(sole_user))
}

/// Opens (creating it) and locks `lock_path` for this process's life.
///
/// # Errors
/// A [`UsageError`] starting with `held_by()` when another process holds it.
fn lock_exclusively(
    lock_path: &std::path::Path,
    held_by: impl FnOnce() -> String,
) -> anyhow::Result<std::fs::File> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_path)
        .with_context(|| format!("Failed to open {}", lock_path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(UsageError(format!(
            "{} (it holds {}); run one process per SQLite file, or use PostgreSQL (DATABASE_URL=postgres://…) for replicas",
            held_by(),
            lock_path.display()
        ))
        .into()),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("Failed to lock {}", lock_path.display()))
        }
    }
}

/// The locks that make this process the SQLite file's only `serve`, held for its life: one
/// beside the file's real path, and one named by the file's device and inode, since a hard
/// link is another real path to the same file (two processes on it each kept their own WAL
/// and corrupted the database).
struct SoleUser {
    path: std::path::PathBuf,
    _by_path: std::fs::File,
    by_identity: Option<std::fs::File>,
}

impl SoleUser {
    /// Takes the lock named by the file's identity, once the file exists. The lock file lives
    /// in the temporary directory, where every name of the file leads; the database file itself
    /// is never opened here (closing a descriptor of it would drop SQLite's own locks).
    ///
    /// # Errors
    /// A [`UsageError`] when another `genbot serve` holds it.
    #[cfg(unix)]
    fn lock_the_file_itself(&mut self) -> anyhow::Result<()> {
        use std::os::unix::fs::MetadataExt;
        if self.by_identity.is_some() {
            return Ok(());
        }
        let identity = match std::fs::metadata(&self.path) {
            Ok(meta) => (meta.dev(), meta.ino()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(e).with_context(|| format!("Failed to read {}", self.path.display()))
            }
        };
        let lock_path = std::env::temp_dir().join(format!(
            "genbot-sqlite-{}-{}.serve.lock",
            identity.0, identity.1
        ));
        let path = &self.path;
        self.by_identity = Some(lock_exclusively(&lock_path, || {
            format!(
                "another genbot serve is running on the SQLite file {} under another name (a hard link to it)",
                path.display()
            )
        })?);
        Ok(())
    }

    #[cfg(not(unix))]
    fn lock_the_file_itself(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
}
