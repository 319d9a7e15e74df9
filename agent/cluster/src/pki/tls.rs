//! TLS configurations for tonic built from the cluster PKI (the client side; the listener's
//! is `h2_server::server_config`).

use std::time::Duration;

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use super::{NodeCredentials, CLUSTER_DNS_NAME};

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
