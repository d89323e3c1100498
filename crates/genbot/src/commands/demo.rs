//! `genbot demo`: the real bot against both mocks, with simulated users whose chats are printed.

use std::time::Duration;

use anyhow::Context;
use genbot_assembly::BotAssembly;
use genbot_config::{DatabaseUrl, SecretString, Settings};
use genbot_mocks::replicate::{ReplicateMock, ReplicateMockConfig};
use genbot_mocks::telegram::{Entry, SimUser, TelegramMock, TelegramMockConfig};
use tokio_util::sync::CancellationToken;

use crate::app;
use crate::cli::DemoArgs;

/// Longest the demo waits for one answer.
const PATIENCE: Duration = Duration::from_secs(30);

pub(crate) async fn run(mut settings: Settings, args: DemoArgs) -> anyhow::Result<()> {
    let telegram = TelegramMock::start(TelegramMockConfig::default())
        .await
        .context("Failed to start the Telegram mock")?;
    let replicate = ReplicateMock::start(ReplicateMockConfig {
        median_latency: Duration::from_millis(args.latency_ms),
        latency_sigma: 0.3,
        ..ReplicateMockConfig::default()
    })
    .await
    .context("Failed to start the Replicate mock")?;
    let dir = tempfile::tempdir().context("Failed to create a temporary directory")?;
    settings.telegram_api_url = telegram.url().parse().context("mock URL")?;
    settings.replicate_api_url = replicate.url().parse().context("mock URL")?;
    settings.telegram_bot_token = Some(SecretString::from("0:demo"));
    settings.replicate_api_token = Some(SecretString::from("demo"));
    settings.database_url = DatabaseUrl::Sqlite {
        path: dir.path().join("demo.db"),
    };
    settings.redis_url = None;
    println!(
        "demo: Telegram mock at {}, Replicate mock at {} (median {} ms), SQLite in {}\n",
        telegram.url(),
        replicate.url(),
        args.latency_ms,
        dir.path().display()
    );

    let bot = BotAssembly::from_settings(&settings)
        .build()
        .await
        .map_err(app::usage_or_failure)?;
    let stop = CancellationToken::new();
    let bot_task = tokio::spawn(bot.serve(
        genbot_telegram::run::Mode::Polling {
            http: None,
            drop_webhook: false,
        },
        stop.clone(),
    ));

    let ann = telegram.user(101, "Ann", Some("en"));
    let ivan = telegram.user(102, "Иван", Some("ru"));
    let bob = telegram.user(103, "Bob", Some("en"));
    let eve = telegram.user(104, "Eve", Some("en"));
    let scripts = tokio::join!(
        script(
            &ann,
            &[
                "/start",
                "/models",
                "@press:model:flux-dev",
                "a lighthouse in a storm, oil painting",
                "@photo",
                "/balance"
            ]
        ),
        script(&ivan, &["/start", "рыжий кот в космосе", "@photo"]),
        script(
            &bob,
            &["/help", "/start", "first", "second", "/cancel", "@photo", "/balance"]
        ),
        // A purchase, a re-run with a new seed and an image-to-image round.
        script(
            &eve,
            &[
                "/start",
                "/buy",
                "@press:buy:60:250",
                "@pay",
                "a harbour at dawn --ar 16:9",
                "@photos:1",
                "@press-photo:again:",
                "@photos:2",
                "@send-photo:the same harbour as a watercolor",
                "@photos:3",
                "/balance",
            ]
        ),
    );
    for (user, result) in [
        (&ann, scripts.0),
        (&ivan, scripts.1),
        (&bob, scripts.2),
        (&eve, scripts.3),
    ] {
        print_chat(user);
        result?;
    }

    stop.cancel();
    let _ = bot_task.await;
    let stats = replicate.stats();
    println!(
        "Replicate mock: {} predictions created, {} polls; Telegram mock: {} updates sent",
        stats.created,
        stats.polls,
        telegram.stats().updates_sent
    );
    Ok(())
}

/// Waits for the bot to answer a button pressed after the transcript's first `seen` entries.
async fn button_answered(user: &SimUser, seen: usize) -> anyhow::Result<()> {
    user.wait_for(PATIENCE, |t| {
        t[seen..]
            .iter()
            .any(|e| matches!(e, Entry::CallbackAnswered(_)))
    })
    .await
    .context("the bot did not answer the button")?;
    Ok(())
}

