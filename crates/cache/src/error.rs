//! Cache errors. None of them is ever shown to a bot user: [`crate::Users`] falls back to the
//! database.

/// Why a cache operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CacheError {
    /// The Redis URL was refused by the client library.
    #[error("invalid Redis configuration: {0}")]
    Config(String),
    /// Redis did not answer (connection refused, timed out, or skipped while it recovers).
    #[error("redis unavailable: {0}")]
    Unavailable(String),
    /// Redis answered with an error.
    #[error("redis error: {0}")]
    Redis(String),
    /// A cached value could not be decoded (written by another version?); it is treated as a miss
    /// by callers and overwritten.
    #[error("undecodable cached value for user {id}: {reason}")]
    Decode { id: i64, reason: String },
}
