//! Credits for Telegram Stars: `/buy` offers the `STARS_PACKAGES`, a pressed package becomes an
//! invoice (`sendInvoice`, currency `XTR`, no provider token), the pre-checkout query is
//! answered at once (unknown or changed packages refused with the reason), and credits are added
//! only on `successful_payment`, through the store's ledger: once per
//! `telegram_payment_charge_id`, in the transaction that records it. A repeated or replayed
//! `successful_payment` finds its row and adds nothing. `/refund` (admins) takes the credits
//! back before asking Telegram, and gives them back if Telegram refuses; `/paysupport` answers
//! as Telegram requires of bots that sell.
//!
//! Payments are never skipped by the per-user flood limit: a payment is money already taken.
//!
//! Imports the shared layer, never another feature or the router.

mod payload;

use genbot_config::StarsPackage;
use genbot_store::{
    NewStarPayment, PaymentRecorded, RefundResult, RefundStart, StarPayment, UserId,
};
use teloxide::prelude::*;
use teloxide::types::{
    CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, LabeledPrice, PreCheckoutQuery,
    SuccessfulPayment, TelegramTransactionId,
};
use teloxide::{ApiError, RequestError};

use crate::pacing::send;
use crate::shared::account::register;
use crate::shared::buttons::Button;
use crate::shared::ids::{press_chat, user_id};
use crate::shared::{HandlerError, HandlerResult};
use crate::texts::{self, Lang};
use crate::Front;
use payload::{package_text, parse_package};

/// Telegram's currency code for Stars.
const STARS: &str = "XTR";
/// Longest a pre-checkout answer waits for the database: Telegram cancels the payment of a
/// query not answered within 10 s, and the answer itself may meet a slow Bot API.
const CHECKOUT_DB_BUDGET: std::time::Duration = std::time::Duration::from_secs(4);
/// Payments `/paysupport` lists.
const RECENT: u32 = 5;

fn offered(front: &Front, package: StarsPackage) -> bool {
    front.config().stars_packages.contains(&package)
}

/// `/buy`: the packages as buttons, or why nothing is sold.
pub(crate) async fn show_packages(front: &Front, chat: ChatId, lang: Lang) -> HandlerResult {
    let packages = &front.config().stars_packages;
    let bot = front.bot();
    if packages.is_empty() {
        send(
            front,
            chat,
            bot.send_message(chat, texts::no_payments(lang)),
        )
        .await?;
        return Ok(());
    }
    let rows = packages.iter().map(|package| {
        vec![InlineKeyboardButton::callback(
            texts::package_button(package.credits, package.stars),
            Button::Buy(&package_text(*package)).data(),
        )]
    });
    send(
        front,
        chat,
        bot.send_message(chat, texts::packages(lang))
            .reply_markup(InlineKeyboardMarkup::new(rows)),
    )
    .await?;
    Ok(())
}

/// A package button was pressed (`package`: its `CREDITS:STARS`): its invoice, in the buyer's
/// own chat. Returns the text for the button's answer.
pub(crate) async fn package_pressed(
    front: &Front,
    query: &CallbackQuery,
    package: &str,
) -> Result<String, HandlerError> {
    let lang = Lang::from_code(query.from.language_code.as_deref());
    let chat = press_chat(query);
    // Invoices go to the buyer's own chat only: a press elsewhere was forged.
    if chat.0 != user_id(&query.from).0 {
        return Ok(texts::button_expired(lang));
    }
    let Some(package) = parse_package(package).filter(|p| offered(front, *p)) else {
        return Ok(texts::package_gone(lang));
    };
    let title = texts::invoice_title(lang, package.credits);
    send(
        front,
        chat,
        front.bot().send_invoice(
            chat,
            title.clone(),
            texts::invoice_description(lang, package.credits),
            payload::write_unsigned(package),
            STARS,
            [LabeledPrice::new(title, package.stars)],
        ),
    )
    .await?;
    Ok(texts::invoice_sent(lang))
}

/// Why an invoice may not be paid, judged from the query alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InvoiceRefusal {
    /// Not in Telegram Stars.
    Currency,
    /// Not a package on offer at this price now (withdrawn, repriced, or not ours).
    PackageGone,
}

