//! The seed's thirteen tests and the fault tests ([`faults`]). Each takes the run's [`crate::context::Context`] and returns a
//! graded [`crate::outcome::TestOutcome`]; none of them fails the run by erroring: a test that
//! cannot run says why and is graded NEEDS OPTIMIZATION.

pub mod cache_settings;
pub mod concurrent_users;
pub mod faults;
pub mod live_replicate;
pub mod model_config;
pub mod operation_simulation;
pub mod queue;
pub mod rate_limiting;
pub mod semaphores;
pub mod storage;
pub mod system_limits;
