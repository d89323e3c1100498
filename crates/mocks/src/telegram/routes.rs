//! `/bot<token>/<method>`: the Bot API's envelope, method names in any case, JSON, form and
//! multipart bodies.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

use super::state::{BotState, ChatOut, Edit, Entry, RawUpdate, Webhook};
use super::validate::{self, Refusal};
use super::wire::FileSend;

type Shared = Arc<BotState>;
type Params = Map<String, Value>;

/// Largest request body taken: Telegram's limit for uploaded documents (axum's default of
/// 2 MB would refuse a photo Telegram takes).
const MAX_UPLOAD_BYTES: usize = 50 * 1024 * 1024;

pub(super) fn router(state: Shared) -> Router {
    Router::new()
        .route("/{bot}/{method}", post(call).get(call))
        .route("/file/{bot}/{*path}", get(download))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_UPLOAD_BYTES))
        .with_state(state)
}

fn ok(result: Value) -> Response {
    Json(json!({ "ok": true, "result": result })).into_response()
}

/// `{"ok":true,"result":[…]}` from updates serialized when they were made.
fn ok_updates(batch: &[RawUpdate]) -> Response {
    let mut body = String::with_capacity(32 + batch.iter().map(|u| u.len() + 1).sum::<usize>());
    body.push_str(r#"{"ok":true,"result":["#);
    for (i, update) in batch.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(update);
    }
    body.push_str("]}");
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn error(code: u16, description: &str) -> Response {
    refusal_response(code, description, None)
}

/// As [`error`], with the `parameters` Telegram adds to some refusals.
fn error_with(code: u16, description: &str, parameters: serde_json::Value) -> Response {
    refusal_response(code, description, Some(parameters))
}

fn refusal_response(
    code: u16,
    description: &str,
    parameters: Option<serde_json::Value>,
) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST);
    let mut body = json!({ "ok": false, "error_code": code, "description": description });
    if let Some(parameters) = parameters {
        body["parameters"] = parameters;
    }
    (status, Json(body)).into_response()
}

/// A request Telegram would refuse: answered 400 with its description and recorded.
fn refused(state: &Shared, method: &str, params: &Params, refusal: Refusal) -> Response {
    state.refuse(
        method,
        &refusal.description,
        refusal.example,
        chat_id(params),
    );
    error(400, &refusal.description)
}

/// As [`refused`], for checks that need the mock's state.
fn refuse(state: &Shared, method: &str, params: &Params, reason: &str, field: &str) -> Response {
    refused(
        state,
        method,
        params,
        Refusal::bad_request(reason, validate::summary(params, field)),
    )
}

fn too_many(retry_after: u64) -> Response {
    (
        StatusCode::TOO_MANY_REQUESTS,
        Json(json!({
            "ok": false, "error_code": 429,
            "description": format!("Too Many Requests: retry after {retry_after}"),
            "parameters": { "retry_after": retry_after }
        })),
    )
        .into_response()
}

