//! `cortex pxe serve`: the network-boot service (TFTP, HTTP boot scripts and artifacts,
//! optional proxyDHCP) on its own listeners. See docs/boot.md.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use serde::Serialize;

use super::Output;

#[derive(Debug, Subcommand)]
pub enum PxeCommand {
    /// Serve boot artifacts to PXE, iPXE and netboot.xyz clients until Ctrl-C.
    Serve(ServeArgs),
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Directory with the boot artifacts (vmlinuz, initrd, UKI; optionally iPXE binaries).
    #[arg(long, value_name = "DIR")]
    pub artifacts: PathBuf,
    /// The coordinator's gRPC address booted machines join (kernel argument `cortex.join=`).
    #[arg(long, value_name = "HOST:PORT")]
    pub join: String,
    /// Join token for booted machines (kernel argument `cortex.token=`).
    #[arg(
        long,
        value_name = "TOKEN",
        conflicts_with = "token_file",
        env = "CORTEX_PXE_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// Read the join token from a file (surrounding whitespace is ignored).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// HTTP listener: boot scripts and artifacts.
    #[arg(long, value_name = "IP:PORT", default_value = cortex_pxe::DEFAULT_HTTP_ADDR)]
    pub http_addr: SocketAddr,
    /// TFTP listener (replies come from this port).
    #[arg(long, value_name = "IP:PORT", default_value = cortex_pxe::DEFAULT_TFTP_ADDR)]
    pub tftp_addr: SocketAddr,
    /// Also answer PXE clients' DHCP (UDP 67 and 4011) with the boot file; never hands out
    /// addresses, so the LAN's own DHCP server keeps doing that.
    #[arg(long)]
    pub proxy_dhcp: bool,
    /// Address clients reach this server at (proxyDHCP's next-server and boot URL). Default: the
    /// listener's address when it is not 0.0.0.0.
    #[arg(long, value_name = "IP")]
    pub advertise: Option<IpAddr>,
    /// Where to find iPXE binaries the artifacts directory lacks.
    #[arg(long, value_name = "DIR", default_value = cortex_pxe::DEBIAN_IPXE_DIR)]
    pub ipxe_dir: PathBuf,
    /// An extra kernel command-line word for booted machines (repeatable), e.g.
    /// `cortex.role=coordinator`, `cortex.tasks.allow_root=true` or `quiet`: any
    /// `cortex.KEY=VALUE` of the agent's configuration (docs/configuration.md).
    #[arg(long = "kernel-arg", value_name = "WORD")]
    pub kernel_args: Vec<String>,
    /// Log filter, e.g. `info` or `debug` (or CORTEX_LOG).
    #[arg(long, value_name = "FILTER", default_value = "info")]
    pub log_level: String,
}

#[derive(Debug, Serialize)]
struct Serving {
    http_addr: SocketAddr,
    tftp_addr: SocketAddr,
    artifacts: String,
    join: String,
    token: bool,
    proxy_dhcp: bool,
    ipxe_binaries: Vec<String>,
    kernel: Option<String>,
    initrd: Option<String>,
    uki: Option<String>,
}

pub async fn run(command: PxeCommand, out: Output) -> anyhow::Result<()> {
    match command {
        PxeCommand::Serve(args) => serve(args, out).await,
    }
}

async fn serve(args: ServeArgs, out: Output) -> anyhow::Result<()> {
    init_tracing(&args.log_level);
    let token = match (&args.token, &args.token_file) {
        (Some(t), _) => Some(t.trim().to_string()),
        (None, Some(f)) => Some(
            std::fs::read_to_string(f)
                .with_context(|| format!("cannot read the token file {}", f.display()))?
                .trim()
                .to_string(),
        ),
        (None, None) => None,
    };
    if token.is_none() {
        tracing::warn!("no --token: booted machines will join without a token and wait for approval");
    }
    let cfg = cortex_pxe::PxeConfig {
        artifacts: args.artifacts.clone(),
        http_addr: args.http_addr,
        tftp_addr: args.tftp_addr,
        proxy_dhcp: args.proxy_dhcp,
        join: args.join.clone(),
        token: token.clone(),
        advertise: args.advertise,
        ipxe_dir: args.ipxe_dir.clone(),
        kernel_args: args.kernel_args.clone(),
    };
    let pxe = cortex_pxe::Pxe::bind(cfg).await?;
    let arts = pxe.boot().artifacts();
    let serving = Serving {
        http_addr: pxe.http_addr(),
        tftp_addr: pxe.tftp_addr(),
        artifacts: pxe.boot().root().dir().display().to_string(),
        join: args.join.clone(),
        token: token.is_some(),
        proxy_dhcp: pxe.proxy_dhcp(),
        ipxe_binaries: pxe.loaders().iter().map(|s| s.to_string()).collect(),
        kernel: arts.kernel,
        initrd: arts.initrd,
        uki: arts.uki,
    };
    if serving.kernel.is_none() || serving.initrd.is_none() {
        tracing::warn!("no kernel + initrd in the artifacts directory yet: boot scripts answer 503");
    }
    print_serving(&serving, out)?;

    let shutdown = shutdown_signal()?;
    pxe.run(shutdown).await?;
    tracing::info!("PXE service stopped");
    Ok(())
}

fn print_serving(s: &Serving, out: Output) -> anyhow::Result<()> {
    if out == Output::Json {
        // One line, so a script (or the test harness) can read the bound ports.
        println!("{}", serde_json::to_string(s)?);
        return Ok(());
    }
    let or_none = |v: &Option<String>| v.clone().unwrap_or_else(|| "(none)".into());
    println!(
        "Cortex PXE is serving {}.\n  HTTP         http://{}/boot.ipxe  (netboot.xyz custom URL: http://{}/)\n  TFTP         {}\n  kernel       {}\n  initrd       {}\n  UKI          {}\n  iPXE         {}\n  join         {}{}\n  proxyDHCP    {}\nCtrl-C stops.",
        s.artifacts,
        s.http_addr,
        s.http_addr,
        s.tftp_addr,
        or_none(&s.kernel),
        or_none(&s.initrd),
        or_none(&s.uki),
        if s.ipxe_binaries.is_empty() { "(none: install Debian's ipxe package)".to_string() } else { s.ipxe_binaries.join(", ") },
        s.join,
        if s.token { " (with token)" } else { " (no token)" },
        if s.proxy_dhcp { "on (UDP 67, 4011)" } else { "off" },
    );
    Ok(())
}

/// Completes on the first SIGINT or SIGTERM.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("received SIGTERM"),
            _ = int.recv() => tracing::info!("received SIGINT"),
        }
    })
}

fn init_tracing(filter: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("CORTEX_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
