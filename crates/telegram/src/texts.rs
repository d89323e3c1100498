//! Everything the bot says, in English and Russian. The one place that maps engine outcomes to
//! user-facing words.

mod broadcast;
mod img2img;
mod names;
mod payments;
mod rerun;
mod settings;

use chrono::{DateTime, Utc};
use genbot_engine::{CancelError, FailureReason, SubmitError};

pub(crate) use broadcast::*;
pub(crate) use img2img::*;
pub(crate) use payments::*;
pub(crate) use rerun::*;
pub(crate) use settings::*;

/// The language of a user's texts, from Telegram's `language_code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    Ru,
}

impl Lang {
    /// Russian for `ru`, `uk`, `be` and `kk` speakers (who mostly read Russian), English
    /// otherwise, and for a code that is no code (see [`Lang::usable_code`]).
    pub fn from_code(code: Option<&str>) -> Lang {
        let code = Lang::usable_code(code);
        // Language tags are case-insensitive (BCP 47): `RU` is Russian as `ru` is.
        let primary = code.map(|c| c.split(['-', '_']).next().unwrap_or(c));
        match primary {
            Some(p)
                if ["ru", "uk", "be", "kk"]
                    .iter()
                    .any(|l| p.eq_ignore_ascii_case(l)) =>
            {
                Lang::Ru
            }
            _ => Lang::En,
        }
    }

    /// `code` when it can be a language code: none with control characters (none of
    /// Telegram's has one). Both the texts' choice and the stored code go by this, so a user's
    /// replies and later messages come in one language.
    pub(crate) fn usable_code(code: Option<&str>) -> Option<&str> {
        code.filter(|c| !c.chars().any(char::is_control))
    }
}

fn pick(lang: Lang, en: String, ru: String) -> String {
    match lang {
        Lang::En => en,
        Lang::Ru => ru,
    }
}

fn until(at: DateTime<Utc>) -> String {
    let minutes = (at - Utc::now()).num_minutes().max(0);
    format!("{}h {:02}m", minutes / 60, minutes % 60)
}

/// `name` is the user's own `first_name`, cleaned here so no caller can send it raw.
pub(crate) fn welcome(lang: Lang, name: &str, credits: i64, daily_limit: u32) -> String {
    let name = names::display_name(name);
    // A name of only spaces, control or bidi characters cleans to nothing: greet without it
    // rather than "Hi, !".
    let (hi_en, hi_ru) = if name.is_empty() {
        ("Hi!".to_owned(), "Привет!".to_owned())
    } else {
        (format!("Hi, {name}!"), format!("Привет, {name}!"))
    };
    pick(
        lang,
        format!("{hi_en} Send me a description and I will draw it.\nCredits: {credits}. Up to {daily_limit} images a day.\n/models — choose a model, /balance — credits, /help — help."),
        format!("{hi_ru} Опишите картинку, и я её нарисую.\nКредиты: {credits}. До {daily_limit} картинок в день.\n/models — выбрать модель, /balance — баланс, /help — помощь."),
    )
}

pub(crate) fn help(lang: Lang) -> String {
    pick(
        lang,
        "Send any text and I will turn it into an image, or a photo with a caption to redraw it.\n/start — register\n/models — choose a model\n/settings — size, steps, seed… of your model\n/balance — credits and today's images\n/history — your images\n/buy — buy credits with Telegram Stars\n/paysupport — payment help and refunds\n/cancel — cancel your queued image\n/help — this help".into(),
        "Отправьте любой текст, и я превращу его в картинку, или фото с подписью, чтобы его перерисовать.\n/start — регистрация\n/models — выбрать модель\n/settings — размер, шаги, seed… вашей модели\n/balance — кредиты и картинки на сегодня\n/history — ваши картинки\n/buy — купить кредиты за Telegram Stars\n/paysupport — помощь с платежами и возвраты\n/cancel — отменить картинку в очереди\n/help — эта справка".into(),
    )
}

pub(crate) fn choose_model(lang: Lang) -> String {
    pick(lang, "Choose a model:".into(), "Выберите модель:".into())
}

