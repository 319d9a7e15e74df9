//! `cortex mcp`: MCP over stdio for clients that spawn a process (Claude Code's
//! `claude mcp add cortex -- cortex mcp --server coord:7071 --token-file ~/.cortex/token`).
//! A bridge to a coordinator's gRPC API, so writes work from any machine; stdout carries only
//! the protocol, logs go to stderr (`CORTEX_LOG`, default warn).

use crate::client::ClientArgs;
use crate::mcp::CortexMcp;

#[derive(Debug, clap::Args)]
pub struct McpArgs {
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn run(args: McpArgs) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CORTEX_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
    crate::mcp::serve_stdio(CortexMcp::remote(args.client)).await
}
