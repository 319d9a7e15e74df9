//! `cortex bench --publish`: ask a node of the cluster to run its self-benchmark again and
//! record it on its node record, then print what was recorded.
//!
//! The run happens inside the node's agent, not in this command: the agent measures with its
//! own identity (and the same one-benchmark-at-a-time lock as its start-up run) and publishes
//! the report with its own certificate, so this command needs only a token with scope
//! `operate`, works from any machine (`--node`), and never reads the node's key. The request is
//! a Raft entry (`RequestBench`); the node sees it in its next heartbeat answer.

use std::time::{Duration, Instant};

use anyhow::Context;
use cortex_model::node::NodeRecord;
use cortex_proto::v1::{GetNodeRequest, RunBenchmarkRequest};

use super::output::{self, Output};
use crate::client::{Client, ClientArgs};
use crate::config::{FlagOverrides, Sources};
use crate::convert::node_from_pb;

/// The node this machine is: the configured `node_name`, else the name the agent derives from
/// the host name.
pub(super) fn this_node() -> anyhow::Result<String> {
    let config = crate::config::load(&Sources::system(), &FlagOverrides::default())?;
    if let Some(name) = config.node_name {
        return Ok(name);
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .context("cannot read this machine's host name; name the node with --node")?;
    Ok(crate::daemon::name_from_hostname(host.trim()))
}

pub async fn run(
    client_args: &ClientArgs,
    node: Option<String>,
    quick: bool,
    wait: Duration,
    out: Output,
) -> anyhow::Result<()> {
    let key = match node {
        Some(k) => k,
        None => this_node()?,
    };
    let mut client = Client::connect(client_args).await?;
    let req = client.request(RunBenchmarkRequest {
        key: key.clone(),
        quick,
    });
    let asked = client
        .grpc
        .run_benchmark(req)
        .await
        .map_err(|e| client.error(e))?
        .into_inner();
    let asked = node_from_pb(asked).map_err(anyhow::Error::msg)?;
    let Some(request) = asked.bench_request.clone() else {
        anyhow::bail!("node {key}: the request was not recorded");
    };
    eprintln!(
        "bench: asked node {} (id {}) to run its {} benchmark; waiting up to {} s for it to record the result",
        asked.name,
        asked.id,
        if quick { "quick" } else { "full" },
        wait.as_secs()
    );
    let started = Instant::now();
    let node = loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let req = client.request(GetNodeRequest {
            key: asked.id.to_string(),
        });
        let n = client
            .grpc
            .get_node(req)
            .await
            .map_err(|e| client.error(e))?
            .into_inner();
        let n: NodeRecord = node_from_pb(n).map_err(anyhow::Error::msg)?;
        match &n.bench_request {
            None => break n,
            Some(r) if r.requested_at_ms != request.requested_at_ms => {
                anyhow::bail!(
                    "node {}: someone asked for another run meanwhile; `cortex node show {}` shows the result when it is recorded",
                    n.name,
                    n.id
                )
            }
            Some(_) => {}
        }
        if started.elapsed() >= wait {
            anyhow::bail!(
                "node {} has not recorded a new benchmark within {} s (the request stays recorded; \
                 the node runs it when it next hears from the leader — `cortex node show {}` shows the result)",
                n.name,
                wait.as_secs(),
                n.id
            );
        }
    };
    let Some(report) = node.bench_report.clone() else {
        anyhow::bail!(
            "node {} answered without a full report (an older agent?)",
            node.name
        );
    };
    if out == Output::Json {
        return output::print_json(&report);
    }
    let report: cortex_bench::Report =
        serde_json::from_value(report).context("the recorded report is not in a format this cortex reads")?;
    println!(
        "node {} (id {}): recorded {}",
        node.name,
        node.id,
        output::duration_ms(crate::api::now_ms().saturating_sub(report.started_at_ms)) + " ago"
    );
    print!("{}", super::bench::human(&report));
    Ok(())
}
