//! The key schema: which keys exist, how they nest, and what type each one has.
//!
//! Values from the kernel command line and the environment are plain strings; `merge::Merged::set`
//! converts them to the type of the key they are set for, never by guessing from their look.

/// A leaf key of the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Key {
    DataDir,
    HttpAddr,
    GrpcAddr,
    NodeName,
    LogLevel,
    Join,
    Token,
    Role,
    LeaveOnShutdown,
    HeartbeatIntervalMs,
    ElectionTimeoutMinMs,
    ElectionTimeoutMaxMs,
    SnapshotAfterEntries,
    TargetVoters,
    ClusterHeartbeatIntervalMs,
    SuspectAfterMs,
    DownAfterMs,
    VoterGraceMs,
    BenchOnStart,
    TaskLogLimitBytes,
    TaskDefaultUser,
    TaskAllowRoot,
    McpAllowedHosts,
}

impl Key {
    /// The number of keys; `McpAllowedHosts` must stay the last variant.
    pub(crate) const COUNT: usize = Key::McpAllowedHosts as usize + 1;

    /// The full dotted key path, as written in messages (`raft.heartbeat_interval_ms`).
    pub(crate) fn path(self) -> &'static str {
        match self {
            Key::DataDir => "data_dir",
            Key::HttpAddr => "http_addr",
            Key::GrpcAddr => "grpc_addr",
            Key::NodeName => "node_name",
            Key::LogLevel => "log_level",
            Key::Join => "join",
            Key::Token => "token",
            Key::Role => "role",
            Key::LeaveOnShutdown => "leave_on_shutdown",
            Key::HeartbeatIntervalMs => "raft.heartbeat_interval_ms",
            Key::ElectionTimeoutMinMs => "raft.election_timeout_min_ms",
            Key::ElectionTimeoutMaxMs => "raft.election_timeout_max_ms",
            Key::SnapshotAfterEntries => "raft.snapshot_after_entries",
            Key::TargetVoters => "cluster.target_voters",
            Key::ClusterHeartbeatIntervalMs => "cluster.heartbeat_interval_ms",
            Key::SuspectAfterMs => "cluster.suspect_after_ms",
            Key::DownAfterMs => "cluster.down_after_ms",
            Key::VoterGraceMs => "cluster.voter_grace_ms",
            Key::BenchOnStart => "bench.on_start",
            Key::TaskLogLimitBytes => "tasks.log_limit_bytes",
            Key::TaskDefaultUser => "tasks.default_user",
            Key::TaskAllowRoot => "tasks.allow_root",
            Key::McpAllowedHosts => "mcp.allowed_hosts",
        }
    }

    /// Whether the value is a secret that no message or output may show.
    pub(crate) fn is_secret(self) -> bool {
        self == Key::Token
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// A node of the key tree: a leaf key or a table of further entries.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Node {
    Leaf(Key),
    Table(&'static [(&'static str, Node)]),
}

const RAFT: &[(&str, Node)] = &[
    ("heartbeat_interval_ms", Node::Leaf(Key::HeartbeatIntervalMs)),
    ("election_timeout_min_ms", Node::Leaf(Key::ElectionTimeoutMinMs)),
    ("election_timeout_max_ms", Node::Leaf(Key::ElectionTimeoutMaxMs)),
    ("snapshot_after_entries", Node::Leaf(Key::SnapshotAfterEntries)),
];

const CLUSTER: &[(&str, Node)] = &[
    ("target_voters", Node::Leaf(Key::TargetVoters)),
    (
        "heartbeat_interval_ms",
        Node::Leaf(Key::ClusterHeartbeatIntervalMs),
    ),
    ("suspect_after_ms", Node::Leaf(Key::SuspectAfterMs)),
    ("down_after_ms", Node::Leaf(Key::DownAfterMs)),
    ("voter_grace_ms", Node::Leaf(Key::VoterGraceMs)),
];

const BENCH: &[(&str, Node)] = &[("on_start", Node::Leaf(Key::BenchOnStart))];

const TASKS: &[(&str, Node)] = &[
    ("log_limit_bytes", Node::Leaf(Key::TaskLogLimitBytes)),
    ("default_user", Node::Leaf(Key::TaskDefaultUser)),
    ("allow_root", Node::Leaf(Key::TaskAllowRoot)),
];

const MCP: &[(&str, Node)] = &[("allowed_hosts", Node::Leaf(Key::McpAllowedHosts))];

/// The top-level table.
pub(crate) const ROOT: &[(&str, Node)] = &[
    ("data_dir", Node::Leaf(Key::DataDir)),
    ("http_addr", Node::Leaf(Key::HttpAddr)),
    ("grpc_addr", Node::Leaf(Key::GrpcAddr)),
    ("node_name", Node::Leaf(Key::NodeName)),
    ("log_level", Node::Leaf(Key::LogLevel)),
    ("join", Node::Leaf(Key::Join)),
    ("token", Node::Leaf(Key::Token)),
    ("role", Node::Leaf(Key::Role)),
    ("leave_on_shutdown", Node::Leaf(Key::LeaveOnShutdown)),
    ("raft", Node::Table(RAFT)),
    ("cluster", Node::Table(CLUSTER)),
    ("bench", Node::Table(BENCH)),
    ("tasks", Node::Table(TASKS)),
    ("mcp", Node::Table(MCP)),
];

