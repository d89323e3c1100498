//! The Telegram Stars ledger on SQLite: each write runs in the writer's savepoint, so a payment
//! and its credits (or a refund and the credits it takes back) commit together or not at all.

use chrono::Utc;
use rusqlite::{params, Connection, OptionalExtension, Row};

use super::rows::{millis, timestamp};
use super::SqliteStore;
use crate::columns::payment_columns;
use crate::payments::{movements_sql, RefundState};
use crate::{
    Movement, MovementKind, NewStarPayment, PaymentRecorded, RefundResult, RefundStart,
    StarPayment, StoreError, UserId,
};

fn payment(row: &Row<'_>) -> Result<StarPayment, StoreError> {
    let state: Option<String> = row.get(5)?;
    Ok(StarPayment {
        charge_id: row.get(0)?,
        user: UserId(row.get(1)?),
        stars: row.get(2)?,
        credits: row.get(3)?,
        paid_at: timestamp("star_payments.paid_at", row.get(4)?)?,
        refund: RefundState::from_column(state.as_deref())?,
    })
}

fn find_payment(conn: &Connection, charge_id: &str) -> Result<Option<StarPayment>, StoreError> {
    conn.prepare_cached(concat!(
        "SELECT ",
        payment_columns!(),
        " FROM star_payments WHERE charge_id = ?1"
    ))?
    .query_row([charge_id], |row| Ok(payment(row)))
    .optional()?
    .transpose()
}

fn balance(conn: &Connection, user: UserId) -> Result<i64, StoreError> {
    conn.prepare_cached("SELECT credits FROM users WHERE id = ?1")?
        .query_row([user.0], |r| r.get(0))
        .optional()?
        .ok_or(StoreError::UserNotFound(user))
}

impl SqliteStore {
    pub(crate) async fn record_payment(
        &self,
        new: NewStarPayment,
    ) -> Result<PaymentRecorded, StoreError> {
        self.writer
            .run(move |conn| {
                let known = balance(conn, new.user)?;
                let inserted = conn
                    .prepare_cached(
                        "INSERT INTO star_payments (charge_id, user_id, stars, credits, paid_at)
                         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (charge_id) DO NOTHING",
                    )?
                    .execute(params![
                        new.charge_id,
                        new.user.0,
                        new.stars,
                        new.credits,
                        millis(Utc::now())
                    ])?;
                if inserted == 0 {
                    return Ok(PaymentRecorded::AlreadyRecorded { balance: known });
                }
                let balance: i64 = conn
                    .prepare_cached(
                        "UPDATE users SET credits = credits + ?2, updated_at = ?3
                         WHERE id = ?1 RETURNING credits",
                    )?
                    .query_row(params![new.user.0, new.credits, millis(Utc::now())], |r| {
                        r.get(0)
                    })?;
                Ok(PaymentRecorded::Credited { balance })
            })
            .await
    }

    pub(crate) async fn start_refund(&self, charge_id: &str) -> Result<RefundStart, StoreError> {
        let charge_id = charge_id.to_owned();
        self.writer
            .run(move |conn| {
                let Some(mut payment) = find_payment(conn, &charge_id)? else {
                    return Ok(RefundStart::NotFound);
                };
                match payment.refund {
                    RefundState::Refunded => return Ok(RefundStart::AlreadyRefunded(payment)),
                    RefundState::Refunding => return Ok(RefundStart::Started(payment)),
                    RefundState::None => {}
                }
                let now = millis(Utc::now());
                let taken = conn
                    .prepare_cached(
                        "UPDATE users SET credits = credits - ?2, updated_at = ?3
                         WHERE id = ?1 AND credits >= ?2",
                    )?
                    .execute(params![payment.user.0, payment.credits, now])?;
                if taken == 0 {
                    let balance = balance(conn, payment.user)?;
                    return Ok(RefundStart::Spent { payment, balance });
                }
                conn.prepare_cached(
                    "UPDATE star_payments SET refund_state = ?2, refund_at = ?3
                     WHERE charge_id = ?1",
                )?
                .execute(params![
                    charge_id,
                    RefundState::Refunding.as_column(),
                    now
                ])?;
                payment.refund = RefundState::Refunding;
                Ok(RefundStart::Started(payment))
            })
            .await
    }

