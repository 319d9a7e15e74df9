//! The `[mcp]` table through `load`: every layer, bad host names, and `config show`.

use super::*;

#[test]
fn allowed_hosts_come_from_every_layer_and_bad_names_are_refused() {
    let none = sources("no-such-root");
    assert!(load_ok(&none, &FlagOverrides::default())
        .mcp
        .allowed_hosts
        .is_empty());

    let from_env = Sources {
        env: env(&[("CORTEX_MCP__ALLOWED_HOSTS", "coord.lan, Cortex-1")]),
        ..sources("no-such-root")
    };
    let cfg = load_ok(&from_env, &FlagOverrides::default());
    assert_eq!(cfg.mcp.allowed_hosts, vec!["coord.lan", "Cortex-1"]);
    assert!(cfg
        .to_toml()
        .contains("[mcp]\nallowed_hosts = [\"coord.lan\", \"Cortex-1\"]\n"));

    let cmdline = Sources {
        cmdline: Some("quiet cortex.mcp.allowed_hosts=coord".to_owned()),
        ..sources("no-such-root")
    };
    assert_eq!(
        load_ok(&cmdline, &FlagOverrides::default()).mcp.allowed_hosts,
        vec!["coord"]
    );

    for (value, reason) in [
        ("http://coord", "a URL, not a host name (e.g. coord.lan)"),
        (
            "coord:7070",
            "a host name without a port (e.g. coord.lan); IP addresses are always allowed",
        ),
        (
            "co_ord",
            "expected a DNS name: letters, digits and '-' between dots (e.g. coord.lan)",
        ),
    ] {
        let s = Sources {
            env: env(&[("CORTEX_MCP__ALLOWED_HOSTS", value)]),
            ..sources("no-such-root")
        };
        assert_eq!(
            load_err(&s, &FlagOverrides::default()),
            format!(
                "environment variable CORTEX_MCP__ALLOWED_HOSTS: key mcp.allowed_hosts: invalid value {value:?}: {reason}"
            )
        );
    }
}
