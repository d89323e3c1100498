//! `genbot webhook set URL | delete | info`: the bot's one webhook, which every replica shares,
//! is the operator's to set and delete (a replica never deletes it at stop).

use anyhow::Context;
use genbot_config::Settings;
use genbot_telegram::connect_bot;
use secrecy::ExposeSecret;
use teloxide::payloads::SetWebhookSetters;
use teloxide::requests::Requester;

use crate::cli::WebhookCommand;
use crate::UsageError;

pub(crate) async fn run(settings: &Settings, command: WebhookCommand) -> anyhow::Result<()> {
    let token = settings.telegram_bot_token.clone().ok_or_else(|| {
        UsageError("TELEGRAM_BOT_TOKEN is not set: the webhook belongs to the bot's token".into())
    })?;
    let bot = connect_bot(&token, settings.telegram_api_url.clone());
    match command {
        WebhookCommand::Set { url, secret } => {
            let secret = match secret {
                Some(text) => genbot_config::telegram_secret_token("--secret", &text)
                    .map_err(|e| UsageError(e.to_string()))?,
                None => settings.webhook_secret.as_ref().map_or_else(
                    || genbot_telegram::webhook::derived_secret(&token),
                    |s| s.expose_secret().to_owned(),
                ),
            };
            bot.set_webhook(url.clone())
                .secret_token(secret)
                .allowed_updates(genbot_telegram::webhook::ALLOWED_UPDATES)
                .await
                .context("setWebhook failed")?;
            println!("webhook set: {}", genbot_config::RedactedUrl::new(url));
        }
        WebhookCommand::Delete => {
            bot.delete_webhook().await.context("deleteWebhook failed")?;
            println!("webhook deleted: the bot can poll (updates waiting at Telegram are kept)");
        }
        WebhookCommand::Info => {
            let info = bot
                .get_webhook_info()
                .await
                .context("getWebhookInfo failed")?;
            match &info.url {
                Some(url) => println!("url: {}", genbot_config::RedactedUrl::new(url.clone())),
                None => println!("url: none (the bot polls)"),
            }
            println!("pending updates: {}", info.pending_update_count);
            match (&info.last_error_message, info.last_error_date) {
                (Some(message), Some(at)) => {
                    let age = chrono::Utc::now() - at;
                    println!("last error: {message} ({} s ago)", age.num_seconds().max(0));
                }
                (Some(message), None) => println!("last error: {message}"),
                _ => println!("last error: none"),
            }
        }
    }
    Ok(())
}
