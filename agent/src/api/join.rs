//! A machine asking to join: validation, rate limiting, the token check, and the answer it
//! polls for (pending → approved with its certificate, or rejected with the reason).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cortex_model::command::{Command, Outcome};
use cortex_model::inventory::Inventory;
use cortex_model::node::{BenchSummary, JoinInfo, NodeRecord, NodeRegistration, NodeRole, NodeState};
use cortex_model::token::{TokenRecord, TokenRejection};

use super::{now_ms, sha256_hex, ApiError, NodeApi};

/// Largest accepted pieces of a join request.
const MAX_CSR: usize = 16 * 1024;
const MAX_INVENTORY: usize = 512 * 1024;
/// Join requests allowed per source address per window.
const RATE_LIMIT: usize = 20;
const RATE_WINDOW: Duration = Duration::from_secs(10);

pub struct JoinInput {
    pub token_secret: String,
    pub node_id: u64,
    pub name: String,
    pub role: String,
    pub grpc_addr: String,
    pub http_addr: String,
    pub inventory_json: String,
    pub csr_pem: String,
    pub verification_code: String,
    /// The node's `BenchSummary` as JSON; empty when it measured nothing.
    pub bench_json: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinStatus {
    Pending,
    Approved,
    Rejected,
}

impl JoinStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            JoinStatus::Pending => "pending",
            JoinStatus::Approved => "approved",
            JoinStatus::Rejected => "rejected",
        }
    }
}

pub struct JoinDecision {
    pub status: JoinStatus,
    pub message: String,
    pub cert_pem: String,
    pub ca_pem: String,
    pub ca_key_pem: String,
    pub coordinators: Vec<String>,
}

#[derive(Default)]
pub struct RateLimiter {
    hits: Mutex<HashMap<IpAddr, Vec<Instant>>>,
}

impl RateLimiter {
    fn allow(&self, ip: IpAddr) -> bool {
        let Ok(mut hits) = self.hits.lock() else {
            return true;
        };
        let now = Instant::now();
        if hits.len() > 10_000 {
            hits.retain(|_, v| v.iter().any(|t| now.duration_since(*t) < RATE_WINDOW));
        }
        let v = hits.entry(ip).or_default();
        v.retain(|t| now.duration_since(*t) < RATE_WINDOW);
        if v.len() >= RATE_LIMIT {
            return false;
        }
        v.push(now);
        true
    }
}

/// A node's benchmark summary as sent in JSON (`field` names it in errors): at most
/// [`super::bench::MAX_BENCH_JSON`] bytes, every figure a finite number ≥ 0.
pub(super) fn parse_bench(field: &str, json: &str) -> Result<BenchSummary, ApiError> {
    if json.len() > super::bench::MAX_BENCH_JSON {
        return Err(ApiError::invalid(
            field,
            format!("must be at most {} bytes", super::bench::MAX_BENCH_JSON),
        ));
    }
    let bench: BenchSummary = serde_json::from_str(json)
        .map_err(|e| ApiError::invalid(field, format!("is not a benchmark summary: {e}")))?;
    bench.check().map_err(|e| ApiError::invalid(field, e))?;
    Ok(bench)
}

/// A join request that passed validation.
struct Valid {
    role: NodeRole,
    inventory: Inventory,
    bench: Option<BenchSummary>,
    /// The public key of its (verified) CSR.
    key: Vec<u8>,
}

