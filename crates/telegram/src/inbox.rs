//! The durable update inbox in front of the dispatcher.
//!
//! teloxide's polling confirms updates to Telegram (the next `getUpdates` offset) as soon as the
//! dispatcher has taken them, before they are handled: a crash then loses them. [`InboxPolling`]
//! polls instead (one replica at a time, under the poller lease): each batch `getUpdates`
//! returns is recorded in the database in one transaction before it is passed on, so before the
//! confirming `getUpdates` is sent. In webhook mode the route (`webhook`) records each update
//! before Telegram is answered. Which replica handles a recorded update is the `claims`
//! module's business: the recorder takes in the same transaction the updates it may handle,
//! and every replica's rounds take the rest. Handlers mark updates handled when they are done
//! (`Front::update_handled`, written in batches by `claims::keep_marking`).
//!
//! While the database does not answer, a batch is tried again until it is recorded, however long
//! that takes: it stays unconfirmed at Telegram meanwhile, and its senders are told it is
//! delayed. Pre-checkout queries alone are passed on unrecorded at once: Telegram cancels a
//! payment whose query is not answered within 10 s, and one lost to a crash moved no money.

mod plain_text;

use std::time::Duration;

use futures_util::stream::{self, BoxStream, StreamExt};
use genbot_store::InboxUpdate;
use serde_json::value::RawValue;
use teloxide::payloads::GetUpdatesSetters;
use teloxide::requests::Requester;
use teloxide::stop::{mk_stop_token, StopFlag, StopToken};
use teloxide::types::{AllowedUpdate, Update, UpdateKind};
use teloxide::update_listeners::{AsUpdateStream, UpdateListener};
use teloxide::RequestError;

use crate::claims::{alongside, rounds, LastRecord};
use crate::Front;

/// By default a chat claim not renewed this long lapses (its replica is gone) and another
/// replica takes the chat over.
pub const STALE_AFTER: Duration = Duration::from_secs(60);
/// First and longest pause between tries to record a batch the database did not take.
const RECORD_PAUSE: Duration = Duration::from_millis(100);
const RECORD_PAUSE_MAX: Duration = Duration::from_secs(5);
/// A batch whose record takes longer than this (the database does not answer) gets its senders
/// told that their messages are delayed, not lost.
const NOTICE_AFTER: Duration = Duration::from_secs(2);
/// …and from then on, who else writes is told this soon.
const NOTICE_AGAIN: Duration = Duration::from_millis(500);
/// First and longest pause after a failed `getUpdates`.
const POLL_BACKOFF: Duration = Duration::from_millis(500);
const POLL_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// The row recording `update`, or `None` when it cannot be serialized (handled unrecorded).
pub(crate) fn row(update: &Update) -> Option<InboxUpdate> {
    match serde_json::to_string(update) {
        Ok(payload) => Some(InboxUpdate::new(
            i64::from(update.id.0),
            crate::claims::chat_key(update),
            payload,
        )),
        Err(e) => {
            tracing::warn!(update_id = update.id.0, error = %e, "update not recordable; handled unrecorded");
            None
        }
    }
}

/// As [`row`], with `json` (what `update` was parsed from) recorded as it came instead of
/// serialized again.
pub(crate) fn row_as_received(update: &Update, json: &[u8]) -> Option<InboxUpdate> {
    match std::str::from_utf8(json) {
        Ok(payload) => Some(InboxUpdate::new(
            i64::from(update.id.0),
            crate::claims::chat_key(update),
            payload.to_owned(),
        )),
        Err(_) => row(update),
    }
}

/// teloxide's decoding of one update, a panic in it caught as an error: teloxide unwraps a
/// `None` on input Telegram never sends (a `message_reaction` with neither `user` nor
/// `actor_chat`), which took the poller, and with it the process, down on every start. The
/// error says where the JSON broke, never what it says (it may quote a user's text). A plain
/// text message is read without teloxide's generic path, into the same `Update`.
pub(crate) fn parse(json: &str) -> Result<Update, String> {
    if let Some(update) = plain_text::decode(json) {
        return Ok(update);
    }
    match std::panic::catch_unwind(|| serde_json::from_str::<Update>(json)) {
        Ok(Ok(update)) => Ok(update),
        Ok(Err(e)) => Err(format!(
            "{:?} error at line {} column {}",
            e.classify(),
            e.line(),
            e.column()
        )),
        Err(_) => Err("teloxide panicked decoding it".to_owned()),
    }
}

