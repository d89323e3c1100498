//! genbot's durable state: users and generation jobs.
//!
//! One API ([`Store`]) over two backends:
//! - [`SqliteStore`] (`sqlite://PATH`), the embedded default: pooled read-only connections and
//!   one writer thread with group commit;
//! - [`PgStore`] (`postgres://…`), for several replicas: a sqlx pool; claims and acceptances
//!   serialize on advisory transaction locks, take-overs use `FOR UPDATE SKIP LOCKED`.
//!
//! Both create their schema on connect (versioned migrations) and keep the same invariants:
//! a job is accepted together with its charge (quota, credits, `QUEUE_MAX_LENGTH`) and ended
//! together with its exact refund; a running job has one owner under a lease and every write of
//! an owner is fenced on it; the global limits are counted over every replica in the claim's
//! transaction; credits never go below zero. The guarded life of a job is in `lifecycle`; the
//! Telegram Stars ledger (a payment credited once per charge id) in `payments`.
//!
//! This crate owns SQL and nothing else: no caching (see `genbot-cache`), no business rules
//! beyond those invariants (see `genbot-engine`).

mod broadcast;
mod columns;
mod error;
mod history;
mod inbox;
pub mod inspect;
mod lifecycle;
mod model;
mod outbox;
mod payments;
mod postgres;
pub mod scratch;
mod sqlite;
mod waiting;

use std::ops::Range;

use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use genbot_config::DatabaseUrl;

pub use broadcast::{Broadcast, BroadcastSend};
pub use error::StoreError;
pub use history::HistoryItem;
pub use inbox::{DeadLetter, InboxUpdate, Recorded, SetAside, Unhandled};
pub use lifecycle::{
    Claim, ClaimSpec, CreditAudit, Finished, JobOutcome, QueuedJob, Submission, SubmitOutcome,
};
pub use model::{
    DailyQuota, Deleted, Job, JobCounts, JobId, JobStatus, JobUpdate, NewJob, NewUser, PoolStats,
    User, UserId,
};
pub use outbox::{Delivery, DeliveryOutcome, JobImage, OutboxBacklog, ReplyTarget};
pub use payments::{
    Movement, MovementKind, NewStarPayment, PaymentRecorded, RefundResult, RefundStart,
    RefundState, StarPayment,
};
pub use postgres::{PgOptions, PgStore, ReplicaIdClaim, ReplicaIdHold, ReplicaIdTaken};
pub use sqlite::{SqliteOptions, SqliteStore};

/// A named lease among replicas as it stands (e.g. the right to poll Telegram).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The replica id holding it.
    pub owner: String,
    /// When it ends unless renewed.
    pub until: DateTime<Utc>,
}

/// Users and jobs, in whichever database `DATABASE_URL` names. Cheap to clone: clones share
/// the pool.
#[derive(Debug, Clone)]
pub enum Store {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

/// Forwards a call to the backend in use.
macro_rules! dispatch {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        match $self {
            Store::Sqlite(store) => store.$method($($arg),*).await,
            Store::Postgres(store) => store.$method($($arg),*).await,
        }
    };
}

impl Store {
    /// Opens the database `url` names with a pool of `pool_size` connections, creating or
    /// migrating the schema.
    ///
    /// # Errors
    /// [`StoreError::Connect`] when the database cannot be opened or reached,
    /// [`StoreError::Migration`] when the schema cannot be brought up to date.
    pub async fn connect(url: &DatabaseUrl, pool_size: u32) -> Result<Store, StoreError> {
        Store::connect_with(url, pool_size, PgOptions::default()).await
    }

    /// As [`Store::connect`], with `pg` for a PostgreSQL pool (ignored for SQLite).
    ///
    /// # Errors
    /// As [`Store::connect`].
    pub async fn connect_with(
        url: &DatabaseUrl,
        pool_size: u32,
        pg: PgOptions,
    ) -> Result<Store, StoreError> {
        match url {
            DatabaseUrl::Sqlite { path } => {
                let path = path.clone();
                // Opening runs migrations and may touch the disk: keep it off the async threads.
                let store =
                    tokio::task::spawn_blocking(move || SqliteStore::open(&path, pool_size))
                        .await
                        .map_err(|e| StoreError::Connect {
                            backend: "sqlite",
                            location: url.to_string(),
                            reason: e.to_string(),
                        })??;
                Ok(Store::Sqlite(store))
            }
            DatabaseUrl::Postgres(url) => {
                Ok(Store::Postgres(PgStore::connect(url, pool_size, pg).await?))
            }
        }
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    /// How durable a returned write is, in one sentence for reports.
    pub fn durability(&self) -> &'static str {
        match self {
            Store::Sqlite(store) => store.durability(),
            Store::Postgres(store) => store.durability(),
        }
    }

