//! The error type of configuration loading. Every message names the source and, where there is
//! one, the key.

use std::io;
use std::path::PathBuf;

use super::origin::Origin;

/// Why the configuration could not be loaded. The binary exits with 78 (`EX_CONFIG`) on any of
/// these.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A configuration file or directory exists but could not be read.
    #[error("{}: cannot read: {error}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        error: io::Error,
    },

    /// The file given with `--config` does not exist.
    #[error("flag --config: {}: no such file", path.display())]
    MissingConfigFile { path: PathBuf },

    /// A file is not valid TOML.
    #[error("{}:{line}:{column}: TOML syntax error: {message}", path.display())]
    Syntax {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },

    /// A key that the schema does not know. `known` lists the keys that would be accepted there.
    #[error("{origin}: unknown key \"{key}\" ({known})")]
    UnknownKey {
        origin: Origin,
        key: String,
        known: String,
    },

    /// A value of the wrong type (e.g. a number where an address is expected).
    #[error("{origin}: key {key}: expected {expected}, got {got}")]
    WrongType {
        origin: Origin,
        key: String,
        expected: &'static str,
        got: String,
    },

    /// The kernel command line or the environment tried to set a whole table.
    #[error("{origin}: key {key} is a table; set its keys one by one, e.g. {example}")]
    TableKey {
        origin: Origin,
        key: String,
        example: String,
    },

    /// `cortex.KEY` on the kernel command line without `=VALUE`.
    #[error("kernel command line: {word} has no value (expected {word}=VALUE)")]
    CmdlineMissingValue { word: String },

    /// A `cortex.` parameter on the kernel command line whose double quote is never closed.
    #[error("kernel command line: unterminated double quote in {word}")]
    CmdlineUnterminatedQuote { word: String },

    /// A well-typed value that fails validation after all layers were merged.
    #[error("{origin}: key {key}: invalid value {value}: {reason}")]
    Invalid {
        origin: Origin,
        key: &'static str,
        value: String,
        reason: String,
    },
}
