//! Counting tasks that wait for a pooled connection, for [`crate::PoolStats::waiting`]; both
//! backends' pools count the same way.

use std::sync::atomic::{AtomicU32, Ordering};

/// Counts a task as waiting for as long as it lives, so a cancelled wait is uncounted too.
pub(crate) struct Waiting<'a>(&'a AtomicU32);

impl<'a> Waiting<'a> {
    pub(crate) fn enter(counter: &'a AtomicU32) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Waiting(counter)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
