//! The cluster's public-key infrastructure: one CA created at bootstrap, a certificate per
//! approved node, and the TLS configurations built from them.
//!
//! Invariants:
//! - a node certificate is built from parameters the CA chooses (node id, the cluster DNS
//!   name, client+server auth); nothing a CSR asks for (SANs, CA flags) is copied;
//! - private keys are written with mode 0600 and never logged;
//! - every node certificate carries the SAN [`CLUSTER_DNS_NAME`], which is what TLS clients
//!   verify (nodes are reached by IP; identity is "signed by this cluster's CA");
//! - a join request's verification code is the one derived from its CSR's public key.

mod ca;
mod code;
mod files;
mod pin;
mod tls;

pub use ca::{
    ca_fingerprint, csr_for_key, csr_public_key, new_key_and_csr, node_identity_from_cert_der, ClusterCa,
    NodeCredentials,
};
pub use code::{csr_verification_code, verification_code};
pub use files::{load_node_credentials, load_node_key, save_node_credentials, save_node_key, NodeFiles};
pub use pin::fetch_pinned_ca;
pub use tls::{client_tls, lazy_channel};

/// The DNS name every node certificate carries and every client checks.
pub const CLUSTER_DNS_NAME: &str = "cortex.cluster";

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("certificate error: {0}")]
    Cert(String),
    #[error("{path}: {detail}")]
    File {
        path: std::path::PathBuf,
        detail: String,
    },
    #[error("the coordinator at {addr} presented CA {actual}, but the join token pins CA {expected}; refusing to send anything")]
    PinMismatch {
        addr: String,
        expected: String,
        actual: String,
    },
    #[error("could not reach {addr} for the TLS handshake: {detail}")]
    Handshake { addr: String, detail: String },
}

impl From<rcgen::Error> for PkiError {
    fn from(e: rcgen::Error) -> Self {
        PkiError::Cert(e.to_string())
    }
}
