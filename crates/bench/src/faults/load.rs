//! A steady load of simulated users on the stage's Telegram mock, and the answers over time.
//!
//! Each user says `/start`, then prompts at a fixed overall rate, round robin, until stopped.
//! The time from each update to the bot's first answer in its chat is sampled ten times a
//! second and kept with the second the update was sent in (and the one the answer came in, for
//! the charts), so a fault window holds the updates sent during the fault — answered late, or
//! never — not the answers that happened to arrive then.

use std::sync::Arc;
use std::time::{Duration, Instant};

use genbot_mocks::telegram::{SimUser, TelegramMock};
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use crate::histogram::Latencies;
use crate::target::TEST_IDS;

/// Simulated users, the prompts each sent, and the answers the mock saw.
pub(crate) struct Load {
    pub(crate) users: Vec<SimUser>,
    prompts: Arc<Mutex<Vec<u32>>>,
    /// Every prompt: `(seconds since the load started, user id)`.
    sent: Arc<Mutex<Vec<(f64, i64)>>>,
    /// Every answer, in order of answers.
    answers: Arc<Mutex<Vec<Answer>>>,
    pub(crate) started: Instant,
    stop_prompts: CancellationToken,
    stop: CancellationToken,
    sender: Option<tokio::task::JoinHandle<()>>,
    sampler: Option<tokio::task::JoinHandle<()>>,
}

/// One answered update.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Answer {
    /// Seconds since the load started when the answer was seen (within a sampling period).
    pub(crate) answered_s: f64,
    /// Seconds since the load started when the update was sent (negative: before the load,
    /// e.g. `/start`).
    pub(crate) sent_s: f64,
    pub(crate) chat: i64,
    pub(crate) latency: Duration,
}

/// How often answers are collected from the mock: bounds the error of `answered_s`.
const SAMPLE_PERIOD: Duration = Duration::from_millis(100);

impl Load {
    /// `count` users (ids from the test range), each greeted with `/start`.
    pub(crate) fn users(telegram: &TelegramMock, count: u32) -> Vec<SimUser> {
        (0..i64::from(count))
            .map(|n| {
                let user = telegram.user(TEST_IDS.start + n, &format!("fault{n}"), Some("en"));
                user.send_text("/start");
                user
            })
            .collect()
    }

