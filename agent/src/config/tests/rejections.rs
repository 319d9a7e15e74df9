//! Every rejection of a file or a merged value, with its exact message.

use super::*;

fn bad(file: &str) -> String {
    load_err(&sources("no-such-root"), &config_flag(&format!("bad/{file}")))
}

fn path(relative: &str) -> String {
    fixture(relative).display().to_string()
}

#[test]
fn unknown_key_names_file_and_key_path() {
    let file = path("root-unknown-key/etc/cortex/config.d/10-x.toml");
    assert_eq!(
        load_err(&sources("root-unknown-key"), &FlagOverrides::default()),
        format!(
            "{file}: unknown key \"raft.heartbeat\" (known keys in [raft]: heartbeat_interval_ms, \
             election_timeout_min_ms, election_timeout_max_ms, snapshot_after_entries)"
        )
    );
    assert_eq!(
        bad("unknown-table.toml"),
        format!(
            "{}: unknown key \"gossip\" (known keys: data_dir, http_addr, grpc_addr, node_name, \
             log_level, join, token, role, leave_on_shutdown, raft, cluster, bench, tasks, mcp)",
            path("bad/unknown-table.toml")
        )
    );
}

#[test]
fn wrong_types_name_file_key_and_value() {
    assert_eq!(
        load_err(&sources("root-bad-type"), &FlagOverrides::default()),
        format!(
            "{}: key http_addr: expected an address like 127.0.0.1:7070, got \"nope\"",
            path("root-bad-type/etc/cortex/config.toml")
        )
    );
    assert_eq!(
        bad("heartbeat-string.toml"),
        format!(
            "{}: key raft.heartbeat_interval_ms: expected a non-negative integer, got \"100\"",
            path("bad/heartbeat-string.toml")
        )
    );
    assert_eq!(
        bad("raft-not-table.toml"),
        format!(
            "{}: key raft: expected a table, got 5",
            path("bad/raft-not-table.toml")
        )
    );
}

#[test]
fn syntax_errors_name_file_and_line() {
    assert_eq!(
        bad("syntax.toml"),
        format!(
            "{}:3:6: TOML syntax error: unclosed table, expected `]`",
            path("bad/syntax.toml")
        )
    );
}

#[test]
fn missing_explicit_file_is_an_error() {
    assert_eq!(
        bad("does-not-exist.toml"),
        format!("flag --config: {}: no such file", path("bad/does-not-exist.toml"))
    );
}

#[test]
fn unreadable_file_is_an_error() {
    // A directory where a file is expected.
    let flags = FlagOverrides {
        config_file: Some(fixture("bad")),
        ..FlagOverrides::default()
    };
    let msg = load_err(&sources("no-such-root"), &flags);
    assert!(
        msg.starts_with(&format!("{}: cannot read: ", path("bad"))),
        "{msg}"
    );
}

#[test]
fn invalid_values_name_key_and_source() {
    let cases = [
        (
            "heartbeat-too-small.toml",
            "key raft.heartbeat_interval_ms: invalid value 5: must be between 10 and 10000",
        ),
        (
            "election-too-short.toml",
            "key raft.election_timeout_min_ms: invalid value 400: must be greater than twice \
             raft.heartbeat_interval_ms (200, from built-in default)",
        ),
        (
            "node-name.toml",
            "key node_name: invalid value \"my node\": character ' ' is not allowed \
             (use A-Z, a-z, 0-9, '-', '_', '.')",
        ),
        (
            "log-level.toml",
            "key log_level: invalid value \"verbose\": unknown level \"verbose\" \
             (expected one of trace, debug, info, warn, error, off, or target=level)",
        ),
    ];
    for (file, want) in cases {
        assert_eq!(
            bad(file),
            format!("{}: {want}", path(&format!("bad/{file}"))),
            "{file}"
        );
    }
}

#[test]
fn validation_blames_the_layer_that_set_the_value() {
    let s = Sources {
        cmdline: Some("cortex.raft.election_timeout_max_ms=1200".to_owned()),
        ..sources("root-good")
    };
    assert_eq!(
        load_err(&s, &FlagOverrides::default()),
        format!(
            "kernel command line: key raft.election_timeout_max_ms: invalid value 1200: must be greater than \
             raft.election_timeout_min_ms (1500, from {})",
            path("root-good/etc/cortex/config.toml")
        )
    );
    let s = Sources {
        env: env(&[("CORTEX_RAFT__SNAPSHOT_AFTER_ENTRIES", "0")]),
        ..sources("root-good")
    };
    assert_eq!(
        load_err(&s, &FlagOverrides::default()),
        "environment variable CORTEX_RAFT__SNAPSHOT_AFTER_ENTRIES: key raft.snapshot_after_entries: \
         invalid value 0: must be at least 1"
    );
    let flags = FlagOverrides {
        node_name: Some(String::new()),
        ..FlagOverrides::default()
    };
    assert_eq!(
        load_err(&sources("root-good"), &flags),
        "flag --node-name: key node_name: invalid value \"\": must be 1 to 63 characters long"
    );
    let flags = FlagOverrides {
        data_dir: Some("".into()),
        ..FlagOverrides::default()
    };
    assert_eq!(
        load_err(&sources("root-good"), &flags),
        "flag --data-dir: key data_dir: invalid value \"\": must not be empty"
    );
    let flags = FlagOverrides {
        log_level: Some("info,".to_owned()),
        ..FlagOverrides::default()
    };
    assert_eq!(
        load_err(&sources("root-good"), &flags),
        "flag --log-level: key log_level: invalid value \"info,\": empty directive \
         (expected one of trace, debug, info, warn, error, off, or target=level)"
    );
}
