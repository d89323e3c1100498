//! The engine: accepts generation requests into the durable queue shared by every replica and
//! runs each job exactly once: claimed under a lease, its prediction created at most once, its
//! outcome and refund committed together.

mod dispatch;
mod generate;
mod leases;
mod relay;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{Days, NaiveDate, Utc};
use genbot_cache::Users;
use genbot_config::Settings;
use genbot_store::{
    JobId, JobOutcome, NewJob, Store, StoreError, Submission, SubmitOutcome, UserId,
};
use parking_lot::Mutex;
use serde_json::{Map, Value};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::catalogue::Catalogue;
use crate::error::{CancelError, EngineError, SubmitError};
use crate::events::JobEvent;
use crate::replicate::ReplicateClient;
use crate::stats::{Counters, EngineStats};

/// Who this process is among the replicas, and how long its claims hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaConfig {
    /// `REPLICA_ID`: unique among live replicas. Running jobs carry it; a process starting with
    /// the id of a dead one takes that one's running jobs over at once.
    pub id: String,
    /// `JOB_LEASE_SECONDS`: a running job whose owner has not renewed its lease for this long is
    /// taken over by another replica.
    pub lease: Duration,
    /// `JOB_HEARTBEAT_SECONDS`: how often leases are renewed and expired ones looked for.
    pub heartbeat: Duration,
}

impl ReplicaConfig {
    /// One process alone on its database (SQLite, tests): a fixed id, so a restart takes its
    /// own running jobs over at once, and the default lease.
    pub fn single_process() -> Self {
        ReplicaConfig {
            id: "local".into(),
            lease: Duration::from_secs(30),
            heartbeat: Duration::from_secs(10),
        }
    }
}

/// The engine's limits, from the settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    /// `MAX_CONCURRENT_GENERATIONS`, over every replica together.
    pub max_concurrent: u32,
    /// `MAX_CONCURRENT_GENERATIONS_PER_USER`, over every replica together.
    pub per_user: u32,
    /// `DAILY_GENERATION_LIMIT`.
    pub daily_limit: u32,
    /// `QUEUE_MAX_LENGTH`, over every replica together.
    pub queue_max: u32,
    /// `GENERATION_TIMEOUT_SECONDS`.
    pub timeout: Duration,
    /// Longest prompt accepted, in characters.
    pub max_prompt_chars: usize,
    /// This replica and its leases.
    pub replica: ReplicaConfig,
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
            replica: ReplicaConfig {
                id: settings.replica_id.clone(),
                lease: settings.job_lease,
                heartbeat: settings.job_heartbeat,
            },
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
    /// The Telegram update that asked for it: the same update submitted again (replayed after
    /// a crash) finds its job instead of charging twice.
    pub source_update: Option<i64>,
    /// Where the result goes when not to the user's private chat (a group, as a reply).
    pub reply: Option<genbot_store::ReplyTarget>,
}

