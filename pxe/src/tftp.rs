//! Read-only TFTP (RFC 1350 with the blksize, tsize, timeout and windowsize options) over the
//! artifact root, in **single-port mode**: every reply leaves from the listening port.
//!
//! The protocol engine is async-tftp's: [`RootHandler`] implements its `Handler` trait over
//! [`Root`](crate::root::Root) and the generated scripts. async-tftp itself answers each
//! transfer from a fresh ephemeral port (RFC 1350's TID), which qemu's user networking (slirp)
//! and some firewalls drop. So async-tftp listens on a private loopback port and a small relay
//! owns the public socket:
//!
//! ```text
//! client ──UDP──▶ front socket (listening port) ─┬─ RRQ/WRQ: new session, its own loopback
//!                                                │  proxy socket ──▶ async-tftp's listener
//!                                                └─ ACK/ERROR: proxy socket ──▶ the transfer's port
//! async-tftp transfer socket ──▶ proxy socket ──▶ front socket ──▶ client (source = listening port)
//! ```
//!
//! Sessions are keyed by the client's address; a new request from the same address replaces
//! the old session. A client's ERROR ends its session at once — PXE ROMs send one right after
//! the OACK of their `tsize` probe, and async-tftp would otherwise keep re-sending the OACK —
//! and async-tftp itself gives up after [`MAX_SEND_RETRIES`] × [`TIMEOUT`] instead of its
//! default 100 × 3 s.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_tftp::packet;
use async_tftp::server::{Handler, TftpServerBuilder};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::root::Refusal;
use crate::script::Flow;
use crate::Boot;

/// Re-send timeout for a data block or OACK (a client's `timeout` option overrides it).
pub const TIMEOUT: Duration = Duration::from_secs(1);
/// Re-sends of one block before async-tftp abandons the transfer.
pub const MAX_SEND_RETRIES: u32 = 5;
/// A session with no packet either way for this long is dropped.
const SESSION_IDLE: Duration = Duration::from_secs(15);
/// At most this many concurrent sessions; requests beyond are dropped (and logged).
const MAX_SESSIONS: usize = 512;

const RRQ: u16 = 1;
const WRQ: u16 = 2;
const DATA: u16 = 3;
const ERROR: u16 = 5;
const OACK: u16 = 6;

/// Loopback proxy address → the real client, so the handler logs who asked.
type PeerMap = Arc<Mutex<HashMap<SocketAddr, SocketAddr>>>;

/// async-tftp's `Handler` over the artifact root: reads only.
pub struct RootHandler {
    boot: Boot,
    peers: PeerMap,
}

impl RootHandler {
    fn peer_of(&self, client: &SocketAddr) -> String {
        let peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        match peers.get(client) {
            Some(p) => p.to_string(),
            None => format!("{client} (local)"),
        }
    }
}

impl Handler for RootHandler {
    type Reader = Box<dyn futures::io::AsyncRead + Unpin + Send>;
    type Writer = futures::io::Sink;

    fn read_req_open(
        &mut self,
        client: &SocketAddr,
        path: &Path,
    ) -> impl Future<Output = Result<(Self::Reader, Option<u64>), packet::Error>> + Send {
        let boot = self.boot.clone();
        let peer = self.peer_of(client);
        let requested = path.to_string_lossy().into_owned();
        async move { blocking::unblock(move || open(&boot, &peer, &requested)).await }
    }

    fn write_req_open(
        &mut self,
        client: &SocketAddr,
        path: &Path,
        _size: Option<u64>,
    ) -> impl Future<Output = Result<Self::Writer, packet::Error>> + Send {
        let peer = self.peer_of(client);
        let requested = path.to_string_lossy().into_owned();
        async move {
            tracing::warn!(%peer, %requested, "TFTP write refused: the server is read-only");
            Err(packet::Error::PermissionDenied)
        }
    }
}

