//! The cluster keys (`join`, `token`, `role`, `leave_on_shutdown`, `[cluster]`) through `load`:
//! every layer, every rejection, and the token kept out of every message and output.

use super::super::{ClusterConfig, Role};
use super::*;

/// The part of every token in these tests: no message or output may contain it.
const SECRET: &str = "tok-Zq8vX3";

fn bad(file: &str) -> String {
    load_err(&sources("no-such-root"), &config_flag(&format!("bad/{file}")))
}

fn path(relative: &str) -> String {
    fixture(relative).display().to_string()
}

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

fn with_flags(flags: FlagOverrides) -> String {
    load_err(&sources("no-such-root"), &flags)
}

/// `msg` as is, after checking that it does not show the token.
fn hidden(msg: String) -> String {
    assert!(!msg.contains(SECRET), "the token leaked: {msg}");
    msg
}

/// What every layer test below sets: all keys of the cluster layer, different from the defaults.
fn everything(token: &str) -> Config {
    Config {
        join: vec!["10.1.0.1:7071".to_owned(), "coord-2:7071".to_owned()],
        token: Some(token.to_owned()),
        role: Role::Coordinator,
        leave_on_shutdown: true,
        cluster: ClusterConfig {
            target_voters: 5,
            heartbeat_interval_ms: 200,
            suspect_after_ms: 600,
            down_after_ms: 1200,
            voter_grace_ms: 60_000,
        },
        ..Config::defaults(&[])
    }
}

#[test]
fn defaults() {
    let cfg = load_ok(&sources("no-such-root"), &FlagOverrides::default());
    assert_eq!(cfg.join, Vec::<String>::new());
    assert_eq!(cfg.token, None);
    assert_eq!(cfg.role, Role::Worker);
    assert!(!cfg.leave_on_shutdown);
    assert_eq!(
        cfg.cluster,
        ClusterConfig {
            target_voters: 3,
            heartbeat_interval_ms: 1000,
            suspect_after_ms: 2000,
            down_after_ms: 5000,
            voter_grace_ms: 30_000,
        }
    );
}

#[test]
fn every_key_from_a_file_with_join_as_an_array() {
    let cfg = load_ok(&sources("no-such-root"), &config_flag("cluster.toml"));
    let want = Config {
        join: vec![
            "10.1.0.1:7071".to_owned(),
            "[fd00::1]:7071".to_owned(),
            "coord.example.org:7071".to_owned(),
        ],
        token: Some(format!("{SECRET}-file")),
        role: Role::Coordinator,
        leave_on_shutdown: true,
        cluster: ClusterConfig {
            target_voters: 1,
            heartbeat_interval_ms: 50,
            suspect_after_ms: 51,
            down_after_ms: 52,
            voter_grace_ms: 52,
        },
        ..Config::defaults(&[])
    };
    assert_eq!(cfg, want);
}

#[test]
fn every_key_from_the_kernel_command_line_with_join_comma_separated() {
    let line = format!(
        "BOOT_IMAGE=/vmlinuz ro cortex.join=10.1.0.1:7071,coord-2:7071 cortex.token={SECRET}-cmdline \
         cortex.role=coordinator cortex.leave_on_shutdown=true cortex.cluster.target_voters=5 \
         cortex.cluster.heartbeat_interval_ms=200 cortex.cluster.suspect_after_ms=600 \
         cortex.cluster.down_after_ms=1200 cortex.cluster.voter_grace_ms=60000 quiet\n"
    );
    let cfg = load_ok(&with_cmdline(&line), &FlagOverrides::default());
    assert_eq!(cfg, everything(&format!("{SECRET}-cmdline")));
}

#[test]
fn every_key_from_the_environment_with_the_token_as_cortex_join_token() {
    let token = format!("{SECRET}-env");
    let s = with_env(&[
        ("CORTEX_JOIN", "10.1.0.1:7071, coord-2:7071"),
        ("CORTEX_JOIN_TOKEN", &token),
        ("CORTEX_ROLE", "coordinator"),
        ("CORTEX_LEAVE_ON_SHUTDOWN", "true"),
        ("CORTEX_CLUSTER__TARGET_VOTERS", "5"),
        ("CORTEX_CLUSTER__HEARTBEAT_INTERVAL_MS", "200"),
        ("CORTEX_CLUSTER__SUSPECT_AFTER_MS", "600"),
        ("CORTEX_CLUSTER__DOWN_AFTER_MS", "1200"),
        ("CORTEX_CLUSTER__VOTER_GRACE_MS", "60000"),
        ("CORTEX_TOKEN", "client-bearer-token"),
    ]);
    assert_eq!(load_ok(&s, &FlagOverrides::default()), everything(&token));
}

