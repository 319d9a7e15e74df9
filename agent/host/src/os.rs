//! Host identity and OS: hostname, machine id, OS name, kernel release, architecture.

use std::io::ErrorKind;

use cortex_model::inventory::OsInfo;
use sysinfo::System;

const MACHINE_ID_PATH: &str = "/etc/machine-id";
/// os-release(5): `/etc/os-release` wins, `/usr/lib/os-release` is the vendor default.
const OS_RELEASE_PATHS: [&str; 2] = ["/etc/os-release", "/usr/lib/os-release"];
const HOSTNAME_PATH: &str = "/proc/sys/kernel/hostname";
const OSRELEASE_PATH: &str = "/proc/sys/kernel/osrelease";

/// The host name (`gethostname(2)`), else the kernel's `/proc/sys/kernel/hostname`.
pub fn hostname(warnings: &mut Vec<String>) -> String {
    let from_sysinfo = System::host_name().map(|name| name.trim().to_owned());
    if let Ok(name) = &from_sysinfo {
        if !name.is_empty() {
            return name.clone();
        }
    }
    match read_trimmed(HOSTNAME_PATH) {
        Ok(name) if !name.is_empty() => name,
        Ok(_) => {
            warnings.push("reading the hostname failed: the kernel reports an empty one".into());
            String::new()
        }
        Err(e) => {
            let first = match from_sysinfo {
                Ok(_) => "gethostname returned an empty name".to_owned(),
                Err(e) => format!("gethostname failed: {e}"),
            };
            warnings.push(format!(
                "reading the hostname failed: {first}; reading {HOSTNAME_PATH}: {e}"
            ));
            String::new()
        }
    }
}

/// `/etc/machine-id`, trimmed. `None` when the file is absent or empty; other read errors are
/// warnings.
pub fn machine_id(warnings: &mut Vec<String>) -> Option<String> {
    match read_trimmed(MACHINE_ID_PATH) {
        Ok(id) if id.is_empty() => None,
        Ok(id) => Some(id),
        Err(e) if e.kind() == ErrorKind::NotFound => None,
        Err(e) => {
            warnings.push(format!("reading {MACHINE_ID_PATH} failed: {e}"));
            None
        }
    }
}

/// OS name, kernel release and architecture.
pub fn os_info(warnings: &mut Vec<String>) -> OsInfo {
    OsInfo {
        name: os_name(warnings),
        kernel: kernel(warnings),
        arch: System::cpu_arch(),
    }
}

/// `PRETTY_NAME` from os-release, else sysinfo's long OS version (e.g. "Linux (Ubuntu 24.04)").
fn os_name(warnings: &mut Vec<String>) -> String {
    let mut errors = Vec::new();
    for path in OS_RELEASE_PATHS {
        match std::fs::read_to_string(path) {
            Ok(text) => match pretty_name(&text) {
                Some(name) => return name,
                None => errors.push(format!("{path} has no PRETTY_NAME")),
            },
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => errors.push(format!("reading {path}: {e}")),
        }
    }
    match System::long_os_version() {
        Ok(name) if !name.trim().is_empty() => name.trim().to_owned(),
        other => {
            let why = match other {
                Ok(_) => "sysinfo's OS version is empty".to_owned(),
                Err(e) => format!("sysinfo's OS version: {e}"),
            };
            errors.push(why);
            warnings.push(format!("reading the OS name failed: {}", errors.join("; ")));
            String::new()
        }
    }
}

/// The kernel release (`uname -r`), else `/proc/sys/kernel/osrelease`.
fn kernel(warnings: &mut Vec<String>) -> String {
    let first = match System::kernel_version() {
        Ok(version) if !version.trim().is_empty() => return version.trim().to_owned(),
        Ok(_) => "sysinfo's kernel version is empty".to_owned(),
        Err(e) => format!("sysinfo's kernel version: {e}"),
    };
    match read_trimmed(OSRELEASE_PATH) {
        Ok(version) if !version.is_empty() => version,
        other => {
            let second = match other {
                Ok(_) => format!("{OSRELEASE_PATH} is empty"),
                Err(e) => format!("reading {OSRELEASE_PATH}: {e}"),
            };
            warnings.push(format!("reading the kernel version failed: {first}; {second}"));
            String::new()
        }
    }
}

/// The `PRETTY_NAME` value of an os-release(5) text, unquoted and unescaped. Pure.
pub fn pretty_name(os_release: &str) -> Option<String> {
    os_release
        .lines()
        .filter_map(|line| line.trim().strip_prefix("PRETTY_NAME="))
        .map(unquote)
        .rfind(|value| !value.is_empty())
}

/// Shell-style value of an os-release assignment: `"…"` or `'…'` quotes removed, and inside
/// double quotes the backslash escapes `\"`, `\\`, `` \` `` and `\$` resolved.
fn unquote(raw: &str) -> String {
    let raw = raw.trim();
    if let Some(inner) = raw.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
        return inner.to_owned();
    }
    let Some(inner) = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) else {
        return raw.to_owned();
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(next @ ('"' | '\\' | '`' | '$')) => out.push(next),
                Some(next) => {
                    out.push('\\');
                    out.push(next);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn read_trimmed(path: &str) -> std::io::Result<String> {
    std::fs::read_to_string(path).map(|text| text.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pretty_name_of_debian() {
        let text = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nID=debian\n";
        assert_eq!(
            pretty_name(text).as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
    }

    #[test]
    fn pretty_name_quoting() {
        assert_eq!(pretty_name("PRETTY_NAME=Arch").as_deref(), Some("Arch"));
        assert_eq!(
            pretty_name("PRETTY_NAME='Single quoted'").as_deref(),
            Some("Single quoted")
        );
        assert_eq!(
            pretty_name(r#"PRETTY_NAME="say \"hi\" \\ \$x""#).as_deref(),
            Some(r#"say "hi" \ $x"#)
        );
    }

    #[test]
    fn pretty_name_absent_or_empty() {
        assert_eq!(pretty_name("NAME=Foo\n# PRETTY_NAME=\"commented\"\n"), None);
        assert_eq!(pretty_name("PRETTY_NAME=\"\"\n"), None);
    }

    #[test]
    fn this_machine_has_a_name_kernel_and_arch() {
        let mut warnings = Vec::new();
        assert!(!hostname(&mut warnings).is_empty());
        let os = os_info(&mut warnings);
        assert!(!os.name.is_empty());
        assert!(!os.kernel.is_empty());
        assert!(!os.arch.is_empty());
        if cfg!(target_arch = "x86_64") {
            assert_eq!(os.arch, "x86_64");
        }
        assert!(warnings.is_empty(), "{warnings:?}");
    }
}
