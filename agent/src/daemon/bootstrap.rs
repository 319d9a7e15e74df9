//! First start and every restart: initialise the one-voter Raft group if this data dir has
//! none, wait for leadership, record the cluster id, make sure an admin token exists, and
//! (re-)register this node with its current inventory.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use cortex_model::command::Command;
use cortex_model::inventory::Inventory;
use cortex_model::node::{NodeRegistration, NodeRole};
use cortex_model::token::{Scope, TokenRecord};
use openraft::BasicNode;

use super::data_dir::DataDirs;
use super::identity::Identity;
use crate::api::{generate_token, now_ms, sha256_hex, NodeApi};

pub struct Registration {
    pub node_name: String,
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub inventory: Inventory,
    pub ca_cert_pem: String,
}

pub struct Booted {
    pub cluster_id: String,
    /// True when this start created the cluster.
    pub created: bool,
}

pub async fn run(
    joined: bool,
    api: &NodeApi,
    identity: &Identity,
    reg: Registration,
    dirs: &DataDirs,
    timeout: Duration,
) -> anyhow::Result<Booted> {
    let raft = api.raft();
    if joined {
        // The leader adds this node to the membership; until then it has no leader to wait for.
        return Ok(Booted {
            cluster_id: api.status().await.cluster_id,
            created: false,
        });
    }
    let created = !raft.is_initialized().await.context("reading the Raft state")?;
    if !created {
        // Reopening: the other voters may not be up yet, so do not block on a leader. Serve at
        // once and refresh this node's record in the background when a leader appears.
        let cluster_id = match api.status().await.cluster_id {
            id if id.is_empty() => identity.cluster_id.clone(),
            id => id,
        };
        let (api, token_path, node_id) = (api.clone(), dirs.admin_token.clone(), identity.node_id);
        tokio::spawn(async move {
            loop {
                let leader = api
                    .raft()
                    .wait(Some(Duration::from_secs(3600)))
                    .metrics(|m| m.current_leader.is_some(), "a leader")
                    .await;
                if leader.is_ok() {
                    let done = async {
                        ensure_admin_token(&api, &token_path).await?;
                        register(&api, node_id, &reg).await
                    };
                    match done.await {
                        Ok(()) => return,
                        Err(e) => tracing::warn!("re-registering this node failed (will retry): {e:#}"),
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        return Ok(Booted {
            cluster_id,
            created: false,
        });
    }
    let members = BTreeMap::from([(identity.node_id, BasicNode::new(reg.grpc_addr.to_string()))]);
    raft.initialize(members)
        .await
        .context("initialising the one-voter Raft group")?;
    tracing::info!(node_id = identity.node_id, "initialised a new one-voter cluster");
    raft.wait(Some(timeout))
        .metrics(|m| m.current_leader.is_some(), "a leader is elected")
        .await
        .context("waiting for a Raft leader")?;
    api.write(Command::InitCluster {
        cluster_id: identity.cluster_id.clone(),
        ca_cert_pem: reg.ca_cert_pem.clone(),
        at_ms: now_ms(),
    })
    .await?;
    ensure_admin_token(api, &dirs.admin_token).await?;
    register(api, identity.node_id, &reg).await?;
    Ok(Booted {
        cluster_id: identity.cluster_id.clone(),
        created: true,
    })
}

/// Records (or refreshes) this coordinator's node record with its current inventory.
async fn register(api: &NodeApi, node_id: u64, reg: &Registration) -> anyhow::Result<()> {
    api.write(Command::RegisterNode {
        node: Box::new(NodeRegistration {
            id: node_id,
            name: reg.node_name.clone(),
            role: NodeRole::Coordinator,
            grpc_addr: reg.grpc_addr.to_string(),
            http_addr: reg.http_addr.to_string(),
            inventory: reg.inventory.clone(),
        }),
        at_ms: now_ms(),
    })
    .await?;
    Ok(())
}

/// Keeps the admin token in `<data dir>/admin.token` valid: if the file is missing, or holds a
/// token the cluster does not accept as admin, a new one is minted and the file replaced.
async fn ensure_admin_token(api: &NodeApi, path: &Path) -> anyhow::Result<()> {
    if let Ok(existing) = std::fs::read_to_string(path) {
        if api.authorize(Some(existing.trim()), Scope::Admin).is_ok() {
            return Ok(());
        }
        tracing::warn!(path = %path.display(), "the admin token file is not valid for this cluster; minting a new one");
    }
    let token = generate_token();
    let now = now_ms();
    api.write(Command::CreateToken {
        token: TokenRecord {
            id: token.id.clone(),
            name: "bootstrap-admin".into(),
            scope: Scope::Admin,
            sha256: token.sha256.clone(),
            created_at_ms: now,
            expires_at_ms: None,
            revoked: false,
            kind: cortex_model::token::TokenKind::Api,
            uses_left: None,
            auto_approve: false,
        },
    })
    .await?;
    debug_assert_eq!(sha256_hex(&token.secret), token.sha256);
    write_secret(path, &token.secret)
        .with_context(|| format!("writing the admin token to {}", path.display()))?;
    tracing::info!(token_id = %token.id, path = %path.display(), "minted the bootstrap admin token");
    Ok(())
}

/// Writes a secret file with mode 0600, atomically (temp file + fsync + rename).
fn write_secret(path: &Path, secret: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(secret.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// A node name from a hostname: allowed characters only, at most 63, never empty.
pub fn name_from_hostname(host: &str) -> String {
    let cleaned: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    if cleaned.is_empty() {
        "node".into()
    } else {
        cleaned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames_become_valid_names() {
        assert_eq!(name_from_hostname("alpha.lan"), "alpha.lan");
        assert_eq!(name_from_hostname("my host"), "my-host");
        assert_eq!(name_from_hostname(""), "node");
        assert_eq!(name_from_hostname(&"x".repeat(100)).len(), 63);
    }
}
