//! Each layer overrides the one before, key by key; keys a layer does not set survive.

use std::path::PathBuf;

use super::super::{BenchConfig, ClusterConfig, McpConfig, RaftConfig, Role, TasksConfig};
use super::*;

/// The result of the four file layers of `root-good`.
fn files_only() -> Config {
    Config {
        data_dir: PathBuf::from("/srv/cortex"),     // etc/cortex/config.toml
        http_addr: "0.0.0.0:8080".parse().unwrap(), // usr/lib 10-defaults.toml
        grpc_addr: "0.0.0.0:9090".parse().unwrap(), // etc/cortex/config.toml
        node_name: Some("etc-d".to_owned()),        // etc/cortex/config.d/50-x.toml
        log_level: "debug".to_owned(),              // usr/lib 10-defaults.toml
        // etc/cortex/config.d/50-x.toml (a string) replaces the array of usr/lib 10-defaults.toml.
        join: vec!["coord-a:7071".to_owned(), "coord-b:7071".to_owned()],
        token: None,
        role: Role::Coordinator, // etc/cortex/config.toml
        leave_on_shutdown: true, // usr/lib 10-defaults.toml
        raft: RaftConfig {
            heartbeat_interval_ms: 100,    // usr/lib 10-defaults.toml
            election_timeout_min_ms: 1500, // etc/cortex/config.toml
            election_timeout_max_ms: 3000, // etc/cortex/config.d/50-x.toml
            snapshot_after_entries: 600,   // usr/lib 20-vendor.toml over 10-defaults.toml
        },
        cluster: ClusterConfig {
            target_voters: 5,           // usr/lib 20-vendor.toml
            heartbeat_interval_ms: 500, // usr/lib 10-defaults.toml
            suspect_after_ms: 1500,     // usr/lib 10-defaults.toml
            down_after_ms: 4000,        // etc/cortex/config.toml
            voter_grace_ms: 4000,       // etc/cortex/config.d/50-x.toml
        },
        bench: BenchConfig::default(), // no file sets [bench]
        tasks: TasksConfig::default(), // nor [tasks]
        mcp: McpConfig::default(),     // nor [mcp]
    }
}

const CMDLINE: &str = "BOOT_IMAGE=/vmlinuz root=/dev/sda1 cortex.node_name=cmdline \
                       cortex.data_dir=\"/srv/my data\" cortex.raft.heartbeat_interval_ms=200 quiet \
                       cortex.join=10.9.0.1:7071,10.9.0.2:7071 cortex.cluster.suspect_after_ms=1800\n";

/// The distinctive join token of the environment layer.
const ENV_TOKEN: &str = "tok-Zq8vX3-layered-env";

#[test]
fn without_any_layer_the_defaults_apply() {
    let mut s = sources("no-such-root");
    s.env = env(&[("HOME", "/home/t")]);
    let cfg = load_ok(&s, &FlagOverrides::default());
    let want = Config {
        data_dir: PathBuf::from("/home/t/.local/share/cortex"),
        ..Config::defaults(&[])
    };
    assert_eq!(cfg, want);
}

#[test]
fn file_layers_apply_in_order_and_merge_tables() {
    assert_eq!(
        load_ok(&sources("root-good"), &FlagOverrides::default()),
        files_only()
    );
}

#[test]
fn explicit_file_overrides_system_files() {
    let cfg = load_ok(&sources("root-good"), &config_flag("extra.toml"));
    let want = Config {
        node_name: Some("explicit".to_owned()),
        log_level: "warn".to_owned(),
        ..files_only()
    };
    assert_eq!(cfg, want);
}

fn through_cmdline() -> Config {
    let mut want = Config {
        node_name: Some("cmdline".to_owned()),
        data_dir: PathBuf::from("/srv/my data"),
        log_level: "warn".to_owned(),
        ..files_only()
    };
    want.raft.heartbeat_interval_ms = 200;
    want.join = vec!["10.9.0.1:7071".to_owned(), "10.9.0.2:7071".to_owned()];
    want.cluster.suspect_after_ms = 1800;
    want
}

#[test]
fn cmdline_overrides_files() {
    let mut s = sources("root-good");
    s.cmdline = Some(CMDLINE.to_owned());
    assert_eq!(load_ok(&s, &config_flag("extra.toml")), through_cmdline());
}

fn layered_env() -> Vec<(String, String)> {
    env(&[
        ("HOME", "/home/t"),
        ("PATH", "/usr/bin"),
        ("CORTEX_SERVER", "http://10.0.0.1:7070"),
        ("CORTEX_NODE_NAME", "env"),
        ("CORTEX_RAFT__ELECTION_TIMEOUT_MAX_MS", "4000"),
        ("CORTEX_ROLE", "worker"),
        ("CORTEX_CLUSTER__TARGET_VOTERS", "1"),
        ("CORTEX_JOIN_TOKEN", ENV_TOKEN),
    ])
}