/// A job accepted into the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    pub job: JobId,
    /// 1-based place in the queue when accepted: the jobs queued ahead in the fair order, and
    /// the jobs this process claimed that wait to be created at Replicate (the rate limiter's
    /// line), which all start first.
    pub position: usize,
    /// The user's chosen model, when the catalogue no longer holds it: the job runs on the
    /// default model instead, and the choice was undone (the user is told once).
    pub instead_of_removed: Option<String>,
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
    /// Jobs this process is running now (their leases are the ones the heartbeat renews).
    running: Mutex<HashSet<JobId>>,
    /// Wakes the dispatcher when a job is queued here or a job of this process ends.
    wake: Notify,
    /// Queued jobs of every replica, as last counted.
    queue_length: AtomicU64,
    /// Jobs this process claimed whose prediction is not created yet: under load they wait
    /// in the Replicate rate limiter's line (about `MAX_CONCURRENT_GENERATIONS` of them), and
    /// every one of them starts before any job still queued, so positions count them.
    awaiting_create: AtomicU64,
    counters: Counters,
    events: Option<mpsc::UnboundedSender<JobEvent>>,
    /// Cancelled by `shutdown`: the dispatcher and every job task stop at their next step,
    /// leaving jobs in the database for another replica or the next start.
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl Engine {
    /// Starts the engine: takes over running jobs whose lease expired (and those a previous
    /// run of this replica id left), then dispatches from the shared queue and keeps its
    /// leases alive. Events go to `events` if given.
    ///
    /// # Errors
    /// The take-over queries fail.
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
                config,
                running: Mutex::new(HashSet::new()),
                wake: Notify::new(),
                queue_length: AtomicU64::new(0),
                awaiting_create: AtomicU64::new(0),
                counters: Counters::default(),
                events,
                shutdown: CancellationToken::new(),
                tasks: TaskTracker::new(),
            }),
        };
        engine.take_over(true).await?;
        engine.refresh_queue_length().await;
        let dispatcher = engine.clone();
        engine
            .inner
            .tasks
            .spawn(async move { dispatcher.dispatch().await });
        let keeper = engine.clone();
        engine
            .inner
            .tasks
            .spawn(async move { keeper.keep_leases().await });
        if engine.inner.client.webhooks().is_some() {
            let relay = engine.clone();
            engine
                .inner
                .tasks
                .spawn(async move { relay.relay_outcomes().await });
        }
        Ok(engine)
    }

    /// This replica's id.
    pub fn replica_id(&self) -> &str {
        &self.inner.config.replica.id
    }

    /// The users (through the cache) the engine charges and limits.
    pub fn users(&self) -> &Users {
        &self.inner.users
    }

    /// The store behind the users.
    pub fn store(&self) -> &Store {
        self.inner.users.store()
    }

    /// Replicate's webhook settings, when predictions report their end by webhook.
    pub fn replicate_webhooks(&self) -> Option<&crate::replicate::WebhookSettings> {
        self.inner.client.webhooks()
    }

    /// Replicate webhooks received so far.
    pub fn replicate_webhook_stats(&self) -> crate::replicate::WebhookStats {
        self.inner.client.webhook_stats()
    }

    /// Fetches a prediction's output image (for a delivery whose bytes were not stored).
    ///
    /// # Errors
    /// As [`crate::replicate::output::download`].
    pub async fn download_output(
        &self,
        url: &str,
    ) -> Result<crate::replicate::output::OutputImage, crate::replicate::output::DownloadError>
    {
        self.inner.client.download_output(url).await
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
        let prompt = without_hidden_controls(&request.prompt);
        let prompt = prompt.trim();
        if says_nothing(prompt) {
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
        let default_model = || inner.catalogue.default_model().id.clone();
        // A choice the catalogue no longer holds (the operator removed the model) would refuse
        // every prompt: the job runs on the default model, and the choice is undone once the
        // job is in (a replay of this update then finds its job; nothing is decided twice).
        let mut instead_of_removed = None;
        let model_id = match (request.model, &user.selected_model) {
            (Some(asked), _) => asked,
            (None, Some(chosen)) if inner.catalogue.get(chosen).is_none() => {
                instead_of_removed = Some(chosen.clone());
                default_model()
            }
            (None, Some(chosen)) => chosen.clone(),
            (None, None) => default_model(),
        };
        let model = inner
            .catalogue
            .get(&model_id)
            .ok_or_else(|| SubmitError::UnknownModel(model_id.clone()))?;
        if !model.enabled {
            return Err(SubmitError::ModelDisabled(model_id));
        }
        // Options written into the prompt (`--ar 16:9`) win over those the request carries.
        let inline = crate::catalogue::inline::parse(model, prompt)?;
        let prompt = inline.prompt.as_str();
        if says_nothing(prompt) {
            return Err(SubmitError::EmptyPrompt);
        }
        // The user's /settings first (those the catalogue no longer allows are dropped), then
        // the request's own inputs, then the prompt's.
        let mut params: Map<String, Value> = user
            .settings_for(&model.id)
            .into_iter()
            .filter(|(name, value)| {
                model
                    .params
                    .get(name)
                    .is_some_and(|spec| spec.check(name, value).is_ok())
            })
            .collect();
        params.extend(request.params);
        params.extend(inline.params);
        let input = model.input(prompt, &params)?;
        let today = Utc::now().date_naive();
        let outcome = inner
            .users
            .submit_job(Submission {
                job: NewJob {
                    user_id: user.id,
                    model: model.id.clone(),
                    prompt: prompt.to_owned(),
                    params: input,
                },
                cost: model.cost.max(0),
                quota_day: today,
                daily_limit: inner.config.daily_limit,
                queue_max: inner.config.queue_max,
                source_update: request.source_update,
                reply: request.reply,
            })
            .await?;
        match outcome {
            SubmitOutcome::Queued { job, position } => {
                inner.queue_length.fetch_add(1, Ordering::Relaxed);
                inner.wake.notify_one();
                tracing::debug!(job_id = job.id.0, position, "job queued");
                if instead_of_removed.is_some() {
                    // Failing costs one more note at the next prompt.
                    if let Err(e) = inner.users.set_selected_model(user.id, None).await {
                        tracing::warn!(error = %e, "could not undo a removed model's choice");
                    }
                }
                Ok(Submitted {
                    job: job.id,
                    position: usize::try_from(position)
                        .unwrap_or(usize::MAX)
                        .saturating_add(self.awaiting_create()),
                    instead_of_removed,
                })
            }
            SubmitOutcome::QueueFull { max } => Err(SubmitError::QueueFull { max }),
            SubmitOutcome::DailyLimit { limit } => Err(SubmitError::DailyLimit {
                limit,
                resets_at: next_midnight(today),
            }),
            SubmitOutcome::NoCredits { balance, cost } => {
                Err(SubmitError::NoCredits { balance, cost })
            }
            SubmitOutcome::Banned => Err(SubmitError::Banned),
            SubmitOutcome::AlreadySubmitted { job } => Err(SubmitError::AlreadySubmitted(job.id)),
        }
    }

    /// Cancels the user's most recently queued job and gives back exactly what it cost.
    ///
    /// # Errors
    /// [`CancelError::NothingQueued`] when the user has no queued job;
    /// [`CancelError::AlreadyStarted`] when it started meanwhile.
    pub async fn cancel_latest(&self, user: UserId) -> Result<JobId, CancelError> {
        let job = self
            .store()
            .latest_queued_of(user)
            .await?
            .ok_or(CancelError::NothingQueued)?;
        self.cancel(user, job).await.map(|()| job)
    }

    /// Cancels a queued job of `user`; the refund commits with the cancellation.
    ///
    /// # Errors
    /// As [`Engine::cancel_latest`].
    pub async fn cancel(&self, user: UserId, job: JobId) -> Result<(), CancelError> {
        match self.store().get_job(job).await? {
            Some(found) if found.user_id == user => {}
            _ => return Err(CancelError::NothingQueued),
        }
        match self
            .inner
            .users
            .finish_job(job, self.replica_id(), JobOutcome::Canceled)
            .await
        {
            Ok(_) => {
                Counters::bump(&self.inner.counters.canceled);
                let _ = self.inner.queue_length.fetch_update(
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                    |n| n.checked_sub(1),
                );
                Ok(())
            }
            Err(StoreError::InvalidTransition { .. }) => Err(CancelError::AlreadyStarted(job)),
            Err(e) => Err(e.into()),
        }
    }

    /// Every queued job's current place in the fair order (all replicas' jobs), behind the
    /// jobs waiting to be created (see [`Engine::submit`]'s position), computed in one pass,
    /// for refreshing many position messages at once.
    ///
    /// # Errors
    /// Database failures.
    pub async fn queue_positions(&self) -> Result<HashMap<JobId, usize>, StoreError> {
        let queued = self.store().queued_jobs(POSITIONS_LIMIT).await?;
        self.inner
            .queue_length
            .store(queued.len() as u64, Ordering::Relaxed);
        let ahead = self.awaiting_create();
        let mut positions = crate::fair::positions(&queued);
        for position in positions.values_mut() {
            *position = position.saturating_add(ahead);
        }
        Ok(positions)
    }

    /// Jobs this process has claimed whose prediction is not created yet (waiting for the
    /// Replicate rate limiter, most of them under load). With several replicas each counts
    /// its own: a position is then short by the other replicas' waiters.
    fn awaiting_create(&self) -> usize {
        usize::try_from(self.inner.awaiting_create.load(Ordering::Relaxed)).unwrap_or(usize::MAX)
    }

    /// Queued jobs of every replica, counted now.
    ///
    /// # Errors
    /// Database failures.
    pub async fn queue_length(&self) -> Result<u64, StoreError> {
        let counts = self.store().count_jobs_by_status().await?;
        self.inner
            .queue_length
            .store(counts.queued, Ordering::Relaxed);
        Ok(counts.queued)
    }

    /// The engine's counters now (`queue_length` as last counted, at most a heartbeat old).
    pub fn stats(&self) -> EngineStats {
        let inner = &self.inner;
        EngineStats {
            limit: inner.config.max_concurrent,
            per_user_limit: inner.config.per_user,
            queue_length: inner.queue_length.load(Ordering::Relaxed),
            limiter: inner.client.limiter().map(|l| l.stats()),
            queue_max: inner.config.queue_max,
            replicate_throttled: inner.client.throttled(),
            ..inner.counters.snapshot()
        }
    }

    /// Stops dispatching and stops every job task at its next step, then ends this replica's
    /// leases so another replica (or the next start) takes its running jobs over at once.
    /// Queued and running jobs stay in the database as they are.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
        if let Err(e) = self.store().release_leases(self.replica_id()).await {
            tracing::warn!(error = %e, "could not release leases; they expire on their own");
        }
    }

    async fn refresh_queue_length(&self) {
        if let Err(e) = self.queue_length().await {
            tracing::debug!(error = %e, "counting the queue failed");
        }
    }

    fn emit(&self, event: JobEvent) {
        if let Some(events) = &self.inner.events {
            // A closed receiver means the front end is gone; jobs still complete in the store.
            let _ = events.send(event);
        }
    }
}

