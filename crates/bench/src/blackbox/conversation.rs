//! One simulated user walking through the scenario's steps, and what went wrong when a step's
//! expectation was not met: which step, which user, what came instead.

use std::time::{Duration, Instant};

use genbot_mocks::telegram::{Entry, SimUser};

use super::scenario::{fill, Action, Answer, Expect, Scenario, Step};

/// A step whose expectation was not met.
#[derive(Debug, Clone, PartialEq)]
pub struct StepFailure {
    /// 1-based, as in the scenario file.
    pub step: usize,
    pub user: i64,
    pub what: Failure,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// Nothing at all came within the time.
    NoAnswer { expected: String, waited: Duration },
    /// Something came, but not what the step expects.
    Wrong { expected: String, got: String },
    /// No button whose text matches under the bot's messages.
    NoButton {
        pattern: String,
        buttons: Vec<String>,
    },
    /// A `pay` step with no invoice from the bot to pay.
    NoInvoice,
    /// The bot answered the pre-checkout query with `ok: false`: the user was not charged.
    CheckoutRefused { error: String },
    /// The bot never answered the pre-checkout query (Telegram cancels the payment after 10 s;
    /// a bot that leaves `pre_checkout_query` out of `allowed_updates` never sees it).
    CheckoutUnanswered { waited: Duration },
}