#[test]
fn the_client_token_variable_is_not_the_join_token() {
    let cfg = load_ok(
        &with_env(&[("CORTEX_TOKEN", "client-bearer-token")]),
        &FlagOverrides::default(),
    );
    assert_eq!(cfg.token, None);
    // Any other spelling that the general rule would map to `token` points to the exception.
    assert_eq!(
        hidden(load_err(
            &with_env(&[("CORTEX_Token", SECRET)]),
            &FlagOverrides::default()
        )),
        "environment variable CORTEX_Token: unknown key \"token\" \
         (in the environment, key token is spelled CORTEX_JOIN_TOKEN)"
    );
    let cfg = load_ok(
        &with_env(&[("CORTEX_join_token", "t")]),
        &FlagOverrides::default(),
    );
    assert_eq!(cfg.token.as_deref(), Some("t"));
}

#[test]
fn join_token_and_role_from_flags() {
    let s = Sources {
        env: env(&[
            ("CORTEX_JOIN", "10.0.0.1:7071,10.0.0.2:7071"),
            ("CORTEX_JOIN_TOKEN", "from-env"),
            ("CORTEX_ROLE", "worker"),
        ]),
        ..with_cmdline("cortex.join=10.0.0.3:7071 cortex.token=from-cmdline cortex.role=worker")
    };
    let flags = FlagOverrides {
        join: Some(vec!["coord-9:7071".to_owned()]),
        token: Some(format!("{SECRET}-flag")),
        role: Some(Role::Coordinator),
        ..FlagOverrides::default()
    };
    let cfg = load_ok(&s, &flags);
    assert_eq!(cfg.join, ["coord-9:7071"]);
    assert_eq!(cfg.token, Some(format!("{SECRET}-flag")));
    assert_eq!(cfg.role, Role::Coordinator);

    // An empty --join replaces the lists of lower layers, like an empty CORTEX_JOIN.
    let flags = FlagOverrides {
        join: Some(Vec::new()),
        ..FlagOverrides::default()
    };
    assert_eq!(load_ok(&s, &flags).join, Vec::<String>::new());
    let s = Sources {
        env: env(&[("CORTEX_JOIN", "")]),
        ..with_cmdline("cortex.join=10.0.0.3:7071")
    };
    assert_eq!(load_ok(&s, &FlagOverrides::default()).join, Vec::<String>::new());
}