/// Most queued jobs read for position messages.
const POSITIONS_LIMIT: u32 = 100_000;

/// When the daily quota of `today` (UTC) resets.
fn next_midnight(today: NaiveDate) -> chrono::DateTime<Utc> {
    today
        .checked_add_days(Days::new(1))
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map_or_else(Utc::now, |d| d.and_utc())
}

/// Whether a user may not store `c` in a prompt: NUL (PostgreSQL's text refuses it, and no
/// model draws it) and the bidirectional embeddings, overrides and isolates (U+202A–U+202E,
/// U+2066–U+2069), which would make the prompt display as something else wherever it is shown
/// again (`/history`, captions). The implicit direction marks (U+200E, U+200F) stay: they
/// change no order beyond their neighbours and some right-to-left texts need them.
fn hidden_control(c: char) -> bool {
    matches!(c, '\0' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// `prompt` without its [hidden controls](hidden_control): each run of them between two
/// visible characters becomes one space, never deleted outright (`a\0cat` was kept as `acat`,
/// joining the words the user had apart); beside whitespace or at either end it leaves
/// nothing, so no space is doubled or added at an end.
pub(crate) fn without_hidden_controls(prompt: &str) -> std::borrow::Cow<'_, str> {
    if !prompt.contains(hidden_control) {
        return std::borrow::Cow::Borrowed(prompt);
    }
    let mut kept = String::with_capacity(prompt.len());
    let mut gap = false;
    for c in prompt.chars() {
        if hidden_control(c) {
            gap = true;
            continue;
        }
        let apart =
            !c.is_whitespace() && kept.chars().next_back().is_some_and(|p| !p.is_whitespace());
        if gap && apart {
            kept.push(' ');
        }
        gap = false;
        kept.push(c);
    }
    std::borrow::Cow::Owned(kept)
}

/// Whether a prompt has nothing a model could draw: only whitespace, control characters and
/// invisible format marks (zero-width spaces and joiners, direction marks, soft hyphens, BOMs).
/// Seen: "\u{200b}\u{200b}" was generated and charged.
pub(crate) fn says_nothing(prompt: &str) -> bool {
    prompt.chars().all(|c| {
        c.is_whitespace()
            || c.is_control()
            || matches!(c,
                '\u{AD}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{206F}' | '\u{FE0E}' | '\u{FE0F}' | '\u{FEFF}')
    })
}

#[cfg(test)]
mod prompt_tests {
    use super::{hidden_control as hidden, says_nothing, without_hidden_controls};

    fn any_prompt() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let special = prop::sample::select(vec![
            '\0', '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}', '\u{2066}',
            '\u{2067}', '\u{2068}', '\u{2069}', '\u{200F}', 'a', ' ', '\n',
        ]);
        let ch = prop_oneof![2 => any::<char>(), 1 => special];
        prop::collection::vec(ch, 0..64).prop_map(|chars| chars.into_iter().collect())
    }

    proptest::proptest! {
        /// Whatever a user sends, what is kept has no NUL and no direction override or
        /// isolate, everything else is kept in its order, and only single spaces are added
        /// (one at most per run of hidden controls, never at either end).
        #[test]
        fn kept_prompts_have_no_nul_and_no_direction_overrides(prompt in any_prompt()) {
            let kept = without_hidden_controls(&prompt);
            proptest::prop_assert!(!kept.contains(hidden), "{:?}", kept);
            let others: String = prompt.chars().filter(|c| !hidden(*c) && *c != ' ').collect();
            let kept_others: String = kept.chars().filter(|c| *c != ' ').collect();
            proptest::prop_assert_eq!(kept_others, others);
            let spaces = |t: &str| t.chars().filter(|c| *c == ' ').count();
            let runs = prompt
                .chars()
                .zip(prompt.chars().skip(1))
                .filter(|(a, b)| hidden(*a) && !hidden(*b))
                .count();
            proptest::prop_assert!(spaces(&kept) <= spaces(&prompt) + runs);
            proptest::prop_assert!(!kept.contains("  ") || prompt.replace(hidden, "").contains("  "),
                "{:?} doubled a space", kept);
            proptest::prop_assert_eq!(
                kept.starts_with(' '),
                prompt.trim_start_matches(hidden).starts_with(' ')
            );
        }

        /// Two words a hidden control alone keeps apart stay apart (`a\0cat` was `acat`).
        #[test]
        fn a_hidden_control_between_words_leaves_a_space(
            before in any_prompt(),
            controls in proptest::collection::vec(
                proptest::sample::select(vec!['\0', '\u{202E}', '\u{2066}', '\u{2069}']), 1..4),
            after in any_prompt(),
        ) {
            let before: String = before.chars().filter(|c| !hidden(*c)).collect();
            let after: String = after.chars().filter(|c| !hidden(*c)).collect();
            proptest::prop_assume!(before.chars().next_back().is_some_and(|c| !c.is_whitespace()));
            proptest::prop_assume!(after.chars().next().is_some_and(|c| !c.is_whitespace()));
            let controls: String = controls.into_iter().collect();
            let sent = format!("{before}{controls}{after}");
            let kept = without_hidden_controls(&sent);
            proptest::prop_assert_eq!(kept.as_ref(), format!("{before} {after}"));
        }
    }

    #[test]
    fn hidden_controls_between_words_become_one_space() {
        assert_eq!(without_hidden_controls("a\0cat"), "a cat");
        assert_eq!(without_hidden_controls("a\0\u{202e}\0cat"), "a cat");
        assert_eq!(without_hidden_controls("a \0cat"), "a cat");
        assert_eq!(without_hidden_controls("\0a cat\0"), "a cat");
        assert_eq!(without_hidden_controls("a\0\ncat"), "a\ncat");
    }

    #[test]
    fn invisible_prompts_say_nothing_and_visible_ones_do() {
        for blank in [
            "",
            " \t\n",
            "\u{200b}\u{200b}\u{200b}",
            "\u{200f}\u{200e}",
            "\u{feff}\u{2060}",
            "\0\u{1}",
        ] {
            assert!(says_nothing(blank), "{blank:?}");
        }
        for said in ["a", "\u{200b}cat", "🦊", "猫", "\0nul\0", "é"] {
            assert!(!says_nothing(said), "{said:?}");
        }
    }
}