/// One update as received (polled or posted to the webhook), as teloxide would make it: one
/// teloxide cannot decode is `UpdateKind::Error` holding its JSON (set aside as a dead letter,
/// not handled); `None` for one without an `update_id` (nothing could confirm or record it).
pub(crate) fn decode(json: &str) -> Option<Update> {
    let reason = match parse(json) {
        Ok(Update {
            id,
            kind: UpdateKind::Error(_),
        }) => {
            return Some(Update {
                id,
                kind: UpdateKind::Error(serde_json::from_str(json).unwrap_or_default()),
            })
        }
        Ok(update) => return Some(update),
        Err(reason) => reason,
    };
    let value: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
    let Some(id) = value
        .get("update_id")
        .and_then(serde_json::Value::as_u64)
        .and_then(|id| u32::try_from(id).ok())
        .or_else(|| update_id_only(json))
    else {
        // The poller says so, once per batch (a webhook post: acknowledged and dropped).
        tracing::debug!(%reason, "an update without an update_id; left out");
        return None;
    };
    tracing::warn!(update_id = id, %reason, "an update teloxide cannot decode; set aside");
    Some(Update {
        id: teloxide::types::UpdateId(id),
        kind: UpdateKind::Error(value),
    })
}

/// The `update_id` of JSON that is no JSON value as a whole: a string with a lone surrogate
/// escape (`"\ud800"`) fails every parse into text, yet the id is readable when the rest is
/// skipped unread. Left out, such an update would never be confirmed, and `getUpdates` would
/// return it first, alone, after ever longer pauses, stalling everyone's next message.
fn update_id_only(json: &str) -> Option<u32> {
    #[derive(serde::Deserialize)]
    struct IdOnly {
        update_id: u32,
    }
    serde_json::from_str::<IdOnly>(json)
        .ok()
        .map(|only| only.update_id)
}

/// The `getUpdates` offset that confirms `id` and every update before it. teloxide's offset is
/// an `i32`, and its own `UpdateId::as_offset` asserts the id is below `i32::MAX`: a debug
/// build panicked on a forged id of 2147483647 or more (the poller, and with it the process,
/// on every start), a release build wrapped it to a negative offset, which Telegram reads as
/// "the last updates". Telegram's ids fit in 31 bits; a larger one asks for the largest offset.
fn next_offset(id: teloxide::types::UpdateId) -> i32 {
    i32::try_from(u64::from(id.0) + 1).unwrap_or(i32::MAX)
}

/// `getUpdates`' updates decoded, each with the JSON it came as, and how many were left out
/// (without an `update_id`): a batch of nothing else comes back at once, since nothing moved
/// the offset.
fn decoded(raw: Vec<Box<RawValue>>) -> (Vec<(Update, Box<RawValue>)>, usize) {
    let returned = raw.len();
    // Sized up front: an `Update` is large, and growing the vector moved them all again.
    let mut received = Vec::with_capacity(returned);
    received.extend(
        raw.into_iter()
            .filter_map(|json| Some((decode(json.get())?, json))),
    );
    let left_out = returned - received.len();
    (received, left_out)
}

/// Long polling through the inbox: a batch is recorded before the `getUpdates` that confirms
/// it is sent.
pub struct InboxPolling {
    front: Front,
    last_record: LastRecord,
    timeout: Duration,
    allowed: Option<Vec<AllowedUpdate>>,
    replay: Vec<Update>,
    token: StopToken,
    flag: Option<StopFlag>,
}

impl std::fmt::Debug for InboxPolling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboxPolling")
            .field("timeout", &self.timeout)
            .field("replay", &self.replay.len())
            .finish_non_exhaustive()
    }
}

impl InboxPolling {
    /// Polls with long-poll `timeout` (while this replica holds the poller lease) and takes
    /// its share of the handling; the updates this replica's previous run (or a gone one) left
    /// unhandled come first.
    pub async fn new(front: Front, timeout: Duration) -> Self {
        let replay = crate::claims::at_start(&front).await;
        let (token, flag) = mk_stop_token();
        InboxPolling {
            front,
            last_record: LastRecord::default(),
            timeout,
            allowed: None,
            replay,
            token,
            flag: Some(flag),
        }
    }
}

