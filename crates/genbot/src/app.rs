//! The bot's assembly as the binary reports it: what the operator fixes (exit 2) apart from
//! what failed.

use genbot_assembly::AssemblyError;

use crate::UsageError;

/// A setting the bot cannot run with becomes a [`UsageError`]; an unreachable database or an
/// engine that did not start stays a failure, with its cause.
pub(crate) fn usage_or_failure(error: AssemblyError) -> anyhow::Error {
    match error {
        AssemblyError::Config(text) => UsageError(text).into(),
        other => anyhow::Error::new(other),
    }
}
