//! genbot's generation engine.
//!
//! - [`catalogue`]: the models users may pick, from TOML, checked entry by entry;
//! - [`replicate`]: the HTTP client for Replicate's predictions API (retries, backoff, 429s);
//! - [`limiter`]: the rate limiter on prediction creations (`REPLICATE_RATE_LIMIT`);
//! - [`image_input`]: a user's picture as a model input (image-to-image);
//! - [`Engine`]: submit (charge and insert in one transaction) → the durable queue shared by
//!   every replica (the `generation_jobs` table) → fair claims under `MAX_CONCURRENT_GENERATIONS`
//!   and the per-user limit counted over all replicas → one leased owner per running job →
//!   at most one prediction per job → outcome and exact refund in one transaction; running jobs
//!   of a dead replica are taken over when their lease expires.
//!
//! The engine owns business rules; it reaches the database only through `genbot-store` and
//! `genbot-cache`, and knows nothing of Telegram: the front end reads [`JobEvent`]s.

// Prompts, options and settings values are any Unicode: a byte-index slice of them can cut a
// character in half and panic.
#![deny(clippy::string_slice)]

pub mod catalogue;
mod engine;
mod error;
mod events;
mod fair;
pub mod image_input;
pub mod limiter;
pub mod replicate;
mod stats;
mod until_written;

pub use engine::{Engine, EngineConfig, GenerationRequest, ReplicaConfig, Submitted};
pub use error::{CancelError, EngineError, SubmitError};
pub use events::{FailureReason, JobEvent};
pub use stats::EngineStats;
pub use until_written::{until_written, Unwritten};