    /// The connection pool right now.
    pub fn pool_stats(&self) -> PoolStats {
        match self {
            Store::Sqlite(store) => store.pool_stats(),
            Store::Postgres(store) => store.pool_stats(),
        }
    }

    /// The user with this id, if registered.
    ///
    /// # Errors
    /// Database failures only; a missing user is `Ok(None)`.
    pub async fn get_user(&self, id: UserId) -> Result<Option<User>, StoreError> {
        dispatch!(self.get_user(id))
    }

    /// Number of registered users.
    ///
    /// # Errors
    /// Database failures.
    pub async fn count_users(&self) -> Result<u64, StoreError> {
        dispatch!(self.count_users())
    }

    /// Number of users whose id is in `ids`.
    ///
    /// # Errors
    /// Database failures.
    pub async fn count_users_in_range(&self, ids: Range<i64>) -> Result<u64, StoreError> {
        dispatch!(self.count_users_in_range(ids))
    }

    /// Registers the user or refreshes their profile (username, language); credits, counters
    /// and choices of an existing user are kept.
    ///
    /// # Errors
    /// Database failures.
    pub async fn upsert_user(&self, new: NewUser) -> Result<User, StoreError> {
        dispatch!(self.upsert_user(new))
    }

    /// Stores the user's model choice (`None` = back to the default).
    ///
    /// # Errors
    /// [`StoreError::UserNotFound`], or database failures.
    pub async fn set_selected_model(
        &self,
        id: UserId,
        model: Option<String>,
    ) -> Result<User, StoreError> {
        dispatch!(self.set_selected_model(id, model))
    }

    /// Starts a broadcast of `text` from `admin`, leased to `owner`; `Ok(None)` when the
    /// update `source_update` started one already (a replay of the admin's message).
    ///
    /// # Errors
    /// Database failures.
    pub async fn create_broadcast(
        &self,
        admin: UserId,
        text: String,
        source_update: Option<i64>,
        owner: &str,
        lease: Duration,
    ) -> Result<Option<Broadcast>, StoreError> {
        dispatch!(self.create_broadcast(admin, text, source_update, owner, lease))
    }

    /// The oldest unfinished broadcast that is `owner`'s or whose lease expired (its replica is
    /// gone), now leased to `owner`.
    ///
    /// # Errors
    /// Database failures.
    pub async fn claim_broadcast(
        &self,
        owner: &str,
        lease: Duration,
    ) -> Result<Option<Broadcast>, StoreError> {
        dispatch!(self.claim_broadcast(owner, lease))
    }

