//! The peer side of `cortex bench net --peer <node>`: a node asked to be the peer of a network
//! throughput run (`RequestNetBench`, seen in its heartbeat answer) opens a one-time TCP
//! listener on its cluster address, publishes where (`NetBenchListening`), serves one run to
//! the connection that presents the secret whose SHA-256 the request carries, and publishes
//! the report (`SetNetBench`, which clears the request). Every step is bounded: the accept
//! window, both directions and the grace periods ([`cortex_bench::net::peer_bound`]).

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant};

use cortex_bench::net::{NetReport, RunInfo, Tallies};
use cortex_model::node::NetBenchRequest;
use cortex_model::NodeId;
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::api::{now_ms, NetPublished};
use crate::worker::Link;

/// The address this node is reached at by the cluster: `own` when it is a concrete IP, else
/// the source address the kernel would use toward the first coordinator that resolves (a UDP
/// "connect" sends nothing), else loopback.
pub fn cluster_ip(own: Option<IpAddr>, toward: &[String]) -> IpAddr {
    if let Some(ip) = own.filter(|ip| !ip.is_unspecified()) {
        return ip;
    }
    for addr in toward {
        let Some(target) = addr.to_socket_addrs().ok().and_then(|mut a| a.next()) else {
            continue;
        };
        let any: SocketAddr = match target {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        if let Some(ip) = UdpSocket::bind(any)
            .and_then(|s| s.connect(target).and_then(|()| s.local_addr()))
            .ok()
            .map(|a| a.ip())
        {
            return ip;
        }
    }
    IpAddr::V4(Ipv4Addr::LOCALHOST)
}

/// Background task of every node: serves each network run it is asked to be the peer of,
/// one at a time, each once.
pub async fn serve_requests(
    link: Link,
    node_id: NodeId,
    ip: IpAddr,
    mut requests: watch::Receiver<Option<NetBenchRequest>>,
    shutdown: CancellationToken,
) {
    let mut last_run = None;
    loop {
        let request = requests.borrow_and_update().clone();
        if let Some(req) = request.filter(|r| Some(r.requested_at_ms) != last_run) {
            last_run = Some(req.requested_at_ms);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                () = run_one(&link, node_id, ip, &req) => {}
            }
            continue;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = requests.changed() => if r.is_err() { return },
        }
    }
}

/// Retries `p` for up to `within` (the cluster may be electing); `Err` with the last error.
async fn publish(link: &Link, node_id: NodeId, p: &NetPublished, within: Duration) -> Result<(), String> {
    let until = Instant::now() + within;
    let mut backoff = Duration::from_millis(200);
    loop {
        match link.publish_net_bench(node_id, p).await {
            Ok(()) => return Ok(()),
            // The request was answered, replaced or expired: nothing to retry.
            Err(e) if e.contains("no pending network benchmark") => return Err(e),
            Err(e) if Instant::now() + backoff > until => return Err(e),
            Err(e) => tracing::debug!("publishing a network benchmark answer (retrying): {e}"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn run_one(link: &Link, node_id: NodeId, ip: IpAddr, req: &NetBenchRequest) {
    // Not while the self-benchmark loads the machine (nor it while this runs).
    let _one_at_a_time = crate::selfbench::exclusive().await;
    let started_at_ms = now_ms();
    let started = Instant::now();
    tracing::info!(
        seconds = req.seconds,
        from = req.from.as_deref().unwrap_or("-"),
        "network benchmark: listening for the asking side"
    );
    let mut addr = String::new();
    let measured = listen_and_serve(link, node_id, ip, req, &mut addr).await;
    if let Err(e) = &measured {
        tracing::warn!("network benchmark failed: {e}");
    }
    let report = NetReport::new(
        RunInfo {
            from: req.from.clone(),
            addr,
            seconds: req.seconds,
            started_at_ms,
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        },
        measured,
    );
    tracing::info!("{}", report.summary_line());
    let answer = NetPublished::Report {
        answers: req.requested_at_ms,
        report: Box::new(report),
    };
    if let Err(e) = publish(link, node_id, &answer, Duration::from_secs(60)).await {
        tracing::warn!("could not record the network benchmark: {e}");
    }
}

async fn listen_and_serve(
    link: &Link,
    node_id: NodeId,
    ip: IpAddr,
    req: &NetBenchRequest,
    addr_out: &mut String,
) -> Result<Tallies, String> {
    let window = cortex_bench::net::window(req.seconds)?;
    let listener = std::net::TcpListener::bind((ip, 0))
        .map_err(|e| format!("cannot listen on {ip} for the run: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("the listener's address: {e}"))?
        .to_string();
    *addr_out = addr.clone();
    let listening = NetPublished::Listening {
        answers: req.requested_at_ms,
        addr,
    };
    publish(link, node_id, &listening, Duration::from_secs(10))
        .await
        .map_err(|e| format!("could not tell the cluster where this node listens: {e}"))?;
    let digest = req.secret_sha256.clone();
    tokio::task::spawn_blocking(move || {
        let check = |secret: &[u8]| hex::encode(Sha256::digest(secret)) == digest;
        cortex_bench::net::serve(listener, cortex_bench::net::ACCEPT_WITHIN, &check, &window)
    })
    .await
    .map_err(|e| format!("the benchmark thread failed: {e}"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cluster_ip_is_concrete() {
        let own: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(cluster_ip(Some(own), &[]), own);
        assert_eq!(
            cluster_ip(
                Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
                &["127.0.0.1:7071".into()]
            ),
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        );
        assert_eq!(
            cluster_ip(None, &["no port here".into()]),
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        );
    }
}
