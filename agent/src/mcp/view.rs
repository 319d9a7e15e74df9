//! What the tools return: compact JSON sized for a model's context. Lists give one short line
//! of facts per item; a single item gives the whole record minus what nobody reads
//! (certificates, CSRs, hundreds of CPU flags).

use cortex_model::node::NodeRecord;
use cortex_model::state::Event;
use cortex_model::task::{LogStream, TaskRecord};
use serde_json::{json, Value};

use crate::api::tasks::LogSlice;

/// CPU flags worth telling a model about (what code can be built for).
const CPU_FLAGS: [&str; 8] = ["avx", "avx2", "fma", "avx512f", "sse4_2", "neon", "asimd", "sve"];

fn gib(bytes: u64) -> f64 {
    (bytes as f64 / f64::from(1u32 << 30) * 10.0).round() / 10.0
}

fn secs(ms: u64) -> f64 {
    (ms as f64 / 100.0).round() / 10.0
}

fn age_s(now: u64, at: u64) -> f64 {
    secs(now.saturating_sub(at))
}

/// One node in a list.
pub fn node_line(n: &NodeRecord) -> Value {
    let mut v = json!({
        "id": n.id,
        "name": n.name,
        "role": n.role.as_str(),
        "state": n.state.as_str(),
        "cpus": n.inventory.cpu.threads,
        "memory_gib": gib(n.inventory.memory.total_bytes),
        "gpus": n.inventory.gpus.devices.len(),
        "arch": n.inventory.os.arch,
    });
    if let Some(b) = n.bench.as_ref().filter(|b| b.cpu_f64_gflops_all > 0.0) {
        v["gflops_f64"] = json!((b.cpu_f64_gflops_all * 10.0).round() / 10.0);
    }
    if !n.labels.is_empty() {
        v["labels"] = json!(n.labels);
    }
    if let Some(j) = n
        .join
        .as_ref()
        .filter(|_| n.state == cortex_model::node::NodeState::Pending)
    {
        v["verification_code"] = json!(j.verification_code);
    }
    v
}

/// One node in full, without certificates and keys.
pub fn node_full(n: &NodeRecord) -> Value {
    let mut v = serde_json::to_value(n).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.remove("cert_pem");
        o.insert("has_certificate".into(), json!(n.cert_pem.is_some()));
        if let Some(join) = o.get_mut("join").and_then(Value::as_object_mut) {
            join.remove("csr_pem");
        }
        if let Some(cpu) = o
            .get_mut("inventory")
            .and_then(|i| i.get_mut("cpu"))
            .and_then(Value::as_object_mut)
        {
            let flags: Vec<&String> = n
                .inventory
                .cpu
                .flags
                .iter()
                .filter(|f| CPU_FLAGS.contains(&f.as_str()))
                .collect();
            cpu.insert("flags".into(), json!(flags));
        }
    }
    v
}

/// A node's recorded benchmark, compactly: the summary figures, each full-report figure's
/// median and spread, when it was measured and how long ago.
pub fn bench(n: &NodeRecord, now: u64) -> Value {
    let Some(b) = &n.bench else {
        return json!(null);
    };
    let mut v = json!({
        "measured_at_ms": b.measured_at_ms,
        "measured_s_ago": age_s(now, b.measured_at_ms),
        "cpu_f64_gflops_all": b.cpu_f64_gflops_all,
        "cpu_f64_gflops_one": b.cpu_f64_gflops_one,
        "cpu_f32_gflops_all": b.cpu_f32_gflops_all,
        "memory_triad_gbps": b.memory_triad_gbps,
        "disk_seq_read_mbps": b.disk_seq_read_mbps,
    });
    let report = n
        .bench_report
        .clone()
        .and_then(|r| serde_json::from_value::<cortex_bench::Report>(r).ok());
    if let Some(r) = report {
        v["run"] = json!(if r.quick { "quick" } else { "full" });
        v["duration_s"] = json!(secs(r.duration_ms));
        let figures: Vec<Value> = r
            .rows()
            .into_iter()
            .map(|row| match row.figure {
                Some(f) => json!({
                    "figure": row.name, "median": f.median, "min": f.min, "max": f.max,
                    "cv": (f.cv * 1000.0).round() / 1000.0, "unit": f.unit,
                }),
                None => json!({ "figure": row.name, "missing": row.missing }),
            })
            .collect();
        v["figures"] = json!(figures);
    }
    v
}

