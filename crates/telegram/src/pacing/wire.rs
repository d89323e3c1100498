//! Putting a request on the wire without teloxide's pause after a server error.
//!
//! teloxide sleeps 10 s after every 5xx answer before it returns the error: the send, its
//! handler and the chat's worker (for a group, every member) wait that long, and the answer's
//! retry only starts after it. Requests whose payload goes as JSON (every answer: texts, edits,
//! invoices, button and checkout answers) are posted here instead, with teloxide's client,
//! URL, payload and error types, so a 5xx comes back at once and the pacer retries it with
//! backoff. Uploads (multipart: results' photos and documents) keep teloxide's path; the outbox
//! retries those with its own backoff.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde::de::DeserializeOwned;
use serde::Serialize;
use teloxide::requests::{HasPayload, JsonRequest, MultipartRequest, Output, Payload, Request};
use teloxide::types::ResponseParameters;
use teloxide::{ApiError, RequestError};

use crate::BotApi;

/// A request the pacer can put on the wire.
pub(crate) trait Wire: Request<Err = RequestError> {
    /// Sends the request through `bot`; a server error is returned as soon as it is answered.
    fn on_wire(&self, bot: &BotApi) -> BoxFuture<'static, Result<Output<Self>, RequestError>>;

    /// As [`Wire::on_wire`], for a caller that does not need what was sent: the answer's
    /// `result` (for a message, the whole message as Telegram stored it) is not decoded.
    /// teloxide's `Message` is an untagged enum that serde decodes by trying each kind, so
    /// decoding every answer's copy cost about a tenth of the bot's CPU under load.
    fn on_wire_unread(&self, bot: &BotApi) -> BoxFuture<'static, Result<(), RequestError>>;
}

impl<P> Wire for JsonRequest<P>
where
    P: Payload + Serialize + Send + 'static,
    P::Output: DeserializeOwned + Send + 'static,
{
    fn on_wire(&self, bot: &BotApi) -> BoxFuture<'static, Result<Output<Self>, RequestError>> {
        Box::pin(post_json::<P, P::Output>(bot, self.payload_ref()))
    }

    fn on_wire_unread(&self, bot: &BotApi) -> BoxFuture<'static, Result<(), RequestError>> {
        let posted = post_json::<P, serde::de::IgnoredAny>(bot, self.payload_ref());
        Box::pin(async move { posted.await.map(|_| ()) })
    }
}

/// Posts `payload` as JSON to its method and reads the answer's `result` as `R`.
fn post_json<P, R>(
    bot: &BotApi,
    payload: &P,
) -> impl std::future::Future<Output = Result<R, RequestError>> + Send + 'static
where
    P: Payload + Serialize,
    R: DeserializeOwned + Send + 'static,
{
    let body = serde_json::to_vec(payload);
    let url = method_url(bot, P::NAME);
    let client = bot.client().clone();
    async move {
        let body = body.map_err(|e| RequestError::InvalidJson {
            source: Arc::new(e),
            raw: "".into(),
        })?;
        let response = client
            .post(url?)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await?;
        let status = response.status();
        // The Bot API answers in UTF-8: read as `text()` would, without its charset lookup.
        // Checked whole first (word at a time), as valid answers always are: the lossy reading
        // goes byte by byte and cost about 1.5 % of an update's instructions.
        let body = response.bytes().await?;
        let text = match std::str::from_utf8(&body) {
            Ok(text) => std::borrow::Cow::Borrowed(text),
            Err(_) => String::from_utf8_lossy(&body),
        };
        parse_answer(&text).map_err(|e| proxy_page(status, e))
    }
}

/// `getUpdates`, its updates as they came (the inbox decodes them, and records that JSON). The
/// answer is read in one pass: teloxide buffered the whole answer to try its shapes, then
/// decoded the updates from the buffer.
///
/// # Errors
/// As [`Wire::on_wire`].
pub(crate) async fn get_updates(
    bot: &BotApi,
    request: &JsonRequest<teloxide::payloads::GetUpdates>,
) -> Result<Vec<Box<serde_json::value::RawValue>>, RequestError> {
    post_json::<teloxide::payloads::GetUpdates, Vec<Box<serde_json::value::RawValue>>>(
        bot,
        request.payload_ref(),
    )
    .await
}