#[test]
fn type_rejections_name_source_and_key() {
    let list = "expected a list of HOST:PORT addresses (an array of strings or a comma-separated string)";
    let cases = [
        ("join-number.toml", format!("key join: {list}, got 7071")),
        (
            "join-array-of-numbers.toml",
            format!("key join: {list}, got an array containing 7072"),
        ),
        (
            "role.toml",
            "key role: expected \"coordinator\" or \"worker\", got \"leader\"".to_owned(),
        ),
        (
            "leave-on-shutdown.toml",
            "key leave_on_shutdown: expected true or false, got \"yes\"".to_owned(),
        ),
        (
            "cluster-not-table.toml",
            "key cluster: expected a table, got \"big\"".to_owned(),
        ),
    ];
    for (file, want) in cases {
        assert_eq!(
            bad(file),
            format!("{}: {want}", path(&format!("bad/{file}"))),
            "{file}"
        );
    }
    assert_eq!(
        bad("cluster-unknown-key.toml"),
        format!(
            "{}: unknown key \"cluster.peers\" (known keys in [cluster]: target_voters, \
             heartbeat_interval_ms, suspect_after_ms, down_after_ms, voter_grace_ms)",
            path("bad/cluster-unknown-key.toml")
        )
    );
    let cmdline = [
        (
            "cortex.role=Coordinator",
            "kernel command line: key role: expected \"coordinator\" or \"worker\", got \"Coordinator\"",
        ),
        (
            "cortex.leave_on_shutdown=1",
            "kernel command line: key leave_on_shutdown: expected true or false, got \"1\"",
        ),
        (
            "cortex.cluster.target_voters=three",
            "kernel command line: key cluster.target_voters: expected a non-negative integer, \
             got \"three\"",
        ),
        (
            "cortex.cluster=big",
            "kernel command line: key cluster is a table; set its keys one by one, \
             e.g. cortex.cluster.target_voters=VALUE",
        ),
        (
            "cortex.cluster.heartbeat=1",
            "kernel command line: unknown key \"cluster.heartbeat\" (known keys in [cluster]: \
             target_voters, heartbeat_interval_ms, suspect_after_ms, down_after_ms, voter_grace_ms)",
        ),
    ];
    for (line, want) in cmdline {
        assert_eq!(
            load_err(&with_cmdline(line), &FlagOverrides::default()),
            want,
            "{line}"
        );
    }
    let vars = [
        (
            ("CORTEX_CLUSTER__DOWN_AFTER_MS", "-1"),
            "environment variable CORTEX_CLUSTER__DOWN_AFTER_MS: key cluster.down_after_ms: \
             expected a non-negative integer, got \"-1\"",
        ),
        (
            ("CORTEX_LEAVE_ON_SHUTDOWN", "yes"),
            "environment variable CORTEX_LEAVE_ON_SHUTDOWN: key leave_on_shutdown: \
             expected true or false, got \"yes\"",
        ),
        (
            ("CORTEX_CLUSTER_TARGET_VOTERS", "3"),
            "environment variable CORTEX_CLUSTER_TARGET_VOTERS: unknown key \"cluster_target_voters\" \
             (known keys: data_dir, http_addr, grpc_addr, node_name, log_level, join, token, role, \
             leave_on_shutdown, raft, cluster, bench, tasks, mcp; keys in [cluster] are spelled CORTEX_CLUSTER__KEY)",
        ),
    ];
    for ((name, value), want) in vars {
        assert_eq!(
            load_err(&with_env(&[(name, value)]), &FlagOverrides::default()),
            want,
            "{name}"
        );
    }
}

#[test]
fn join_rejections_name_the_entry() {
    let expected = "(expected HOST:PORT, e.g. 10.0.0.1:7071)";
    assert_eq!(
        bad("join-no-port.toml"),
        format!(
            "{}: key join: invalid value \"10.0.0.2\": missing port {expected}",
            path("bad/join-no-port.toml")
        )
    );
    assert_eq!(
        bad("join-empty-entry.toml"),
        format!(
            "{}: key join: invalid value \"\": empty address (expected HOST:PORT, e.g. 10.0.0.1:7071; \
             look for a doubled or trailing comma)",
            path("bad/join-empty-entry.toml")
        )
    );
    assert_eq!(
        load_err(
            &with_cmdline("cortex.join=10.0.0.1:7071,10.0.0.2:70710"),
            &FlagOverrides::default()
        ),
        "kernel command line: key join: invalid value \"10.0.0.2:70710\": \
         port \"70710\" is not a number from 1 to 65535"
    );
    assert_eq!(
        load_err(
            &with_env(&[("CORTEX_JOIN", "fd00::1:7071")]),
            &FlagOverrides::default()
        ),
        "environment variable CORTEX_JOIN: key join: invalid value \"fd00::1:7071\": \
         an IPv6 address must be in brackets, e.g. [fd00::1]:7071"
    );
    assert_eq!(
        with_flags(FlagOverrides {
            join: Some(vec!["coord_1:7071".to_owned()]),
            ..FlagOverrides::default()
        }),
        "flag --join: key join: invalid value \"coord_1:7071\": invalid host name \"coord_1\": \
         character '_' is not allowed (use A-Z, a-z, 0-9, '-', '.')"
    );
}

#[test]
fn range_rejections() {
    let cases = [
        (
            "target-voters.toml",
            "key cluster.target_voters: invalid value 2: must be 1, 3 or 5",
        ),
        (
            "cluster-heartbeat.toml",
            "key cluster.heartbeat_interval_ms: invalid value 49: must be between 50 and 60000",
        ),
    ];
    for (file, want) in cases {
        assert_eq!(
            bad(file),
            format!("{}: {want}", path(&format!("bad/{file}"))),
            "{file}"
        );
    }
    assert_eq!(
        load_err(
            &with_env(&[("CORTEX_CLUSTER__HEARTBEAT_INTERVAL_MS", "60001")]),
            &FlagOverrides::default()
        ),
        "environment variable CORTEX_CLUSTER__HEARTBEAT_INTERVAL_MS: key cluster.heartbeat_interval_ms: \
         invalid value 60001: must be between 50 and 60000"
    );
    assert_eq!(
        load_err(
            &with_cmdline("cortex.cluster.target_voters=0"),
            &FlagOverrides::default()
        ),
        "kernel command line: key cluster.target_voters: invalid value 0: must be 1, 3 or 5"
    );
}