async fn call(
    State(state): State<Shared>,
    Path((bot, method)): Path<(String, String)>,
    request: Request,
) -> Response {
    // Before the body is read: a file send's record starts when its request reached the mock.
    let arrived = Instant::now();
    if !bot.starts_with("bot") || bot.len() <= 3 {
        return error(404, "Not Found");
    }
    let method = method.to_ascii_lowercase();
    let (params, not_utf8, images) = match params(request).await {
        Ok(read) => read,
        Err(reason) => return error(400, &format!("Bad Request: {reason}")),
    };
    state.count_method(&method);
    if let Some(NotUtf8 { name, reason }) = not_utf8 {
        // A refusal like any other: recorded (the parameter's name, never its bytes), in its
        // chat when that was readable.
        let name: String = name.chars().take(40).collect();
        let example = format!("{name}: not UTF-8");
        return refused(
            &state,
            &method,
            &params,
            Refusal::bad_request(reason, example),
        );
    }
    // Parameters first, as the Bot API checks them before anything else.
    if let Err(refusal) = validate::check(&method, &params) {
        return refused(&state, &method, &params, refusal);
    }
    let sends_into_chat = matches!(
        method.as_str(),
        "sendmessage"
            | "sendphoto"
            | "sendchataction"
            | "editmessagetext"
            | "sendinvoice"
            | "senddocument"
    );
    // The chat is resolved before the message replied to: a group that became a supergroup
    // takes nothing more, and the answer names where it went.
    if let Some(to) = chat_id(&params)
        .filter(|_| sends_into_chat)
        .and_then(|chat| state.migrated_to(chat))
    {
        return error_with(
            400,
            "Bad Request: group chat was upgraded to a supergroup chat",
            json!({ "migrate_to_chat_id": to }),
        );
    }
    // Then the message replied to, before the send reaches Telegram's servers.
    let reply = match method.as_str() {
        "sendmessage" | "sendphoto" | "senddocument" | "sendinvoice" => {
            match replied(&state, &params) {
                Ok(reply) => reply,
                Err(refusal) => return refused(&state, &method, &params, refusal),
            }
        }
        _ => None,
    };
    if sends_into_chat && chat_id(&params).is_some_and(|chat| state.refuses_blocked(chat)) {
        return error(403, "Forbidden: bot was blocked by the user");
    }
    if sends_into_chat {
        let delay = state.send_delay();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }
    if let Some(fault) = state.take_fault(&method) {
        return match fault.retry_after {
            Some(seconds) => too_many(seconds),
            None => error(fault.code, &fault.description),
        };
    }
    match method.as_str() {
        "getme" => ok(BotState::me()),
        "getupdates" => get_updates(&state, &params).await,
        "setwebhook" => set_webhook(&state, &params),
        "deletewebhook" => {
            *state.webhook.lock() = None;
            ok(json!(true))
        }
        "getwebhookinfo" => {
            let url = state
                .webhook
                .lock()
                .as_ref()
                .map(|(w, _)| w.url.clone())
                .unwrap_or_default();
            ok(json!({ "url": url, "has_custom_certificate": false, "pending_update_count": 0 }))
        }
        "sendmessage" => send_message(&state, &params, reply),
        "editmessagetext" => edit_message_text(&state, &params),
        "sendphoto"
            if images
                .get("photo")
                .is_some_and(|size| !photo_dimensions_allowed(*size)) =>
        {
            let (width, height) = images.get("photo").copied().unwrap_or_default();
            refused(
                &state,
                &method,
                &params,
                Refusal::bad_request(
                    "PHOTO_INVALID_DIMENSIONS",
                    format!("photo: {width}×{height}"),
                ),
            )
        }
        "sendphoto" if text(&params, "photo").is_some_and(|photo| is_document_file_id(&photo)) => {
            refused(
                &state,
                &method,
                &params,
                Refusal::bad_request(
                    "can't use file of type Document as Photo",
                    "photo: a document's file_id".to_owned(),
                ),
            )
        }
        "sendphoto" => {
            let answer = send_file(&state, &params, FileKind::Photo, arrived, reply);
            held(&state, answer).await
        }
        "senddocument"
            if text(&params, "document")
                .is_some_and(|document| !document_url_allowed(&document)) =>
        {
            refused(
                &state,
                &method,
                &params,
                Refusal::bad_request(
                    "wrong type of the web page content",
                    "document: a URL to an image".to_owned(),
                ),
            )
        }
        "sendchataction" => {
            let action = text(&params, "action").unwrap_or_default();
            match chat_id(&params).and_then(|chat| {
                state.with_chat(chat, |c| c.transcript.push(Entry::BotAction(action)))
            }) {
                Some(()) => ok(json!(true)),
                None => refuse(&state, &method, &params, "chat not found", "chat_id"),
            }
        }
        "answercallbackquery" => {
            let id = text(&params, "callback_query_id").unwrap_or_default();
            match state.take_callback_query(&id) {
                Some(chat) => {
                    state.bot_answer(chat, Some(Entry::CallbackAnswered(text(&params, "text"))));
                    ok(json!(true))
                }
                None => refuse(&state, &method, &params, QUERY_INVALID, "callback_query_id"),
            }
        }
        "getfile" => get_file(&params),
        "sendinvoice" => send_invoice(&state, &params, reply),
        "senddocument" => {
            let answer = send_file(&state, &params, FileKind::Document, arrived, reply);
            held(&state, answer).await
        }
        "answerprecheckoutquery" => {
            let query = text(&params, "pre_checkout_query_id").unwrap_or_default();
            let ok = params
                .get("ok")
                .is_some_and(|v| v == &json!(true) || v == &json!("true"));
            let reason = text(&params, "error_message");
            if !ok && reason.as_deref().is_none_or(str::is_empty) {
                return refuse(
                    &state,
                    &method,
                    &params,
                    "Parameter \"error_message\" is required",
                    "error_message",
                );
            }
            match state.answer_checkout(&query, ok, reason) {
                Ok(()) => ok_true(),
                Err(()) => refuse(
                    &state,
                    &method,
                    &params,
                    QUERY_INVALID,
                    "pre_checkout_query_id",
                ),
            }
        }
        "refundstarpayment" => {
            let Some(user) = integer(&params, "user_id") else {
                return refuse(
                    &state,
                    &method,
                    &params,
                    "invalid user_id specified",
                    "user_id",
                );
            };
            let Some(charge) = text(&params, "telegram_payment_charge_id") else {
                return refuse(
                    &state,
                    &method,
                    &params,
                    "Parameter \"telegram_payment_charge_id\" is required",
                    "telegram_payment_charge_id",
                );
            };
            let field = "telegram_payment_charge_id";
            match state.refund(user, &charge) {
                super::payments::Refund::Done => ok_true(),
                super::payments::Refund::NotFound => {
                    refuse(&state, &method, &params, "CHARGE_NOT_FOUND", field)
                }
                super::payments::Refund::AlreadyRefunded => {
                    refuse(&state, &method, &params, "CHARGE_ALREADY_REFUNDED", field)
                }
            }
        }
        "setmycommands" | "deletemycommands" | "close" | "logout" => ok(json!(true)),
        "getmycommands" => ok(json!([])),
        _ => error(404, "Not Found"),
    }
}