fn validate(input: &JoinInput) -> Result<Valid, ApiError> {
    if input.node_id == 0 || input.node_id >= (1 << 53) {
        return Err(ApiError::invalid("node_id", "must be between 1 and 2^53-1"));
    }
    let name_ok = !input.name.is_empty()
        && input.name.len() <= 63
        && input
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !name_ok {
        return Err(ApiError::invalid(
            "name",
            "must be 1 to 63 characters of letters, digits, '-', '_', '.'",
        ));
    }
    let role = crate::convert::parse_role(&input.role).ok_or_else(|| {
        ApiError::invalid(
            "role",
            format!("must be coordinator or worker, got {:?}", input.role),
        )
    })?;
    for (field, addr) in [("grpc_addr", &input.grpc_addr), ("http_addr", &input.http_addr)] {
        // Workers do not serve gRPC (yet): they may leave grpc_addr empty.
        let optional = field == "grpc_addr" && role == NodeRole::Worker;
        if !(optional && addr.is_empty()) && addr.parse::<std::net::SocketAddr>().is_err() {
            return Err(ApiError::invalid(field, format!("must be IP:PORT, got {addr:?}")));
        }
    }
    if input.csr_pem.is_empty() || input.csr_pem.len() > MAX_CSR {
        return Err(ApiError::invalid(
            "csr_pem",
            format!("must be a PEM certificate request of at most {MAX_CSR} bytes"),
        ));
    }
    let key = cortex_cluster::pki::csr_public_key(&input.csr_pem)
        .map_err(|e| ApiError::invalid("csr_pem", e.to_string()))?;
    if input.inventory_json.len() > MAX_INVENTORY {
        return Err(ApiError::invalid(
            "inventory_json",
            format!("must be at most {MAX_INVENTORY} bytes"),
        ));
    }
    let inventory: Inventory = serde_json::from_str(&input.inventory_json)
        .map_err(|e| ApiError::invalid("inventory_json", format!("is not a valid inventory: {e}")))?;
    let code_ok = (4..=16).contains(&input.verification_code.len())
        && input
            .verification_code
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-');
    if !code_ok {
        return Err(ApiError::invalid(
            "verification_code",
            "must be 4 to 16 letters, digits or '-'",
        ));
    }
    // The approver trusts this code to match the machine's console: it must be the one the
    // key in csr_pem gives, not whatever the request claims.
    if input.verification_code != cortex_cluster::pki::verification_code(&key) {
        return Err(ApiError::invalid(
            "verification_code",
            "does not match the public key in csr_pem",
        ));
    }
    let bench = match input.bench_json.as_str() {
        "" => None,
        json => Some(parse_bench("bench_json", json)?),
    };
    Ok(Valid {
        role,
        inventory,
        bench,
        key,
    })
}

/// Whether `csr_pem` is `node` asking again rather than a new request. The same text is a poll
/// from the same process. A node that was approved but stopped before it collected its
/// certificate asks again from its saved key with a freshly signed request (different text, same
/// key): that too is the same request, or it could never collect what it was granted (a rejected
/// one hears its rejection again). A pending node's new request is not: it refreshes the record
/// (inventory, code).
fn same_request(node: &NodeRecord, csr_pem: &str, key: &[u8]) -> bool {
    let Some(join) = node.join.as_ref() else {
        return false;
    };
    join.csr_pem == csr_pem
        || (node.state != NodeState::Pending
            && cortex_cluster::pki::csr_public_key(&join.csr_pem).is_ok_and(|k| k == key))
}

/// How long a coordinator that does not lead waits for an unknown join token to reach its state.
const TOKEN_CATCH_UP: Duration = Duration::from_secs(2);

impl NodeApi {
    /// The join token with this digest. A token created a moment ago through another
    /// coordinator is committed by the leader before this node applies it (a follower learns of
    /// the commit with the leader's next message): so a node that does not lead, finding the
    /// token unknown, watches its applied state for up to `TOKEN_CATCH_UP` before refusing.
    async fn find_join_token(&self, digest: &str) -> Result<TokenRecord, TokenRejection> {
        let deadline = tokio::time::Instant::now() + TOKEN_CATCH_UP;
        let mut applied = self.inner.sm.subscribe();
        let lookup = || self.inner.sm.state().join_token(digest, now_ms()).cloned();
        loop {
            match lookup() {
                Err(TokenRejection::Unknown)
                    if self.leader().0 != Some(self.inner.node_id)
                        && tokio::time::Instant::now() < deadline =>
                {
                    if !matches!(
                        tokio::time::timeout_at(deadline, applied.changed()).await,
                        Ok(Ok(()))
                    ) {
                        // One last look at the deadline (or a closing node), then the answer stands.
                        return lookup();
                    }
                }
                other => return other,
            }
        }
    }