pub(crate) fn model_chosen(lang: Lang, name: &str) -> String {
    pick(lang, format!("Model: {name}"), format!("Модель: {name}"))
}

pub(crate) fn model_unavailable(lang: Lang, id: &str) -> String {
    pick(
        lang,
        format!("The model “{id}” is not available now. Choose another one: /models"),
        format!("Модель «{id}» сейчас недоступна. Выберите другую: /models"),
    )
}

pub(crate) fn balance(
    lang: Lang,
    credits: i64,
    remaining: u32,
    limit: u32,
    resets_at: DateTime<Utc>,
) -> String {
    let resets = until(resets_at);
    pick(
        lang,
        format!("Credits: {credits}\nImages left today: {remaining} of {limit} (resets in {resets})"),
        format!("Кредиты: {credits}\nОсталось картинок сегодня: {remaining} из {limit} (обновится через {resets})"),
    )
}

pub(crate) fn queued(lang: Lang, position: usize) -> String {
    pick(
        lang,
        format!("In the queue: position {position}"),
        format!("В очереди: место {position}"),
    )
}

/// Told once, before the queue position, when the chosen model was removed from the catalogue.
pub(crate) fn chosen_model_removed(lang: Lang, removed: &str, default: &str) -> String {
    pick(
        lang,
        format!("The model “{removed}” you chose is no longer offered: this image is drawn with “{default}”, and it is your model from now on. To choose another: /models"),
        format!("Выбранной модели «{removed}» больше нет: это изображение рисует «{default}», и дальше будет она. Выбрать другую: /models"),
    )
}

pub(crate) fn generating(lang: Lang) -> String {
    pick(lang, "Generating…".into(), "Рисую…".into())
}

pub(crate) fn canceled(lang: Lang) -> String {
    pick(
        lang,
        "Canceled; the credits are back.".into(),
        "Отменено, кредиты возвращены.".into(),
    )
}

pub(crate) fn cancel_refused(lang: Lang, error: &CancelError) -> String {
    match error {
        CancelError::NothingQueued => pick(
            lang,
            "You have nothing in the queue.".into(),
            "У вас нет картинок в очереди.".into(),
        ),
        CancelError::AlreadyStarted(_) => pick(
            lang,
            "It is already being generated and can no longer be canceled.".into(),
            "Картинка уже рисуется, отменить нельзя.".into(),
        ),
        CancelError::Store(_) => internal_error(lang),
    }
}

pub(crate) fn unknown_command(lang: Lang) -> String {
    pick(
        lang,
        "Unknown command. /help lists what I can do.".into(),
        "Неизвестная команда. /help — что я умею.".into(),
    )
}

pub(crate) fn internal_error(lang: Lang) -> String {
    pick(
        lang,
        "Something went wrong on our side. Please try again in a minute.".into(),
        "Что-то пошло не так. Попробуйте через минуту.".into(),
    )
}

pub(crate) fn failed(lang: Lang, reason: &FailureReason) -> String {
    let (en, ru) = match reason {
        FailureReason::TimedOut => (
            "The image took too long and was canceled.",
            "Картинка рисовалась слишком долго и была отменена.",
        ),
        FailureReason::Model(_) => (
            "The model could not draw this one (it may have been refused by the safety filter).",
            "Модель не смогла нарисовать это (возможно, запрос отклонил фильтр).",
        ),
        FailureReason::Replicate(_) => (
            "The image service is not answering right now.",
            "Сервис генерации сейчас не отвечает.",
        ),
        FailureReason::Undeliverable(_) => (
            "The image was made, but Telegram would not take it.",
            "Картинка получилась, но Telegram не принял её.",
        ),
        FailureReason::Withdrawn(_) => (
            "Its model was withdrawn before it started; choose another: /models.",
            "Её модель убрали до начала работы; выберите другую: /models.",
        ),
    };
    pick(
        lang,
        format!("{en} Your credits are back; try again or change the prompt."),
        format!("{ru} Кредиты возвращены; попробуйте ещё раз или измените запрос."),
    )
}

