//! Command-line surface: argument definitions and dispatch.

mod bench;
mod bench_net;
mod bench_publish;
mod events;
mod heartbeats;
mod image;
mod loadgen_executor;
mod loadgen_tasks;
mod mcp;
mod node;
mod output;
mod pxe;
mod run;
mod spec_args;
mod status;
mod task;
mod token;
mod workflow;
mod writes;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::client::ClientArgs;
use crate::config::FlagOverrides;
pub use output::Output;

#[derive(Debug, Parser)]
#[command(
    name = "cortex",
    version,
    about = "Turn spare machines into one approved, self-describing compute cluster."
)]
pub struct Cli {
    /// Output format: human tables or JSON.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Output::Table, env = "CORTEX_OUTPUT")]
    pub output: Output,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a single-node cluster on this host (coordinator + worker) and serve until Ctrl-C.
    Up(UpArgs),
    /// Show the cluster: leader, term, commit index, node counts.
    Status(ClientArgs),
    /// List, show and label nodes.
    Node {
        #[command(subcommand)]
        command: NodeCommand,
    },
    /// Run this machine as a cluster node: join through a coordinator with a join token, wait
    /// for approval, then heartbeat (and, as a coordinator, take part in Raft).
    Agent(UpArgs),
    /// Create, list and revoke API and join tokens.
    Token {
        #[command(subcommand)]
        command: token::TokenCommand,
    },
    /// The cluster's event timeline (joins, approvals, state changes).
    Events {
        /// Only events after this sequence number.
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// At most this many events.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show the effective configuration (all layers merged) without starting anything.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Network boot: serve iPXE, kernel and initrd over TFTP and HTTP (see docs/boot.md).
    Pxe {
        #[command(subcommand)]
        command: pxe::PxeCommand,
    },
    /// Run a command on the cluster: streams its output and exits with its exit code.
    /// `cortex run -- uname -a`, `cortex run --all -- nproc`, `cortex run --nspawn ./rootfs --mem 256M -- sh -c 'echo hi'`.
    Run(Box<run::RunArgs>),
    /// List, show, follow the logs of, and cancel tasks.
    Task {
        #[command(subcommand)]
        command: task::TaskCommand,
    },
    /// Container images of this host's node (for Podman tasks): import a rootfs tarball, list.
    Image {
        #[command(subcommand)]
        command: image::ImageCommand,
    },
    /// Submit and follow workflows: DAGs of tasks from one YAML or JSON file.
    Workflow {
        #[command(subcommand)]
        command: workflow::WorkflowCommand,
    },
    /// Measure this machine: CPU FLOPS, GEMM, memory bandwidth, disk, NICs, GPUs.
    Bench(bench::BenchArgs),
    /// Serve MCP over stdio for AI assistants that spawn a process (Claude Code): a bridge to a
    /// coordinator's API, so every tool works from this machine. See docs/claude-code.md.
    Mcp(mcp::McpArgs),
    /// Load generators for benchmarks (see scripts/bench-foundation.sh).
    #[command(hide = true)]
    Loadgen {
        #[command(subcommand)]
        command: writes::LoadgenCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// List every node the cluster knows.
    List(ClientArgs),
    /// Show one node (by id or name) with its inventory.
    Show {
        /// Node id or name.
        node: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Approve a pending node (its certificate is signed and it becomes READY). Needs scope operate.
    Approve {
        /// Node id or name.
        node: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Reject a pending node; it is told and stops asking. Needs scope operate.
    Reject {
        /// Node id or name.
        node: String,
        /// Why (shown to the node).
        #[arg(long, default_value = "")]
        reason: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Drain a node: it stays in the cluster but gets no new work (until `undrain`, also
    /// across a restart). Needs scope operate.
    Drain {
        /// Node id or name.
        node: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// End a drain: the node takes new work again. Needs scope operate.
    Undrain {
        /// Node id or name.
        node: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Remove a node from the cluster (and from Raft, if it is a member). Needs scope admin.
    Remove {
        /// Node id or name.
        node: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Set labels (`key=value`) and remove labels (`key-`) on a node. Needs scope operate.
    Label {
        /// Node id or name.
        node: String,
        /// `key=value` to set, `key-` to remove.
        #[arg(required = true, value_name = "LABEL")]
        labels: Vec<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the configuration `cortex up` would use with the same flags.
    Show(UpArgs),
}

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// Data directory (Raft store, identity, admin token).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// HTTP listener (health, JSON API).
    #[arg(long, value_name = "IP:PORT")]
    pub http_addr: Option<SocketAddr>,
    /// gRPC listener (API and Raft).
    #[arg(long, value_name = "IP:PORT")]
    pub grpc_addr: Option<SocketAddr>,
    /// Name shown for this node (default: the hostname).
    #[arg(long, value_name = "NAME")]
    pub node_name: Option<String>,
    /// Log filter, e.g. `info` or `info,openraft=warn`.
    #[arg(long, value_name = "FILTER")]
    pub log_level: Option<String>,
    /// An extra config file, applied after /etc/cortex.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// `cortex agent`: coordinator gRPC address(es) to join through (default: those in the token).
    #[arg(long, value_name = "IP:PORT", value_delimiter = ',')]
    pub join: Vec<String>,
    /// `cortex agent`: the join token (`cortex token create`). Prefer config or CORTEX_JOIN_TOKEN:
    /// a flag shows up in `ps`.
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,
    /// `cortex agent`: coordinator (Raft voter) or worker.
    #[arg(long, value_name = "ROLE")]
    pub role: Option<crate::config::Role>,
}

impl UpArgs {
    fn overrides(&self) -> FlagOverrides {
        FlagOverrides {
            data_dir: self.data_dir.clone(),
            http_addr: self.http_addr,
            grpc_addr: self.grpc_addr,
            node_name: self.node_name.clone(),
            log_level: self.log_level.clone(),
            config_file: self.config.clone(),
            join: (!self.join.is_empty()).then(|| self.join.clone()),
            token: self.token.clone(),
            role: self.role,
        }
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let out = cli.output;
    match cli.command {
        Command::Up(args) => {
            if !args.join.is_empty() || args.token.is_some() || args.role.is_some() {
                anyhow::bail!(
                    "`cortex up` creates a cluster; to join one, run `cortex agent --join ADDR --token T`"
                );
            }
            let config = crate::config::load(&crate::config::Sources::system(), &args.overrides())?;
            crate::daemon::up(config, out).await?;
        }
        Command::Config {
            command: ConfigCommand::Show(args),
        } => {
            let config = crate::config::load(&crate::config::Sources::system(), &args.overrides())?;
            let text = config.to_toml();
            if out == Output::Json {
                let value: toml::Value = toml::from_str(&text)?;
                output::print_json(&value)?;
            } else {
                print!("{text}");
            }
        }
        Command::Status(client) => status::run(&client, out).await?,
        Command::Node { command } => match command {
            NodeCommand::List(client) => node::list(&client, out).await?,
            NodeCommand::Show { node, client } => node::show(&client, &node, out).await?,
            NodeCommand::Label { node, labels, client } => node::label(&client, &node, &labels, out).await?,
            NodeCommand::Approve { node, client } => node::approve(&client, &node, out).await?,
            NodeCommand::Drain { node, client } => node::drain(&client, &node, out).await?,
            NodeCommand::Undrain { node, client } => node::undrain(&client, &node, out).await?,
            NodeCommand::Remove { node, client } => node::remove(&client, &node, out).await?,
            NodeCommand::Reject { node, reason, client } => {
                node::reject(&client, &node, &reason, out).await?
            }
        },
        Command::Loadgen { command } => writes::run(command, out).await?,
        Command::Agent(args) => {
            let config = crate::config::load(&crate::config::Sources::system(), &args.overrides())?;
            crate::agent::run(config, out).await?;
        }
        Command::Token { command } => token::run(command, out).await?,
        Command::Events { after, limit, client } => events::run(&client, after, limit, out).await?,
        Command::Pxe { command } => pxe::run(command, out).await?,
        Command::Bench(args) => bench::run(args, out).await?,
        Command::Mcp(args) => mcp::run(args).await?,
        Command::Run(args) => return run::run(*args, out).await,
        Command::Task { command } => task::run(command, out).await?,
        Command::Image { command } => image::run(command, out).await?,
        Command::Workflow { command } => return workflow::run(command, out).await,
    }
    Ok(ExitCode::SUCCESS)
}