impl UpdateListener for InboxPolling {
    type Err = RequestError;

    fn stop_token(&mut self) -> StopToken {
        self.token.clone()
    }

    fn hint_allowed_updates(&mut self, hint: &mut dyn Iterator<Item = AllowedUpdate>) {
        self.allowed = Some(hint.collect());
    }
}

impl<'a> AsUpdateStream<'a> for InboxPolling {
    type StreamErr = RequestError;
    type Stream = BoxStream<'a, Result<Update, RequestError>>;

    fn as_stream(&'a mut self) -> Self::Stream {
        let replay = std::mem::take(&mut self.replay);
        let flag = match self.flag.take() {
            Some(flag) => flag,
            None => {
                let (token, flag) = mk_stop_token();
                self.token = token;
                flag
            }
        };
        let poll = Poll {
            front: self.front.clone(),
            last_record: self.last_record.clone(),
            timeout: self.timeout,
            allowed: self.allowed.clone(),
            offset: None,
            unrecorded: None,
            failures: 0,
            early_checkouts: parking_lot::Mutex::default(),
            polling_since: None,
            received: std::collections::HashMap::new(),
            stopped: Box::pin(flag),
        };
        let live = stream::unfold(poll, next_batch).flat_map(stream::iter);
        let taken = rounds(self.front.clone(), self.last_record.clone()).map(Ok);
        let updates = stream::iter(replay.into_iter().map(Ok)).chain(alongside(live, taken));
        to_dispatcher(self.front.clone(), updates)
    }
}

/// What the dispatcher gets: `updates`, with the updates to try again merged in, less those
/// shed because their chat has too many waiting. Ends when `updates` ends (retries still
/// waiting are left to the inbox: the next start replays them).
pub(crate) fn to_dispatcher<'a, E: Send + 'a>(
    front: Front,
    updates: impl futures_util::Stream<Item = Result<Update, E>> + Send + 'a,
) -> BoxStream<'a, Result<Update, E>> {
    // Retries, replays and payments are counted in their chat's backlog but never shed: they
    // are work already taken on, or money already taken.
    let retries = match front.take_retries() {
        Some(receiver) => stream::unfold(receiver, |mut receiver| async move {
            receiver
                .recv()
                .await
                .map(|update| (Some((Ok(update), false)), receiver))
        })
        .boxed(),
        None => stream::pending().boxed(),
    };
    let live = updates
        .map(Some)
        .chain(stream::once(std::future::ready(None)))
        .map(|item| item.map(|item| (item, true)));
    stream::select(live, retries)
        .take_while(|item| std::future::ready(item.is_some()))
        .filter_map(move |item| {
            std::future::ready(match item {
                Some((Ok(update), _)) if matches!(update.kind, UpdateKind::Error(_)) => {
                    // teloxide drops an update it cannot parse before any handler: it is set
                    // aside here, for the operator to see and retry (after an upgrade, say).
                    let reason = "teloxide cannot parse the update".to_owned();
                    front.set_aside_unparsed(i64::from(update.id.0), reason);
                    None
                }
                Some((Ok(update), live)) => {
                    let sheddable = live
                        && !front.is_replayed(i64::from(update.id.0))
                        && !carries_payment(&update);
                    front
                        .enter_backlog(&update, sheddable)
                        .then_some(Ok(update))
                }
                Some((Err(e), _)) => Some(Err(e)),
                None => None,
            })
        })
        .boxed()
}

/// Whether `update` reports money Telegram already moved (never skipped).
fn carries_payment(update: &Update) -> bool {
    match &update.kind {
        UpdateKind::Message(m) => m.successful_payment().is_some(),
        _ => false,
    }
}