/// The message a send replies to: its id and how the sent message's `reply_to_message` shows it.
type Reply = Option<(i64, Value)>;

/// The message a send replies to, if it asks for one that exists; `Ok(None)` also for a
/// missing one when the send allows sending without the reply (then it goes as no reply);
/// `Err`: the refusal, when the message is not in the chat (or `reply_parameters.chat_id` names
/// a chat the mock does not know). A send's own unknown chat is the method's to refuse ("chat
/// not found"), as Telegram checks the chat first.
///
/// A reply to a message of another chat (`reply_parameters.chat_id`) is checked alike but comes
/// back without `reply_to_message`: Telegram shows only same-chat replies there (another
/// chat's message is an `external_reply`, which the mock does not build).
fn replied(state: &Shared, params: &Params) -> Result<Reply, Refusal> {
    // Parsed by `validate::check` already: a refusal there answered the call. Most sends ask
    // for no reply and are done here, before any lock.
    let Ok(Some(reply)) = validate::reply_to(params) else {
        return Ok(None);
    };
    let Some(chat) = chat_id(params).filter(|chat| state.with_chat(*chat, |_| ()).is_some()) else {
        return Ok(None);
    };
    let in_chat = match reply.chat.as_deref() {
        None => chat,
        Some(other) => match other
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|other| state.with_chat(*other, |_| ()).is_some())
        {
            Some(other) => other,
            None => {
                let example = validate::summary(params, reply.field);
                return Err(Refusal::bad_request("chat not found", example));
            }
        },
    };
    match state.replied(in_chat, reply.message_id) {
        Some(_) if in_chat != chat => Ok(None),
        Some(message) => Ok(Some((reply.message_id, message))),
        None if reply.allow_sending_without_reply => Ok(None),
        None => Err(Refusal::bad_request(
            REPLIED_NOT_FOUND,
            validate::summary(params, reply.field),
        )),
    }
}

/// Telegram's answer to a reply to a message the chat does not have.
const REPLIED_NOT_FOUND: &str = "message to be replied not found";

/// Telegram's answer to a query it does not know (or no longer: answered or expired).
const QUERY_INVALID: &str = "query is too old and response timeout expired or query ID is invalid";

/// Telegram's answer to an edit that changes nothing.
const NOT_MODIFIED: &str = "message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message";

/// The first query, form or multipart value that was no UTF-8: the Bot API refuses the call
/// with `reason`.
struct NotUtf8 {
    name: String,
    reason: &'static str,
}

