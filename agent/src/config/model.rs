//! The configuration types and their built-in defaults.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The effective configuration of the agent, after all layers are merged and validated.
///
/// Its `Debug` form shows `token` as `"<redacted>"`.
#[derive(Clone, PartialEq, Eq)]
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
    /// Key `join`: coordinator gRPC addresses (`HOST:PORT`) to join the cluster through; empty
    /// means "join nobody".
    pub join: Vec<String>,
    /// Key `token`: the join token. A secret: never printed (see [`Config::to_toml`]).
    pub token: Option<String>,
    /// Key `role`.
    pub role: Role,
    /// Key `leave_on_shutdown`: an agent that stops cleanly leaves the cluster.
    pub leave_on_shutdown: bool,
    /// Table `[raft]`.
    pub raft: RaftConfig,
    /// Table `[cluster]`.
    pub cluster: ClusterConfig,
    /// Table `[bench]`.
    pub bench: BenchConfig,
    /// Table `[tasks]`.
    pub tasks: TasksConfig,
    /// Table `[mcp]`.
    pub mcp: McpConfig,
}

/// Key `role`: what this node does in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Coordinator,
    Worker,
}

impl Role {
    /// The spelling in configuration values: `"coordinator"` or `"worker"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Coordinator => "coordinator",
            Role::Worker => "worker",
        }
    }
}

impl FromStr for Role {
    type Err = String;

    /// Accepts exactly the spellings of [`Role::as_str`].
    fn from_str(s: &str) -> Result<Role, String> {
        match s {
            "coordinator" => Ok(Role::Coordinator),
            "worker" => Ok(Role::Worker),
            _ => Err(format!("unknown role {s:?} (expected coordinator or worker)")),
        }
    }
}

/// Table `[raft]`: consensus timing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftConfig {
    pub heartbeat_interval_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    pub snapshot_after_entries: u64,
}

/// Table `[cluster]`: membership and node liveness. `heartbeat_interval_ms` here is the node
/// liveness heartbeat, not the Raft one (`raft.heartbeat_interval_ms`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// How many voters the cluster keeps: 1, 3 or 5.
    pub target_voters: u64,
    pub heartbeat_interval_ms: u64,
    /// A node without a heartbeat for this long is SUSPECT.
    pub suspect_after_ms: u64,
    /// A node without a heartbeat for this long is DOWN.
    pub down_after_ms: u64,
    /// How long a voter may stay DOWN before it is replaced.
    pub voter_grace_ms: u64,
}

/// Table `[bench]`: the node's self-benchmark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenchConfig {
    /// Run the quick benchmark when the node starts (in the background; an agent that has not
    /// joined yet runs it beside its first join request, whose polls carry the figures) and
    /// publish the summary.
    pub on_start: bool,
}

/// Table `[tasks]`: defaults for tasks submitted through this coordinator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TasksConfig {
    /// Output kept per attempt (stdout and stderr together) when a task does not set
    /// `log_limit_bytes`; what is cut is marked in the log. Applied at submit, so the task
    /// keeps it wherever it runs. 1 ..= 64 MiB.
    pub log_limit_bytes: u64,
    /// The user exec tasks run as on this node when their spec names none (`""` = the agent's
    /// own user). Default `nobody`: a task is not trusted with root on the machine.
    pub default_user: String,
    /// Whether a task may ask to run as root on this node (`user = "root"`). Default false.
    pub allow_root: bool,
}

impl Default for TasksConfig {
    fn default() -> Self {
        TasksConfig {
            log_limit_bytes: cortex_model::task::apply_defaults::DEFAULT_LOG_LIMIT_BYTES,
            default_user: "nobody".into(),
            allow_root: false,
        }
    }
}

/// Table `[mcp]`: the MCP endpoint (`/mcp` on the HTTP listener).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct McpConfig {
    /// Host names `/mcp` answers to besides IP addresses, `localhost` and the machine's own
    /// host name (DNS aliases, a reverse proxy's name); lower case, without a port.
    pub allowed_hosts: Vec<String>,
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig { on_start: true }
    }
}

