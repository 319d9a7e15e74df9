//! A gRPC channel on one HTTP/2 connection over TLS, driving `h2` directly: the transport under
//! tonic's generated clients where calls are many and small (the CLI client and its load
//! generators).
//!
//! Why not tonic's `Channel`: hyper's HTTP/2 client queues a request's HEADERS, then waits
//! for flow-control capacity before it looks at the body, and a new stream gets capacity only
//! once the connection task has opened it. So every unary call leaves in three TLS records and
//! three TCP segments (HEADERS, DATA, an empty DATA that ends the stream; seen with strace),
//! and the server is woken for each. Here the call's HEADERS and its DATA with END_STREAM are
//! both queued before the connection task runs, so it writes them at once. tonic still does
//! the gRPC part (codec, framing, metadata, status from the trailers); this is only the
//! `GrpcService` it calls.
//!
//! The connection is not re-established: a call on a closed connection fails with the reason,
//! and the owner connects again.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::Frame;
use http_body_util::BodyExt;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;

use crate::pki::{NodeCredentials, CLUSTER_DNS_NAME};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A cloneable handle on one HTTP/2 connection; every clone multiplexes its calls over it.
#[derive(Clone)]
pub struct H2Channel {
    send: h2::client::SendRequest<Bytes>,
    /// `host:port` of the server: every request's URI gets `https://` and this (the origin
    /// tonic's generated clients leave out).
    authority: http::uri::Authority,
    timeout: Option<Duration>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("{addr:?} is not a valid address: {detail}")]
    Address { addr: String, detail: String },
    #[error("TCP connection to {addr} failed: {detail}")]
    Tcp { addr: String, detail: String },
    #[error("TLS connection to {addr} failed: {detail}")]
    Tls { addr: String, detail: String },
    #[error("HTTP/2 handshake with {addr} failed: {detail}")]
    Http2 { addr: String, detail: String },
}

/// Where to connect and how: the server must present a certificate of the CA in `ca_pem` for
/// the cluster name; `identity` is presented when given (node-to-node mTLS).
pub struct Target<'a> {
    pub addr: &'a str,
    pub ca_pem: &'a str,
    pub identity: Option<&'a NodeCredentials>,
    pub connect_timeout: Duration,
    /// Bound on each call (none: calls wait as long as the server takes).
    pub call_timeout: Option<Duration>,
}

impl H2Channel {
    /// TCP (no Nagle), TLS with ALPN `h2`, then the HTTP/2 handshake; the connection is driven
    /// by a task of its own until every handle is dropped or the peer goes away.
    pub async fn connect(target: &Target<'_>) -> Result<H2Channel, ConnectError> {
        let addr = target.addr.to_string();
        let authority: http::uri::Authority =
            addr.parse()
                .map_err(|e: http::uri::InvalidUri| ConnectError::Address {
                    addr: addr.clone(),
                    detail: e.to_string(),
                })?;
        let config = client_config(target.ca_pem, target.identity).map_err(|detail| ConnectError::Tls {
            addr: addr.clone(),
            detail,
        })?;
        let tcp = tokio::time::timeout(target.connect_timeout, TcpStream::connect(target.addr))
            .await
            .map_err(|_| ConnectError::Tcp {
                addr: addr.clone(),
                detail: format!("no answer within {:?}", target.connect_timeout),
            })?
            .map_err(|e| ConnectError::Tcp {
                addr: addr.clone(),
                detail: e.to_string(),
            })?;
        let _ = tcp.set_nodelay(true);
        let name = ServerName::try_from(CLUSTER_DNS_NAME).map_err(|e| ConnectError::Tls {
            addr: addr.clone(),
            detail: e.to_string(),
        })?;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tls = tokio::time::timeout(target.connect_timeout, connector.connect(name, tcp))
            .await
            .map_err(|_| ConnectError::Tls {
                addr: addr.clone(),
                detail: format!("no handshake within {:?}", target.connect_timeout),
            })?
            .map_err(|e| ConnectError::Tls {
                addr: addr.clone(),
                detail: e.to_string(),
            })?;
        let (send, connection) = h2::client::Builder::new()
            .handshake::<_, Bytes>(tls)
            .await
            .map_err(|e| ConnectError::Http2 {
                addr: addr.clone(),
                detail: e.to_string(),
            })?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%addr, "gRPC connection ended: {e}");
            }
        });
        Ok(H2Channel {
            send,
            authority,
            timeout: target.call_timeout,
        })
    }
}

