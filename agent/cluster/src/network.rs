//! Outbound Raft RPCs over gRPC (the `Raft` service in proto/cortex.proto).
//!
//! Payloads are openraft's serde types as JSON. One HTTP/2 connection per target
//! (`h2_channel`: each call leaves in one write, where tonic's `Channel` needs three), made at
//! the first call and kept: a timed-out call does not cost a new TCP + TLS handshake; a call that
//! finds the connection gone drops it, and the next call connects afresh.
//!
//! Timeouts and errors (see docs/ARCHITECTURE.md, "Timeouts and retries"):
//! - connecting is bounded by [`CONNECT_TIMEOUT`]: peers are on a LAN, so a peer that has not
//!   accepted a TCP connection by then is gone;
//! - each call is bounded by the deadline openraft gives for that RPC (`RPCOption::hard_ttl`):
//!   the heartbeat interval for append-entries, the minimum election timeout for a vote,
//!   `install_snapshot_timeout` for a snapshot chunk;
//! - a call that ran out of time is reported as `Timeout` (openraft retries at once, no back-off:
//!   the peer is alive, only slow — typically an fsync); a peer that cannot be connected to, or
//!   refuses the call, is `Unreachable`, which makes openraft back off for [`UNREACHABLE_BACKOFF`]
//!   before trying that peer again.
//!
//! A new leader's first AppendEntries to a follower leave out the entries the follower said it
//! holds when it answered the vote request; the follower checks that claim (`catch_up.rs`).
//!
//! A commit-only AppendEntries (no entries, a log the follower confirmed) is answered at once
//! and sent a few milliseconds later, unless the next entries carry the commit first
//! (`commit_linger.rs`).
//!
//! An AppendEntries leaves only once this node's log is on disk up to the commit index it
//! carries: a leader acknowledges its own entries before their fsync, and no follower may apply
//! an entry on the strength of that alone (`store/durable.rs`). The wait is almost always
//! nil — the commit needed a follower's fsync, which takes longer than the leader's own.

use std::sync::Arc;
use std::time::Duration;

use cortex_proto::v1::raft_client::RaftClient;
use cortex_proto::v1::RaftPayload;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::catch_up::{self, FollowerLogs};
use crate::commit_linger::CommitLinger;
use crate::h2_channel::{ConnectError, H2Channel, Target};
use crate::pki::NodeCredentials;
use crate::store::Durable;
use crate::types::{NodeId, TypeConfig};

/// How long a TCP connect to a peer may take. LAN round trips are well under a millisecond and
/// the first SYN retransmission is at 1 s, so this only ever cuts off a peer that is down.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// How long openraft waits before retrying a peer that was `Unreachable`. Short, so a restarted
/// peer is caught up within a heartbeat or two; a failed connect to a dead peer costs nothing.
pub const UNREACHABLE_BACKOFF: Duration = Duration::from_millis(250);

/// Creates gRPC clients to other nodes, authenticated with this node's certificate.
#[derive(Clone)]
pub struct GrpcNetwork {
    id: NodeId,
    creds: Arc<NodeCredentials>,
    durable: Durable,
    /// Each peer's last log id, from its latest answer to a vote request.
    followers: FollowerLogs,
}

impl GrpcNetwork {
    /// `id` is this node's id (it names the caller in timeout errors); `creds` are its
    /// certificate and key, presented to every peer, and the CA peers must present; `durable`
    /// says how far this node's log is on disk (`LogStore::durable`).
    pub fn new(id: NodeId, creds: Arc<NodeCredentials>, durable: Durable) -> Self {
        GrpcNetwork {
            id,
            creds,
            durable,
            followers: FollowerLogs::default(),
        }
    }
}

