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

/// teloxide's stand-in for a `file_size` Telegram left out (it is optional in `PhotoSize` and
/// in `getFile`'s answer): not a size, so not "too large".
const SIZE_UNKNOWN: u32 = u32::MAX;

/// The largest size Telegram offers within the limit; failing that, the smallest whose byte
/// count Telegram did not say (judged while it downloads). A photo whose sizes all lacked
/// `file_size` was refused as too large unread.
fn best_size(sizes: &[PhotoSize]) -> Option<&PhotoSize> {
    let within = sizes
        .iter()
        .filter(|s| s.file.size != SIZE_UNKNOWN && (s.file.size as usize) <= MAX_IMAGE_INPUT_BYTES)
        .max_by_key(|s| (u64::from(s.width) * u64::from(s.height), s.file.size));
    within.or_else(|| {
        sizes
            .iter()
            .filter(|s| s.file.size == SIZE_UNKNOWN)
            .min_by_key(|s| u64::from(s.width) * u64::from(s.height))
    })
}

/// Downloads the file, refusing it once it passes the limit.
async fn fetch(front: &Front, size: &PhotoSize) -> Result<Option<Vec<u8>>, teloxide::RequestError> {
    let bot = front.bot();
    let file = bot.get_file(size.file.id.clone()).await?;
    if file.meta.size != SIZE_UNKNOWN && file.meta.size as usize > MAX_IMAGE_INPUT_BYTES {
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
    submit::and_track(front, from, chat, lang, request).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sizes as Telegram sends them, `file_size` left out where `size` is `None`.
    fn sizes(list: &[(u32, u32, Option<u32>)]) -> Vec<PhotoSize> {
        list.iter()
            .enumerate()
            .map(|(n, (width, height, size))| {
                let mut json = serde_json::json!({
                    "file_id": format!("F{n}"),
                    "file_unique_id": format!("U{n}"),
                    "width": width,
                    "height": height,
                });
                if let Some(size) = size {
                    json["file_size"] = (*size).into();
                }
                serde_json::from_value(json).expect("a PhotoSize")
            })
            .collect()
    }

    fn chosen(list: &[(u32, u32, Option<u32>)]) -> Option<String> {
        best_size(&sizes(list)).map(|s| s.file.id.0.clone())
    }

    #[test]
    fn the_largest_size_within_the_limit_is_taken() {
        let max = u32::try_from(MAX_IMAGE_INPUT_BYTES).expect("a small limit");
        assert_eq!(
            chosen(&[
                (90, 90, Some(2_000)),
                (800, 800, Some(90_000)),
                (1280, 1280, Some(max + 1))
            ]),
            Some("F1".into())
        );
        assert_eq!(chosen(&[(1280, 1280, Some(max + 1))]), None);
        assert_eq!(chosen(&[]), None);
    }

    #[test]
    fn a_size_telegram_gave_no_byte_count_is_fetched_not_refused() {
        // Seen: a photo whose sizes all lacked `file_size` was answered "too large" unread.
        assert_eq!(
            chosen(&[(800, 800, None), (90, 90, None)]),
            Some("F1".into())
        );
        // A known fitting size still wins over an unknown one.
        assert_eq!(
            chosen(&[(90, 90, Some(2_000)), (800, 800, None)]),
            Some("F0".into())
        );
        // Forged dimensions do not overflow.
        assert_eq!(
            chosen(&[(u32::MAX, u32::MAX, Some(10)), (1, 1, Some(5))]),
            Some("F0".into())
        );
    }
}