fn client_config(ca_pem: &str, identity: Option<&NodeCredentials>) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(ca_roots(ca_pem)?);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some(creds) => {
            let (chain, key) = chain_and_key(&creds.cert_pem, &creds.key_pem)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("this node's certificate is not usable: {e}"))?
        }
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// The cluster CA as the only trust root (both ends of a connection use it).
pub(crate) fn ca_roots(ca_pem: &str) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| format!("the CA certificate cannot be read: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("the CA certificate is not usable: {e}"))?;
    }
    Ok(roots)
}

/// This node's certificate chain and key, as TLS wants them.
pub(crate) fn chain_and_key(
    chain_pem: &str,
    key_pem: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("this node's certificate cannot be read: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| format!("this node's key cannot be read: {e}"))?;
    Ok((chain, key))
}

impl tower_service::Service<http::Request<tonic::body::Body>> for H2Channel {
    type Response = http::Response<tonic::body::Body>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.send.poll_ready(cx).map_err(|e| status(e).into())
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let send = self.send.clone();
        let timeout = self.timeout;
        let authority = self.authority.clone();
        Box::pin(async move {
            let call = unary(send, authority, request);
            match timeout {
                None => call.await,
                Some(limit) => match tokio::time::timeout(limit, call).await {
                    Ok(result) => result,
                    Err(_) => {
                        Err(tonic::Status::deadline_exceeded(format!("no answer within {limit:?}")).into())
                    }
                },
            }
        })
    }
}

/// One call: the request's body is read whole (every request here is one message), then
/// HEADERS and DATA with END_STREAM are queued together.
async fn unary(
    mut send: h2::client::SendRequest<Bytes>,
    authority: http::uri::Authority,
    request: http::Request<tonic::body::Body>,
) -> Result<http::Response<tonic::body::Body>, BoxError> {
    let (mut parts, body) = request.into_parts();
    let mut uri = std::mem::take(&mut parts.uri).into_parts();
    uri.scheme = Some(http::uri::Scheme::HTTPS);
    uri.authority = Some(authority);
    parts.uri = http::Uri::from_parts(uri)?;
    let body = body.collect().await?.to_bytes();
    let head = http::Request::from_parts(parts, ());
    let (response, mut stream) = send.send_request(head, body.is_empty()).map_err(status)?;
    if !body.is_empty() {
        stream.send_data(body, true).map_err(status)?;
    }
    let response = response.await.map_err(status)?;
    Ok(response.map(|recv| tonic::body::Body::new(Received::new(recv))))
}

/// The gRPC status for a failed call: a connection that is gone is `Unavailable` with
/// "transport error" in the message (what the CLI reports as "no Cortex node is answering").
fn status(e: h2::Error) -> tonic::Status {
    if e.is_io() || e.is_go_away() {
        return tonic::Status::unavailable(format!("transport error: {e}"));
    }
    match e.reason() {
        Some(h2::Reason::REFUSED_STREAM) => tonic::Status::unavailable(format!("transport error: {e}")),
        Some(h2::Reason::CANCEL) => tonic::Status::cancelled(e.to_string()),
        _ => tonic::Status::internal(format!("HTTP/2 error: {e}")),
    }
}

/// A body read from an h2 stream (a response here, a request in `h2_server`): its DATA frames (their flow-control capacity given
/// back as they are read), then its trailers (where gRPC puts the status).
pub(crate) struct Received {
    recv: h2::RecvStream,
    data_done: bool,
    done: bool,
}

impl Received {
    pub(crate) fn new(recv: h2::RecvStream) -> Received {
        Received {
            recv,
            data_done: false,
            done: false,
        }
    }
}

impl http_body::Body for Received {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        if !this.data_done {
            match ready!(this.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    let _ = this.recv.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Err(e)) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
                None => this.data_done = true,
            }
        }
        let trailers = ready!(this.recv.poll_trailers(cx));
        this.done = true;
        match trailers {
            Ok(Some(t)) => Poll::Ready(Some(Ok(Frame::trailers(t)))),
            Ok(None) => Poll::Ready(None),
            Err(e) => Poll::Ready(Some(Err(e))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}
