//! Asking to join and waiting for the answer.

use std::time::Duration;

use anyhow::Context;
use cortex_cluster::pki::{
    csr_for_key, fetch_pinned_ca, load_node_key, new_key_and_csr, save_node_credentials, save_node_key,
    ClusterCa, NodeCredentials, NodeFiles, PkiError,
};
use cortex_model::inventory::Inventory;
use cortex_model::node::BenchSummary;
use cortex_proto::v1::cortex_client::CortexClient;
use cortex_proto::v1::JoinRequest;

use crate::api::JoinToken;
use crate::config::{Config, Role};

pub struct Request<'a> {
    pub config: &'a Config,
    pub node_id: u64,
    pub node_name: String,
    pub inventory: Inventory,
    /// The quick benchmark's summary once measured (it runs beside the first requests: the node
    /// is PENDING at once, and the next poll after the measurement carries its figures).
    pub bench: tokio::sync::watch::Receiver<Option<BenchSummary>>,
    pub files: &'a NodeFiles,
}

/// Why joining stopped for good (no retry helps).
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("this node was rejected by the cluster: {0}")]
    Rejected(String),
    #[error("{0}")]
    Refused(String),
}

pub async fn until_approved(r: Request<'_>) -> anyhow::Result<NodeCredentials> {
    // With a token: its CA pin and addresses. Without one: a coordinator found by mDNS, whose
    // advertised CA fingerprint is pinned and shown so a person can check it.
    let (pin, secret, addrs) = match r.config.token.as_deref() {
        Some(text) => {
            let token =
                JoinToken::parse(text).map_err(|e| anyhow::anyhow!("the join token is not valid: {e}"))?;
            let addrs = if r.config.join.is_empty() {
                token.addrs.clone()
            } else {
                r.config.join.clone()
            };
            (token.ca_fingerprint, token.secret, addrs)
        }
        None => {
            if !r.config.join.is_empty() {
                anyhow::bail!(
                    "`join` is set but there is no join token: the token carries the CA pin that makes joining safe \
                     (create one with `cortex token create`); without both, the node looks for coordinators by mDNS"
                );
            }
            eprintln!("cortex: no join token; looking for a coordinator on the LAN (mDNS _cortex._tcp)…");
            let found = crate::discovery::discover(Duration::from_secs(60)).await?;
            eprintln!(
                "cortex: found coordinator {} of cluster {}; its CA fingerprint is sha256:{}",
                found.addr, found.cluster_id, found.ca_fingerprint
            );
            (found.ca_fingerprint, String::new(), vec![found.addr])
        }
    };

    let key_pem = match load_node_key(r.files)? {
        Some(k) => k,
        None => {
            let (key, _) = new_key_and_csr(r.node_id)?;
            save_node_key(r.files, &key)?;
            key
        }
    };
    let csr_pem = csr_for_key(r.node_id, &key_pem)?;
    let code = cortex_cluster::pki::csr_verification_code(&csr_pem)?;
    let inventory_json = serde_json::to_string(&r.inventory)?;
    let role = r.config.role;
    let (grpc_addr, http_addr) = match role {
        Role::Coordinator => (r.config.grpc_addr.to_string(), r.config.http_addr.to_string()),
        Role::Worker => (String::new(), r.config.http_addr.to_string()),
    };
    eprintln!(
        "cortex: asking to join as {} {} (id {}). Verification code: {code}\n\
         cortex: approve on a coordinator with `cortex node approve {}` after checking the code matches",
        role.as_str(),
        r.node_name,
        r.node_id,
        r.node_id
    );

    let mut backoff = Duration::from_millis(500);
    let mut said_pending = false;
    let mut said_figures = false;
    let mut attempt = 0usize;
    loop {
        let addr = &addrs[attempt % addrs.len()];
        attempt += 1;
        let bench_json = match r.bench.borrow().as_ref() {
            Some(b) => serde_json::to_string(b)?,
            None => String::new(),
        };
        let step = async {
            // The CA is checked against the token's pin inside the TLS handshake, before any
            // request is sent.
            let ca_pem = fetch_pinned_ca(addr, &pin).await?;
            let tls = cortex_cluster::pki::client_tls(&ca_pem, None);
            let channel = cortex_cluster::pki::lazy_channel(addr, &tls, Duration::from_secs(3))?;
            let mut client = CortexClient::new(channel);
            let req = JoinRequest {
                token_secret: secret.clone(),
                node_id: r.node_id,
                name: r.node_name.clone(),
                role: role.as_str().into(),
                grpc_addr: grpc_addr.clone(),
                http_addr: http_addr.clone(),
                inventory_json: inventory_json.clone(),
                csr_pem: csr_pem.clone(),
                verification_code: code.clone(),
                bench_json: bench_json.clone(),
            };
            let resp = client.join(req.clone()).await?.into_inner();
            anyhow::Ok((resp, ca_pem, req))
        };
        let answer = step.await;
        if let Ok((_, _, req)) = &answer {
            if !said_figures && !req.bench_json.is_empty() {
                said_figures = true;
                tracing::info!("the quick benchmark's figures went with the join request");
            }
        }
        match answer {
            Ok((resp, ca_pem, req)) => match resp.status.as_str() {
                "approved" => {
                    let creds = NodeCredentials {
                        key_pem: key_pem.clone(),
                        cert_pem: resp.cert_pem,
                        ca_pem,
                    };
                    save_node_credentials(r.files, &creds)?;
                    super::save_coordinators(&r.config.data_dir, &resp.coordinators);
                    if role == Role::Coordinator {
                        fetch_ca_key(addr, &creds, req, r.files).await?;
                    }
                    tracing::info!(node_id = r.node_id, "approved: {}", resp.message);
                    return Ok(creds);
                }
                "rejected" => return Err(JoinError::Rejected(resp.message).into()),
                _ => {
                    if !said_pending {
                        tracing::info!(coordinator = %addr, code = %code, "{}", resp.message);
                        said_pending = true;
                    }
                    backoff = Duration::from_secs(1);
                }
            },
            Err(e) => {
                if let Some(PkiError::PinMismatch { .. }) = e.downcast_ref::<PkiError>() {
                    return Err(e.context("refusing to join"));
                }
                if let Some(status) = e.downcast_ref::<tonic::Status>() {
                    match status.code() {
                        tonic::Code::Unauthenticated
                        | tonic::Code::InvalidArgument
                        | tonic::Code::PermissionDenied => {
                            return Err(JoinError::Refused(format!(
                                "the coordinator refused: {}",
                                status.message()
                            ))
                            .into());
                        }
                        _ => {}
                    }
                }
                tracing::warn!(coordinator = %addr, "join attempt failed, retrying in {backoff:?}: {e:#}");
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
        tokio::time::sleep(backoff).await;
    }
}

/// An approved coordinator asks again, now over mTLS with its new certificate, and receives
/// the CA key (it will sign approvals when it leads).
async fn fetch_ca_key(
    addr: &str,
    creds: &NodeCredentials,
    req: JoinRequest,
    files: &NodeFiles,
) -> anyhow::Result<()> {
    let tls = cortex_cluster::pki::client_tls(&creds.ca_pem, Some(creds));
    let channel = cortex_cluster::pki::lazy_channel(addr, &tls, Duration::from_secs(3))?;
    let resp = CortexClient::new(channel)
        .join(req)
        .await
        .context("fetching the CA key")?
        .into_inner();
    anyhow::ensure!(
        !resp.ca_key_pem.is_empty(),
        "the coordinator did not hand out the CA key to this coordinator"
    );
    let ca = ClusterCa::from_pem(creds.ca_pem.clone(), resp.ca_key_pem)?;
    files.save_ca(&ca)?;
    Ok(())
}
