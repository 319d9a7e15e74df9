//! `cortex bench`: the self-benchmark on this host (no node needs to be running); with
//! `--publish`, a node of the cluster runs it and records it (`bench_publish.rs`);
//! `cortex bench net --peer <node>`: network throughput to a node (`bench_net.rs`).

use std::path::PathBuf;

use anyhow::Context;
use cortex_bench::{Figure, Options, Report};

use super::output::{self, Output};
use crate::client::ClientArgs;
use crate::config::{FlagOverrides, Sources};

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: Option<BenchCommand>,
    /// The short run a booting node does (≤ 5 s): fewer repeats, smaller sizes.
    #[arg(long)]
    pub quick: bool,
    /// Directory for the disk test (default: the configured data directory).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Threads for the all-core figures (default: every CPU this process may use).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,
    /// Ask a node of the cluster to run its benchmark (the full run; with --quick the short
    /// one) and record it on its node record, then print what was recorded. The node's agent
    /// measures and publishes; this needs a token with scope operate.
    #[arg(long, conflicts_with_all = ["data_dir", "threads"])]
    pub publish: bool,
    /// With --publish: the node (id or name). Default: this machine's node (the configured
    /// node_name, else the host name).
    #[arg(long, value_name = "NODE", requires = "publish")]
    pub node: Option<String>,
    /// With --publish: how long to wait for the node to record the result.
    #[arg(long, value_name = "SECONDS", default_value_t = 90, requires = "publish",
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub wait: u64,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Network throughput between this machine and a node of the cluster: one plain TCP
    /// stream each way (no TLS in the path), authorised by a one-time secret; the peer records
    /// the result on its node record (net_bench). Needs a token with scope operate.
    Net(super::bench_net::NetArgs),
}

pub async fn run(args: BenchArgs, out: Output) -> anyhow::Result<()> {
    if let Some(BenchCommand::Net(net)) = args.command {
        return super::bench_net::run(net, out).await;
    }
    if args.publish {
        let wait = std::time::Duration::from_secs(args.wait);
        return super::bench_publish::run(&args.client, args.node, args.quick, wait, out).await;
    }
    let data_dir = match args.data_dir {
        Some(dir) => dir,
        None => crate::config::load(&Sources::system(), &FlagOverrides::default())?.data_dir,
    };
    // The disk test writes into the data directory; a node would create it too. If this fails
    // the disk section says why and the rest still runs.
    let _ = std::fs::create_dir_all(&data_dir);
    let opts = Options {
        quick: args.quick,
        data_dir,
        threads: args.threads.map(usize::from),
    };
    let report = tokio::task::spawn_blocking(move || {
        cortex_bench::run_with_progress(&opts, &mut |phase| eprintln!("bench: {phase}"))
    })
    .await
    .context("the benchmark thread failed")?;
    eprintln!("bench: done in {:.1} s", report.duration_ms as f64 / 1000.0);
    if out == Output::Json {
        return output::print_json(&report);
    }
    print!("{}", human(&report));
    Ok(())
}

/// Three significant digits, roughly: 1234, 123, 12.3, 1.23.
pub(super) fn num(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn conditions(f: &Figure) -> String {
    let c = &f.conditions;
    let mut parts = vec![format!(
        "{} thread{}",
        c.threads,
        if c.threads == 1 { "" } else { "s" }
    )];
    if !c.features.is_empty() {
        parts.push(c.features.join("+"));
    }
    parts.push(c.size.clone());
    if let Some(note) = &c.note {
        parts.push(note.clone());
    }
    parts.join("; ")
}

/// The human report: host line, one table row per figure with its spread, then NICs, GPUs and
/// notes.
pub(super) fn human(r: &Report) -> String {
    let mut s = String::new();
    let features = r.host.cpu_features.join(" ");
    s.push_str(&output::fields(&[
        ("cpu", r.host.cpu_model.clone().unwrap_or_else(|| "-".into())),
        (
            "threads",
            format!(
                "{} (CPUs allowed: {:?}), SIMD: {features}",
                r.host.threads, r.host.cpus_allowed
            ),
        ),
        (
            "run",
            format!(
                "{}, {:.1} s, format {}",
                if r.quick { "quick" } else { "full" },
                r.duration_ms as f64 / 1000.0,
                r.format
            ),
        ),
    ]));
    s.push('\n');
    let rows: Vec<Vec<String>> = r
        .rows()
        .into_iter()
        .map(|row| match row.figure {
            Some(f) => vec![
                row.name.to_owned(),
                num(f.median),
                num(f.min),
                num(f.max),
                format!("{:.1}%", f.cv * 100.0),
                f.repeats.to_string(),
                f.unit.clone(),
                conditions(f),
            ],
            None => {
                let mut v = vec![row.name.to_owned()];
                v.extend(std::iter::repeat_n("-".to_owned(), 6));
                v.push(row.missing.unwrap_or_default());
                v
            }
        })
        .collect();
    s.push_str(&output::table(
        &["figure", "median", "min", "max", "cv", "n", "unit", "conditions"],
        &rows,
    ));
    s.push('\n');
    let nics: Vec<Vec<String>> = r
        .nics
        .interfaces
        .iter()
        .map(|n| {
            vec![
                n.name.clone(),
                n.state.clone(),
                n.speed_mbps
                    .map(|v| format!("{v} Mb/s"))
                    .unwrap_or_else(|| "-".into()),
                n.driver.clone().unwrap_or_else(|| {
                    if n.virtual_device {
                        "(virtual)".into()
                    } else {
                        "-".into()
                    }
                }),
            ]
        })
        .collect();
    s.push_str(&output::table(&["nic", "state", "link", "driver"], &nics));
    s.push('\n');
    match &r.gpu.unavailable {
        Some(why) => s.push_str(&format!("gpu: {why}\n")),
        None if r.gpu.devices.is_empty() => s.push_str("gpu: NVML answered but lists no GPU\n"),
        None => {
            let gpus: Vec<Vec<String>> = r
                .gpu
                .devices
                .iter()
                .map(|g| {
                    vec![
                        g.index.to_string(),
                        g.name.clone(),
                        output::opt(g.memory_total_bytes.map(output::bytes)),
                        output::opt(g.max_graphics_clock_mhz.map(|c| format!("{c} MHz"))),
                        output::opt(g.power_limit_watts.map(|w| format!("{w:.0} W"))),
                        output::opt(g.pcie_link.clone()),
                        output::opt(g.utilisation_gpu_percent.map(|u| format!("{u}%"))),
                    ]
                })
                .collect();
            s.push_str(&output::table(
                &[
                    "gpu",
                    "model",
                    "memory",
                    "max clock",
                    "power limit",
                    "pcie",
                    "util",
                ],
                &gpus,
            ));
        }
    }
    let notes: Vec<&String> = [
        &r.cpu.notes,
        &r.gemm.notes,
        &r.memory.notes,
        &r.disk.notes,
        &r.nics.notes,
        &r.gpu.notes,
    ]
    .into_iter()
    .flatten()
    .collect();
    if !notes.is_empty() {
        s.push_str("\nnotes:\n");
        for n in notes {
            s.push_str(&format!("  - {n}\n"));
        }
    }
    s
}