    pub(crate) async fn finish_refund(
        &self,
        charge_id: &str,
        result: RefundResult,
    ) -> Result<bool, StoreError> {
        let charge_id = charge_id.to_owned();
        self.writer
            .run(move |conn| {
                let now = millis(Utc::now());
                match result {
                    RefundResult::Refunded => Ok(conn
                        .prepare_cached(
                            "UPDATE star_payments SET refund_state = 'refunded'
                             WHERE charge_id = ?1 AND refund_state = 'refunding'",
                        )?
                        .execute([&charge_id])?
                        == 1),
                    RefundResult::Refused => {
                        let undone: Option<(i64, i64)> = conn
                            .prepare_cached(
                                "UPDATE star_payments SET refund_state = NULL, refund_at = NULL
                                 WHERE charge_id = ?1 AND refund_state = 'refunding'
                                 RETURNING user_id, credits",
                            )?
                            .query_row([&charge_id], |r| Ok((r.get(0)?, r.get(1)?)))
                            .optional()?;
                        let Some((user, credits)) = undone else {
                            return Ok(false);
                        };
                        conn.prepare_cached(
                            "UPDATE users SET credits = credits + ?2, updated_at = ?3
                             WHERE id = ?1",
                        )?
                        .execute(params![user, credits, now])?;
                        Ok(true)
                    }
                }
            })
            .await
    }

    pub(crate) async fn payment(&self, charge_id: &str) -> Result<Option<StarPayment>, StoreError> {
        let charge_id = charge_id.to_owned();
        self.readers
            .with(move |conn| find_payment(conn, &charge_id))
            .await
    }

    pub(crate) async fn payments_of(
        &self,
        user: UserId,
        limit: u32,
    ) -> Result<Vec<StarPayment>, StoreError> {
        self.readers
            .with(move |conn| {
                let mut stmt = conn.prepare_cached(concat!(
                    "SELECT ",
                    payment_columns!(),
                    " FROM star_payments WHERE user_id = ?1 ORDER BY paid_at DESC LIMIT ?2"
                ))?;
                let mut rows = stmt.query(params![user.0, i64::from(limit)])?;
                let mut payments = Vec::new();
                while let Some(row) = rows.next()? {
                    payments.push(payment(row)?);
                }
                Ok(payments)
            })
            .await
    }

    pub(crate) async fn movements(
        &self,
        user: UserId,
        limit: u32,
    ) -> Result<Vec<Movement>, StoreError> {
        self.readers
            .with(move |conn| {
                let mut stmt = conn.prepare_cached(movements_sql!("?1", "?2"))?;
                let mut rows = stmt.query(params![user.0, i64::from(limit)])?;
                let mut movements = Vec::new();
                while let Some(row) = rows.next()? {
                    let kind: String = row.get(1)?;
                    movements.push(Movement {
                        at: timestamp("movement time", row.get(0)?)?,
                        kind: MovementKind::from_column(&kind)?,
                        credits: row.get(2)?,
                        detail: row.get(3)?,
                    });
                }
                Ok(movements)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use crate::payments::movements_sql;

    /// `/balance` reads the ledger on every call: each of its four parts must come out of an
    /// index in the order it is limited by, leaving one sort (the merge) per read.
    #[test]
    fn movements_sort_only_the_merge() {
        let mut conn = Connection::open_in_memory().expect("in-memory database");
        super::super::schema::migrate(&mut conn).expect("schema");
        let mut plan = conn
            .prepare(concat!("EXPLAIN QUERY PLAN ", movements_sql!("?1", "?2")))
            .expect("plan");
        let steps: Vec<String> = plan
            .query_map(rusqlite::params![1_i64, 5_i64], |row| row.get(3))
            .expect("plan rows")
            .collect::<Result<_, _>>()
            .expect("plan text");
        let sorts = steps.iter().filter(|s| s.contains("TEMP B-TREE")).count();
        assert_eq!(sorts, 1, "{steps:#?}");
        assert!(
            !steps
                .iter()
                .any(|s| s.starts_with("SCAN generation_jobs")
                    || s.starts_with("SCAN star_payments")),
            "{steps:#?}"
        );
    }
}
