//! Running the handlers: each chat's updates one at a time, in the order they came, chats side
//! by side; an update without a chat (a pre-checkout query) at once.
//!
//! In place of teloxide's `Dispatcher`, which keeps a worker per chat, each with its own
//! channel (allocated with room for 32 updates of well over a kilobyte each), and removes
//! every idle worker whenever it holds more workers than were ever busy at once. Under a
//! crowd of users each writing now and then, that built and tore down a worker, a task and a
//! channel for nearly every update. Here a chat's waiting updates are a queue in one map, and
//! a chat has a task only while it has updates.
//!
//! Owns the order and concurrency of handling, nothing else: what an update means is the
//! router's, what is shed before it gets here the backlog's.

use std::collections::{HashMap, VecDeque};
use std::fmt::Debug;
use std::ops::ControlFlow;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::{FutureExt, StreamExt};
use parking_lot::Mutex;
use teloxide::dispatching::UpdateHandler;
use teloxide::dptree;
use teloxide::types::{ChatId, Update, UpdateKind};
use teloxide::update_listeners::UpdateListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::shared::HandlerError;

/// What becomes of an update no branch of the handler took.
pub(crate) type Unhandled = Box<dyn Fn(&Update) + Send + Sync>;

/// Hands updates to the handler, each chat's in order.
pub(crate) struct Dispatch {
    shared: Arc<Shared>,
    tasks: TaskTracker,
}

struct Shared {
    handler: UpdateHandler<HandlerError>,
    deps: dptree::di::DependencyMap,
    unhandled: Unhandled,
    /// The chats whose updates are being handled, with those waiting behind: a chat is here
    /// exactly while a task drains it.
    waiting: Mutex<HashMap<ChatId, VecDeque<Update>>>,
}

impl Dispatch {
    /// Runs `handler` with `deps` and the update; `unhandled` gets what no branch took.
    ///
    /// # Panics
    /// When `handler` asks for a dependency `deps` lacks (a mistake in the code, found by any
    /// test that builds the bot).
    pub(crate) fn new(
        handler: UpdateHandler<HandlerError>,
        deps: dptree::di::DependencyMap,
        unhandled: Unhandled,
    ) -> Self {
        dptree::type_check(handler.sig(), &deps, &[dptree::Type::of::<Update>()]);
        Dispatch {
            shared: Arc::new(Shared {
                handler,
                deps,
                unhandled,
                waiting: Mutex::default(),
            }),
            tasks: TaskTracker::new(),
        }
    }

    /// Handles `update` after its chat's earlier ones (at once when it has no chat).
    pub(crate) fn push(&self, update: Update) {
        if matches!(update.kind, UpdateKind::Error(_)) {
            // As teloxide's dispatcher: never handled. The inbox sets such updates aside before
            // they get here (`inbox::to_dispatcher`).
            tracing::error!(
                update_id = update.id.0,
                "an undecoded update reached the dispatch; dropped"
            );
            return;
        }
        let Some(chat) = update.chat().map(|chat| chat.id) else {
            let shared = Arc::clone(&self.shared);
            self.tasks.spawn(async move { shared.handle(update).await });
            return;
        };
        let first = {
            let mut waiting = self.shared.waiting.lock();
            match waiting.get_mut(&chat) {
                Some(queue) => {
                    queue.push_back(update);
                    None
                }
                None => {
                    waiting.insert(chat, VecDeque::new());
                    Some(update)
                }
            }
        };
        if let Some(update) = first {
            let shared = Arc::clone(&self.shared);
            self.tasks.spawn(shared.drain(chat, update));
        }
    }

    /// Waits until every update pushed has been handled.
    pub(crate) async fn finish(self) {
        self.tasks.close();
        self.tasks.wait().await;
    }
}

impl Shared {
    /// Handles `first`, then the chat's updates that came meanwhile, until none is left.
    async fn drain(self: Arc<Self>, chat: ChatId, first: Update) {
        let mut next = first;
        loop {
            self.handle(next).await;
            let popped = {
                let mut waiting = self.waiting.lock();
                let popped = waiting.get_mut(&chat).and_then(VecDeque::pop_front);
                if popped.is_none() {
                    waiting.remove(&chat);
                }
                popped
            };
            match popped {
                Some(update) => next = update,
                None => return,
            }
        }
    }

    async fn handle(&self, update: Update) {
        let mut deps = self.deps.clone();
        deps.insert(update);
        let handled = async {
            match self.handler.dispatch(deps).await {
                ControlFlow::Break(Ok(())) => {}
                ControlFlow::Break(Err(e)) => tracing::error!(error = ?e, "a handler failed"),
                ControlFlow::Continue(deps) => (self.unhandled)(&deps.get::<Update>()),
            }
        };
        // Handlers run isolated (their panics are caught and answered there); a panic that
        // still gets here must not end the chat's task with its queue left behind.
        if AssertUnwindSafe(handled).catch_unwind().await.is_err() {
            tracing::error!(
                "a panic escaped an update's handling: the update stays unhandled in the inbox until the next start replays it"
            );
        }
    }
}

/// What [`listen`] says of its listener.
pub(crate) struct Listening {
    /// Logged with a listener's error.
    pub(crate) failed: &'static str,
    /// Logged when the stop comes.
    pub(crate) stopping: &'static str,
}

