//! The seed's thirteen tests and the fault tests ([`faults`]). Each takes the run's [`crate::context::Context`] and returns a
//! graded [`crate::outcome::TestOutcome`]; none of them fails the run by erroring: a test that
//! cannot run says why and is graded NEEDS OPTIMIZATION.

pub mod blackbox;
pub mod cache_settings;
pub mod concurrent_users;
pub mod faults;
pub mod live_replicate;
pub mod model_config;
pub mod operation_simulation;
pub mod queue;
pub mod rate_limiting;
pub mod semaphores;
pub mod served_users;
pub mod storage;
pub mod system_limits;

/// Why a check could not measure (it is then graded NEEDS OPTIMIZATION with this reason).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// A mock server, listener or temporary directory could not be set up.
    #[error("{what}: {source}")]
    Setup {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("database: {0}")]
    Store(#[from] genbot_store::StoreError),
    #[error("engine: {0}")]
    Engine(#[from] genbot_engine::EngineError),
    #[error("a generation was refused: {0}")]
    Submit(#[from] genbot_engine::SubmitError),
    #[error("cache: {0}")]
    Cache(#[from] genbot_cache::CacheError),
    #[error("Replicate client: {0}")]
    Replicate(#[from] genbot_engine::replicate::ReplicateError),
    #[error("catalogue: {0}")]
    Catalogue(#[from] genbot_engine::catalogue::CatalogueError),
    /// The bot could not be built (its cause chain, joined).
    #[error("the bot: {0}")]
    Assembly(String),
    #[error("the load generator stopped: {0}")]
    Generator(#[from] tokio::task::JoinError),
    /// A value the check itself built was refused (a URL, a webhook secret, a limiter).
    #[error("{what}: {reason}")]
    Invalid { what: &'static str, reason: String },
    /// The measurement ran but gave nothing to grade.
    #[error("{0}")]
    NothingMeasured(&'static str),
}

impl From<genbot_assembly::AssemblyError> for CheckError {
    fn from(e: genbot_assembly::AssemblyError) -> Self {
        let mut text = e.to_string();
        let mut cause = std::error::Error::source(&e);
        while let Some(inner) = cause {
            text.push_str(": ");
            text.push_str(&inner.to_string());
            cause = inner.source();
        }
        CheckError::Assembly(text)
    }
}

impl CheckError {
    pub(crate) fn setup(what: &'static str) -> impl FnOnce(std::io::Error) -> CheckError {
        move |source| CheckError::Setup { what, source }
    }

    pub(crate) fn invalid<E: std::fmt::Display>(
        what: &'static str,
    ) -> impl FnOnce(E) -> CheckError {
        move |e| CheckError::Invalid {
            what,
            reason: e.to_string(),
        }
    }
}

/// Spawns between two yields in a loop that starts one task per simulated user.
const SPAWNS_PER_YIELD: usize = 256;

/// Call after the `n`-th spawn of a long spawn loop: spawning never waits, so without a yield
/// the loop holds its worker until every session exists, and a Ctrl-C/SIGTERM raced against
/// the run (a `select!` in the same task) is not seen until then.
pub(crate) async fn pace_spawns(n: usize) {
    if n % SPAWNS_PER_YIELD == SPAWNS_PER_YIELD - 1 {
        tokio::task::yield_now().await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn a_long_spawn_loop_lets_other_tasks_run_before_it_ends() {
        let ran = Arc::new(AtomicBool::new(false));
        let flag = ran.clone();
        let other = tokio::spawn(async move { flag.store(true, Ordering::SeqCst) });
        let mut seen_during_loop = false;
        for n in 0..SPAWNS_PER_YIELD * 4 {
            pace_spawns(n).await;
            seen_during_loop |= ran.load(Ordering::SeqCst);
        }
        assert!(seen_during_loop, "the loop never let the other task run");
        let _ = other.await;
    }
}
