//! The engine: accepts generation requests, keeps them in the durable queue and runs them
//! under the global semaphore, the per-user limit and the rate limiter.

mod dispatch;
mod recovery;

use std::sync::Arc;
use std::time::Duration;

use chrono::{Days, NaiveDate, Utc};
use genbot_cache::Users;
use genbot_config::Settings;
use genbot_store::{DailyQuota, JobId, JobUpdate, NewJob, Store, StoreError, UserId};
use parking_lot::Mutex;
use serde_json::{Map, Value};
use tokio::sync::{mpsc, Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::catalogue::Catalogue;
use crate::error::{CancelError, EngineError, SubmitError};
use crate::events::JobEvent;
use crate::replicate::ReplicateClient;
use crate::scheduler::Scheduler;
use crate::stats::{Counters, EngineStats};

/// The engine's limits, from the settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineConfig {
    /// `MAX_CONCURRENT_GENERATIONS`.
    pub max_concurrent: u32,
    /// `MAX_CONCURRENT_GENERATIONS_PER_USER`.
    pub per_user: u32,
    /// `DAILY_GENERATION_LIMIT`.
    pub daily_limit: u32,
    /// `QUEUE_MAX_LENGTH`.
    pub queue_max: u32,
    /// `GENERATION_TIMEOUT_SECONDS`.
    pub timeout: Duration,
    /// Longest prompt accepted, in characters.
    pub max_prompt_chars: usize,
}

impl EngineConfig {
    /// Longest prompt accepted by default (Replicate's image models take far longer ones, but a
    /// chat message of more than this is almost always a mistake).
    pub const DEFAULT_MAX_PROMPT_CHARS: usize = 1000;

    pub fn from_settings(settings: &Settings) -> Self {
        EngineConfig {
            max_concurrent: settings.max_concurrent_generations,
            per_user: settings.max_concurrent_generations_per_user,
            daily_limit: settings.daily_generation_limit,
            queue_max: settings.queue_max_length,
            timeout: settings.generation_timeout,
            max_prompt_chars: Self::DEFAULT_MAX_PROMPT_CHARS,
        }
    }
}

/// A generation to run for a user.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationRequest {
    pub user: UserId,
    pub prompt: String,
    /// `None`: the user's selected model, or the default one.
    pub model: Option<String>,
    /// Overrides of the model's default inputs.
    pub params: Map<String, Value>,
}

/// A job accepted into the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Submitted {
    pub job: JobId,
    /// 1-based place in the queue when accepted.
    pub position: usize,
}

