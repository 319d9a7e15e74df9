//! Forwarding a proposal from a follower to the leader over mTLS (the `Forward` RPC), so a
//! client can write through any coordinator.
//!
//! One channel to the current leader is kept and reused (a new TCP + TLS handshake per write
//! costs more than the write); it is replaced when the leader's address changes and dropped
//! when the connection fails. Connecting is bounded by the same short LAN connect timeout as
//! Raft's own RPCs, so a write that reaches a follower which still believes a dead node leads
//! fails within [`cortex_cluster::network::CONNECT_TIMEOUT`] (at once when the dead node's host
//! refuses the connection) instead of waiting for the whole request timeout.

use std::sync::Mutex;
use std::time::Duration;

use cortex_model::command::{Command, Outcome};
use cortex_proto::v1::cortex_client::CortexClient;
use cortex_proto::v1::ForwardRequest;
use tonic::transport::{Channel, ClientTlsConfig};

use super::ApiError;

/// How long the leader may take to commit and apply a forwarded write. A healthy leader answers
/// in milliseconds; this bounds a leader that accepted the call but cannot reach a quorum. It
/// is longer than a failover on purpose: the outcome of a write cut off here is ambiguous.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Forwarder {
    tls: ClientTlsConfig,
    channel: Mutex<Option<(String, Channel)>>,
}

impl Forwarder {
    pub fn new(tls: ClientTlsConfig) -> Self {
        Forwarder {
            tls,
            channel: Mutex::new(None),
        }
    }

    fn channel(&self, addr: &str) -> Result<Channel, ApiError> {
        let mut slot = self.channel.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((a, ch)) = slot.as_ref() {
            if a == addr {
                return Ok(ch.clone());
            }
        }
        let ch = cortex_cluster::pki::lazy_channel(addr, &self.tls, cortex_cluster::network::CONNECT_TIMEOUT)
            .map_err(|e| ApiError::Unavailable(format!("cannot reach the leader at {addr}: {e}")))?;
        *slot = Some((addr.to_string(), ch.clone()));
        Ok(ch)
    }

    fn forget(&self, addr: &str) {
        let mut slot = self.channel.lock().unwrap_or_else(|p| p.into_inner());
        if slot.as_ref().is_some_and(|(a, _)| a == addr) {
            *slot = None;
        }
    }

    pub async fn to_leader(&self, leader_addr: &str, cmd: &Command) -> Result<Outcome, ApiError> {
        let json = serde_json::to_string(cmd).map_err(|e| ApiError::Internal(e.to_string()))?;
        let mut client = CortexClient::new(self.channel(leader_addr)?);
        let mut req = tonic::Request::new(ForwardRequest { command_json: json });
        req.set_timeout(FORWARD_TIMEOUT);
        // The deadline above also covers a TLS handshake that a frozen peer never answers.
        let reply = tokio::time::timeout(FORWARD_TIMEOUT, client.forward(req))
            .await
            .unwrap_or_else(|_| Err(tonic::Status::deadline_exceeded("no answer in time")));
        let reply = reply.map_err(|s| match s.code() {
            tonic::Code::FailedPrecondition => ApiError::Rejected(s.message().to_string()),
            tonic::Code::InvalidArgument => ApiError::invalid("command", s.message()),
            code => {
                if code == tonic::Code::Unavailable {
                    self.forget(leader_addr);
                }
                ApiError::Unavailable(format!(
                    "forwarding to the leader at {leader_addr} failed: {}",
                    s.message()
                ))
            }
        })?;
        serde_json::from_str(&reply.into_inner().outcome_json)
            .map_err(|e| ApiError::Internal(format!("the leader's reply could not be decoded: {e}")))
    }
}
