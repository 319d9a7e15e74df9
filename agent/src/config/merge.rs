//! Applying values to the configuration one key at a time, remembering which layer set each key.
//!
//! Because every layer assigns leaf keys individually, tables merge deeply: a layer that sets
//! `raft.heartbeat_interval_ms` leaves the other `[raft]` keys of lower layers in place.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::error::ConfigError;
use super::model::{Config, Role};
use super::origin::Origin;
use super::schema::Key;

/// A value before conversion: from a TOML file, or a string from the kernel command line or the
/// environment.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Raw<'a> {
    Toml(&'a toml::Value),
    Text(&'a str),
}

/// The configuration being built, plus the origin of every key.
#[derive(Debug)]
pub(crate) struct Merged {
    pub(crate) config: Config,
    origins: [Origin; Key::COUNT],
}

impl Merged {
    pub(crate) fn new(defaults: Config) -> Merged {
        Merged {
            config: defaults,
            origins: std::array::from_fn(|_| Origin::Default),
        }
    }

    /// The layer that last set `key`.
    pub(crate) fn origin(&self, key: Key) -> &Origin {
        &self.origins[key.index()]
    }

    /// Records that `origin` set `key` (for values assigned directly, like flags).
    pub(crate) fn mark(&mut self, key: Key, origin: Origin) {
        self.origins[key.index()] = origin;
    }

    /// Converts `raw` to the type of `key` (strings are parsed according to the key, never by their
    /// look) and assigns it.
    pub(crate) fn set(&mut self, key: Key, raw: Raw<'_>, origin: &Origin) -> Result<(), ConfigError> {
        let expected = expected(key);
        let wrong_got = |got: String| ConfigError::WrongType {
            origin: origin.clone(),
            key: key.path().to_owned(),
            expected,
            got,
        };
        let wrong = || {
            wrong_got(if key.is_secret() {
                describe_kind(raw)
            } else {
                describe(raw)
            })
        };
        let text = || raw.text().ok_or_else(wrong);
        let addr = || text()?.parse::<SocketAddr>().map_err(|_| wrong());
        let number = || raw.u64().ok_or_else(wrong);
        let cfg = &mut self.config;
        match key {
            Key::DataDir => cfg.data_dir = PathBuf::from(text()?),
            Key::HttpAddr => cfg.http_addr = addr()?,
            Key::GrpcAddr => cfg.grpc_addr = addr()?,
            Key::NodeName => cfg.node_name = Some(text()?.to_owned()),
            Key::LogLevel => cfg.log_level = text()?.to_owned(),
            Key::Join => cfg.join = raw.list().map_err(wrong_got)?,
            Key::Token => cfg.token = Some(text()?.to_owned()),
            Key::Role => cfg.role = text()?.parse::<Role>().map_err(|_| wrong())?,
            Key::LeaveOnShutdown => cfg.leave_on_shutdown = raw.bool().ok_or_else(wrong)?,
            Key::HeartbeatIntervalMs => cfg.raft.heartbeat_interval_ms = number()?,
            Key::ElectionTimeoutMinMs => cfg.raft.election_timeout_min_ms = number()?,
            Key::ElectionTimeoutMaxMs => cfg.raft.election_timeout_max_ms = number()?,
            Key::SnapshotAfterEntries => cfg.raft.snapshot_after_entries = number()?,
            Key::TargetVoters => cfg.cluster.target_voters = number()?,
            Key::ClusterHeartbeatIntervalMs => cfg.cluster.heartbeat_interval_ms = number()?,
            Key::SuspectAfterMs => cfg.cluster.suspect_after_ms = number()?,
            Key::DownAfterMs => cfg.cluster.down_after_ms = number()?,
            Key::VoterGraceMs => cfg.cluster.voter_grace_ms = number()?,
            Key::BenchOnStart => cfg.bench.on_start = raw.bool().ok_or_else(wrong)?,
            Key::TaskLogLimitBytes => cfg.tasks.log_limit_bytes = number()?,
            Key::TaskDefaultUser => cfg.tasks.default_user = text()?.to_owned(),
            Key::TaskAllowRoot => cfg.tasks.allow_root = raw.bool().ok_or_else(wrong)?,
            Key::McpAllowedHosts => cfg.mcp.allowed_hosts = raw.list().map_err(wrong_got)?,
        }
        self.mark(key, origin.clone());
        Ok(())
    }
}

impl<'a> Raw<'a> {
    fn text(self) -> Option<&'a str> {
        match self {
            Raw::Text(s) => Some(s),
            Raw::Toml(v) => v.as_str(),
        }
    }

    fn u64(self) -> Option<u64> {
        match self {
            Raw::Text(s) => s.parse().ok(),
            Raw::Toml(v) => v.as_integer().and_then(|i| u64::try_from(i).ok()),
        }
    }

    /// `true` or `false`; a string must be spelled exactly so.
    fn bool(self) -> Option<bool> {
        match self {
            Raw::Text("true") => Some(true),
            Raw::Text("false") => Some(false),
            Raw::Text(_) => None,
            Raw::Toml(v) => v.as_bool(),
        }
    }

    /// A list: a TOML array of strings, or a comma-separated string. On failure, what to show
    /// after "got".
    fn list(self) -> Result<Vec<String>, String> {
        match self {
            Raw::Toml(toml::Value::Array(items)) => items
                .iter()
                .map(|item| {
                    item.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| format!("an array containing {}", describe(Raw::Toml(item))))
                })
                .collect(),
            _ => self.text().map(split_list).ok_or_else(|| describe(self)),
        }
    }
}