/// A 5xx whose body is no Bot API answer (a proxy's HTML 502 or 503 page) as the server error
/// it is, named by its status so the pacer tries it again as it does Telegram's own 5xx;
/// teloxide would report it as invalid JSON, which nobody retries.
fn proxy_page(status: reqwest::StatusCode, error: RequestError) -> RequestError {
    match error {
        RequestError::InvalidJson { .. } if status.is_server_error() => {
            RequestError::Api(ApiError::Unknown(format!(
                "{} (HTTP {}, not a Bot API answer)",
                status.canonical_reason().unwrap_or("Server Error"),
                status.as_u16()
            )))
        }
        other => other,
    }
}

impl<P> Wire for MultipartRequest<P>
where
    MultipartRequest<P>: Request<Err = RequestError>,
    <MultipartRequest<P> as Request>::SendRef: 'static,
{
    fn on_wire(&self, _bot: &BotApi) -> BoxFuture<'static, Result<Output<Self>, RequestError>> {
        Box::pin(self.send_ref())
    }

    fn on_wire_unread(&self, _bot: &BotApi) -> BoxFuture<'static, Result<(), RequestError>> {
        let sent = self.send_ref();
        Box::pin(async move { sent.await.map(|_| ()) })
    }
}

/// `{api}/bot{token}/{method}`, as teloxide builds it (an `…Inline` variant is the method
/// itself). The token never reaches an error: teloxide's conversion of network errors hides it.
fn method_url(bot: &BotApi, method: &str) -> Result<reqwest::Url, RequestError> {
    let mut url = bot.api_url();
    let pushed = url.path_segments_mut().map(|mut segments| {
        segments.push(&format!("bot{}", bot.token()));
        segments.push(method.trim_end_matches("Inline"));
    });
    match pushed {
        Ok(()) => Ok(url),
        Err(()) => Err(RequestError::Io(Arc::new(std::io::Error::other(
            "the Bot API URL cannot take a path",
        )))),
    }
}

/// A Bot API answer, read in one pass (no `serde_json::Value` in between). Telegram's answers
/// read as they did through a `Value`; of what it never sends, an `ok` that is no boolean or a
/// repeated key is now invalid JSON, and `{"ok":true}` without a result is a success for a
/// caller that does not read it.
#[derive(serde::Deserialize)]
struct Answer<R> {
    #[serde(default)]
    ok: bool,
    result: Option<R>,
    description: Option<serde_json::Value>,
    parameters: Option<serde_json::Value>,
}