pub struct GrpcConnection {
    id: NodeId,
    target: NodeId,
    addr: String,
    creds: Arc<NodeCredentials>,
    durable: Durable,
    client: Option<RaftClient<H2Channel>>,
    /// A connection being made. It runs as a task of its own: openraft bounds each call by the
    /// heartbeat interval, and a TLS handshake on a busy host can take longer; the next call
    /// picks up where this one ran out instead of starting over.
    connecting: Option<tokio::task::JoinHandle<Result<H2Channel, ConnectError>>>,
    /// Commit-only AppendEntries to this follower, held back for the next entries to carry.
    linger: CommitLinger,
    /// Shared by every connection of this node: what each peer said it holds.
    followers: FollowerLogs,
}

impl RaftNetworkFactory<TypeConfig> for GrpcNetwork {
    type Network = GrpcConnection;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Self::Network {
        GrpcConnection {
            id: self.id,
            target,
            addr: node.addr.clone(),
            creds: self.creds.clone(),
            durable: self.durable.clone(),
            client: None,
            connecting: None,
            linger: CommitLinger::default(),
            followers: self.followers.clone(),
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

impl GrpcConnection {
    fn err(&self, detail: impl ToString) -> CallError {
        CallError {
            target: self.target,
            addr: self.addr.clone(),
            detail: detail.to_string(),
        }
    }

    async fn client(&mut self) -> Result<RaftClient<H2Channel>, CallError> {
        if let Some(c) = &self.client {
            return Ok(c.clone());
        }
        let connecting = self.connecting.get_or_insert_with(|| {
            let (addr, creds) = (self.addr.clone(), self.creds.clone());
            tokio::spawn(async move {
                H2Channel::connect(&Target {
                    addr: &addr,
                    ca_pem: &creds.ca_pem,
                    identity: Some(&creds),
                    connect_timeout: CONNECT_TIMEOUT,
                    // Each call has openraft's deadline (`call`).
                    call_timeout: None,
                })
                .await
            })
        });
        let connected = connecting.await;
        self.connecting = None;
        let channel = match connected {
            Ok(Ok(channel)) => channel,
            Ok(Err(e)) => return Err(self.err(e)),
            Err(e) => return Err(self.err(format!("connecting failed: {e}"))),
        };
        let client = RaftClient::new(channel);
        self.client = Some(client.clone());
        Ok(client)
    }

    /// Sends one request; the reply is a JSON `Result<Resp, E>` produced by the remote Raft.
    async fn call<Req, Resp, E>(
        &mut self,
        action: RPCTypes,
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
        let started = tokio::time::Instant::now();
        let mut client = match tokio::time::timeout(timeout, self.client()).await {
            Ok(client) => client.map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?,
            // Still connecting (the handshake goes on without this call): a slow peer, not a
            // gone one; a connect that fails or exceeds CONNECT_TIMEOUT is `Unreachable` above.
            Err(_) => {
                return Err(RPCError::Timeout(Timeout {
                    action,
                    id: self.id,
                    target: self.target,
                    timeout,
                }))
            }
        };
        let mut request = tonic::Request::new(RaftPayload { json });
        // Also sent to the peer (grpc-timeout), so it can drop work nobody waits for.
        request.set_timeout(timeout);
        let call = async {
            match action {
                RPCTypes::AppendEntries => client.append_entries(request).await,
                RPCTypes::Vote => client.vote(request).await,
                RPCTypes::InstallSnapshot => client.install_snapshot(request).await,
            }
        };
        let reply = tokio::time::timeout_at(started + timeout, call)
            .await
            .unwrap_or_else(|_| {
                Err(tonic::Status::deadline_exceeded(
                    "the peer did not answer in time",
                ))
            });
        let reply = match reply {
            Ok(r) => r.into_inner(),
            Err(status) => return Err(self.classify(action, timeout, status)),
        };
        let result: Result<Resp, E> =
            serde_json::from_slice(&reply.json).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    /// A slow peer is not an unreachable one: only a failed connection (or a refusal) backs off.
    fn classify<E: std::error::Error>(
        &mut self,
        action: RPCTypes,
        timeout: Duration,
        status: tonic::Status,
    ) -> RPCError<NodeId, BasicNode, E> {
        match status.code() {
            tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => RPCError::Timeout(Timeout {
                action,
                id: self.id,
                target: self.target,
                timeout,
            }),
            code => {
                if code == tonic::Code::Unavailable {
                    // The connection is gone (refused, reset, peer restarted): start afresh.
                    self.client = None;
                }
                RPCError::Unreachable(Unreachable::new(&self.err(status.message())))
            }
        }
    }
}

/// Sends a commit-only AppendEntries that was answered already (`commit_linger.rs`); only
/// the follower's answer matters, and only if it is a higher vote. Failures are dropped: the
/// next heartbeat carries the commit again and finds out whether the follower is there.
/// Encoded here, not when it is held: under load it is almost never sent.
async fn held_append(
    mut client: RaftClient<H2Channel>,
    rpc: AppendEntriesRequest<TypeConfig>,
    timeout: Duration,
) -> Option<AppendEntriesResponse<NodeId>> {
    let json = serde_json::to_vec(&rpc).ok()?;
    let mut request = tonic::Request::new(RaftPayload { json });
    request.set_timeout(timeout);
    let reply = tokio::time::timeout(timeout, client.append_entries(request))
        .await
        .ok()?
        .ok()?;
    let result: Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>> =
        serde_json::from_slice(&reply.into_inner().json).ok()?;
    result.ok()
}

impl RaftNetwork<TypeConfig> for GrpcConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        if let Some(commit) = &rpc.leader_commit {
            let timeout = option.hard_ttl();
            match tokio::time::timeout(timeout, self.durable.wait_for(commit.index)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(RPCError::Network(NetworkError::new(&e))),
                Err(_) => {
                    return Err(RPCError::Timeout(Timeout {
                        action: RPCTypes::AppendEntries,
                        id: self.id,
                        target: self.target,
                        timeout,
                    }))
                }
            }
        }
        if let Some(vote) = self.linger.take_higher_vote() {
            return Ok(AppendEntriesResponse::HigherVote(vote));
        }
        if let (Some(client), Some(commit), true) =
            (self.client.clone(), rpc.leader_commit, self.linger.may_hold(&rpc))
        {
            let timeout = option.hard_ttl();
            self.linger
                .hold(commit.index, move || held_append(client, rpc, timeout));
            return Ok(AppendEntriesResponse::Success);
        }
        let last = rpc.entries.last().map(|e| e.log_id).or(rpc.prev_log_id);
        let vote = rpc.vote;
        let short = (self.followers.get(self.target)).and_then(|held| catch_up::trim(&rpc, held));
        if let Some(short) = short {
            // Ends at the same log id as `rpc`: a Success means the same (`catch_up.rs`).
            self.linger.carrying(short.leader_commit.as_ref());
            match self.call(RPCTypes::AppendEntries, &short, &option).await {
                Ok(AppendEntriesResponse::Success) => {
                    self.linger.confirmed(last, vote);
                    return Ok(AppendEntriesResponse::Success);
                }
                Ok(AppendEntriesResponse::HigherVote(v)) => return Ok(AppendEntriesResponse::HigherVote(v)),
                // It does not hold what it said: the whole request after all.
                Ok(_) => self.followers.forget(self.target),
                Err(e) => return Err(e),
            }
        }
        self.linger.carrying(rpc.leader_commit.as_ref());
        let reply = self.call(RPCTypes::AppendEntries, &rpc, &option).await;
        if let Ok(AppendEntriesResponse::Success) = &reply {
            self.linger.confirmed(last, vote);
        }
        reply
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call(RPCTypes::InstallSnapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let reply: Result<VoteResponse<NodeId>, _> = self.call(RPCTypes::Vote, &rpc, &option).await;
        if let Ok(answer) = &reply {
            self.followers.reported(self.target, answer.last_log_id);
        }
        reply
    }

    fn backoff(&self) -> Backoff {
        Backoff::new(std::iter::repeat(UNREACHABLE_BACKOFF))
    }
}