/// Splits a comma-separated list; blanks around the items are removed. A blank string is the
/// empty list; empty items are kept (validation rejects them).
pub(crate) fn split_list(s: &str) -> Vec<String> {
    if s.trim().is_empty() {
        return Vec::new();
    }
    s.split(',').map(|item| item.trim().to_owned()).collect()
}

/// What a key's value must look like, for "expected …" messages.
fn expected(key: Key) -> &'static str {
    match key {
        Key::DataDir => "a path string",
        Key::HttpAddr => "an address like 127.0.0.1:7070",
        Key::GrpcAddr => "an address like 127.0.0.1:7071",
        Key::NodeName | Key::LogLevel | Key::Token => "a string",
        Key::TaskDefaultUser => "a user name or uid (a string; \"\" = the agent's own user)",
        Key::Join => "a list of HOST:PORT addresses (an array of strings or a comma-separated string)",
        Key::McpAllowedHosts => "a list of host names (an array of strings or a comma-separated string)",
        Key::Role => "\"coordinator\" or \"worker\"",
        Key::LeaveOnShutdown | Key::BenchOnStart | Key::TaskAllowRoot => "true or false",
        Key::HeartbeatIntervalMs
        | Key::ElectionTimeoutMinMs
        | Key::ElectionTimeoutMaxMs
        | Key::SnapshotAfterEntries
        | Key::TargetVoters
        | Key::ClusterHeartbeatIntervalMs
        | Key::SuspectAfterMs
        | Key::DownAfterMs
        | Key::VoterGraceMs
        | Key::TaskLogLimitBytes => "a non-negative integer",
    }
}

/// How a rejected value is shown after "got": strings quoted, other scalars as written in TOML.
pub(crate) fn describe(raw: Raw<'_>) -> String {
    match raw {
        Raw::Text(s) => format!("{s:?}"),
        Raw::Toml(toml::Value::String(s)) => format!("{s:?}"),
        Raw::Toml(toml::Value::Integer(i)) => i.to_string(),
        Raw::Toml(toml::Value::Float(f)) => format!("{f:?}"),
        Raw::Toml(toml::Value::Boolean(b)) => b.to_string(),
        Raw::Toml(toml::Value::Datetime(d)) => format!("the date-time {d}"),
        Raw::Toml(toml::Value::Array(_)) => "an array".to_owned(),
        Raw::Toml(toml::Value::Table(_)) => "a table".to_owned(),
    }
}