/// The request's parameters, whatever the body's encoding. Multipart and form values arrive as
/// text; numbers and JSON (reply_markup) in them are read back as such.
///
/// A value that is no UTF-8 is kept with U+FFFD in it and named in the second part: the caller
/// refuses the call, knowing its other parameters (its chat). The third part gives the size of
/// each uploaded PNG, as Telegram reads it before taking a photo.
async fn params(request: Request) -> Result<(Params, Option<NotUtf8>, Images), String> {
    let mut not_utf8 = None;
    let mut images = Images::new();
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let query: HashMap<String, String> = request
        .uri()
        .query()
        .map(|q| url_pairs(q.as_bytes(), &mut not_utf8))
        .unwrap_or_default();
    let mut params: Params = query
        .into_iter()
        .map(|(k, v)| {
            let value = text_value(&k, v);
            (k, value)
        })
        .collect();
    if content_type.starts_with("multipart/form-data") {
        let mut multipart = Multipart::from_request(request, &())
            .await
            .map_err(|e| e.to_string())?;
        let mut files = HashMap::new();
        let mut sizes = HashMap::new();
        while let Some(field) = multipart.next_field().await.map_err(|e| e.to_string())? {
            let name = field.name().unwrap_or_default().to_owned();
            // An uploaded file is recorded by name and size: its bytes are no text.
            if let Some(file_name) = field.file_name().map(str::to_owned) {
                let bytes = field.bytes().await.map_err(|e| e.to_string())?;
                let upload = format!("upload:{file_name} ({} bytes)", bytes.len());
                if let Some(size) = crate::png::dimensions(&bytes) {
                    sizes.insert(name.clone(), size);
                }
                files.insert(name.clone(), upload.clone());
                params.insert(name, Value::String(upload));
                continue;
            }
            let bytes = field.bytes().await.map_err(|e| e.to_string())?;
            let value = text_value(&name, decoded(&name, bytes.to_vec(), &mut not_utf8));
            params.insert(name, value);
        }
        // `photo=attach://<part>` names the part that holds the file.
        for (name, value) in params.iter_mut() {
            let Some(part) = value.as_str().and_then(|v| v.strip_prefix("attach://")) else {
                continue;
            };
            if let Some(size) = sizes.get(part) {
                images.insert(name.clone(), *size);
            }
            if let Some(upload) = files.get(part) {
                *value = Value::String(upload.clone());
            }
        }
    } else {
        let body = Bytes::from_request(request, &())
            .await
            .map_err(|e| e.to_string())?;
        if content_type.starts_with("application/x-www-form-urlencoded") {
            params.extend(url_pairs(&body, &mut not_utf8).into_iter().map(|(k, v)| {
                let value = text_value(&k, v);
                (k, value)
            }));
        } else if !body.is_empty() {
            match serde_json::from_slice::<Value>(&body).map_err(|e| e.to_string())? {
                Value::Object(map) => params.extend(map),
                _ => return Err("body must be a JSON object".into()),
            }
        }
    }
    Ok((params, not_utf8, images))
}

/// A query string's or form's pairs. A name or value that is no UTF-8 once percent-decoded is
/// kept with U+FFFD in it and the first such recorded in `not_utf8` (`url`'s own parser would
/// pass it on unremarked).
fn url_pairs(bytes: &[u8], not_utf8: &mut Option<NotUtf8>) -> HashMap<String, String> {
    bytes
        .split(|&b| b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = match pair.iter().position(|&b| b == b'=') {
                Some(at) => (&pair[..at], &pair[at + 1..]),
                None => (pair, &[][..]),
            };
            let name = decoded("", percent_decoded(name), not_utf8);
            let value = decoded(&name, percent_decoded(value), not_utf8);
            (name, value)
        })
        .collect()
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space, `%XX` a byte, anything else
/// (a `%` not followed by two hex digits included) itself.
fn percent_decoded(raw: &[u8]) -> Vec<u8> {
    let hex = |b: u8| char::from(b).to_digit(16);
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                raw.get(i + 1).copied().and_then(hex),
                raw.get(i + 2).copied().and_then(hex),
            ) {
                (Some(high), Some(low)) => {
                    // Two hex digits make one byte: at most 0xFF.
                    out.push(u8::try_from(high * 16 + low).unwrap_or(u8::MAX));
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// `bytes` as text; when they are no UTF-8, lossily, with the Bot API's refusal recorded in
/// `not_utf8` (the first only): `text` has its own wording ("text must be encoded in UTF-8", as
/// bots report it from `sendMessage`), any other string the general one ("strings must be
/// encoded in UTF-8").
fn decoded(name: &str, bytes: Vec<u8>, not_utf8: &mut Option<NotUtf8>) -> String {
    match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            not_utf8.get_or_insert_with(|| NotUtf8 {
                name: name.to_owned(),
                reason: match name {
                    "text" => "text must be encoded in UTF-8",
                    _ => "strings must be encoded in UTF-8",
                },
            });
            String::from_utf8_lossy(e.as_bytes()).into_owned()
        }
    }
}

