//! Image-to-image: a photo with a caption becomes a job of a model that takes a picture (the
//! user's model if it does, else the first in the catalogue that does). The photo is fetched
//! with `getFile`, bounded while it streams, type-checked by its bytes and passed to Replicate
//! as a data URL; Telegram offers each photo in several sizes, and the largest within
//! [`MAX_IMAGE_INPUT_BYTES`] is taken. A photo without a caption is answered with a request
//! for one.
//!
//! Imports the shared layer, never another feature or the router.

use futures_util::StreamExt;
use genbot_engine::image_input::{self, MAX_IMAGE_INPUT_BYTES};
use genbot_engine::{GenerationRequest, SubmitError};
use serde_json::Map;
use teloxide::net::Download;
use teloxide::prelude::*;
use teloxide::types::{PhotoSize, User as TgUser};

use crate::pacing::send;
use crate::shared::ids::{is_group, reply_target, user_id};
use crate::shared::{reply, submit, HandlerResult};
use crate::texts::{self, Lang};
use crate::Front;

/// The largest size Telegram offers within the limit (sizes without a known byte count are
/// judged while they download).
fn best_size(sizes: &[PhotoSize]) -> Option<&PhotoSize> {
    sizes
        .iter()
        .filter(|s| (s.file.size as usize) <= MAX_IMAGE_INPUT_BYTES)
        .max_by_key(|s| (s.width * s.height, s.file.size))
}

/// Downloads the file, refusing it once it passes the limit.
async fn fetch(front: &Front, size: &PhotoSize) -> Result<Option<Vec<u8>>, teloxide::RequestError> {
    let bot = front.bot();
    let file = bot.get_file(size.file.id.clone()).await?;
    if file.meta.size as usize > MAX_IMAGE_INPUT_BYTES {
        return Ok(None);
    }
    let mut stream = bot.download_file_stream(&file.path);
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| teloxide::RequestError::Network(std::sync::Arc::new(e)))?;
        if bytes.len() + chunk.len() > MAX_IMAGE_INPUT_BYTES {
            return Ok(None);
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(Some(bytes))
}

/// A photo arrived; `caption` is what to make of it (the caption, or in a group the `/img`
/// command's arguments). In a group every answer is a reply and no queue message is sent.
pub(crate) async fn photo_received(
    front: &Front,
    msg: &Message,
    from: &TgUser,
    lang: Lang,
    update: i64,
    caption: Option<&str>,
) -> HandlerResult {
    let chat = msg.chat.id;
    let bot = front.bot();
    let in_group = is_group(&msg.chat);
    // In a group every answer is a reply to the photo.
    let say = |text: String| async move {
        if in_group {
            reply::in_group(front, msg, text).await
        } else {
            send(front, chat, bot.send_message(chat, text)).await?;
            Ok(())
        }
    };
    let Some(caption) = caption.map(str::trim).filter(|c| !c.is_empty()) else {
        say(texts::photo_needs_caption(lang)).await?;
        return Ok(());
    };
    let engine = front.engine();
    let stored = engine.users().get(user_id(from)).await?;
    let selected = stored.as_ref().and_then(|u| u.selected_model.clone());
    let Some(model) = engine.catalogue().image_model_for(selected.as_deref()) else {
        say(texts::no_image_model(lang)).await?;
        return Ok(());
    };
    // Refused before the picture is fetched: a banned or broke sender costs no download. (The
    // engine checks again, in the charging transaction.)
    if let Some(user) = &stored {
        let refusal = if user.banned {
            Some(SubmitError::Banned)
        } else if user.credits < model.cost {
            Some(SubmitError::NoCredits {
                balance: user.credits,
                cost: model.cost,
            })
        } else {
            None
        };
        if let Some(refusal) = refusal {
            say(texts::refused(lang, &refusal)).await?;
            return Ok(());
        }
    }
    let max_kb = MAX_IMAGE_INPUT_BYTES / 1024;
    let Some(size) = msg.photo().and_then(best_size) else {
        say(texts::photo_too_large(lang, max_kb)).await?;
        return Ok(());
    };
    let bytes = match fetch(front, size).await {
        Ok(Some(bytes)) => bytes,
        Ok(None) => {
            say(texts::photo_too_large(lang, max_kb)).await?;
            return Ok(());
        }
        Err(e) => {
            tracing::warn!(error = %e, "fetching a user's photo failed");
            say(texts::photo_unreadable(lang)).await?;
            return Ok(());
        }
    };
    let Ok(data_url) = image_input::data_url(&bytes) else {
        say(texts::photo_unreadable(lang)).await?;
        return Ok(());
    };
    let input = model.image_input.clone().unwrap_or_else(|| "image".into());
    let mut params = Map::new();
    params.insert(input, data_url.into());
    let request = GenerationRequest {
        user: user_id(from),
        prompt: caption.to_owned(),
        model: Some(model.id.clone()),
        params,
        source_update: Some(update),
        reply: in_group.then(|| reply_target(&msg.chat, msg.id)),
    };
    if in_group {
        return submit::to_group(front, msg, from, lang, request).await;
    }
    submit::and_track(front, from, chat, lang, request).await
}
