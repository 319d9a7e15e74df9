//! Layered configuration.
//!
//! Layers, lowest precedence first; later layers win key by key and tables merge deeply:
//!
//! 1. built-in defaults;
//! 2. `<root>/usr/lib/cortex/config.d/*.toml`, sorted by file name;
//! 3. `<root>/etc/cortex/config.toml`;
//! 4. `<root>/etc/cortex/config.d/*.toml`, sorted by file name;
//! 5. the file given with `--config` (it must exist);
//! 6. the kernel command line, `cortex.KEY=VALUE` ([`cmdline`]);
//! 7. the environment, `CORTEX_KEY=VALUE` ([`env`]; the key `token` is `CORTEX_JOIN_TOKEN`);
//! 8. command-line flags ([`FlagOverrides`]).
//!
//! Missing files and directories are skipped. Unknown keys, wrong types and invalid values are
//! errors that name the source and the key; the binary exits with 78 (`EX_CONFIG`) on them.
//! `docs/configuration.md` is the user-facing description.

mod cmdline;
mod env;
mod error;
mod flags;
mod layers;
mod merge;
mod model;
mod origin;
mod schema;
mod show;
mod sources;
mod validate;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;

pub use error::ConfigError;
pub use flags::FlagOverrides;
pub use model::{default_data_dir, Config};
// Public API that the rest of the binary may not name yet (it reaches them through fields).
#[allow(unused_imports)]
pub use model::{BenchConfig, ClusterConfig, McpConfig, RaftConfig, Role, TasksConfig};
#[allow(unused_imports)]
pub use origin::Origin;
pub use sources::Sources;

use merge::Merged;

/// Builds the effective configuration from `sources` and `flags`, then validates it.
pub fn load(sources: &Sources, flags: &FlagOverrides) -> Result<Config, ConfigError> {
    let mut merged = Merged::new(Config::defaults(&sources.env));
    for file in layers::discover(&sources.root, flags.config_file.as_deref())? {
        layers::apply_file(&mut merged, &file)?;
    }
    if let Some(line) = &sources.cmdline {
        cmdline::apply(&mut merged, line)?;
    }
    env::apply(&mut merged, &sources.env)?;
    flags::apply(&mut merged, flags);
    validate::validate(&merged)?;
    Ok(merged.config)
}
