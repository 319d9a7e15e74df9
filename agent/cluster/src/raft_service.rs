//! Inbound Raft RPCs: the gRPC `Raft` service hands each request to the local openraft node and
//! returns its `Result` as JSON, so the caller sees remote Raft errors as typed errors.
//!
//! Only coordinators may speak Raft: every call must come over mTLS with a certificate from the
//! cluster CA whose role (OU) is `coordinator`. A worker's certificate, a certificate from
//! another CA (refused by the TLS layer) or none at all is refused.

use std::sync::Arc;

use cortex_proto::v1::raft_server::Raft as RaftRpc;
use cortex_proto::v1::RaftPayload;
use rustls::pki_types::CertificateDer;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Request, Response, Status};

use crate::h2_server::PeerCertificates;
use crate::pki::node_identity_from_cert_der;
use crate::types::CortexRaft;

pub struct RaftService {
    raft: CortexRaft,
}

impl RaftService {
    pub fn new(raft: CortexRaft) -> Self {
        RaftService { raft }
    }
}

/// The verified peer's node id and role, if it presented a node certificate.
pub fn peer_node<T>(req: &Request<T>) -> Option<(u64, String)> {
    let certs = peer_certs(req)?;
    identity(certs.first()?.as_ref())
}

/// The client certificates of the request's connection, verified by the TLS layer and put
/// there by `h2_server`.
fn peer_certs<T>(req: &Request<T>) -> Option<Arc<Vec<CertificateDer<'static>>>> {
    req.extensions()
        .get::<PeerCertificates>()
        .map(|PeerCertificates(certs)| certs.clone())
}

/// Certificates already read, by their DER bytes (bounded; emptied when full).
static IDENTITIES: std::sync::LazyLock<Memo> = std::sync::LazyLock::new(Memo::default);
const MEMO_MAX: usize = 4096;
type Memo = std::sync::Mutex<std::collections::HashMap<Vec<u8>, Option<(u64, String)>>>;

/// `node_identity_from_cert_der`, remembered: every Raft RPC and node call carries the same
/// few certificates (the TLS layer has verified this one on this connection), and parsing
/// the X.509 each time was ~3 % of a follower's CPU under a write load.
fn identity(der: &[u8]) -> Option<(u64, String)> {
    let mut memo = IDENTITIES.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(known) = memo.get(der) {
        return known.clone();
    }
    let found = node_identity_from_cert_der(der);
    if memo.len() >= MEMO_MAX {
        memo.clear();
    }
    memo.insert(der.to_vec(), found.clone());
    found
}

/// The verified peer's node id, if it is a coordinator.
pub fn require_coordinator<T>(req: &Request<T>) -> Result<u64, Status> {
    let certs = peer_certs(req)
        .ok_or_else(|| Status::unauthenticated("raft rpc needs a cluster node certificate (mTLS)"))?;
    let leaf = certs
        .first()
        .ok_or_else(|| Status::unauthenticated("no client certificate presented"))?;
    match identity(leaf.as_ref()) {
        Some((id, role)) if role == "coordinator" => Ok(id),
        Some((id, role)) => Err(Status::permission_denied(format!(
            "node {id} has role {role}; only coordinators take part in Raft"
        ))),
        None => Err(Status::unauthenticated(
            "the client certificate is not a Cortex node certificate",
        )),
    }
}

fn decode<T: DeserializeOwned>(req: Request<RaftPayload>) -> Result<T, Status> {
    require_coordinator(&req)?;
    serde_json::from_slice(&req.into_inner().json)
        .map_err(|e| Status::invalid_argument(format!("malformed raft payload: {e}")))
}

fn encode<T: Serialize>(v: &T) -> Result<Response<RaftPayload>, Status> {
    serde_json::to_vec(v)
        .map(|json| Response::new(RaftPayload { json }))
        .map_err(|e| Status::internal(format!("could not encode raft reply: {e}")))
}

#[tonic::async_trait]
impl RaftRpc for RaftService {
    async fn append_entries(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let rpc = decode(req)?;
        encode(&self.raft.append_entries(rpc).await)
    }

    async fn vote(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let rpc = decode(req)?;
        encode(&self.raft.vote(rpc).await)
    }

    async fn install_snapshot(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let rpc = decode(req)?;
        encode(&self.raft.install_snapshot(rpc).await)
    }
}
