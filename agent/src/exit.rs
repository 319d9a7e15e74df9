//! Exit codes. Distinct codes let systemd (`RestartPreventExitStatus=78`) and scripts tell a
//! bad configuration from a transient failure.

use crate::client::Unavailable;
use crate::config::ConfigError;

/// A runtime failure (the default).
pub const RUNTIME: u8 = 1;
/// A usage error (clap's own code for bad flags).
#[allow(dead_code)]
pub const USAGE: u8 = 2;
/// No Cortex node answered at the given address (EX_UNAVAILABLE).
pub const UNAVAILABLE: u8 = 69;
/// The configuration is invalid (EX_CONFIG): restarting will not help.
pub const CONFIG: u8 = 78;

pub fn classify(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if cause.downcast_ref::<ConfigError>().is_some() {
            return CONFIG;
        }
        if cause.downcast_ref::<Unavailable>().is_some() {
            return UNAVAILABLE;
        }
    }
    RUNTIME
}
