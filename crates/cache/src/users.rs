//! The read-through user cache in front of the store.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use genbot_store::{
    DailyQuota, Finished, JobId, JobOutcome, NewStarPayment, NewUser, PaymentRecorded,
    RefundResult, RefundStart, Store, StoreError, Submission, SubmitOutcome, User, UserId,
};

use crate::burst_log::BurstLog;
use crate::{CacheStats, CacheStatsSnapshot, UserCache};

/// Users, read through the cache and written to the database. The only way the bot reads or
/// changes a user, so cached copies never outlive a change made through it. Clones share the
/// cache and the counters.
///
/// A read racing a write can put the pre-write copy back after the write's invalidation; that
/// copy lives at most `CACHE_TTL_SECONDS`. Values that must be exact (credits, daily quota) are
/// checked by the database in the write itself, never from the cached copy.
#[derive(Debug, Clone)]
pub struct Users {
    store: Store,
    cache: UserCache,
    stats: Arc<CacheStats>,
    errors: Arc<BurstLog>,
}

impl Users {
    /// Puts `cache` in front of `store`.
    pub fn new(store: Store, cache: UserCache) -> Self {
        Users {
            store,
            cache,
            stats: Arc::new(CacheStats::default()),
            errors: Arc::new(BurstLog::new("user cache", Duration::from_secs(10))),
        }
    }

    /// The store behind the cache.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The cache in front of the store.
    pub fn cache(&self) -> &UserCache {
        &self.cache
    }

    /// Hits, misses, errors and mean latencies so far.
    pub fn stats(&self) -> CacheStatsSnapshot {
        self.stats.snapshot()
    }

    /// The user, from the cache if fresh there, else from the database (then cached).
    ///
    /// # Errors
    /// Database failures only; cache failures fall back to the database.
    pub async fn get(&self, id: UserId) -> Result<Option<User>, StoreError> {
        let started = Instant::now();
        match self.cache.get(id).await {
            Ok(Some(user)) => {
                self.errors.success();
                self.stats.hit(started.elapsed());
                return Ok(Some(user));
            }
            Ok(None) => self.errors.success(),
            Err(e) => self.cache_failed(&e),
        }
        let user = self.store.get_user(id).await?;
        if let Some(user) = &user {
            self.fill(user).await;
        }
        self.stats.miss(started.elapsed());
        Ok(user)
    }

    /// Registers or refreshes a user; see [`Store::upsert_user`].
    ///
    /// # Errors
    /// Database failures.
    pub async fn upsert(&self, new: NewUser) -> Result<User, StoreError> {
        let id = new.id;
        let user = self.store.upsert_user(new).await?;
        self.invalidate(id).await;
        Ok(user)
    }

    /// Registers a user seen for the first time, or stores a known user's new username or
    /// language; a user stored as they are now is returned as stored, without a write.
    /// The stored copy is read from the database, not the cache, so what callers show or check
    /// (the credits in `/start`'s welcome, a ban at checkout) is exact. Most calls find the
    /// user unchanged (a repeated `/start`, a checkout): the read costs far less than the write
    /// it saves through the single SQLite writer, and the cached copy stays (an upsert drops it).
    ///
    /// # Errors
    /// Database failures.
    pub async fn register(&self, new: NewUser) -> Result<User, StoreError> {
        match self.store.get_user(new.id).await? {
            Some(stored) if stored.username == new.username && stored.language == new.language => {
                Ok(stored)
            }
            _ => self.upsert(new).await,
        }
    }

    /// Stores the user's model choice; see [`Store::set_selected_model`].
    ///
    /// # Errors
    /// As the store's.
    pub async fn set_selected_model(
        &self,
        id: UserId,
        model: Option<String>,
    ) -> Result<User, StoreError> {
        let user = self.store.set_selected_model(id, model).await?;
        self.invalidate(id).await;
        Ok(user)
    }

    /// Bans or unbans the user; see [`Store::set_banned`].
    ///
    /// # Errors
    /// As the store's.
    pub async fn set_banned(&self, id: UserId, banned: bool) -> Result<User, StoreError> {
        let user = self.store.set_banned(id, banned).await?;
        self.invalidate(id).await;
        Ok(user)
    }

    /// Replaces the inputs the user set for `model`; see [`Store::set_model_settings`].
    ///
    /// # Errors
    /// As the store's.
    pub async fn set_model_settings(
        &self,
        id: UserId,
        model: String,
        settings: serde_json::Map<String, serde_json::Value>,
    ) -> Result<User, StoreError> {
        let user = self.store.set_model_settings(id, model, settings).await?;
        self.invalidate(id).await;
        Ok(user)
    }

