//! The gRPC server on `h2` directly: TLS (rustls, client certificates of the cluster CA
//! optional), HTTP/2, and tonic's generated services called as tower services.
//!
//! Why not tonic's `Server`: under it hyper's HTTP/2 server, an axum router and tonic's
//! per-request layers cost two thirds of a leader's user CPU per write (perf, 64 clients); the
//! generated services (codec, method dispatch, status) are what a call needs. A response's
//! HEADERS, DATA and trailers are queued in one poll, so a unary answer leaves in one write.
//!
//! What tonic's server did and this does too: the peer's certificates (`PeerCertificates`) and
//! address (`TcpConnectInfo`) in each request's extensions; a TLS handshake bound; a bound on
//! concurrent streams and header size per connection; a graceful shutdown (GOAWAY, then the
//! calls in flight finish).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body::Body;
use http_body_util::BodyExt;
use rustls::pki_types::CertificateDer;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::h2_channel::{ca_roots, chain_and_key, Received};
use crate::pki::NodeCredentials;

/// The verified certificate chain the client presented on this connection (none: no client
/// certificate, as the CLI and joining nodes connect).
#[derive(Clone, Debug)]
pub struct PeerCertificates(pub Arc<Vec<CertificateDer<'static>>>);

/// A TLS handshake that has not finished by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Calls in flight on one connection.
const MAX_CONCURRENT_STREAMS: u32 = 1024;
/// Request headers, all together.
const MAX_HEADER_LIST_SIZE: u32 = 16 * 1024;

/// What `serve` serves: tonic's generated servers (or a router over them) as a tower service.
pub trait GrpcService:
    tower_service::Service<
        http::Request<tonic::body::Body>,
        Response = http::Response<tonic::body::Body>,
        Error = Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static
{
}

impl<S> GrpcService for S where
    S: tower_service::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
            Error = Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + 'static
{
}

/// The TLS server side: the node's chain (leaf + CA, so joiners can pin the CA), client
/// certificates verified against the cluster CA when presented, ALPN `h2`.
pub fn server_config(creds: &NodeCredentials) -> Result<rustls::ServerConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(ca_roots(&creds.ca_pem)?),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .map_err(|e| format!("client certificate verifier: {e}"))?;
    let (chain, key) = chain_and_key(&creds.chain_pem(), &creds.key_pem)?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| format!("this node's certificate is not usable: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// Serves `service` on every connection `listener` accepts until `shutdown`; then each
/// connection is told to go away and the calls in flight are let finish.
pub async fn serve<S>(
    listener: TcpListener,
    tls: rustls::ServerConfig,
    service: S,
    shutdown: CancellationToken,
) where
    S: GrpcService,
{
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let (tcp, remote) = match accepted {
            Ok(conn) => conn,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!("gRPC listener: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        connections.spawn(connection(
            tcp,
            remote,
            acceptor.clone(),
            service.clone(),
            shutdown.clone(),
        ));
    }
    while connections.join_next().await.is_some() {}
}

async fn connection<S>(
    tcp: TcpStream,
    remote: std::net::SocketAddr,
    acceptor: tokio_rustls::TlsAcceptor,
    service: S,
    shutdown: CancellationToken,
) where
    S: GrpcService,
{
    let info = tonic::transport::server::TcpConnectInfo {
        local_addr: tcp.local_addr().ok(),
        remote_addr: Some(remote),
    };
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(%remote, "gRPC: TLS handshake failed: {e}");
            return;
        }
        Err(_) => {
            tracing::debug!(%remote, "gRPC: no TLS handshake within {HANDSHAKE_TIMEOUT:?}");
            return;
        }
    };
    let peer = tls
        .get_ref()
        .1
        .peer_certificates()
        .map(|certs| PeerCertificates(Arc::new(certs.iter().map(|c| c.clone().into_owned()).collect())));
    let handshake = h2::server::Builder::new()
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .max_header_list_size(MAX_HEADER_LIST_SIZE)
        .handshake::<_, Bytes>(tls);
    let mut conn = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            tracing::debug!(%remote, "gRPC: HTTP/2 handshake failed: {e}");
            return;
        }
        Err(_) => return,
    };
    let mut closing = false;
    loop {
        let next = tokio::select! {
            () = shutdown.cancelled(), if !closing => {
                closing = true;
                conn.graceful_shutdown();
                continue;
            }
            next = conn.accept() => next,
        };
        match next {
            Some(Ok((request, respond))) => {
                let mut request = request.map(|recv| tonic::body::Body::new(Received::new(recv)));
                request.extensions_mut().insert(info.clone());
                if let Some(peer) = &peer {
                    request.extensions_mut().insert(peer.clone());
                }
                tokio::spawn(call(service.clone(), request, respond));
            }
            Some(Err(e)) => {
                tracing::debug!(%remote, "gRPC connection error: {e}");
                return;
            }
            None => return,
        }
    }
}

