//! The Bot API mock's state: pending updates, chats with their transcripts, latency samples.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::{mpsc, Notify};

use super::TelegramMockConfig;

/// The bot's own user id, as `getMe` reports it.
pub(super) const BOT_ID: i64 = 7_000_000_001;

/// One line of a chat, as a person reading it would see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Entry {
    /// The user sent a text (or a command).
    UserText(String),
    /// The user pressed an inline button carrying this callback data.
    UserPressed(String),
    /// The user sent a photo (the mock's 1×1 PNG, fetchable with `getFile`), with this caption.
    UserPhoto { caption: Option<String> },
    /// The bot sent a text; `edits` counts later `editMessageText` calls on it.
    BotText {
        message_id: i64,
        text: String,
        /// Inline keyboard buttons as (label, callback data).
        buttons: Vec<(String, String)>,
        edits: u32,
    },
    /// The bot sent a photo: `url` is the URL or `file_id` it gave, or `upload:<file name> (<n>
    /// bytes)` for an uploaded file.
    BotPhoto {
        message_id: i64,
        url: String,
        caption: Option<String>,
        /// Inline keyboard buttons under the photo as (label, callback data).
        buttons: Vec<(String, String)>,
        /// The message it replies to (`reply_parameters.message_id` or `reply_to_message_id`),
        /// if any: `None` also when that message was missing and the send allowed sending
        /// without the reply.
        reply_to: Option<i64>,
    },
    /// The bot sent a document: `file` as for photos.
    BotDocument {
        message_id: i64,
        file: String,
        caption: Option<String>,
    },
    /// The bot showed a chat action (`upload_photo`, `typing`).
    BotAction(String),
    /// The bot answered a button press.
    CallbackAnswered(Option<String>),
    /// The bot sent an invoice (`sendInvoice`) for `stars` in `currency`.
    BotInvoice {
        message_id: i64,
        title: String,
        payload: String,
        currency: String,
        stars: i64,
    },
    /// The user confirmed paying the invoice `message_id` (a `pre_checkout_query`).
    UserPaying { message_id: i64, stars: i64 },
    /// The bot answered the pre-checkout query: `ok`, or refused with `error`.
    CheckoutAnswered { ok: bool, error: Option<String> },
    /// Telegram reported the payment (`successful_payment`), perhaps again.
    UserPaid { charge_id: String, stars: i64 },
}

/// `file_id`s of the photos simulated users send start with this (`getFile` knows them).
pub(super) const USER_PHOTO_PREFIX: &str = "userphoto";

/// What the mock has counted.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TelegramMockStats {
    /// Updates created by simulated users.
    pub updates_sent: u64,
    /// Updates the bot fetched with getUpdates or received on its webhook.
    pub updates_delivered: u64,
    /// Webhook deliveries that failed (not 2xx, or not answered in time) and were tried again.
    pub webhook_retries: u64,
    /// Webhook deliveries the bot answered, by HTTP status (a 401 is a secret Telegram did not
    /// send; deliveries the bot never answered are not here).
    pub webhook_answers: BTreeMap<u16, u64>,
    /// Updates dropped because their kind was not in the bot's `allowed_updates`.
    pub updates_not_allowed: u64,
    /// Calls per Bot API method (lower case).
    pub methods: BTreeMap<String, u64>,
    /// Calls answered 429 for sending too fast.
    pub throttled: u64,
    /// Time from each update to the bot's first answer in that chat, in order of answers.
    pub answer_latencies: Vec<Duration>,
    /// How long each update waited at the mock before a `getUpdates` first returned it (the
    /// bot's polling lag, Telegram's side of it), in order of first delivery; updates pushed to
    /// a webhook are not counted (one queued before `setWebhook` and fetched after
    /// `deleteWebhook` counts the whole time between).
    pub intake_waits: Vec<Duration>,
    /// Updates not answered yet.
    pub unanswered: u64,
    /// Sends answered 403 because the user blocked the bot, per chat.
    pub blocked_refusals: BTreeMap<i64, u64>,
    /// Most messages and edits the bot sent within one calendar second of the mock's clock.
    /// Not a sustained rate: Telegram's budget as [`sends_over_budget`](Self::sends_over_budget)
    /// keeps it (30 a second, a burst of 30) admits up to 60 in a second that starts with a
    /// full bucket.
    pub peak_sends_per_s: u64,
    /// Messages and edits sent so far…
    pub sends: u64,
    /// …and those a token bucket of Telegram's budget (30 a second, a burst of 30) would have
    /// refused: a bot that paces itself to Telegram's limit keeps this near 0.
    pub sends_over_budget: u64,
    /// `getUpdates` calls ended with 409 because another `getUpdates` of the bot came while
    /// they waited (Telegram's "terminated by other getUpdates request": two pollers).
    pub poll_conflicts: u64,
    /// Requests Telegram would have refused (a text too long, markup that does not parse, an
    /// edit of nothing or to the same content, a reply to a message the chat does not have, an
    /// unknown query…), by method and description
    /// with the first examples. Not here: scripted faults, flood control's 429s
    /// ([`Self::throttled`]) and blocked users' 403s, which tests provoke on purpose.
    pub refused: Vec<Refused>,
    /// Requests Telegram would have refused in chats a test set apart with
    /// [`super::TelegramMock::exempt_from_refusals`] (hostile inputs it sends on purpose):
    /// answered as Telegram would, counted here, not in [`Self::refused`].
    pub refused_exempt: u64,
    /// The second (since the mock started) and the sends counted in it so far.
    #[serde(skip)]
    pub(super) send_second: (u64, u64),
    /// The budget's bucket: tokens left and when it was last filled (seconds on the mock's clock).
    #[serde(skip)]
    pub(super) budget: (f64, f64),
}

/// Requests of one method refused with one description.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Refused {
    /// The Bot API method, lower case (`sendmessage`).
    pub method: String,
    /// Telegram's description, e.g. `Bad Request: message is too long`.
    pub description: String,
    pub count: u64,
    /// The first few, each the offending parameter summarised (length and first characters;
    /// never a token).
    pub examples: Vec<String>,
}

/// Examples kept per (method, description).
pub const REFUSED_EXAMPLES: usize = 3;

/// Whether an update of `kind` passes the bot's `allowed_updates`.
fn allows(allowed: Option<&[String]>, kind: &str) -> bool {
    allowed.is_none_or(|kinds| kinds.iter().any(|k| k == kind))
}

