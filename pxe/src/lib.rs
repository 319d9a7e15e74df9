//! Cortex network boot: a read-only TFTP server, HTTP boot scripts and artifacts, and an optional
//! proxyDHCP responder, all over one confined artifact root. See `docs/boot.md`.
//!
//! Invariants: nothing here writes (TFTP write requests and non-GET/HEAD HTTP methods are
//! refused); every file served is a regular file inside the artifacts directory or one of the
//! iPXE binaries registered by name; the proxyDHCP responder never hands out an address.

pub mod http;
pub mod proxydhcp;
pub mod root;
pub mod script;
pub mod tftp;

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::proxydhcp::ProxyConfig;
use crate::root::Root;
use crate::script::{Artifacts, BootParams, Flow, ScriptError};
use crate::tftp::TftpServer;

/// Where Debian's `ipxe` package installs its binaries.
pub const DEBIAN_IPXE_DIR: &str = "/usr/lib/ipxe";
/// The iPXE binaries served by name: BIOS (UNDI), UEFI (own drivers), UEFI (firmware's SNP).
pub const LOADERS: [&str; 3] = ["undionly.kpxe", "ipxe.efi", "snponly.efi"];
/// Default HTTP listener of `cortex pxe serve`.
pub const DEFAULT_HTTP_ADDR: &str = "0.0.0.0:7072";
/// Default TFTP listener (the standard port).
pub const DEFAULT_TFTP_ADDR: &str = "0.0.0.0:69";

/// What to serve and where.
#[derive(Debug, Clone)]
pub struct PxeConfig {
    /// Directory with the boot artifacts (kernel, initrd, UKI, optionally iPXE binaries).
    pub artifacts: PathBuf,
    pub http_addr: SocketAddr,
    pub tftp_addr: SocketAddr,
    /// Also answer PXE clients' DHCP on UDP 67 and 4011 (needs root or CAP_NET_BIND_SERVICE).
    pub proxy_dhcp: bool,
    /// The coordinator's gRPC address booted machines join (`cortex.join=`).
    pub join: String,
    /// The join token booted machines present (`cortex.token=`); minted by the caller.
    pub token: Option<String>,
    /// The address clients reach this server at (proxyDHCP's next-server and boot URL). `None`:
    /// the HTTP or TFTP listener's address, when it is not a wildcard.
    pub advertise: Option<IpAddr>,
    /// Where to find iPXE binaries missing from `artifacts` (default [`DEBIAN_IPXE_DIR`]).
    pub ipxe_dir: PathBuf,
    /// Extra kernel command-line words for booted machines (`cortex.role=coordinator`, any
    /// `cortex.KEY=VALUE` of the agent's configuration), checked by
    /// [`script::check_kernel_arg`].
    pub kernel_args: Vec<String>,
}

/// Errors that stop the PXE service from starting.
#[derive(Debug, thiserror::Error)]
pub enum PxeError {
    #[error("artifacts directory {}: {reason}", path.display())]
    Artifacts { path: PathBuf, reason: String },
    #[error("cannot listen for {what} on {addr}: {reason}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        reason: String,
    },
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Script(#[from] ScriptError),
}

fn bind_error(what: &'static str, addr: SocketAddr, e: &io::Error) -> PxeError {
    let reason = match e.kind() {
        io::ErrorKind::AddrInUse => "the address is already in use".to_string(),
        io::ErrorKind::PermissionDenied => {
            "permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)".to_string()
        }
        _ => e.to_string(),
    };
    PxeError::Bind { what, addr, reason }
}

/// The artifact root and boot parameters shared by TFTP and HTTP.
#[derive(Debug, Clone)]
pub struct Boot(Arc<BootInner>);

#[derive(Debug)]
struct BootInner {
    root: Root,
    params: BootParams,
}

impl Boot {
    pub fn new(root: Root, params: BootParams) -> Boot {
        Boot(Arc::new(BootInner { root, params }))
    }

    pub fn root(&self) -> &Root {
        &self.0.root
    }

    pub fn params(&self) -> &BootParams {
        &self.0.params
    }

    /// The kernel, initrd and UKI the scripts name, looked up now (the directory may change).
    pub fn artifacts(&self) -> Artifacts {
        Artifacts::detect(&self.0.root)
    }

    /// The generated script for `flow`.
    pub fn script(&self, flow: Flow) -> Result<String, ScriptError> {
        script::render_flow(flow, &self.artifacts(), &self.0.params)
    }
}

/// Registers the iPXE binaries the artifacts directory lacks from `ipxe_dir`. Returns the names
/// that are served (from either place).
pub fn add_loaders(root: &mut Root, ipxe_dir: &Path) -> Vec<&'static str> {
    let mut served = Vec::new();
    for name in LOADERS {
        if root.has(name) {
            served.push(name);
            continue;
        }
        let path = ipxe_dir.join(name);
        match root.add_named(name, &path) {
            Ok(()) => served.push(name),
            Err(e) => tracing::debug!(name, path = %path.display(), error = %e, "iPXE binary not available"),
        }
    }
    served
}

/// A PXE service with its listeners bound, not yet serving.
pub struct Pxe {
    boot: Boot,
    http: tokio::net::TcpListener,
    http_addr: SocketAddr,
    tftp: TftpServer,
    tftp_addr: SocketAddr,
    proxy: Option<(tokio::net::UdpSocket, tokio::net::UdpSocket, ProxyConfig)>,
    loaders: Vec<&'static str>,
}

