//! Finding coordinators on the LAN without a join token: coordinators advertise
//! `_cortex._tcp` over mDNS/DNS-SD with their CA fingerprint; a node booted with no
//! `cortex.join` browses for it. What it finds is trusted only as far as a person checks: the
//! node prints the CA fingerprint and its verification code, and its request can only become
//! PENDING (never auto-approved).

use std::net::SocketAddr;
use std::time::Duration;

use mdns_sd::{ServiceDaemon, ServiceEvent, ServiceInfo};

const SERVICE: &str = "_cortex._tcp.local.";

/// A coordinator found on the LAN.
#[derive(Debug, Clone)]
pub struct Found {
    pub addr: String,
    pub ca_fingerprint: String,
    pub cluster_id: String,
}

/// Advertises this coordinator while the returned daemon lives. Skipped (with a log line)
/// for loopback or unspecified addresses, which no other machine could use.
pub fn advertise(
    node_name: &str,
    grpc_addr: SocketAddr,
    ca_fingerprint: &str,
    cluster_id: &str,
) -> Option<ServiceDaemon> {
    let ip = grpc_addr.ip();
    if ip.is_loopback() || ip.is_unspecified() {
        tracing::debug!(%grpc_addr, "not advertising over mDNS: the gRPC address is not reachable from the LAN");
        return None;
    }
    let daemon = match ServiceDaemon::new() {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!("mDNS advertisement unavailable: {e}");
            return None;
        }
    };
    let props = [("ca", ca_fingerprint), ("cluster", cluster_id)];
    let host = format!("{node_name}.local.");
    match ServiceInfo::new(SERVICE, node_name, &host, ip, grpc_addr.port(), &props[..]) {
        Ok(info) => {
            if let Err(e) = daemon.register(info) {
                tracing::warn!("mDNS advertisement failed: {e}");
                return None;
            }
            tracing::info!(%grpc_addr, "advertising this coordinator over mDNS as {SERVICE}");
            Some(daemon)
        }
        Err(e) => {
            tracing::warn!("mDNS advertisement failed: {e}");
            None
        }
    }
}

/// Browses for a coordinator for up to `within`.
pub async fn discover(within: Duration) -> anyhow::Result<Found> {
    tokio::task::spawn_blocking(move || discover_blocking(within)).await?
}

fn discover_blocking(within: Duration) -> anyhow::Result<Found> {
    let daemon = ServiceDaemon::new().map_err(|e| anyhow::anyhow!("mDNS is not available here: {e}"))?;
    let rx = daemon
        .browse(SERVICE)
        .map_err(|e| anyhow::anyhow!("mDNS browse failed: {e}"))?;
    let deadline = std::time::Instant::now() + within;
    let found = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            break None;
        }
        match rx.recv_timeout(left) {
            Ok(ServiceEvent::ServiceResolved(svc)) => {
                let ca = svc.get_property_val_str("ca").unwrap_or_default().to_string();
                let cluster = svc
                    .get_property_val_str("cluster")
                    .unwrap_or_default()
                    .to_string();
                let ip = svc.get_addresses_v4().into_iter().next();
                match ip {
                    Some(ip) if ca.len() == 64 => {
                        break Some(Found {
                            addr: format!("{ip}:{}", svc.get_port()),
                            ca_fingerprint: ca,
                            cluster_id: cluster,
                        })
                    }
                    _ => continue,
                }
            }
            Ok(_) => continue,
            Err(_) => break None,
        }
    };
    let _ = daemon.shutdown();
    found.ok_or_else(|| {
        anyhow::anyhow!(
            "no coordinator answered on mDNS ({SERVICE}) within {} s; pass --join and --token instead",
            within.as_secs()
        )
    })
}