/// Telegram's overall send budget: messages a second, and the burst.
const SEND_BUDGET_PER_S: f64 = 30.0;

#[derive(Debug)]
pub(super) struct Chat {
    pub(super) first_name: String,
    pub(super) language: Option<String>,
    pub(super) transcript: Vec<Entry>,
    /// When each not-yet-answered update of this chat was sent.
    pending: VecDeque<Instant>,
    pub(super) changed: Arc<Notify>,
    /// The messages in the chat by id (the users' and the bot's): what a send may reply to.
    said: HashMap<i64, Said>,
}

/// A message in a chat, kept to be shown as a reply's `reply_to_message`.
#[derive(Debug)]
enum Said {
    /// The transcript's entry `at` (a user's text or the bot's message), sent by `from` (the
    /// bot's id for the bot's) at `date`: read back from the transcript, as a crowd's every text
    /// passes here and a copy of each would cost what the bot is measured on.
    Entry { at: usize, from: i64, date: i64 },
    /// The message as its update delivered it (a user's photo, a payment, an injected update).
    Delivered(Box<Value>),
}

/// An update serialized once, when the user acts: getUpdates and webhook pushes send the same
/// bytes however often they are asked for (the mock must not cost what the bot is measured on).
pub(super) type RawUpdate = Arc<str>;

#[derive(Debug, Default)]
struct Updates {
    next_id: i64,
    /// Each waiting update with its kind (`message`, `callback_query`, …).
    queue: VecDeque<Queued>,
    /// The kinds the bot asked for (`allowed_updates` of its last `getUpdates`/`setWebhook`);
    /// `None`: every kind. As Telegram does, other kinds are dropped, not delivered.
    allowed: Option<Vec<String>>,
}

/// An update waiting for the bot's `getUpdates`.
#[derive(Debug)]
struct Queued {
    id: i64,
    kind: String,
    raw: RawUpdate,
    /// When it was queued, until a `getUpdates` first returned it.
    undelivered_since: Option<Instant>,
}

impl Queued {
    fn new(id: i64, kind: String, raw: RawUpdate) -> Self {
        Queued {
            id,
            kind,
            raw,
            undelivered_since: Some(Instant::now()),
        }
    }
}

#[derive(Debug, Clone)]
pub(super) struct Webhook {
    pub(super) url: String,
    pub(super) secret: Option<String>,
}

/// Flood control's state: Telegram's budgets as token buckets (tokens left, last refill in
/// seconds on the mock's clock) and each group's sends of the last minute.
#[derive(Debug, Default)]
struct SendWindow {
    overall: Option<(f64, f64)>,
    per_chat: HashMap<i64, (f64, f64)>,
    per_group: HashMap<i64, VecDeque<f64>>,
}

/// Flood control: 30 messages a second per bot (a burst of 30)…
const FLOOD_PER_S: f64 = 30.0;
/// …about one a second per chat after a burst of three…
const FLOOD_CHAT_PER_S: f64 = 1.0;
const FLOOD_CHAT_BURST: f64 = 3.0;
/// …and 20 a minute per group.
const FLOOD_GROUP_PER_MIN: usize = 20;
/// Sends arrive with the network's jitter: a send this much early is still let through, so a
/// bot pacing itself exactly to the limits is not refused for a few milliseconds.
const FLOOD_SLACK_S: f64 = 0.05;

impl SendWindow {
    /// Whether a send into `chat_id` at `now` (seconds) is within the budgets; `Err(wait)`:
    /// seconds until it would be. A refused send takes no budget.
    fn admit(&mut self, chat_id: i64, now: f64) -> Result<(), f64> {
        let mut wait = 0.0_f64;
        if chat_id < 0 {
            let sent = self.per_group.entry(chat_id).or_default();
            while sent
                .front()
                .is_some_and(|at| now - at >= 60.0 - FLOOD_SLACK_S)
            {
                sent.pop_front();
            }
            if sent.len() >= FLOOD_GROUP_PER_MIN {
                wait = wait.max(sent.front().map_or(1.0, |at| 60.0 - (now - at)));
            }
        }
        let mut chat = self.per_chat.get(&chat_id).copied();
        if let Err(w) = take_token(&mut chat, now, FLOOD_CHAT_PER_S, FLOOD_CHAT_BURST) {
            wait = wait.max(w);
        }
        let mut overall = self.overall;
        if let Err(w) = take_token(&mut overall, now, FLOOD_PER_S, FLOOD_PER_S) {
            wait = wait.max(w);
        }
        if wait > 0.0 {
            return Err(wait);
        }
        if let Some(chat) = chat {
            self.per_chat.insert(chat_id, chat);
        }
        self.overall = overall;
        if chat_id < 0 {
            self.per_group.entry(chat_id).or_default().push_back(now);
        }
        Ok(())
    }
}

/// Telegram's send budget as the mock's flood control enforces it, for working out the floor
/// it puts under a bot's answers: the earliest each send could go out.
#[derive(Debug, Default)]
pub struct FloodBudget(SendWindow);

impl FloodBudget {
    /// The earliest time (seconds, on the caller's clock) a send into `chat_id` asked for at
    /// `at_s` goes out within every budget, taking that send's share. Sends must be asked for
    /// in the order they queue (first come, first sent).
    pub fn earliest(&mut self, chat_id: i64, at_s: f64) -> f64 {
        let mut at = at_s;
        // Each refusal names the wait until the bucket would admit it: a few rounds at most.
        for _ in 0..64 {
            match self.0.admit(chat_id, at) {
                Ok(()) => return at,
                Err(wait) => at += wait.max(1e-3),
            }
        }
        at
    }
}

/// Takes a token from a bucket of `burst` refilled at `rate`; `Err(wait)` when empty.
fn take_token(bucket: &mut Option<(f64, f64)>, now: f64, rate: f64, burst: f64) -> Result<(), f64> {
    let (tokens, at) = bucket.unwrap_or((burst, now));
    let tokens = (tokens + (now - at) * rate).min(burst);
    // The slack, in tokens, never more than a quarter: a full bucket's burst stays exact.
    if tokens + (FLOOD_SLACK_S * rate).min(0.25) >= 1.0 {
        *bucket = Some((tokens - 1.0, now));
        Ok(())
    } else {
        *bucket = Some((tokens, now));
        Err((1.0 - tokens) / rate)
    }
}