/// The generation engine. Cheap to clone; clones share everything. Dropping every clone does
/// not stop it: call [`Engine::shutdown`].
#[derive(Debug, Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    users: Users,
    catalogue: Catalogue,
    client: ReplicateClient,
    config: EngineConfig,
    scheduler: Mutex<Scheduler>,
    /// One permit per generation allowed to run; a job's task owns its permit until it ends.
    permits: Arc<Semaphore>,
    /// Wakes the dispatcher when a job is queued or a user's running job ends.
    wake: Notify,
    counters: Counters,
    events: Option<mpsc::UnboundedSender<JobEvent>>,
    /// Cancelled by `shutdown`: the dispatcher and every job task stop at their next step,
    /// leaving jobs in the database as they are for the next start to pick up.
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl Engine {
    /// Starts the engine: recovers jobs left by a previous run (resuming running predictions,
    /// re-queuing jobs that had none), loads the queue and starts dispatching. Events go to
    /// `events` if given.
    ///
    /// # Errors
    /// The recovery queries fail.
    pub async fn start(
        users: Users,
        catalogue: Catalogue,
        client: ReplicateClient,
        config: EngineConfig,
        events: Option<mpsc::UnboundedSender<JobEvent>>,
    ) -> Result<Engine, EngineError> {
        let engine = Engine {
            inner: Arc::new(Inner {
                users,
                catalogue,
                client,
                scheduler: Mutex::new(Scheduler::new(config.per_user)),
                permits: Arc::new(Semaphore::new(config.max_concurrent.max(1) as usize)),
                config,
                wake: Notify::new(),
                counters: Counters::default(),
                events,
                shutdown: CancellationToken::new(),
                tasks: TaskTracker::new(),
            }),
        };
        recovery::recover(&engine).await?;
        let dispatcher = engine.clone();
        engine
            .inner
            .tasks
            .spawn(async move { dispatcher.dispatch().await });
        Ok(engine)
    }

    /// The users (through the cache) the engine charges and limits.
    pub fn users(&self) -> &Users {
        &self.inner.users
    }

    /// The store behind the users.
    pub fn store(&self) -> &Store {
        self.inner.users.store()
    }

    pub fn catalogue(&self) -> &Catalogue {
        &self.inner.catalogue
    }

    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// Validates, charges and queues a generation.
    ///
    /// Order matters for "nothing is charged on refusal": cheap checks first, then the daily
    /// quota and the credits (each undone if a later step fails), then the job row.
    ///
    /// # Errors
    /// A [`SubmitError`] saying what to tell the user; nothing is charged or queued then.
    #[tracing::instrument(skip_all, fields(user_id = request.user.0))]
    pub async fn submit(&self, request: GenerationRequest) -> Result<Submitted, SubmitError> {
        let result = self.try_submit(request).await;
        let counter = match result {
            Ok(_) => &self.inner.counters.submitted,
            Err(_) => &self.inner.counters.rejected,
        };
        Counters::bump(counter);
        result
    }

    async fn try_submit(&self, request: GenerationRequest) -> Result<Submitted, SubmitError> {
        let inner = &self.inner;
        if inner.shutdown.is_cancelled() {
            return Err(SubmitError::ShuttingDown);
        }
        let prompt = request.prompt.trim();
        if prompt.is_empty() {
            return Err(SubmitError::EmptyPrompt);
        }
        let chars = prompt.chars().count();
        if chars > inner.config.max_prompt_chars {
            return Err(SubmitError::PromptTooLong {
                chars,
                max: inner.config.max_prompt_chars,
            });
        }
        let user = inner
            .users
            .get(request.user)
            .await?
            .ok_or(SubmitError::NotRegistered)?;
        if user.banned {
            return Err(SubmitError::Banned);
        }
        let model_id = request
            .model
            .or(user.selected_model.clone())
            .unwrap_or_else(|| inner.catalogue.default_model().id.clone());
        let model = inner
            .catalogue
            .get(&model_id)
            .ok_or_else(|| SubmitError::UnknownModel(model_id.clone()))?;
        if !model.enabled {
            return Err(SubmitError::ModelDisabled(model_id));
        }
        let input = model.input(prompt, &request.params)?;
        if inner.scheduler.lock().queued() >= inner.config.queue_max as usize {
            return Err(SubmitError::QueueFull {
                max: inner.config.queue_max,
            });
        }

        let today = Utc::now().date_naive();
        match inner
            .users
            .consume_daily_generation(user.id, today, inner.config.daily_limit)
            .await?
        {
            DailyQuota::Granted { .. } => {}
            DailyQuota::Exhausted { limit } => {
                return Err(SubmitError::DailyLimit {
                    limit,
                    resets_at: next_midnight(today),
                })
            }
        }
        if model.cost > 0 {
            if let Err(e) = inner.users.add_credits(user.id, -model.cost).await {
                self.release_quota(user.id, today).await;
                return Err(match e {
                    StoreError::InsufficientCredits { balance, .. } => SubmitError::NoCredits {
                        balance,
                        cost: model.cost,
                    },
                    other => other.into(),
                });
            }
        }
        let job = match inner
            .users
            .store()
            .create_job(NewJob {
                user_id: user.id,
                model: model.id.clone(),
                prompt: prompt.to_owned(),
                params: input,
            })
            .await
        {
            Ok(job) => job,
            Err(e) => {
                self.refund(user.id, model.cost, today).await;
                return Err(e.into());
            }
        };
        let position = {
            let mut scheduler = inner.scheduler.lock();
            scheduler.push(user.id, job.id);
            scheduler.position(user.id, job.id).unwrap_or(1)
        };
        inner.wake.notify_one();
        tracing::debug!(job_id = job.id.0, position, "job queued");
        Ok(Submitted {
            job: job.id,
            position,
        })
    }

    /// Cancels the user's most recently queued job and gives back what it cost.
    ///
    /// # Errors
    /// [`CancelError::NothingQueued`] when the user has no queued job;
    /// [`CancelError::AlreadyStarted`] when it started meanwhile.
    pub async fn cancel_latest(&self, user: UserId) -> Result<JobId, CancelError> {
        let job = self
            .inner
            .scheduler
            .lock()
            .latest_of(user)
            .ok_or(CancelError::NothingQueued)?;
        self.cancel(user, job).await.map(|()| job)
    }

    /// Cancels a queued job of `user` and gives back what it cost.
    ///
    /// # Errors
    /// As [`Engine::cancel_latest`].
    pub async fn cancel(&self, user: UserId, job: JobId) -> Result<(), CancelError> {
        if !self.inner.scheduler.lock().remove(user, job) {
            return Err(CancelError::AlreadyStarted(job));
        }
        let canceled = match self.store().update_job(job, JobUpdate::Canceled).await {
            Ok(canceled) => canceled,
            Err(StoreError::InvalidTransition { .. }) => {
                return Err(CancelError::AlreadyStarted(job))
            }
            Err(e) => {
                // Not canceled after all: put it back so it still runs.
                self.inner.scheduler.lock().push(user, job);
                return Err(e.into());
            }
        };
        Counters::bump(&self.inner.counters.canceled);
        let cost = self
            .inner
            .catalogue
            .get(&canceled.model)
            .map_or(0, |m| m.cost);
        self.refund(user, cost, canceled.created_at.date_naive())
            .await;
        Ok(())
    }

    /// The job's current 1-based place in the queue; `None` once it left the queue.
    pub fn queue_position(&self, user: UserId, job: JobId) -> Option<usize> {
        self.inner.scheduler.lock().position(user, job)
    }

    /// Every queued job's current place, computed in one pass (for refreshing many position
    /// messages at once).
    pub fn queue_positions(&self) -> std::collections::HashMap<JobId, usize> {
        self.inner.scheduler.lock().positions()
    }

    /// Jobs of `user` running now.
    pub fn running_of(&self, user: UserId) -> u32 {
        self.inner.scheduler.lock().running_of(user)
    }

    /// The engine's counters now.
    pub fn stats(&self) -> EngineStats {
        let inner = &self.inner;
        EngineStats {
            limit: inner.config.max_concurrent,
            per_user_limit: inner.config.per_user,
            queue_length: inner.scheduler.lock().queued() as u64,
            limiter: inner.client.limiter().map(|l| l.stats()),
            ..inner.counters.snapshot()
        }
    }

    /// Stops dispatching and stops every job task at its next step. Queued and running jobs
    /// stay in the database as they are; the next [`Engine::start`] on it picks them up.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }

    /// Gives back credits and a daily generation after a job did not run to success.
    async fn refund(&self, user: UserId, cost: i64, day: NaiveDate) {
        if cost > 0 {
            if let Err(e) = self.inner.users.add_credits(user, cost).await {
                tracing::error!(user_id = user.0, cost, error = %e, "credit refund failed");
            }
        }
        self.release_quota(user, day).await;
    }

    async fn release_quota(&self, user: UserId, day: NaiveDate) {
        if let Err(e) = self.inner.users.release_daily_generation(user, day).await {
            tracing::error!(user_id = user.0, error = %e, "daily quota release failed");
        }
    }

    fn emit(&self, event: JobEvent) {
        if let Some(events) = &self.inner.events {
            // A closed receiver means the front end is gone; jobs still complete in the store.
            let _ = events.send(event);
        }
    }
}

/// When the daily quota of `today` (UTC) resets.
fn next_midnight(today: NaiveDate) -> chrono::DateTime<Utc> {
    today
        .checked_add_days(Days::new(1))
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map_or_else(Utc::now, |d| d.and_utc())
}