/// A form or multipart value: the parameters the Bot API takes JSON-serialized are read back
/// as JSON, every other one stays the text it is (a message text that looks like JSON is text).
fn text_value(name: &str, text: String) -> Value {
    const JSON_SERIALIZED: &[&str] = &[
        "reply_markup",
        "entities",
        "caption_entities",
        "allowed_updates",
        "prices",
        "media",
        "reply_parameters",
        "link_preview_options",
        "commands",
        "scope",
        "suggested_tip_amounts",
        "results",
        "permissions",
    ];
    if JSON_SERIALIZED.contains(&name) {
        if let Ok(value) = serde_json::from_str(text.trim_start()) {
            return value;
        }
    }
    Value::String(text)
}

fn integer(params: &Params, name: &str) -> Option<i64> {
    match params.get(name)? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn text(params: &Params, name: &str) -> Option<String> {
    match params.get(name)? {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

fn chat_id(params: &Params) -> Option<i64> {
    integer(params, "chat_id")
}

/// Inline keyboard buttons as (label, callback data).
fn buttons(params: &Params) -> Option<Vec<(String, String)>> {
    let rows = params
        .get("reply_markup")?
        .get("inline_keyboard")?
        .as_array()?;
    Some(
        rows.iter()
            .filter_map(Value::as_array)
            .flatten()
            .map(|b| {
                let label = b.get("text").and_then(Value::as_str).unwrap_or_default();
                let data = b
                    .get("callback_data")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                (label.to_owned(), data.to_owned())
            })
            .collect(),
    )
}

/// `getFile` for a photo a simulated user sent: its path under `/file/bot<token>/`.
fn get_file(params: &Params) -> Response {
    match text(params, "file_id") {
        Some(id) if id.starts_with(super::state::USER_PHOTO_PREFIX) => ok(json!({
            "file_id": id,
            "file_unique_id": format!("u{id}"),
            "file_size": crate::png::TINY_PNG.len(),
            "file_path": format!("photos/{id}.png"),
        })),
        _ => error(400, "Bad Request: invalid file_id"),
    }
}

/// The bytes behind a `getFile` path, as `https://api.telegram.org/file/bot<token>/<path>`.
async fn download(Path((bot, path)): Path<(String, String)>) -> Response {
    if !bot.starts_with("bot") || !path.starts_with("photos/") {
        return (StatusCode::NOT_FOUND, "Not Found").into_response();
    }
    ([(header::CONTENT_TYPE, "image/png")], crate::png::TINY_PNG).into_response()
}

async fn get_updates(state: &Shared, params: &Params) -> Response {
    if state.webhook.lock().is_some() {
        return error(409, "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first");
    }
    remember_allowed_updates(state, params);
    let offset = integer(params, "offset").unwrap_or(0);
    let limit = integer(params, "limit").unwrap_or(100).clamp(1, 100) as usize;
    let timeout = Duration::from_secs(integer(params, "timeout").unwrap_or(0).max(0) as u64)
        .min(state.config.max_long_poll);
    let deadline = tokio::time::Instant::now() + timeout;
    // Telegram serves one getUpdates per bot at a time: a newer one ends a waiting one with 409.
    let generation = 1 + state
        .poll_generation
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    state.updates_ready.notify_waiters();
    loop {
        let ready = state.updates_ready.notified();
        tokio::pin!(ready);
        ready.as_mut().enable();
        if state
            .poll_generation
            .load(std::sync::atomic::Ordering::SeqCst)
            != generation
        {
            state.count_poll_conflict();
            return error(409, "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running");
        }
        let batch = state.take_updates(offset, limit);
        if !batch.is_empty() || tokio::time::Instant::now() >= deadline {
            return ok_updates(&batch);
        }
        if tokio::time::timeout_at(deadline, ready).await.is_err() {
            return ok(json!([]));
        }
    }
}

/// `allowed_updates`, when given, replaces the previous list (as Telegram keeps it).
fn remember_allowed_updates(state: &Shared, params: &Params) {
    if let Some(kinds) = params.get("allowed_updates").and_then(Value::as_array) {
        state.set_allowed_updates(
            kinds
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
        );
    }
}

fn set_webhook(state: &Shared, params: &Params) -> Response {
    remember_allowed_updates(state, params);
    let Some(url) = text(params, "url") else {
        return error(400, "Bad Request: bad webhook: URL is required");
    };
    if url.is_empty() {
        *state.webhook.lock() = None;
        return ok(json!(true));
    }
    let webhook = Webhook {
        url,
        secret: text(params, "secret_token"),
    };
    let (pusher, updates) = mpsc::unbounded_channel();
    tokio::spawn(super::webhook_push::push_updates(
        state.clone(),
        webhook.clone(),
        updates,
    ));
    *state.webhook.lock() = Some((webhook, pusher));
    ok(json!(true))
}

fn message_json(state: &Shared, chat: i64, message_id: i64) -> Value {
    json!({
        "message_id": message_id,
        "from": BotState::me(),
        "chat": state.chat_public(chat),
        "date": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
    })
}

fn send_message(state: &Shared, params: &Params, reply: Reply) -> Response {
    let method = "sendmessage";
    let (Some(chat), Some(body)) = (chat_id(params), text(params, "text")) else {
        return refuse(state, method, params, "chat not found", "chat_id");
    };
    let Some(chat_out) = state.chat_out(chat) else {
        return refuse(state, method, params, "chat not found", "chat_id");
    };
    if let Some(retry_after) = state.throttle(chat) {
        return too_many(retry_after);
    }
    let message_id = state.next_message_id();
    // Recorded first: the answer's latency is the bot's, not the mock's serialization.
    let entry = Entry::BotText {
        message_id,
        text: body.clone(),
        buttons: buttons(params).unwrap_or_default(),
        edits: 0,
    };
    state.bot_answer(chat, Some(entry));
    let replied = reply.as_ref().map(|(_, message)| message);
    sent_text(
        message_id,
        chat_out,
        &body,
        params.get("reply_markup"),
        replied,
    )
}

fn edit_message_text(state: &Shared, params: &Params) -> Response {
    let method = "editmessagetext";
    let (Some(chat), Some(message_id), Some(body)) = (
        chat_id(params),
        integer(params, "message_id"),
        text(params, "text"),
    ) else {
        // Inline messages (`inline_message_id`) are not kept by the mock.
        return refuse(
            state,
            method,
            params,
            "message to edit not found",
            "message_id",
        );
    };
    // Known before the edit is made: an edit is either refused untouched or made and answered.
    let Some(chat_out) = state.chat_out(chat) else {
        return refuse(state, method, params, "chat not found", "chat_id");
    };
    if let Some(retry_after) = state.throttle(chat) {
        return too_many(retry_after);
    }
    let reason = match state.edit(chat, message_id, &body, buttons(params)) {
        Edit::Done => None,
        Edit::NotFound => Some("message to edit not found"),
        Edit::NoText => Some("there is no text in the message to edit"),
        Edit::NotModified => Some(NOT_MODIFIED),
    };
    if let Some(reason) = reason {
        return refuse(state, method, params, reason, "text");
    }
    sent_text(message_id, chat_out, &body, None, None)
}

/// `{"ok":true,"result":<the text message>}`, serialized from its parts: every answer of a
/// crowd passes here, and the mock must not cost what the bot is measured on.
fn sent_text(
    message_id: i64,
    chat: ChatOut,
    text: &str,
    reply_markup: Option<&Value>,
    reply_to_message: Option<&Value>,
) -> Response {
    #[derive(Serialize)]
    struct Answer<'a> {
        ok: bool,
        result: SentText<'a>,
    }
    #[derive(Serialize)]
    struct SentText<'a> {
        message_id: i64,
        from: &'a Value,
        chat: ChatOut,
        date: i64,
        #[serde(skip_serializing_if = "Option::is_none")]
        reply_to_message: Option<&'a Value>,
        text: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        reply_markup: Option<&'a Value>,
    }
    let answer = Answer {
        ok: true,
        result: SentText {
            message_id,
            from: BotState::me_cached(),
            chat,
            date: super::state::unix_now(),
            reply_to_message,
            text,
            reply_markup,
        },
    };
    match serde_json::to_string(&answer) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => error(500, &format!("Internal Server Error: {e}")),
    }
}

