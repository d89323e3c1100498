//! What the bot tells an admin about a broadcast.

use super::{pick, Lang};

pub(crate) fn broadcast_usage(lang: Lang) -> String {
    pick(
        lang,
        "Usage: /broadcast <text> — sends the text to every user, paced within Telegram's limits.".into(),
        "Использование: /broadcast <текст> — отправит текст всем пользователям в пределах лимитов Telegram.".into(),
    )
}

pub(crate) fn broadcast_progress(
    lang: Lang,
    id: i64,
    delivered: i64,
    blocked: i64,
    failed: i64,
    done: bool,
) -> String {
    let state = match (done, lang) {
        (true, Lang::En) => "finished",
        (true, Lang::Ru) => "завершена",
        (false, Lang::En) => "sending…",
        (false, Lang::Ru) => "идёт отправка…",
    };
    pick(
        lang,
        format!("Broadcast #{id} {state}\ndelivered: {delivered}\nblocked the bot: {blocked}\nfailed: {failed}"),
        format!("Рассылка #{id} {state}\nдоставлено: {delivered}\nзаблокировали бота: {blocked}\nошибки: {failed}"),
    )
}
