//! This node's identity: a random non-zero node id and the cluster id, kept in the store's
//! `local` table so they survive restarts together with the Raft log.

use anyhow::Context;
use cortex_cluster::LogStore;
use rand::Rng;

pub struct Identity {
    pub node_id: u64,
    /// The cluster id this data dir belongs to (chosen before the first Raft entry).
    pub cluster_id: String,
}

pub fn load_or_create(store: &LogStore) -> anyhow::Result<Identity> {
    let node_id = match store.read_local("node_id")? {
        Some(b) => {
            let s = String::from_utf8(b).context("the stored node id is not text")?;
            s.parse::<u64>()
                .with_context(|| format!("the stored node id {s:?} is not a number"))?
        }
        None => {
            // 53 bits keeps ids exact in JSON consumers that use doubles (browsers, jq).
            let id = rand::rng().random_range(1..(1u64 << 53));
            store.write_local("node_id", id.to_string().as_bytes())?;
            id
        }
    };
    let cluster_id = match store.read_local("cluster_id")? {
        Some(b) => String::from_utf8(b).context("the stored cluster id is not text")?,
        None => {
            let id = uuid::Uuid::new_v4().to_string();
            store.write_local("cluster_id", id.as_bytes())?;
            id
        }
    };
    Ok(Identity { node_id, cluster_id })
}