/// The type of a rejected value without the value, for secrets.
fn describe_kind(raw: Raw<'_>) -> String {
    let kind = match raw {
        Raw::Text(_) | Raw::Toml(toml::Value::String(_)) => "a string",
        Raw::Toml(toml::Value::Integer(_)) => "an integer",
        Raw::Toml(toml::Value::Float(_)) => "a float",
        Raw::Toml(toml::Value::Boolean(_)) => "a boolean",
        Raw::Toml(toml::Value::Datetime(_)) => "a date-time",
        Raw::Toml(toml::Value::Array(_)) => "an array",
        Raw::Toml(toml::Value::Table(_)) => "a table",
    };
    format!("{kind} (value not shown: the key is a secret)")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn merged() -> Merged {
        Merged::new(Config::defaults(&[]))
    }

    #[test]
    fn strings_convert_by_schema_not_by_look() {
        let mut m = merged();
        m.set(Key::NodeName, Raw::Text("007"), &Origin::Cmdline).unwrap();
        m.set(Key::HeartbeatIntervalMs, Raw::Text("100"), &Origin::Cmdline)
            .unwrap();
        m.set(Key::HttpAddr, Raw::Text("[::1]:80"), &Origin::Cmdline)
            .unwrap();
        assert_eq!(m.config.node_name.as_deref(), Some("007"));
        assert_eq!(m.config.raft.heartbeat_interval_ms, 100);
        assert_eq!(m.config.http_addr.to_string(), "[::1]:80");
        assert_eq!(m.origin(Key::NodeName), &Origin::Cmdline);
        assert_eq!(m.origin(Key::GrpcAddr), &Origin::Default);
    }

    #[test]
    fn wrong_types_name_origin_key_and_value() {
        let mut m = merged();
        let env = Origin::Env("CORTEX_RAFT__HEARTBEAT_INTERVAL_MS".to_owned());
        let err = m
            .set(Key::HeartbeatIntervalMs, Raw::Text("fast"), &env)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment variable CORTEX_RAFT__HEARTBEAT_INTERVAL_MS: key raft.heartbeat_interval_ms: \
             expected a non-negative integer, got \"fast\""
        );
        let file = Origin::File("/x.toml".into());
        let minus = toml::Value::Integer(-5);
        let err = m
            .set(Key::SnapshotAfterEntries, Raw::Toml(&minus), &file)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "/x.toml: key raft.snapshot_after_entries: expected a non-negative integer, got -5"
        );
        let number = toml::Value::Integer(7071);
        let err = m.set(Key::GrpcAddr, Raw::Toml(&number), &file).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/x.toml: key grpc_addr: expected an address like 127.0.0.1:7071, got 7071"
        );
        let flag = toml::Value::Boolean(true);
        let err = m.set(Key::DataDir, Raw::Toml(&flag), &file).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/x.toml: key data_dir: expected a path string, got true"
        );
        assert_eq!(m.config, Config::defaults(&[]));
    }

    #[test]
    fn cluster_keys_convert_by_schema() {
        let mut m = merged();
        let env = Origin::Env("CORTEX_X".to_owned());
        m.set(Key::Join, Raw::Text("10.0.0.1:7071, host-b:7071"), &env)
            .unwrap();
        assert_eq!(m.config.join, ["10.0.0.1:7071", "host-b:7071"]);
        m.set(Key::Token, Raw::Text("1234"), &env).unwrap();
        assert_eq!(m.config.token.as_deref(), Some("1234"));
        m.set(Key::Role, Raw::Text("coordinator"), &env).unwrap();
        assert_eq!(m.config.role, Role::Coordinator);
        m.set(Key::LeaveOnShutdown, Raw::Text("true"), &env).unwrap();
        assert!(m.config.leave_on_shutdown);
        m.set(Key::TargetVoters, Raw::Text("5"), &env).unwrap();
        m.set(Key::VoterGraceMs, Raw::Text("60000"), &env).unwrap();
        assert_eq!(m.config.cluster.target_voters, 5);
        assert_eq!(m.config.cluster.voter_grace_ms, 60_000);
        assert_eq!(m.origin(Key::Join), &env);
        assert_eq!(m.origin(Key::DownAfterMs), &Origin::Default);

        let file = Origin::File("/x.toml".into());
        let array: toml::Value = toml::Value::Array(vec!["a:1".into(), "b:2".into()]);
        m.set(Key::Join, Raw::Toml(&array), &file).unwrap();
        assert_eq!(m.config.join, ["a:1", "b:2"]);
        m.set(Key::Join, Raw::Toml(&"c:3,d:4".into()), &file).unwrap();
        assert_eq!(m.config.join, ["c:3", "d:4"]);
        m.set(Key::Join, Raw::Toml(&toml::Value::Array(Vec::new())), &file)
            .unwrap();
        assert_eq!(m.config.join, Vec::<String>::new());
        m.set(Key::LeaveOnShutdown, Raw::Toml(&false.into()), &file)
            .unwrap();
        assert!(!m.config.leave_on_shutdown);
        m.set(Key::Role, Raw::Toml(&"worker".into()), &file).unwrap();
        assert_eq!(m.config.role, Role::Worker);
        assert_eq!(m.origin(Key::Join), &file);
    }

    #[test]
    fn comma_lists() {
        assert_eq!(split_list("a:1"), ["a:1"]);
        assert_eq!(split_list(" a:1 ,b:2 "), ["a:1", "b:2"]);
        assert_eq!(split_list(""), Vec::<String>::new());
        assert_eq!(split_list("  "), Vec::<String>::new());
        assert_eq!(split_list("a:1,"), ["a:1", ""]);
        assert_eq!(split_list("a:1,,b:2"), ["a:1", "", "b:2"]);
    }

    #[test]
    fn cluster_keys_wrong_types() {
        let mut m = merged();
        let file = Origin::File("/x.toml".into());
        let cases: [(Key, toml::Value, &str); 7] = [
            (
                Key::Join,
                toml::Value::Integer(7071),
                "/x.toml: key join: expected a list of HOST:PORT addresses (an array of strings or a \
                 comma-separated string), got 7071",
            ),
            (
                Key::Join,
                toml::Value::Array(vec!["a:1".into(), toml::Value::Integer(2)]),
                "/x.toml: key join: expected a list of HOST:PORT addresses (an array of strings or a \
                 comma-separated string), got an array containing 2",
            ),
            (
                Key::Role,
                "boss".into(),
                "/x.toml: key role: expected \"coordinator\" or \"worker\", got \"boss\"",
            ),
            (
                Key::LeaveOnShutdown,
                "yes".into(),
                "/x.toml: key leave_on_shutdown: expected true or false, got \"yes\"",
            ),
            (
                Key::TargetVoters,
                toml::Value::Float(3.0),
                "/x.toml: key cluster.target_voters: expected a non-negative integer, got 3.0",
            ),
            (
                Key::Token,
                toml::Value::Integer(918_273_645),
                "/x.toml: key token: expected a string, got an integer (value not shown: the key is a \
                 secret)",
            ),
            (
                Key::Token,
                toml::Value::Array(vec!["tok-Zq8vX3-array".into()]),
                "/x.toml: key token: expected a string, got an array (value not shown: the key is a \
                 secret)",
            ),
        ];
        for (key, value, want) in cases {
            let err = m.set(key, Raw::Toml(&value), &file).unwrap_err();
            assert_eq!(err.to_string(), want);
        }
        let cmdline = Origin::Cmdline;
        let err = m.set(Key::LeaveOnShutdown, Raw::Text("1"), &cmdline).unwrap_err();
        assert_eq!(
            err.to_string(),
            "kernel command line: key leave_on_shutdown: expected true or false, got \"1\""
        );
        let err = m.set(Key::Role, Raw::Text("Worker"), &cmdline).unwrap_err();
        assert_eq!(
            err.to_string(),
            "kernel command line: key role: expected \"coordinator\" or \"worker\", got \"Worker\""
        );
        assert_eq!(m.config, Config::defaults(&[]));
    }
}