/// `through_cmdline` with the settings of `layered_env`.
fn through_env() -> Config {
    let mut want = Config {
        node_name: Some("env".to_owned()),
        token: Some(ENV_TOKEN.to_owned()),
        role: Role::Worker,
        ..through_cmdline()
    };
    want.raft.election_timeout_max_ms = 4000;
    want.cluster.target_voters = 1;
    want
}

#[test]
fn env_overrides_cmdline() {
    let mut s = sources("root-good");
    s.cmdline = Some(CMDLINE.to_owned());
    s.env = layered_env();
    assert_eq!(load_ok(&s, &config_flag("extra.toml")), through_env());
}

#[test]
fn flags_override_everything() {
    let mut s = sources("root-good");
    s.cmdline = Some(CMDLINE.to_owned());
    s.env = layered_env();
    let flags = FlagOverrides {
        node_name: Some("flag".to_owned()),
        http_addr: Some("127.0.0.1:1234".parse().unwrap()),
        log_level: Some("info,cortex=trace".to_owned()),
        ..config_flag("extra.toml")
    };
    let want = Config {
        node_name: Some("flag".to_owned()),
        http_addr: "127.0.0.1:1234".parse().unwrap(),
        log_level: "info,cortex=trace".to_owned(),
        ..through_env()
    };
    assert_eq!(load_ok(&s, &flags), want);

    let all = FlagOverrides {
        data_dir: Some(PathBuf::from("/flag/dir")),
        grpc_addr: Some("[::1]:9999".parse().unwrap()),
        join: Some(vec!["[fd00::9]:7071".to_owned()]),
        token: Some("tok-Zq8vX3-flag".to_owned()),
        role: Some(Role::Coordinator),
        ..flags
    };
    let want = Config {
        data_dir: PathBuf::from("/flag/dir"),
        grpc_addr: "[::1]:9999".parse().unwrap(),
        join: vec!["[fd00::9]:7071".to_owned()],
        token: Some("tok-Zq8vX3-flag".to_owned()),
        role: Role::Coordinator,
        ..want
    };
    assert_eq!(load_ok(&s, &all), want);
}

#[test]
fn effective_config_round_trips_through_to_toml() {
    let mut s = sources("root-good");
    s.cmdline = Some(CMDLINE.to_owned());
    let cfg = load_ok(&s, &config_flag("extra.toml"));
    let dir = tempfile::tempdir().unwrap();
    let shown = dir.path().join("shown.toml");
    std::fs::write(&shown, cfg.to_toml()).unwrap();
    let flags = FlagOverrides {
        config_file: Some(shown),
        ..FlagOverrides::default()
    };
    assert_eq!(load_ok(&sources("no-such-root"), &flags), cfg);
}

/// The tree that the process-level test (`tests/config.rs`) runs `cortex config show` against.
#[test]
fn process_fixture_layers() {
    let cmdline = std::fs::read_to_string(fixture("process/cmdline")).unwrap();
    let s = Sources {
        cmdline: Some(cmdline),
        env: env(&[
            ("CORTEX_GRPC_ADDR", "127.0.0.1:17171"),
            ("CORTEX_NODE_NAME", "fromenv"),
        ]),
        ..sources("process")
    };
    let flags = FlagOverrides {
        http_addr: Some("127.0.0.1:17072".parse().unwrap()),
        ..FlagOverrides::default()
    };
    let cfg = load_ok(&s, &flags);
    let want = Config {
        http_addr: "127.0.0.1:17072".parse().unwrap(),
        grpc_addr: "127.0.0.1:17171".parse().unwrap(),
        node_name: Some("fromenv".to_owned()),
        log_level: "warn".to_owned(),
        raft: RaftConfig {
            heartbeat_interval_ms: 150,
            election_timeout_min_ms: 500,
            election_timeout_max_ms: 3000,
            snapshot_after_entries: 10_000,
        },
        ..Config::defaults(&[])
    };
    assert_eq!(cfg, want);
    assert_eq!(
        load_err(&sources("process-bad"), &FlagOverrides::default()),
        format!(
            "{}: unknown key \"raft.heartbeat\" (known keys in [raft]: heartbeat_interval_ms, \
             election_timeout_min_ms, election_timeout_max_ms, snapshot_after_entries)",
            fixture("process-bad/etc/cortex/config.d/30-bad.toml").display()
        )
    );
}