impl Pxe {
    /// Checks the configuration and binds every listener, so a busy port or a missing
    /// directory fails here, naming the address or path.
    pub async fn bind(cfg: PxeConfig) -> Result<Pxe, PxeError> {
        let params = BootParams::new(&cfg.join, cfg.token.as_deref())?.with_args(&cfg.kernel_args)?;
        let mut root = match Root::new(&cfg.artifacts) {
            Ok(r) => r,
            Err(e) => {
                let reason = if e.kind() == io::ErrorKind::NotFound {
                    "does not exist".to_string()
                } else {
                    e.to_string()
                };
                return Err(PxeError::Artifacts {
                    path: cfg.artifacts.clone(),
                    reason,
                });
            }
        };
        let loaders = add_loaders(&mut root, &cfg.ipxe_dir);
        let boot = Boot::new(root, params);

        let http = tokio::net::TcpListener::bind(cfg.http_addr)
            .await
            .map_err(|e| bind_error("HTTP", cfg.http_addr, &e))?;
        let http_addr = http
            .local_addr()
            .map_err(|e| bind_error("HTTP", cfg.http_addr, &e))?;
        let tftp = TftpServer::bind(cfg.tftp_addr, boot.clone())
            .await
            .map_err(|e| bind_error("TFTP", cfg.tftp_addr, &e))?;
        let tftp_addr = tftp
            .local_addr()
            .map_err(|e| bind_error("TFTP", cfg.tftp_addr, &e))?;

        let proxy = if cfg.proxy_dhcp {
            let advertise = cfg
                .advertise
                .or_else(|| {
                    [http_addr.ip(), tftp_addr.ip()]
                        .into_iter()
                        .find(|ip| !ip.is_unspecified())
                })
                .ok_or_else(|| {
                    PxeError::Config(
                        "--proxy-dhcp needs --advertise IP: the listeners are on a wildcard address, \
                         so the address clients should use is unknown"
                            .into(),
                    )
                })?;
            let IpAddr::V4(server) = advertise else {
                return Err(PxeError::Config(format!(
                    "proxyDHCP is IPv4: --advertise {advertise} is not an IPv4 address"
                )));
            };
            let ipxe_url = format!("http://{server}:{}/boot.ipxe", http_addr.port());
            let cfg = ProxyConfig {
                server,
                bios_loader: loaders
                    .contains(&"undionly.kpxe")
                    .then(|| "undionly.kpxe".to_string()),
                uefi_loader: ["snponly.efi", "ipxe.efi"]
                    .into_iter()
                    .find(|l| loaders.contains(l))
                    .map(str::to_string),
                ipxe_url,
            };
            let (dhcp, pxe) = proxydhcp::bind().await.map_err(|e| PxeError::Bind {
                what: "proxyDHCP",
                addr: SocketAddr::from(([0, 0, 0, 0], proxydhcp::DHCP_PORT)),
                reason: e.to_string(),
            })?;
            Some((dhcp, pxe, cfg))
        } else {
            None
        };
        Ok(Pxe {
            boot,
            http,
            http_addr,
            tftp,
            tftp_addr,
            proxy,
            loaders,
        })
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    pub fn tftp_addr(&self) -> SocketAddr {
        self.tftp_addr
    }

    pub fn boot(&self) -> &Boot {
        &self.boot
    }

    /// The iPXE binaries served (from the artifacts directory or `ipxe_dir`).
    pub fn loaders(&self) -> &[&'static str] {
        &self.loaders
    }

    /// True if the proxyDHCP responder is bound.
    pub fn proxy_dhcp(&self) -> bool {
        self.proxy.is_some()
    }

    /// Serves until `shutdown` completes, then stops every listener. HTTP transfers still in
    /// flight get a few seconds to finish.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), PxeError> {
        let stop = CancellationToken::new();
        let router = http::router(self.boot.clone());
        let http_stop = stop.clone();
        let mut http_task = tokio::spawn(async move {
            axum::serve(
                self.http,
                router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(http_stop.cancelled_owned())
            .await
        });
        let tftp_stop = stop.clone();
        let tftp_task = tokio::spawn(self.tftp.run(tftp_stop.cancelled_owned()));
        let proxy_task = self.proxy.map(|(dhcp, pxe, cfg)| {
            let s = stop.clone();
            tokio::spawn(proxydhcp::serve(dhcp, pxe, cfg, s.cancelled_owned()))
        });
        tracing::info!(
            http = %self.http_addr,
            tftp = %self.tftp_addr,
            artifacts = %self.boot.root().dir().display(),
            "PXE service ready"
        );

        tokio::select! {
            _ = shutdown => {}
            r = &mut http_task => {
                stop.cancel();
                return match r {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(PxeError::Config(format!("HTTP server failed: {e}"))),
                    Err(e) => Err(PxeError::Config(format!("HTTP server task failed: {e}"))),
                };
            }
        }
        stop.cancel();
        if tokio::time::timeout(Duration::from_secs(5), &mut http_task)
            .await
            .is_err()
        {
            tracing::info!("HTTP transfers still running after 5 s; closing them");
            http_task.abort();
        }
        let _ = tftp_task.await;
        if let Some(t) = proxy_task {
            let _ = t.await;
        }
        Ok(())
    }
}

/// Binds and serves `cfg` until `shutdown` completes.
pub async fn serve(cfg: PxeConfig, shutdown: impl Future<Output = ()>) -> Result<(), PxeError> {
    Pxe::bind(cfg).await?.run(shutdown).await
}