#[derive(Debug)]
pub(super) struct BotState {
    pub(super) config: TelegramMockConfig,
    epoch: Instant,
    updates: Mutex<Updates>,
    pub(super) updates_ready: Notify,
    pub(super) webhook: Mutex<Option<(Webhook, mpsc::UnboundedSender<RawUpdate>)>>,
    chats: Mutex<HashMap<i64, Chat>>,
    next_message_id: AtomicI64,
    counters: Mutex<TelegramMockStats>,
    /// When each answered update reached the mock, in the order of `answer_latencies`: lets a
    /// test group answers by when the update was sent, not when the answer came.
    answered_arrivals: Mutex<Vec<(i64, Instant)>>,
    window: Mutex<SendWindow>,
    /// Errors answered to the next calls of a method (lower case), in order.
    faults: Mutex<HashMap<String, VecDeque<ScriptedError>>>,
    /// Every send into a chat is answered this much later (a slow Bot API).
    send_delay: Mutex<Duration>,
    /// A file send's message is posted at once, its answer held this long (answers lost on
    /// the way back).
    pub(super) file_answer_hold: Mutex<Duration>,
    /// Users who blocked the bot: every send into their chat is answered 403.
    blocked: Mutex<std::collections::HashSet<i64>>,
    /// Groups upgraded to supergroups, with their new ids: sends to the old id are refused
    /// with the new one named.
    migrated: Mutex<std::collections::HashMap<i64, i64>>,
    /// The bot's messages and edits in the order they arrived (the first `SENT_LOG_MAX`).
    sent: Mutex<Vec<Sent>>,
    /// Invoices, pending pre-checkout queries and completed Stars payments.
    pub(super) payments: Mutex<super::payments::Payments>,
    /// Every file sent, with when its answer went out.
    pub(super) wire: super::wire::WireLog,
    /// Counts `getUpdates` calls: a waiting call that sees it move was overtaken by another.
    pub(super) poll_generation: std::sync::atomic::AtomicU64,
    /// Callback queries sent and not answered yet, by id, with the chat they came from:
    /// Telegram accepts one answer per query.
    callback_queries: Mutex<HashMap<String, i64>>,
    /// Chats whose refusals go to `refused_exempt`.
    exempt: Mutex<std::collections::HashSet<i64>>,
}

/// How an `editMessageText` went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Edit {
    Done,
    /// No message with that id in that chat.
    NotFound,
    /// The message has no text (a photo, an invoice).
    NoText,
    /// Same text and keyboard as now.
    NotModified,
}

/// An error answered to one call instead of its normal answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ScriptedError {
    pub(super) code: u16,
    pub(super) description: String,
    /// `parameters.retry_after`, as Telegram sends with 429.
    pub(super) retry_after: Option<u64>,
}

/// Entries kept in the order log (enough for tests; bounded for long suite runs).
const SENT_LOG_MAX: usize = 100_000;

/// One message or edit the bot sent, in arrival order across all chats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    pub chat: i64,
    pub message_id: i64,
    /// `true` for `editMessageText`, `false` for a new message (text or photo).
    pub edit: bool,
    /// `true` for a photo.
    pub photo: bool,
}

/// A user's text message as its update: what [`BotState::message_update`] serializes.
#[derive(Serialize)]
struct TextUpdate<'a> {
    update_id: i64,
    message: TextMessage<'a>,
}

#[derive(Serialize)]
struct TextMessage<'a> {
    message_id: i64,
    from: UserOut<'a>,
    chat: ChatOut,
    date: i64,
    text: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    entities: Option<[CommandEntity; 1]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reply_to_message: Option<Value>,
}

/// A user as updates carry it ([`BotState::user_json`]'s fields).
#[derive(Serialize)]
struct UserOut<'a> {
    id: i64,
    is_bot: bool,
    first_name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    language_code: Option<&'a str>,
}

/// A chat as updates and sent messages carry it ([`BotState::chat_json`]'s fields).
#[derive(Serialize)]
pub(super) struct ChatOut {
    id: i64,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_name: Option<String>,
}

impl ChatOut {
    /// Group ids are negative, as in Telegram.
    pub(super) fn of(id: i64, chat: &Chat) -> Self {
        let name = Some(chat.first_name.clone());
        if id < 0 {
            ChatOut {
                id,
                kind: "supergroup",
                title: name,
                first_name: None,
            }
        } else {
            ChatOut {
                id,
                kind: "private",
                title: None,
                first_name: name,
            }
        }
    }
}

#[derive(Serialize)]
struct CommandEntity {
    #[serde(rename = "type")]
    kind: &'static str,
    offset: usize,
    length: usize,
}

/// `value` as JSON; these shapes (strings, numbers, nested structs) always serialize.
fn serialized(value: &impl Serialize) -> String {
    serde_json::to_string(value).unwrap_or_else(|e| {
        tracing::error!(error = %e, "the mock could not serialize an update");
        "{}".to_owned()
    })
}

/// The message an update delivers (`message`), with its id, as a reply to it shows it: without
/// its own `reply_to_message`, as Telegram shows a reply's.
fn delivered(message: &Value) -> Option<(i64, Said)> {
    let message_id = message.get("message_id")?.as_i64()?;
    let mut message = message.clone();
    if let Some(fields) = message.as_object_mut() {
        fields.remove("reply_to_message");
    }
    Some((message_id, Said::Delivered(Box::new(message))))
}

/// A file the bot sent as message `message_id` (`field` is `photo` or `document`): its
/// `file_id` is `<field><message id>`, which is how the mock knows a document's id again.
pub(super) fn sent_file_json(field: &str, message_id: i64) -> Value {
    let mut file = json!({
        "file_id": format!("{field}{message_id}"), "file_unique_id": format!("u{message_id}"),
    });
    if field == "photo" {
        file["width"] = json!(1);
        file["height"] = json!(1);
        file["file_size"] = json!(67);
    }
    file
}

