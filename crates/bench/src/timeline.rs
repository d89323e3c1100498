//! Latency over time for the end-to-end checks: every window, the answers the Bot API mock saw
//! since the last window, as p50/p99 and answers per second — the curve the HTML report draws.

use std::time::{Duration, Instant};

use genbot_mocks::telegram::Answers;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::grade::Lang;
use crate::histogram::Latencies;
use crate::outcome::{Line, Scale, Series};

/// One window's answers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Window {
    /// End of the window, seconds since sampling started.
    pub(crate) t_s: f64,
    pub(crate) answers_per_s: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
}

/// Samples the mock's answers every `every` until `stop`; the handle yields the windows.
pub(crate) fn sample(
    answers: Answers,
    every: Duration,
    stop: CancellationToken,
) -> JoinHandle<Vec<Window>> {
    tokio::spawn(async move {
        let started = Instant::now();
        let mut seen = answers.latencies_since(0).len();
        let mut last = Instant::now();
        let mut windows = Vec::new();
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            let stopping = tokio::select! {
                () = stop.cancelled() => true,
                _ = tick.tick() => false,
            };
            let fresh = answers.latencies_since(seen);
            if !fresh.is_empty() {
                let summary = fresh.iter().copied().collect::<Latencies>().summary();
                windows.push(Window {
                    t_s: started.elapsed().as_secs_f64(),
                    answers_per_s: fresh.len() as f64 / last.elapsed().as_secs_f64().max(1e-3),
                    p50_ms: summary.p50_ms,
                    p99_ms: summary.p99_ms,
                });
            }
            seen += fresh.len();
            last = Instant::now();
            if stopping {
                return windows;
            }
        }
    })
}

/// The windows as two charts: latency over time and answers per second over time.
pub(crate) fn series(windows: &[Window], lang: Lang, x_label: &str, prefix: &str) -> Vec<Series> {
    let (latency, answers) = match lang {
        Lang::En => ("latency over time", "answers per second"),
        Lang::Ru => ("задержка во времени", "ответов в секунду"),
    };
    let line = |name: &str, f: fn(&Window) -> f64| Line {
        name: name.to_owned(),
        points: windows.iter().map(|w| (w.t_s, f(w))).collect(),
    };
    vec![
        Series {
            id: "latency_over_time".into(),
            title: format!("{prefix}: {latency}"),
            x_label: x_label.to_owned(),
            y_label: "ms".into(),
            x_scale: Scale::Linear,
            lines: vec![line("p50", |w| w.p50_ms), line("p99", |w| w.p99_ms)],
            shaded: Vec::new(),
        },
        Series {
            id: "answers_over_time".into(),
            title: format!("{prefix}: {answers}"),
            x_label: x_label.to_owned(),
            y_label: answers.into(),
            x_scale: Scale::Linear,
            lines: vec![line(answers, |w| w.answers_per_s)],
            shaded: Vec::new(),
        },
    ]
}
