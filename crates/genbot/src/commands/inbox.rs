//! `genbot inbox list | retry ID`: the updates set aside as dead letters, for an operator.

use anyhow::Context;
use genbot_config::Settings;
use genbot_store::{DeadLetter, Store};

use crate::cli::InboxCommand;

pub(crate) async fn run(settings: &Settings, command: InboxCommand) -> anyhow::Result<()> {
    // Run in the wrong directory, opening would create an empty genbot.db and report "0 dead
    // letters": an inspection must find the bot's database, not make one.
    if let genbot_config::DatabaseUrl::Sqlite { path } = &settings.database_url {
        if !path.exists() {
            return Err(crate::UsageError(format!(
                "no SQLite database at {} (DATABASE_URL): run this where `genbot serve` runs, or set DATABASE_URL to its file",
                path.display()
            ))
            .into());
        }
    }
    let store = Store::connect(&settings.database_url, 1)
        .await
        .context("Failed to open the database")?;
    match command {
        InboxCommand::List { limit } => {
            let letters = store.dead_letters(limit).await?;
            print!("{}", render(&letters, store.count_dead_letters().await?));
        }
        InboxCommand::Retry { update_id } => {
            if store
                .retry_dead_letter(update_id, genbot_telegram::RETRIED_ATTEMPTS)
                .await?
            {
                println!("update {update_id} will be handled once more: any running replica takes it at its next look for waiting updates");
            } else {
                anyhow::bail!("update {update_id} is not a dead letter (see `genbot inbox list`)");
            }
        }
    }
    Ok(())
}

fn render(letters: &[DeadLetter], total: u64) -> String {
    let mut out = format!("{total} dead letters\n");
    for letter in letters {
        out.push_str(&format!(
            "{}  attempts {}  set aside {}  {}\n",
            letter.id,
            letter.attempts,
            letter.dead_at.format("%Y-%m-%d %H:%M:%S UTC"),
            letter.error
        ));
    }
    out
}