    /// Starts prompting at `per_second` across `users` and sampling the answers.
    pub(crate) fn start(telegram: &TelegramMock, users: Vec<SimUser>, per_second: f64) -> Load {
        let prompts = Arc::new(Mutex::new(vec![0u32; users.len()]));
        let sent = Arc::new(Mutex::new(Vec::new()));
        let answers = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let stop_prompts = CancellationToken::new();
        let started = Instant::now();
        let sender = {
            let users = users.clone();
            let prompts = prompts.clone();
            let sent = sent.clone();
            let stop = stop_prompts.clone();
            let period = Duration::from_secs_f64(1.0 / per_second.max(0.1));
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(period);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut next = 0usize;
                loop {
                    tokio::select! {
                        () = stop.cancelled() => return,
                        _ = tick.tick() => {}
                    }
                    let n = next % users.len().max(1);
                    next += 1;
                    let Some(user) = users.get(n) else { return };
                    let k = {
                        let mut sent = prompts.lock();
                        sent[n] += 1;
                        sent[n]
                    };
                    sent.lock()
                        .push((started.elapsed().as_secs_f64(), user.id()));
                    user.send_text(&format!(
                        "fault test: a lighthouse, prompt {k} of user {}",
                        user.id()
                    ));
                }
            })
        };
        let sampler = {
            let source = telegram.answers();
            let answers = answers.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut seen = 0usize;
                loop {
                    let stopping = tokio::select! {
                        () = stop.cancelled() => true,
                        () = tokio::time::sleep(SAMPLE_PERIOD) => false,
                    };
                    let fresh = source.answers_since(seen);
                    seen += fresh.len();
                    let t = started.elapsed().as_secs_f64();
                    answers
                        .lock()
                        .extend(fresh.into_iter().map(|(chat, at, latency)| Answer {
                            answered_s: t,
                            sent_s: seconds_between(started, at),
                            chat,
                            latency,
                        }));
                    if stopping {
                        return;
                    }
                }
            })
        };
        Load {
            users,
            prompts,
            sent,
            answers,
            started,
            stop_prompts,
            stop,
            sender: Some(sender),
            sampler: Some(sampler),
        }
    }

    /// Every user sends a prompt now (a burst on top of the steady rate).
    pub(crate) fn burst(&self) {
        for (n, user) in self.users.iter().enumerate() {
            let k = {
                let mut sent = self.prompts.lock();
                sent[n] += 1;
                sent[n]
            };
            self.sent.lock().push((self.now_s(), user.id()));
            user.send_text(&format!(
                "fault test: a lighthouse, prompt {k} of user {}",
                user.id()
            ));
        }
    }

    /// Seconds since the load started.
    pub(crate) fn now_s(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// No more prompts (the counts are final when this returns); answers are still sampled.
    pub(crate) async fn stop_prompting(&mut self) {
        self.stop_prompts.cancel();
        if let Some(sender) = self.sender.take() {
            let _ = sender.await;
        }
    }

    /// Stops prompting and sampling (after the bot has settled).
    pub(crate) async fn finish(&mut self) {
        self.stop_prompting().await;
        self.stop.cancel();
        if let Some(sampler) = self.sampler.take() {
            let _ = sampler.await;
        }
    }

    /// Prompts user `n` sent.
    pub(crate) fn prompts_of(&self, n: usize) -> u32 {
        self.prompts.lock().get(n).copied().unwrap_or(0)
    }

    pub(crate) fn total_prompts(&self) -> u64 {
        self.prompts.lock().iter().map(|&p| u64::from(p)).sum()
    }

    /// Answer latencies of the updates sent in `[from_s, to_s)`, whenever they were answered.
    pub(crate) fn window(&self, from_s: f64, to_s: f64) -> Latencies {
        let mut latencies = Latencies::new();
        for a in self.answers.lock().iter() {
            if (from_s..to_s).contains(&a.sent_s) {
                latencies.record(a.latency);
            }
        }
        latencies
    }

    /// Prompts sent in `[from_s, to_s)`: `(seconds, user id)`.
    pub(crate) fn sent_in(&self, from_s: f64, to_s: f64) -> Vec<(f64, i64)> {
        self.sent
            .lock()
            .iter()
            .copied()
            .filter(|(t, _)| (from_s..to_s).contains(t))
            .collect()
    }

    /// Prompts sent in `[from_s, to_s)` by users not in `skip` that no answer has answered
    /// (yet). The mock answers a chat's updates in order, so counts per chat are exact.
    pub(crate) fn unanswered_in(&self, from_s: f64, to_s: f64, skip: &[i64]) -> u64 {
        unanswered(
            &self.sent.lock(),
            &self.answers.lock(),
            (from_s, to_s),
            skip,
        )
    }

    /// Users who sent a prompt in `[from_s, to_s)` and had none of those prompts answered by
    /// `heard_by(sent_s)` (seconds since the load started).
    pub(crate) fn users_unheard(
        &self,
        from_s: f64,
        to_s: f64,
        heard_by: impl Fn(f64) -> f64,
    ) -> Vec<i64> {
        unheard(
            &self.sent.lock(),
            &self.answers.lock(),
            (from_s, to_s),
            heard_by,
        )
    }

    /// Per second: p50 and p99 answer latency (ms) and answers, for the charts.
    pub(crate) fn per_second(&self) -> Vec<(f64, f64, f64, f64)> {
        let answers = self.answers.lock();
        let Some(last) = answers.last().map(|a| a.answered_s) else {
            return Vec::new();
        };
        let mut rows = Vec::new();
        let mut second = 0.0;
        while second <= last {
            let mut latencies = Latencies::new();
            for a in answers.iter() {
                if (second..second + 1.0).contains(&a.answered_s) {
                    latencies.record(a.latency);
                }
            }
            let s = latencies.summary();
            if s.count > 0 {
                rows.push((second + 0.5, s.p50_ms, s.p99_ms, s.count as f64));
            } else {
                rows.push((second + 0.5, f64::NAN, f64::NAN, 0.0));
            }
            second += 1.0;
        }
        rows
    }
}

