//! A steady load of simulated users on the stage's Telegram mock, and the answers over time.
//!
//! Each user says `/start`, then prompts at a fixed overall rate, round robin, until stopped.
//! The time from each update to the bot's first answer in its chat is sampled four times a
//! second and kept with the second it arrived in, so a report can show latency and answers
//! around a fault window.

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
    /// `(seconds since the load started, answer latency)`, in order of answers.
    answers: Arc<Mutex<Vec<(f64, Duration)>>>,
    pub(crate) started: Instant,
    stop_prompts: CancellationToken,
    stop: CancellationToken,
    sender: Option<tokio::task::JoinHandle<()>>,
    sampler: Option<tokio::task::JoinHandle<()>>,
}

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
        let answers = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let stop_prompts = CancellationToken::new();
        let started = Instant::now();
        let sender = {
            let users = users.clone();
            let prompts = prompts.clone();
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
                        () = tokio::time::sleep(Duration::from_millis(250)) => false,
                    };
                    let fresh = source.latencies_since(seen);
                    seen += fresh.len();
                    let t = started.elapsed().as_secs_f64();
                    answers.lock().extend(fresh.into_iter().map(|l| (t, l)));
                    if stopping {
                        return;
                    }
                }
            })
        };
        Load {
            users,
            prompts,
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

    /// Answer latencies of answers that arrived in `[from_s, to_s)`.
    pub(crate) fn window(&self, from_s: f64, to_s: f64) -> Latencies {
        let mut latencies = Latencies::new();
        for (t, latency) in self.answers.lock().iter() {
            if (from_s..to_s).contains(t) {
                latencies.record(*latency);
            }
        }
        latencies
    }

    /// Per second: p50 and p99 answer latency (ms) and answers, for the charts.
    pub(crate) fn per_second(&self) -> Vec<(f64, f64, f64, f64)> {
        let answers = self.answers.lock();
        let Some(last) = answers.last().map(|(t, _)| *t) else {
            return Vec::new();
        };
        let mut rows = Vec::new();
        let mut second = 0.0;
        while second <= last {
            let mut latencies = Latencies::new();
            for (t, latency) in answers.iter() {
                if (second..second + 1.0).contains(t) {
                    latencies.record(*latency);
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
