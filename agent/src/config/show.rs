//! Rendering the effective configuration as TOML (for `cortex config show`).

use std::fmt::Write as _;

use super::model::{Config, REDACTED};

impl Config {
    /// The effective configuration as a TOML document that `load` accepts back unchanged, except
    /// for `token`: a secret, written as `token = "<redacted>"` (which `load` rejects, so a
    /// shown configuration cannot be reused with a placeholder for a token).
    /// An unset `node_name` or `token` is written as a comment; a non-UTF-8 `data_dir` is converted
    /// lossily.
    pub fn to_toml(&self) -> String {
        let (raft, cluster, bench, mcp) = (&self.raft, &self.cluster, &self.bench, &self.mcp);
        let mut out = String::new();
        let _ = writeln!(out, "data_dir = {}", quote(&self.data_dir.to_string_lossy()));
        let _ = writeln!(out, "http_addr = {}", quote(&self.http_addr.to_string()));
        let _ = writeln!(out, "grpc_addr = {}", quote(&self.grpc_addr.to_string()));
        match &self.node_name {
            Some(name) => {
                let _ = writeln!(out, "node_name = {}", quote(name));
            }
            None => out.push_str("# node_name is not set: the hostname is used\n"),
        }
        let _ = writeln!(out, "log_level = {}", quote(&self.log_level));
        let join: Vec<String> = self.join.iter().map(|a| quote(a)).collect();
        let _ = writeln!(out, "join = [{}]", join.join(", "));
        match &self.token {
            Some(_) => {
                let _ = writeln!(out, "token = {}", quote(REDACTED));
            }
            None => out.push_str("# token is not set\n"),
        }
        let _ = writeln!(out, "role = {}", quote(self.role.as_str()));
        let _ = writeln!(out, "leave_on_shutdown = {}", self.leave_on_shutdown);
        out.push_str("\n[raft]\n");
        let _ = writeln!(out, "heartbeat_interval_ms = {}", raft.heartbeat_interval_ms);
        let _ = writeln!(out, "election_timeout_min_ms = {}", raft.election_timeout_min_ms);
        let _ = writeln!(out, "election_timeout_max_ms = {}", raft.election_timeout_max_ms);
        let _ = writeln!(out, "snapshot_after_entries = {}", raft.snapshot_after_entries);
        out.push_str("\n[cluster]\n");
        let _ = writeln!(out, "target_voters = {}", cluster.target_voters);
        let _ = writeln!(out, "heartbeat_interval_ms = {}", cluster.heartbeat_interval_ms);
        let _ = writeln!(out, "suspect_after_ms = {}", cluster.suspect_after_ms);
        let _ = writeln!(out, "down_after_ms = {}", cluster.down_after_ms);
        let _ = writeln!(out, "voter_grace_ms = {}", cluster.voter_grace_ms);
        out.push_str("\n[mcp]\n");
        let hosts: Vec<String> = mcp.allowed_hosts.iter().map(|h| quote(h)).collect();
        let _ = writeln!(out, "allowed_hosts = [{}]", hosts.join(", "));
        out.push_str("\n[bench]\n");
        let _ = writeln!(out, "on_start = {}", bench.on_start);
        out.push_str("\n[tasks]\n");
        let _ = writeln!(out, "log_limit_bytes = {}", self.tasks.log_limit_bytes);
        let _ = writeln!(out, "default_user = {}", quote(&self.tasks.default_user));
        let _ = writeln!(out, "allow_root = {}", self.tasks.allow_root);
        out
    }
}

/// A TOML string literal for `s`.
fn quote(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::model::Role;
    use super::*;

    #[test]
    fn defaults_render_as_documented() {
        let cfg = Config::defaults(&[]);
        assert_eq!(
            cfg.to_toml(),
            "data_dir = \"/var/lib/cortex\"\n\
             http_addr = \"127.0.0.1:7070\"\n\
             grpc_addr = \"127.0.0.1:7071\"\n\
             # node_name is not set: the hostname is used\n\
             log_level = \"info\"\n\
             join = []\n\
             # token is not set\n\
             role = \"worker\"\n\
             leave_on_shutdown = false\n\
             \n\
             [raft]\n\
             heartbeat_interval_ms = 200\n\
             election_timeout_min_ms = 500\n\
             election_timeout_max_ms = 1000\n\
             snapshot_after_entries = 10000\n\
             \n\
             [cluster]\n\
             target_voters = 3\n\
             heartbeat_interval_ms = 1000\n\
             suspect_after_ms = 2000\n\
             down_after_ms = 5000\n\
             voter_grace_ms = 30000\n\
             \n\
             [mcp]\n\
             allowed_hosts = []\n\
             \n\
             [bench]\n\
             on_start = true\n\
             \n\
             [tasks]\n\
             log_limit_bytes = 1048576\n\
             default_user = \"nobody\"\n\
             allow_root = false\n"
        );
    }

    #[test]
    fn cluster_keys_render_and_the_token_is_redacted() {
        let cfg = Config {
            join: vec!["10.0.0.1:7071".to_owned(), "[fd00::2]:7071".to_owned()],
            token: Some("tok-Zq8vX3-show".to_owned()),
            role: Role::Coordinator,
            leave_on_shutdown: true,
            ..Config::defaults(&[])
        };
        let text = cfg.to_toml();
        assert!(!text.contains("tok-Zq8vX3-show"), "{text}");
        let lines: Vec<&str> = text.lines().collect();
        for want in [
            "join = [\"10.0.0.1:7071\", \"[fd00::2]:7071\"]",
            "token = \"<redacted>\"",
            "role = \"coordinator\"",
            "leave_on_shutdown = true",
        ] {
            assert!(lines.contains(&want), "{want} not in\n{text}");
        }
        let parsed: toml::Table = text.parse().unwrap();
        assert_eq!(parsed["token"].as_str(), Some("<redacted>"));
        assert_eq!(parsed["join"].as_array().map(Vec::len), Some(2));
        assert_eq!(parsed["cluster"]["voter_grace_ms"].as_integer(), Some(30_000));
    }

    #[test]
    fn awkward_strings_are_quoted() {
        for s in [
            "plain",
            "with \"quotes\"",
            "back\\slash",
            "new\nline",
            "tab\t",
            "it's",
            "'\"",
            "ünï",
        ] {
            let parsed: toml::Table = format!("k = {}", quote(s)).parse().unwrap();
            assert_eq!(parsed["k"].as_str(), Some(s));
        }
    }
}