struct Poll {
    front: Front,
    last_record: LastRecord,
    timeout: Duration,
    allowed: Option<Vec<AllowedUpdate>>,
    /// The next `getUpdates` offset (confirms everything below it).
    offset: Option<i32>,
    /// A batch still to record before `offset` may move to the second value (its pre-checkout
    /// queries went ahead).
    unrecorded: Option<(Vec<Update>, i32)>,
    failures: u32,
    /// Pre-checkout queries handed to the dispatcher while an earlier batch waited for the
    /// database (see [`record_or_tell`]): skipped when `getUpdates` returns them again.
    early_checkouts: parking_lot::Mutex<std::collections::HashSet<u32>>,
    /// When this replica last took or renewed the right to poll, if it holds it.
    polling_since: Option<tokio::time::Instant>,
    /// The last batch's updates as they came, by id: recorded as received.
    received: std::collections::HashMap<u32, Box<RawValue>>,
    stopped: std::pin::Pin<Box<StopFlag>>,
}

/// The lease that gives one replica at a time the right to call `getUpdates` for this bot on
/// this Bot API server (Telegram ends a bot's waiting `getUpdates` when another comes: two
/// pollers only fight): `telegram-poller:<bot id>@<host>:<port>`. The bot id is the token's
/// public part, before the colon; nothing secret is in the name.
pub fn poller_lease(front: &Front) -> String {
    let bot = front.bot();
    let id = bot.token().split(':').next().unwrap_or_default();
    let api = bot.api_url();
    format!(
        "telegram-poller:{id}@{}:{}",
        api.host_str().unwrap_or_default(),
        api.port_or_known_default().unwrap_or_default()
    )
}

impl Poll {
    /// The poller's lease lasts as long as a running job's: a dead poller is replaced as fast as
    /// a dead worker.
    fn lease(&self) -> Duration {
        self.front.config().inbox_takeover_after
    }

    /// Whether this replica may poll now: it holds the lease (renewed three times per lease),
    /// or the database does not answer and it held the lease last (the poller keeps polling
    /// through an outage, so senders are told their messages are delayed).
    async fn may_poll(&mut self) -> bool {
        let renew_every = self.lease() / 3;
        if self
            .polling_since
            .is_some_and(|at| at.elapsed() < renew_every)
        {
            return true;
        }
        let owner = self.front.engine().replica_id();
        match self
            .front
            .engine()
            .store()
            .take_lease(&poller_lease(&self.front), owner, self.lease())
            .await
        {
            Ok(true) => {
                if self.polling_since.is_none() {
                    tracing::info!(
                        replica = owner,
                        "this replica now polls Telegram (the others stand by)"
                    );
                    // What Telegram held while nobody polled is a backlog, not a flood.
                    self.front.intake_resumed();
                }
                self.polling_since = Some(tokio::time::Instant::now());
                true
            }
            Ok(false) => {
                if self.polling_since.take().is_some() {
                    tracing::warn!(replica = owner, "another replica took over polling");
                }
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, "the poller's lease could not be renewed");
                self.polling_since
                    .is_some_and(|at| at.elapsed() < self.lease())
            }
        }
    }

    /// How long one `getUpdates` may wait: at most half the lease (at least a second), so the
    /// poller renews its lease before it lapses.
    fn long_poll(&self) -> Duration {
        self.timeout
            .min((self.lease() / 2).max(Duration::from_secs(1)))
    }

    /// The pause before the next `getUpdates` after one more failed (or brought nothing it
    /// could take): 0.5 s, doubling, at most 30 s.
    fn backoff(&mut self) -> Duration {
        let pause = POLL_BACKOFF
            .saturating_mul(1 << self.failures.min(6))
            .min(POLL_BACKOFF_MAX);
        self.failures += 1;
        pause
    }

    /// How often a standby replica asks for the lease.
    fn standby_pause(&self) -> Duration {
        (self.lease() / 6).clamp(Duration::from_millis(200), Duration::from_secs(5))
    }
}

