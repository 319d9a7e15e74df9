//! Outbound Raft RPCs over gRPC (the `Raft` service in proto/cortex.proto).
//!
//! Payloads are openraft's serde types as JSON. Channels are created lazily per target and
//! reconnect on their own; a failed call is reported to openraft as `Unreachable`, which makes
//! it back off rather than spin.

use std::time::Duration;

use cortex_proto::v1::raft_client::RaftClient;
use cortex_proto::v1::RaftPayload;
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::{Channel, ClientTlsConfig};

use crate::types::{NodeId, TypeConfig};

/// Creates gRPC clients to other nodes, authenticated with this node's certificate.
#[derive(Clone)]
pub struct GrpcNetwork {
    tls: ClientTlsConfig,
}

impl GrpcNetwork {
    pub fn new(tls: ClientTlsConfig) -> Self {
        GrpcNetwork { tls }
    }
}

pub struct GrpcConnection {
    target: NodeId,
    addr: String,
    tls: ClientTlsConfig,
    client: Option<RaftClient<Channel>>,
}

impl RaftNetworkFactory<TypeConfig> for GrpcNetwork {
    type Network = GrpcConnection;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Self::Network {
        GrpcConnection {
            target,
            addr: node.addr.clone(),
            tls: self.tls.clone(),
            client: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("raft rpc to node {target} at {addr}: {detail}")]
struct CallError {
    target: NodeId,
    addr: String,
    detail: String,
}

enum Method {
    Append,
    Vote,
    Snapshot,
}

impl GrpcConnection {
    fn err(&self, detail: impl ToString) -> CallError {
        CallError {
            target: self.target,
            addr: self.addr.clone(),
            detail: detail.to_string(),
        }
    }

    fn client(&mut self, timeout: Duration) -> Result<RaftClient<Channel>, CallError> {
        if let Some(c) = &self.client {
            return Ok(c.clone());
        }
        let channel = crate::pki::lazy_channel(&self.addr, &self.tls, timeout.min(Duration::from_secs(2)))
            .map_err(|e| self.err(e))?;
        let client = RaftClient::new(channel);
        self.client = Some(client.clone());
        Ok(client)
    }

    /// Sends one request; the reply is a JSON `Result<Resp, E>` produced by the remote Raft.
    async fn call<Req, Resp, E>(
        &mut self,
        method: Method,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let timeout = option.hard_ttl();
        let json = serde_json::to_vec(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let mut client = self
            .client(timeout)
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        let mut request = tonic::Request::new(RaftPayload { json });
        request.set_timeout(timeout);
        let reply = match method {
            Method::Append => client.append_entries(request).await,
            Method::Vote => client.vote(request).await,
            Method::Snapshot => client.install_snapshot(request).await,
        };
        let reply = match reply {
            Ok(r) => r.into_inner(),
            Err(status) => {
                // Drop the channel so the next call reconnects from scratch.
                self.client = None;
                return Err(RPCError::Unreachable(Unreachable::new(
                    &self.err(status.message()),
                )));
            }
        };
        let result: Result<Resp, E> =
            serde_json::from_slice(&reply.json).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for GrpcConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(Method::Append, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call(Method::Snapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(Method::Vote, &rpc, &option).await
    }
}
