//! The Telegram Stars ledger on PostgreSQL: a payment and its credits commit in one statement;
//! a refund locks its payment row, so two refunds of one payment (two admins, two replicas)
//! take the credits back once.

use sqlx::postgres::PgRow;
use sqlx::Row;

use super::PgStore;
use crate::columns::payment_columns;
use crate::payments::{movements_sql, RefundState};
use crate::{
    Movement, MovementKind, NewStarPayment, PaymentRecorded, RefundResult, RefundStart,
    StarPayment, StoreError, UserId,
};

fn payment(row: &PgRow) -> Result<StarPayment, StoreError> {
    let state: Option<String> = row.try_get(5)?;
    Ok(StarPayment {
        charge_id: row.try_get(0)?,
        user: UserId(row.try_get(1)?),
        stars: row.try_get(2)?,
        credits: row.try_get(3)?,
        paid_at: row.try_get(4)?,
        refund: RefundState::from_column(state.as_deref())?,
    })
}

impl PgStore {
    pub(crate) async fn record_payment(
        &self,
        new: NewStarPayment,
    ) -> Result<PaymentRecorded, StoreError> {
        let mut conn = self.connection().await?;
        // One statement: the insert that wins the charge id adds the credits; a repeat finds
        // the row and adds nothing.
        let row = sqlx::query(
            "WITH payment AS (
                INSERT INTO star_payments (charge_id, user_id, stars, credits)
                SELECT $1, id, $3, $4 FROM users WHERE id = $2
                ON CONFLICT (charge_id) DO NOTHING
                RETURNING credits),
             credited AS (
                UPDATE users SET credits = users.credits + payment.credits, updated_at = now()
                FROM payment WHERE users.id = $2
                RETURNING users.credits)
             SELECT (SELECT credits FROM credited),
                    (SELECT credits FROM users WHERE id = $2)",
        )
        .bind(&new.charge_id)
        .bind(new.user.0)
        .bind(new.stars)
        .bind(new.credits)
        .fetch_one(&mut *conn)
        .await?;
        let credited: Option<i64> = row.try_get(0)?;
        let known: Option<i64> = row.try_get(1)?;
        match (credited, known) {
            (Some(balance), _) => Ok(PaymentRecorded::Credited { balance }),
            (None, Some(balance)) => Ok(PaymentRecorded::AlreadyRecorded { balance }),
            (None, None) => Err(StoreError::UserNotFound(new.user)),
        }
    }

    pub(crate) async fn start_refund(&self, charge_id: &str) -> Result<RefundStart, StoreError> {
        let mut conn = self.connection().await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        let found = sqlx::query(concat!(
            "SELECT ",
            payment_columns!(),
            " FROM star_payments WHERE charge_id = $1 FOR UPDATE"
        ))
        .bind(charge_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(mut payment) = found.as_ref().map(payment).transpose()? else {
            return Ok(RefundStart::NotFound);
        };
        match payment.refund {
            RefundState::Refunded => return Ok(RefundStart::AlreadyRefunded(payment)),
            RefundState::Refunding => return Ok(RefundStart::Started(payment)),
            RefundState::None => {}
        }
        let taken = sqlx::query(
            "UPDATE users SET credits = credits - $2, updated_at = now()
             WHERE id = $1 AND credits >= $2 RETURNING credits",
        )
        .bind(payment.user.0)
        .bind(payment.credits)
        .fetch_optional(&mut *tx)
        .await?;
        if taken.is_none() {
            let balance: i64 = sqlx::query("SELECT credits FROM users WHERE id = $1")
                .bind(payment.user.0)
                .fetch_one(&mut *tx)
                .await?
                .try_get(0)?;
            return Ok(RefundStart::Spent { payment, balance });
        }
        sqlx::query(
            "UPDATE star_payments SET refund_state = 'refunding', refund_at = now()
             WHERE charge_id = $1",
        )
        .bind(charge_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        payment.refund = RefundState::Refunding;
        Ok(RefundStart::Started(payment))
    }

    pub(crate) async fn finish_refund(
        &self,
        charge_id: &str,
        result: RefundResult,
    ) -> Result<bool, StoreError> {
        let mut conn = self.connection().await?;
        let done = match result {
            RefundResult::Refunded => sqlx::query(
                "UPDATE star_payments SET refund_state = 'refunded'
                 WHERE charge_id = $1 AND refund_state = 'refunding'",
            )
            .bind(charge_id)
            .execute(&mut *conn)
            .await?
            .rows_affected(),
            RefundResult::Refused => sqlx::query(
                "WITH undone AS (
                    UPDATE star_payments SET refund_state = NULL, refund_at = NULL
                    WHERE charge_id = $1 AND refund_state = 'refunding'
                    RETURNING user_id, credits)
                 UPDATE users SET credits = users.credits + undone.credits, updated_at = now()
                 FROM undone WHERE users.id = undone.user_id",
            )
            .bind(charge_id)
            .execute(&mut *conn)
            .await?
            .rows_affected(),
        };
        Ok(done == 1)
    }

    pub(crate) async fn payment(&self, charge_id: &str) -> Result<Option<StarPayment>, StoreError> {
        let mut conn = self.connection().await?;
        sqlx::query(concat!(
            "SELECT ",
            payment_columns!(),
            " FROM star_payments WHERE charge_id = $1"
        ))
        .bind(charge_id)
        .fetch_optional(&mut *conn)
        .await?
        .as_ref()
        .map(payment)
        .transpose()
    }

    pub(crate) async fn payments_of(
        &self,
        user: UserId,
        limit: u32,
    ) -> Result<Vec<StarPayment>, StoreError> {
        let mut conn = self.connection().await?;
        sqlx::query(concat!(
            "SELECT ",
            payment_columns!(),
            " FROM star_payments WHERE user_id = $1 ORDER BY paid_at DESC LIMIT $2"
        ))
        .bind(user.0)
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(payment)
        .collect()
    }

    pub(crate) async fn movements(
        &self,
        user: UserId,
        limit: u32,
    ) -> Result<Vec<Movement>, StoreError> {
        let mut conn = self.connection().await?;
        sqlx::query(movements_sql!("$1", "$2"))
            .bind(user.0)
            .bind(i64::from(limit))
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|row| {
                let kind: String = row.try_get(1)?;
                Ok(Movement {
                    at: row.try_get(0)?,
                    kind: MovementKind::from_column(&kind)?,
                    credits: row.try_get(2)?,
                    detail: row.try_get(3)?,
                })
            })
            .collect()
    }
}