/// Opens what a client asked for: a generated script or a file of the root (blocking IO).
fn open(
    boot: &Boot,
    peer: &str,
    requested: &str,
) -> Result<(Box<dyn futures::io::AsyncRead + Unpin + Send>, Option<u64>), packet::Error> {
    if let Some(flow) = Flow::from_name(requested) {
        return match boot.script(flow) {
            Ok(s) => {
                let bytes = s.into_bytes();
                let len = bytes.len() as u64;
                tracing::debug!(%peer, requested, "serving generated script");
                Ok((Box::new(futures::io::Cursor::new(bytes)), Some(len)))
            }
            Err(e) => {
                tracing::warn!(%peer, requested, error = %e, "cannot generate boot script");
                Err(packet::Error::FileNotFound)
            }
        };
    }
    let resolved = boot.root().resolve(requested, peer).map_err(|r| match r {
        Refusal::NotFound | Refusal::Io(_) => packet::Error::FileNotFound,
        Refusal::Traversal | Refusal::Escape | Refusal::NotRegular => packet::Error::PermissionDenied,
    })?;
    let file = std::fs::File::open(&resolved.path).map_err(|e| {
        tracing::warn!(%peer, requested, error = %e, "cannot open");
        packet::Error::FileNotFound
    })?;
    // The path was checked before opening; check the opened file too.
    match file.metadata() {
        Ok(m) if m.is_file() => Ok((Box::new(blocking::Unblock::new(file)), Some(m.len()))),
        _ => Err(packet::Error::FileNotFound),
    }
}

/// A bound TFTP server, not yet running.
pub struct TftpServer {
    front: Arc<UdpSocket>,
    inner: SocketAddr,
    engine: async_tftp::server::TftpServer<RootHandler>,
    peers: PeerMap,
}

impl TftpServer {
    /// Binds the public socket on `addr` and async-tftp on a private loopback port.
    pub async fn bind(addr: SocketAddr, boot: Boot) -> io::Result<TftpServer> {
        let front = UdpSocket::bind(addr).await?;
        let peers: PeerMap = Arc::default();
        let handler = RootHandler {
            boot,
            peers: peers.clone(),
        };
        let engine = TftpServerBuilder::with_handler(handler)
            .bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .timeout(TIMEOUT)
            .max_send_retries(MAX_SEND_RETRIES)
            .build()
            .await
            .map_err(|e| io::Error::other(format!("cannot start the TFTP engine: {e}")))?;
        let inner = engine
            .listen_addr()
            .map_err(|e| io::Error::other(format!("TFTP engine address: {e}")))?;
        Ok(TftpServer {
            front: Arc::new(front),
            inner,
            engine,
            peers,
        })
    }