/// The Bot API's answer: its `result`, or the error teloxide would have made of it.
fn parse_answer<R: DeserializeOwned>(text: &str) -> Result<R, RequestError> {
    let invalid = |e: serde_json::Error| RequestError::InvalidJson {
        source: Arc::new(e),
        raw: text.into(),
    };
    let answer: Answer<R> = serde_json::from_str(text).map_err(invalid)?;
    if answer.ok {
        return match answer.result {
            Some(result) => Ok(result),
            None => serde_json::from_value(serde_json::Value::Null).map_err(invalid),
        };
    }
    if let Some(parameters) = answer.parameters {
        match serde_json::from_value::<ResponseParameters>(parameters) {
            Ok(ResponseParameters::RetryAfter(after)) => {
                return Err(RequestError::RetryAfter(after))
            }
            Ok(ResponseParameters::MigrateToChatId(to)) => {
                return Err(RequestError::MigrateToChatId(to))
            }
            Err(_) => {}
        }
    }
    let description = answer.description.unwrap_or_default();
    let error: ApiError = serde_json::from_value(description).map_err(invalid)?;
    Err(RequestError::Api(error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_become_what_teloxide_makes_of_them() {
        let sent: teloxide::types::True =
            parse_answer(r#"{"ok":true,"result":true}"#).unwrap_or_else(|e| panic!("{e}"));
        let _ = sent;
        let server = parse_answer::<teloxide::types::True>(
            r#"{"ok":false,"error_code":502,"description":"Bad Gateway"}"#,
        );
        assert!(
            matches!(&server, Err(RequestError::Api(ApiError::Unknown(d))) if d == "Bad Gateway"),
            "{server:?}"
        );
        let blocked = parse_answer::<teloxide::types::True>(
            r#"{"ok":false,"error_code":403,"description":"Forbidden: bot was blocked by the user"}"#,
        );
        assert!(
            matches!(blocked, Err(RequestError::Api(ApiError::BotBlocked))),
            "{blocked:?}"
        );
        let slow = parse_answer::<teloxide::types::True>(
            r#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 7","parameters":{"retry_after":7}}"#,
        );
        assert!(
            matches!(slow, Err(RequestError::RetryAfter(s)) if s.seconds() == 7),
            "{slow:?}"
        );
        // What a caller that does not read the sent message gets: the same errors.
        let unread: Result<serde::de::IgnoredAny, _> = parse_answer(
            r#"{"ok":true,"result":{"message_id":7,"date":0,"chat":{"id":1,"type":"private"}}}"#,
        );
        assert!(unread.is_ok(), "{unread:?}");
        let unread_blocked = parse_answer::<serde::de::IgnoredAny>(
            r#"{"ok":false,"error_code":403,"description":"Forbidden: bot was blocked by the user"}"#,
        );
        assert!(
            matches!(unread_blocked, Err(RequestError::Api(ApiError::BotBlocked))),
            "{unread_blocked:?}"
        );
        let unread_slow = parse_answer::<serde::de::IgnoredAny>(
            r#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 3","parameters":{"retry_after":3}}"#,
        );
        assert!(
            matches!(unread_slow, Err(RequestError::RetryAfter(s)) if s.seconds() == 3),
            "{unread_slow:?}"
        );
        let page = parse_answer::<teloxide::types::True>("<html>502 Bad Gateway</html>");
        assert!(
            matches!(page, Err(RequestError::InvalidJson { .. })),
            "{page:?}"
        );
    }

    /// A proxy in front of the Bot API answers its own HTML 502 page, then the Bot API
    /// answers: the first is a server error the pacer retries (it was invalid JSON, which
    /// nobody retried, so the whole handler was tried again), the second goes through.
    #[tokio::test]
    async fn a_proxys_html_502_page_is_a_server_error_and_the_next_try_goes_through() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use teloxide::requests::Requester;
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let app = axum::Router::new().fallback(move || {
            let counted = counted.clone();
            async move {
                if counted.fetch_add(1, Ordering::SeqCst) == 0 {
                    (
                        axum::http::StatusCode::BAD_GATEWAY,
                        [(axum::http::header::CONTENT_TYPE, "text/html")],
                        "<html><body><h1>502 Bad Gateway</h1>nginx</body></html>",
                    )
                } else {
                    (
                        axum::http::StatusCode::OK,
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        r#"{"ok":true,"result":true}"#,
                    )
                }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let url = format!(
            "http://{}/",
            listener.local_addr().unwrap_or_else(|e| panic!("{e}"))
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        let bot = crate::connect_bot(
            &secrecy::SecretString::from("123:ABC"),
            url.parse().unwrap_or_else(|e| panic!("{e}")),
        );
        let request = bot.answer_callback_query(teloxide::types::CallbackQueryId("q".into()));
        let first = request.on_wire(&bot).await;
        assert!(
            matches!(&first, Err(e) if crate::pacing::is_server_error(e)),
            "{first:?}"
        );
        let second = request.on_wire(&bot).await;
        assert!(second.is_ok(), "{second:?}");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // A 4xx page stays what it was: not worth trying again.
        assert!(!crate::pacing::is_server_error(&proxy_page(
            reqwest::StatusCode::FORBIDDEN,
            RequestError::InvalidJson {
                source: Arc::new(serde_json::from_str::<u8>("<html>").unwrap_err()),
                raw: "<html>".into(),
            }
        )));
    }

    #[test]
    fn the_method_url_is_teloxides() {
        let bot = crate::connect_bot(
            &secrecy::SecretString::from("123:ABC"),
            "http://127.0.0.1:1/telegram"
                .parse()
                .unwrap_or_else(|e| panic!("{e}")),
        );
        let url = method_url(&bot, "editMessageTextInline").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:1/telegram/bot123:ABC/editMessageText"
        );
    }
}
