//! Validation of the merged configuration. Errors name the key and the layer that set it.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::error::ConfigError;
use super::merge::Merged;
use super::model::REDACTED;
use super::schema::Key;

const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
const MAX_TOKEN_BYTES: usize = 4096;
const VOTER_COUNTS: [u64; 3] = [1, 3, 5];

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
    for addr in &cfg.join {
        check_join_addr(addr).map_err(|reason| invalid(Key::Join, format!("{addr:?}"), reason))?;
    }
    for host in &cfg.mcp.allowed_hosts {
        check_host_name(host).map_err(|reason| invalid(Key::McpAllowedHosts, format!("{host:?}"), reason))?;
    }
    if let Some(token) = &cfg.token {
        // The value is a secret: the message shows neither it nor which rule it breaks.
        check_token(token).map_err(|reason| invalid(Key::Token, REDACTED.to_owned(), reason))?;
    }

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

    let log_limit = cfg.tasks.log_limit_bytes;
    let max_log = cortex_model::task::validate::MAX_LOG_LIMIT_BYTES;
    if !(1..=max_log).contains(&log_limit) {
        return Err(invalid(
            Key::TaskLogLimitBytes,
            log_limit.to_string(),
            format!("must be between 1 and {max_log}"),
        ));
    }

    let user = &cfg.tasks.default_user;
    if !user.is_empty() {
        cortex_model::task::validate::check_user(user)
            .map_err(|reason| invalid(Key::TaskDefaultUser, format!("{user:?}"), reason))?;
    }

    let cluster = &cfg.cluster;
    if !VOTER_COUNTS.contains(&cluster.target_voters) {
        let reason = "must be 1, 3 or 5".to_owned();
        return Err(invalid(
            Key::TargetVoters,
            cluster.target_voters.to_string(),
            reason,
        ));
    }
    let heartbeat = cluster.heartbeat_interval_ms;
    if !(50..=60_000).contains(&heartbeat) {
        let reason = "must be between 50 and 60000".to_owned();
        return Err(invalid(
            Key::ClusterHeartbeatIntervalMs,
            heartbeat.to_string(),
            reason,
        ));
    }
    let (suspect, down, grace) = (
        cluster.suspect_after_ms,
        cluster.down_after_ms,
        cluster.voter_grace_ms,
    );
    let than = |key: Key, value: u64| format!("{} ({value}, from {})", key.path(), merged.origin(key));
    if suspect <= heartbeat {
        let reason = format!(
            "must be greater than {}",
            than(Key::ClusterHeartbeatIntervalMs, heartbeat)
        );
        return Err(invalid(Key::SuspectAfterMs, suspect.to_string(), reason));
    }
    if down <= suspect {
        let reason = format!("must be greater than {}", than(Key::SuspectAfterMs, suspect));
        return Err(invalid(Key::DownAfterMs, down.to_string(), reason));
    }
    if grace < down {
        let reason = format!("must be at least {}", than(Key::DownAfterMs, down));
        return Err(invalid(Key::VoterGraceMs, grace.to_string(), reason));
    }
    Ok(())
}

/// `HOST:PORT`, where HOST is an IPv4 address, a host name or an IPv6 address in brackets and
/// PORT is 1 to 65535.
/// A name `/mcp` may be addressed by (`mcp.allowed_hosts`): a DNS name, without port or scheme.
fn check_host_name(h: &str) -> Result<(), String> {
    let example = "e.g. coord.lan";
    if h.contains("://") {
        return Err(format!("a URL, not a host name ({example})"));
    }
    if h.contains(':') || h.starts_with('[') {
        return Err(format!(
            "a host name without a port ({example}); IP addresses are always allowed"
        ));
    }
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if h.is_empty() || h.len() > 253 || !h.split('.').all(label_ok) {
        return Err(format!(
            "expected a DNS name: letters, digits and '-' between dots ({example})"
        ));
    }
    Ok(())
}

fn check_join_addr(addr: &str) -> Result<(), String> {
    let expected = "expected HOST:PORT, e.g. 10.0.0.1:7071";
    if addr.is_empty() {
        return Err(format!(
            "empty address ({expected}; look for a doubled or trailing comma)"
        ));
    }
    if addr.contains("://") {
        return Err(format!("a URL, not an address ({expected})"));
    }
    let (host, port) = if let Some(rest) = addr.strip_prefix('[') {
        let Some((ip, after)) = rest.split_once(']') else {
            return Err("unclosed '[' (an IPv6 address is written [fd00::1]:7071)".to_owned());
        };
        if ip.parse::<Ipv6Addr>().is_err() {
            return Err(format!("invalid IPv6 address {ip:?}"));
        }
        match after.strip_prefix(':') {
            Some(port) => (None, port),
            None => return Err(format!("missing port ({expected})")),
        }
    } else {
        let Some((host, port)) = addr.rsplit_once(':') else {
            return Err(format!("missing port ({expected})"));
        };
        if host.contains(':') {
            return Err("an IPv6 address must be in brackets, e.g. [fd00::1]:7071".to_owned());
        }
        (Some(host), port)
    };
    if let Some(host) = host {
        check_host(host)?;
    }
    let numeric = !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit());
    match port.parse::<u16>() {
        Ok(1..) if numeric => Ok(()),
        _ if port.is_empty() => Err(format!("missing port ({expected})")),
        _ => Err(format!("port {port:?} is not a number from 1 to 65535")),
    }
}

