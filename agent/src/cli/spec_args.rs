//! Flags that describe a task, shared by `cortex run` (and later other submitters); turns them
//! into a `TaskSpec` with errors that name the flag.

use std::collections::BTreeMap;
use std::path::Path;

use cortex_model::task::{NetworkMode, TaskKind, TaskSpec};

#[derive(Debug, clap::Args)]
pub struct SpecArgs {
    /// Run in an ephemeral systemd-nspawn container from this rootfs directory or tarball (a
    /// path on the node; checked here when it is a local path).
    #[arg(long, value_name = "ROOTFS", conflicts_with = "podman")]
    pub nspawn: Option<String>,
    /// Run in a Podman container from this image in the node's local store.
    #[arg(long, value_name = "IMAGE")]
    pub podman: Option<String>,
    /// Memory limit (and reservation), e.g. 256M, 2G.
    #[arg(long, value_name = "SIZE")]
    pub mem: Option<String>,
    /// CPU limit (and reservation) in cores, e.g. 0.5, 2.
    #[arg(long, value_name = "CORES")]
    pub cpu: Option<f64>,
    /// GPUs to reserve.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub gpus: u32,
    /// Maximum processes/threads.
    #[arg(long, value_name = "N")]
    pub pids: Option<u32>,
    /// Only nodes with this label (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Only this node (id or name).
    #[arg(long, value_name = "NODE")]
    pub node: Option<String>,
    /// Only nodes that measured at least this many f64 GFLOP/s (all cores).
    #[arg(long, value_name = "GFLOPS")]
    pub min_gflops: Option<f64>,
    /// Only nodes that measured at least this memory bandwidth (STREAM triad, GB/s).
    #[arg(long, value_name = "GBPS")]
    pub min_mem_bw: Option<f64>,
    /// Only the N fastest nodes (measured).
    #[arg(long, value_name = "N")]
    pub fastest: Option<u32>,
    /// Kill an attempt after this long, e.g. 30s, 10m, 2h.
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,
    /// Retries after a transient failure (node lost, executor error, a --retry-on exit code).
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub retries: u32,
    /// Treat this exit code as transient (repeatable).
    #[arg(long = "retry-on", value_name = "CODE")]
    pub retry_on: Vec<i32>,
    /// Environment variable for the task (repeatable); the task sees nothing else but PATH.
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Working directory inside the task (default: a scratch dir removed afterwards).
    #[arg(long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// Run as this user (name or uid). exec: default the node's `tasks.default_user`
    /// (nobody); root only where the node allows it. nspawn/podman: a user of the container.
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// Give the task the node's network instead of a private one with only loopback.
    #[arg(long)]
    pub host_network: bool,
    /// A name for the task.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Output kept for the task, e.g. 1M (default 1 MiB per attempt).
    #[arg(long, value_name = "SIZE")]
    pub log_limit: Option<String>,
}

/// `256M`, `2G`, `1.5GiB`, `1048576` → bytes.
pub fn parse_size(flag: &str, s: &str) -> anyhow::Result<u64> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| anyhow::anyhow!("{flag} {s:?}: expected a size like 256M or 2G"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        u => anyhow::bail!("{flag} {s:?}: unknown unit {u:?} (use K, M, G or T)"),
    };
    let v = n * mult as f64;
    if !v.is_finite() || v < 1.0 || v > u64::MAX as f64 {
        anyhow::bail!("{flag} {s:?}: out of range");
    }
    Ok(v as u64)
}

/// `30s`, `10m`, `2h`, `1d`, `500ms`, plain seconds → milliseconds.
pub fn parse_duration_ms(flag: &str, s: &str) -> anyhow::Result<u64> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| anyhow::anyhow!("{flag} {s:?}: expected a duration like 30s, 10m or 2h"))?;
    let mult = match unit {
        "ms" => 1.0,
        "" | "s" => 1000.0,
        "m" => 60_000.0,
        "h" => 3_600_000.0,
        "d" => 86_400_000.0,
        u => anyhow::bail!("{flag} {s:?}: unknown unit {u:?} (use ms, s, m, h or d)"),
    };
    let v = n * mult;
    if !v.is_finite() || v < 1.0 {
        anyhow::bail!("{flag} {s:?}: must be positive");
    }
    Ok(v as u64)
}