    /// Up to `limit` users with ids above `after`, in id order, each with whether they blocked
    /// the bot.
    ///
    /// # Errors
    /// Database failures.
    pub async fn broadcast_recipients(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<(UserId, bool)>, StoreError> {
        dispatch!(self.broadcast_recipients(after, limit))
    }

    /// Records one send of broadcast `id` and moves its cursor to `user`, renewing `owner`'s
    /// lease; `Ok(false)` when the broadcast is no longer `owner`'s (or the user was recorded).
    ///
    /// # Errors
    /// Database failures.
    pub async fn record_broadcast_send(
        &self,
        id: i64,
        owner: &str,
        user: UserId,
        sent: BroadcastSend,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        dispatch!(self.record_broadcast_send(id, owner, user, sent, lease))
    }

    /// Stores the progress message and, with `done`, ends the broadcast; returns it.
    ///
    /// # Errors
    /// Database failures.
    pub async fn finish_broadcast(
        &self,
        id: i64,
        progress_message: Option<i64>,
        done: bool,
    ) -> Result<Option<Broadcast>, StoreError> {
        dispatch!(self.finish_broadcast(id, progress_message, done))
    }

    /// Bans the user from generating and buying (`/ban`), or lifts it (`/unban`).
    ///
    /// # Errors
    /// [`StoreError::UserNotFound`], or database failures.
    pub async fn set_banned(&self, id: UserId, banned: bool) -> Result<User, StoreError> {
        dispatch!(self.set_banned(id, banned))
    }

    /// Replaces the inputs the user set for `model` (`/settings`); an empty map clears them.
    ///
    /// # Errors
    /// [`StoreError::UserNotFound`], or database failures.
    pub async fn set_model_settings(
        &self,
        id: UserId,
        model: String,
        settings: serde_json::Map<String, serde_json::Value>,
    ) -> Result<User, StoreError> {
        dispatch!(self.set_model_settings(id, model, settings))
    }

    /// Sets one input the user chose for `model` (`/settings`), or removes it (`None`: back to
    /// the model's default), leaving the others as they are in the row: two presses at once,
    /// from two chats, each keep theirs (a read-modify-write of the whole map lost one).
    ///
    /// # Errors
    /// [`StoreError::UserNotFound`], or database failures.
    pub async fn set_model_setting(
        &self,
        id: UserId,
        model: String,
        name: String,
        value: Option<serde_json::Value>,
    ) -> Result<User, StoreError> {
        dispatch!(self.set_model_setting(id, model, name, value))
    }

    /// Adds `delta` (negative to charge) to the user's credits and returns the new balance.
    ///
    /// # Errors
    /// [`StoreError::InsufficientCredits`] when the balance would go below zero (nothing is
    /// changed), [`StoreError::UserNotFound`], or database failures.
    pub async fn add_credits(&self, id: UserId, delta: i64) -> Result<i64, StoreError> {
        dispatch!(self.add_credits(id, delta))
    }

    /// Atomically takes one generation from the user's daily quota of `limit`, starting a new
    /// count when `today` differs from the stored day.
    ///
    /// # Errors
    /// [`StoreError::UserNotFound`], or database failures. A used-up quota is
    /// `Ok(DailyQuota::Exhausted)`, not an error.
    pub async fn consume_daily_generation(
        &self,
        id: UserId,
        today: NaiveDate,
        limit: u32,
    ) -> Result<DailyQuota, StoreError> {
        dispatch!(self.consume_daily_generation(id, today, limit))
    }

    /// Gives back one generation taken today (a job that failed through no fault of the user).
    /// Does nothing if the stored day is not `today` or the count is zero.
    ///
    /// # Errors
    /// Database failures.
    pub async fn release_daily_generation(
        &self,
        id: UserId,
        today: NaiveDate,
    ) -> Result<(), StoreError> {
        dispatch!(self.release_daily_generation(id, today))
    }

    /// Accepts a job: checks `QUEUE_MAX_LENGTH` over all queued jobs, takes one generation of
    /// the day's quota and the job's cost, and inserts the job with that charge, all in one
    /// transaction. A refusal changes nothing.
    ///
    /// # Errors
    /// [`StoreError::UserNotFound`], or database failures (nothing is charged then).
    pub async fn submit_job(&self, submission: Submission) -> Result<SubmitOutcome, StoreError> {
        dispatch!(self.submit_job(submission))
    }

    /// Claims the next queued job in fair order (round-robin across users, each under the
    /// per-user limit) for `spec.owner` under a lease, if fewer than `spec.max_running` jobs run
    /// on all replicas together.
    ///
    /// # Errors
    /// Database failures.
    pub async fn claim_next(&self, spec: ClaimSpec<'_>) -> Result<Claim, StoreError> {
        dispatch!(self.claim_next(spec))
    }

    /// Records, before the create request, that `owner` is about to create the job's
    /// prediction, renewing its lease; returns the intent's time.
    ///
    /// # Errors
    /// [`StoreError::LeaseLost`] when another replica took the job over,
    /// [`StoreError::InvalidTransition`] when it is no longer running or has a prediction.
    pub async fn record_intent(
        &self,
        id: JobId,
        owner: &str,
        lease: Duration,
    ) -> Result<DateTime<Utc>, StoreError> {
        dispatch!(self.record_intent(id, owner, lease))
    }

    /// Records the job's prediction id.
    ///
    /// # Errors
    /// As [`Store::record_intent`].
    pub async fn record_prediction(
        &self,
        id: JobId,
        owner: &str,
        prediction_id: &str,
    ) -> Result<Job, StoreError> {
        dispatch!(self.record_prediction(id, owner, prediction_id))
    }

    /// Ends a job: a running one owned by `owner` succeeds or fails, a queued one is canceled.
    /// A failure or cancellation gives back exactly the stored charge and the day's generation
    /// in the same transaction; a finished job never changes again.
    ///
    /// # Errors
    /// [`StoreError::InvalidTransition`] (already final, or not in the state the outcome
    /// needs), [`StoreError::LeaseLost`], [`StoreError::JobNotFound`], or database failures.
    pub async fn finish_job(
        &self,
        id: JobId,
        owner: &str,
        outcome: JobOutcome,
    ) -> Result<Finished, StoreError> {
        dispatch!(self.finish_job(id, owner, outcome))
    }

    /// Extends the leases of `jobs` that `owner` still holds and that still run; returns how
    /// many. Only jobs the owner is working on are named, so a job it dropped cannot be kept
    /// from take-over by its heartbeat.
    ///
    /// # Errors
    /// Database failures.
    pub async fn renew_leases(
        &self,
        owner: &str,
        jobs: &[JobId],
        lease: Duration,
    ) -> Result<u64, StoreError> {
        dispatch!(self.renew_leases(owner, jobs, lease))
    }

    /// Ends the leases `owner` holds now (graceful stop), so other replicas take its running
    /// jobs over at once.
    ///
    /// # Errors
    /// Database failures.
    pub async fn release_leases(&self, owner: &str) -> Result<u64, StoreError> {
        dispatch!(self.release_leases(owner))
    }

    /// Takes over up to `limit` running jobs whose lease expired (and, with `including_own`,
    /// those already carrying `owner`: a previous run of this replica), under a fresh lease.
    ///
    /// # Errors
    /// Database failures.
    pub async fn take_over(
        &self,
        owner: &str,
        lease: Duration,
        limit: u32,
        including_own: bool,
    ) -> Result<Vec<Job>, StoreError> {
        dispatch!(self.take_over(owner, lease, limit, including_own))
    }

    /// Up to `limit` queued jobs, oldest first, with their users' turns.
    ///
    /// # Errors
    /// Database failures.
    pub async fn queued_jobs(&self, limit: u32) -> Result<Vec<QueuedJob>, StoreError> {
        dispatch!(self.queued_jobs(limit))
    }

    /// The user's most recently queued job.
    ///
    /// # Errors
    /// Database failures.
    pub async fn latest_queued_of(&self, user: UserId) -> Result<Option<JobId>, StoreError> {
        dispatch!(self.latest_queued_of(user))
    }

    /// Whether some job already recorded this prediction id.
    ///
    /// # Errors
    /// Database failures.
    pub async fn prediction_recorded(&self, prediction_id: &str) -> Result<bool, StoreError> {
        dispatch!(self.prediction_recorded(prediction_id))
    }

    /// Each user in `ids` with their balance and what the ledger says it must be
    /// (initial + adjustments − charged + refunded + Stars purchases not refunded).
    ///
    /// # Errors
    /// Database failures.
    pub async fn credit_audit(&self, ids: Range<i64>) -> Result<Vec<CreditAudit>, StoreError> {
        dispatch!(self.credit_audit(ids))
    }

    /// Records a Stars payment and adds its credits in one transaction, once per charge id:
    /// a repeated `successful_payment` finds the row and adds nothing.
    ///
    /// # Errors
    /// [`StoreError::UserNotFound`] (register the payer first), or database failures (nothing
    /// is recorded then: the update is replayed and recorded later).
    pub async fn record_payment(
        &self,
        payment: NewStarPayment,
    ) -> Result<PaymentRecorded, StoreError> {
        dispatch!(self.record_payment(payment))
    }

    /// Takes a payment's credits back before Telegram is asked to refund it: refused
    /// ([`RefundStart::Spent`]) when the user no longer has them.
    ///
    /// # Errors
    /// Database failures (nothing is taken then).
    pub async fn start_refund(&self, charge_id: &str) -> Result<RefundStart, StoreError> {
        dispatch!(self.start_refund(charge_id))
    }

    /// Records Telegram's answer to a started refund: final, or undone (credits given back).
    /// `Ok(false)` when the payment was not `refunding` (another attempt finished it).
    ///
    /// # Errors
    /// Database failures.
    pub async fn finish_refund(
        &self,
        charge_id: &str,
        result: RefundResult,
    ) -> Result<bool, StoreError> {
        dispatch!(self.finish_refund(charge_id, result))
    }

    /// The payment with this charge id.
    ///
    /// # Errors
    /// Database failures.
    pub async fn payment(&self, charge_id: &str) -> Result<Option<StarPayment>, StoreError> {
        dispatch!(self.payment(charge_id))
    }

    /// The user's last `limit` payments, newest first (refunded ones too).
    ///
    /// # Errors
    /// Database failures.
    pub async fn payments_of(
        &self,
        user: UserId,
        limit: u32,
    ) -> Result<Vec<StarPayment>, StoreError> {
        dispatch!(self.payments_of(user, limit))
    }

    /// The user's last `limit` credit movements, newest first: purchases and their refunds,
    /// generation charges and their refunds.
    ///
    /// # Errors
    /// Database failures.
    pub async fn movements(&self, user: UserId, limit: u32) -> Result<Vec<Movement>, StoreError> {
        dispatch!(self.movements(user, limit))
    }

    /// Claims up to `limit` finished jobs not yet delivered whose turn has come, for `owner`
    /// under a lease of `lease` (with `including_own`, also those `owner` held before: a
    /// previous run of this replica).
    ///
    /// # Errors
    /// Database failures.
    pub async fn claim_deliveries(
        &self,
        owner: &str,
        lease: Duration,
        limit: u32,
        including_own: bool,
    ) -> Result<Vec<Delivery>, StoreError> {
        dispatch!(self.claim_deliveries(owner, lease, limit, including_own))
    }

    /// Extends the leases of the deliveries in `jobs` that `owner` is still sending.
    ///
    /// # Errors
    /// Database failures.
    pub async fn renew_delivery_leases(
        &self,
        owner: &str,
        jobs: &[JobId],
        lease: Duration,
    ) -> Result<u64, StoreError> {
        dispatch!(self.renew_delivery_leases(owner, jobs, lease))
    }

    /// Records how a delivery attempt of `owner` ended; `Ok(false)` when the delivery is no
    /// longer `owner`'s (its lease passed to another worker) or already recorded.
    ///
    /// # Errors
    /// Database failures.
    pub async fn finish_delivery(
        &self,
        job: JobId,
        owner: &str,
        outcome: DeliveryOutcome,
    ) -> Result<bool, StoreError> {
        dispatch!(self.finish_delivery(job, owner, outcome))
    }

    /// Records updates taken from Telegram (their JSON) before Telegram is told they arrived,
    /// in one transaction, and takes for `owner` those it may handle: the new ones of the chats
    /// it holds, and of its share of their free chats (claimed under `lease`: all of them on
    /// SQLite or when it is the only member, else as many as there are members, rounded up),
    /// with any older updates still waiting in those chats. The rest wait for the replicas
    /// holding their chats, or for a round ([`Store::take_updates`]).
    ///
    /// # Errors
    /// Database failures: the updates must then not be confirmed to Telegram.
    pub async fn record_updates(
        &self,
        owner: &str,
        updates: Vec<InboxUpdate>,
        lease: Duration,
    ) -> Result<Recorded, StoreError> {
        dispatch!(self.record_updates(owner, updates, lease))
    }

    /// Marks updates handled (they will not be replayed), and gives up `owner`'s claims on
    /// their chats where nothing more waits, so any replica may take their next updates.
    ///
    /// # Errors
    /// Database failures.
    pub async fn mark_updates_handled(&self, owner: &str, ids: &[i64]) -> Result<u64, StoreError> {
        dispatch!(self.mark_updates_handled(owner, ids))
    }

    /// The inbox's heartbeat: renews `owner`'s membership and its chat claims until `lease`
    /// from now, so while it lives no other replica takes its chats over, however long their
    /// handling waits; gives up claims on chats where nothing waits any more (the last update
    /// was set aside), and forgets claims lapsed a whole lease ago with nothing waiting.
    /// Returns how many claims were renewed.
    ///
    /// # Errors
    /// Database failures.
    pub async fn renew_chat_claims(&self, owner: &str, lease: Duration) -> Result<u64, StoreError> {
        dispatch!(self.renew_chat_claims(owner, lease))
    }

    /// A round: claims for `owner` (under `lease`) free chats with waiting updates, oldest
    /// first, and lapsed claims of replicas that are gone, then takes the updates it may
    /// handle, oldest first (see [`Unhandled`]). With [`Unhandled::AtStart`] it also joins the
    /// members sharing the work.
    ///
    /// # Errors
    /// Database failures.
    pub async fn take_updates(
        &self,
        owner: &str,
        which: Unhandled,
        lease: Duration,
    ) -> Result<Vec<InboxUpdate>, StoreError> {
        dispatch!(self.take_updates(owner, which, lease))
    }

    /// Gives up every chat claim of `owner` and its membership (a stop once its handlers are
    /// done): other replicas take what still waits at once.
    ///
    /// # Errors
    /// Database failures.
    pub async fn release_chat_claims(&self, owner: &str) -> Result<(), StoreError> {
        dispatch!(self.release_chat_claims(owner))
    }

    /// Counts an attempt at handling update `id` that panicked, or a replayed update's attempt
    /// about to start (had the process died during it, the next claim would see it), with its
    /// reason (never the update's text); returns the attempts so far, 0 when the update is not
    /// in the inbox.
    ///
    /// # Errors
    /// Database failures.
    pub async fn note_update_failure(&self, id: i64, error: &str) -> Result<u32, StoreError> {
        dispatch!(self.note_update_failure(id, error))
    }

    /// Sets update `id` aside as a dead letter (not replayed again), saying whether an operator
    /// had retried it ([`SetAside::AfterRetry`]: its sender was told when it was first set
    /// aside); [`SetAside::NotWaiting`] when it was handled or set aside already.
    ///
    /// # Errors
    /// Database failures.
    pub async fn dead_letter_update(&self, id: i64, error: &str) -> Result<SetAside, StoreError> {
        dispatch!(self.dead_letter_update(id, error))
    }

    /// The dead letters, newest first.
    ///
    /// # Errors
    /// Database failures.
    pub async fn dead_letters(&self, limit: u32) -> Result<Vec<DeadLetter>, StoreError> {
        dispatch!(self.dead_letters(limit))
    }

    /// How many updates are set aside.
    ///
    /// # Errors
    /// Database failures.
    pub async fn count_dead_letters(&self) -> Result<u64, StoreError> {
        dispatch!(self.count_dead_letters())
    }

    /// Gives dead letter `id` another chance: its attempts are set to `attempts` (the handler's
    /// limit less the tries it is given) and any replica takes it at its next round, as a
    /// replay (its try counted as it starts, never shed); it is marked as retried (received at the epoch, which no update from Telegram is), so that
    /// setting it aside again says [`SetAside::AfterRetry`]. `Ok(false)` when there is no
    /// such dead letter.
    ///
    /// # Errors
    /// Database failures.
    pub async fn retry_dead_letter(&self, id: i64, attempts: u32) -> Result<bool, StoreError> {
        dispatch!(self.retry_dead_letter(id, attempts))
    }

    /// Takes or renews the lease `name` for `owner` until `ttl` from now: `Ok(true)` when
    /// `owner` holds it (it was free, expired, or `owner`'s already), `Ok(false)` when another
    /// owner holds it.
    ///
    /// # Errors
    /// Database failures.
    pub async fn take_lease(
        &self,
        name: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        dispatch!(self.take_lease(name, owner, ttl))
    }

    /// Gives the lease `name` up, if `owner` holds it (another may take it at once).
    ///
    /// # Errors
    /// Database failures.
    pub async fn release_lease(&self, name: &str, owner: &str) -> Result<(), StoreError> {
        dispatch!(self.release_lease(name, owner))
    }

    /// Tries once to hold replica id `id` for this process's life: `None` when another live
    /// process holds it on this PostgreSQL database. On SQLite there is nothing to hold (one
    /// process per file is locked apart), so it always succeeds.
    ///
    /// # Errors
    /// Database failures.
    pub async fn hold_replica_id(&self, id: &str) -> Result<Option<ReplicaIdHold>, StoreError> {
        let mut claim = self.replica_id_claim(id);
        let taken = claim.try_take().await?;
        claim.close().await;
        Ok(taken)
    }

    /// A claim on replica id `id` for a start that waits for it: tried again and again on one
    /// connection of its own (see [`ReplicaIdClaim::try_take`]); SQLite's always succeeds.
    pub fn replica_id_claim(&self, id: &str) -> ReplicaIdClaim {
        match self {
            Store::Sqlite(_) => ReplicaIdClaim::sqlite(id),
            Store::Postgres(store) => store.replica_id_claim(id),
        }
    }

    /// Who holds the lease `name` now, if anyone.
    ///
    /// # Errors
    /// Database failures.
    pub async fn lease_holder(&self, name: &str) -> Result<Option<String>, StoreError> {
        Ok(self.lease(name).await?.map(|lease| lease.owner))
    }

    /// The lease `name` as it stands now (who holds it and until when), if anyone holds it.
    ///
    /// # Errors
    /// Database failures.
    pub async fn lease(&self, name: &str) -> Result<Option<Lease>, StoreError> {
        dispatch!(self.lease(name))
    }

    /// Records the final state of Replicate prediction `prediction` (`payload`, JSON) as a
    /// webhook brought it to a replica that does not run its job, for the replica that does
    /// ([`Store::take_prediction_outcomes`]). The first record of a prediction stays.
    ///
    /// # Errors
    /// Database failures.
    pub async fn record_prediction_outcome(
        &self,
        prediction: &str,
        payload: &str,
    ) -> Result<(), StoreError> {
        dispatch!(self.record_prediction_outcome(prediction, payload))
    }

    /// Takes (removes and returns the payloads of) the recorded outcomes of `predictions`.
    ///
    /// # Errors
    /// Database failures.
    pub async fn take_prediction_outcomes(
        &self,
        predictions: &[String],
    ) -> Result<Vec<String>, StoreError> {
        dispatch!(self.take_prediction_outcomes(predictions))
    }

    /// Forgets outcomes recorded more than `older_than` ago that nobody took (their job ended
    /// by its reconcile poll, or was taken over).
    ///
    /// # Errors
    /// Database failures.
    pub async fn prune_prediction_outcomes(&self, older_than: Duration) -> Result<u64, StoreError> {
        dispatch!(self.prune_prediction_outcomes(older_than))
    }

    /// Forgets updates handled more than `older_than` ago.
    ///
    /// # Errors
    /// Database failures.
    pub async fn prune_handled_updates(&self, older_than: Duration) -> Result<u64, StoreError> {
        dispatch!(self.prune_handled_updates(older_than))
    }

    /// The stored image of a succeeded job (kept a while after delivery), if its download
    /// succeeded.
    ///
    /// # Errors
    /// Database failures.
    pub async fn job_image(&self, job: JobId) -> Result<Option<JobImage>, StoreError> {
        dispatch!(self.job_image(job))
    }

    /// The user's delivered images with a `file_id`, newest first, older than `before` when
    /// given (paging).
    ///
    /// # Errors
    /// Database failures.
    pub async fn history(
        &self,
        user: UserId,
        before: Option<JobId>,
        limit: u32,
    ) -> Result<Vec<HistoryItem>, StoreError> {
        dispatch!(self.history(user, before, limit))
    }

    /// The `file_id` of the job's image sent as a document ("as file"), if it was sent so.
    ///
    /// # Errors
    /// Database failures.
    pub async fn job_document(&self, job: JobId) -> Result<Option<String>, StoreError> {
        dispatch!(self.job_document(job))
    }

    /// Keeps the `file_id` Telegram gave the job's image sent as a document (replacing one
    /// kept before), so the next "as file" sends it by id.
    ///
    /// # Errors
    /// Database failures; the job does not exist.
    pub async fn keep_job_document(&self, job: JobId, file_id: &str) -> Result<(), StoreError> {
        dispatch!(self.keep_job_document(job, file_id))
    }

    /// Forgets the original bytes of images delivered and stored more than `older_than` ago
    /// ("as file" is offered while they are kept).
    ///
    /// # Errors
    /// Database failures.
    pub async fn prune_job_images(&self, older_than: Duration) -> Result<u64, StoreError> {
        dispatch!(self.prune_job_images(older_than))
    }

    /// The user unblocked the bot: sends reach them again.
    ///
    /// # Errors
    /// Database failures.
    pub async fn mark_unblocked(&self, user: UserId) -> Result<(), StoreError> {
        dispatch!(self.mark_unblocked(user))
    }

    /// Marks the user as having blocked the bot (Telegram answered 403, or `my_chat_member`).
    ///
    /// # Errors
    /// Database failures.
    pub async fn mark_blocked(&self, user: UserId) -> Result<(), StoreError> {
        dispatch!(self.mark_blocked(user))
    }

    /// Finished jobs whose delivery is not recorded yet.
    ///
    /// # Errors
    /// Database failures.
    pub async fn undelivered(&self) -> Result<u64, StoreError> {
        Ok(self.outbox_backlog().await?.undelivered)
    }

    /// Undelivered results and the age of the oldest, for `/metrics`.
    ///
    /// # Errors
    /// Database failures.
    pub async fn outbox_backlog(&self) -> Result<OutboxBacklog, StoreError> {
        dispatch!(self.outbox_backlog())
    }

    /// Persists a job that can never run: status `canceled`, nothing charged. Load tests
    /// (the readiness suite's DB write test) measure inserts with it on a production database
    /// without leaving anything an engine would start.
    ///
    /// # Errors
    /// As [`Store::create_job`].
    pub async fn create_inert_job(&self, new: NewJob) -> Result<Job, StoreError> {
        dispatch!(self.insert_job(new, JobStatus::Canceled))
    }

    /// Persists a new job in status `queued`.
    ///
    /// # Errors
    /// [`StoreError::UserNotFound`] when the user is not registered, or database failures.
    pub async fn create_job(&self, new: NewJob) -> Result<Job, StoreError> {
        dispatch!(self.insert_job(new, JobStatus::Queued))
    }

    /// The job with this id.
    ///
    /// # Errors
    /// Database failures; a missing job is `Ok(None)`.
    pub async fn get_job(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        dispatch!(self.get_job(id))
    }

    /// Moves the oldest queued job to `running` and returns it; no two callers, in this process
    /// or another, ever receive the same job.
    ///
    /// # Errors
    /// Database failures.
    pub async fn claim_next_job(&self) -> Result<Option<Job>, StoreError> {
        dispatch!(self.claim_next_job())
    }

    /// Moves this job from `queued` to `running` and returns it; `None` when it is no longer
    /// queued (canceled, or claimed by another worker or replica).
    ///
    /// # Errors
    /// Database failures.
    pub async fn claim_job(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        dispatch!(self.claim_job(id))
    }

    /// Applies a state change to a job. Finished jobs never change again: a change to one is
    /// refused, so a late duplicate report cannot overwrite the first outcome.
    ///
    /// # Errors
    /// [`StoreError::InvalidTransition`] (e.g. succeeding a canceled job),
    /// [`StoreError::JobNotFound`], or database failures.
    pub async fn update_job(&self, id: JobId, update: JobUpdate) -> Result<Job, StoreError> {
        dispatch!(self.update_job(id, update))
    }

    /// Up to `limit` jobs in `status`, oldest first (restart recovery reads `running` ones).
    ///
    /// # Errors
    /// Database failures.
    pub async fn jobs_with_status(
        &self,
        status: JobStatus,
        limit: u32,
    ) -> Result<Vec<Job>, StoreError> {
        dispatch!(self.jobs_with_status(status, limit))
    }

    /// How many jobs are in each status.
    ///
    /// # Errors
    /// Database failures.
    pub async fn count_jobs_by_status(&self) -> Result<JobCounts, StoreError> {
        dispatch!(self.count_jobs_by_status())
    }

    /// Deletes the users whose id is in `ids`, and their jobs, in one transaction. The
    /// readiness suite uses it to remove its test users (ids from 1,000,000 up).
    ///
    /// # Errors
    /// Database failures; nothing is deleted then.
    pub async fn delete_users_in_range(&self, ids: Range<i64>) -> Result<Deleted, StoreError> {
        dispatch!(self.delete_users_in_range(ids))
    }
}
