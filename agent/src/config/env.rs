//! The environment layer: `CORTEX_KEY=VALUE`, upper case, `__` between a table and its key
//! (`CORTEX_RAFT__HEARTBEAT_INTERVAL_MS=100`).
//!
//! One exception: the key `token` is `CORTEX_JOIN_TOKEN`, because `CORTEX_TOKEN` is the CLI's
//! bearer token (a client variable, ignored here).

use super::error::ConfigError;
use super::merge::{Merged, Raw};
use super::origin::Origin;
use super::schema::{first_leaf_below, resolve, Found, Key, Node, ROOT};

const PREFIX: &str = "CORTEX_";

/// Client settings (and the GPU test seam, `cortex_host::gpu::FAKE_GPUS_ENV`) that share the
/// prefix but are not configuration keys; they are ignored here.
pub(crate) const CLIENT_VARS: [&str; 9] = [
    "CORTEX_SERVER",
    "CORTEX_TOKEN",
    "CORTEX_TOKEN_FILE",
    "CORTEX_CA_FILE",
    "CORTEX_OUTPUT",
    "CORTEX_CONFIG_ROOT",
    "CORTEX_CMDLINE_FILE",
    "CORTEX_LOG",
    "CORTEX_TEST_FAKE_GPUS",
];

/// Keys whose variable does not follow the rule, as (name after the prefix, key). The rule's
/// spelling of these keys is rejected with a pointer to the exception.
const EXCEPTIONS: [(&str, Key); 1] = [("JOIN_TOKEN", Key::Token)];

/// Applies every `CORTEX_*` variable of `env` except the client ones, in name order (for a
/// deterministic first error); of two equal names the later one wins.
pub(crate) fn apply(merged: &mut Merged, env: &[(String, String)]) -> Result<(), ConfigError> {
    let mut vars: Vec<(&str, &str, &str)> = env
        .iter()
        .filter(|(name, _)| !CLIENT_VARS.contains(&name.as_str()))
        .filter_map(|(name, value)| Some((name.as_str(), name.strip_prefix(PREFIX)?, value.as_str())))
        .collect();
    vars.sort_by_key(|(name, _, _)| *name);
    for (name, rest, value) in vars {
        let origin = Origin::Env(name.to_owned());
        let key = rest.to_ascii_lowercase().replace("__", ".");
        let exception = EXCEPTIONS
            .iter()
            .find(|(spelled, _)| spelled.eq_ignore_ascii_case(rest))
            .map(|(_, key)| *key);
        let found = match exception {
            Some(leaf) => Ok(Found::Leaf(leaf)),
            None => resolve(rest.split("__"), |known, segment| {
                known.eq_ignore_ascii_case(segment)
            }),
        };
        match found {
            Ok(Found::Leaf(leaf)) if exception.is_none() && variable(leaf) != spelling(leaf.path()) => {
                let known = format!(
                    "in the environment, key {} is spelled {}",
                    leaf.path(),
                    variable(leaf)
                );
                return Err(ConfigError::UnknownKey { origin, key, known });
            }
            Ok(Found::Leaf(leaf)) => merged.set(leaf, Raw::Text(value), &origin)?,
            Ok(Found::Table) => {
                let example = first_leaf_below(&key).map_or_else(String::new, |k| spelling(k.path()));
                return Err(ConfigError::TableKey { origin, key, example });
            }
            Err(known) => {
                let known = known + &table_hint(&key);
                return Err(ConfigError::UnknownKey { origin, key, known });
            }
        }
    }
    Ok(())
}

/// The variable name for a dotted key path, by the rule.
fn spelling(path: &str) -> String {
    format!("{PREFIX}{}", path.to_ascii_uppercase().replace('.', "__"))
}

/// The variable that sets `key`: the rule's spelling or its exception.
pub(crate) fn variable(key: Key) -> String {
    EXCEPTIONS
        .iter()
        .find(|(_, k)| *k == key)
        .map_or_else(|| spelling(key.path()), |(name, _)| format!("{PREFIX}{name}"))
}

/// A hint for `CORTEX_RAFT_X`, which should have been `CORTEX_RAFT__X`.
fn table_hint(key: &str) -> String {
    ROOT.iter()
        .filter(|(_, node)| matches!(node, Node::Table(_)))
        .find(|(table, _)| key.strip_prefix(table).is_some_and(|rest| rest.starts_with('_')))
        .map_or_else(String::new, |(table, _)| {
            format!("; keys in [{table}] are spelled {}__KEY", spelling(table))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings() {
        assert_eq!(
            spelling("raft.heartbeat_interval_ms"),
            "CORTEX_RAFT__HEARTBEAT_INTERVAL_MS"
        );
        assert_eq!(
            table_hint("raft_heartbeat_interval_ms"),
            "; keys in [raft] are spelled CORTEX_RAFT__KEY"
        );
        assert_eq!(table_hint("rafting"), "");
        assert_eq!(table_hint("node_name"), "");
        assert_eq!(
            table_hint("cluster_target_voters"),
            "; keys in [cluster] are spelled CORTEX_CLUSTER__KEY"
        );
    }

    #[test]
    fn variables_follow_the_rule_except_for_the_token() {
        assert_eq!(variable(Key::Join), "CORTEX_JOIN");
        assert_eq!(variable(Key::LeaveOnShutdown), "CORTEX_LEAVE_ON_SHUTDOWN");
        assert_eq!(
            variable(Key::ClusterHeartbeatIntervalMs),
            "CORTEX_CLUSTER__HEARTBEAT_INTERVAL_MS"
        );
        assert_eq!(variable(Key::BenchOnStart), "CORTEX_BENCH__ON_START");
        assert_eq!(variable(Key::McpAllowedHosts), "CORTEX_MCP__ALLOWED_HOSTS");
        assert_eq!(variable(Key::Token), "CORTEX_JOIN_TOKEN");
        assert!(CLIENT_VARS.contains(&"CORTEX_TOKEN"));
        assert!(!CLIENT_VARS.contains(&variable(Key::Token).as_str()));
    }
}
