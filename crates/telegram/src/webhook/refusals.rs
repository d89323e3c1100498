//! Webhook posts refused for a missing or wrong secret, logged so that whoever posts them cannot
//! fill the log: the first is logged, then at most one summary line a minute with the count.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// At most one summary line this often.
const SUMMARY_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
pub(super) struct RefusalLog {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// When a line was last logged.
    last_line: Option<Instant>,
    /// Refusals since then, this one included.
    since: u64,
}

impl RefusalLog {
    /// Takes in one refusal at `now`: the count a line should report (1 for the first, the
    /// refusals since the last line for a summary), or `None` when this one is only counted.
    pub(super) fn refused(&self, now: Instant) -> Option<u64> {
        // A poisoned lock still holds a usable count: a panic elsewhere must not stop the 401s.
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.since += 1;
        match state.last_line {
            Some(at) if now.saturating_duration_since(at) < SUMMARY_EVERY => None,
            _ => {
                state.last_line = Some(now);
                Some(std::mem::take(&mut state.since))
            }
        }
    }

    /// Logs the refusal taken in at `now`, if a line is due.
    pub(super) fn log(&self, now: Instant) {
        match self.refused(now) {
            Some(1) => tracing::warn!(
                "telegram webhook request without the right secret token; refused (more are counted, one line a minute)"
            ),
            Some(count) => tracing::warn!(
                count,
                "telegram webhook requests without the right secret token refused since the last such line"
            ),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_logs_the_first_then_one_summary_a_minute() {
        let log = RefusalLog::default();
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        assert_eq!(log.refused(at(0)), Some(1));
        for _ in 0..1000 {
            assert_eq!(log.refused(at(1)), None);
        }
        assert_eq!(log.refused(at(59)), None);
        // A minute after the first line: one summary, this refusal included.
        assert_eq!(log.refused(at(60)), Some(1002));
        assert_eq!(log.refused(at(61)), None);
        assert_eq!(log.refused(at(200)), Some(2));
    }
}