fn judge_invoice(
    packages: &[StarsPackage],
    currency: &str,
    total: u32,
    payload: &str,
    token: &str,
) -> Option<InvoiceRefusal> {
    if currency != STARS {
        return Some(InvoiceRefusal::Currency);
    }
    let package = payload::read(payload, token)
        .map(|invoiced| invoiced.package)
        .filter(|p| packages.contains(p) && p.stars == total);
    package.is_none().then_some(InvoiceRefusal::PackageGone)
}

/// Answers a pre-checkout query: yes for a package still offered at the invoiced price, in
/// Stars, to a user who may buy; otherwise no, with the reason. Telegram cancels the payment if
/// no answer comes within 10 seconds, so its database work (a read of the buyer, and a write
/// only for a new buyer or a changed name or language) gets at most [`CHECKOUT_DB_BUDGET`] in
/// all (the query reached it without waiting for the inbox).
pub(crate) async fn pre_checkout(front: &Front, query: &PreCheckoutQuery) -> HandlerResult {
    let lang = Lang::from_code(query.from.language_code.as_deref());
    let judged = judge_invoice(
        &front.config().stars_packages,
        &query.currency,
        query.total_amount,
        &query.invoice_payload,
        front.bot().token(),
    );
    let refusal = match judged {
        Some(InvoiceRefusal::Currency) => Some(texts::checkout_wrong_currency(lang)),
        Some(InvoiceRefusal::PackageGone) => Some(texts::package_gone(lang)),
        // Registered now, so the payment that follows always finds its buyer; a database that
        // takes longer than the budget gets the checkout refused (nothing is charged) rather
        // than left unanswered past Telegram's 10 s.
        None => {
            match tokio::time::timeout(CHECKOUT_DB_BUDGET, register(front, &query.from)).await {
                Ok(Ok(user)) if user.banned => Some(texts::checkout_banned(lang)),
                Ok(Ok(_)) => None,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "pre-checkout: registering the buyer failed");
                    Some(texts::checkout_unavailable(lang))
                }
                Err(_) => {
                    tracing::warn!(budget = ?CHECKOUT_DB_BUDGET, "pre-checkout: the database did not answer in time; refused");
                    Some(texts::checkout_unavailable(lang))
                }
            }
        }
    };
    let bot = front.bot();
    let mut answer = bot.answer_pre_checkout_query(query.id.clone(), refusal.is_none());
    if let Some(reason) = refusal {
        use teloxide::payloads::AnswerPreCheckoutQuerySetters;
        answer = answer.error_message(reason);
    }
    crate::pacing::call(front, answer).await?;
    Ok(())
}

/// Logs a payment that does not match the package its invoice named. The payload should be ours
/// (`credits:N:STARS`), never a secret, but it arrives as the update has it: a forged one may
/// hold a newline, so it (and the charge id and currency beside it) is logged escaped (`?`),
/// and one event stays one line. The buyer's details stay out of the log.
fn log_unmatched(charge: &str, payment: &SuccessfulPayment) {
    tracing::error!(
        charge_id = ?charge,
        payload = ?payment.invoice_payload,
        currency = ?payment.currency,
        total = payment.total_amount,
        "a payment that does not match the package its invoice named: recorded with no credits (refund it)"
    );
}

/// `successful_payment`: the ledger entry and its credits, once per charge id; then the receipt.
pub(crate) async fn paid(
    front: &Front,
    chat: ChatId,
    from: &teloxide::types::User,
    lang: Lang,
    payment: &SuccessfulPayment,
) -> HandlerResult {
    let charge = payment.telegram_payment_charge_id.0.clone();
    let package = paid_package(
        &payment.currency,
        payment.total_amount,
        &payment.invoice_payload,
        front.bot().token(),
        &front.config().stars_packages,
    );
    // What the invoice sold is what was paid for, even if STARS_PACKAGES changed since; a
    // payment that does not match its invoice's package, or whose package this bot cannot have
    // sold, is still recorded (zero credits), so it can be refunded.
    let credits = package.map_or(0, |p| i64::from(p.credits));
    let new = NewStarPayment {
        charge_id: charge.clone(),
        user: user_id(from),
        stars: i64::from(payment.total_amount),
        credits,
    };
    let users = front.engine().users();
    let recorded = match users.record_payment(new.clone()).await {
        Err(genbot_store::StoreError::UserNotFound(_)) => {
            register(front, from).await?;
            users.record_payment(new).await?
        }
        other => other?,
    };
    let text = match (recorded, package) {
        (recorded, None) => {
            if matches!(recorded, PaymentRecorded::Credited { .. }) {
                front.metrics().payment_uncredited();
            }
            log_unmatched(&charge, payment);
            texts::payment_unreadable(lang, &charge)
        }
        (PaymentRecorded::Credited { balance }, Some(_)) => {
            tracing::info!(charge_id = %charge, credits, stars = payment.total_amount, "payment credited");
            texts::credited(lang, credits, balance, &charge)
        }
        (PaymentRecorded::AlreadyRecorded { balance }, Some(_)) => {
            tracing::info!(charge_id = %charge, "a repeated payment: already credited");
            texts::already_credited(lang, balance, &charge)
        }
    };
    send(front, chat, front.bot().send_message(chat, text)).await?;
    Ok(())
}