/// One call: the service's response head, then its body's frames as they come. A unary answer
/// (DATA, then trailers, both ready) is queued in one go, so it leaves in one write. The call
/// is dropped when the client resets the stream or the connection goes (a write nobody waits
/// for must not be proposed), and answered DEADLINE_EXCEEDED once its `grpc-timeout` passes.
async fn call<S: GrpcService>(
    mut service: S,
    request: http::Request<tonic::body::Body>,
    mut respond: h2::server::SendResponse<Bytes>,
) {
    let deadline = grpc_timeout(request.headers());
    let answer = async {
        let response = service.call(request);
        match deadline {
            None => Ok(response.await),
            Some(limit) => tokio::time::timeout(limit, response).await.map_err(|_| limit),
        }
    };
    let response = tokio::select! {
        answer = answer => answer,
        _ = std::future::poll_fn(|cx| respond.poll_reset(cx)) => return,
    };
    match response {
        Ok(Ok(response)) => send(respond, response).await,
        Ok(Err(never)) => match never {},
        Err(limit) => {
            let status = tonic::Status::deadline_exceeded(format!("no answer within the call's {limit:?}"));
            send(respond, status.into_http::<tonic::body::Body>()).await;
        }
    }
}

async fn send(mut respond: h2::server::SendResponse<Bytes>, response: http::Response<tonic::body::Body>) {
    let (parts, body) = response.into_parts();
    let end = body.is_end_stream();
    let mut send = match respond.send_response(http::Response::from_parts(parts, ()), end) {
        Ok(send) => send,
        Err(e) => {
            tracing::debug!("gRPC: response not sent: {e}");
            return;
        }
    };
    if end {
        return;
    }
    let mut body = std::pin::pin!(body);
    let mut first = true;
    loop {
        let frame = tokio::select! {
            frame = body.frame() => frame,
            // A streaming answer whose client went away: stop producing it.
            _ = std::future::poll_fn(|cx| send.poll_reset(cx)) => return,
        };
        let frame = match frame {
            None => {
                let _ = send.send_data(Bytes::new(), true);
                return;
            }
            Some(Err(e)) => {
                tracing::debug!("gRPC: response body failed: {e}");
                send.send_reset(h2::Reason::INTERNAL_ERROR);
                return;
            }
            Some(Ok(frame)) => frame,
        };
        match frame.into_data() {
            Ok(data) => {
                // Streaming answers wait for the peer's window before each further message,
                // so a slow reader holds the sender rather than this node's memory.
                if !first && !wait_capacity(&mut send, data.len()).await {
                    return;
                }
                first = false;
                if send.send_data(data, false).is_err() {
                    return;
                }
            }
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    let _ = send.send_trailers(trailers);
                }
                return;
            }
        }
    }
}

