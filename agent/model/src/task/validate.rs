//! Spec validation: run by the API before anything is proposed, and again in apply (a command
//! from an older or buggy proposer must not corrupt the state). Errors name the field.

use crate::node::validate_label;

use super::spec::{TaskKind, TaskSpec};

/// Limits on what one spec may ask for.
pub const MAX_COMMAND_ARGS: usize = 4096;
pub const MAX_ARG_BYTES: usize = 128 * 1024;
pub const MAX_ENV: usize = 1024;
pub const MAX_DEPENDS_ON: usize = 1000;
pub const MAX_TIMEOUT_MS: u64 = 30 * 24 * 3600 * 1000;
pub const MAX_ATTEMPTS: u32 = 100;
pub const MAX_LOG_LIMIT_BYTES: u64 = 64 * 1024 * 1024;
/// A task may run on at most this many nodes in one fan-out.
pub const MAX_FANOUT: u32 = 10_000;

/// A rejected field: `field` is a path into the spec (`resources.memory_bytes`, `env.FOO`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

fn err(field: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        message: message.into(),
    }
}

/// Task and workflow names: 1–63 of `[A-Za-z0-9._-]`, starting with a letter or digit.
pub fn validate_name(field: &str, name: &str) -> Result<(), FieldError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(err(
            field,
            format!(
                "{name:?} must be 1 to 63 letters, digits, '-', '_' or '.', starting with a letter or digit"
            ),
        ))
    }
}

