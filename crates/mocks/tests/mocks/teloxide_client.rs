//! The Bot API mock as teloxide, the bot's real client, sees it.

use std::time::Duration;

use genbot_mocks::telegram::{Entry, TelegramMock, TelegramMockConfig};
use teloxide::payloads::GetUpdatesSetters;
use teloxide::prelude::*;
use teloxide::types::{InputFile, UpdateKind};

#[tokio::test]
async fn teloxide_talks_to_the_mock() {
    let mock = TelegramMock::start(TelegramMockConfig::default())
        .await
        .unwrap();
    let bot = Bot::new("123:test").set_api_url(mock.url().parse().unwrap());
    let me = bot.get_me().await.unwrap();
    assert!(me.user.is_bot);

    let user = mock.user(77, "Eve", Some("en"));
    user.send_text("a red fox");
    let updates = bot.get_updates().timeout(2).await.unwrap();
    let UpdateKind::Message(message) = &updates[0].kind else {
        panic!("expected a message: {updates:?}");
    };
    assert_eq!(message.text(), Some("a red fox"));
    assert_eq!(
        message.from.as_ref().unwrap().language_code.as_deref(),
        Some("en")
    );

    bot.send_message(message.chat.id, "Queued: position 1")
        .await
        .unwrap();
    bot.send_photo(
        message.chat.id,
        InputFile::url("http://127.0.0.1:1/files/p.png".parse().unwrap()),
    )
    .caption("a red fox")
    .await
    .unwrap();
    let transcript = user
        .wait_for(Duration::from_secs(2), |t| t.len() >= 3)
        .await
        .unwrap();
    assert!(
        matches!(&transcript[2], Entry::BotPhoto { caption: Some(c), .. } if c == "a red fox"),
        "{transcript:?}"
    );
}
