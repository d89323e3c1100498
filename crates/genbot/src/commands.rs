//! One module per subcommand.

pub(crate) mod bench;
pub(crate) mod config_check;
pub(crate) mod demo;
pub(crate) mod doctor;
pub(crate) mod inbox;
pub(crate) mod mock;
pub(crate) mod serve;
pub(crate) mod webhook;
