//! Logs a failing dependency once per burst of errors instead of once per request.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// One warning when errors start, a count of the suppressed ones when a new burst starts after
/// a quiet `window`, and one note when the dependency works again.
#[derive(Debug)]
pub(crate) struct BurstLog {
    what: &'static str,
    window: Duration,
    /// Set while errors are being suppressed; lets the success path skip the lock.
    failing: AtomicBool,
    state: Mutex<BurstState>,
}

#[derive(Debug, Default)]
struct BurstState {
    last_logged: Option<Instant>,
    suppressed: u64,
    total: u64,
}

impl BurstLog {
    pub(crate) fn new(what: &'static str, window: Duration) -> Self {
        BurstLog {
            what,
            window,
            failing: AtomicBool::new(false),
            state: Mutex::new(BurstState::default()),
        }
    }

    pub(crate) fn error(&self, error: &dyn std::fmt::Display) {
        self.failing.store(true, Ordering::Relaxed);
        let mut state = self.state.lock();
        state.total += 1;
        let now = Instant::now();
        let quiet = state
            .last_logged
            .is_none_or(|at| now.duration_since(at) >= self.window);
        if quiet {
            tracing::warn!(
                dependency = self.what,
                suppressed = state.suppressed,
                "{} failing, falling back: {error}",
                self.what
            );
            state.last_logged = Some(now);
            state.suppressed = 0;
        } else {
            state.suppressed += 1;
        }
    }

    pub(crate) fn success(&self) {
        if !self.failing.load(Ordering::Relaxed) {
            return;
        }
        let mut state = self.state.lock();
        if self.failing.swap(false, Ordering::Relaxed) {
            tracing::info!(
                dependency = self.what,
                errors = state.total,
                "{} works again after {} errors",
                self.what,
                state.total
            );
            *state = BurstState::default();
        }
    }
}
