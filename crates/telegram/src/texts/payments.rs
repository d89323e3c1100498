//! What the bot says about buying credits, refunds and credit movements.

use genbot_store::{Movement, MovementKind, StarPayment};

use super::{pick, Lang};

pub(crate) fn packages(lang: Lang) -> String {
    pick(
        lang,
        "Buy credits with Telegram Stars. One image costs its model's price in credits (see /models).\nChoose a package:".into(),
        "Купите кредиты за Telegram Stars. Картинка стоит столько кредитов, сколько её модель (см. /models).\nВыберите пакет:".into(),
    )
}

pub(crate) fn package_button(credits: u32, stars: u32) -> String {
    format!("{credits} credits · {stars} ⭐")
}

pub(crate) fn no_payments(lang: Lang) -> String {
    pick(
        lang,
        "Buying credits is not offered by this bot. Your credits and daily images: /balance".into(),
        "Этот бот не продаёт кредиты. Ваши кредиты и картинки на сегодня: /balance".into(),
    )
}

pub(crate) fn invoice_title(lang: Lang, credits: u32) -> String {
    pick(
        lang,
        format!("{credits} credits"),
        format!("{credits} кредитов"),
    )
}

pub(crate) fn invoice_description(lang: Lang, credits: u32) -> String {
    pick(
        lang,
        format!("{credits} credits for image generation. Refunds: /paysupport"),
        format!("{credits} кредитов на генерацию картинок. Возвраты: /paysupport"),
    )
}

pub(crate) fn invoice_sent(lang: Lang) -> String {
    pick(lang, "Invoice sent".into(), "Счёт отправлен".into())
}

pub(crate) fn package_gone(lang: Lang) -> String {
    pick(
        lang,
        "This package is no longer offered. Send /buy to see the current ones; you were not charged.".into(),
        "Этот пакет больше не продаётся. Отправьте /buy, чтобы увидеть актуальные; деньги не списаны.".into(),
    )
}

pub(crate) fn checkout_wrong_currency(lang: Lang) -> String {
    pick(
        lang,
        "This invoice is not in Telegram Stars. Send /buy for a new one; you were not charged."
            .into(),
        "Этот счёт не в Telegram Stars. Отправьте /buy за новым; деньги не списаны.".into(),
    )
}

pub(crate) fn checkout_banned(lang: Lang) -> String {
    pick(
        lang,
        "Your account is blocked from generating images, so buying credits is refused; you were not charged. Questions: /paysupport".into(),
        "Вашему аккаунту запрещена генерация, поэтому покупка отклонена; деньги не списаны. Вопросы: /paysupport".into(),
    )
}

pub(crate) fn checkout_unavailable(lang: Lang) -> String {
    pick(
        lang,
        "The bot cannot take payments right now. Try again in a minute; you were not charged."
            .into(),
        "Бот сейчас не может принять оплату. Попробуйте через минуту; деньги не списаны.".into(),
    )
}

pub(crate) fn credited(lang: Lang, credits: i64, balance: i64, charge: &str) -> String {
    pick(
        lang,
        format!("Thank you! +{credits} credits. Balance: {balance}.\nPayment id: {charge} (for /paysupport)"),
        format!("Спасибо! +{credits} кредитов. Баланс: {balance}.\nНомер платежа: {charge} (для /paysupport)"),
    )
}

pub(crate) fn already_credited(lang: Lang, balance: i64, charge: &str) -> String {
    pick(
        lang,
        format!("Payment {charge} was already credited. Balance: {balance}."),
        format!("Платёж {charge} уже зачислен. Баланс: {balance}."),
    )
}

pub(crate) fn payment_unreadable(lang: Lang, charge: &str) -> String {
    pick(
        lang,
        format!("Your payment {charge} arrived, but its package is unknown, so no credits were added. Send /paysupport with this id and it will be refunded."),
        format!("Платёж {charge} получен, но его пакет неизвестен, кредиты не начислены. Напишите /paysupport с этим номером — деньги вернут."),
    )
}

pub(crate) fn support(lang: Lang, payments: &[StarPayment]) -> String {
    let mut text = pick(
        lang,
        "Payment support. Credits bought with Telegram Stars are refunded while they are unspent: write your payment id and what went wrong, and an administrator refunds it with /refund. Telegram's own support cannot refund purchases made in bots.".into(),
        "Поддержка платежей. Кредиты, купленные за Telegram Stars, возвращаются, пока они не потрачены: напишите номер платежа и что случилось, и администратор вернёт деньги командой /refund. Поддержка Telegram не возвращает покупки в ботах.".into(),
    );
    if !payments.is_empty() {
        text.push_str(&pick(
            lang,
            "\nYour payments:".into(),
            "\nВаши платежи:".into(),
        ));
        for payment in payments {
            text.push_str(&format!(
                "\n{} · +{} · {}",
                payment.paid_at.format("%Y-%m-%d %H:%M"),
                payment.credits,
                payment.charge_id
            ));
        }
    }
    text
}

