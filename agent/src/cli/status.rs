//! `cortex status`.

use cortex_proto::v1::GetStatusRequest;

use super::output::{self, Output};
use crate::client::{Client, ClientArgs};
use crate::convert::status_from_pb;

pub async fn run(args: &ClientArgs, out: Output) -> anyhow::Result<()> {
    let mut client = Client::connect(args).await?;
    let req = client.request(GetStatusRequest {});
    let s = client
        .grpc
        .get_status(req)
        .await
        .map_err(|e| client.error(e))?
        .into_inner();
    let s = status_from_pb(s);
    if out == Output::Json {
        return output::print_json(&s);
    }
    let leader = match s.leader_id {
        Some(id) if id == s.node_id => format!("{id} (this node)"),
        Some(id) => id.to_string(),
        None => "none (election in progress?)".into(),
    };
    let states: Vec<String> = s.nodes_by_state.iter().map(|(k, v)| format!("{v} {k}")).collect();
    let voters: Vec<String> = s.voters.iter().map(|v| v.to_string()).collect();
    print!(
        "{}",
        output::fields(&[
            ("cluster", s.cluster_id.clone()),
            (
                "answered by",
                format!("{} (id {}), {}", s.node_name, s.node_id, s.raft_role)
            ),
            ("leader", leader),
            ("term", s.term.to_string()),
            (
                "log",
                format!(
                    "commit {}, applied {}, last {}",
                    output::opt(s.commit_index),
                    output::opt(s.applied_index),
                    output::opt(s.last_log_index)
                )
            ),
            ("voters", voters.join(", ")),
            ("nodes", format!("{} ({})", s.nodes_total, states.join(", "))),
            ("ca", format!("sha256:{}", s.ca_fingerprint)),
            ("version", s.version.clone()),
            ("uptime", output::duration_ms(s.uptime_ms)),
        ])
    );
    Ok(())
}
