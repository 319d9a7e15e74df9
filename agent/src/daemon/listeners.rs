//! Binding the listeners before anything else starts, with errors that name the address.

use std::net::SocketAddr;

use tokio::net::TcpListener;

pub async fn bind(grpc: SocketAddr, http: SocketAddr) -> anyhow::Result<(TcpListener, TcpListener)> {
    if grpc == http && grpc.port() != 0 {
        anyhow::bail!("grpc_addr and http_addr are both {grpc}; they need different ports");
    }
    let g = bind_one("gRPC", grpc).await?;
    let h = bind_one("HTTP", http).await?;
    Ok((g, h))
}

async fn bind_one(what: &str, addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        let why = match e.kind() {
            std::io::ErrorKind::AddrInUse => {
                "the address is already in use (is another cortex running?)".to_string()
            }
            std::io::ErrorKind::AddrNotAvailable => "no interface on this host has that address".to_string(),
            std::io::ErrorKind::PermissionDenied => {
                "permission denied (ports below 1024 need root)".to_string()
            }
            _ => e.to_string(),
        };
        anyhow::anyhow!("cannot listen for {what} on {addr}: {why}")
    })
}