    /// `peer` is the verified mTLS identity of the caller, if it presented a node certificate:
    /// the CA key goes only to an approved coordinator proving it holds its own key.
    pub async fn join(
        &self,
        input: JoinInput,
        source: Option<IpAddr>,
        peer: Option<(u64, String)>,
    ) -> Result<JoinDecision, ApiError> {
        if let Some(ip) = source {
            if !self.inner.join_limiter.allow(ip) {
                return Err(ApiError::Unavailable(format!(
                    "too many join requests from {ip}; wait {} s",
                    RATE_WINDOW.as_secs()
                )));
            }
        }
        let Valid {
            role,
            inventory,
            bench,
            key,
        } = validate(&input)?;
        let digest = sha256_hex(input.token_secret.trim());
        let existing = self.inner.sm.state().nodes.get(&input.node_id).cloned();
        let same_request = existing
            .as_ref()
            .is_some_and(|n| same_request(n, &input.csr_pem, &key));
        let original_token = existing
            .as_ref()
            .and_then(|n| n.join.as_ref())
            .and_then(|j| j.token_id.clone());
        // A pending node's poll that brings figures the record lacks (measured while its first
        // request was on its way) refreshes the record; any other poll changes nothing.
        let new_figures = same_request
            && bench.is_some()
            && existing
                .as_ref()
                .is_some_and(|n| n.state == NodeState::Pending && n.bench != bench);
        let token = if !same_request && !input.token_secret.trim().is_empty() {
            match self.find_join_token(&digest).await {
                Ok(t) => Some(t),
                Err(e) => return Err(ApiError::Unauthenticated(format!("join refused: {e}"))),
            }
        } else {
            let state = self.inner.sm.state();
            if same_request {
                // Polling about an earlier request: the same token must be presented, but it
                // may since have been used up or expired.
                let presented = state
                    .tokens
                    .values()
                    .find(|t| t.sha256 == digest)
                    .map(|t| t.id.clone());
                if presented != original_token {
                    return Err(ApiError::Unauthenticated(
                        "join refused: present the join token this node first joined with".into(),
                    ));
                }
                None
            } else {
                // Joining without a token (found by mDNS): allowed, but only ever to PENDING;
                // a person matches the verification code to the machine before approving.
                None
            }
        };
        // Polling about an unchanged request changes nothing: answer from the state.
        let node = match existing.filter(|_| same_request && !new_figures) {
            Some(n) => n,
            None => {
                let join = JoinInfo {
                    csr_pem: input.csr_pem.clone(),
                    verification_code: input.verification_code.clone(),
                    token_id: match &token {
                        Some(t) => Some(t.id.clone()),
                        None if same_request => original_token.clone(),
                        None => None,
                    },
                    reject_reason: None,
                };
                let registration = NodeRegistration {
                    id: input.node_id,
                    name: input.name.clone(),
                    role,
                    grpc_addr: input.grpc_addr.clone(),
                    http_addr: input.http_addr.clone(),
                    inventory,
                };
                match self
                    .write(Command::RequestJoin {
                        node: Box::new(registration),
                        join,
                        bench,
                        at_ms: now_ms(),
                    })
                    .await?
                {
                    Outcome::Node { node } => *node,
                    other => return Err(ApiError::Internal(format!("unexpected outcome {other:?}"))),
                }
            }
        };
        let node = if node.state == NodeState::Pending && token.as_ref().is_some_and(|t| t.auto_approve) {
            tracing::info!(node = %node.name, "auto-approving: the join token was created with --auto-approve");
            self.approve_pending(&node).await?
        } else {
            node
        };
        let proven = peer.is_some_and(|(id, role)| id == node.id && role == "coordinator");
        Ok(self.decision(&node, proven))
    }

    fn decision(&self, node: &NodeRecord, proven_coordinator: bool) -> JoinDecision {
        let mut d = JoinDecision {
            status: JoinStatus::Pending,
            message: String::new(),
            cert_pem: String::new(),
            ca_pem: String::new(),
            ca_key_pem: String::new(),
            coordinators: self.coordinator_addrs(),
        };
        match node.state {
            NodeState::Pending => {
                d.message = format!(
                    "waiting for approval: on a coordinator run `cortex node approve {}` (verification code {})",
                    node.id,
                    node.join.as_ref().map(|j| j.verification_code.as_str()).unwrap_or("-")
                );
            }
            NodeState::Rejected => {
                d.status = JoinStatus::Rejected;
                d.message = node
                    .join
                    .as_ref()
                    .and_then(|j| j.reject_reason.clone())
                    .unwrap_or_else(|| "rejected".into());
            }
            _ => {
                d.status = JoinStatus::Approved;
                d.message = format!("approved as {}", node.role.as_str());
                d.cert_pem = node.cert_pem.clone().unwrap_or_default();
                d.ca_pem = self.inner.ca.cert_pem.clone();
                if node.role == NodeRole::Coordinator && proven_coordinator {
                    d.ca_key_pem = self.inner.ca.key_pem().to_string();
                }
            }
        }
        d
    }
}
