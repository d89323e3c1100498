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
    let came: Vec<String> = after[seen.min(after.len())..]
        .iter()
        .filter_map(describe_bot_entry)
        .collect();
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
    }
    Ok(())
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
    /// photo is fetched with `getFile` and gets its caption and size back.
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
}