/// An IPv4 address, or a host name: dot-separated labels of 1 to 63 characters from
/// `A-Z a-z 0-9 -`, not starting or ending with `-`, 253 characters at most.
fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("missing host (expected HOST:PORT, e.g. 10.0.0.1:7071)".to_owned());
    }
    if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return match host.parse::<Ipv4Addr>() {
            Ok(_) => Ok(()),
            Err(_) => Err(format!("invalid IPv4 address {host:?}")),
        };
    }
    let bad = |why: &str| Err(format!("invalid host name {host:?}: {why}"));
    if host.len() > 253 {
        return bad("longer than 253 characters");
    }
    if let Some(c) = host
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.')))
    {
        return bad(&format!(
            "character {c:?} is not allowed (use A-Z, a-z, 0-9, '-', '.')"
        ));
    }
    for label in host.split('.') {
        if label.is_empty() {
            return bad("empty label");
        }
        if label.len() > 63 {
            return bad("a label is longer than 63 characters");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return bad("a label starts or ends with '-'");
        }
    }
    Ok(())
}

/// 1 to 4096 bytes without whitespace, and not the placeholder `to_toml` writes. The reasons
/// never describe the value itself.
fn check_token(token: &str) -> Result<(), String> {
    if token == REDACTED {
        return Err(format!(
            "{REDACTED} is the placeholder that `cortex config show` prints, not a token"
        ));
    }
    if token.is_empty() || token.len() > MAX_TOKEN_BYTES || token.chars().any(char::is_whitespace) {
        return Err(format!(
            "malformed token (expected 1 to {MAX_TOKEN_BYTES} bytes without whitespace)"
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
    fn join_addresses() {
        for ok in [
            "10.0.0.1:7071",
            "coord-1:7071",
            "coord-1.example.org:1",
            "localhost:65535",
            "[::1]:7071",
            "[fd00::2]:7071",
            "0host:80",
        ] {
            assert_eq!(check_join_addr(ok), Ok(()), "{ok}");
        }
        assert_eq!(check_join_addr(&format!("{}:1", ["a"; 127].join("."))), Ok(()));
        assert_eq!(check_join_addr(&format!("{}.b:1", "a".repeat(63))), Ok(()));
        let expected = "(expected HOST:PORT, e.g. 10.0.0.1:7071)";
        let port = |p: &str| format!("port {p:?} is not a number from 1 to 65535");
        let cases = [
            (
                "",
                "empty address (expected HOST:PORT, e.g. 10.0.0.1:7071; look for a doubled or \
                 trailing comma)"
                    .to_owned(),
            ),
            ("10.0.0.1", format!("missing port {expected}")),
            ("10.0.0.1:", format!("missing port {expected}")),
            ("[::1]", format!("missing port {expected}")),
            ("[::1]7071", format!("missing port {expected}")),
            (":7071", format!("missing host {expected}")),
            ("10.0.0.1:0", port("0")),
            ("10.0.0.1:65536", port("65536")),
            ("10.0.0.1:+80", port("+80")),
            ("10.0.0.1:http", port("http")),
            ("10.0.0.1:7071 ", port("7071 ")),
            (
                "fd00::1:7071",
                "an IPv6 address must be in brackets, e.g. [fd00::1]:7071".to_owned(),
            ),
            (
                "[fd00::1:7071",
                "unclosed '[' (an IPv6 address is written [fd00::1]:7071)".to_owned(),
            ),
            ("[coord]:7071", "invalid IPv6 address \"coord\"".to_owned()),
            (
                "10.0.0.256:7071",
                "invalid IPv4 address \"10.0.0.256\"".to_owned(),
            ),
            (
                "my host:7071",
                "invalid host name \"my host\": character ' ' is not allowed \
                 (use A-Z, a-z, 0-9, '-', '.')"
                    .to_owned(),
            ),
            ("http://a:7071", format!("a URL, not an address {expected}")),
            (
                "a/b:7071",
                "invalid host name \"a/b\": character '/' is not allowed \
                 (use A-Z, a-z, 0-9, '-', '.')"
                    .to_owned(),
            ),
            ("a..b:1", "invalid host name \"a..b\": empty label".to_owned()),
            (
                "-a:1",
                "invalid host name \"-a\": a label starts or ends with '-'".to_owned(),
            ),
            (
                &format!("{}:1", "a".repeat(64)),
                format!(
                    "invalid host name \"{}\": a label is longer than 63 characters",
                    "a".repeat(64)
                ),
            ),
            (
                &format!("{}:1", ["a"; 128].join(".")),
                format!(
                    "invalid host name \"{}\": longer than 253 characters",
                    ["a"; 128].join(".")
                ),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(check_join_addr(input), Err(want), "{input:?}");
        }
    }

    #[test]
    fn tokens() {
        assert_eq!(check_token("a"), Ok(()));
        assert_eq!(check_token(&"x".repeat(MAX_TOKEN_BYTES)), Ok(()));
        assert_eq!(check_token("K10abc::server:def"), Ok(()));
        let malformed = Err("malformed token (expected 1 to 4096 bytes without whitespace)".to_owned());
        for bad in [
            String::new(),
            "x".repeat(MAX_TOKEN_BYTES + 1),
            "é".repeat(2049),
            "ab cd".to_owned(),
            "abc\n".to_owned(),
            "a\u{a0}b".to_owned(),
        ] {
            assert_eq!(check_token(&bad), malformed, "{bad:?}");
        }
        assert_eq!(
            check_token("<redacted>"),
            Err("<redacted> is the placeholder that `cortex config show` prints, not a token".to_owned())
        );
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
