//! genbot's generation engine.
//!
//! - [`catalogue`]: the models users may pick, from TOML, checked entry by entry;
//! - [`replicate`]: the HTTP client for Replicate's predictions API (retries, backoff, 429s);
//! - [`limiter`]: the rate limiter on prediction creations (`REPLICATE_RATE_LIMIT`);
//! - [`Engine`]: submit → durable queue (the `generation_jobs` table) → fair dispatch under the
//!   global semaphore (`MAX_CONCURRENT_GENERATIONS`) and the per-user limit → prediction →
//!   result, with credits and the daily quota charged on submit and given back on failure, and
//!   restart recovery.
//!
//! The engine owns business rules; it reaches the database only through `genbot-store` and
//! `genbot-cache`, and knows nothing of Telegram: the front end reads [`JobEvent`]s.

pub mod catalogue;
mod engine;
mod error;
mod events;
pub mod limiter;
pub mod replicate;
mod scheduler;
mod stats;

pub use engine::{Engine, EngineConfig, GenerationRequest, Submitted};
pub use error::{CancelError, EngineError, SubmitError};
pub use events::{FailureReason, JobEvent};
pub use stats::EngineStats;
