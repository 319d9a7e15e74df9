//! Where the layers come from: the filesystem root, the kernel command line and the environment.

use std::ffi::OsString;
use std::fs;
use std::path::PathBuf;

/// Where the layers come from; [`Sources::system`] reads the real ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sources {
    /// Prefix for `/usr/lib` and `/etc`; `/` normally.
    pub root: PathBuf,
    /// The kernel command line text; `None` when it could not be read.
    pub cmdline: Option<String>,
    /// The environment, as `(name, value)` pairs.
    pub env: Vec<(String, String)>,
}

impl Sources {
    /// The real sources: root from `CORTEX_CONFIG_ROOT` (default `/`), the kernel command line
    /// from the file named by `CORTEX_CMDLINE_FILE` (default `/proc/cmdline`; unreadable means
    /// `None`), and the process environment. Non-UTF-8 text is converted lossily.
    pub fn system() -> Sources {
        Sources::from_vars(std::env::vars_os())
    }

    fn from_vars(vars: impl IntoIterator<Item = (OsString, OsString)>) -> Sources {
        let env: Vec<(String, String)> = vars
            .into_iter()
            .map(|(k, v)| (k.to_string_lossy().into_owned(), v.to_string_lossy().into_owned()))
            .collect();
        let var = |name: &str| {
            env.iter()
                .rev()
                .find(|(k, v)| k == name && !v.is_empty())
                .map(|(_, v)| PathBuf::from(v))
        };
        let root = var("CORTEX_CONFIG_ROOT").unwrap_or_else(|| PathBuf::from("/"));
        let cmdline_file = var("CORTEX_CMDLINE_FILE").unwrap_or_else(|| PathBuf::from("/proc/cmdline"));
        let cmdline = fs::read(cmdline_file)
            .ok()
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
        Sources { root, cmdline, env }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect()
    }

    #[test]
    fn overrides_come_from_the_environment() {
        let file = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/config/cmdline.txt"
        );
        let s = Sources::from_vars(vars(&[
            ("CORTEX_CONFIG_ROOT", "/tmp/r"),
            ("CORTEX_CMDLINE_FILE", file),
        ]));
        assert_eq!(s.root, PathBuf::from("/tmp/r"));
        assert_eq!(
            s.cmdline.as_deref(),
            Some("BOOT_IMAGE=/vmlinuz ro cortex.node_name=from-file\n")
        );
        assert_eq!(s.env.len(), 2);
    }

    #[test]
    fn defaults_and_unreadable_cmdline() {
        let s = Sources::from_vars(vars(&[
            ("CORTEX_CONFIG_ROOT", ""),
            ("CORTEX_CMDLINE_FILE", "/nonexistent/x"),
        ]));
        assert_eq!(s.root, PathBuf::from("/"));
        assert_eq!(s.cmdline, None);
    }
}
