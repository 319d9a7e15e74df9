//! Applying values to the configuration one key at a time, remembering which layer set each key.
//!
//! Because every layer assigns leaf keys individually, tables merge deeply: a layer that sets
//! `raft.heartbeat_interval_ms` leaves the other `[raft]` keys of lower layers in place.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::error::ConfigError;
use super::model::Config;
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
        let wrong = || ConfigError::WrongType {
            origin: origin.clone(),
            key: key.path().to_owned(),
            expected,
            got: describe(raw),
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
            Key::HeartbeatIntervalMs => cfg.raft.heartbeat_interval_ms = number()?,
            Key::ElectionTimeoutMinMs => cfg.raft.election_timeout_min_ms = number()?,
            Key::ElectionTimeoutMaxMs => cfg.raft.election_timeout_max_ms = number()?,
            Key::SnapshotAfterEntries => cfg.raft.snapshot_after_entries = number()?,
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
}

/// What a key's value must look like, for "expected …" messages.
fn expected(key: Key) -> &'static str {
    match key {
        Key::DataDir => "a path string",
        Key::HttpAddr => "an address like 127.0.0.1:7070",
        Key::GrpcAddr => "an address like 127.0.0.1:7071",
        Key::NodeName | Key::LogLevel => "a string",
        Key::HeartbeatIntervalMs
        | Key::ElectionTimeoutMinMs
        | Key::ElectionTimeoutMaxMs
        | Key::SnapshotAfterEntries => "a non-negative integer",
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
}