/// The next batch of new updates (recorded), or the error to report; `None` once stopped.
async fn next_batch(mut poll: Poll) -> Option<(Vec<Result<Update, RequestError>>, Poll)> {
    loop {
        if poll.stopped.is_stopped() {
            return None;
        }
        // The rest of a batch whose pre-checkout queries went ahead: recorded before the next
        // request confirms it.
        if let Some((rest, next)) = poll.unrecorded.take() {
            let fresh = if rest.is_empty() {
                Vec::new()
            } else {
                record_or_tell(&poll, rest, next).await?
            };
            poll.offset = Some(next);
            if !fresh.is_empty() {
                return Some((fresh.into_iter().map(Ok).collect(), poll));
            }
        }
        if !poll.may_poll().await {
            let pause = poll.standby_pause();
            tokio::select! {
                () = &mut poll.stopped => return None,
                () = tokio::time::sleep(pause) => continue,
            }
        }
        let mut request = poll
            .front
            .bot()
            .get_updates()
            // Short enough that the poller is back to renew its lease in time.
            .timeout(u32::try_from(poll.long_poll().as_secs()).unwrap_or(10));
        if let Some(offset) = poll.offset {
            request = request.offset(offset);
        }
        if let Some(allowed) = &poll.allowed {
            request = request.allowed_updates(allowed.clone());
        }
        let answer = tokio::select! {
            () = &mut poll.stopped => return None,
            answer = crate::pacing::get_updates(poll.front.bot(), &request) => answer,
        };
        match answer {
            Ok(raw) => {
                let (received, left_out) = decoded(raw);
                // Nothing in the batch can move the offset, so it comes back at once: only
                // updates without an id, or (taken once already) only ids past the largest
                // offset there is (see `next_offset`). Asked again after a growing pause,
                // said once per pause.
                let unconfirmable = match received.last() {
                    None if left_out > 0 => {
                        Some("without an update_id; they cannot be confirmed or recorded")
                    }
                    Some((last, _)) if poll.offset == Some(next_offset(last.id)) => Some(
                        "whose ids are past the largest offset it takes; they cannot be confirmed",
                    ),
                    _ => None,
                };
                if let Some(which) = unconfirmable {
                    let pause = poll.backoff();
                    let updates = received.len() + left_out;
                    tracing::warn!(updates, ?pause, "getUpdates returned only updates {which}");
                    tokio::select! {
                        () = &mut poll.stopped => return None,
                        () = tokio::time::sleep(pause) => continue,
                    }
                }
                poll.failures = 0;
                poll.received.clear();
                let mut updates = Vec::with_capacity(received.len());
                for (update, json) in received {
                    poll.received.insert(update.id.0, json);
                    updates.push(update);
                }
                let Some(last) = updates.last() else {
                    continue;
                };
                let next = next_offset(last.id);
                // Live intake: the flood limit applies here, before anything is recorded, and
                // nowhere else (not to an outage's backlog: see `flood::Intake`).
                let updates = poll.front.within_flood_limits(updates);
                // Pre-checkout queries go ahead unrecorded: Telegram cancels the payment unless
                // it is answered within 10 s, so one must not wait for the database, and one
                // lost to a crash moved no money (replayed later, it would be expired anyway).
                let (checkouts, rest): (Vec<Update>, Vec<Update>) = updates
                    .into_iter()
                    .partition(|u| matches!(u.kind, UpdateKind::PreCheckoutQuery(_)));
                // Those handed over while the previous batch waited for the database are done.
                let checkouts: Vec<Update> = {
                    let mut early = poll.early_checkouts.lock();
                    checkouts
                        .into_iter()
                        .filter(|u| !early.remove(&u.id.0))
                        .collect()
                };
                if !checkouts.is_empty() {
                    poll.unrecorded = Some((rest, next));
                    return Some((checkouts.into_iter().map(Ok).collect(), poll));
                }
                // `None`: stopping with the batch unrecorded, so unconfirmed.
                let fresh = if rest.is_empty() {
                    Vec::new()
                } else {
                    record_or_tell(&poll, rest, next).await?
                };
                // Only now may the next request confirm this batch.
                poll.offset = Some(next);
                if !fresh.is_empty() {
                    return Some((fresh.into_iter().map(Ok).collect(), poll));
                }
            }
            Err(e) => {
                let pause = match &e {
                    RequestError::RetryAfter(after) => {
                        poll.failures += 1;
                        after.duration()
                    }
                    _ => poll.backoff(),
                };
                tracing::warn!(error = %e, ?pause, "getUpdates failed; retrying");
                tokio::select! {
                    () = &mut poll.stopped => return None,
                    () = tokio::time::sleep(pause) => {}
                }
                return Some((vec![Err(e)], poll));
            }
        }
    }
}

