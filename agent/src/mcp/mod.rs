//! MCP (Model Context Protocol): the cluster as typed tools and resources for an AI assistant.
//!
//! Two transports, one server (`server.rs`, rmcp's `ServerHandler`):
//! - streamable HTTP at `/mcp` on every coordinator's HTTP listener (`http.rs`), over the
//!   coordinator's own `NodeApi`, the caller taken from each request's bearer token;
//! - stdio, `cortex mcp` (`cli/mcp.rs`), a bridge to any coordinator's gRPC API for clients
//!   that spawn a process.
//!
//! `backend.rs` is where the two differ; the tools (`tools.rs` table and dispatch,
//! `node_tools.rs`, `task_tools.rs`) exist once and only adapt `NodeApi` operations: their
//! arguments (`args.rs`, checked against `schema.rs`), compact results (`view.rs`), waits with
//! progress (`wait.rs`) and errors a model can act on (`error.rs`).

mod args;
mod backend;
mod error;
pub mod http;
mod node_tools;
mod resources;
mod schema;
mod server;
mod task_tools;
mod tools;
mod view;
mod wait;

pub use server::CortexMcp;

/// What the server tells a model about using it well (`instructions` at initialize).
pub const INSTRUCTIONS: &str = "\
Cortex runs commands on a cluster of approved machines (nodes).
- Look first: cluster_status, then list_nodes (CPUs, memory, GPUs, measured GFLOP/s, labels).
- Run a command with submit_task. `command` is an argv array, not a shell line: use \
[\"sh\", \"-c\", \"...\"] for pipes, globs and &&. For anything expected to finish within a few \
minutes pass wait_seconds (e.g. 120): the answer then holds the exit code and the end of the \
output. For longer work submit without waiting, then check get_task and read the output with \
task_logs (tail=4096 for the end; offset=next_offset to page, eof tells when it is all read).
- The same command on every machine: run_on_all_nodes. Several dependent steps: submit_workflow \
(depends_on names other tasks of the workflow; a failure cancels the dependents).
- Tasks get a private network with only loopback unless network=\"host\", a scratch working \
directory, and nothing they write survives them. exec tasks run as an unprivileged user (the \
node's default, usually nobody): they cannot read other users' files or change the machine; \
set user only when the work needs a particular account. Ask for cpu / memory_mb when a task \
needs them: unset, a task reserves 0.1 core and 64 MiB and is not limited.
- Node-to-node network throughput: run_network_benchmark measures between the coordinator \
serving the call and one node (the coordinator is the measuring end; pass wait_seconds for the \
figures).
- Ask the user before approve_node (compare the verification code), reject_node, drain_node or \
cancel_task. Write tools need a token with scope operate; a read token lists only read tools.
- Errors say what to fix; an unknown node or task id comes with the closest matches.";

/// Serves MCP on stdin/stdout until the client closes them (`cortex mcp`).
pub async fn serve_stdio(server: CortexMcp) -> anyhow::Result<()> {
    use rmcp::ServiceExt;
    let running = server
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| anyhow::anyhow!("MCP over stdio: the client's handshake failed: {e}"))?;
    running
        .waiting()
        .await
        .map_err(|e| anyhow::anyhow!("MCP over stdio: {e}"))?;
    Ok(())
}