/// The package a `successful_payment` pays for: the one its invoice payload names, paid in
/// Stars and in full, and plausibly sold by this bot: signed by it, or (unsigned, as this build
/// still writes) no better a deal than the best package on offer now. A package withdrawn or
/// repriced since its invoice (a restart with new `STARS_PACKAGES` while payments waited in
/// the inbox) is still credited; a made-up one (`credits:99999:1`) is not. A payment in another
/// currency or of another amount buys nothing.
fn paid_package(
    currency: &str,
    total: u32,
    payload: &str,
    token: &str,
    offered: &[StarsPackage],
) -> Option<StarsPackage> {
    payload::read(payload, token)
        .filter(|invoiced| invoiced.signed || no_better_than_offered(invoiced.package, offered))
        .map(|invoiced| invoiced.package)
        .filter(|p| currency == STARS && p.stars == total)
}

/// Whether `package` gives no more credits per Star than some package `offered` (any, when
/// nothing is offered: sales were turned off after the invoice).
fn no_better_than_offered(package: StarsPackage, offered: &[StarsPackage]) -> bool {
    offered.is_empty()
        || offered.iter().any(|q| {
            u64::from(package.credits) * u64::from(q.stars)
                <= u64::from(q.credits) * u64::from(package.stars)
        })
}

/// Longest `/refund` argument taken as a charge id (Telegram's are well under 100 characters).
const MAX_CHARGE_ID_CHARS: usize = 256;

/// `/refund <charge id>` (admins): credits back first, then Telegram; undone if Telegram
/// refuses.
pub(crate) async fn refund(front: &Front, chat: ChatId, lang: Lang, args: &str) -> HandlerResult {
    let bot = front.bot();
    // No charge id Telegram issues is this long; echoed in a refusal, a 5,000-character one
    // pushed the answer past sendMessage's 4,096 and the admin got nothing.
    let Some(charge) = args
        .split_whitespace()
        .next()
        .filter(|id| id.chars().count() <= MAX_CHARGE_ID_CHARS)
    else {
        send(
            front,
            chat,
            bot.send_message(chat, texts::refund_usage(lang)),
        )
        .await?;
        return Ok(());
    };
    let users = front.engine().users();
    let payment = match users.start_refund(charge).await? {
        RefundStart::Started(payment) => payment,
        RefundStart::NotFound => {
            let text = texts::refund_not_found(lang, charge);
            send(front, chat, bot.send_message(chat, text)).await?;
            return Ok(());
        }
        RefundStart::AlreadyRefunded(_) => {
            let text = texts::refund_already(lang, charge);
            send(front, chat, bot.send_message(chat, text)).await?;
            return Ok(());
        }
        RefundStart::Spent { payment, balance } => {
            let text = texts::refund_spent(lang, charge, payment.credits, balance);
            send(front, chat, bot.send_message(chat, text)).await?;
            return Ok(());
        }
    };
    let buyer = teloxide::types::UserId(u64::try_from(payment.user.0).unwrap_or_default());
    // Through the pacer's wire, not teloxide's: teloxide sleeps 10 s after a 5xx before it
    // returns it, keeping the admin waiting. A 5xx is tried again with backoff; a refund
    // that went through on a try whose answer was lost comes back CHARGE_ALREADY_REFUNDED.
    let asked = crate::pacing::call(
        front,
        bot.refund_star_payment(buyer, TelegramTransactionId(charge.to_owned())),
    )
    .await;
    let text = match asked {
        // Telegram refunded it, on this try or on an earlier one whose answer was lost: the
        // buyer is told once, by whichever attempt finishes the refund (not by a second admin
        // racing the first).
        Ok(_) => {
            refunded(front, users, &payment, charge).await?;
            texts::refunded(lang, charge, payment.stars, payment.credits, payment.user.0)
        }
        Err(RequestError::Api(e)) if e.to_string().contains("CHARGE_ALREADY_REFUNDED") => {
            refunded(front, users, &payment, charge).await?;
            texts::refunded(lang, charge, payment.stars, payment.credits, payment.user.0)
        }
        Err(RequestError::Api(e)) if is_refusal(&e) => {
            users
                .finish_refund(payment.user, charge, RefundResult::Refused)
                .await?;
            texts::refund_refused_by_telegram(lang, charge, &e.to_string())
        }
        Err(e) => {
            tracing::warn!(charge_id = %charge, error = %e, "refundStarPayment unanswered; the refund stays pending");
            texts::refund_unanswered(lang, charge)
        }
    };
    send(front, chat, bot.send_message(chat, text)).await?;
    Ok(())
}