/// Records `updates` as [`record`] does. While the database does not answer, every
/// [`NOTICE_AFTER`] it looks at what waits at Telegram (a `getUpdates` at the same offset, which
/// confirms nothing) and tells each sender once that their message is delayed, not lost:
/// unconfirmed updates stay with Telegram, and are recorded and handled when the database is
/// back. A pre-checkout query seen there after the batch (`beyond`: the batch's next offset) is
/// handed to the dispatcher at once: Telegram cancels its payment unless it is answered within
/// 10 s, however long the database takes (only the first 100 waiting updates are seen).
async fn record_or_tell(poll: &Poll, updates: Vec<Update>, beyond: i32) -> Option<Vec<Update>> {
    let mut told = std::collections::HashSet::new();
    // Who to tell, should the record take long (not the updates: copying a batch of them for
    // a notice that is almost never sent cost the poller more than the notice ever did).
    let mut waiting = senders(&updates);
    let recording = record(poll, updates);
    tokio::pin!(recording);
    loop {
        // After the first notice, newcomers are told within half a second.
        let pause = if told.is_empty() {
            NOTICE_AFTER
        } else {
            NOTICE_AGAIN
        };
        tokio::select! {
            fresh = &mut recording => return fresh,
            () = tokio::time::sleep(pause) => {}
        }
        // Telegram holds what comes meanwhile, and its senders are told it is delayed.
        poll.front.intake_refused();
        let mut peek = poll.front.bot().get_updates().timeout(0);
        if let Some(offset) = poll.offset {
            peek = peek.offset(offset);
        }
        if let Ok(raw) = crate::pacing::get_updates(poll.front.bot(), &peek).await {
            // Decoded as the poller decodes (teloxide's own decoding can panic).
            let more: Vec<Update> = decoded(raw).0.into_iter().map(|(u, _)| u).collect();
            hand_over_checkouts(poll, &more, beyond);
            waiting.extend(senders(&more));
        }
        let before = told.len();
        for (chat, language) in waiting.drain(..) {
            if told.insert(chat) {
                tell_delayed(&poll.front, chat, language.as_deref());
            }
        }
        if told.len() > before {
            tracing::warn!(
                told = told.len(),
                "the database has not recorded a batch of updates for {NOTICE_AFTER:?} or more; their senders were told"
            );
        }
    }
}

/// The chat and language of each of `updates`' senders (updates without both tell nobody).
fn senders(updates: &[Update]) -> Vec<(teloxide::types::ChatId, Option<String>)> {
    updates
        .iter()
        .filter_map(|u| Some((u.chat()?.id, u.from()?.language_code.clone())))
        .collect()
}

/// Hands the pre-checkout queries among `peeked` that come after the batch being recorded
/// (ids from `beyond` on) to the dispatcher, once each, as updates that are never shed.
fn hand_over_checkouts(poll: &Poll, peeked: &[Update], beyond: i32) {
    for update in peeked {
        let after_batch = i64::from(update.id.0) >= i64::from(beyond);
        if after_batch
            && matches!(update.kind, UpdateKind::PreCheckoutQuery(_))
            && poll.early_checkouts.lock().insert(update.id.0)
            && poll.front.inner.retries.send(update.clone()).is_err()
        {
            tracing::debug!("the dispatcher stopped; a checkout is left to Telegram");
        }
    }
}

/// Tells a user, in the background, that their message is delayed, not lost.
fn tell_delayed(front: &Front, chat: teloxide::types::ChatId, language: Option<&str>) {
    let front = front.clone();
    let lang = crate::texts::Lang::from_code(language);
    tokio::spawn(async move {
        let notice = front.bot().send_message(chat, crate::texts::delayed(lang));
        if let Err(e) = crate::pacing::send(&front, chat, notice).await {
            tracing::debug!(chat = chat.0, error = %e, "delay notice not sent");
        }
    });
}

