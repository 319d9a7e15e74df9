//! The configuration types and their built-in defaults.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};

/// The effective configuration of the agent, after all layers are merged and validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Key `data_dir`: where the node keeps its state.
    pub data_dir: PathBuf,
    /// Key `http_addr`: the HTTP API listen address.
    pub http_addr: SocketAddr,
    /// Key `grpc_addr`: the gRPC (cluster) listen address.
    pub grpc_addr: SocketAddr,
    /// Key `node_name`: `None` means "use the hostname".
    pub node_name: Option<String>,
    /// Key `log_level`: a level or an `EnvFilter`-like list of `target=level` directives.
    pub log_level: String,
    /// Table `[raft]`.
    pub raft: RaftConfig,
}

/// Table `[raft]`: consensus timing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftConfig {
    pub heartbeat_interval_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    pub snapshot_after_entries: u64,
}

pub(crate) const DEFAULT_HTTP_ADDR: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 7070));
pub(crate) const DEFAULT_GRPC_ADDR: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 7071));
pub(crate) const DEFAULT_LOG_LEVEL: &str = "info";
pub(crate) const FALLBACK_DATA_DIR: &str = "/var/lib/cortex";

impl Default for RaftConfig {
    fn default() -> Self {
        RaftConfig {
            heartbeat_interval_ms: 250,
            election_timeout_min_ms: 1000,
            election_timeout_max_ms: 2000,
            snapshot_after_entries: 10_000,
        }
    }
}

impl Config {
    /// The built-in defaults. `env` is consulted for `XDG_DATA_HOME` and `HOME` only.
    pub(crate) fn defaults(env: &[(String, String)]) -> Config {
        Config {
            data_dir: data_dir_from(env),
            http_addr: DEFAULT_HTTP_ADDR,
            grpc_addr: DEFAULT_GRPC_ADDR,
            node_name: None,
            log_level: DEFAULT_LOG_LEVEL.to_owned(),
            raft: RaftConfig::default(),
        }
    }
}

/// The default `data_dir` for the environment of this process: what `load` starts from with
/// [`super::Sources::system`], before any layer sets `data_dir`.
pub fn default_data_dir() -> PathBuf {
    let env: Vec<(String, String)> = ["XDG_DATA_HOME", "HOME"]
        .into_iter()
        .filter_map(|name| {
            Some((
                name.to_owned(),
                std::env::var_os(name)?.to_string_lossy().into_owned(),
            ))
        })
        .collect();
    data_dir_from(&env)
}

/// `$XDG_DATA_HOME/cortex`, else `$HOME/.local/share/cortex`, else `/var/lib/cortex`. Empty or
/// relative values of the variables are ignored, as the XDG base directory spec asks.
fn data_dir_from(env: &[(String, String)]) -> PathBuf {
    let var = |name: &str| {
        env.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| Path::new(v.as_str()))
            .filter(|p| p.is_absolute())
    };
    if let Some(xdg) = var("XDG_DATA_HOME") {
        xdg.join("cortex")
    } else if let Some(home) = var("HOME") {
        home.join(".local/share/cortex")
    } else {
        PathBuf::from(FALLBACK_DATA_DIR)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn data_dir_default_follows_xdg_then_home_then_var_lib() {
        let both = env(&[("HOME", "/home/ann"), ("XDG_DATA_HOME", "/data/ann")]);
        assert_eq!(data_dir_from(&both), PathBuf::from("/data/ann/cortex"));
        let home = env(&[("HOME", "/home/ann"), ("XDG_DATA_HOME", "")]);
        assert_eq!(
            data_dir_from(&home),
            PathBuf::from("/home/ann/.local/share/cortex")
        );
        let relative = env(&[("HOME", "/home/ann"), ("XDG_DATA_HOME", "rel/dir")]);
        assert_eq!(
            data_dir_from(&relative),
            PathBuf::from("/home/ann/.local/share/cortex")
        );
        assert_eq!(
            data_dir_from(&env(&[("HOME", "")])),
            PathBuf::from("/var/lib/cortex")
        );
        assert_eq!(data_dir_from(&[]), PathBuf::from("/var/lib/cortex"));
    }

    #[test]
    fn raft_defaults() {
        let cfg = Config::defaults(&[]);
        assert_eq!(cfg.http_addr.to_string(), "127.0.0.1:7070");
        assert_eq!(cfg.grpc_addr.to_string(), "127.0.0.1:7071");
        assert_eq!(cfg.log_level, "info");
        assert_eq!(cfg.node_name, None);
        assert_eq!(
            cfg.raft,
            RaftConfig {
                heartbeat_interval_ms: 250,
                election_timeout_min_ms: 1000,
                election_timeout_max_ms: 2000,
                snapshot_after_entries: 10_000
            }
        );
    }
}
