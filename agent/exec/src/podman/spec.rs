//! From an [`ExecSpec`] to the body of libpod's `containers/create`, with the checks that name
//! the field at fault before anything is created.

use serde_json::json;

use crate::{ExecConfig, ExecError, ExecSpec, Network};

/// podman refuses smaller memory limits (libpod's `linuxMinMemory`, 6 MiB).
const MIN_MEMORY: u64 = 6 << 20;

/// CFS period for the CPU quota: 100 ms.
const CPU_PERIOD_US: u64 = 100_000;

/// The cgroup parent of containers under the `cgroupfs` manager: `/<cgroup_parent>-podman` in
/// every hierarchy, a sibling of the node's attempt group and not inside it, because the
/// agent's stale-attempt sweep (`cgroup::kill_stale`) owns every group under that one and
/// would kill the containers' `libpod-<id>` groups and their conmons' `conmon` group. podman
/// removes these itself. (cgroupfs takes one path for all hierarchies, so unlike the other
/// executors' groups this one is not nested in the agent's own v1 memcg.)
pub(super) fn cgroup_parent(config: &ExecConfig) -> String {
    format!("/{}-podman", config.cgroup_parent)
}

/// The body of `containers/create` (libpod's SpecGenerator).
pub(super) fn create_body(
    spec: &ExecSpec,
    name: &str,
    image: &str,
    cgroup_parent: Option<&str>,
) -> serde_json::Value {
    let mut body = json!({
        "name": name,
        "image": image,
        "command": spec.command,
        "env": spec.env,
        "netns": { "nsmode": match spec.network {
            Network::Private => "none",
            Network::Host => "host",
        }},
        "labels": { "io.cortex.attempt": spec.name },
        // The kernel's OOM killer takes the task, never the agent or conmon.
        "oom_score_adj": 1000,
        "stdin": false,
        "terminal": false,
    });
    if let Some(dir) = &spec.workdir {
        body["work_dir"] = json!(dir);
    }
    if let Some(user) = &spec.user {
        // A user of the image (name or uid), as `podman run --user`.
        body["user"] = json!(user);
    }
    if let Some(parent) = cgroup_parent {
        body["cgroup_parent"] = json!(parent);
    }
    if !spec.devices.is_empty() {
        let devices: Vec<_> = spec.devices.iter().map(|d| json!({ "path": d })).collect();
        body["devices"] = json!(devices);
    }
    let mut limits = serde_json::Map::new();
    if let Some(bytes) = spec.limits.memory_bytes {
        // swap = limit: memory + swap may not exceed the limit (podman's default is twice).
        limits.insert("memory".into(), json!({ "limit": bytes, "swap": bytes }));
    }
    if let Some(millis) = spec.limits.cpu_millis {
        let quota = (u64::from(millis) * CPU_PERIOD_US / 1000).max(1000);
        limits.insert("cpu".into(), json!({ "quota": quota, "period": CPU_PERIOD_US }));
    }
    if let Some(pids) = spec.limits.pids {
        limits.insert("pids".into(), json!({ "limit": pids }));
    }
    if !limits.is_empty() {
        body["resource_limits"] = serde_json::Value::Object(limits);
    }
    body
}

/// Checks the spec before anything is created; returns the image reference.
pub(super) fn validate(spec: &ExecSpec) -> Result<&str, ExecError> {
    let bad = |field, message: String| Err(ExecError::InvalidSpec { field, message });
    let name_ok = !spec.name.is_empty()
        && spec.name.len() <= 64
        && !spec.name.starts_with('-')
        && spec
            .name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !name_ok {
        return bad(
            "name",
            format!(
                "{:?} must be 1-64 characters of [a-z0-9-], not starting with '-'",
                spec.name
            ),
        );
    }
    let Some(image) = spec.image.as_deref() else {
        return bad(
            "image",
            "the podman executor needs an image reference (e.g. localhost/name:tag)".into(),
        );
    };
    validate_reference("image", image)?;
    if spec.command.is_empty() || spec.command[0].is_empty() {
        return bad("command", "must name a program to run".into());
    }
    if let Some(dir) = &spec.workdir {
        if !dir.starts_with('/') {
            return bad("workdir", format!("{dir:?} must be an absolute path"));
        }
    }
    if let Some((key, _)) = spec
        .env
        .iter()
        .find(|(k, _)| k.is_empty() || k.contains('=') || k.contains('\0'))
    {
        return bad(
            "env",
            format!("{key:?} is not a variable name (empty, or contains '=' or NUL)"),
        );
    }
    if spec.limits.cpu_millis == Some(0) {
        return bad(
            "limits.cpu_millis",
            "must be at least 1 (thousandths of a core)".into(),
        );
    }
    if matches!(spec.limits.memory_bytes, Some(b) if b < MIN_MEMORY) {
        return bad("limits.memory_bytes", "podman needs at least 6 MiB".into());
    }
    if spec.limits.pids == Some(0) {
        return bad("limits.pids", "must be at least 1".into());
    }
    Ok(image)
}