/// Plays a user's lines: texts are sent and answered; `@press:DATA` presses the button with that
/// data under the last keyboard; `@photo` waits for an image, `@photos:N` for the Nth;
/// `@pay` pays the last invoice and waits for the receipt; `@press-photo:PREFIX` presses the
/// button starting with PREFIX under the last image; `@send-photo:CAPTION` sends a picture.
async fn script(user: &SimUser, lines: &[&str]) -> anyhow::Result<()> {
    for line in lines {
        let seen = user.transcript().len();
        if let Some(data) = line.strip_prefix("@press:") {
            let keyboard = user.last_keyboard().context("no keyboard to press")?;
            user.press(keyboard, data).context("button press refused")?;
            button_answered(user, seen).await?;
        } else if *line == "@pay" {
            let invoice = user.last_invoice().context("no invoice to pay")?;
            user.pay(invoice).context("the invoice is unknown")?;
            user.wait_for(PATIENCE, |t| {
                t[seen..].iter().any(|e| matches!(e, Entry::BotText { .. }))
            })
            .await
            .context("no receipt for the payment")?;
        } else if let Some(prefix) = line.strip_prefix("@press-photo:") {
            let (photo, data) = user
                .transcript()
                .iter()
                .rev()
                .find_map(|e| match e {
                    Entry::BotPhoto {
                        message_id,
                        buttons,
                        ..
                    } => buttons
                        .iter()
                        .find(|(_, d)| d.starts_with(prefix))
                        .map(|(_, d)| (*message_id, d.clone())),
                    _ => None,
                })
                .with_context(|| format!("no photo with a {prefix} button"))?;
            user.press(photo, &data).context("button press refused")?;
            button_answered(user, seen).await?;
        } else if let Some(count) = line.strip_prefix("@photos:") {
            let count: usize = count.parse().context("@photos:N")?;
            user.wait_for(PATIENCE, |t| {
                t.iter()
                    .filter(|e| matches!(e, Entry::BotPhoto { .. }))
                    .count()
                    >= count
            })
            .await
            .with_context(|| format!("image {count} never arrived"))?;
        } else if let Some(caption) = line.strip_prefix("@send-photo:") {
            user.send_photo(Some(caption));
        } else if *line == "@photo" {
            user.wait_for(PATIENCE, |t| {
                t.iter().any(|e| matches!(e, Entry::BotPhoto { .. }))
            })
            .await
            .context("no image arrived")?;
        } else {
            user.send_text(line);
            user.wait_for(PATIENCE, |t| {
                t[seen..].iter().any(|e| matches!(e, Entry::BotText { .. }))
            })
            .await
            .with_context(|| format!("no answer to {line:?}"))?;
        }
    }
    Ok(())
}

fn print_chat(user: &SimUser) {
    println!("── chat with user {} ──", user.id());
    for entry in user.transcript() {
        match entry {
            Entry::UserText(text) => println!("  user › {text}"),
            Entry::UserPressed(data) => println!("  user ⏵ pressed [{data}]"),
            Entry::UserPhoto { caption } => {
                println!("  user ▣ photo {}", caption.unwrap_or_default())
            }
            Entry::BotText {
                text,
                buttons,
                edits,
                ..
            } => {
                let edited = if edits > 0 { " (edited)" } else { "" };
                println!("  bot  › {}{edited}", text.replace('\n', "\n         "));
                for (label, _) in buttons {
                    println!("         [{label}]");
                }
            }
            Entry::BotPhoto {
                url,
                caption,
                buttons,
                ..
            } => {
                println!("  bot  › 🖼 {url} — {}", caption.unwrap_or_default());
                if !buttons.is_empty() {
                    let labels: Vec<String> = buttons
                        .into_iter()
                        .map(|(label, _)| format!("[{label}]"))
                        .collect();
                    println!("         {}", labels.join(" "));
                }
            }
            Entry::BotDocument { file, caption, .. } => {
                println!("  bot  › 📄 {file} — {}", caption.unwrap_or_default());
            }
            Entry::BotAction(action) => println!("  bot  … {action}"),
            Entry::CallbackAnswered(text) => println!("  bot  ✓ {}", text.unwrap_or_default()),
            Entry::BotInvoice {
                title,
                stars,
                currency,
                ..
            } => println!("  bot  › 🧾 invoice: {title} — {stars} {currency}"),
            Entry::UserPaying { stars, .. } => println!("  user ⏵ pays {stars} ⭐"),
            Entry::CheckoutAnswered { ok: true, .. } => println!("  bot  ✓ checkout accepted"),
            Entry::CheckoutAnswered { ok: false, error } => {
                println!("  bot  ✗ checkout refused: {}", error.unwrap_or_default())
            }
            Entry::UserPaid { charge_id, stars } => {
                println!("  tg   ★ payment of {stars} ⭐ completed ({charge_id})")
            }
        }
    }
    println!();
}
