//! What the bot says about past images: the buttons under each, `/history`, re-runs.

use super::{pick, Lang};

pub(crate) fn again_button(lang: Lang) -> String {
    pick(lang, "🔁 Again".into(), "🔁 Ещё".into())
}

pub(crate) fn same_seed_button(lang: Lang) -> String {
    pick(lang, "🎯 Same seed".into(), "🎯 Тот же seed".into())
}

pub(crate) fn as_file_button(lang: Lang) -> String {
    pick(lang, "📄 As file".into(), "📄 Файлом".into())
}

pub(crate) fn older_button(lang: Lang) -> String {
    pick(lang, "⏬ Older".into(), "⏬ Раньше".into())
}

pub(crate) fn history_empty(lang: Lang) -> String {
    pick(
        lang,
        "No images yet. Send a description and I will draw it.".into(),
        "Картинок пока нет. Опишите картинку, и я её нарисую.".into(),
    )
}

pub(crate) fn history_more(lang: Lang) -> String {
    pick(
        lang,
        "Older images:".into(),
        "Более ранние картинки:".into(),
    )
}

pub(crate) fn history_end(lang: Lang) -> String {
    pick(lang, "That is all.".into(), "Это всё.".into())
}

pub(crate) fn not_yours(lang: Lang) -> String {
    pick(
        lang,
        "That image is not in your history.".into(),
        "Этой картинки нет в вашей истории.".into(),
    )
}

/// A press of "as file" under a group's result by someone other than who asked for it.
pub(crate) fn not_your_result(lang: Lang) -> String {
    pick(
        lang,
        "Only whoever asked for this image can get it as a file.".into(),
        "Получить эту картинку файлом может только тот, кто её заказал.".into(),
    )
}

pub(crate) fn rerun_queued(lang: Lang) -> String {
    pick(lang, "Queued".into(), "В очереди".into())
}

/// A press's answer to a double tap: the first press's re-run is queued, this one is not.
pub(crate) fn rerun_double_tap(lang: Lang) -> String {
    pick(
        lang,
        "Already queued. For one more, press again in a few seconds".into(),
        "Уже в очереди. Чтобы получить ещё одно, нажмите снова через несколько секунд".into(),
    )
}

/// A press's answer when the re-run was refused (the reason is in the chat).
pub(crate) fn rerun_not_queued(lang: Lang) -> String {
    pick(
        lang,
        "Not queued: see the chat".into(),
        "Не в очереди: см. чат".into(),
    )
}

pub(crate) fn original_gone(lang: Lang) -> String {
    pick(
        lang,
        "The original file is kept for a day after the image is sent (a file sent within that day stays available), and this one is gone. Press “Again” for a new image.".into(),
        "Оригинал хранится сутки после отправки (файл, отправленный в эти сутки, остаётся доступен), этот уже удалён. Нажмите «Ещё» для новой картинки.".into(),
    )
}

pub(crate) fn file_sent(lang: Lang) -> String {
    pick(lang, "File sent".into(), "Файл отправлен".into())
}
