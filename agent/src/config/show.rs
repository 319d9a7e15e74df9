//! Rendering the effective configuration as TOML (for `cortex config show`).

use std::fmt::Write as _;

use super::model::Config;

impl Config {
    /// The effective configuration as a TOML document that `load` accepts back unchanged.
    /// An unset `node_name` is written as a comment; a non-UTF-8 `data_dir` is converted lossily.
    pub fn to_toml(&self) -> String {
        let raft = &self.raft;
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
        out.push_str("\n[raft]\n");
        let _ = writeln!(out, "heartbeat_interval_ms = {}", raft.heartbeat_interval_ms);
        let _ = writeln!(out, "election_timeout_min_ms = {}", raft.election_timeout_min_ms);
        let _ = writeln!(out, "election_timeout_max_ms = {}", raft.election_timeout_max_ms);
        let _ = writeln!(out, "snapshot_after_entries = {}", raft.snapshot_after_entries);
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
             \n\
             [raft]\n\
             heartbeat_interval_ms = 250\n\
             election_timeout_min_ms = 1000\n\
             election_timeout_max_ms = 2000\n\
             snapshot_after_entries = 10000\n"
        );
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
