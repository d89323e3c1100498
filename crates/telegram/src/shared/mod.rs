//! What the features share, below them all: the error a handler returns, who and where an
//! update is from ([`ids`]), the user's account ([`account`]), submitting a generation
//! ([`submit`]), answering in a group or to a button press ([`reply`]), and the buttons'
//! callback data ([`buttons`]).
//!
//! It imports no feature and not the router: what one feature needs of another is found
//! here, or it belongs here. This file declares only the error types (the isolation judges
//! them, and imports nothing else of this layer).

pub(crate) mod account;
pub(crate) mod buttons;
pub(crate) mod ids;
pub(crate) mod reply;
pub(crate) mod submit;

/// What a handler may fail with (judged by [`crate::isolation`], logged by the dispatcher's
/// error handler).
pub(crate) type HandlerError = Box<dyn std::error::Error + Send + Sync>;
pub(crate) type HandlerResult = Result<(), HandlerError>;