fn ok_true() -> Response {
    ok(json!(true))
}

fn send_invoice(state: &Shared, params: &Params, reply: Reply) -> Response {
    let method = "sendinvoice";
    let Some(chat) = chat_id(params).filter(|chat| state.chat_public(*chat).is_some()) else {
        return refuse(state, method, params, "chat not found", "chat_id");
    };
    let invoice = match super::payments::invoice_from(params) {
        Ok(invoice) => invoice,
        Err(reason) => return refuse(state, method, params, &reason, "prices"),
    };
    if let Some(retry_after) = state.throttle(chat) {
        return too_many(retry_after);
    }
    let message_id = state.next_message_id();
    let title = text(params, "title").unwrap_or_default();
    state.record_invoice(chat, message_id, invoice.clone());
    state.bot_answer(
        chat,
        Some(Entry::BotInvoice {
            message_id,
            title: title.clone(),
            payload: invoice.payload.clone(),
            currency: invoice.currency.clone(),
            stars: invoice.amount,
        }),
    );
    let mut message = message_json(state, chat, message_id);
    message["invoice"] = json!({
        "title": title,
        "description": text(params, "description").unwrap_or_default(),
        "start_parameter": "",
        "currency": invoice.currency,
        "total_amount": invoice.amount,
    });
    if let Some((_, replied)) = reply {
        message["reply_to_message"] = replied;
    }
    ok(message)
}

