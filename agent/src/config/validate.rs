//! Validation of the merged configuration. Errors name the key and the layer that set it.

use super::error::ConfigError;
use super::merge::Merged;
use super::schema::Key;

const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

/// Checks every key; returns the first problem found, in key order.
pub(crate) fn validate(merged: &Merged) -> Result<(), ConfigError> {
    let cfg = &merged.config;
    let invalid = |key: Key, value: String, reason: String| ConfigError::Invalid {
        origin: merged.origin(key).clone(),
        key: key.path(),
        value,
        reason,
    };
    if cfg.data_dir.as_os_str().is_empty() {
        return Err(invalid(
            Key::DataDir,
            "\"\"".to_owned(),
            "must not be empty".to_owned(),
        ));
    }
    if let Some(name) = &cfg.node_name {
        check_node_name(name).map_err(|reason| invalid(Key::NodeName, format!("{name:?}"), reason))?;
    }
    check_log_level(&cfg.log_level)
        .map_err(|reason| invalid(Key::LogLevel, format!("{:?}", cfg.log_level), reason))?;

    let raft = &cfg.raft;
    let heartbeat = raft.heartbeat_interval_ms;
    let (min, max) = (raft.election_timeout_min_ms, raft.election_timeout_max_ms);
    if !(10..=10_000).contains(&heartbeat) {
        let reason = "must be between 10 and 10000".to_owned();
        return Err(invalid(Key::HeartbeatIntervalMs, heartbeat.to_string(), reason));
    }
    if min <= heartbeat.saturating_mul(2) {
        let from = merged.origin(Key::HeartbeatIntervalMs);
        let reason =
            format!("must be greater than twice raft.heartbeat_interval_ms ({heartbeat}, from {from})");
        return Err(invalid(Key::ElectionTimeoutMinMs, min.to_string(), reason));
    }
    if max <= min {
        let from = merged.origin(Key::ElectionTimeoutMinMs);
        let reason = format!("must be greater than raft.election_timeout_min_ms ({min}, from {from})");
        return Err(invalid(Key::ElectionTimeoutMaxMs, max.to_string(), reason));
    }
    if raft.snapshot_after_entries < 1 {
        let value = raft.snapshot_after_entries.to_string();
        return Err(invalid(
            Key::SnapshotAfterEntries,
            value,
            "must be at least 1".to_owned(),
        ));
    }
    Ok(())
}

/// 1 to 63 characters from `A-Z a-z 0-9 - _ .`.
fn check_node_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.chars().count() > 63 {
        return Err("must be 1 to 63 characters long".to_owned());
    }
    match name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        Some(c) => Err(format!(
            "character {c:?} is not allowed (use A-Z, a-z, 0-9, '-', '_', '.')"
        )),
        None => Ok(()),
    }
}

/// A level (`info`), or a comma list of directives, each a level or `target=level`
/// (`info,cortex::raft=debug`). Levels are case-insensitive, as in `tracing`'s `EnvFilter`.
fn check_log_level(spec: &str) -> Result<(), String> {
    let levels = LEVELS.join(", ");
    for directive in spec.split(',') {
        let (target, level) = match directive.split_once('=') {
            Some((target, level)) => (Some(target), level),
            None => (None, directive),
        };
        if directive.is_empty() {
            return Err(format!(
                "empty directive (expected one of {levels}, or target=level)"
            ));
        }
        if let Some(target) = target {
            let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':');
            if target.is_empty() || !target.chars().all(ok) {
                return Err(format!(
                    "invalid target {target:?} in {directive:?} (use letters, digits, '_', '-', '.', ':')"
                ));
            }
        }
        if !LEVELS.iter().any(|l| l.eq_ignore_ascii_case(level)) {
            return Err(match target {
                Some(_) => format!("unknown level {level:?} in {directive:?} (expected one of {levels})"),
                None => format!("unknown level {level:?} (expected one of {levels}, or target=level)"),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_level_accepts_levels_and_directive_lists() {
        for ok in [
            "info",
            "TRACE",
            "off",
            "cortex=debug",
            "info,cortex::raft=trace,h2=warn",
            "a-b.c=error",
        ] {
            assert_eq!(check_log_level(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn log_level_rejections_explain() {
        let any = "(expected one of trace, debug, info, warn, error, off, or target=level)";
        let chars = "(use letters, digits, '_', '-', '.', ':')";
        let cases = [
            ("", format!("empty directive {any}")),
            ("info,", format!("empty directive {any}")),
            ("verbose", format!("unknown level \"verbose\" {any}")),
            (
                "cortex=loud",
                "unknown level \"loud\" in \"cortex=loud\" \
                 (expected one of trace, debug, info, warn, error, off)"
                    .to_owned(),
            ),
            ("cortex", format!("unknown level \"cortex\" {any}")),
            ("=info", format!("invalid target \"\" in \"=info\" {chars}")),
            (
                "a b=info",
                format!("invalid target \"a b\" in \"a b=info\" {chars}"),
            ),
            (
                "x[span]=info",
                format!("invalid target \"x[span]\" in \"x[span]=info\" {chars}"),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(check_log_level(input), Err(want), "{input:?}");
        }
    }

    #[test]
    fn node_names() {
        assert_eq!(check_node_name("node-1.rack_2"), Ok(()));
        assert_eq!(check_node_name(&"a".repeat(63)), Ok(()));
        let long = Err("must be 1 to 63 characters long".to_owned());
        assert_eq!(check_node_name(&"a".repeat(64)), long);
        assert_eq!(check_node_name(""), long);
        assert_eq!(
            check_node_name("my node"),
            Err("character ' ' is not allowed (use A-Z, a-z, 0-9, '-', '_', '.')".to_owned())
        );
        assert_eq!(
            check_node_name("nœud"),
            Err("character 'œ' is not allowed (use A-Z, a-z, 0-9, '-', '_', '.')".to_owned())
        );
    }
}