pub(crate) fn refund_usage(lang: Lang) -> String {
    pick(
        lang,
        "Usage: /refund <payment id> (the id the buyer got with their receipt)".into(),
        "Использование: /refund <номер платежа> (номер из квитанции покупателя)".into(),
    )
}

pub(crate) fn refund_not_found(lang: Lang, charge: &str) -> String {
    pick(
        lang,
        format!("No payment {charge} is recorded. Check the id in the buyer's receipt."),
        format!("Платёж {charge} не найден. Проверьте номер в квитанции покупателя."),
    )
}

pub(crate) fn refund_already(lang: Lang, charge: &str) -> String {
    pick(
        lang,
        format!("Payment {charge} was already refunded."),
        format!("Платёж {charge} уже возвращён."),
    )
}

pub(crate) fn refund_spent(lang: Lang, charge: &str, credits: i64, balance: i64) -> String {
    pick(
        lang,
        format!("Refund of {charge} refused: it bought {credits} credits and the buyer has {balance} left; the rest was spent on images."),
        format!("Возврат {charge} отклонён: платёж дал {credits} кредитов, у покупателя осталось {balance}; остальное потрачено на картинки."),
    )
}

pub(crate) fn refunded(lang: Lang, charge: &str, stars: i64, credits: i64, user: i64) -> String {
    pick(
        lang,
        format!("Refunded {stars} ⭐ of payment {charge} to user {user}; {credits} credits taken back."),
        format!("Возвращено {stars} ⭐ по платежу {charge} пользователю {user}; списано {credits} кредитов."),
    )
}

pub(crate) fn refund_refused_by_telegram(lang: Lang, charge: &str, reason: &str) -> String {
    pick(
        lang,
        format!("Telegram refused the refund of {charge}: {reason}. The credits were given back to the buyer."),
        format!("Telegram отклонил возврат {charge}: {reason}. Кредиты возвращены покупателю."),
    )
}

pub(crate) fn refund_unanswered(lang: Lang, charge: &str) -> String {
    pick(
        lang,
        format!("Telegram did not answer the refund of {charge}. The credits stay reserved; send /refund {charge} again."),
        format!("Telegram не ответил на возврат {charge}. Кредиты зарезервированы; отправьте /refund {charge} ещё раз."),
    )
}

pub(crate) fn refund_notice(lang: Lang, charge: &str, stars: i64, credits: i64) -> String {
    pick(
        lang,
        format!("Your payment {charge} was refunded: {stars} ⭐ back to you, {credits} credits removed."),
        format!("Ваш платёж {charge} возвращён: {stars} ⭐ вернулись к вам, {credits} кредитов списано."),
    )
}

pub(crate) fn ban_usage(lang: Lang) -> String {
    pick(
        lang,
        "Usage: /ban <user id> or /unban <user id> (the numeric Telegram id)".into(),
        "Использование: /ban <id пользователя> или /unban <id пользователя> (числовой id Telegram)"
            .into(),
    )
}

pub(crate) fn ban_unknown_user(lang: Lang, user: i64) -> String {
    pick(
        lang,
        format!("User {user} has never used the bot; nothing changed."),
        format!("Пользователь {user} ещё не пользовался ботом; ничего не изменено."),
    )
}

pub(crate) fn ban_done(lang: Lang, user: i64, banned: bool) -> String {
    if banned {
        pick(
            lang,
            format!("User {user} is banned: no new images, no purchases. /unban {user} lifts it."),
            format!("Пользователь {user} заблокирован: без новых картинок и покупок. /unban {user} — снять."),
        )
    } else {
        pick(
            lang,
            format!("User {user} is no longer banned."),
            format!("Пользователь {user} разблокирован."),
        )
    }
}

/// A non-admin's admin command: never names the setting that makes admins (a user has no
/// business knowing the bot's configuration).
pub(crate) fn admins_only(lang: Lang) -> String {
    pick(
        lang,
        "Only the bot's administrators may do this.".into(),
        "Это могут только администраторы бота.".into(),
    )
}

/// `/balance`'s lines of recent movements.
pub(crate) fn movements(lang: Lang, movements: &[Movement]) -> String {
    if movements.is_empty() {
        return String::new();
    }
    let mut text = pick(lang, "\nRecent:".into(), "\nПоследние операции:".into());
    for movement in movements {
        let what = match (movement.kind, lang) {
            (MovementKind::Purchase, Lang::En) => "bought",
            (MovementKind::Purchase, Lang::Ru) => "покупка",
            (MovementKind::PurchaseRefund, Lang::En) => "payment refunded",
            (MovementKind::PurchaseRefund, Lang::Ru) => "возврат платежа",
            (MovementKind::Generation, Lang::En) => "image",
            (MovementKind::Generation, Lang::Ru) => "картинка",
            (MovementKind::GenerationRefund, Lang::En) => "image failed, refunded",
            (MovementKind::GenerationRefund, Lang::Ru) => "картинка не вышла, возврат",
        };
        text.push_str(&format!(
            "\n{} {:+} · {what} · {}",
            movement.at.format("%m-%d %H:%M"),
            movement.credits,
            movement.detail
        ));
    }
    text
}