#[test]
fn cross_key_rejections_name_both_keys_and_their_sources() {
    assert_eq!(
        bad("suspect-too-short.toml"),
        format!(
            "{}: key cluster.suspect_after_ms: invalid value 1000: must be greater than \
             cluster.heartbeat_interval_ms (1000, from built-in default)",
            path("bad/suspect-too-short.toml")
        )
    );
    let file = path("bad/down-too-short.toml");
    assert_eq!(
        bad("down-too-short.toml"),
        format!(
            "{file}: key cluster.down_after_ms: invalid value 1500: must be greater than \
             cluster.suspect_after_ms (1500, from {file})"
        )
    );
    assert_eq!(
        bad("voter-grace-too-short.toml"),
        format!(
            "{}: key cluster.voter_grace_ms: invalid value 4999: must be at least \
             cluster.down_after_ms (5000, from built-in default)",
            path("bad/voter-grace-too-short.toml")
        )
    );
    // Raising the heartbeat alone makes the default suspect_after_ms too short: the message
    // blames the default and names the variable that raised the heartbeat.
    assert_eq!(
        load_err(
            &with_env(&[("CORTEX_CLUSTER__HEARTBEAT_INTERVAL_MS", "2000")]),
            &FlagOverrides::default()
        ),
        "built-in default: key cluster.suspect_after_ms: invalid value 2000: must be greater than \
         cluster.heartbeat_interval_ms (2000, from environment variable \
         CORTEX_CLUSTER__HEARTBEAT_INTERVAL_MS)"
    );
    let s = Sources {
        env: env(&[("CORTEX_CLUSTER__VOTER_GRACE_MS", "5999")]),
        ..with_cmdline("cortex.cluster.down_after_ms=6000")
    };
    assert_eq!(
        load_err(&s, &FlagOverrides::default()),
        "environment variable CORTEX_CLUSTER__VOTER_GRACE_MS: key cluster.voter_grace_ms: \
         invalid value 5999: must be at least cluster.down_after_ms (6000, from kernel command line)"
    );
    // The Raft heartbeat and the liveness heartbeat are separate keys.
    let cfg = load_ok(
        &with_cmdline(
            "cortex.raft.heartbeat_interval_ms=5000 cortex.raft.election_timeout_min_ms=10001 \
                       cortex.raft.election_timeout_max_ms=10002",
        ),
        &FlagOverrides::default(),
    );
    assert_eq!(cfg.raft.heartbeat_interval_ms, 5000);
    assert_eq!(cfg.cluster.heartbeat_interval_ms, 1000);
}

