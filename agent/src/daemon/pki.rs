//! The coordinator's keys and certificates: the cluster CA is created on the first start of a
//! new cluster; this node's certificate is issued by it. Both live in the data dir.

use std::path::Path;

use cortex_cluster::pki::{
    load_node_credentials, save_node_credentials, ClusterCa, NodeCredentials, NodeFiles,
};

pub struct CoordinatorPki {
    pub creds: NodeCredentials,
    /// The CA with its key: coordinators sign the certificates of approved nodes.
    pub ca: ClusterCa,
}

pub fn load_or_create(dir: &Path, node_id: u64, cluster_id: &str) -> anyhow::Result<CoordinatorPki> {
    let files = NodeFiles::in_dir(dir);
    let ca = match files.load_ca()? {
        Some(ca) => ca,
        None => {
            if files.node_cert.exists() {
                anyhow::bail!(
                    "{} exists but the CA key {} does not: this data dir belongs to a node that joined a cluster, \
                     not to a coordinator that created one",
                    files.node_cert.display(),
                    files.ca_key.display()
                );
            }
            let ca = ClusterCa::create(cluster_id)?;
            files.save_ca(&ca)?;
            tracing::info!(fingerprint = %ca.fingerprint()?, "created the cluster CA");
            ca
        }
    };
    let creds = match load_node_credentials(&files)? {
        Some(c) => c,
        None => {
            let c = ca.issue_node(node_id, "coordinator")?;
            save_node_credentials(&files, &c)?;
            c
        }
    };
    Ok(CoordinatorPki { creds, ca })
}

/// A coordinator that joined: its certificate and the CA key were handed over on approval.
pub fn load_joined(dir: &Path) -> anyhow::Result<CoordinatorPki> {
    let files = NodeFiles::in_dir(dir);
    let ca = files.load_ca()?.ok_or_else(|| {
        anyhow::anyhow!(
            "{} is missing: this coordinator was not handed the CA key on approval",
            files.ca_key.display()
        )
    })?;
    let creds = load_node_credentials(&files)?.ok_or_else(|| {
        anyhow::anyhow!(
            "{} is missing: this node has not been approved",
            files.node_cert.display()
        )
    })?;
    Ok(CoordinatorPki { creds, ca })
}