/// A file send's answer, after the hold [`super::TelegramMock::hold_file_answers`] set.
async fn held(state: &Shared, answer: Response) -> Response {
    let hold = *state.file_answer_hold.lock();
    if !hold.is_zero() {
        tokio::time::sleep(hold).await;
    }
    answer
}

/// What the bot sends as a file: the parameter holding it and the message's field.
#[derive(Clone, Copy)]
enum FileKind {
    Photo,
    Document,
}

/// Width and height of the uploaded PNG images, by the parameter that names them (`photo`).
type Images = HashMap<String, (u32, u32)>;

/// Telegram's rule for a photo: "width and height must not exceed 10000 in total; width and
/// height ratio must be at most 20". A document may be any size. The mock reads the size of
/// PNG uploads only (the bot uploads what Replicate made); Telegram also checks JPEG and WebP,
/// photos given by URL and albums.
fn photo_dimensions_allowed((width, height): (u32, u32)) -> bool {
    let (long, short) = (width.max(height), width.min(height));
    u64::from(width) + u64::from(height) <= 10_000 && short > 0 && long <= short.saturating_mul(20)
}

/// Whether Telegram sends `document` (a URL, a `file_id` or an upload): "sending by URL will
/// currently only work for GIF, PDF and ZIP files". Telegram looks at what the URL serves; the
/// mock, which fetches nothing, at the URL's path.
fn document_url_allowed(document: &str) -> bool {
    let Ok(url) = url::Url::parse(document) else {
        return true;
    };
    if !matches!(url.scheme(), "http" | "https") {
        return true;
    }
    let path = url.path().to_ascii_lowercase();
    [".gif", ".pdf", ".zip"]
        .iter()
        .any(|kind| path.ends_with(kind))
}

/// Whether `file` is the `file_id` of a document this mock sent (`document<message id>`, as
/// [`send_file`] names them): Telegram refuses one as a photo.
fn is_document_file_id(file: &str) -> bool {
    file.strip_prefix("document")
        .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
}

