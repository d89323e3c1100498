//! One module per subcommand.

pub(crate) mod config_check;
pub(crate) mod mock;
