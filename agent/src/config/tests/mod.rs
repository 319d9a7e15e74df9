//! Tests of `load` against the fixture trees under `tests/fixtures/config/`.

mod bench;
mod cluster;
mod mcp;
mod overrides;
mod precedence;
mod rejections;
mod tasks;

use std::path::PathBuf;

use super::{load, Config, FlagOverrides, Sources};

pub(super) const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/config");

/// A path under the fixture directory, as it appears in error messages.
pub(super) fn fixture(relative: &str) -> PathBuf {
    PathBuf::from(format!("{FIXTURES}/{relative}"))
}

/// Sources with the fixture root `root`, no kernel command line and an empty environment.
pub(super) fn sources(root: &str) -> Sources {
    Sources {
        root: fixture(root),
        cmdline: None,
        env: Vec::new(),
    }
}

pub(super) fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Flags with only `--config <fixture>` set.
pub(super) fn config_flag(relative: &str) -> FlagOverrides {
    FlagOverrides {
        config_file: Some(fixture(relative)),
        ..FlagOverrides::default()
    }
}

pub(super) fn load_ok(sources: &Sources, flags: &FlagOverrides) -> Config {
    match load(sources, flags) {
        Ok(cfg) => cfg,
        Err(e) => panic!("load failed: {e}"),
    }
}

/// The user-visible message of the error `load` must return.
pub(super) fn load_err(sources: &Sources, flags: &FlagOverrides) -> String {
    match load(sources, flags) {
        Ok(cfg) => panic!("load succeeded: {cfg:?}"),
        Err(e) => e.to_string(),
    }
}