/// A node's latest network run (`net_bench`, the node as the peer), compactly: who measured,
/// each direction's median, min, max (Mbit/s) and CV, any error. `null` when there is none.
pub fn net_bench(n: &NodeRecord, now: u64) -> Value {
    let Some(r) = n
        .net_bench
        .clone()
        .and_then(|r| serde_json::from_value::<cortex_bench::net::NetReport>(r).ok())
    else {
        return json!(null);
    };
    let from = r.from.clone().unwrap_or_else(|| "?".into());
    let round = |x: f64| (x * 10.0).round() / 10.0;
    let direction = |d: &cortex_bench::net::Direction, way: String| match &d.figure {
        Some(f) => json!({
            "direction": way, "median_mbps": round(f.median), "min_mbps": round(f.min),
            "max_mbps": round(f.max), "cv": (f.cv * 1000.0).round() / 1000.0, "samples": f.repeats,
        }),
        None => json!({ "direction": way, "figure": null, "received_bytes": d.bytes }),
    };
    let mut v = json!({
        "measured_by": from,
        "peer": n.name,
        "peer_addr": r.addr,
        "path": format!(
            "{}, {} stream each way, {}",
            r.path.transport,
            r.path.streams,
            if r.path.tls { "TLS" } else { "no TLS" }
        ),
        "seconds": r.seconds,
        "measured_at_ms": r.started_at_ms,
        "measured_s_ago": age_s(now, r.started_at_ms),
        "send": direction(&r.send, format!("{from} → {}", n.name)),
        "receive": direction(&r.receive, format!("{} → {from}", n.name)),
    });
    if let Some(e) = &r.error {
        v["error"] = json!(e);
    }
    if !r.notes.is_empty() {
        v["notes"] = json!(r.notes);
    }
    v
}

/// A pending node: what an approver needs to recognise the machine.
pub fn pending_line(n: &NodeRecord, now: u64) -> Value {
    let mut v = node_line(n);
    v["hostname"] = json!(n.inventory.hostname);
    v["os"] = json!(n.inventory.os.name);
    v["requested_s_ago"] = json!(age_s(now, n.registered_at_ms));
    if let Some(j) = &n.join {
        v["join_token_id"] = json!(j.token_id);
    }
    v
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let cut: String = s.chars().take(max).collect();
        format!("{cut}…")
    }
}

/// One task in a list.
pub fn task_line(t: &TaskRecord, now: u64) -> Value {
    let mut v = json!({
        "id": t.id,
        "state": t.state.as_str(),
        "command": shorten(&t.spec.command.join(" "), 120),
        "created_s_ago": age_s(now, t.created_at_ms),
    });
    if let Some(name) = &t.spec.name {
        v["name"] = json!(name);
    }
    if t.spec.kind != cortex_model::task::TaskKind::Exec {
        v["kind"] = json!(t.spec.kind.as_str());
    }
    if let Some(node) = t.node_id.or_else(|| t.attempts.last().map(|a| a.node_id)) {
        v["node_id"] = json!(node);
    }
    if t.attempt > 1 {
        v["attempt"] = json!(t.attempt);
    }
    if let Some(code) = t.exit_code {
        v["exit_code"] = json!(code);
    }
    if let Some(e) = &t.error {
        v["error"] = json!(shorten(e, 200));
    }
    if let Some(end) = t.finished_at_ms {
        let start = t
            .attempts
            .last()
            .and_then(|a| a.started_at_ms)
            .unwrap_or(t.created_at_ms);
        v["ran_s"] = json!(secs(end.saturating_sub(start)));
    }
    if let Some(w) = &t.workflow {
        v["workflow"] = json!(w);
    }
    if let Some(g) = &t.group {
        v["group"] = json!(g);
    }
    if t.dead {
        v["dead"] = json!(true);
    }
    v
}

/// A task in full (its whole spec, attempts and outcome).
pub fn task_full(t: &TaskRecord) -> Value {
    serde_json::to_value(t).unwrap_or_default()
}

/// Log chunks as text. `system` chunks are Cortex's own notes and start with "[cortex]".
pub fn log_text(slice: &LogSlice) -> String {
    let bytes: Vec<u8> = slice.chunks.iter().flat_map(|c| c.data.iter().copied()).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Whether any chunk came from stderr (so a model knows the text mixes both streams).
pub fn has_stderr(slice: &LogSlice) -> bool {
    slice.chunks.iter().any(|c| c.stream == LogStream::Stderr)
}

pub fn event_line(e: &Event, now: u64) -> Value {
    let mut v = json!({
        "seq": e.seq,
        "s_ago": age_s(now, e.at_ms),
        "kind": e.kind,
        "message": e.message,
    });
    if let Some(n) = e.node_id {
        v["node_id"] = json!(n);
    }
    v
}