pub(crate) fn refused(lang: Lang, error: &SubmitError) -> String {
    match error {
        SubmitError::AlreadySubmitted(_) => pick(
            lang,
            "This request is already being processed.".into(),
            "Этот запрос уже обрабатывается.".into(),
        ),
        SubmitError::EmptyPrompt => pick(
            lang,
            "Send a description of the image.".into(),
            "Опишите картинку текстом.".into(),
        ),
        SubmitError::PromptTooLong { max, chars } => pick(
            lang,
            format!("The description is too long ({chars} characters); keep it under {max}."),
            format!("Слишком длинное описание ({chars} символов); максимум {max}."),
        ),
        SubmitError::NotRegistered => pick(
            lang,
            "Send /start first.".into(),
            "Сначала отправьте /start.".into(),
        ),
        SubmitError::Banned => pick(
            lang,
            "Access is closed for this account.".into(),
            "Доступ для этого аккаунта закрыт.".into(),
        ),
        SubmitError::UnknownModel(id) | SubmitError::ModelDisabled(id) => {
            model_unavailable(lang, id)
        }

        SubmitError::InvalidParams(e) => pick(
            lang,
            format!("Invalid settings: {e}"),
            format!("Неверные параметры: {e}"),
        ),
        SubmitError::InvalidOption(e) => pick(
            lang,
            format!("Nothing was charged — fix the option and send again: {e}. All options: /settings"),
            format!("Ничего не списано — исправьте параметр и отправьте снова: {e}. Все параметры: /settings"),
        ),
        SubmitError::QueueFull { .. } => pick(
            lang,
            "The queue is full right now. Please try again in a few minutes.".into(),
            "Очередь сейчас заполнена. Попробуйте через несколько минут.".into(),
        ),
        SubmitError::DailyLimit { limit, resets_at } => {
            let resets = until(*resets_at);
            pick(
                lang,
                format!("You have used all {limit} images for today. The limit resets in {resets}."),
                format!("Вы использовали все {limit} картинок на сегодня. Лимит обновится через {resets}."),
            )
        }
        SubmitError::NoCredits { balance, cost } => pick(
            lang,
            format!("Not enough credits: this model costs {cost}, you have {balance}. /balance, /buy"),
            format!("Недостаточно кредитов: модель стоит {cost}, у вас {balance}. /balance, /buy"),
        ),
        SubmitError::ShuttingDown | SubmitError::Store(_) => internal_error(lang),
    }
}

pub(crate) fn slow_down(lang: Lang) -> String {
    pick(
        lang,
        "Too many messages at once; some were skipped. Please slow down.".into(),
        "Слишком много сообщений подряд; часть пропущена. Помедленнее, пожалуйста.".into(),
    )
}

/// Said once when a message of the user's was set aside after failing again and again.
pub(crate) fn not_handled(lang: Lang) -> String {
    pick(
        lang,
        "⚠️ Sorry, I could not handle your last message, and I will not try it again. Please send it in other words, or write to the bot's admin.".into(),
        "⚠️ Простите, я не смог обработать ваше последнее сообщение и больше не буду пытаться. Пожалуйста, сформулируйте его иначе или напишите администратору бота.".into(),
    )
}

/// A press's answer (to the presser alone) when its button means nothing now: unknown, stale or
/// forged data.
pub(crate) fn button_expired(lang: Lang) -> String {
    pick(
        lang,
        "This button has expired. Send /help to see what I can do.".into(),
        "Эта кнопка устарела. Отправьте /help, чтобы увидеть, что я умею.".into(),
    )
}

/// Said once a minute to a chat whose messages arrive faster than they can be answered.
pub(crate) fn chat_backlog(lang: Lang) -> String {
    pick(
        lang,
        "Too many messages are waiting in this chat; the newest were skipped. Please wait for my answers.".into(),
        "В этом чате ждёт слишком много сообщений; самые новые пропущены. Пожалуйста, дождитесь моих ответов.".into(),
    )
}

/// A press's answer (to the presser alone) when its chat has too many updates waiting and the
/// press was skipped.
pub(crate) fn busy_press(lang: Lang) -> String {
    pick(
        lang,
        "I am busy in this chat; please try again in a moment.".into(),
        "В этом чате я сейчас занят; пожалуйста, попробуйте через минуту.".into(),
    )
}

