//! The flag layer: values given on the `cortex` command line, highest precedence.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::merge::Merged;
use super::origin::Origin;
use super::schema::Key;

/// Values from command-line flags (highest precedence). All optional.
///
/// Error messages call them `--data-dir`, `--http-addr`, `--grpc-addr`, `--node-name`,
/// `--log-level` and `--config` (for `config_file`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlagOverrides {
    pub data_dir: Option<PathBuf>,
    pub http_addr: Option<SocketAddr>,
    pub grpc_addr: Option<SocketAddr>,
    pub node_name: Option<String>,
    pub log_level: Option<String>,
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
    for (key, flag) in set {
        merged.mark(key, Origin::Flag(flag));
    }
}