fn key_value(flag: &str, s: &str) -> anyhow::Result<(String, String)> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => anyhow::bail!("{flag} {s:?}: expected KEY=VALUE"),
    }
}

impl SpecArgs {
    pub fn to_spec(&self, command: Vec<String>) -> anyhow::Result<TaskSpec> {
        let mut spec = TaskSpec {
            name: self.name.clone(),
            command,
            ..Default::default()
        };
        if let Some(root) = &self.nspawn {
            spec.kind = TaskKind::Nspawn;
            spec.image = Some(resolve_rootfs(root)?);
        }
        if let Some(image) = &self.podman {
            spec.kind = TaskKind::Podman;
            spec.image = Some(image.clone());
        }
        if let Some(m) = &self.mem {
            spec.resources.memory_bytes = Some(parse_size("--mem", m)?);
        }
        if let Some(c) = self.cpu {
            if !c.is_finite() || c <= 0.0 || c > 1024.0 {
                anyhow::bail!("--cpu {c}: give cores between 0.001 and 1024 (e.g. 0.5)");
            }
            spec.resources.cpu_millis = Some(((c * 1000.0).round() as u32).max(1));
        }
        spec.resources.gpus = self.gpus;
        spec.resources.pids = self.pids;
        let mut labels = BTreeMap::new();
        for l in &self.labels {
            let (k, v) = key_value("--label", l)?;
            labels.insert(k, v);
        }
        spec.constraints.labels = labels;
        spec.constraints.node = self.node.clone();
        spec.constraints.min_gflops = self.min_gflops;
        spec.constraints.min_mem_bw = self.min_mem_bw;
        spec.constraints.fastest = self.fastest;
        if let Some(t) = &self.timeout {
            spec.timeout_ms = Some(parse_duration_ms("--timeout", t)?);
        }
        spec.retry.max_attempts = self.retries.saturating_add(1);
        spec.retry.retry_exit_codes = self.retry_on.clone();
        for e in &self.env {
            let (k, v) = key_value("--env", e)?;
            spec.env.insert(k, v);
        }
        spec.workdir = self.workdir.clone();
        spec.user = self.user.clone();
        if self.host_network {
            spec.network = NetworkMode::Host;
        }
        if let Some(l) = &self.log_limit {
            spec.log_limit_bytes = parse_size("--log-limit", l)?;
        }
        cortex_model::task::validate::validate_spec(&spec)
            .map_err(|e| anyhow::anyhow!("invalid task: {e}"))?;
        Ok(spec)
    }
}

/// An absolute path names a rootfs on the node that runs the task and is passed on as it is
/// (the node checks it; this machine may not have it). A relative one (`./rootfs`, or a name
/// that exists here) can only mean this machine's directory: it is made absolute and must
/// exist. Anything else is passed on for the node to resolve.
fn resolve_rootfs(root: &str) -> anyhow::Result<String> {
    if root.starts_with('/') {
        return Ok(root.to_string());
    }
    let p = Path::new(root);
    let local = root.starts_with('.') || p.exists();
    if !local {
        return Ok(root.to_string());
    }
    let abs = std::fs::canonicalize(p)
        .map_err(|e| anyhow::anyhow!("--nspawn {root:?}: {e} (give a rootfs directory or tarball)"))?;
    Ok(abs.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rootfs_paths_absolute_pass_relative_resolve_here() {
        assert_eq!(
            resolve_rootfs("/srv/not-on-this-machine").unwrap(),
            "/srv/not-on-this-machine"
        );
        let e = resolve_rootfs("./no-such-rootfs-here").unwrap_err().to_string();
        assert!(e.contains("--nspawn"), "{e}");
        assert!(resolve_rootfs(".").unwrap().starts_with('/'));
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("--mem", "256M").unwrap(), 256 << 20);
        assert_eq!(parse_size("--mem", "1.5G").unwrap(), 3 << 29);
        assert!(parse_size("--mem", "12Q")
            .unwrap_err()
            .to_string()
            .contains("--mem"));
        assert_eq!(parse_duration_ms("--timeout", "10m").unwrap(), 600_000);
        assert_eq!(parse_duration_ms("--timeout", "250ms").unwrap(), 250);
        assert!(parse_duration_ms("--timeout", "soon").is_err());
    }
}
