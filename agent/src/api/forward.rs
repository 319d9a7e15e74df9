//! Forwarding a proposal from a follower to the leader over mTLS (the `Forward` RPC), so a
//! client can write through any coordinator.

use std::time::Duration;

use cortex_model::command::{Command, Outcome};
use cortex_proto::v1::cortex_client::CortexClient;
use cortex_proto::v1::ForwardRequest;
use tonic::transport::ClientTlsConfig;

use super::ApiError;

pub async fn to_leader(tls: &ClientTlsConfig, leader_addr: &str, cmd: &Command) -> Result<Outcome, ApiError> {
    let json = serde_json::to_string(cmd).map_err(|e| ApiError::Internal(e.to_string()))?;
    let channel = cortex_cluster::pki::lazy_channel(leader_addr, tls, Duration::from_secs(2))
        .map_err(|e| ApiError::Unavailable(format!("cannot reach the leader at {leader_addr}: {e}")))?;
    let mut client = CortexClient::new(channel);
    let mut req = tonic::Request::new(ForwardRequest { command_json: json });
    req.set_timeout(Duration::from_secs(10));
    let reply = client.forward(req).await.map_err(|s| match s.code() {
        tonic::Code::FailedPrecondition => ApiError::Rejected(s.message().to_string()),
        tonic::Code::InvalidArgument => ApiError::invalid("command", s.message()),
        _ => ApiError::Unavailable(format!(
            "forwarding to the leader at {leader_addr} failed: {}",
            s.message()
        )),
    })?;
    serde_json::from_str(&reply.into_inner().outcome_json)
        .map_err(|e| ApiError::Internal(format!("the leader's reply could not be decoded: {e}")))
}