/// Takes updates from `listener` into `dispatch` until the listener ends (`stop` stops it),
/// then waits for every update taken to be handled.
pub(crate) async fn listen<L>(
    dispatch: Dispatch,
    mut listener: L,
    listening: &Listening,
    stop: &CancellationToken,
) where
    L: UpdateListener,
    L::Err: Debug,
{
    // The kinds the router's tree branches on (teloxide's dispatcher read them off the tree;
    // its reading is not public): the same the webhook asks for.
    listener.hint_allowed_updates(&mut crate::webhook::ALLOWED_UPDATES.into_iter());
    let mut stop_listener = Some(listener.stop_token());
    {
        let updates = listener.as_stream();
        tokio::pin!(updates);
        loop {
            tokio::select! {
                () = stop.cancelled(), if stop_listener.is_some() => {
                    tracing::info!("{}", listening.stopping);
                    if let Some(token) = stop_listener.take() {
                        token.stop();
                    }
                }
                next = updates.next() => match next {
                    Some(Ok(update)) => dispatch.push(update),
                    Some(Err(e)) => tracing::error!(error = ?e, "{}", listening.failed),
                    None => break,
                },
            }
        }
    }
    dispatch.finish().await;
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use teloxide::prelude::*;
    use tokio::sync::Notify;

    use super::*;

    /// An update from its JSON text (teloxide reads a `serde_json::Value`'s keys as owned
    /// strings, which its `UpdateKind` does not take).
    fn update(json: serde_json::Value) -> Update {
        serde_json::from_str(&json.to_string()).expect("an update")
    }

    fn text(update_id: u32, chat: i64, text: &str) -> Update {
        update(serde_json::json!({
            "update_id": update_id,
            "message": {
                "message_id": update_id, "date": 0, "text": text,
                "chat": {"id": chat, "type": "private", "first_name": "a"},
                "from": {"id": chat, "is_bot": false, "first_name": "a"},
            }
        }))
    }

    fn checkout(update_id: u32) -> Update {
        update(serde_json::json!({
            "update_id": update_id,
            "pre_checkout_query": {
                "id": "q", "currency": "XTR", "total_amount": 1, "invoice_payload": "p",
                "from": {"id": 1, "is_bot": false, "first_name": "a"},
            }
        }))
    }

    #[derive(Default)]
    struct Seen {
        handled: Mutex<Vec<(i64, u32)>>,
        busy: Mutex<HashMap<i64, usize>>,
        overlaps: AtomicUsize,
        unhandled: Mutex<Vec<u32>>,
        hold: Notify,
    }

    /// Records each message (chat, update id); a chat's message "hold" waits for `hold`,
    /// "panic" panics; anything else is no message (left unhandled).
    fn dispatch(seen: &Arc<Seen>) -> Dispatch {
        let in_handler = Arc::clone(seen);
        let handler = dptree::entry().branch(Update::filter_message().endpoint(
            move |msg: Message, update: Update| {
                let seen = Arc::clone(&in_handler);
                async move {
                    let chat = msg.chat.id.0;
                    if std::mem::replace(seen.busy.lock().entry(chat).or_default(), 1) != 0 {
                        seen.overlaps.fetch_add(1, Ordering::SeqCst);
                    }
                    match msg.text() {
                        Some("hold") => seen.hold.notified().await,
                        Some("panic") => panic!("a handler's panic"),
                        _ => tokio::task::yield_now().await,
                    }
                    seen.busy.lock().insert(chat, 0);
                    seen.handled.lock().push((chat, update.id.0));
                    Ok::<(), HandlerError>(())
                }
            },
        ));
        let in_unhandled = Arc::clone(seen);
        Dispatch::new(
            handler,
            dptree::deps![],
            Box::new(move |update| in_unhandled.unhandled.lock().push(update.id.0)),
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_chats_updates_run_one_at_a_time_in_order_and_all_before_finish() {
        let seen = Arc::new(Seen::default());
        let dispatch = dispatch(&seen);
        let shared = Arc::clone(&dispatch.shared);
        for id in 0..300 {
            dispatch.push(text(id, i64::from(id % 3), "x"));
        }
        dispatch.push(checkout(1_000));
        dispatch.finish().await;
        let handled = seen.handled.lock().clone();
        assert_eq!(handled.len(), 300);
        for chat in 0..3 {
            let ids: Vec<u32> = handled
                .iter()
                .filter(|(c, _)| *c == chat)
                .map(|(_, id)| *id)
                .collect();
            let expected: Vec<u32> = (0..300).filter(|id| i64::from(id % 3) == chat).collect();
            assert_eq!(ids, expected, "chat {chat} in order");
        }
        assert_eq!(seen.overlaps.load(Ordering::SeqCst), 0);
        assert_eq!(*seen.unhandled.lock(), vec![1_000]);
        assert!(shared.waiting.lock().is_empty(), "no chat left behind");
    }

    #[tokio::test]
    async fn a_waiting_chat_holds_up_only_itself() {
        let seen = Arc::new(Seen::default());
        let dispatch = dispatch(&seen);
        dispatch.push(text(1, 7, "hold"));
        dispatch.push(text(2, 7, "after the hold"));
        dispatch.push(text(3, 8, "another chat"));
        tokio::time::timeout(Duration::from_secs(10), async {
            while !seen.handled.lock().contains(&(8, 3)) {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the other chat is handled while chat 7 waits");
        assert!(!seen.handled.lock().iter().any(|(chat, _)| *chat == 7));
        seen.hold.notify_one();
        dispatch.finish().await;
        assert_eq!(*seen.handled.lock(), vec![(8, 3), (7, 1), (7, 2)]);
    }

    #[tokio::test]
    async fn a_panic_that_escapes_a_handler_leaves_its_chat_running() {
        let seen = Arc::new(Seen::default());
        let dispatch = dispatch(&seen);
        dispatch.push(text(1, 5, "panic"));
        dispatch.push(text(2, 5, "next"));
        dispatch.finish().await;
        assert_eq!(*seen.handled.lock(), vec![(5, 2)]);
    }
}
