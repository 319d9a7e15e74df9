//! Forwarding a proposal from a follower to the leader over mTLS (the `Forward` RPC), so a
//! client can write through any coordinator.
//!
//! One HTTP/2 connection to the current leader is kept and reused (a new TCP + TLS handshake
//! per write costs more than the write; `h2_channel`: each call leaves in one write); it is
//! replaced when the leader's address changes and dropped when the connection fails. Writes
//! that arrive while it is being made wait for that one attempt rather than starting their own.
//! Connecting is bounded by the same short LAN connect timeout as Raft's own RPCs (the TCP
//! connect and the TLS handshake each), so a write that reaches a follower which still believes
//! a dead node leads fails within [`cortex_cluster::network::CONNECT_TIMEOUT`] (at once when the
//! dead node's host refuses the connection) instead of waiting for the whole request timeout.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cortex_cluster::h2_channel::{H2Channel, Target};
use cortex_cluster::pki::NodeCredentials;
use cortex_model::command::{Command, Outcome};
use cortex_proto::v1::cortex_client::CortexClient;
use cortex_proto::v1::ForwardRequest;
use futures::future::{BoxFuture, FutureExt, Shared};

use super::ApiError;

/// How long the leader may take to commit and apply a forwarded write. A healthy leader answers
/// in milliseconds; this bounds a leader that accepted the call but cannot reach a quorum. It
/// is longer than a failover on purpose: the outcome of a write cut off here is ambiguous.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);

/// The connection to one leader: being made, or made (the result is kept and shared).
type Connection = Shared<BoxFuture<'static, Result<CortexClient<H2Channel>, String>>>;

pub struct Forwarder {
    creds: Arc<NodeCredentials>,
    channel: Mutex<Option<(String, Connection)>>,
}

impl Forwarder {
    pub fn new(creds: Arc<NodeCredentials>) -> Self {
        Forwarder {
            creds,
            channel: Mutex::new(None),
        }
    }

    fn connection(&self, addr: &str) -> Connection {
        let mut slot = self.channel.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((a, conn)) = slot.as_ref() {
            if a == addr {
                return conn.clone();
            }
        }
        let (owned, creds) = (addr.to_string(), self.creds.clone());
        let conn = async move {
            let channel = H2Channel::connect(&Target {
                addr: &owned,
                ca_pem: &creds.ca_pem,
                identity: Some(&creds),
                // Bounds the TCP connect and, separately, a TLS handshake a frozen peer never
                // answers.
                connect_timeout: cortex_cluster::network::CONNECT_TIMEOUT,
                call_timeout: None,
            })
            .await
            .map_err(|e| e.to_string())?;
            Ok(CortexClient::new(channel))
        }
        .boxed()
        .shared();
        *slot = Some((addr.to_string(), conn.clone()));
        conn
    }

    fn forget(&self, addr: &str) {
        let mut slot = self.channel.lock().unwrap_or_else(|p| p.into_inner());
        if slot.as_ref().is_some_and(|(a, _)| a == addr) {
            *slot = None;
        }
    }

    pub async fn to_leader(&self, leader_addr: &str, cmd: &Command) -> Result<Outcome, ApiError> {
        let json = serde_json::to_string(cmd).map_err(|e| ApiError::Internal(e.to_string()))?;
        let mut client = match self.connection(leader_addr).await {
            Ok(client) => client,
            Err(e) => {
                self.forget(leader_addr);
                return Err(ApiError::Unavailable(format!(
                    "cannot reach the leader at {leader_addr}: {e}"
                )));
            }
        };
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
