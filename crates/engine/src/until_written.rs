//! Writes that record work already done (a prediction's outcome, a photo sent, a broadcast
//! message delivered). Giving one up after a database error would have the work done again,
//! so the user would be charged, or get it, twice: they are tried again, with backoff, until
//! they land, the data refuses them, or the process stops. The engine's job steps and the
//! Telegram front end's deliveries and broadcasts share this one schedule.

use std::future::Future;
use std::time::Duration;

use genbot_store::StoreError;
use tokio_util::sync::CancellationToken;

/// The first pause after a failed write; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(100);
const MAX_PAUSE: Duration = Duration::from_secs(5);

/// Why [`until_written`] returned without the write landing.
#[derive(Debug)]
pub enum Unwritten {
    /// The data refused it (the job is another replica's now, or in a state the write does
    /// not apply to, or gone): trying again cannot help.
    Refused(StoreError),
    /// The process is stopping; the next start may do the recorded work again (logged).
    Stopped,
}

/// Runs `write` until it succeeds and returns its value; database errors are tried again
/// after a pause (100 ms, doubling to 5 s), refusals and `stop` end the tries.
///
/// # Errors
/// [`Unwritten`]: refused by the data, or stopped first.
pub async fn until_written<T, F, Fut>(
    stop: &CancellationToken,
    what: &str,
    mut write: F,
) -> Result<T, Unwritten>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut pause = FIRST_PAUSE;
    loop {
        match write().await {
            Ok(value) => return Ok(value),
            Err(
                e @ (StoreError::LeaseLost { .. }
                | StoreError::InvalidTransition { .. }
                | StoreError::JobNotFound(_)),
            ) => return Err(Unwritten::Refused(e)),
            Err(e) => tracing::warn!(error = %e, ?pause, "recording {what} failed; trying again"),
        }
        tokio::select! {
            biased;
            () = stop.cancelled() => {
                tracing::warn!("stopping with {what} unrecorded; the next start may do it again");
                return Err(Unwritten::Stopped);
            }
            () = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use genbot_store::JobId;

    use super::*;

    fn failing_until(tries: &AtomicU32, succeeds_at: u32) -> Result<u32, StoreError> {
        let n = tries.fetch_add(1, Ordering::SeqCst) + 1;
        if n < succeeds_at {
            Err(StoreError::Corrupt {
                column: "test",
                value: "the database is away".into(),
            })
        } else {
            Ok(n)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_that_fails_is_tried_until_it_lands() {
        let tries = AtomicU32::new(0);
        let started = tokio::time::Instant::now();
        let stop = CancellationToken::new();
        let landed =
            until_written(&stop, "a test write", || async { failing_until(&tries, 4) }).await;
        assert_eq!(landed.ok(), Some(4));
        // Three pauses: 100 + 200 + 400 ms.
        assert_eq!(started.elapsed(), Duration::from_millis(700));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_ends_the_tries() {
        let tries = AtomicU32::new(0);
        let stop = CancellationToken::new();
        let stopper = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            stopper.cancel();
        });
        let landed = until_written(&stop, "a test write", || async {
            failing_until(&tries, u32::MAX)
        })
        .await;
        assert!(matches!(landed, Err(Unwritten::Stopped)));
        // Tries at 0, 0.1, 0.3, 0.7, 1.5, 3.1 and 6.3 s, then every 5 s: 11 before the stop.
        assert_eq!(tries.load(Ordering::SeqCst), 11);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_is_not_tried_again() {
        let tries = AtomicU32::new(0);
        let stop = CancellationToken::new();
        let landed: Result<(), _> = until_written(&stop, "a test write", || async {
            tries.fetch_add(1, Ordering::SeqCst);
            Err(StoreError::JobNotFound(JobId(7)))
        })
        .await;
        assert!(matches!(landed, Err(Unwritten::Refused(_))));
        assert_eq!(tries.load(Ordering::SeqCst), 1);
    }
}
