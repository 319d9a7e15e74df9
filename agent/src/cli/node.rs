//! `cortex node list|show|label`.

use std::collections::BTreeMap;

use cortex_model::node::{BenchSummary, NodeRecord};
use cortex_proto::v1::{GetNodeRequest, ListNodesRequest, NodeDecisionRequest, SetNodeLabelsRequest};

use super::output::{self, Output};
use crate::client::{Client, ClientArgs};
use crate::convert::node_from_pb;

pub async fn list(args: &ClientArgs, out: Output) -> anyhow::Result<()> {
    let mut client = Client::connect(args).await?;
    let req = client.request(ListNodesRequest {});
    let resp = client
        .grpc
        .list_nodes(req)
        .await
        .map_err(|e| client.error(e))?
        .into_inner();
    let nodes = resp
        .nodes
        .into_iter()
        .map(node_from_pb)
        .collect::<Result<Vec<_>, _>>()
        .map_err(anyhow::Error::msg)?;
    if out == Output::Json {
        return output::print_json(&serde_json::json!({ "nodes": nodes }));
    }
    if nodes.is_empty() {
        println!("no nodes yet — `cortex up` registers this host; other machines join in a later release");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = nodes
        .iter()
        .map(|n| {
            vec![
                n.id.to_string(),
                n.name.clone(),
                n.role.as_str().into(),
                match (&n.state, &n.join) {
                    (cortex_model::node::NodeState::Pending, Some(j)) => {
                        format!("pending (code {})", j.verification_code)
                    }
                    _ => n.state.as_str().into(),
                },
                n.grpc_addr.clone(),
                n.inventory.cpu.threads.to_string(),
                output::bytes(n.inventory.memory.total_bytes),
                gflops(n),
                labels(n),
            ]
        })
        .collect();
    print!(
        "{}",
        output::table(
            &["id", "name", "role", "state", "address", "cpus", "memory", "gflop/s", "labels"],
            &rows
        )
    );
    Ok(())
}

pub async fn show(args: &ClientArgs, key: &str, out: Output) -> anyhow::Result<()> {
    let mut client = Client::connect(args).await?;
    let req = client.request(GetNodeRequest { key: key.to_string() });
    let node = client
        .grpc
        .get_node(req)
        .await
        .map_err(|e| client.error(e))?
        .into_inner();
    let node = node_from_pb(node).map_err(anyhow::Error::msg)?;
    if out == Output::Json {
        return output::print_json(&node);
    }
    print!("{}", render_node(&node));
    Ok(())
}

pub async fn label(args: &ClientArgs, key: &str, specs: &[String], out: Output) -> anyhow::Result<()> {
    let (set, remove) = parse_label_specs(specs)?;
    let mut client = Client::connect(args).await?;
    let req = client.request(SetNodeLabelsRequest {
        key: key.to_string(),
        set: set.into_iter().collect(),
        remove,
    });
    let n = client
        .grpc
        .set_node_labels(req)
        .await
        .map_err(|e| client.error(e))?
        .into_inner();
    let labels: std::collections::BTreeMap<String, String> = n.labels.into_iter().collect();
    if out == Output::Json {
        return output::print_json(&serde_json::json!({
            "id": n.id, "name": n.name, "labels": labels,
        }));
    }
    println!("node {} ({}): labels {}", n.name, n.id, label_list(&labels));
    Ok(())
}

/// The node decisions an operator makes: each is one RPC taking a node key (and a reason).
#[derive(Clone, Copy)]
enum Decision {
    Approve,
    Reject,
    Drain,
    Undrain,
    Remove,
}

pub async fn approve(args: &ClientArgs, key: &str, out: Output) -> anyhow::Result<()> {
    decide(args, key, "", Decision::Approve, out).await
}

pub async fn drain(args: &ClientArgs, key: &str, out: Output) -> anyhow::Result<()> {
    decide(args, key, "", Decision::Drain, out).await
}

pub async fn undrain(args: &ClientArgs, key: &str, out: Output) -> anyhow::Result<()> {
    decide(args, key, "", Decision::Undrain, out).await
}

pub async fn remove(args: &ClientArgs, key: &str, out: Output) -> anyhow::Result<()> {
    decide(args, key, "", Decision::Remove, out).await
}

pub async fn reject(args: &ClientArgs, key: &str, reason: &str, out: Output) -> anyhow::Result<()> {
    decide(args, key, reason, Decision::Reject, out).await
}

async fn decide(
    args: &ClientArgs,
    key: &str,
    reason: &str,
    what: Decision,
    out: Output,
) -> anyhow::Result<()> {
    let mut client = Client::connect(args).await?;
    let req = client.request(NodeDecisionRequest {
        key: key.to_string(),
        reason: reason.to_string(),
    });
    let reply = match what {
        Decision::Approve => client.grpc.approve_node(req).await,
        Decision::Reject => client.grpc.reject_node(req).await,
        Decision::Drain => client.grpc.drain_node(req).await,
        Decision::Undrain => client.grpc.undrain_node(req).await,
        Decision::Remove => client.grpc.remove_node(req).await,
    };
    let node = reply.map_err(|e| client.error(e))?.into_inner();
    let node = node_from_pb(node).map_err(anyhow::Error::msg)?;
    if out == Output::Json {
        return output::print_json(&node);
    }
    match what {
        Decision::Approve => println!(
            "node {} ({}) approved: {} {}",
            node.name,
            node.id,
            node.role.as_str(),
            node.state.as_str()
        ),
        Decision::Reject => println!("node {} ({}) rejected", node.name, node.id),
        Decision::Drain => println!(
            "node {} ({}) is draining: no new work goes to it",
            node.name, node.id
        ),
        Decision::Undrain => println!(
            "node {} ({}) is {}: it takes new work again",
            node.name,
            node.id,
            node.state.as_str()
        ),
        Decision::Remove => println!("node {} ({}) removed from the cluster", node.name, node.id),
    }
    Ok(())
}

/// `k=v` sets, `k-` removes. Anything else is an error naming the argument.
pub fn parse_label_specs(specs: &[String]) -> anyhow::Result<(BTreeMap<String, String>, Vec<String>)> {
    let mut set = BTreeMap::new();
    let mut remove = Vec::new();
    for s in specs {
        if let Some((k, v)) = s.split_once('=') {
            set.insert(k.to_string(), v.to_string());
        } else if let Some(k) = s.strip_suffix('-') {
            remove.push(k.to_string());
        } else {
            anyhow::bail!("label {s:?}: expected key=value to set or key- to remove");
        }
    }
    Ok((set, remove))
}

fn labels(n: &NodeRecord) -> String {
    label_list(&n.labels)
}

fn label_list(labels: &std::collections::BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return "-".into();
    }
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The node's measured f64 GFLOP/s on all cores, "-" before it published one (or when the
/// figure was withheld).
fn gflops(n: &NodeRecord) -> String {
    match n.bench.as_ref().map(|b| b.cpu_f64_gflops_all) {
        Some(g) if g > 0.0 => super::bench::num(g),
        _ => "-".into(),
    }
}

/// The BENCH section of `node show`: the summary's figures, "-" for one not measured.
fn render_bench(b: &BenchSummary, now_ms: u64) -> String {
    let fig = |v: f64, unit: &str| {
        if v > 0.0 {
            format!("{} {unit}", super::bench::num(v))
        } else {
            "- (not measured)".into()
        }
    };
    let mut s = format!(
        "\nBENCH (quick self-benchmark, measured {} ago)\n",
        output::duration_ms(now_ms.saturating_sub(b.measured_at_ms))
    );
    s.push_str(&output::fields(&[
        ("cpu f64, all cores", fig(b.cpu_f64_gflops_all, "GFLOP/s")),
        ("cpu f64, one core", fig(b.cpu_f64_gflops_one, "GFLOP/s")),
        ("cpu f32, all cores", fig(b.cpu_f32_gflops_all, "GFLOP/s")),
        ("memory triad", fig(b.memory_triad_gbps, "GB/s")),
        ("disk seq read", fig(b.disk_seq_read_mbps, "MB/s")),
    ]));
    s
}

/// The BENCH section of `node show`: the full report (every figure with its spread and
/// conditions, NICs, GPUs, notes) when the node published one this cortex reads, else the
/// summary; and a re-run asked for and not answered yet.
fn render_bench_section(n: &NodeRecord, now_ms: u64) -> String {
    let report = n
        .bench_report
        .clone()
        .and_then(|v| serde_json::from_value::<cortex_bench::Report>(v).ok());
    let mut s = match (&report, &n.bench) {
        (Some(r), _) => format!(
            "\nBENCH ({} self-benchmark, measured {} ago)\n{}",
            if r.quick { "quick" } else { "full" },
            output::duration_ms(now_ms.saturating_sub(r.started_at_ms)),
            super::bench::human(r)
        ),
        (None, Some(b)) => render_bench(b, now_ms),
        (None, None) => String::new(),
    };
    if let Some(r) = &n.bench_request {
        s.push_str(&format!(
            "\nbench request: a {} run asked {} ago{}, not recorded yet\n",
            if r.quick { "quick" } else { "full" },
            output::duration_ms(now_ms.saturating_sub(r.requested_at_ms)),
            r.by.as_ref()
                .map(|t| format!(" by token {t}"))
                .unwrap_or_default()
        ));
    }
    if let Some(r) = n
        .net_bench
        .clone()
        .and_then(|v| serde_json::from_value::<cortex_bench::net::NetReport>(v).ok())
    {
        s.push_str(&format!(
            "
NETWORK (`cortex bench net`, this node the peer, measured {} ago)
{}",
            output::duration_ms(now_ms.saturating_sub(r.started_at_ms)),
            super::bench_net::human(&r, &n.name)
        ));
    }
    if let Some(r) = &n.net_bench_request {
        s.push_str(&format!(
            "
network run: {} s each way from {}, asked {} ago{}, not recorded yet\n",
            r.seconds,
            r.from.as_deref().unwrap_or("?"),
            output::duration_ms(now_ms.saturating_sub(r.requested_at_ms)),
            r.listening
                .as_ref()
                .map(|a| format!(", listening on {a}"))
                .unwrap_or_default()
        ));
    }
    s
}

fn render_node(n: &NodeRecord) -> String {
    let inv = &n.inventory;
    let mut s = output::fields(&[
        ("id", n.id.to_string()),
        ("name", n.name.clone()),
        ("role", n.role.as_str().into()),
        ("state", n.state.as_str().into()),
        ("grpc", n.grpc_addr.clone()),
        ("http", n.http_addr.clone()),
        ("labels", labels(n)),
        ("hostname", inv.hostname.clone()),
        ("machine id", output::opt(inv.machine_id.clone())),
        (
            "os",
            format!("{} (kernel {}, {})", inv.os.name, inv.os.kernel, inv.os.arch),
        ),
        (
            "cpu",
            format!(
                "{} — {} cores, {} threads, {} MHz",
                inv.cpu.model,
                output::opt(inv.cpu.cores),
                inv.cpu.threads,
                inv.cpu.frequency_mhz
            ),
        ),
        ("cpu flags", format!("{} flags", inv.cpu.flags.len())),
        (
            "memory",
            format!(
                "{} total, {} available",
                output::bytes(inv.memory.total_bytes),
                output::bytes(inv.memory.available_bytes)
            ),
        ),
        (
            "gpus",
            match &inv.gpus.unavailable {
                Some(reason) => reason.clone(),
                None => format!("{} NVIDIA GPU(s)", inv.gpus.devices.len()),
            },
        ),
        (
            "bench",
            match &n.bench {
                Some(_) => format!("{} GFLOP/s f64, all cores (see BENCH)", gflops(n)),
                None => "not measured yet".into(),
            },
        ),
    ]);
    s.push_str(&render_bench_section(n, crate::api::now_ms()));
    if !inv.disks.is_empty() {
        s.push_str("\nDISKS\n");
        let rows: Vec<Vec<String>> = inv
            .disks
            .iter()
            .map(|d| {
                vec![
                    d.device.clone(),
                    d.mount_point.clone(),
                    d.file_system.clone(),
                    output::bytes(d.total_bytes),
                    output::bytes(d.available_bytes),
                    d.kind.clone(),
                ]
            })
            .collect();
        s.push_str(&output::table(
            &["device", "mount", "fs", "size", "free", "kind"],
            &rows,
        ));
    }
    if !inv.nics.is_empty() {
        s.push_str("\nNICS\n");
        let rows: Vec<Vec<String>> = inv
            .nics
            .iter()
            .map(|n| {
                vec![
                    n.name.clone(),
                    output::opt(n.mac.clone()),
                    n.state.clone(),
                    n.speed_mbps
                        .map(|m| format!("{m} Mb/s"))
                        .unwrap_or_else(|| "-".into()),
                    output::opt(n.mtu),
                    n.addresses.join(","),
                ]
            })
            .collect();
        s.push_str(&output::table(
            &["name", "mac", "state", "speed", "mtu", "addresses"],
            &rows,
        ));
    }
    for d in &inv.gpus.devices {
        s.push_str(&format!(
            "gpu {}: {} ({}), {}, driver {}\n",
            d.index,
            d.name,
            d.uuid,
            output::bytes(d.memory_total_bytes),
            d.driver_version
        ));
    }
    for w in &inv.warnings {
        s.push_str(&format!("warning: {w}\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_specs_parse_and_reject() {
        let (set, remove) =
            parse_label_specs(&["zone=a".to_string(), "gpu-".to_string(), "empty=".to_string()]).unwrap();
        assert_eq!(set.get("zone").map(String::as_str), Some("a"));
        assert_eq!(set.get("empty").map(String::as_str), Some(""));
        assert_eq!(remove, vec!["gpu".to_string()]);
        let err = parse_label_specs(&["zone".to_string()]).unwrap_err().to_string();
        assert_eq!(err, "label \"zone\": expected key=value to set or key- to remove");
    }

    #[test]
    fn bench_figures_render_with_dashes_for_what_was_not_measured() {
        let b = BenchSummary {
            cpu_f64_gflops_all: 110.8,
            cpu_f64_gflops_one: 57.84,
            cpu_f32_gflops_all: 224.3,
            memory_triad_gbps: 38.0,
            disk_seq_read_mbps: 0.0,
            measured_at_ms: 1_000,
        };
        assert_eq!(
            render_bench(&b, 62_000),
            "\nBENCH (quick self-benchmark, measured 1m1s ago)\n\
             cpu f64, all cores  111 GFLOP/s\n\
             cpu f64, one core   57.8 GFLOP/s\n\
             cpu f32, all cores  224 GFLOP/s\n\
             memory triad        38.0 GB/s\n\
             disk seq read       - (not measured)\n"
        );
    }
}