/// The `grpc-timeout` a client sent: at most 8 digits and a unit (H, M, S, m, u, n).
/// Anything else is ignored, as if absent.
fn grpc_timeout(headers: &http::HeaderMap) -> Option<Duration> {
    let value = headers.get("grpc-timeout")?.to_str().ok()?;
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Waits until the peer's window lets the stream send again (h2 then sends the message as
/// the window allows, so at most one message waits here per stream); false if it is gone.
async fn wait_capacity(send: &mut h2::SendStream<Bytes>, len: usize) -> bool {
    send.reserve_capacity(len);
    loop {
        if len == 0 || send.capacity() > 0 {
            return true;
        }
        match std::future::poll_fn(|cx| send.poll_capacity(cx)).await {
            Some(Ok(_)) => continue,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::h2_channel::{H2Channel, Target};
    use crate::pki::ClusterCa;
    use std::future::Future;
    use std::sync::Mutex;
    use tokio::sync::oneshot;

    /// A service whose calls never finish: it reports whether each request carried the
    /// client's certificates, and signals when a call is dropped.
    #[derive(Clone)]
    struct Hold {
        seen: Arc<Mutex<Vec<bool>>>,
        dropped: Arc<Mutex<Option<oneshot::Sender<()>>>>,
    }

    struct SignalOnDrop(Option<oneshot::Sender<()>>);

    impl Drop for SignalOnDrop {
        fn drop(&mut self) {
            if let Some(tx) = self.0.take() {
                let _ = tx.send(());
            }
        }
    }

    impl tower_service::Service<http::Request<tonic::body::Body>> for Hold {
        type Response = http::Response<tonic::body::Body>;
        type Error = Infallible;
        type Future = std::pin::Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

        fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Infallible>> {
            std::task::Poll::Ready(Ok(()))
        }

        fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
            self.seen
                .lock()
                .unwrap()
                .push(request.extensions().get::<PeerCertificates>().is_some());
            let guard = SignalOnDrop(self.dropped.lock().unwrap().take());
            Box::pin(async move {
                let _guard = guard;
                std::future::pending().await
            })
        }
    }

    fn request(timeout: Option<&str>) -> http::Request<tonic::body::Body> {
        let mut b = http::Request::builder()
            .method("POST")
            .uri("/test.Hold/Forever")
            .header("content-type", "application/grpc");
        if let Some(t) = timeout {
            b = b.header("grpc-timeout", t);
        }
        b.body(tonic::body::Body::empty()).unwrap()
    }

    #[tokio::test]
    async fn a_call_is_dropped_when_its_client_leaves_and_answered_at_its_grpc_timeout() {
        let ca = ClusterCa::create("test").unwrap();
        let server = ca.issue_node(1, "coordinator").unwrap();
        let client = ca.issue_node(2, "coordinator").unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (tx, dropped) = oneshot::channel();
        let hold = Hold {
            seen: Arc::default(),
            dropped: Arc::new(Mutex::new(Some(tx))),
        };
        let shutdown = CancellationToken::new();
        let served = tokio::spawn(serve(
            listener,
            server_config(&server).unwrap(),
            hold.clone(),
            shutdown.clone(),
        ));
        let target = |call_timeout| Target {
            addr: &addr,
            ca_pem: &server.ca_pem,
            identity: Some(&client),
            connect_timeout: Duration::from_secs(5),
            call_timeout,
        };

        // The client gives up after 200 ms: its stream is reset, and the server drops the call.
        let mut ch = H2Channel::connect(&target(Some(Duration::from_millis(200))))
            .await
            .unwrap();
        let err = tower_service::Service::call(&mut ch, request(None))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("no answer within"), "{err}");
        tokio::time::timeout(Duration::from_secs(5), dropped)
            .await
            .expect("the server dropped the call its client reset")
            .unwrap();
        assert_eq!(
            *hold.seen.lock().unwrap(),
            vec![true],
            "the client certificate reached the call"
        );

        // A call with grpc-timeout is answered DEADLINE_EXCEEDED (4) when it passes.
        let mut ch = H2Channel::connect(&target(None)).await.unwrap();
        let started = std::time::Instant::now();
        let response = tower_service::Service::call(&mut ch, request(Some("300m")))
            .await
            .unwrap();
        assert_eq!(response.headers().get("grpc-status").unwrap(), "4");
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "{:?}",
            started.elapsed()
        );

        shutdown.cancel();
        drop(ch);
        tokio::time::timeout(Duration::from_secs(5), served)
            .await
            .expect("serve returns after shutdown")
            .unwrap();
    }

    fn parse(v: &str) -> Option<Duration> {
        let mut h = http::HeaderMap::new();
        h.insert("grpc-timeout", v.parse().unwrap());
        grpc_timeout(&h)
    }

    #[test]
    fn grpc_timeout_units_and_rejections() {
        assert_eq!(parse("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse("2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse("7u"), Some(Duration::from_micros(7)));
        assert_eq!(parse("9n"), Some(Duration::from_nanos(9)));
        for bad in ["", "S", "5", "5s", "-5S", "123456789S", "5 S", "5SS"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
        assert_eq!(grpc_timeout(&http::HeaderMap::new()), None);
    }
}