/// Prompts in `sent` within `window` (by users not in `skip`) without an answer.
fn unanswered(sent: &[(f64, i64)], answers: &[Answer], window: (f64, f64), skip: &[i64]) -> u64 {
    let within = |t: f64| (window.0..window.1).contains(&t);
    let sent = sent
        .iter()
        .filter(|(t, user)| within(*t) && !skip.contains(user))
        .count();
    let answered = answers
        .iter()
        .filter(|a| within(a.sent_s) && !skip.contains(&a.chat))
        .count();
    sent.saturating_sub(answered) as u64
}

/// Users who sent within `window` and had none of those prompts answered by `heard_by`.
fn unheard(
    sent: &[(f64, i64)],
    answers: &[Answer],
    window: (f64, f64),
    heard_by: impl Fn(f64) -> f64,
) -> Vec<i64> {
    let within = |t: f64| (window.0..window.1).contains(&t);
    let mut writers: Vec<i64> = sent
        .iter()
        .filter(|(t, _)| within(*t))
        .map(|(_, u)| *u)
        .collect();
    writers.sort_unstable();
    writers.dedup();
    writers
        .into_iter()
        .filter(|user| {
            !answers.iter().any(|a| {
                a.chat == *user
                    && within(a.sent_s)
                    && a.answered_s <= heard_by(a.sent_s) + SAMPLE_PERIOD.as_secs_f64()
            })
        })
        .collect()
}

/// Seconds from `start` to `at`, negative when `at` came first.
fn seconds_between(start: Instant, at: Instant) -> f64 {
    match at.checked_duration_since(start) {
        Some(after) => after.as_secs_f64(),
        None => -start.duration_since(at).as_secs_f64(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(chat: i64, sent_s: f64, answered_s: f64) -> Answer {
        Answer {
            answered_s,
            sent_s,
            chat,
            latency: Duration::from_secs_f64(answered_s - sent_s),
        }
    }

    #[test]
    fn a_bot_silent_through_the_outage_leaves_its_updates_unanswered() {
        // Seen: grouped by arrival, a silent outage had an empty window, p99 0, EXCELLENT.
        // Users 1 and 2 write during the outage (2–4 s); only answers to earlier updates come.
        let sent = [(1.0, 1), (2.5, 1), (3.0, 2), (3.5, 1)];
        let answers = [answer(1, 1.0, 1.1)];
        assert_eq!(unanswered(&sent, &answers, (2.0, 4.0), &[]), 3);
        assert_eq!(unheard(&sent, &answers, (2.0, 4.0), |_| 4.0), vec![1, 2]);
        // Answered after the outage: counted (late) in the window, no longer unanswered; user 2
        // heard within the allowance, user 1 only long after.
        let late = [
            answer(1, 2.5, 9.0),
            answer(2, 3.0, 4.5),
            answer(1, 3.5, 9.5),
        ];
        assert_eq!(unanswered(&sent, &late, (2.0, 4.0), &[]), 0);
        assert_eq!(
            unheard(&sent, &late, (2.0, 4.0), |s| 4.0_f64.max(s + 2.0)),
            vec![1]
        );
        // Blocked users' updates are left out.
        assert_eq!(unanswered(&sent, &answers, (2.0, 4.0), &[1]), 1);
    }

    #[test]
    fn an_update_sent_before_the_start_is_negative() {
        let start = Instant::now();
        let later = start + Duration::from_millis(1500);
        assert!((seconds_between(start, later) - 1.5).abs() < 1e-9);
        assert!((seconds_between(later, start) + 1.5).abs() < 1e-9);
    }
}
