//! `genbot serve`: the real bot.

use anyhow::Context;
use genbot_config::Settings;
use genbot_telegram::run::WebhookSettings;
use genbot_telegram::{connect_bot, Front, FrontConfig};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::cli::ServeArgs;
use crate::commands::mock::shutdown_signal;
use crate::{app, UsageError};

pub(crate) async fn run(settings: Settings, args: ServeArgs) -> anyhow::Result<()> {
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
            settings.replicate_api_url
        ))
        .into());
    }
    let core = app::start_core(&settings).await?;
    let engine = core.engine.clone();
    let bot = connect_bot(&token, settings.telegram_api_url.clone());
    let front = Front::new(
        bot,
        core.engine,
        FrontConfig {
            admin_ids: settings.admin_ids.clone(),
            initial_credits: args.initial_credits,
            ..FrontConfig::default()
        },
    );
    let stop_delivery = CancellationToken::new();
    let delivery = tokio::spawn(genbot_telegram::delivery::run(
        front.clone(),
        core.events,
        stop_delivery.clone(),
    ));
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("Failed to listen on {}", args.listen))?;
    let ran = match args.webhook_url {
        Some(url) => {
            let secret = args
                .webhook_secret
                .unwrap_or_else(|| format!("{:032x}", rand::random::<u128>()));
            genbot_telegram::run::webhook(
                front,
                listener,
                WebhookSettings { url, secret },
                shutdown_signal(),
            )
            .await
        }
        None => genbot_telegram::run::polling(front, Some(listener), shutdown_signal()).await,
    };
    // Handlers are done: stop delivering, stop the engine; queued jobs stay in the database.
    stop_delivery.cancel();
    let _ = delivery.await;
    engine.shutdown().await;
    tracing::info!("stopped");
    ran.context("The bot stopped with an error")
}