#[test]
fn token_rejections_never_show_the_token() {
    let malformed = "invalid value <redacted>: malformed token (expected 1 to 4096 bytes without whitespace)";
    for file in ["token-whitespace.toml", "token-empty.toml"] {
        assert_eq!(
            hidden(bad(file)),
            format!("{}: key token: {malformed}", path(&format!("bad/{file}"))),
            "{file}"
        );
    }
    assert_eq!(
        hidden(bad("token-number.toml")),
        format!(
            "{}: key token: expected a string, got an integer (value not shown: the key is a secret)",
            path("bad/token-number.toml")
        )
    );
    assert!(!bad("token-number.toml").contains("918273645"));
    assert_eq!(
        hidden(bad("token-array.toml")),
        format!(
            "{}: key token: expected a string, got an array (value not shown: the key is a secret)",
            path("bad/token-array.toml")
        )
    );
    assert_eq!(
        bad("token-placeholder.toml"),
        format!(
            "{}: key token: invalid value <redacted>: <redacted> is the placeholder that \
             `cortex config show` prints, not a token",
            path("bad/token-placeholder.toml")
        )
    );
    // TOML syntax errors quote the parser's message, which does not include the text.
    for file in ["token-unclosed.toml", "token-bad-escape.toml"] {
        let msg = hidden(bad(file));
        assert!(
            msg.starts_with(&format!("{}:1:", path(&format!("bad/{file}")))),
            "{msg}"
        );
    }

    assert_eq!(
        hidden(load_err(
            &with_cmdline(&format!("cortex.token=\"{SECRET} quoted\"")),
            &FlagOverrides::default()
        )),
        format!("kernel command line: key token: {malformed}")
    );
    assert_eq!(
        hidden(load_err(
            &with_cmdline(&format!("ro cortex.token=\"{SECRET} unterminated")),
            &FlagOverrides::default()
        )),
        "kernel command line: unterminated double quote in cortex.token=<redacted>"
    );
    assert_eq!(
        hidden(load_err(
            &with_env(&[("CORTEX_JOIN_TOKEN", &format!("{SECRET}\n"))]),
            &FlagOverrides::default()
        )),
        format!("environment variable CORTEX_JOIN_TOKEN: key token: {malformed}")
    );
    assert_eq!(
        hidden(with_flags(FlagOverrides {
            token: Some(format!("{SECRET}{}", "x".repeat(4096))),
            ..FlagOverrides::default()
        })),
        format!("flag --token: key token: {malformed}")
    );
    // 4096 bytes is the limit.
    let longest = format!("{SECRET}{}", "x".repeat(4096 - SECRET.len()));
    let flags = FlagOverrides {
        token: Some(longest.clone()),
        ..FlagOverrides::default()
    };
    assert_eq!(load_ok(&sources("no-such-root"), &flags).token, Some(longest));
}

#[test]
fn other_errors_do_not_show_a_valid_token() {
    let token = format!("{SECRET}-valid");
    let s = Sources {
        env: env(&[("CORTEX_JOIN_TOKEN", &token), ("CORTEX_JOIN", "nope")]),
        ..with_cmdline(&format!("cortex.token={token}"))
    };
    assert_eq!(
        hidden(load_err(&s, &FlagOverrides::default())),
        "environment variable CORTEX_JOIN: key join: invalid value \"nope\": \
         missing port (expected HOST:PORT, e.g. 10.0.0.1:7071)"
    );
    let flags = FlagOverrides {
        token: Some(token),
        ..config_flag("bad/role.toml")
    };
    hidden(load_err(&sources("no-such-root"), &flags));
}

#[test]
fn shown_configuration_redacts_the_token_and_round_trips_the_rest() {
    let cfg = load_ok(&sources("no-such-root"), &config_flag("cluster.toml"));
    let text = cfg.to_toml();
    assert!(!text.contains(SECRET), "{text}");
    assert!(!format!("{cfg:?}").contains(SECRET));
    assert!(
        text.contains(
            "join = [\"10.1.0.1:7071\", \"[fd00::1]:7071\", \"coord.example.org:7071\"]\n\
             token = \"<redacted>\"\n\
             role = \"coordinator\"\n\
             leave_on_shutdown = true\n"
        ),
        "{text}"
    );
    assert!(
        text.ends_with(
            "[cluster]\n\
             target_voters = 1\n\
             heartbeat_interval_ms = 50\n\
             suspect_after_ms = 51\n\
             down_after_ms = 52\n\
             voter_grace_ms = 52\n\
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
        ),
        "{text}"
    );

    let dir = tempfile::tempdir().unwrap();
    let shown = dir.path().join("shown.toml");
    std::fs::write(&shown, &text).unwrap();
    let flags = FlagOverrides {
        config_file: Some(shown.clone()),
        ..FlagOverrides::default()
    };
    // The placeholder is not a token: reusing the shown file as is fails loudly.
    assert_eq!(
        load_err(&sources("no-such-root"), &flags),
        format!(
            "{}: key token: invalid value <redacted>: <redacted> is the placeholder that \
             `cortex config show` prints, not a token",
            shown.display()
        )
    );
    // With the real token supplied by a later layer, everything else round-trips.
    let s = Sources {
        env: env(&[("CORTEX_JOIN_TOKEN", &format!("{SECRET}-file"))]),
        ..sources("no-such-root")
    };
    assert_eq!(load_ok(&s, &flags), cfg);

    // Without a token, the comment stands in for it and the whole file round-trips.
    let cfg = Config { token: None, ..cfg };
    std::fs::write(&shown, cfg.to_toml()).unwrap();
    assert!(cfg.to_toml().contains("\n# token is not set\n"));
    assert_eq!(load_ok(&sources("no-such-root"), &flags), cfg);
}
