//! Writes that record what already happened at Telegram (a photo sent, a broadcast message
//! delivered). Giving one up after a database error would have the work done again, so the user
//! would get it twice: they are tried again, with backoff, until they land or the bot stops.

use std::future::Future;
use std::time::Duration;

use genbot_store::StoreError;
use tokio_util::sync::CancellationToken;

/// The first pause after a failed write; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(100);
const MAX_PAUSE: Duration = Duration::from_secs(5);

/// Runs `write` until it succeeds and returns its value, or `None` when `stop` comes first
/// (then the next start may do the recorded work again; that is logged).
pub(crate) async fn until_recorded<T, F, Fut>(
    stop: &CancellationToken,
    what: &str,
    mut write: F,
) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut pause = FIRST_PAUSE;
    loop {
        match write().await {
            Ok(value) => return Some(value),
            Err(e) => tracing::warn!(error = %e, ?pause, "recording {what} failed; trying again"),
        }
        tokio::select! {
            () = stop.cancelled() => {
                tracing::warn!("stopping with {what} unrecorded; the next start may do it again");
                return None;
            }
            () = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

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
            until_recorded(&stop, "a test write", || async { failing_until(&tries, 4) }).await;
        assert_eq!(landed, Some(4));
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
        let landed = until_recorded(&stop, "a test write", || async {
            failing_until(&tries, u32::MAX)
        })
        .await;
        assert_eq!(landed, None);
        // Tries at 0, 0.1, 0.3, 0.7, 1.5, 3.1 and 6.3 s, then every 5 s: 11 before the stop.
        assert_eq!(tries.load(Ordering::SeqCst), 11);
    }
}