pub(crate) const DEFAULT_HTTP_ADDR: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 7070));
pub(crate) const DEFAULT_GRPC_ADDR: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 7071));
pub(crate) const DEFAULT_LOG_LEVEL: &str = "info";
pub(crate) const FALLBACK_DATA_DIR: &str = "/var/lib/cortex";
/// What `to_toml` and `Debug` print instead of the token.
pub(crate) const REDACTED: &str = "<redacted>";

impl Default for RaftConfig {
    fn default() -> Self {
        RaftConfig {
            heartbeat_interval_ms: 200,
            election_timeout_min_ms: 500,
            election_timeout_max_ms: 1000,
            snapshot_after_entries: 10_000,
        }
    }
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            target_voters: 3,
            heartbeat_interval_ms: 1000,
            suspect_after_ms: 2000,
            down_after_ms: 5000,
            voter_grace_ms: 30_000,
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
            join: Vec::new(),
            token: None,
            role: Role::Worker,
            leave_on_shutdown: false,
            raft: RaftConfig::default(),
            cluster: ClusterConfig::default(),
            bench: BenchConfig::default(),
            tasks: TasksConfig::default(),
            mcp: McpConfig::default(),
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Destructured so that a new field cannot be forgotten here.
        let Config {
            data_dir,
            http_addr,
            grpc_addr,
            node_name,
            log_level,
            join,
            token,
            role,
            leave_on_shutdown,
            raft,
            cluster,
            bench,
            tasks,
            mcp,
        } = self;
        f.debug_struct("Config")
            .field("data_dir", data_dir)
            .field("http_addr", http_addr)
            .field("grpc_addr", grpc_addr)
            .field("node_name", node_name)
            .field("log_level", log_level)
            .field("join", join)
            .field("token", &token.as_ref().map(|_| REDACTED))
            .field("role", role)
            .field("leave_on_shutdown", leave_on_shutdown)
            .field("raft", raft)
            .field("cluster", cluster)
            .field("bench", bench)
            .field("tasks", tasks)
            .field("mcp", mcp)
            .finish()
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
                heartbeat_interval_ms: 200,
                election_timeout_min_ms: 500,
                election_timeout_max_ms: 1000,
                snapshot_after_entries: 10_000
            }
        );
    }

    #[test]
    fn cluster_defaults() {
        let cfg = Config::defaults(&[]);
        assert_eq!(cfg.join, Vec::<String>::new());
        assert_eq!(cfg.token, None);
        assert_eq!(cfg.role, Role::Worker);
        assert!(!cfg.leave_on_shutdown);
        assert_eq!(
            cfg.cluster,
            ClusterConfig {
                target_voters: 3,
                heartbeat_interval_ms: 1000,
                suspect_after_ms: 2000,
                down_after_ms: 5000,
                voter_grace_ms: 30_000
            }
        );
        assert_eq!(ClusterConfig::default(), cfg.cluster);
    }

    #[test]
    fn bench_defaults() {
        let cfg = Config::defaults(&[]);
        assert_eq!(cfg.bench, BenchConfig { on_start: true });
        assert_eq!(BenchConfig::default(), cfg.bench);
    }

    #[test]
    fn roles_spell_both_ways() {
        for role in [Role::Coordinator, Role::Worker] {
            assert_eq!(role.as_str().parse(), Ok(role));
        }
        assert_eq!(Role::Coordinator.as_str(), "coordinator");
        assert_eq!(Role::Worker.as_str(), "worker");
        assert_eq!(
            "Worker".parse::<Role>(),
            Err("unknown role \"Worker\" (expected coordinator or worker)".to_owned())
        );
    }

    #[test]
    fn debug_redacts_the_token() {
        let cfg = Config {
            token: Some("tok-Zq8vX3-debug".to_owned()),
            ..Config::defaults(&[])
        };
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("tok-Zq8vX3-debug"), "{shown}");
        assert!(shown.contains("token: Some(\"<redacted>\")"), "{shown}");
        assert!(format!("{:?}", Config::defaults(&[])).contains("token: None"));
    }
}
