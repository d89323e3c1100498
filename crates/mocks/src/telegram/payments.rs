//! Telegram Stars payments as the Bot API runs them: `sendInvoice` puts an invoice in the chat;
//! a simulated user paying it sends a `pre_checkout_query`; `answerPreCheckoutQuery` with
//! `ok: true` completes the payment and sends a `successful_payment` message carrying a fresh
//! `telegram_payment_charge_id`; `refundStarPayment` refunds a charge once.

use std::collections::HashMap;

use serde_json::{json, Value};

use super::state::{BotState, Entry};

/// An invoice the bot sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Invoice {
    pub(super) payload: String,
    pub(super) currency: String,
    pub(super) amount: i64,
}

/// A completed payment, as Telegram keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Charge {
    pub(super) user: i64,
    pub(super) invoice: Invoice,
    pub(super) refunded: bool,
}

#[derive(Debug, Default)]
pub(super) struct Payments {
    /// Invoices by (chat, message id).
    invoices: HashMap<(i64, i64), Invoice>,
    /// Pre-checkout queries waiting for the bot's answer, by query id.
    checkouts: HashMap<String, (i64, Invoice)>,
    pub(super) charges: HashMap<String, Charge>,
    next_charge: u64,
    /// Successful payments Telegram reported, repeats included.
    pub(super) reported: u64,
    /// Pre-checkout queries in hand-built updates (forged payments): the bot may answer each
    /// once; nothing is charged.
    pub(super) forged_checkouts: std::collections::HashSet<String>,
}

/// How `refundStarPayment` ended, as Telegram words it.
pub(super) enum Refund {
    Done,
    NotFound,
    AlreadyRefunded,
}

impl BotState {
    pub(super) fn record_invoice(&self, chat: i64, message_id: i64, invoice: Invoice) {
        self.payments
            .lock()
            .invoices
            .insert((chat, message_id), invoice);
    }

    /// The user opens the invoice and confirms: a `pre_checkout_query` update.
    pub(super) fn pay_update(&self, chat_id: i64, message_id: i64) -> Option<i64> {
        let invoice = self
            .payments
            .lock()
            .invoices
            .get(&(chat_id, message_id))
            .cloned()?;
        let entry = Entry::UserPaying {
            message_id,
            stars: invoice.amount,
        };
        self.user_update(chat_id, entry, |update_id, chat| {
            let id = format!("{chat_id}:{update_id}");
            self.payments
                .lock()
                .checkouts
                .insert(id.clone(), (chat_id, invoice.clone()));
            json!({ "pre_checkout_query": {
                "id": id,
                "from": Self::user_json(chat_id, chat),
                "currency": invoice.currency,
                "total_amount": invoice.amount,
                "invoice_payload": invoice.payload,
            }})
        })
    }

    /// `answerPreCheckoutQuery`: `Err` for an unknown (or already answered) query; on `ok`
    /// the payment completes and its `successful_payment` message follows.
    pub(super) fn answer_checkout(
        &self,
        query: &str,
        ok: bool,
        error: Option<String>,
    ) -> Result<(), ()> {
        let pending = self.payments.lock().checkouts.remove(query);
        let Some((chat, invoice)) = pending else {
            return match self.payments.lock().forged_checkouts.remove(query) {
                true => Ok(()),
                false => Err(()),
            };
        };
        self.bot_answer(chat, Some(Entry::CheckoutAnswered { ok, error }));
        if ok {
            let charge_id = {
                let mut payments = self.payments.lock();
                payments.next_charge += 1;
                let charge_id = format!("stxmock{:08}", payments.next_charge);
                payments.charges.insert(
                    charge_id.clone(),
                    Charge {
                        user: chat,
                        invoice: invoice.clone(),
                        refunded: false,
                    },
                );
                charge_id
            };
            self.successful_payment_update(chat, &charge_id);
        }
        Ok(())
    }

    /// Sends the `successful_payment` message of `charge_id` (again, for a repeat).
    pub(super) fn successful_payment_update(&self, chat_id: i64, charge_id: &str) -> Option<i64> {
        let invoice = self.payments.lock().charges.get(charge_id)?.invoice.clone();
        self.payments.lock().reported += 1;
        let message_id = self.next_message_id();
        let entry = Entry::UserPaid {
            charge_id: charge_id.to_owned(),
            stars: invoice.amount,
        };
        self.user_update(chat_id, entry, |_, chat| {
            json!({ "message": {
                "message_id": message_id,
                "from": Self::user_json(chat_id, chat),
                "chat": Self::chat_json(chat_id, chat),
                "date": super::state::unix_now(),
                "successful_payment": {
                    "currency": invoice.currency,
                    "total_amount": invoice.amount,
                    "invoice_payload": invoice.payload,
                    "telegram_payment_charge_id": charge_id,
                    "provider_payment_charge_id": "",
                },
            }})
        })
    }

    pub(super) fn refund(&self, user: i64, charge_id: &str) -> Refund {
        let mut payments = self.payments.lock();
        match payments.charges.get_mut(charge_id) {
            Some(charge) if charge.user == user && charge.refunded => Refund::AlreadyRefunded,
            Some(charge) if charge.user == user => {
                charge.refunded = true;
                Refund::Done
            }
            _ => Refund::NotFound,
        }
    }

    /// Charges completed so far (with whether each was refunded).
    pub(super) fn charges(&self) -> Vec<(String, i64, i64, bool)> {
        let mut charges: Vec<_> = self
            .payments
            .lock()
            .charges
            .iter()
            .map(|(id, c)| (id.clone(), c.user, c.invoice.amount, c.refunded))
            .collect();
        charges.sort();
        charges
    }
}

/// The invoice fields `sendInvoice` must carry; `Err` names what is missing or wrong.
pub(super) fn invoice_from(params: &serde_json::Map<String, Value>) -> Result<Invoice, String> {
    let text = |name: &str| params.get(name).and_then(Value::as_str).map(str::to_owned);
    let payload = text("payload").ok_or("payload is required")?;
    let currency = text("currency").ok_or("currency is required")?;
    for required in ["title", "description"] {
        if text(required).is_none_or(|t| t.is_empty()) {
            return Err(format!("{required} is required"));
        }
    }
    let prices = params
        .get("prices")
        .and_then(Value::as_array)
        .ok_or("prices is required")?;
    let amount: i64 = prices
        .iter()
        .filter_map(|p| p.get("amount").and_then(Value::as_i64))
        .sum();
    if currency == "XTR" && prices.len() != 1 {
        return Err("invoices in Telegram Stars must have exactly one price".into());
    }
    if currency == "XTR"
        && params
            .get("provider_token")
            .is_some_and(|t| t.as_str() != Some(""))
    {
        return Err("provider_token must be empty for payments in Telegram Stars".into());
    }
    if amount <= 0 {
        return Err("the total price must be positive".into());
    }
    Ok(Invoice {
        payload,
        currency,
        amount,
    })
}
