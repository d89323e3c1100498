//! The mock's record of every file the bot sent (`sendPhoto`, `sendDocument`): when the request
//! arrived and when, if ever, its answer was handed to the connection.
//!
//! The Bot API has no idempotency key, so a bot killed while a send is on the wire sends it
//! again after a restart. Whether a repeated photo was such a send or a defect (the bot read
//! the answer and sent it again anyway) can only be told from this side of the wire: a request
//! whose answer was never handed over, or handed over just before the process died, never
//! reached the bot's database. See [`super::repeats`] for the judgement.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::response::Response;
use http_body::{Frame, SizeHint};
use parking_lot::Mutex;

/// Sends kept (enough for any test; bounded for long suite runs).
const LOG_MAX: usize = 100_000;

/// One file the bot sent, as the mock saw it on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSend {
    pub chat: i64,
    /// The message the send made (as in [`super::Entry::BotPhoto`]).
    pub message_id: i64,
    /// `sendDocument` rather than `sendPhoto`.
    pub document: bool,
    pub caption: Option<String>,
    /// Inline keyboard buttons as (label, callback data): genbot's carry the job id.
    pub buttons: Vec<(String, String)>,
    /// The message it replies to (`reply_parameters.message_id` or `reply_to_message_id`),
    /// if any: `None` also when that message was missing and the send allowed sending
    /// without the reply.
    pub reply_to: Option<i64>,
    /// When the request reached the mock (before its body was read).
    pub arrived: Instant,
    /// When its answer's body was first handed to the connection; `None`: never (the
    /// connection died first).
    pub answered: Option<Instant>,
}

/// What makes two sends the same message sent twice: same chat, kind, caption, buttons and
/// reply target (the file itself may differ: an upload, then its `file_id`). genbot's buttons
/// carry the job id, so two jobs with one prompt are still two messages.
pub(super) type MessageKey<'a> = (
    i64,
    bool,
    Option<&'a str>,
    &'a [(String, String)],
    Option<i64>,
);

impl FileSend {
    pub(super) fn key(&self) -> MessageKey<'_> {
        (
            self.chat,
            self.document,
            self.caption.as_deref(),
            &self.buttons,
            self.reply_to,
        )
    }
}

/// The log, shared with the answers' bodies that mark it when they are written.
#[derive(Debug, Clone, Default)]
pub(super) struct WireLog(Arc<Mutex<Vec<FileSend>>>);

impl WireLog {
    /// Records a send; its index for [`WireLog::watch`], `None` when the log is full.
    pub(super) fn record(&self, send: FileSend) -> Option<usize> {
        let mut log = self.0.lock();
        (log.len() < LOG_MAX).then(|| {
            log.push(send);
            log.len() - 1
        })
    }

    /// `response` with a body that marks send `index` answered when it is first polled, i.e.
    /// when the server starts writing it to the connection. A connection that died before
    /// drops the body unpolled: the send stays unanswered.
    pub(super) fn watch(&self, index: Option<usize>, response: Response) -> Response {
        let Some(index) = index else {
            return response;
        };
        let log = self.clone();
        response.map(|body| {
            Body::new(Watched {
                body,
                log,
                index,
                marked: false,
            })
        })
    }

    pub(super) fn sends(&self) -> Vec<FileSend> {
        self.0.lock().clone()
    }

    fn mark_answered(&self, index: usize) {
        if let Some(send) = self.0.lock().get_mut(index) {
            send.answered.get_or_insert_with(Instant::now);
        }
    }
}

/// An answer's body that records when it starts going out.
struct Watched {
    body: Body,
    log: WireLog,
    index: usize,
    marked: bool,
}

impl http_body::Body for Watched {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        if !this.marked {
            this.marked = true;
            this.log.mark_answered(this.index);
        }
        Pin::new(&mut this.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        // Kept exact, so the answer still carries its Content-Length.
        self.body.size_hint()
    }
}