/// `sendPhoto` / `sendDocument`: the file as given (URL, `file_id` or `upload:…`).
fn send_file(
    state: &Shared,
    params: &Params,
    kind: FileKind,
    arrived: Instant,
    reply: Reply,
) -> Response {
    let field = match kind {
        FileKind::Photo => "photo",
        FileKind::Document => "document",
    };
    let method = format!("send{field}");
    let (Some(chat), Some(file)) = (chat_id(params), text(params, field)) else {
        return refuse(state, &method, params, "chat not found", "chat_id");
    };
    if state.chat_public(chat).is_none() {
        return refuse(state, &method, params, "chat not found", "chat_id");
    }
    if let Some(retry_after) = state.throttle(chat) {
        return too_many(retry_after);
    }
    let message_id = state.next_message_id();
    let caption = text(params, "caption");
    // The message it replies to, when it is one: a missing one allowed is no reply.
    let (reply_to, replied) = reply.unzip();
    let keyboard = buttons(params).unwrap_or_default();
    let sent = state.wire.record(FileSend {
        chat,
        message_id,
        document: matches!(kind, FileKind::Document),
        caption: caption.clone(),
        buttons: keyboard.clone(),
        reply_to,
        arrived,
        answered: None,
    });
    let entry = match kind {
        FileKind::Photo => Entry::BotPhoto {
            message_id,
            url: file,
            caption: caption.clone(),
            buttons: keyboard,
            reply_to,
        },
        FileKind::Document => Entry::BotDocument {
            message_id,
            file,
            caption: caption.clone(),
        },
    };
    state.bot_answer(chat, Some(entry));
    let mut message = message_json(state, chat, message_id);
    let file = super::state::sent_file_json(field, message_id);
    message[field] = match kind {
        FileKind::Photo => json!([file]),
        FileKind::Document => file,
    };
    if let Some(caption) = caption {
        message["caption"] = json!(caption);
    }
    if let Some(replied) = replied {
        message["reply_to_message"] = replied;
    }
    state.wire.watch(sent, ok(message))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::url_pairs;

    proptest! {
        /// Whatever Unicode a client form-encodes (as `url` and `reqwest` do) reads back as
        /// written, names included, and is not refused.
        #[test]
        fn any_form_encoded_text_reads_back_as_written(name in "\\PC{0,8}", value in "\\PC*") {
            let body = url::form_urlencoded::Serializer::new(String::new())
                .append_pair(&name, &value)
                .finish();
            let mut not_utf8 = None;
            let pairs = url_pairs(body.as_bytes(), &mut not_utf8);
            prop_assert!(not_utf8.is_none());
            prop_assert_eq!(pairs.get(&name), Some(&value));
        }

        /// Any bytes at all decode; a form is refused only when something in it was no UTF-8
        /// (and so holds a U+FFFD it did not bring).
        #[test]
        fn any_bytes_decode_and_are_refused_only_for_bytes_that_are_no_utf8(
            bytes in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut not_utf8 = None;
            let pairs = url_pairs(&bytes, &mut not_utf8);
            let replaced = pairs.iter().any(|(k, v)| k.contains('\u{FFFD}') || v.contains('\u{FFFD}'));
            prop_assert!(not_utf8.is_none() || replaced, "a refusal without a replaced byte");
            if std::str::from_utf8(&bytes).is_ok() && !bytes.contains(&b'%') {
                prop_assert!(not_utf8.is_none(), "UTF-8 without escapes refused");
            }
        }
    }

    #[test]
    fn documents_go_by_url_only_as_gif_pdf_or_zip() {
        use super::document_url_allowed as allowed;
        assert!(!allowed("http://127.0.0.1:9/files/out-1.png"));
        assert!(!allowed("https://example.com/a.jpg?x=.pdf"));
        assert!(allowed("https://example.com/A.PDF"));
        assert!(allowed("http://example.com/anim.gif"));
        assert!(allowed("upload:image.png (67 bytes)"));
        assert!(allowed("BQACAgIAAxkBAAIB"));
    }

    #[test]
    fn a_documents_file_id_is_told_from_other_files() {
        use super::is_document_file_id as document;
        assert!(document("document12"));
        assert!(!document("photo12"));
        assert!(!document("document"));
        assert!(!document("upload:document1.png (67 bytes)"));
        assert!(!document("http://127.0.0.1/document1"));
    }

    /// Telegram's photo rule: sides at most 10,000 together, the long one at most 20 times the
    /// short one.
    #[test]
    fn photo_sizes_telegram_takes_and_refuses() {
        use super::photo_dimensions_allowed as allowed;
        assert!(allowed((1, 1)));
        assert!(allowed((5_000, 5_000)));
        assert!(allowed((2_000, 100)), "a ratio of exactly 20");
        assert!(!allowed((2_100, 100)), "a ratio over 20");
        assert!(!allowed((100, 2_100)), "either way round");
        assert!(!allowed((5_001, 5_000)), "over 10,000 together");
        assert!(!allowed((0, 10)));
        assert!(!allowed((u32::MAX, u32::MAX)));
    }
}
