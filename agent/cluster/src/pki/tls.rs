//! TLS configurations for tonic built from the cluster PKI.

use std::time::Duration;

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig};

use super::{NodeCredentials, CLUSTER_DNS_NAME};

/// Server side: present the node's chain (leaf + CA, so joiners can pin the CA), verify client
/// certificates against the CA when one is presented. A client without a certificate (the
/// CLI, a joining node) still connects; services that need a node identity check for one.
pub fn server_tls(creds: &NodeCredentials) -> ServerTlsConfig {
    ServerTlsConfig::new()
        .identity(Identity::from_pem(creds.chain_pem(), &creds.key_pem))
        .client_ca_root(Certificate::from_pem(&creds.ca_pem))
        .client_auth_optional(true)
}

/// Client side: trust only the cluster CA; present the node identity when there is one.
pub fn client_tls(ca_pem: &str, identity: Option<&NodeCredentials>) -> ClientTlsConfig {
    let mut cfg = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name(CLUSTER_DNS_NAME);
    if let Some(creds) = identity {
        cfg = cfg.identity(Identity::from_pem(&creds.cert_pem, &creds.key_pem));
    }
    cfg
}

/// A lazily connecting TLS channel to `addr` (`IP:PORT` or `host:PORT`).
pub fn lazy_channel(
    addr: &str,
    tls: &ClientTlsConfig,
    connect_timeout: Duration,
) -> Result<Channel, tonic::transport::Error> {
    Ok(Endpoint::from_shared(format!("https://{addr}"))?
        .tls_config(tls.clone())?
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .connect_lazy())
}
