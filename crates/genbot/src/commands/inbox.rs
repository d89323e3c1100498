//! `genbot inbox list | retry ID`: the updates set aside as dead letters, for an operator.

use anyhow::Context;
use genbot_config::Settings;
use genbot_store::{DeadLetter, Store};

use crate::cli::InboxCommand;

pub(crate) async fn run(settings: &Settings, command: InboxCommand) -> anyhow::Result<()> {
    let store = Store::connect(&settings.database_url, 1)
        .await
        .context("Failed to open the database")?;
    match command {
        InboxCommand::List { limit } => {
            let letters = store.dead_letters(limit).await?;
            print!("{}", render(&letters, store.count_dead_letters().await?));
        }
        InboxCommand::Retry { update_id } => {
            if store.retry_dead_letter(update_id).await? {
                println!("update {update_id} will be handled again by the next replica that looks for orphaned updates");
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