/// Image references go into URL paths and queries: `[A-Za-z0-9._/:@-]`, as references are.
pub(super) fn validate_reference(field: &'static str, reference: &str) -> Result<(), ExecError> {
    let ok = !reference.is_empty()
        && reference.len() <= 255
        && !reference.starts_with(['-', '/', '.', ':'])
        && reference
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._/:@-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ExecError::InvalidSpec {
            field,
            message: format!(
                "{reference:?} is not an image reference like localhost/name:tag (letters, digits and ._/:@-)"
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Kind, Limits};

    fn spec() -> ExecSpec {
        ExecSpec {
            kind: Kind::Podman,
            name: "t-1-a1".into(),
            command: vec!["sh".into(), "-c".into(), "true".into()],
            image: Some("localhost/x:1".into()),
            env: [("A".to_string(), "b".to_string())].into(),
            workdir: None,
            user: None,
            limits: Limits::default(),
            network: Network::Private,
            devices: Vec::new(),
            timeout: None,
        }
    }

    fn field_of(r: Result<&str, ExecError>) -> &'static str {
        match r {
            Err(ExecError::InvalidSpec { field, .. }) => field,
            other => panic!("expected InvalidSpec, got {other:?}"),
        }
    }

    #[test]
    fn a_bad_spec_names_the_field() {
        let mut s = spec();
        s.name = "Bad_Name".into();
        assert_eq!(field_of(validate(&s)), "name");
        let mut s = spec();
        s.image = None;
        assert_eq!(field_of(validate(&s)), "image");
        let mut s = spec();
        s.image = Some("x y".into());
        assert_eq!(field_of(validate(&s)), "image");
        let mut s = spec();
        s.command.clear();
        assert_eq!(field_of(validate(&s)), "command");
        let mut s = spec();
        s.workdir = Some("rel".into());
        assert_eq!(field_of(validate(&s)), "workdir");
        let mut s = spec();
        s.env.insert("A=B".into(), "c".into());
        assert_eq!(field_of(validate(&s)), "env");
        let mut s = spec();
        s.limits.memory_bytes = Some(1 << 20);
        assert_eq!(field_of(validate(&s)), "limits.memory_bytes");
        assert_eq!(validate(&spec()).ok(), Some("localhost/x:1"));
    }

    #[test]
    fn the_create_body_carries_the_spec() {
        let mut s = spec();
        s.limits = Limits {
            cpu_millis: Some(500),
            memory_bytes: Some(64 << 20),
            pids: Some(100),
        };
        s.workdir = Some("/tmp".into());
        s.devices = vec!["/dev/nvidia1".into()];
        let b = create_body(&s, "cortex-t-1-a1", "localhost/x:1", Some("/cortex-podman"));
        assert_eq!(b["devices"], json!([{ "path": "/dev/nvidia1" }]));
        assert_eq!(b["name"], "cortex-t-1-a1");
        assert_eq!(b["command"], json!(["sh", "-c", "true"]));
        assert_eq!(b["env"], json!({"A": "b"}));
        assert_eq!(b["netns"]["nsmode"], "none");
        assert_eq!(b["work_dir"], "/tmp");
        assert_eq!(b["cgroup_parent"], "/cortex-podman");
        assert_eq!(b["resource_limits"]["memory"]["limit"], 64 << 20);
        assert_eq!(b["resource_limits"]["cpu"]["quota"], 50_000);
        assert_eq!(b["resource_limits"]["cpu"]["period"], 100_000);
        assert_eq!(b["resource_limits"]["pids"]["limit"], 100);

        s.network = Network::Host;
        s.limits = Limits::default();
        s.devices.clear();
        let b = create_body(&s, "cortex-t-1-a1", "localhost/x:1", None);
        assert_eq!(b["netns"]["nsmode"], "host");
        assert!(b.get("resource_limits").is_none());
        assert!(b.get("cgroup_parent").is_none());
        assert!(b.get("devices").is_none());
    }
}
