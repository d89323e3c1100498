//! Typed settings for genbot.
//!
//! This crate owns the one place where configuration enters the program: every variable
//! PRODUCT.md lists is read from the environment or an optional `genbot.toml`, parsed into
//! a typed [`Settings`] and validated once, at start-up. An invalid value becomes a
//! [`ConfigError`] naming the variable, the value and what is allowed.
//!
//! Secrets (bot and Replicate tokens, passwords inside URLs) are wrapped so that neither
//! `Debug` nor `Display` can print them; [`Settings::effective`] lists the settings the way
//! `genbot config check` shows them, redacted.
//!
//! It must not touch anything beyond reading: no connections, no files except the ones it
//! is told to read (`genbot.toml`, and `MODELS_FILE` only to check that it can be read).

// Environment values and URLs are any text: a byte-index slice of them can cut a character in
// half and panic.
#![deny(clippy::string_slice)]

mod error;
mod keys;
mod parse;
mod settings;
mod sources;
mod urls;

pub use error::ConfigError;
pub use keys::Key;
pub use parse::{is_http_with_host, replicate_webhook_key, telegram_secret_token, StarsPackage};
pub use settings::{EffectiveSetting, Settings};
pub use sources::{Origin, Sources, CONFIG_FILE_VARIABLE};
pub use urls::{redact_urls_in, DatabaseUrl, RedactedUrl};

pub use secrecy::{ExposeSecret, SecretString};
