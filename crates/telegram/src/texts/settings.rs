//! What the bot says about `/settings`.

use super::{pick, Lang};

pub(crate) fn settings_header(lang: Lang, model: &str) -> String {
    pick(
        lang,
        format!("Settings for {model} (press to change; a prompt may also carry them, e.g. --ar 16:9 --seed 42):"),
        format!("Настройки {model} (нажмите, чтобы изменить; их можно писать и в описании, например --ar 16:9 --seed 42):"),
    )
}

pub(crate) fn random(lang: Lang) -> String {
    pick(lang, "random".into(), "случайный".into())
}

pub(crate) fn text_only(lang: Lang, flag: &str) -> String {
    pick(
        lang,
        format!("(write {flag} … in your prompt)"),
        format!("(пишите {flag} … в описании)"),
    )
}

pub(crate) fn reset_button(lang: Lang) -> String {
    pick(lang, "↺ Defaults".into(), "↺ По умолчанию".into())
}

pub(crate) fn setting_saved(lang: Lang, name: &str, value: &str) -> String {
    pick(
        lang,
        format!("Saved: {name} = {value}"),
        format!("Сохранено: {name} = {value}"),
    )
}

pub(crate) fn settings_reset(lang: Lang) -> String {
    pick(lang, "Back to defaults".into(), "Сброшено".into())
}

pub(crate) fn setting_refused(lang: Lang, name: &str, allowed: &str) -> String {
    pick(
        lang,
        format!("{name}: not changed, {allowed}. Open /settings again."),
        format!("{name}: не изменено, {allowed}. Откройте /settings заново."),
    )
}
