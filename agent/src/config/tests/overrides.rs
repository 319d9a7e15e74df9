//! The kernel command line and environment layers, through `load`.

use super::*;

fn with_cmdline(line: &str) -> Sources {
    Sources {
        cmdline: Some(line.to_owned()),
        ..sources("no-such-root")
    }
}

fn with_env(pairs: &[(&str, &str)]) -> Sources {
    Sources {
        env: env(pairs),
        ..sources("no-such-root")
    }
}

fn no_flags() -> FlagOverrides {
    FlagOverrides::default()
}

#[test]
fn cmdline_quoted_values_dotted_keys_and_foreign_words() {
    let line = "BOOT_IMAGE=/vmlinuz-6.1 root=UUID=abcd ro quiet splash console=ttyS0,115200 \
                cortex.data_dir=\"/var/lib/my cortex\" \"cortex.log_level=info,cortex=debug\" \
                cortex.node_name=007 cortex.raft.heartbeat_interval_ms=100 cortex.grpc_addr=[::]:7071 \
                systemd.unit=multi-user.target\n";
    let cfg = load_ok(&with_cmdline(line), &no_flags());
    assert_eq!(cfg.data_dir.to_str(), Some("/var/lib/my cortex"));
    assert_eq!(cfg.log_level, "info,cortex=debug");
    assert_eq!(cfg.node_name.as_deref(), Some("007"));
    assert_eq!(cfg.raft.heartbeat_interval_ms, 100);
    assert_eq!(cfg.raft.election_timeout_min_ms, 500);
    assert_eq!(cfg.grpc_addr.to_string(), "[::]:7071");
    assert_eq!(cfg.http_addr.to_string(), "127.0.0.1:7070");
}

#[test]
fn cmdline_later_word_wins() {
    let cfg = load_ok(
        &with_cmdline("cortex.node_name=a cortex.node_name=b"),
        &no_flags(),
    );
    assert_eq!(cfg.node_name.as_deref(), Some("b"));
}

#[test]
fn cmdline_rejections() {
    let cases = [
        (
            "ro cortex.node_name quiet",
            "kernel command line: cortex.node_name has no value (expected cortex.node_name=VALUE)",
        ),
        (
            "cortex.data_dir=\"/a b",
            "kernel command line: unterminated double quote in cortex.data_dir=\"/a b",
        ),
        (
            "cortex.raft.heartbeat=1",
            "kernel command line: unknown key \"raft.heartbeat\" (known keys in [raft]: \
             heartbeat_interval_ms, election_timeout_min_ms, election_timeout_max_ms, \
             snapshot_after_entries)",
        ),
        (
            "cortex.nodename=x",
            "kernel command line: unknown key \"nodename\" (known keys: data_dir, http_addr, grpc_addr, \
             node_name, log_level, join, token, role, leave_on_shutdown, raft, cluster, bench, tasks, mcp)",
        ),
        (
            "cortex.http_addr.port=1",
            "kernel command line: unknown key \"http_addr.port\" (http_addr is not a table)",
        ),
        (
            "cortex.raft=fast",
            "kernel command line: key raft is a table; set its keys one by one, \
             e.g. cortex.raft.heartbeat_interval_ms=VALUE",
        ),
        (
            "cortex.raft.snapshot_after_entries=lots",
            "kernel command line: key raft.snapshot_after_entries: expected a non-negative integer, \
             got \"lots\"",
        ),
        (
            "cortex.http_addr=localhost:80",
            "kernel command line: key http_addr: expected an address like 127.0.0.1:7070, \
             got \"localhost:80\"",
        ),
    ];
    for (line, want) in cases {
        assert_eq!(load_err(&with_cmdline(line), &no_flags()), want, "{line}");
    }
}

#[test]
fn env_overrides_and_ignores_client_variables() {
    let s = with_env(&[
        ("CORTEX_NODE_NAME", "007"),
        ("CORTEX_RAFT__SNAPSHOT_AFTER_ENTRIES", "42"),
        ("CORTEX_HTTP_ADDR", "0.0.0.0:80"),
        ("CORTEX_SERVER", "http://x"),
        ("CORTEX_TOKEN", "secret"),
        ("CORTEX_TOKEN_FILE", "/t"),
        ("CORTEX_OUTPUT", "json"),
        ("CORTEX_CONFIG_ROOT", "/elsewhere"),
        ("CORTEX_CMDLINE_FILE", "/elsewhere/cmdline"),
        ("CORTEX_LOG", "trace"),
        ("NOT_CORTEX_X", "ignored"),
    ]);
    let cfg = load_ok(&s, &no_flags());
    assert_eq!(cfg.node_name.as_deref(), Some("007"));
    assert_eq!(cfg.raft.snapshot_after_entries, 42);
    assert_eq!(cfg.http_addr.to_string(), "0.0.0.0:80");
    assert_eq!(cfg.log_level, "info");
    assert_eq!(
        cfg.token, None,
        "CORTEX_TOKEN is the client's bearer token, not the join token"
    );
}

#[test]
fn env_rejections() {
    let cases = [
        (
            ("CORTEX_BOGUS", "1"),
            "environment variable CORTEX_BOGUS: unknown key \"bogus\" (known keys: data_dir, http_addr, \
             grpc_addr, node_name, log_level, join, token, role, leave_on_shutdown, raft, cluster, bench, tasks, mcp)",
        ),
        (
            ("CORTEX_RAFT_HEARTBEAT_INTERVAL_MS", "100"),
            "environment variable CORTEX_RAFT_HEARTBEAT_INTERVAL_MS: \
             unknown key \"raft_heartbeat_interval_ms\" (known keys: data_dir, http_addr, grpc_addr, \
             node_name, log_level, join, token, role, leave_on_shutdown, raft, cluster, bench, tasks, mcp; \
             keys in [raft] are spelled CORTEX_RAFT__KEY)",
        ),
        (
            ("CORTEX_RAFT__HEARTBEAT", "100"),
            "environment variable CORTEX_RAFT__HEARTBEAT: unknown key \"raft.heartbeat\" \
             (known keys in [raft]: heartbeat_interval_ms, election_timeout_min_ms, \
             election_timeout_max_ms, snapshot_after_entries)",
        ),
        (
            ("CORTEX_RAFT", "x"),
            "environment variable CORTEX_RAFT: key raft is a table; set its keys one by one, \
             e.g. CORTEX_RAFT__HEARTBEAT_INTERVAL_MS",
        ),
        (
            ("CORTEX_GRPC_ADDR", "7071"),
            "environment variable CORTEX_GRPC_ADDR: key grpc_addr: expected an address like 127.0.0.1:7071, \
             got \"7071\"",
        ),
        (
            ("CORTEX_NODE_NAME", "a/b"),
            "environment variable CORTEX_NODE_NAME: key node_name: invalid value \"a/b\": \
             character '/' is not allowed (use A-Z, a-z, 0-9, '-', '_', '.')",
        ),
    ];
    for ((name, value), want) in cases {
        assert_eq!(load_err(&with_env(&[(name, value)]), &no_flags()), want, "{name}");
    }
}

#[test]
fn env_beats_cmdline_and_flags_beat_env() {
    let s = Sources {
        env: env(&[("CORTEX_NODE_NAME", "env")]),
        ..with_cmdline("cortex.node_name=cmdline")
    };
    assert_eq!(load_ok(&s, &no_flags()).node_name.as_deref(), Some("env"));
    let flags = FlagOverrides {
        node_name: Some("flag".to_owned()),
        ..no_flags()
    };
    assert_eq!(load_ok(&s, &flags).node_name.as_deref(), Some("flag"));
}