    /// Sets or removes one of the user's inputs for a model; see [`Store::set_model_setting`].
    ///
    /// # Errors
    /// As the store's.
    pub async fn set_model_setting(
        &self,
        id: UserId,
        model: String,
        name: String,
        value: Option<serde_json::Value>,
    ) -> Result<User, StoreError> {
        let user = self.store.set_model_setting(id, model, name, value).await?;
        self.invalidate(id).await;
        Ok(user)
    }

    /// Changes the user's credits; see [`Store::add_credits`].
    ///
    /// # Errors
    /// As the store's.
    pub async fn add_credits(&self, id: UserId, delta: i64) -> Result<i64, StoreError> {
        let balance = self.store.add_credits(id, delta).await?;
        self.invalidate(id).await;
        Ok(balance)
    }

    /// Takes one generation from today's quota; see [`Store::consume_daily_generation`].
    ///
    /// # Errors
    /// As the store's.
    pub async fn consume_daily_generation(
        &self,
        id: UserId,
        today: NaiveDate,
        limit: u32,
    ) -> Result<DailyQuota, StoreError> {
        let quota = self
            .store
            .consume_daily_generation(id, today, limit)
            .await?;
        if matches!(quota, DailyQuota::Granted { .. }) {
            self.invalidate(id).await;
        }
        Ok(quota)
    }

    /// Gives back one generation taken today; see [`Store::release_daily_generation`].
    ///
    /// # Errors
    /// As the store's.
    pub async fn release_daily_generation(
        &self,
        id: UserId,
        today: NaiveDate,
    ) -> Result<(), StoreError> {
        self.store.release_daily_generation(id, today).await?;
        self.invalidate(id).await;
        Ok(())
    }

    /// Accepts a job, charging the user in the same transaction; see [`Store::submit_job`].
    ///
    /// # Errors
    /// As the store's.
    pub async fn submit_job(&self, submission: Submission) -> Result<SubmitOutcome, StoreError> {
        let id = submission.job.user_id;
        let outcome = self.store.submit_job(submission).await?;
        if matches!(outcome, SubmitOutcome::Queued { .. }) {
            self.invalidate(id).await;
        }
        Ok(outcome)
    }

    /// Ends a job, refunding in the same transaction when it did not succeed; see
    /// [`Store::finish_job`].
    ///
    /// # Errors
    /// As the store's.
    pub async fn finish_job(
        &self,
        job: JobId,
        owner: &str,
        outcome: JobOutcome,
    ) -> Result<Finished, StoreError> {
        let finished = self.store.finish_job(job, owner, outcome).await?;
        if finished.refunded != 0 || finished.job.quota_day.is_some() {
            self.invalidate(finished.job.user_id).await;
        }
        Ok(finished)
    }

    /// Records a Stars payment and its credits once per charge id; see
    /// [`Store::record_payment`].
    ///
    /// # Errors
    /// As the store's.
    pub async fn record_payment(
        &self,
        payment: NewStarPayment,
    ) -> Result<PaymentRecorded, StoreError> {
        let id = payment.user;
        let recorded = self.store.record_payment(payment).await?;
        if matches!(recorded, PaymentRecorded::Credited { .. }) {
            self.invalidate(id).await;
        }
        Ok(recorded)
    }

    /// Takes a payment's credits back before its refund; see [`Store::start_refund`].
    ///
    /// # Errors
    /// As the store's.
    pub async fn start_refund(&self, charge_id: &str) -> Result<RefundStart, StoreError> {
        let started = self.store.start_refund(charge_id).await?;
        if let RefundStart::Started(payment) = &started {
            self.invalidate(payment.user).await;
        }
        Ok(started)
    }

    /// Records Telegram's answer to a refund of `user`'s payment; see [`Store::finish_refund`].
    ///
    /// # Errors
    /// As the store's.
    pub async fn finish_refund(
        &self,
        user: UserId,
        charge_id: &str,
        result: RefundResult,
    ) -> Result<bool, StoreError> {
        let changed = self.store.finish_refund(charge_id, result).await?;
        if changed && result == RefundResult::Refused {
            self.invalidate(user).await;
        }
        Ok(changed)
    }

    async fn fill(&self, user: &User) {
        if let Err(e) = self.cache.put(user).await {
            self.cache_failed(&e);
        }
    }

    async fn invalidate(&self, id: UserId) {
        if let Err(e) = self.cache.invalidate(id).await {
            self.cache_failed(&e);
        }
    }

    fn cache_failed(&self, error: &crate::CacheError) {
        self.stats.error();
        self.errors.error(error);
    }
}