    /// The public (listening) address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.front.local_addr()
    }

    /// Serves until `shutdown` completes.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let TftpServer {
            front,
            inner,
            engine,
            peers,
        } = self;
        // async-tftp is executor-agnostic (async-io); give it its own thread.
        let (stop_tx, stop_rx) = futures::channel::oneshot::channel::<()>();
        let engine_thread = std::thread::Builder::new()
            .name("cortex-tftp".into())
            .spawn(move || {
                let serve = Box::pin(engine.serve());
                if let futures::future::Either::Left((Err(e), _)) =
                    futures::executor::block_on(futures::future::select(serve, stop_rx))
                {
                    tracing::error!(error = %e, "TFTP engine stopped");
                }
            });
        if let Err(e) = &engine_thread {
            tracing::error!(error = %e, "cannot start the TFTP engine thread");
            return;
        }
        let mut relay = Relay {
            front,
            inner,
            peers,
            sessions: HashMap::new(),
            next_id: 0,
        };
        relay.run(shutdown).await;
        let _ = stop_tx.send(());
        if let Ok(t) = engine_thread {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

struct Session {
    id: u64,
    proxy: Arc<UdpSocket>,
    /// The port of async-tftp's transfer socket on loopback, once it has sent something.
    tid: Arc<AtomicU16>,
    task: JoinHandle<()>,
}

struct Relay {
    front: Arc<UdpSocket>,
    inner: SocketAddr,
    peers: PeerMap,
    sessions: HashMap<SocketAddr, Session>,
    next_id: u64,
}

impl Relay {
    async fn run(&mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let (ended_tx, mut ended_rx) = mpsc::unbounded_channel::<(SocketAddr, u64)>();
        let mut buf = vec![0u8; 65536];
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                Some((peer, id)) = ended_rx.recv() => {
                    if self.sessions.get(&peer).is_some_and(|s| s.id == id) {
                        self.end(&peer);
                    }
                }
                r = self.front.recv_from(&mut buf) => match r {
                    Ok((n, peer)) => self.packet(peer, &buf[..n], &ended_tx).await,
                    Err(e) => tracing::debug!(error = %e, "TFTP receive failed"),
                },
            }
        }
        let peers: Vec<SocketAddr> = self.sessions.keys().copied().collect();
        for p in peers {
            self.end(&p);
        }
    }

    async fn packet(
        &mut self,
        peer: SocketAddr,
        pkt: &[u8],
        ended: &mpsc::UnboundedSender<(SocketAddr, u64)>,
    ) {
        let Some(op) = pkt.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]])) else {
            tracing::debug!(%peer, "TFTP: runt packet ignored");
            return;
        };
        match op {
            RRQ | WRQ => self.start(peer, pkt, ended).await,
            3..=6 => {
                let Some(s) = self.sessions.get(&peer) else {
                    tracing::debug!(%peer, op, "TFTP: packet for no transfer ignored");
                    return;
                };
                let tid = s.tid.load(Ordering::Relaxed);
                if tid != 0 {
                    let _ = s
                        .proxy
                        .send_to(pkt, SocketAddr::from((Ipv4Addr::LOCALHOST, tid)))
                        .await;
                }
                if op == ERROR {
                    tracing::debug!(%peer, detail = %error_text(pkt), "TFTP: client ended the transfer");
                    self.end(&peer);
                }
            }
            _ => tracing::debug!(%peer, op, "TFTP: unknown opcode ignored"),
        }
    }

    async fn start(
        &mut self,
        peer: SocketAddr,
        pkt: &[u8],
        ended: &mpsc::UnboundedSender<(SocketAddr, u64)>,
    ) {
        self.end(&peer);
        if self.sessions.len() >= MAX_SESSIONS {
            tracing::warn!(%peer, "TFTP: too many concurrent transfers, request dropped");
            return;
        }
        let proxy = match UdpSocket::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await {
            Ok(s) => Arc::new(s),
            Err(e) => {
                tracing::warn!(%peer, error = %e, "TFTP: cannot open a relay socket");
                return;
            }
        };
        let Ok(proxy_addr) = proxy.local_addr() else {
            return;
        };
        self.peers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(proxy_addr, peer);
        self.next_id += 1;
        let id = self.next_id;
        let tid = Arc::new(AtomicU16::new(0));
        let task = tokio::spawn(back_to_client(
            proxy.clone(),
            self.front.clone(),
            peer,
            tid.clone(),
            ended.clone(),
            id,
        ));
        if let Err(e) = proxy.send_to(pkt, self.inner).await {
            tracing::warn!(%peer, error = %e, "TFTP: cannot reach the engine");
        }
        self.sessions.insert(peer, Session { id, proxy, tid, task });
    }

    fn end(&mut self, peer: &SocketAddr) {
        if let Some(s) = self.sessions.remove(peer) {
            s.task.abort();
            if let Ok(a) = s.proxy.local_addr() {
                self.peers.lock().unwrap_or_else(|e| e.into_inner()).remove(&a);
            }
        }
    }
}

/// Forwards whatever the engine sends for one session to the client, from the listening port.
async fn back_to_client(
    proxy: Arc<UdpSocket>,
    front: Arc<UdpSocket>,
    peer: SocketAddr,
    tid: Arc<AtomicU16>,
    ended: mpsc::UnboundedSender<(SocketAddr, u64)>,
    id: u64,
) {
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, src) = match tokio::time::timeout(SESSION_IDLE, proxy.recv_from(&mut buf)).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "TFTP relay receive failed");
                break;
            }
            Err(_) => break,
        };
        if !src.ip().is_loopback() || n < 2 {
            continue;
        }
        let op = u16::from_be_bytes([buf[0], buf[1]]);
        if op == DATA || op == OACK {
            tid.store(src.port(), Ordering::Relaxed);
        }
        if let Err(e) = front.send_to(&buf[..n], peer).await {
            tracing::debug!(%peer, error = %e, "TFTP send failed");
        }
        if op == ERROR {
            tracing::debug!(%peer, detail = %error_text(&buf[..n]), "TFTP: transfer refused");
            break;
        }
    }
    let _ = ended.send((peer, id));
}

/// "code N: message" of an ERROR packet, for logs.
fn error_text(pkt: &[u8]) -> String {
    let code = pkt
        .get(2..4)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .unwrap_or(0);
    let msg = pkt.get(4..).unwrap_or_default();
    let msg = msg.split(|b| *b == 0).next().unwrap_or_default();
    format!("code {code}: {}", String::from_utf8_lossy(msg).escape_debug())
}
