//! The flag layer: values given on the `cortex` command line, highest precedence.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use super::merge::Merged;
use super::model::{Role, REDACTED};
use super::origin::Origin;
use super::schema::Key;

/// Values from command-line flags (highest precedence). All optional.
///
/// Error messages call them `--data-dir`, `--http-addr`, `--grpc-addr`, `--node-name`,
/// `--log-level`, `--join`, `--token`, `--role` and `--config` (for `config_file`).
///
/// Its `Debug` form shows `token` as `"<redacted>"`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct FlagOverrides {
    pub data_dir: Option<PathBuf>,
    pub http_addr: Option<SocketAddr>,
    pub grpc_addr: Option<SocketAddr>,
    pub node_name: Option<String>,
    pub log_level: Option<String>,
    /// Replaces the whole `join` list (it is not appended to the lists of lower layers).
    pub join: Option<Vec<String>>,
    /// The join token (a secret).
    pub token: Option<String>,
    pub role: Option<Role>,
    /// An extra TOML file applied after the system files; it must exist.
    pub config_file: Option<PathBuf>,
}

/// Assigns every flag that was given. Flags are already typed, so this cannot fail; validation
/// comes afterwards.
pub(crate) fn apply(merged: &mut Merged, flags: &FlagOverrides) {
    let cfg = &mut merged.config;
    let mut set = Vec::new();
    if let Some(v) = &flags.data_dir {
        cfg.data_dir = v.clone();
        set.push((Key::DataDir, "--data-dir"));
    }
    if let Some(v) = flags.http_addr {
        cfg.http_addr = v;
        set.push((Key::HttpAddr, "--http-addr"));
    }
    if let Some(v) = flags.grpc_addr {
        cfg.grpc_addr = v;
        set.push((Key::GrpcAddr, "--grpc-addr"));
    }
    if let Some(v) = &flags.node_name {
        cfg.node_name = Some(v.clone());
        set.push((Key::NodeName, "--node-name"));
    }
    if let Some(v) = &flags.log_level {
        cfg.log_level = v.clone();
        set.push((Key::LogLevel, "--log-level"));
    }
    if let Some(v) = &flags.join {
        cfg.join = v.clone();
        set.push((Key::Join, "--join"));
    }
    if let Some(v) = &flags.token {
        cfg.token = Some(v.clone());
        set.push((Key::Token, "--token"));
    }
    if let Some(v) = flags.role {
        cfg.role = v;
        set.push((Key::Role, "--role"));
    }
    for (key, flag) in set {
        merged.mark(key, Origin::Flag(flag));
    }
}

impl fmt::Debug for FlagOverrides {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Destructured so that a new field cannot be forgotten here.
        let FlagOverrides {
            data_dir,
            http_addr,
            grpc_addr,
            node_name,
            log_level,
            join,
            token,
            role,
            config_file,
        } = self;
        f.debug_struct("FlagOverrides")
            .field("data_dir", data_dir)
            .field("http_addr", http_addr)
            .field("grpc_addr", grpc_addr)
            .field("node_name", node_name)
            .field("log_level", log_level)
            .field("join", join)
            .field("token", &token.as_ref().map(|_| REDACTED))
            .field("role", role)
            .field("config_file", config_file)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_the_token() {
        let flags = FlagOverrides {
            token: Some("tok-Zq8vX3-flag".to_owned()),
            ..FlagOverrides::default()
        };
        let shown = format!("{flags:?}");
        assert!(!shown.contains("tok-Zq8vX3-flag"), "{shown}");
        assert!(shown.contains("token: Some(\"<redacted>\")"), "{shown}");
    }
}
