//! The Telegram Stars ledger: one row per payment, keyed by Telegram's
//! `telegram_payment_charge_id`, written in the same transaction as the credits it buys.
//!
//! Recording a payment twice (Telegram repeats `successful_payment`, an update is replayed after
//! a crash) finds the row and credits nothing. A refund takes the credits back first
//! ([`RefundStart::Started`], refused when they were spent), then Telegram is asked, then the
//! refund is confirmed or undone ([`RefundResult`]); a crash in between leaves the payment
//! `refunding`, and asking again retries Telegram's side without taking credits twice.

use chrono::{DateTime, Utc};

use crate::UserId;

/// A payment Telegram confirmed with `successful_payment`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewStarPayment {
    /// `telegram_payment_charge_id`: unique per payment, the ledger's key.
    pub charge_id: String,
    pub user: UserId,
    /// What the user paid, in Stars (`XTR`).
    pub stars: i64,
    /// What it buys.
    pub credits: i64,
}

/// What recording a payment did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentRecorded {
    /// The payment is new: its credits were added; the user's balance now.
    Credited { balance: i64 },
    /// This charge id was recorded before (a repeated update): nothing was added.
    AlreadyRecorded { balance: i64 },
}

/// Where a payment's refund stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundState {
    /// Not refunded.
    None,
    /// Credits taken back; Telegram's refund not confirmed yet.
    Refunding,
    /// Refunded by Telegram.
    Refunded,
}

impl RefundState {
    pub(crate) fn as_column(self) -> Option<&'static str> {
        match self {
            RefundState::None => None,
            RefundState::Refunding => Some("refunding"),
            RefundState::Refunded => Some("refunded"),
        }
    }

    pub(crate) fn from_column(value: Option<&str>) -> Result<Self, crate::StoreError> {
        match value {
            None => Ok(RefundState::None),
            Some("refunding") => Ok(RefundState::Refunding),
            Some("refunded") => Ok(RefundState::Refunded),
            Some(other) => Err(crate::StoreError::Corrupt {
                column: "star_payments.refund_state",
                value: other.to_owned(),
            }),
        }
    }
}

/// A payment as the ledger holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StarPayment {
    pub charge_id: String,
    pub user: UserId,
    pub stars: i64,
    pub credits: i64,
    pub paid_at: DateTime<Utc>,
    pub refund: RefundState,
}

/// What asking to refund a payment found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundStart {
    /// The credits are taken back (now, or by an earlier attempt that did not finish): ask
    /// Telegram to refund, then record how that went with [`crate::Store::finish_refund`].
    Started(StarPayment),
    /// Refunded before.
    AlreadyRefunded(StarPayment),
    /// No payment with this charge id.
    NotFound,
    /// The user has fewer credits than the payment bought: they were spent.
    Spent { payment: StarPayment, balance: i64 },
}

/// How Telegram answered `refundStarPayment`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundResult {
    /// Refunded (or Telegram says it was already): the refund is final.
    Refunded,
    /// Telegram refused: the credits are given back and the payment can be refunded later.
    Refused,
}

/// One change of a user's credits, for `/balance`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Movement {
    pub at: DateTime<Utc>,
    pub kind: MovementKind,
    /// Signed: positive added, negative taken.
    pub credits: i64,
    /// The charge id (purchases and their refunds) or the model (generations).
    pub detail: String,
}

/// Why credits moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MovementKind {
    Purchase,
    PurchaseRefund,
    Generation,
    GenerationRefund,
}

impl MovementKind {
    pub(crate) fn from_column(value: &str) -> Result<Self, crate::StoreError> {
        match value {
            "purchase" => Ok(MovementKind::Purchase),
            "purchase_refund" => Ok(MovementKind::PurchaseRefund),
            "generation" => Ok(MovementKind::Generation),
            "generation_refund" => Ok(MovementKind::GenerationRefund),
            other => Err(crate::StoreError::Corrupt {
                column: "movement kind",
                value: other.to_owned(),
            }),
        }
    }
}

/// The union both backends read movements with: each part keeps only its newest `?limit` rows,
/// so a user with a long history costs four short index walks, not a sort of everything.
macro_rules! movements_sql {
    ($user:literal, $limit:literal) => {
        concat!(
            "SELECT at, kind, credits, detail FROM (
                SELECT * FROM (SELECT paid_at AS at, 'purchase' AS kind, credits,
                                      charge_id AS detail
                               FROM star_payments WHERE user_id = ",
            $user,
            "
                               ORDER BY paid_at DESC LIMIT ",
            $limit,
            ") p
                UNION ALL
                SELECT * FROM (SELECT refund_at, 'purchase_refund', -credits, charge_id
                               FROM star_payments
                               WHERE user_id = ",
            $user,
            " AND refund_state IS NOT NULL
                               ORDER BY refund_at DESC LIMIT ",
            $limit,
            ") r
                UNION ALL
                SELECT * FROM (SELECT created_at, 'generation', -charged_credits, model
                               FROM generation_jobs
                               WHERE user_id = ",
            $user,
            " AND charged_credits > 0
                               ORDER BY id DESC LIMIT ",
            $limit,
            ") g
                UNION ALL
                SELECT * FROM (SELECT updated_at, 'generation_refund',
                                      refunded_credits, model
                               FROM generation_jobs
                               WHERE user_id = ",
            $user,
            " AND refunded_credits > 0
                               ORDER BY id DESC LIMIT ",
            $limit,
            ") f
             ) m ORDER BY at DESC LIMIT ",
            $limit
        )
    };
}
pub(crate) use movements_sql;