/// Said once to each user who writes while the database does not answer.
pub(crate) fn delayed(lang: Lang) -> String {
    pick(
        lang,
        "⏳ I have a problem on my side right now. Your message is not lost: I will answer it as soon as I am back. No need to send it again.".into(),
        "⏳ У меня сейчас неполадка. Ваше сообщение не потеряно: я отвечу на него, как только она устранится. Повторять его не нужно.".into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_codes_choose_the_texts() {
        assert_eq!(Lang::from_code(Some("ru")), Lang::Ru);
        assert_eq!(Lang::from_code(Some("ru-RU")), Lang::Ru);
        assert_eq!(Lang::from_code(Some("uk")), Lang::Ru);
        assert_eq!(Lang::from_code(Some("en-GB")), Lang::En);
        assert_eq!(Lang::from_code(None), Lang::En);
        assert_eq!(Lang::from_code(Some("RU")), Lang::Ru);
        assert_eq!(Lang::from_code(Some("Kk_kz")), Lang::Ru);
        assert_eq!(Lang::from_code(Some("ru\0")), Lang::En);
        assert_eq!(Lang::from_code(Some("rus")), Lang::En);
        assert!(help(Lang::Ru).contains("/models"));
    }

    proptest::proptest! {
        #[test]
        fn the_greeting_fits_one_message_whatever_the_name(
            raw in names::tests::names(),
            long in 0_usize..10_000,
        ) {
            // Arbitrary text, and arbitrary text made long enough to overflow unchecked.
            let name = raw.repeat(long / raw.chars().count().max(1) + 1);
            for lang in [Lang::En, Lang::Ru] {
                let text = welcome(lang, &name, i64::MIN, u32::MAX);
                proptest::prop_assert!(text.chars().count() <= 4_096, "{}", text.len());
                proptest::prop_assert!(
                    !text.contains('\u{202E}') && !text.contains('\0'),
                    "{text:?}"
                );
            }
        }

        #[test]
        fn the_greeting_never_has_an_empty_name_slot_or_controls(
            raw in proptest::prop_oneof![
                names::tests::names(),
                // Names that clean to nothing, often enough to be seen.
                names::tests::invisible_names(),
            ],
        ) {
            for (lang, hi, rest) in [
                (Lang::En, "Hi", "! Send me a description and I will draw it."),
                (Lang::Ru, "Привет", "! Опишите картинку, и я её нарисую."),
            ] {
                let text = welcome(lang, &raw, 5, 10);
                let (greeting, _) = text.split_once('\n').unwrap_or((&text, ""));
                // Either no name slot at all, or one with something visible in it (the name
                // itself may hold "!" or ", ", so the slot is cut out by the fixed words).
                let slot = greeting
                    .strip_prefix(hi)
                    .and_then(|g| g.strip_suffix(rest))
                    .and_then(|g| g.strip_prefix(", "));
                proptest::prop_assert!(
                    greeting == format!("{hi}{rest}")
                        || slot.is_some_and(|name| {
                            name.chars().any(|c| !c.is_whitespace() && !names::is_blank(c))
                        }),
                    "{greeting:?}"
                );
                // The template's own line breaks are the only control characters allowed.
                proptest::prop_assert!(
                    !text.chars().any(|c| c != '\n' && c.is_control()),
                    "{text:?}"
                );
            }
        }
    }

    #[test]
    fn a_name_that_cleans_to_nothing_gets_a_greeting_without_it() {
        for raw in ["", "   ", "\u{202E}\u{2066}", "\0\n\t", "\u{2028} \r"] {
            assert!(
                welcome(Lang::En, raw, 5, 10).starts_with("Hi! Send me"),
                "{raw:?}"
            );
            assert!(
                welcome(Lang::Ru, raw, 5, 10).starts_with("Привет! Опишите"),
                "{raw:?}"
            );
        }
        assert!(welcome(Lang::En, " Ann ", 5, 10).starts_with("Hi, Ann! Send me"));
        assert!(welcome(Lang::Ru, "Анна", 5, 10).starts_with("Привет, Анна! Опишите"));
    }
}
