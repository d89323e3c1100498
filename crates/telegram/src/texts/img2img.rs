//! What the bot says about pictures sent to it.

use super::{pick, Lang};

pub(crate) fn group_help(lang: Lang, bot: &str) -> String {
    pick(
        lang,
        format!("In this group: /img@{bot} <description> draws it, or reply to one of my messages with a description. Credits and limits are yours, as in our private chat."),
        format!("В этой группе: /img@{bot} <описание> — нарисую, или ответьте на моё сообщение описанием. Кредиты и лимиты — ваши, как в личном чате."),
    )
}

pub(crate) fn photo_needs_caption(lang: Lang) -> String {
    pick(
        lang,
        "Nice picture! Send it again with a caption saying what to make of it, e.g. “as a watercolor”.".into(),
        "Отличная картинка! Отправьте её ещё раз с подписью — что из неё сделать, например «акварелью».".into(),
    )
}

/// A picture sent as a file (a document): image-to-image takes photos.
pub(crate) fn image_as_file(lang: Lang) -> String {
    pick(
        lang,
        "That picture came as a file. Send it as a photo (not as a file), with a caption saying what to make of it.".into(),
        "Картинка пришла файлом. Отправьте её как фото (не файлом) с подписью — что из неё сделать.".into(),
    )
}

pub(crate) fn no_image_model(lang: Lang) -> String {
    pick(
        lang,
        "None of this bot's models takes a picture; send a text description instead.".into(),
        "Ни одна модель этого бота не принимает картинки; опишите картинку текстом.".into(),
    )
}

pub(crate) fn photo_too_large(lang: Lang, max_kb: usize) -> String {
    pick(
        lang,
        format!("The picture is too large: up to {max_kb} KB is taken. Send a smaller one."),
        format!("Картинка слишком большая: принимается до {max_kb} КБ. Отправьте поменьше."),
    )
}

pub(crate) fn photo_unreadable(lang: Lang) -> String {
    pick(
        lang,
        "I could not read that picture (a PNG, JPEG or WebP photo is needed). Please send it again.".into(),
        "Не удалось прочитать картинку (нужна фотография PNG, JPEG или WebP). Отправьте её ещё раз.".into(),
    )
}