/// The outcome of looking up a dotted key path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Found {
    Leaf(Key),
    /// The path names a table (e.g. `raft`), not a value.
    Table,
}

/// The text that goes in parentheses after an unknown key: `known keys in [raft]: a, b, …`.
pub(crate) fn known_keys(table: &str, entries: &[(&str, Node)]) -> String {
    let names: Vec<&str> = entries.iter().map(|(name, _)| *name).collect();
    if table.is_empty() {
        format!("known keys: {}", names.join(", "))
    } else {
        format!("known keys in [{table}]: {}", names.join(", "))
    }
}

/// Looks up `segments` in the tree. `matches(schema_name, segment)` compares one segment.
/// On failure returns the parenthesised hint for the "unknown key" message.
pub(crate) fn resolve<'s>(
    segments: impl IntoIterator<Item = &'s str>,
    matches: fn(&str, &str) -> bool,
) -> Result<Found, String> {
    let mut entries = ROOT;
    let mut table = String::new();
    let mut leaf: Option<Key> = None;
    for segment in segments {
        if let Some(key) = leaf {
            return Err(format!("{} is not a table", key.path()));
        }
        match entries.iter().find(|(name, _)| matches(name, segment)) {
            None => return Err(known_keys(&table, entries)),
            Some((_, Node::Leaf(key))) => leaf = Some(*key),
            Some((name, Node::Table(sub))) => {
                if !table.is_empty() {
                    table.push('.');
                }
                table.push_str(name);
                entries = sub;
            }
        }
    }
    Ok(leaf.map_or(Found::Table, Found::Leaf))
}

/// An example leaf below table `path`, for "set its keys one by one" hints.
pub(crate) fn first_leaf_below(path: &str) -> Option<Key> {
    let mut entries = ROOT;
    for segment in path.split('.') {
        match entries.iter().find(|(name, _)| *name == segment)?.1 {
            Node::Table(sub) => entries = sub,
            Node::Leaf(_) => return None,
        }
    }
    entries.iter().find_map(|(_, node)| match node {
        Node::Leaf(key) => Some(*key),
        Node::Table(_) => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(name: &str, segment: &str) -> bool {
        name == segment
    }

    #[test]
    fn every_key_resolves_from_its_path() {
        let all = [
            Key::DataDir,
            Key::HttpAddr,
            Key::GrpcAddr,
            Key::NodeName,
            Key::LogLevel,
            Key::Join,
            Key::Token,
            Key::Role,
            Key::LeaveOnShutdown,
            Key::HeartbeatIntervalMs,
            Key::ElectionTimeoutMinMs,
            Key::ElectionTimeoutMaxMs,
            Key::SnapshotAfterEntries,
            Key::TargetVoters,
            Key::ClusterHeartbeatIntervalMs,
            Key::SuspectAfterMs,
            Key::DownAfterMs,
            Key::VoterGraceMs,
            Key::BenchOnStart,
            Key::TaskLogLimitBytes,
            Key::TaskDefaultUser,
            Key::TaskAllowRoot,
            Key::McpAllowedHosts,
        ];
        assert_eq!(all.len(), Key::COUNT);
        for (i, key) in all.iter().enumerate() {
            assert_eq!(key.index(), i);
            assert_eq!(resolve(key.path().split('.'), exact), Ok(Found::Leaf(*key)));
            assert_eq!(key.is_secret(), *key == Key::Token);
        }
    }

    #[test]
    fn lookup_failures_explain_themselves() {
        assert_eq!(resolve(["raft"], exact), Ok(Found::Table));
        assert_eq!(
            resolve(["raft", "heartbeat"], exact),
            Err(
                "known keys in [raft]: heartbeat_interval_ms, election_timeout_min_ms, \
                 election_timeout_max_ms, snapshot_after_entries"
                    .to_owned()
            )
        );
        assert_eq!(
            resolve(["nope"], exact),
            Err(
                "known keys: data_dir, http_addr, grpc_addr, node_name, log_level, join, token, role, \
                 leave_on_shutdown, raft, cluster, bench, tasks, mcp"
                    .to_owned()
            )
        );
        assert_eq!(resolve(["cluster"], exact), Ok(Found::Table));
        assert_eq!(
            resolve(["cluster", "heartbeat"], exact),
            Err(
                "known keys in [cluster]: target_voters, heartbeat_interval_ms, suspect_after_ms, \
                 down_after_ms, voter_grace_ms"
                    .to_owned()
            )
        );
        assert_eq!(
            resolve(["cluster", "heartbeat_interval_ms"], exact),
            Ok(Found::Leaf(Key::ClusterHeartbeatIntervalMs))
        );
        assert_eq!(
            resolve(["http_addr", "port"], exact),
            Err("http_addr is not a table".to_owned())
        );
        assert_eq!(first_leaf_below("raft"), Some(Key::HeartbeatIntervalMs));
        assert_eq!(first_leaf_below("cluster"), Some(Key::TargetVoters));
        assert_eq!(first_leaf_below("data_dir"), None);
        assert_eq!(resolve(["bench"], exact), Ok(Found::Table));
        assert_eq!(
            resolve(["bench", "quick"], exact),
            Err("known keys in [bench]: on_start".to_owned())
        );
        assert_eq!(first_leaf_below("bench"), Some(Key::BenchOnStart));
    }
}
