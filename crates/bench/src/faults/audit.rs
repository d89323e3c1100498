//! What a fault cost, counted at the mocks and in the database: prompts without a job (lost),
//! jobs beyond the prompts (duplicated), predictions created but belonging to no job or to two,
//! photos missing or sent twice, balances that break credits = initial + added − charged +
//! refunded.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use genbot_mocks::telegram::repeats::{self, Repeat, WIRE_GRACE};
use genbot_mocks::telegram::Entry;
use genbot_store::{Job, JobStatus, StoreError};

use super::load::Load;
use super::stage::Stage;
use crate::target::TEST_IDS;

/// Waits until every prompt has a job, every job is final and every result was delivered (or
/// its delivery given up and recorded); returns how long that took, `None` at `limit`.
pub(crate) async fn settle(stage: &Stage, load: &Load, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let prompts = load.total_prompts();
    loop {
        if let (Ok(counts), Ok(undelivered)) = (
            stage.store.count_jobs_by_status().await,
            stage.store.undelivered().await,
        ) {
            if counts.queued == 0
                && counts.running == 0
                && counts.total() >= prompts
                && undelivered == 0
            {
                return Some(started.elapsed());
            }
        }
        if started.elapsed() >= limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The count.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tally {
    pub(crate) prompts: u64,
    pub(crate) jobs: u64,
    pub(crate) succeeded: u64,
    pub(crate) failed: u64,
    /// Jobs still queued or running when the count was taken.
    pub(crate) unfinished: Vec<String>,
    /// Users with fewer jobs than prompts.
    pub(crate) lost: Vec<String>,
    /// Users with more jobs than prompts.
    pub(crate) duplicated_jobs: Vec<String>,
    /// Predictions the Replicate mock created.
    pub(crate) predictions_created: u64,
    /// Distinct predictions jobs point at.
    pub(crate) predictions_of_jobs: u64,
    /// Predictions two jobs point at.
    pub(crate) shared_predictions: Vec<String>,
    pub(crate) photos_missing: Vec<String>,
    /// Photos sent again although the bot had read that the first copy was delivered (or
    /// photos beyond the succeeded jobs): defects.
    pub(crate) photos_duplicated: Vec<String>,
    /// Photos sent again because a kill caught the first copy at the wire (its answer never
    /// reached the bot, or reached it within [`WIRE_GRACE`] of the kill): inherent, allowed.
    pub(crate) photos_duplicated_at_wire: Vec<String>,
    /// SIGKILLs of the bot before the count.
    pub(crate) kills: u64,
    /// Photo sends at the wire at those kills: the most repeats they can excuse.
    pub(crate) photo_sends_at_kills: u64,
    pub(crate) balances_broken: Vec<String>,
    /// Messages (texts, edits, photos) the bot sent, less one `/start` answer per user.
    pub(crate) messages_for_jobs: u64,
}

impl Tally {
    /// Telegram messages per job (the forecast's measure of Telegram's share of a generation).
    pub(crate) fn sends_per_job(&self) -> Option<f64> {
        (self.jobs > 0).then(|| self.messages_for_jobs as f64 / self.jobs as f64)
    }

    /// Predictions created that no job accounts for.
    pub(crate) fn duplicated_predictions(&self) -> u64 {
        self.predictions_created
            .saturating_sub(self.predictions_of_jobs)
    }

    /// Everything lost, duplicated or mis-charged, in words with ids; empty when clean.
    pub(crate) fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut add = |what: &str, items: &[String]| {
            if !items.is_empty() {
                let shown: Vec<&str> = items.iter().take(5).map(String::as_str).collect();
                let more = items.len().saturating_sub(shown.len());
                problems.push(format!(
                    "{what} ({}): {}{}",
                    items.len(),
                    shown.join("; "),
                    if more > 0 {
                        format!("; {more} more")
                    } else {
                        String::new()
                    }
                ));
            }
        };
        add("jobs not final", &self.unfinished);
        add("prompts lost", &self.lost);
        add("prompts run twice", &self.duplicated_jobs);
        add("predictions shared by two jobs", &self.shared_predictions);
        add("photos missing", &self.photos_missing);
        add("photos sent twice", &self.photos_duplicated);
        add("balances off their ledger", &self.balances_broken);
        if self.duplicated_predictions() > 0 {
            problems.push(format!(
                "predictions duplicated: the Replicate mock created {}, jobs account for {}",
                self.predictions_created, self.predictions_of_jobs
            ));
        }
        problems
    }

    pub(crate) fn is_clean(&self) -> bool {
        self.problems().is_empty()
    }
}

/// Counts what the stage's users asked for against what the bot did. Users in `refused` (they
/// blocked the bot) are not expected to get photos.
pub(crate) async fn count(
    stage: &Stage,
    load: &Load,
    refused: &[i64],
) -> Result<Tally, StoreError> {
    let mut jobs: Vec<Job> = Vec::new();
    for status in [
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::Canceled,
    ] {
        jobs.extend(stage.store.jobs_with_status(status, 1_000_000).await?);
    }
    let methods = stage.telegram.stats().methods;
    let messages: u64 = ["sendmessage", "editmessagetext", "sendphoto"]
        .iter()
        .filter_map(|m| methods.get(*m))
        .sum();
    let mut tally = Tally {
        prompts: load.total_prompts(),
        jobs: jobs.len() as u64,
        predictions_created: stage.replicate.stats().created,
        messages_for_jobs: messages.saturating_sub(load.users.len() as u64),
        ..Tally::default()
    };
    let mut by_user: HashMap<i64, Vec<&Job>> = HashMap::new();
    let mut by_prediction: BTreeMap<&str, Vec<&Job>> = BTreeMap::new();
    for job in &jobs {
        by_user.entry(job.user_id.0).or_default().push(job);
        if let Some(prediction) = job.prediction_id.as_deref() {
            by_prediction.entry(prediction).or_default().push(job);
        }
        match job.status {
            JobStatus::Succeeded => tally.succeeded += 1,
            JobStatus::Failed | JobStatus::Canceled => tally.failed += 1,
            JobStatus::Queued | JobStatus::Running => tally
                .unfinished
                .push(format!("job {} ({})", job.id, job.status)),
        }
    }
    tally.predictions_of_jobs = by_prediction.len() as u64;
    for (prediction, sharing) in &by_prediction {
        if sharing.len() > 1 {
            let ids: Vec<String> = sharing.iter().map(|j| j.id.to_string()).collect();
            tally
                .shared_predictions
                .push(format!("{prediction}: jobs {}", ids.join(", ")));
        }
    }
    let by_chat = photo_repeats(stage, &mut tally);
    let refused: HashSet<i64> = refused.iter().copied().collect();
    for (n, user) in load.users.iter().enumerate() {
        let id = user.id();
        let prompts = u64::from(load.prompts_of(n));
        let own = by_user.get(&id).map_or(&[][..], Vec::as_slice);
        let job_ids = || {
            own.iter()
                .map(|j| j.id.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        match (own.len() as u64).cmp(&prompts) {
            std::cmp::Ordering::Less => tally.lost.push(format!(
                "user {id}: {prompts} prompts, {} jobs [{}]",
                own.len(),
                job_ids()
            )),
            std::cmp::Ordering::Greater => tally.duplicated_jobs.push(format!(
                "user {id}: {prompts} prompts, {} jobs [{}]",
                own.len(),
                job_ids()
            )),
            std::cmp::Ordering::Equal => {}
        }
        if refused.contains(&id) {
            continue;
        }
        let succeeded = own
            .iter()
            .filter(|j| j.status == JobStatus::Succeeded)
            .count();
        let photos = user
            .transcript()
            .iter()
            .filter(|e| matches!(e, Entry::BotPhoto { .. }))
            .count();
        let repeated = by_chat.get(&id).map_or(&[][..], Vec::as_slice);
        // Each repeat is one photo more than the user's different photos.
        let different = photos.saturating_sub(repeated.len());
        match different.cmp(&succeeded) {
            std::cmp::Ordering::Less => tally.photos_missing.push(format!(
                "user {id}: {succeeded} succeeded jobs, {photos} photos, {different} different"
            )),
            std::cmp::Ordering::Greater => tally.photos_duplicated.push(format!(
                "user {id}: {succeeded} succeeded jobs, {different} different photos: photos of jobs that did not succeed"
            )),
            std::cmp::Ordering::Equal => {}
        }
        for repeat in repeated {
            let line = format!("user {id}: {}", repeat.describe());
            if repeat.at_wire() {
                tally.photos_duplicated_at_wire.push(line);
            } else {
                tally.photos_duplicated.push(line);
            }
        }
    }
    for audit in stage.store.credit_audit(TEST_IDS).await? {
        if audit.credits != audit.expected {
            tally.balances_broken.push(format!(
                "user {}: {} credits, ledger says {}",
                audit.user, audit.credits, audit.expected
            ));
        }
    }
    Ok(tally)
}

/// The photos the Telegram mock saw sent more than once, by chat, each judged against the
/// stage's kills (at the wire, or a defect); counts the kills and the sends they caught.
fn photo_repeats(stage: &Stage, tally: &mut Tally) -> HashMap<i64, Vec<Repeat>> {
    let sends: Vec<_> = stage
        .telegram
        .file_sends()
        .into_iter()
        .filter(|s| !s.document)
        .collect();
    let kills = stage.kills();
    tally.kills = kills.len() as u64;
    tally.photo_sends_at_kills = repeats::in_flight_at(&sends, &kills, WIRE_GRACE) as u64;
    let mut by_chat: HashMap<i64, Vec<Repeat>> = HashMap::new();
    for repeat in repeats::repeats(&sends, &kills, WIRE_GRACE) {
        by_chat.entry(repeat.chat).or_default().push(repeat);
    }
    by_chat
}