impl StepFailure {
    pub fn describe(&self, en: bool) -> String {
        let (step, user) = (self.step, self.user);
        match (&self.what, en) {
            (Failure::NoAnswer { expected, waited }, true) => format!(
                "step {step}, user {user}: no answer within {:.1} s (expected {expected})",
                waited.as_secs_f64()
            ),
            (Failure::NoAnswer { expected, waited }, false) => format!(
                "шаг {step}, пользователь {user}: нет ответа за {:.1} с (ожидалось: {expected})",
                waited.as_secs_f64()
            ),
            (Failure::Wrong { expected, got }, true) => {
                format!("step {step}, user {user}: expected {expected}, got {got}")
            }
            (Failure::Wrong { expected, got }, false) => {
                format!("шаг {step}, пользователь {user}: ожидалось {expected}, пришло {got}")
            }
            (Failure::NoButton { pattern, buttons }, true) => format!(
                "step {step}, user {user}: no button matching /{pattern}/ (buttons: {})",
                list(buttons)
            ),
            (Failure::NoButton { pattern, buttons }, false) => format!(
                "шаг {step}, пользователь {user}: нет кнопки, подходящей под /{pattern}/ (кнопки: {})",
                list(buttons)
            ),
            (Failure::NoInvoice, true) => {
                format!("step {step}, user {user}: nothing to pay: the bot sent no invoice")
            }
            (Failure::NoInvoice, false) => {
                format!("шаг {step}, пользователь {user}: нечего оплачивать: бот не прислал счёт")
            }
            (Failure::CheckoutRefused { error }, true) => format!(
                "step {step}, user {user}: the bot refused the payment at checkout: {error:?}"
            ),
            (Failure::CheckoutRefused { error }, false) => format!(
                "шаг {step}, пользователь {user}: бот отклонил оплату при подтверждении: {error:?}"
            ),
            (Failure::CheckoutUnanswered { waited }, true) => format!(
                "step {step}, user {user}: the bot did not answer the pre_checkout_query within {:.1} s (is it in allowed_updates?), so Telegram would cancel the payment",
                waited.as_secs_f64()
            ),
            (Failure::CheckoutUnanswered { waited }, false) => format!(
                "шаг {step}, пользователь {user}: бот не ответил на pre_checkout_query за {:.1} с (есть ли он в allowed_updates?), и Telegram отменил бы оплату",
                waited.as_secs_f64()
            ),
        }
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

/// Walks `user` through every step, `n` filling `{n}`; stops at the first unmet expectation.
/// Returns each expectation's kind and its time from action to expected answer.
pub(crate) async fn session(
    user: &SimUser,
    scenario: &Scenario,
    n: u64,
) -> Result<Vec<(Answer, Duration)>, StepFailure> {
    let mut times = Vec::with_capacity(scenario.steps.len());
    for (index, step) in scenario.steps.iter().enumerate() {
        let fail = |what| StepFailure {
            step: index + 1,
            user: user.id(),
            what,
        };
        let took = act_and_expect(user, step, n).await.map_err(fail)?;
        if let (Some(took), Some(expect)) = (took, &step.expect) {
            times.push((expect.kind, took));
        }
        if !step.think.is_zero() {
            tokio::time::sleep(step.think).await;
        }
    }
    Ok(times)
}

/// Performs one step; the time its expectation took, if it has one.
async fn act_and_expect(user: &SimUser, step: &Step, n: u64) -> Result<Option<Duration>, Failure> {
    let before = user.transcript();
    let edits_before = edits(&before);
    let started = Instant::now();
    act(user, &step.action, &before, n)?;
    let Some(expect) = &step.expect else {
        return Ok(None);
    };
    let seen = before.len();
    let met = user
        .wait_for(expect.within, |t| meets(expect, t, seen, edits_before))
        .await;
    if met.is_some() {
        return Ok(Some(started.elapsed()));
    }
    let after = user.transcript();
    let new = &after[seen.min(after.len())..];
    if matches!(step.action, Action::Pay) {
        if let Some(failure) = checkout_failure(new, expect.within) {
            return Err(failure);
        }
    }
    let came: Vec<String> = new.iter().filter_map(describe_bot_entry).collect();
    let expected = describe_expect(expect);
    if came.is_empty() && edits(&after) == edits_before {
        Err(Failure::NoAnswer {
            expected,
            waited: expect.within,
        })
    } else {
        Err(Failure::Wrong {
            expected,
            got: if came.is_empty() {
                "an edit that does not match".into()
            } else {
                came.join("; ")
            },
        })
    }
}

fn act(user: &SimUser, action: &Action, before: &[Entry], n: u64) -> Result<(), Failure> {
    match action {
        Action::Send(text) => {
            user.send_text(&fill(text, user.id(), n));
        }
        Action::Photo { caption } => {
            let caption = caption.as_ref().map(|c| fill(c, user.id(), n));
            user.send_photo(caption.as_deref());
        }
        Action::Press(pattern) => {
            let mut labels = Vec::new();
            let found = before.iter().rev().find_map(|entry| match entry {
                Entry::BotText {
                    message_id,
                    buttons,
                    ..
                } => {
                    labels.extend(buttons.iter().map(|(label, _)| label.clone()));
                    buttons
                        .iter()
                        .find(|(label, _)| pattern.is_match(label))
                        .map(|(_, data)| (*message_id, data.clone()))
                }
                _ => None,
            });
            let Some((message_id, data)) = found else {
                return Err(Failure::NoButton {
                    pattern: pattern.as_str().to_owned(),
                    buttons: labels,
                });
            };
            user.press(message_id, &data);
        }
        Action::Pay => {
            if user
                .last_invoice()
                .and_then(|message_id| user.pay(message_id))
                .is_none()
            {
                return Err(Failure::NoInvoice);
            }
        }
    }
    Ok(())
}

/// Why a payment did not go through, if the checkout is the reason.
fn checkout_failure(new: &[Entry], waited: Duration) -> Option<Failure> {
    let answer = new.iter().find_map(|entry| match entry {
        Entry::CheckoutAnswered { ok, error } => Some((*ok, error.clone())),
        _ => None,
    });
    match answer {
        None => Some(Failure::CheckoutUnanswered { waited }),
        Some((false, error)) => Some(Failure::CheckoutRefused {
            error: error.unwrap_or_default(),
        }),
        Some((true, _)) => None,
    }
}

fn meets(expect: &Expect, transcript: &[Entry], seen: usize, edits_before: u32) -> bool {
    let matches = |text: &str| expect.pattern.as_ref().is_none_or(|p| p.is_match(text));
    let new = &transcript[seen.min(transcript.len())..];
    match expect.kind {
        Answer::Text => new
            .iter()
            .any(|e| matches!(e, Entry::BotText { text, .. } if matches(text))),
        Answer::Photo => new.iter().any(|e| {
            matches!(e, Entry::BotPhoto { caption, .. }
                if matches(caption.as_deref().unwrap_or_default()))
        }),
        Answer::Edit => edits(transcript) > edits_before
            && transcript.iter().any(
                |e| matches!(e, Entry::BotText { text, edits, .. } if *edits > 0 && matches(text)),
            ),
        Answer::Invoice => new
            .iter()
            .any(|e| matches!(e, Entry::BotInvoice { title, .. } if matches(title))),
    }
}

fn edits(transcript: &[Entry]) -> u32 {
    transcript
        .iter()
        .map(|e| match e {
            Entry::BotText { edits, .. } => *edits,
            _ => 0,
        })
        .sum()
}

fn describe_expect(expect: &Expect) -> String {
    let kind = match expect.kind {
        Answer::Text => "a message",
        Answer::Photo => "a photo",
        Answer::Edit => "an edit",
        Answer::Invoice => "an invoice",
    };
    match &expect.pattern {
        Some(p) => format!("{kind} matching /{}/", p.as_str()),
        None => kind.to_owned(),
    }
}

/// The bot's entries, briefly, for a verdict.
fn describe_bot_entry(entry: &Entry) -> Option<String> {
    match entry {
        Entry::BotText { text, .. } => Some(format!("message {:?}", short(text))),
        Entry::BotPhoto { caption, .. } => Some(match caption {
            Some(c) => format!("photo captioned {:?}", short(c)),
            None => "a photo".into(),
        }),
        Entry::BotInvoice { title, stars, .. } => {
            Some(format!("invoice {:?} for {stars} ⭐", short(title)))
        }
        _ => None,
    }
}

fn short(text: &str) -> String {
    const MAX: usize = 80;
    if text.chars().count() <= MAX {
        text.to_owned()
    } else {
        format!("{}…", text.chars().take(MAX).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use genbot_mocks::telegram::{TelegramMock, TelegramMockConfig};
    use serde_json::{json, Value};

    /// A tiny bot over plain HTTP: `/menu` gets a keyboard, a press edits that message, a
    /// photo is fetched with `getFile` and gets its caption and size back, `/buy` an invoice
    /// for 5 ⭐ (`/buy refused`: one the checkout refuses), a payment a receipt.
    async fn responder(url: String) {
        let client = reqwest::Client::new();
        let call = |method: &str, body: Value| {
            client
                .post(format!("{url}/bot1:test/{method}"))
                .json(&body)
                .send()
        };
        let mut offset = 0;
        loop {
            let Ok(answer) = call("getUpdates", json!({ "offset": offset, "timeout": 1 })).await
            else {
                return;
            };
            let Ok(updates) = answer.json::<Value>().await else {
                return;
            };
            for update in updates["result"].as_array().cloned().unwrap_or_default() {
                offset = update["update_id"].as_i64().unwrap_or(0) + 1;
                let message = &update["message"];
                let chat = message["chat"]["id"].clone();
                let checkout = &update["pre_checkout_query"];
                if checkout.is_object() {
                    let ok = checkout["invoice_payload"] != "credits:refused";
                    let body = json!({ "pre_checkout_query_id": checkout["id"], "ok": ok,
                                       "error_message": "sold out" });
                    let _ = call("answerPreCheckoutQuery", body).await;
                }
                if message["successful_payment"].is_object() {
                    let stars = &message["successful_payment"]["total_amount"];
                    let body = json!({ "chat_id": chat, "text": format!("paid {stars}") });
                    let _ = call("sendMessage", body).await;
                }
                if let Some(buy) = message["text"]
                    .as_str()
                    .and_then(|t| t.strip_prefix("/buy"))
                {
                    let body = json!({ "chat_id": chat, "title": "5 credits",
                        "description": "credits", "payload": format!("credits:{}", buy.trim()),
                        "currency": "XTR",
                        "prices": [{ "label": "5 credits", "amount": 5 }] });
                    let _ = call("sendInvoice", body).await;
                }
                if message["text"] == "/menu" {
                    let keyboard = json!({ "inline_keyboard": [[
                        { "text": "Flux fast", "callback_data": "model:flux" }
                    ]] });
                    let body = json!({ "chat_id": chat, "text": "pick a model", "reply_markup": keyboard });
                    let _ = call("sendMessage", body).await;
                } else if message["photo"].is_array() {
                    let file_id = message["photo"][0]["file_id"].clone();
                    let bytes = match call("getFile", json!({ "file_id": file_id })).await {
                        Ok(answer) => {
                            let file: Value = answer.json().await.unwrap_or_default();
                            let path = file["result"]["file_path"].as_str().unwrap_or("");
                            let got = client
                                .get(format!("{url}/file/bot1:test/{path}"))
                                .send()
                                .await;
                            match got {
                                Ok(got) => got.bytes().await.map_or(0, |b| b.len()),
                                Err(_) => 0,
                            }
                        }
                        Err(_) => 0,
                    };
                    let caption = message["caption"].as_str().unwrap_or("");
                    let text = format!("photo: {caption} ({bytes} bytes)");
                    let _ = call("sendMessage", json!({ "chat_id": chat, "text": text })).await;
                }
                let query = &update["callback_query"];
                if query.is_object() {
                    let chat = query["message"]["chat"]["id"].clone();
                    let id = query["message"]["message_id"].clone();
                    let body = json!({ "chat_id": chat, "message_id": id, "text": "chosen: flux" });
                    let _ = call("editMessageText", body).await;
                    let _ = call(
                        "answerCallbackQuery",
                        json!({ "callback_query_id": query["id"] }),
                    )
                    .await;
                }
            }
        }
    }

    fn scenario(press: &str) -> Scenario {
        Scenario::parse(
            &format!(
                r#"
                [[step]]
                send = "/menu"
                expect = {{ text = "pick", within_s = 5 }}
                [[step]]
                press = "{press}"
                expect = {{ edit = "chosen: flux", within_s = 5 }}
                [[step]]
                photo = {{ caption = "blue {{n}}" }}
                expect = {{ text = "^photo: blue 7 \\(67 bytes\\)$", within_s = 5 }}
                "#
            ),
            "menu.toml",
        )
        .expect("valid")
    }

    #[tokio::test]
    async fn buttons_edits_and_photos_are_walked_and_a_missing_button_is_named() {
        let mock = TelegramMock::start(TelegramMockConfig::default())
            .await
            .expect("mock");
        let bot = tokio::spawn(responder(mock.url().to_owned()));
        let user = mock.user(1_000_001, "Sim", Some("en"));
        let times = session(&user, &scenario("(?i)flux"), 7)
            .await
            .expect("every step met");
        let kinds: Vec<Answer> = times.iter().map(|(kind, _)| *kind).collect();
        assert_eq!(kinds, [Answer::Text, Answer::Edit, Answer::Text]);

        let other = mock.user(1_000_002, "Sim", Some("en"));
        let failure = session(&other, &scenario("(?i)sdxl"), 7)
            .await
            .expect_err("no such button");
        assert_eq!(failure.step, 2);
        assert_eq!(
            failure.describe(true),
            "step 2, user 1000002: no button matching /(?i)sdxl/ (buttons: Flux fast)"
        );
        bot.abort();
    }

    fn purchase(buy: &str) -> Scenario {
        Scenario::parse(
            &format!(
                r#"
                [[step]]
                send = "{buy}"
                expect = {{ invoice = "^5 credits$", within_s = 5 }}
                [[step]]
                pay = true
                expect = {{ text = "^paid 5$", within_s = 2 }}
                "#
            ),
            "buy.toml",
        )
        .expect("valid")
    }

    #[tokio::test]
    async fn an_invoice_is_paid_and_a_refused_or_missing_checkout_is_named() {
        let mock = TelegramMock::start(TelegramMockConfig::default())
            .await
            .expect("mock");
        let bot = tokio::spawn(responder(mock.url().to_owned()));
        let buyer = mock.user(1_000_001, "Sim", Some("en"));
        let times = session(&buyer, &purchase("/buy"), 1).await.expect("bought");
        let kinds: Vec<Answer> = times.iter().map(|(kind, _)| *kind).collect();
        assert_eq!(kinds, [Answer::Invoice, Answer::Text]);
        assert_eq!(mock.charges().len(), 1);

        let refused = mock.user(1_000_002, "Sim", Some("en"));
        let failure = session(&refused, &purchase("/buy refused"), 1)
            .await
            .expect_err("refused at checkout");
        assert_eq!(failure.step, 2);
        assert_eq!(
            failure.what,
            Failure::CheckoutRefused {
                error: "sold out".into()
            }
        );

        let pay = Scenario::parse(
            "[[step]]\npay = true\nexpect = { text = \"\", within_s = 0.3 }",
            "pay.toml",
        )
        .expect("valid");
        let nothing = mock.user(1_000_003, "Sim", Some("en"));
        let failure = session(&nothing, &pay, 1).await.expect_err("no invoice");
        assert_eq!(failure.what, Failure::NoInvoice);

        // The bot stops after sending the invoice: nobody answers the checkout, and the
        // verdict says so rather than merely "no answer".
        let unanswered = mock.user(1_000_004, "Sim", Some("en"));
        let invoice = Scenario::parse(
            "[[step]]\nsend = \"/buy\"\nexpect = { invoice = \"\", within_s = 5 }",
            "invoice.toml",
        )
        .expect("valid");
        session(&unanswered, &invoice, 1).await.expect("invoiced");
        bot.abort();
        let _ = bot.await;
        let failure = session(&unanswered, &pay, 1).await.expect_err("unanswered");
        assert!(
            matches!(failure.what, Failure::CheckoutUnanswered { .. }),
            "{failure:?}"
        );
        assert!(failure.describe(true).contains("pre_checkout_query"));
        assert_eq!(
            mock.charges().len(),
            1,
            "refused and unanswered charge nothing"
        );
    }
}