pub(super) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl BotState {
    pub(super) fn fail_next(&self, method: &str, error: ScriptedError, times: usize) {
        let mut faults = self.faults.lock();
        let queue = faults.entry(method.to_ascii_lowercase()).or_default();
        for _ in 0..times {
            queue.push_back(error.clone());
        }
    }

    /// Drops every scripted error not answered yet (a fault that ends).
    pub(super) fn clear_faults(&self) {
        self.faults.lock().clear();
    }

    /// The scripted error for this call of `method`, if one is queued.
    pub(super) fn take_fault(&self, method: &str) -> Option<ScriptedError> {
        self.faults.lock().get_mut(method)?.pop_front()
    }

    pub(super) fn block(&self, user: i64) {
        self.blocked.lock().insert(user);
    }

    pub(super) fn migrate(&self, group: i64, supergroup: i64) {
        self.migrated.lock().insert(group, supergroup);
    }

    /// The supergroup a group became, if it did.
    pub(super) fn migrated_to(&self, chat: i64) -> Option<i64> {
        self.migrated.lock().get(&chat).copied()
    }

    /// Whether the chat's user blocked the bot; counts the refusal when so.
    pub(super) fn refuses_blocked(&self, chat: i64) -> bool {
        let blocked = self.blocked.lock().contains(&chat);
        if blocked {
            *self
                .counters
                .lock()
                .blocked_refusals
                .entry(chat)
                .or_insert(0) += 1;
        }
        blocked
    }

    pub(super) fn set_send_delay(&self, delay: Duration) {
        *self.send_delay.lock() = delay;
    }

    pub(super) fn send_delay(&self) -> Duration {
        *self.send_delay.lock()
    }

    pub(super) fn new(config: TelegramMockConfig) -> Self {
        BotState {
            config,
            epoch: Instant::now(),
            updates: Mutex::new(Updates {
                // Telegram's update ids are large and never repeat for a bot; a mock that
                // counted from 1 every run would repeat the last run's ids to a bot that keeps
                // its database, whose inbox then drops them as seen (seen: a black-box run of
                // `genbot serve` on the previous run's genbot.db answered nothing).
                next_id: rand::random_range(100_000_000..900_000_000),
                queue: VecDeque::new(),
                allowed: None,
            }),
            updates_ready: Notify::new(),
            webhook: Mutex::new(None),
            chats: Mutex::new(HashMap::new()),
            next_message_id: AtomicI64::new(1),
            counters: Mutex::new(TelegramMockStats::default()),
            answered_arrivals: Mutex::new(Vec::new()),
            window: Mutex::new(SendWindow::default()),
            faults: Mutex::new(HashMap::new()),
            send_delay: Mutex::new(Duration::ZERO),
            file_answer_hold: Mutex::new(Duration::ZERO),
            blocked: Mutex::new(std::collections::HashSet::new()),
            migrated: Mutex::new(std::collections::HashMap::new()),
            sent: Mutex::new(Vec::new()),
            payments: Mutex::new(super::payments::Payments::default()),
            wire: super::wire::WireLog::default(),
            poll_generation: std::sync::atomic::AtomicU64::new(0),
            callback_queries: Mutex::new(HashMap::new()),
            exempt: Mutex::new(std::collections::HashSet::new()),
        }
    }

    /// [`Self::me`], built once.
    pub(super) fn me_cached() -> &'static Value {
        static ME: std::sync::LazyLock<Value> = std::sync::LazyLock::new(BotState::me);
        &ME
    }

    pub(super) fn me() -> Value {
        json!({
            "id": BOT_ID, "is_bot": true, "first_name": "genbot", "username": "genbot_mock_bot",
            "can_join_groups": false, "can_read_all_group_messages": false,
            "supports_inline_queries": false, "can_connect_to_business": false,
            "has_main_web_app": false
        })
    }

    pub(super) fn count_method(&self, method: &str) {
        // Looked up before inserting: the name is allocated once per method, not per call.
        let mut counters = self.counters.lock();
        match counters.methods.get_mut(method) {
            Some(calls) => *calls += 1,
            None => {
                counters.methods.insert(method.to_owned(), 1);
            }
        }
    }

    pub(super) fn ensure_chat(
        &self,
        id: i64,
        first_name: &str,
        language: Option<&str>,
    ) -> Arc<Notify> {
        let mut chats = self.chats.lock();
        let chat = chats.entry(id).or_insert_with(|| Chat {
            first_name: first_name.to_owned(),
            language: language.map(str::to_owned),
            transcript: Vec::new(),
            pending: VecDeque::new(),
            changed: Arc::new(Notify::new()),
            said: HashMap::new(),
        });
        chat.changed.clone()
    }

    pub(super) fn with_chat<T>(&self, id: i64, f: impl FnOnce(&mut Chat) -> T) -> Option<T> {
        self.chats.lock().get_mut(&id).map(f)
    }

    pub(super) fn user_json(id: i64, chat: &Chat) -> Value {
        serde_json::to_value(UserOut {
            id,
            is_bot: false,
            first_name: &chat.first_name,
            language_code: chat.language.as_deref(),
        })
        .unwrap_or_default()
    }

    /// One shape for a chat, whether built as a `Value` or serialized directly.
    pub(super) fn chat_json(id: i64, chat: &Chat) -> Value {
        serde_json::to_value(ChatOut::of(id, chat)).unwrap_or_default()
    }

    /// `from` writes in `group` (or, with both ids the same, in their private chat): the update
    /// carries the chat and the sender, with `reply_to_message` when it answers the bot's
    /// message `reply_to`.
    pub(super) fn message_update(
        &self,
        group: i64,
        from: i64,
        text: &str,
        reply_to: Option<i64>,
    ) -> Option<i64> {
        let (first_name, language) = {
            let chats = self.chats.lock();
            let member = chats.get(&from)?;
            (member.first_name.clone(), member.language.clone())
        };
        let message_id = self.next_message_id.fetch_add(1, Ordering::Relaxed);
        let date = unix_now();
        // Serialized from borrowed parts, not built as a `Value` tree: a crowd's every step
        // passes here, and the mock must not cost what the bot is measured on.
        self.user_update_serialized(
            group,
            Entry::UserText(text.to_owned()),
            |update_id, chat| {
                let command = text.starts_with('/').then(|| {
                    let length = text
                        .split_whitespace()
                        .next()
                        .map_or(0, |c| c.encode_utf16().count());
                    [CommandEntity {
                        kind: "bot_command",
                        offset: 0,
                        length,
                    }]
                });
                let update = TextUpdate {
                    update_id,
                    message: TextMessage {
                        message_id,
                        from: UserOut {
                            id: from,
                            is_bot: false,
                            first_name: &first_name,
                            language_code: language.as_deref(),
                        },
                        chat: ChatOut::of(group, chat),
                        date,
                        text,
                        entities: command,
                        reply_to_message: reply_to.map(|replied| {
                            json!({
                                "message_id": replied,
                                "from": Self::me(),
                                "chat": Self::chat_json(group, chat),
                                "date": unix_now(),
                                "text": "",
                            })
                        }),
                    },
                };
                // The entry is pushed next: at the transcript's end.
                let said = Said::Entry {
                    at: chat.transcript.len(),
                    from,
                    date,
                };
                (
                    "message".to_owned(),
                    serialized(&update),
                    Some((message_id, said)),
                )
            },
        )
    }

    /// A message privacy mode keeps from the bot: shown in the chat, never delivered.
    pub(super) fn unseen_group_text(&self, group: i64, text: &str) {
        self.with_chat(group, |chat| {
            chat.transcript.push(Entry::UserText(text.to_owned()));
        });
    }

    /// Records a user action and queues (or pushes) its update. Returns the update id.
    pub(super) fn user_update(
        &self,
        chat_id: i64,
        entry: Entry,
        body: impl FnOnce(i64, &Chat) -> Value,
    ) -> Option<i64> {
        self.user_update_serialized(chat_id, entry, |update_id, chat| {
            let mut update = body(update_id, chat);
            let kind = update
                .as_object()
                .and_then(|o| o.keys().next().cloned())
                .unwrap_or_default();
            update["update_id"] = json!(update_id);
            let said = update.get("message").and_then(delivered);
            (kind, update.to_string(), said)
        })
    }

    /// As [`Self::user_update`], with `body` giving the update's kind, its whole JSON
    /// (`update_id` included) for the id it is given and the message it brings into the chat
    /// (its id and how a reply shows it), if any.
    fn user_update_serialized(
        &self,
        chat_id: i64,
        entry: Entry,
        body: impl FnOnce(i64, &Chat) -> (String, String, Option<(i64, Said)>),
    ) -> Option<i64> {
        let update_id = {
            let mut chats = self.chats.lock();
            let chat = chats.get_mut(&chat_id)?;
            let mut updates = self.updates.lock();
            let update_id = updates.next_id;
            updates.next_id += 1;
            let (kind, update, said) = body(update_id, chat);
            let update: RawUpdate = update.into();
            if let Some((message_id, said)) = said {
                chat.said.insert(message_id, said);
            }
            chat.transcript.push(entry);
            chat.pending.push_back(Instant::now());
            let webhook = self.webhook.lock();
            let pushed = match webhook.as_ref() {
                Some(_) if !allows(updates.allowed.as_deref(), &kind) => false,
                Some((_, pusher)) => {
                    let _ = pusher.send(update);
                    true
                }
                None => {
                    updates
                        .queue
                        .push_back(Queued::new(update_id, kind, update));
                    true
                }
            };
            (update_id, pushed)
        };
        let (update_id, pushed) = update_id;
        if !pushed {
            self.counters.lock().updates_not_allowed += 1;
        }
        self.counters.lock().updates_sent += 1;
        self.updates_ready.notify_waiters();
        Some(update_id)
    }

    /// Queues (or pushes) a raw update as Telegram would send it, with the next `update_id`;
    /// no transcript entry and no pending answer are recorded (the caller judges the answers).
    /// Returns the update id and whether its kind passes the bot's `allowed_updates` now.
    pub(super) fn raw_update(&self, mut update: Value) -> (i64, bool) {
        self.register_messages(&update);
        let (update_id, delivered) = {
            let mut updates = self.updates.lock();
            let update_id = updates.next_id;
            updates.next_id += 1;
            if !update.is_object() {
                update = json!({});
            }
            update["update_id"] = json!(update_id);
            let kind = update
                .as_object()
                .and_then(|o| o.keys().find(|k| *k != "update_id").cloned())
                .unwrap_or_default();
            self.register_queries(&update);
            let allowed = allows(updates.allowed.as_deref(), &kind);
            let raw: RawUpdate = update.to_string().into();
            let webhook = self.webhook.lock();
            match webhook.as_ref() {
                Some(_) if !allowed => {}
                Some((_, pusher)) => {
                    let _ = pusher.send(raw);
                }
                None => updates.queue.push_back(Queued::new(update_id, kind, raw)),
            }
            (update_id, allowed)
        };
        {
            let mut counters = self.counters.lock();
            counters.updates_sent += 1;
            if !delivered {
                counters.updates_not_allowed += 1;
            }
        }
        self.updates_ready.notify_waiters();
        (update_id, delivered)
    }

    /// Messages in a hand-built update are in their chats (those the mock knows) from now on,
    /// as Telegram has the messages it delivers: a send may reply to them.
    fn register_messages(&self, update: &Value) {
        const MESSAGES: &[&str] = &[
            "message",
            "edited_message",
            "channel_post",
            "edited_channel_post",
            "business_message",
            "edited_business_message",
        ];
        let mut chats = self.chats.lock();
        for message in MESSAGES.iter().filter_map(|kind| update.get(*kind)) {
            let chat = message.pointer("/chat/id").and_then(Value::as_i64);
            let Some(chat) = chat.and_then(|chat| chats.get_mut(&chat)) else {
                continue;
            };
            if let Some((message_id, said)) = delivered(message) {
                chat.said.insert(message_id, said);
            }
        }
    }

    /// Message `message_id` of chat `chat_id` as a reply to it shows it (`reply_to_message`);
    /// `None` when the chat has no such message (the mock's or one of its users', or one an
    /// injected update delivered).
    pub(super) fn replied(&self, chat_id: i64, message_id: i64) -> Option<Value> {
        let chats = self.chats.lock();
        let chat = chats.get(&chat_id)?;
        let (from, date, at) = match chat.said.get(&message_id)? {
            Said::Delivered(message) => return Some((**message).clone()),
            Said::Entry { at, from, date } => (*from, *date, *at),
        };
        let from = match from {
            BOT_ID => Self::me_cached().clone(),
            user => chats.get(&user).map_or_else(
                || json!({ "id": user, "is_bot": false, "first_name": "" }),
                |sender| Self::user_json(user, sender),
            ),
        };
        let mut message = json!({
            "message_id": message_id,
            "from": from,
            "chat": Self::chat_json(chat_id, chat),
            "date": date,
        });
        let caption = match chat.transcript.get(at)? {
            Entry::UserText(text) | Entry::BotText { text, .. } => {
                message["text"] = json!(text);
                None
            }
            Entry::BotPhoto { caption, .. } => {
                message["photo"] = json!([sent_file_json("photo", message_id)]);
                caption.as_ref()
            }
            Entry::BotDocument { caption, .. } => {
                message["document"] = sent_file_json("document", message_id);
                caption.as_ref()
            }
            Entry::BotInvoice {
                title,
                currency,
                stars,
                ..
            } => {
                message["invoice"] = json!({
                    "title": title, "description": "", "start_parameter": "",
                    "currency": currency, "total_amount": stars,
                });
                None
            }
            // Not kept as `Said::Entry`; shown with an empty text, as a reply to it would be
            // of something the mock does not show.
            _ => {
                message["text"] = json!("");
                None
            }
        };
        if let Some(caption) = caption {
            message["caption"] = json!(caption);
        }
        Some(message)
    }

    /// Queries in a hand-built update are real to the bot: answering them is no refusal.
    fn register_queries(&self, update: &Value) {
        if let Some(query) = update.get("callback_query") {
            let chat = query
                .pointer("/message/chat/id")
                .or_else(|| query.pointer("/from/id"))
                .and_then(Value::as_i64);
            if let (Some(id), Some(chat)) = (query.get("id").and_then(Value::as_str), chat) {
                self.callback_queries.lock().insert(id.to_owned(), chat);
            }
        }
        if let Some(id) = update
            .pointer("/pre_checkout_query/id")
            .and_then(Value::as_str)
        {
            self.payments.lock().forged_checkouts.insert(id.to_owned());
        }
    }

    /// `answerCallbackQuery`: the chat of a query sent and not answered yet (it is answered
    /// now), `None` for an unknown or already answered query.
    pub(super) fn take_callback_query(&self, id: &str) -> Option<i64> {
        self.callback_queries.lock().remove(id)
    }

    /// The next message id (for updates built outside the mock, e.g. [`Self::raw_update`]).
    pub(super) fn fresh_message_id(&self) -> i64 {
        self.next_message_id.fetch_add(1, Ordering::Relaxed)
    }

    pub(super) fn text_update(&self, chat_id: i64, text: &str) -> Option<i64> {
        self.message_update(chat_id, chat_id, text, None)
    }

    pub(super) fn photo_update(
        &self,
        chat_id: i64,
        from: i64,
        caption: Option<&str>,
    ) -> Option<i64> {
        let sender = {
            let chats = self.chats.lock();
            Self::user_json(from, chats.get(&from)?)
        };
        let message_id = self.next_message_id.fetch_add(1, Ordering::Relaxed);
        let entry = Entry::UserPhoto {
            caption: caption.map(str::to_owned),
        };
        self.user_update(chat_id, entry, |update_id, chat| {
            let mut message = json!({
                "message_id": message_id,
                "from": sender,
                "chat": Self::chat_json(chat_id, chat),
                "date": unix_now(),
                "photo": [{
                    "file_id": format!("{USER_PHOTO_PREFIX}{update_id}"),
                    "file_unique_id": format!("uu{update_id}"),
                    "width": 1, "height": 1, "file_size": crate::png::TINY_PNG.len(),
                }],
            });
            if let Some(caption) = caption {
                message["caption"] = json!(caption);
            }
            json!({ "message": message })
        })
    }

    /// `from` presses a button under the bot's message in `chat_id` (in a private chat, the
    /// same id).
    pub(super) fn press_update(
        &self,
        chat_id: i64,
        from: i64,
        message_id: i64,
        data: &str,
    ) -> Option<i64> {
        let presser = {
            let chats = self.chats.lock();
            Self::user_json(from, chats.get(&from)?)
        };
        let message = self.with_chat(chat_id, |chat| {
            chat.transcript.iter().find_map(|e| match e {
                Entry::BotText {
                    message_id: id,
                    text,
                    ..
                } if *id == message_id => Some(text.clone()),
                Entry::BotPhoto {
                    message_id: id,
                    caption,
                    ..
                } if *id == message_id => Some(caption.clone().unwrap_or_default()),
                _ => None,
            })
        })??;
        self.user_update(
            chat_id,
            Entry::UserPressed(data.to_owned()),
            |update_id, chat| {
                self.callback_queries
                    .lock()
                    .insert(format!("{chat_id}:{update_id}"), chat_id);
                json!({ "callback_query": {
                    "id": format!("{chat_id}:{update_id}"),
                    "from": presser,
                    "message": {
                        "message_id": message_id,
                        "from": Self::me(),
                        "chat": Self::chat_json(chat_id, chat),
                        "date": unix_now(),
                        "text": message,
                    },
                    "chat_instance": format!("ci{chat_id}"),
                    "data": data,
                }})
            },
        )
    }

    /// The bot's `allowed_updates` (an empty list: every kind).
    pub(super) fn set_allowed_updates(&self, kinds: Vec<String>) {
        let kinds = (!kinds.is_empty()).then_some(kinds);
        let mut updates = self.updates.lock();
        // The bot repeats its list on every `getUpdates`: replaced only when it changed.
        if updates.allowed != kinds {
            updates.allowed = kinds;
        }
    }

    /// Updates from `offset` on (forgetting older ones), at most `limit`; kinds the bot did not
    /// allow are dropped.
    pub(super) fn take_updates(&self, offset: i64, limit: usize) -> Vec<RawUpdate> {
        let mut updates = self.updates.lock();
        while updates
            .queue
            .front()
            .is_some_and(|queued| queued.id < offset)
        {
            updates.queue.pop_front();
        }
        let before = updates.queue.len();
        // Borrowed, not cloned (this runs on every poll); with every kind allowed nothing drops.
        let Updates { queue, allowed, .. } = &mut *updates;
        if allowed.is_some() {
            queue.retain(|queued| allows(allowed.as_deref(), &queued.kind));
        }
        let dropped = (before - queue.len()) as u64;
        let now = Instant::now();
        let mut waits = Vec::new();
        let batch: Vec<RawUpdate> = queue
            .iter_mut()
            .take(limit)
            .map(|queued| {
                if let Some(since) = queued.undelivered_since.take() {
                    waits.push(now.saturating_duration_since(since));
                }
                queued.raw.clone()
            })
            .collect();
        // Counted under the queue's lock (then the counters', the order every path takes), so
        // two overlapping polls add their waits in the order they took the updates.
        let mut counters = self.counters.lock();
        drop(updates);
        counters.updates_delivered += batch.len() as u64;
        counters.updates_not_allowed += dropped;
        counters.intake_waits.append(&mut waits);
        batch
    }

    pub(super) fn count_webhook_retry(&self) {
        self.counters.lock().webhook_retries += 1;
    }

    pub(super) fn count_webhook_answer(&self, status: u16) {
        *self
            .counters
            .lock()
            .webhook_answers
            .entry(status)
            .or_default() += 1;
    }

    pub(super) fn count_delivered(&self, n: u64) {
        self.counters.lock().updates_delivered += n;
    }

    /// Flood control (when [`TelegramMockConfig::enforce_limits`]): `Some(retry_after)` in
    /// whole seconds when this send into `chat_id` must be refused with 429, as Telegram
    /// answers a bot over 30 messages a second, about one a second in a chat (after a short
    /// burst) or 20 a minute in a group. A refused send takes no budget.
    pub(super) fn throttle(&self, chat_id: i64) -> Option<u64> {
        if !self.config.enforce_limits {
            return None;
        }
        let now = self.epoch.elapsed().as_secs_f64();
        let admitted = self.window.lock().admit(chat_id, now);
        match admitted {
            Ok(()) => None,
            Err(wait) => {
                self.counters.lock().throttled += 1;
                Some(wait.ceil().max(1.0) as u64)
            }
        }
    }

    /// Records the bot's answer in a chat: a transcript entry, and the latency of the oldest
    /// unanswered update there.
    pub(super) fn bot_answer(&self, chat_id: i64, entry: Option<Entry>) -> bool {
        let (latency, notify) = {
            let mut chats = self.chats.lock();
            let Some(chat) = chats.get_mut(&chat_id) else {
                return false;
            };
            if let Some(entry) = entry {
                let message_id = match &entry {
                    Entry::BotText { message_id, .. }
                    | Entry::BotPhoto { message_id, .. }
                    | Entry::BotDocument { message_id, .. }
                    | Entry::BotInvoice { message_id, .. } => Some(*message_id),
                    _ => None,
                };
                if let Some(message_id) = message_id {
                    // Pushed next: at the transcript's end.
                    let said = Said::Entry {
                        at: chat.transcript.len(),
                        from: BOT_ID,
                        date: unix_now(),
                    };
                    chat.said.insert(message_id, said);
                    self.log_sent(Sent {
                        chat: chat_id,
                        message_id,
                        edit: false,
                        photo: matches!(entry, Entry::BotPhoto { .. } | Entry::BotDocument { .. }),
                    });
                }
                chat.transcript.push(entry);
            }
            (chat.pending.pop_front(), chat.changed.clone())
        };
        if let Some(at) = latency {
            // Both under one lock order (counters, then arrivals) so the indices line up.
            let mut counters = self.counters.lock();
            counters.answer_latencies.push(at.elapsed());
            self.answered_arrivals.lock().push((chat_id, at));
        }
        notify.notify_waiters();
        true
    }

    fn log_sent(&self, sent: Sent) {
        {
            let second = self.epoch.elapsed().as_secs();
            let mut counters = self.counters.lock();
            let (current, count) = counters.send_second;
            let count = if current == second { count + 1 } else { 1 };
            counters.send_second = (second, count);
            counters.peak_sends_per_s = counters.peak_sends_per_s.max(count);
            counters.sends += 1;
            let now = self.epoch.elapsed().as_secs_f64();
            let (tokens, filled_at) = counters.budget;
            let (tokens, filled_at) = if filled_at == 0.0 && counters.sends == 1 {
                (SEND_BUDGET_PER_S, now)
            } else {
                (
                    (tokens + (now - filled_at) * SEND_BUDGET_PER_S).min(SEND_BUDGET_PER_S),
                    now,
                )
            };
            counters.budget = if tokens >= 1.0 {
                (tokens - 1.0, filled_at)
            } else {
                counters.sends_over_budget += 1;
                (tokens, filled_at)
            };
        }
        let mut log = self.sent.lock();
        if log.len() < SENT_LOG_MAX {
            log.push(sent);
        }
    }

    pub(super) fn sent_in_order(&self) -> Vec<Sent> {
        self.sent.lock().clone()
    }

    pub(super) fn next_message_id(&self) -> i64 {
        self.next_message_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Applies `editMessageText`. As Telegram, an edit without a keyboard removes the
    /// message's keyboard, and an edit to the same text and keyboard is refused.
    pub(super) fn edit(
        &self,
        chat_id: i64,
        message_id: i64,
        text: &str,
        buttons: Option<Vec<(String, String)>>,
    ) -> Edit {
        let buttons = buttons.unwrap_or_default();
        let outcome = self
            .with_chat(chat_id, |chat| {
                let found = chat.transcript.iter_mut().rev().find(|e| {
                    matches!(e,
                        Entry::BotText { message_id: id, .. }
                        | Entry::BotPhoto { message_id: id, .. }
                        | Entry::BotDocument { message_id: id, .. }
                        | Entry::BotInvoice { message_id: id, .. } if *id == message_id)
                });
                match found {
                    Some(Entry::BotText {
                        text: t,
                        buttons: b,
                        edits,
                        ..
                    }) => {
                        // Compared as Telegram stores them: stripped of what shows nothing.
                        let blank = super::validate::shows_nothing;
                        if t.trim_matches(blank) == text.trim_matches(blank) && *b == buttons {
                            return Edit::NotModified;
                        }
                        *t = text.to_owned();
                        *b = buttons;
                        *edits += 1;
                        Edit::Done
                    }
                    Some(_) => Edit::NoText,
                    None => Edit::NotFound,
                }
            })
            .unwrap_or(Edit::NotFound);
        if outcome == Edit::Done {
            self.log_sent(Sent {
                chat: chat_id,
                message_id,
                edit: true,
                photo: false,
            });
            // An edit is progress on an earlier answer, not an answer to a new update.
            if let Some(notify) = self.with_chat(chat_id, |chat| chat.changed.clone()) {
                notify.notify_waiters();
            }
        }
        outcome
    }

    pub(super) fn chat_public(&self, chat_id: i64) -> Option<Value> {
        self.with_chat(chat_id, |chat| Self::chat_json(chat_id, chat))
    }

    /// The chat as sent messages carry it, if the mock knows it.
    pub(super) fn chat_out(&self, chat_id: i64) -> Option<ChatOut> {
        self.with_chat(chat_id, |chat| ChatOut::of(chat_id, chat))
    }

    pub(super) fn transcript(&self, chat_id: i64) -> Vec<Entry> {
        self.with_chat(chat_id, |chat| chat.transcript.clone())
            .unwrap_or_default()
    }

    /// `f` of the chat's transcript, read in place: a simulated user checks it at every step
    /// and every wake-up, and a copy each time was most of the crowd driver's work, under the
    /// lock every update and answer takes. An unknown chat reads as empty, as in
    /// [`Self::transcript`].
    pub(super) fn read_transcript<T>(&self, chat_id: i64, f: impl FnOnce(&[Entry]) -> T) -> T {
        match self.chats.lock().get(&chat_id) {
            Some(chat) => f(&chat.transcript),
            None => f(&[]),
        }
    }

    /// Answer latencies recorded from index `from` on (all of them when `from` is 0).
    pub(super) fn answer_latencies_since(&self, from: usize) -> Vec<Duration> {
        self.counters
            .lock()
            .answer_latencies
            .get(from..)
            .map(<[Duration]>::to_vec)
            .unwrap_or_default()
    }

    /// How many answers have been recorded: an index for [`Self::answer_latencies_since`]
    /// without copying the latencies (the ramp asks at every step; a copy of all of them held
    /// the lock the bot's answers take).
    pub(super) fn answer_count(&self) -> usize {
        self.counters.lock().answer_latencies.len()
    }

    /// Of the answers from index `from` on, how many answer updates that reached the mock at
    /// or after `since`: counted in place, as a drain polls it every few milliseconds.
    pub(super) fn answered_since(&self, from: usize, since: Instant) -> usize {
        self.answered_arrivals
            .lock()
            .get(from..)
            .map_or(0, |arrivals| {
                arrivals.iter().filter(|(_, at)| *at >= since).count()
            })
    }

    /// Records a request Telegram would refuse, as [`TelegramMockStats::refused`] reports it.
    /// `chat` is the request's `chat_id`, when it has one.
    pub(super) fn refuse(
        &self,
        method: &str,
        description: &str,
        example: String,
        chat: Option<i64>,
    ) {
        let exempt = chat.is_some_and(|chat| self.exempt.lock().contains(&chat));
        let mut counters = self.counters.lock();
        if exempt {
            counters.refused_exempt += 1;
            return;
        }
        let refused = &mut counters.refused;
        let at = match refused
            .iter()
            .position(|r| r.method == method && r.description == description)
        {
            Some(at) => at,
            None => {
                refused.push(Refused {
                    method: method.to_owned(),
                    description: description.to_owned(),
                    ..Refused::default()
                });
                refused.len() - 1
            }
        };
        let entry = &mut refused[at];
        entry.count += 1;
        if entry.examples.len() < REFUSED_EXAMPLES {
            entry.examples.push(example);
        }
    }

    /// See [`super::TelegramMock::exempt_from_refusals`].
    pub(super) fn exempt_from_refusals(&self, chats: impl IntoIterator<Item = i64>) {
        self.exempt.lock().extend(chats);
    }

    pub(super) fn count_poll_conflict(&self) {
        self.counters.lock().poll_conflicts += 1;
    }

    /// As [`Self::answer_latencies_since`], each with its chat and the instant its update
    /// reached the mock.
    pub(super) fn answers_since(&self, from: usize) -> Vec<(i64, Instant, Duration)> {
        let counters = self.counters.lock();
        let arrivals = self.answered_arrivals.lock();
        arrivals
            .iter()
            .zip(&counters.answer_latencies)
            .skip(from)
            .map(|((chat, at), latency)| (*chat, *at, *latency))
            .collect()
    }

    pub(super) fn stats(&self) -> TelegramMockStats {
        let unanswered = self
            .chats
            .lock()
            .values()
            .map(|c| c.pending.len() as u64)
            .sum();
        TelegramMockStats {
            unanswered,
            ..self.counters.lock().clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends admitted out of `n` tries into `chat`, one every `every` seconds from `start`.
    fn admitted(window: &mut SendWindow, chat: i64, n: usize, start: f64, every: f64) -> usize {
        (0..n)
            .filter(|i| window.admit(chat, start + *i as f64 * every).is_ok())
            .count()
    }

    #[test]
    fn a_chat_gets_a_burst_of_three_then_one_a_second() {
        let mut window = SendWindow::default();
        assert_eq!(admitted(&mut window, 1, 10, 0.0, 0.001), 3);
        // A bot paced to one a second whose sends arrive with the network's jitter passes.
        let jittered = (0..10)
            .filter(|i| {
                let early = if i % 2 == 1 { 0.03 } else { 0.0 };
                window.admit(1, 1.0 + f64::from(*i) - early).is_ok()
            })
            .count();
        assert_eq!(jittered, 10);
        let wait = window.admit(1, 10.2).unwrap_err();
        assert!(wait > 0.0 && wait <= 1.0, "{wait}");
    }

    #[test]
    fn the_bot_gets_30_a_second_across_chats() {
        let mut window = SendWindow::default();
        let passed = (0..40)
            .filter(|chat| window.admit(*chat, 0.5).is_ok())
            .count();
        assert_eq!(passed, 30);
        // A second later the bucket is full again.
        let passed = (40..80)
            .filter(|chat| window.admit(*chat, 1.6).is_ok())
            .count();
        assert_eq!(passed, 30);
    }

    #[test]
    fn a_group_gets_20_a_minute() {
        let mut window = SendWindow::default();
        // One every 1.5 s stays within the per-chat budget: the group's is what stops it.
        assert_eq!(admitted(&mut window, -100, 30, 0.0, 1.5), 20);
        let wait = window.admit(-100, 45.0).unwrap_err();
        assert!((14.0..=15.1).contains(&wait), "{wait}");
        assert!(window.admit(-100, 60.0).is_ok());
    }
}
