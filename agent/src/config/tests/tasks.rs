//! The `[tasks]` table through `load`: default, layers, bounds and types.

use super::*;

#[test]
fn log_limit_defaults_to_one_mib_and_layers_set_it() {
    let none = sources("no-such-root");
    assert_eq!(
        load_ok(&none, &FlagOverrides::default()).tasks.log_limit_bytes,
        1 << 20
    );
    let cmdline = Sources {
        cmdline: Some("cortex.tasks.log_limit_bytes=4096".to_owned()),
        ..sources("no-such-root")
    };
    assert_eq!(
        load_ok(&cmdline, &FlagOverrides::default()).tasks.log_limit_bytes,
        4096
    );
    let from_env = Sources {
        env: env(&[("CORTEX_TASKS__LOG_LIMIT_BYTES", "100")]),
        ..cmdline
    };
    assert_eq!(
        load_ok(&from_env, &FlagOverrides::default())
            .tasks
            .log_limit_bytes,
        100
    );
}

#[test]
fn log_limit_out_of_bounds_or_not_a_number_is_named() {
    for (value, want) in [
        ("0", "must be between 1 and 67108864"),
        ("67108865", "must be between 1 and 67108864"),
        ("1M", "expected a non-negative integer, got \"1M\""),
    ] {
        let s = Sources {
            env: env(&[("CORTEX_TASKS__LOG_LIMIT_BYTES", value)]),
            ..sources("no-such-root")
        };
        let err = load_err(&s, &FlagOverrides::default());
        assert!(
            err.contains("tasks.log_limit_bytes") && err.contains(want),
            "{value}: {err}"
        );
    }
}

#[test]
fn task_users_default_to_nobody_without_root_and_bad_values_are_named() {
    let none = sources("no-such-root");
    let cfg = load_ok(&none, &FlagOverrides::default());
    assert_eq!(
        (cfg.tasks.default_user.as_str(), cfg.tasks.allow_root),
        ("nobody", false)
    );
    let set = Sources {
        cmdline: Some("cortex.tasks.default_user=builder cortex.tasks.allow_root=true".to_owned()),
        ..sources("no-such-root")
    };
    let cfg = load_ok(&set, &FlagOverrides::default());
    assert_eq!(
        (cfg.tasks.default_user.as_str(), cfg.tasks.allow_root),
        ("builder", true)
    );
    // "" = the agent's own user.
    let own = Sources {
        env: env(&[("CORTEX_TASKS__DEFAULT_USER", "")]),
        ..sources("no-such-root")
    };
    assert_eq!(load_ok(&own, &FlagOverrides::default()).tasks.default_user, "");
    for (var, value, key) in [
        ("CORTEX_TASKS__DEFAULT_USER", "Bad User", "tasks.default_user"),
        ("CORTEX_TASKS__ALLOW_ROOT", "yes", "tasks.allow_root"),
    ] {
        let s = Sources {
            env: env(&[(var, value)]),
            ..sources("no-such-root")
        };
        let err = load_err(&s, &FlagOverrides::default());
        assert!(err.contains(key), "{value}: {err}");
    }
}