pub fn validate_spec(spec: &TaskSpec) -> Result<(), FieldError> {
    if let Some(name) = &spec.name {
        validate_name("name", name)?;
    }
    if spec.command.is_empty() {
        return Err(err(
            "command",
            "must name a program to run (e.g. [\"uname\", \"-a\"])",
        ));
    }
    if spec.command.len() > MAX_COMMAND_ARGS {
        return Err(err("command", format!("at most {MAX_COMMAND_ARGS} arguments")));
    }
    if spec.command[0].is_empty() {
        return Err(err("command[0]", "the program must not be empty"));
    }
    for (i, a) in spec.command.iter().enumerate() {
        if a.len() > MAX_ARG_BYTES || a.contains('\0') {
            return Err(err(
                format!("command[{i}]"),
                format!("must be at most {MAX_ARG_BYTES} bytes with no NUL byte"),
            ));
        }
    }
    match (spec.kind, &spec.image) {
        (TaskKind::Exec, Some(_)) => {
            return Err(err(
                "image",
                "an exec task runs on the node itself and takes no image (use kind nspawn or podman)",
            ))
        }
        (TaskKind::Nspawn, None) => {
            return Err(err("image", "an nspawn task needs a rootfs directory or tarball"))
        }
        (TaskKind::Podman, None) => {
            return Err(err(
                "image",
                "a podman task needs an image reference (e.g. localhost/tools:1)",
            ))
        }
        (_, Some(i)) if i.is_empty() || i.len() > 4096 || i.contains('\0') => {
            return Err(err("image", "must be 1 to 4096 bytes with no NUL byte"))
        }
        _ => {}
    }
    if spec.env.len() > MAX_ENV {
        return Err(err("env", format!("at most {MAX_ENV} variables")));
    }
    for (k, v) in &spec.env {
        let key_ok = !k.is_empty()
            && !k.starts_with(|c: char| c.is_ascii_digit())
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !key_ok {
            return Err(err(
                format!("env.{k}"),
                "variable names are letters, digits and '_', not starting with a digit",
            ));
        }
        if v.contains('\0') || v.len() > MAX_ARG_BYTES {
            return Err(err(
                format!("env.{k}"),
                format!("value must be at most {MAX_ARG_BYTES} bytes with no NUL byte"),
            ));
        }
    }
    if let Some(w) = &spec.workdir {
        if !w.starts_with('/') || w.contains('\0') || w.len() > 4096 {
            return Err(err("workdir", "must be an absolute path"));
        }
    }
    if let Some(u) = &spec.user {
        check_user(u).map_err(|m| err("user", m))?;
    }
    let r = &spec.resources;
    if let Some(c) = r.cpu_millis {
        if c == 0 || c > 1_024_000 {
            return Err(err(
                "resources.cpu_millis",
                "must be 1 to 1024000 (thousandths of a core)",
            ));
        }
    }
    if let Some(m) = r.memory_bytes {
        if !(4 * 1024 * 1024..=1 << 44).contains(&m) {
            return Err(err("resources.memory_bytes", "must be between 4 MiB and 16 TiB"));
        }
    }
    if let Some(p) = r.pids {
        if !(1..=1_000_000).contains(&p) {
            return Err(err("resources.pids", "must be 1 to 1000000"));
        }
    }
    if r.gpus > 64 {
        return Err(err("resources.gpus", "at most 64"));
    }
    let c = &spec.constraints;
    for (k, v) in &c.labels {
        validate_label(k, v).map_err(|m| err(format!("constraints.labels.{k}"), m))?;
    }
    if let Some(n) = &c.node {
        if n.is_empty() || n.len() > 255 {
            return Err(err("constraints.node", "must be a node id or name"));
        }
    }
    if let Some(g) = c.min_mem_bw {
        if !g.is_finite() || g < 0.0 {
            return Err(err(
                "constraints.min_mem_bw",
                "must be a non-negative number (GB/s)",
            ));
        }
    }
    if let Some(g) = c.min_gflops {
        if !g.is_finite() || g < 0.0 {
            return Err(err("constraints.min_gflops", "must be a non-negative number"));
        }
    }
    if let Some(n) = c.fastest {
        if n == 0 || n > MAX_FANOUT {
            return Err(err("constraints.fastest", format!("must be 1 to {MAX_FANOUT}")));
        }
    }
    if let Some(t) = spec.timeout_ms {
        if t == 0 || t > MAX_TIMEOUT_MS {
            return Err(err("timeout_ms", "must be between 1 ms and 30 days"));
        }
    }
    let p = &spec.retry;
    if p.max_attempts == 0 || p.max_attempts > MAX_ATTEMPTS {
        return Err(err("retry.max_attempts", format!("must be 1 to {MAX_ATTEMPTS}")));
    }
    if p.backoff_ms > 3_600_000 || p.max_backoff_ms > 24 * 3_600_000 {
        return Err(err(
            "retry.backoff_ms",
            "at most one hour (max_backoff_ms: one day)",
        ));
    }
    if p.retry_exit_codes.iter().any(|c| !(1..=255).contains(c)) {
        return Err(err("retry.retry_exit_codes", "exit codes are 1 to 255"));
    }
    if spec.depends_on.len() > MAX_DEPENDS_ON {
        return Err(err(
            "depends_on",
            format!("at most {MAX_DEPENDS_ON} dependencies"),
        ));
    }
    for (i, d) in spec.depends_on.iter().enumerate() {
        if d.is_empty() || d.len() > 63 {
            return Err(err(
                format!("depends_on[{i}]"),
                "must be a task id or a task name in the same workflow",
            ));
        }
    }
    if spec.log_limit_bytes > MAX_LOG_LIMIT_BYTES {
        return Err(err(
            "log_limit_bytes",
            format!("at most {MAX_LOG_LIMIT_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// A user name as `useradd` accepts it (`[a-z_][a-z0-9_-]*`, optionally ending in `$`, at most
/// 32 bytes) or a numeric uid below 2^32 - 1.
pub fn check_user(u: &str) -> Result<(), String> {
    if !u.is_empty() && u.bytes().all(|b| b.is_ascii_digit()) {
        return match u.parse::<u32>() {
            Ok(id) if id != u32::MAX => Ok(()),
            _ => Err(format!("{u} is not a valid uid")),
        };
    }
    let name = u.strip_suffix('$').unwrap_or(u);
    let ok = !name.is_empty()
        && u.len() <= 32
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{u:?} is not a user name ([a-z_][a-z0-9_-]*, at most 32 characters) or a numeric uid"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(cmd: &[&str]) -> TaskSpec {
        TaskSpec {
            command: cmd.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn errors_name_the_field() {
        assert!(validate_spec(&spec(&["true"])).is_ok());
        assert_eq!(validate_spec(&spec(&[])).unwrap_err().field, "command");
        let mut s = spec(&["true"]);
        s.kind = TaskKind::Podman;
        assert_eq!(validate_spec(&s).unwrap_err().field, "image");
        let mut s = spec(&["true"]);
        s.env.insert("1BAD".into(), "x".into());
        assert_eq!(validate_spec(&s).unwrap_err().field, "env.1BAD");
        let mut s = spec(&["true"]);
        s.resources.memory_bytes = Some(10);
        assert_eq!(validate_spec(&s).unwrap_err().field, "resources.memory_bytes");
        let mut s = spec(&["true"]);
        s.retry.max_attempts = 0;
        assert_eq!(validate_spec(&s).unwrap_err().field, "retry.max_attempts");
        let mut s = spec(&["true"]);
        s.constraints.min_gflops = Some(f64::NAN);
        assert_eq!(validate_spec(&s).unwrap_err().field, "constraints.min_gflops");
    }

    #[test]
    fn users_are_names_or_uids() {
        for good in ["nobody", "build-bot", "_svc", "host$", "0", "65534"] {
            assert_eq!(check_user(good), Ok(()), "{good}");
        }
        for bad in ["", "Root", "1x", "a b", "x;rm", "4294967295", "99999999999", "-u"] {
            assert!(check_user(bad).is_err(), "{bad}");
        }
        let mut s = spec(&["true"]);
        s.user = Some("bad user".into());
        assert_eq!(validate_spec(&s).unwrap_err().field, "user");
    }

    #[test]
    fn unknown_fields_are_refused_when_parsing() {
        let e = serde_json::from_str::<TaskSpec>(r#"{"command":["x"],"comand":[]}"#).unwrap_err();
        assert!(e.to_string().contains("comand"), "{e}");
    }
}