/// Records `updates` in one transaction and returns those this replica handles now: the ones
/// it took (see [`genbot_store::Store::record_updates`]), and any that cannot be recorded. An
/// update seen before (Telegram sent it again after a crash) is left to whoever holds it, or
/// was handled already. While the database does not answer it is tried again with backoff, for
/// as long as that lasts: an unrecorded update must not be confirmed to Telegram (a crash would
/// lose it, and with it a payment). `None` when the bot stops first: the batch stays
/// unconfirmed at Telegram, which sends it again to the next poller. Only a write the database
/// refuses outright passes the batch on unrecorded (trying again could not help).
async fn record(poll: &Poll, updates: Vec<Update>) -> Option<Vec<Update>> {
    let front = &poll.front;
    let mut rows = Vec::with_capacity(updates.len());
    let mut unrecordable = Vec::new();
    let mut known = std::collections::HashMap::with_capacity(updates.len());
    for update in updates {
        let recorded = match poll.received.get(&update.id.0) {
            Some(json) => row_as_received(&update, json.get().as_bytes()),
            None => row(&update),
        };
        match recorded {
            Some(row) => {
                rows.push(row);
                known.insert(i64::from(update.id.0), update);
            }
            None => unrecordable.push(update),
        }
    }
    let store = front.engine().store();
    let owner = front.engine().replica_id();
    let lease = front.config().inbox_takeover_after;
    let mut pause = RECORD_PAUSE;
    loop {
        match store.record_updates(owner, rows.clone(), lease).await {
            Ok(recorded) => {
                poll.last_record.now();
                front.intake_recorded();
                let mut fed = crate::claims::feed_known(front, recorded.taken, &mut known);
                fed.extend(unrecordable);
                return Some(fed);
            }
            Err(e) if e.is_transient() => {
                front.intake_refused();
                tracing::warn!(error = %e, retry_in = ?pause, "recording updates failed; trying again (they stay unconfirmed at Telegram meanwhile)");
            }
            Err(e) => {
                // Refused for good, not an outage: the limit applies again.
                front.intake_recorded();
                tracing::error!(error = %e, updates = known.len(), "the database refused to record updates; handled unrecorded (a crash now would lose them)");
                let mut refused: Vec<Update> = known.into_values().collect();
                refused.extend(unrecordable);
                refused.sort_by_key(|u| u.id.0);
                return Some(refused);
            }
        }
        tokio::select! {
            () = front.stopping().cancelled() => return None,
            () = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(RECORD_PAUSE_MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// teloxide unwraps a `None` decoding a reaction with neither `user` nor `actor_chat`:
    /// the panic took the poller (and the process, on every start) down, and would have taken
    /// a replica's rounds down replaying the update from the inbox.
    #[test]
    fn the_offset_past_any_update_id_is_the_largest_there_is() {
        use teloxide::types::UpdateId;
        assert_eq!(next_offset(UpdateId(0)), 1);
        assert_eq!(next_offset(UpdateId(2_147_483_646)), i32::MAX);
        assert_eq!(next_offset(UpdateId(2_147_483_647)), i32::MAX);
        assert_eq!(next_offset(UpdateId(u32::MAX)), i32::MAX);
    }

    #[test]
    fn an_update_teloxide_panics_on_is_set_aside_not_a_crash() {
        let reaction = r#"{"update_id":20,"message_reaction":{"chat":{"id":1,"type":"private"},"message_id":5,"date":0,"old_reaction":[],"new_reaction":[]}}"#;
        let update = decode(reaction).expect("it has an id");
        assert_eq!(update.id.0, 20);
        assert!(
            matches!(&update.kind, teloxide::types::UpdateKind::Error(v) if v.get("message_reaction").is_some()),
            "{update:?}"
        );
        // The same JSON replayed from the inbox (recorded as received) is set aside too.
        assert_eq!(
            parse(reaction).map(|u| u.id.0),
            Err("teloxide panicked decoding it".to_owned())
        );
        assert!(decode(r#"{"message":{}}"#).is_none(), "no id: left out");
        // A lone surrogate escape makes the whole update unreadable as text, not its id.
        let surrogate = r#"{"update_id":21,"message":{"message_id":1,"date":0,"chat":{"id":1,"type":"private"},"from":{"id":1,"is_bot":false,"first_name":"\ud800x"},"text":"/start"}}"#;
        assert!(serde_json::from_str::<serde_json::Value>(surrogate).is_err());
        let update = decode(surrogate).expect("its id is readable");
        assert_eq!(update.id.0, 21);
        assert!(matches!(update.kind, teloxide::types::UpdateKind::Error(_)));
        assert!(decode("not json").is_none());
    }
}
