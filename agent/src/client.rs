//! The CLI's gRPC client: finding the server, attaching the bearer token, and turning gRPC
//! failures into messages a person can act on.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use cortex_cluster::h2_channel::{H2Channel, Target};
use cortex_proto::v1::cortex_client::CortexClient;

/// No Cortex node answered. Maps to exit code 69.
#[derive(Debug, thiserror::Error)]
#[error("no Cortex node is answering at {addr} ({reason}). Start one with `cortex up`, or point --server / CORTEX_SERVER at a running node")]
pub struct Unavailable {
    pub addr: String,
    pub reason: String,
}

/// Connection settings shared by every client command.
#[derive(Debug, Clone, clap::Args)]
pub struct ClientArgs {
    /// gRPC address of any Cortex node.
    #[arg(
        long,
        env = "CORTEX_SERVER",
        default_value = "127.0.0.1:7071",
        value_name = "ADDR"
    )]
    pub server: String,
    /// Bearer token for writes (prefer --token-file: a flag shows up in `ps`).
    #[arg(long, env = "CORTEX_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    pub token: Option<String>,
    /// File holding the bearer token (default: <default data dir>/admin.token if readable).
    #[arg(long, env = "CORTEX_TOKEN_FILE", value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// The cluster CA certificate to verify the server with (default: <default data dir>/ca.crt).
    #[arg(long, env = "CORTEX_CA_FILE", value_name = "PATH")]
    pub ca_file: Option<PathBuf>,
}

#[derive(Clone)]
pub struct Client {
    /// One HTTP/2 connection (see `cortex_cluster::h2_channel` for why not tonic's `Channel`).
    pub grpc: CortexClient<H2Channel>,
    addr: String,
    token: Option<String>,
}

impl Client {
    /// Connects over TLS, trusting only the cluster CA. A quick TCP probe first, so "nothing
    /// is running there" is reported as such rather than as a TLS or CA problem.
    pub async fn connect(args: &ClientArgs) -> anyhow::Result<Client> {
        let addr = args
            .server
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .to_string();
        let probe = tokio::time::timeout(Duration::from_secs(3), tokio::net::TcpStream::connect(&addr)).await;
        match probe {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                return Err(Unavailable {
                    addr,
                    reason: e.to_string(),
                }
                .into())
            }
            Err(_) => {
                return Err(Unavailable {
                    addr,
                    reason: "connection timed out".into(),
                }
                .into())
            }
        }
        let ca = load_ca(args)?;
        let channel = H2Channel::connect(&Target {
            addr: &addr,
            ca_pem: &ca,
            identity: None,
            connect_timeout: Duration::from_secs(3),
            call_timeout: Some(Duration::from_secs(30)),
        })
        .await
        .map_err(|e| anyhow::anyhow!("{e} (is --ca-file the CA of the cluster this node belongs to?)"))?;
        Ok(Client {
            grpc: CortexClient::new(channel),
            addr,
            token: load_token(args)?,
        })
    }

    /// Wraps a message in a request carrying the bearer token, if there is one.
    pub fn request<T>(&self, msg: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        if let Some(token) = &self.token {
            if let Ok(v) = format!("Bearer {token}").parse() {
                req.metadata_mut().insert("authorization", v);
            }
        }
        req
    }

    /// Turns a gRPC status into an error for the user.
    pub fn error(&self, status: tonic::Status) -> anyhow::Error {
        use tonic::Code;
        match status.code() {
            Code::Unavailable if status.message().contains("transport") || status.message().is_empty() => {
                Unavailable {
                    addr: self.addr.clone(),
                    reason: status.message().to_string(),
                }
                .into()
            }
            Code::Unauthenticated => anyhow::anyhow!("not authenticated: {}", status.message()),
            Code::PermissionDenied => anyhow::anyhow!("permission denied: {}", status.message()),
            _ => anyhow::anyhow!("{}", status.message()),
        }
    }
}

fn load_token(args: &ClientArgs) -> anyhow::Result<Option<String>> {
    if let Some(t) = &args.token {
        return Ok(Some(t.trim().to_string()));
    }
    if let Some(path) = &args.token_file {
        let t = read_token_file(path).with_context(|| format!("reading token file {}", path.display()))?;
        return Ok(Some(t));
    }
    // Convenience for the single-node trial: the bootstrap admin token of the default data dir.
    let default = crate::config::default_data_dir().join("admin.token");
    Ok(read_token_file(&default).ok())
}

fn load_ca(args: &ClientArgs) -> anyhow::Result<String> {
    if let Some(path) = &args.ca_file {
        return std::fs::read_to_string(path)
            .with_context(|| format!("reading the CA certificate {}", path.display()));
    }
    let default = crate::config::default_data_dir().join("ca.crt");
    std::fs::read_to_string(&default).map_err(|_| {
        anyhow::anyhow!(
            "cannot verify the server without the cluster CA certificate: pass --ca-file \
             (it is <data dir>/ca.crt on any coordinator) or set CORTEX_CA_FILE"
        )
    })
}

fn read_token_file(path: &Path) -> std::io::Result<String> {
    Ok(std::fs::read_to_string(path)?.trim().to_string())
}
