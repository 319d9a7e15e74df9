//! The `[bench]` table through `load`: every layer, wrong types, unknown keys, and `config show`.

use super::super::BenchConfig;
use super::*;

fn with_file(text: &str) -> (tempfile::TempDir, FlagOverrides) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.toml");
    std::fs::write(&path, text).unwrap();
    let flags = FlagOverrides {
        config_file: Some(path),
        ..FlagOverrides::default()
    };
    (dir, flags)
}

#[test]
fn on_start_defaults_to_true_and_every_layer_can_turn_it_off() {
    let none = sources("no-such-root");
    assert!(load_ok(&none, &FlagOverrides::default()).bench.on_start);

    let (_dir, flags) = with_file("[bench]\non_start = false\n");
    assert_eq!(load_ok(&none, &flags).bench, BenchConfig { on_start: false });

    let cmdline = Sources {
        cmdline: Some("quiet cortex.bench.on_start=false".to_owned()),
        ..sources("no-such-root")
    };
    assert!(!load_ok(&cmdline, &FlagOverrides::default()).bench.on_start);

    let from_env = Sources {
        env: env(&[("CORTEX_BENCH__ON_START", "false")]),
        ..sources("no-such-root")
    };
    assert!(!load_ok(&from_env, &FlagOverrides::default()).bench.on_start);

    // The environment beats the file (and turns it back on).
    let (_dir, flags) = with_file("[bench]\non_start = false\n");
    let on = Sources {
        env: env(&[("CORTEX_BENCH__ON_START", "true")]),
        ..sources("no-such-root")
    };
    assert!(load_ok(&on, &flags).bench.on_start);
}

#[test]
fn wrong_types_and_unknown_keys_are_named() {
    let s = Sources {
        env: env(&[("CORTEX_BENCH__ON_START", "1")]),
        ..sources("no-such-root")
    };
    assert_eq!(
        load_err(&s, &FlagOverrides::default()),
        "environment variable CORTEX_BENCH__ON_START: key bench.on_start: expected true or false, got \"1\""
    );
    let (dir, flags) = with_file("[bench]\non_start = \"no\"\n");
    assert_eq!(
        load_err(&sources("no-such-root"), &flags),
        format!(
            "{}: key bench.on_start: expected true or false, got \"no\"",
            dir.path().join("bench.toml").display()
        )
    );
    let (dir, flags) = with_file("[bench]\nquick = true\n");
    assert_eq!(
        load_err(&sources("no-such-root"), &flags),
        format!(
            "{}: unknown key \"bench.quick\" (known keys in [bench]: on_start)",
            dir.path().join("bench.toml").display()
        )
    );
    let s = Sources {
        env: env(&[("CORTEX_BENCH_ON_START", "false")]),
        ..sources("no-such-root")
    };
    let err = load_err(&s, &FlagOverrides::default());
    assert!(
        err.contains("CORTEX_BENCH_ON_START")
            && err.contains("keys in [bench] are spelled CORTEX_BENCH__KEY"),
        "{err}"
    );
}

#[test]
fn config_show_prints_the_bench_table_and_reads_it_back() {
    let (_dir, flags) = with_file("[bench]\non_start = false\n");
    let cfg = load_ok(&sources("no-such-root"), &flags);
    let text = cfg.to_toml();
    assert!(text.contains("\n[bench]\non_start = false\n"), "{text}");
    let (_dir2, shown) = with_file(&text);
    assert_eq!(load_ok(&sources("no-such-root"), &shown), cfg);
}