/// Whether Telegram said no (the refund did not happen), rather than failing in a way that
/// leaves it unknown (a 5xx): only a refusal may give the credits back.
fn is_refusal(error: &ApiError) -> bool {
    match error {
        ApiError::Unknown(description) => description.starts_with("Bad Request"),
        _ => true,
    }
}

/// Records that Telegram refunded `payment` and tells its buyer, if this attempt is the one
/// that finished the refund.
async fn refunded(
    front: &Front,
    users: &genbot_cache::Users,
    payment: &StarPayment,
    charge: &str,
) -> HandlerResult {
    if users
        .finish_refund(payment.user, charge, RefundResult::Refunded)
        .await?
    {
        notify_buyer(front, payment.user, charge, payment.stars, payment.credits).await;
    }
    Ok(())
}

async fn notify_buyer(front: &Front, user: UserId, charge: &str, stars: i64, credits: i64) {
    let lang = front.language_of(user).await;
    let chat = ChatId(user.0);
    let text = texts::refund_notice(lang, charge, stars, credits);
    if let Err(e) = send(front, chat, front.bot().send_message(chat, text)).await {
        tracing::info!(error = %e, "telling the buyer of a refund failed");
    }
}

/// `/paysupport`: how refunds work, and the user's own payment ids.
pub(crate) async fn support(
    front: &Front,
    chat: ChatId,
    lang: Lang,
    user: UserId,
) -> HandlerResult {
    let payments = front.engine().store().payments_of(user, RECENT).await?;
    let text = texts::support(lang, &payments);
    send(front, chat, front.bot().send_message(chat, text)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "123:abc";

    /// Each event's fields as a text log would show them (`%` shows the raw text, `?` its
    /// escaped form).
    #[derive(Default)]
    struct Fields(std::sync::Mutex<Vec<String>>);

    impl tracing::field::Visit for &Fields {
        fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
            if let Ok(mut seen) = self.0.lock() {
                seen.push(format!("{}={value:?}", field.name()));
            }
        }
    }

    impl tracing::Subscriber for Fields {
        fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, event: &tracing::Event<'_>) {
            event.record(&mut &*self);
        }
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }

    #[test]
    fn a_forged_payload_with_a_newline_stays_on_one_log_line() {
        let payment: SuccessfulPayment = serde_json::from_value(serde_json::json!({
            "currency": "XTR\nforged: line",
            "total_amount": 1,
            "invoice_payload": "credits:60:250\nINFO payment credited",
            "telegram_payment_charge_id": "c\r1",
            "provider_payment_charge_id": "p1",
        }))
        .expect("a successful payment");
        let fields = std::sync::Arc::new(Fields::default());
        tracing::subscriber::with_default(fields.clone(), || log_unmatched("c\r1", &payment));
        let seen = fields.0.lock().map(|s| s.join(" ")).unwrap_or_default();
        assert!(seen.contains("credits:60:250\\nINFO"), "{seen}");
        assert!(!seen.contains(['\n', '\r']), "{seen}");
    }

    #[test]
    fn packages_round_trip_through_button_data_and_payload() {
        let package = StarsPackage {
            credits: 60,
            stars: 250,
        };
        assert_eq!(parse_package(&package_text(package)), Some(package));
        assert_eq!(parse_package("60"), None);
        assert_eq!(parse_package("60:-1"), None);
    }

    #[test]
    fn checkout_refuses_other_currencies_and_packages_not_on_offer() {
        let offer = [StarsPackage {
            credits: 10,
            stars: 50,
        }];
        assert_eq!(
            judge_invoice(&offer, "XTR", 50, "credits:10:50", TOKEN),
            None
        );
        let signed = payload::write(offer[0], TOKEN);
        assert_eq!(judge_invoice(&offer, "XTR", 50, &signed, TOKEN), None);
        assert_eq!(
            judge_invoice(&offer, "USD", 50, "credits:10:50", TOKEN),
            Some(InvoiceRefusal::Currency)
        );
        for (total, payload) in [
            (50, "credits:10:40"),  // repriced since the invoice
            (40, "credits:10:50"),  // paid a different amount
            (50, "credits:20:50"),  // withdrawn
            (50, "something else"), // not ours
        ] {
            assert_eq!(
                judge_invoice(&offer, "XTR", total, payload, TOKEN),
                Some(InvoiceRefusal::PackageGone),
                "{total} {payload}"
            );
        }
    }

    #[test]
    fn a_payment_buys_its_package_only_in_stars_and_in_full() {
        let package = StarsPackage {
            credits: 10,
            stars: 50,
        };
        let offer = [package];
        let paid =
            |currency, total, payload: &str| paid_package(currency, total, payload, TOKEN, &offer);
        let signed = payload::write(package, TOKEN);
        for payload in ["credits:10:50", signed.as_str()] {
            assert_eq!(paid("XTR", 50, payload), Some(package));
            assert_eq!(paid("XTR", 1, payload), None);
            assert_eq!(paid("XTR", 500, payload), None);
            assert_eq!(paid("USD", 50, payload), None);
        }
        assert_eq!(paid("XTR", 50, "credits:10"), None);
        // Withdrawn since its invoice: it buys what the invoice sold, signed or (no better a
        // deal than the offer, 10 for 50) unsigned.
        let withdrawn = StarsPackage {
            credits: 8,
            stars: 50,
        };
        assert_eq!(
            paid("XTR", 50, &payload::write(withdrawn, TOKEN)),
            Some(withdrawn)
        );
        assert_eq!(paid("XTR", 50, "credits:8:50"), Some(withdrawn));
        // A package this bot never sold, a better deal than any it offers (seen credited:
        // +99999 for 1 Star): nothing, unless this bot signed it.
        assert_eq!(paid("XTR", 1, "credits:99999:1"), None);
        assert_eq!(paid("XTR", 50, "credits:11:50"), None);
        assert_eq!(paid("XTR", 1, "credits:99999:1:0123456789abcdef"), None);
        let signed_deal = StarsPackage {
            credits: 11,
            stars: 50,
        };
        assert_eq!(
            paid("XTR", 50, &payload::write(signed_deal, TOKEN)),
            Some(signed_deal)
        );
        // Sales turned off since the invoice: what it sold is credited.
        assert_eq!(
            paid_package("XTR", 50, "credits:11:50", TOKEN, &[]),
            Some(signed_deal)
        );
    }

    proptest::proptest! {
        /// A package button's data and an invoice's payload are whatever a client sends: read
        /// without panicking, and a checkout of anything but a package on offer is refused.
        #[test]
        fn any_package_data_or_payload_is_read_without_panicking(
            data in crate::command::arbitrary_text(),
            total in proptest::prelude::any::<u32>(),
        ) {
            let offer = [StarsPackage { credits: 10, stars: 50 }];
            let package = parse_package(&data);
            let judged = judge_invoice(&offer, STARS, total, &data, TOKEN);
            if judged.is_none() {
                proptest::prop_assert!(data.starts_with(payload::PREFIX) && total == 50);
            }
            // Nothing unsigned buys more credits per Star than the offer.
            if let Some(paid) = paid_package(STARS, total, &data, TOKEN, &offer) {
                proptest::prop_assert!(u64::from(paid.credits) * 50 <= 10 * u64::from(paid.stars));
            }
            if let Some(package) = package {
                proptest::prop_assert_eq!(parse_package(&package_text(package)), Some(package));
            }
        }
    }
}
