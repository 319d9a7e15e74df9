//! Where a configuration value came from, for error messages.

use std::fmt;
use std::path::PathBuf;

/// The layer that supplied a value. Its `Display` form is what error messages print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The built-in default.
    Default,
    /// A TOML file (any of the file layers, including `--config`).
    File(PathBuf),
    /// The kernel command line.
    Cmdline,
    /// An environment variable, by name (e.g. `CORTEX_NODE_NAME`).
    Env(String),
    /// A command-line flag, by spelling (e.g. `--node-name`).
    Flag(&'static str),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("built-in default"),
            Origin::File(path) => write!(f, "{}", path.display()),
            Origin::Cmdline => f.write_str("kernel command line"),
            Origin::Env(name) => write!(f, "environment variable {name}"),
            Origin::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}
