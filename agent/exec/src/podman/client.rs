//! A thin HTTP/1 client for the libpod REST API (v4) over a unix socket: one connection per
//! request (connecting to a local socket costs microseconds, and long-lived streams such as
//! `logs` and `wait` then never hold up other calls).

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::{header, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::net::UnixStream;

/// Every path is under this prefix (libpod API v4, the one podman 4.x and 5.x serve).
const API: &str = "/v4.0.0/libpod";

/// The largest non-streaming response read into memory (an image list of a big store is a
/// few hundred KiB).
const MAX_RESPONSE: usize = 64 << 20;

/// What went wrong talking to the service.
#[derive(Debug)]
pub(crate) enum ApiError {
    /// The socket could not be reached, or the connection broke mid-request.
    Transport(String),
    /// The service answered with an error status; `message` is its `message` field.
    Status { status: StatusCode, message: String },
}

impl ApiError {
    pub(crate) fn is_not_found(&self) -> bool {
        matches!(self, ApiError::Status { status, .. } if *status == StatusCode::NOT_FOUND)
    }

    pub(crate) fn message(&self) -> &str {
        match self {
            ApiError::Transport(m) => m,
            ApiError::Status { message, .. } => message,
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

/// A libpod API endpoint reachable at a unix socket.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    socket: PathBuf,
}

impl Client {
    pub(crate) fn new(socket: impl Into<PathBuf>) -> Self {
        Client {
            socket: socket.into(),
        }
    }

    pub(crate) fn socket(&self) -> &Path {
        &self.socket
    }

    /// `GET /_ping`, bounded by `within` (a hung service must not hang the caller).
    pub(crate) async fn ping(&self, within: Duration) -> Result<(), ApiError> {
        match tokio::time::timeout(within, self.call(Method::GET, "/_ping", None)).await {
            Ok(r) => r.map(drop),
            Err(_) => Err(ApiError::Transport(format!(
                "no answer to _ping within {} ms",
                within.as_millis()
            ))),
        }
    }

    /// A request with an optional JSON body; the whole response body on success.
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        json: Option<&serde_json::Value>,
    ) -> Result<Bytes, ApiError> {
        let builder = request(method, path);
        let req = match json {
            Some(v) => builder
                .header(header::CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(v.to_string()))),
            None => builder.body(Full::new(Bytes::new())),
        }
        .map_err(|e| ApiError::Transport(format!("building request {path}: {e}")))?;
        let body = self.send(req).await?;
        collect(body).await
    }

    /// [`Client::call`] and parse the JSON answer.
    pub(crate) async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        json: Option<&serde_json::Value>,
    ) -> Result<T, ApiError> {
        let bytes = self.call(method, path, json).await?;
        serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::Transport(format!("unexpected answer from {path}: {e}: {}", snippet(&bytes)))
        })
    }

    /// A request whose answer is read as it arrives (`logs?follow=true`, or `attach`, whose
    /// hijacked connection is an HTTP body delimited by the connection's close).
    pub(crate) async fn stream(&self, method: Method, path: &str) -> Result<Incoming, ApiError> {
        let req = request(method, path)
            .body(Full::new(Bytes::new()))
            .map_err(|e| ApiError::Transport(format!("building request {path}: {e}")))?;
        self.send(req).await
    }

    /// A `POST` whose body is a file, streamed (image tarballs can be gigabytes).
    pub(crate) async fn upload(
        &self,
        path: &str,
        content_type: &str,
        file: tokio::fs::File,
        len: u64,
    ) -> Result<Bytes, ApiError> {
        let req = request(Method::POST, path)
            .header(header::CONTENT_TYPE, content_type)
            .header(header::CONTENT_LENGTH, len)
            .body(FileBody::new(file, len))
            .map_err(|e| ApiError::Transport(format!("building request {path}: {e}")))?;
        let body = self.send(req).await?;
        collect(body).await
    }

    /// Sends `req` on a new connection; a non-2xx answer becomes [`ApiError::Status`].
    async fn send<B>(&self, req: Request<B>) -> Result<Incoming, ApiError>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let what = format!("{} {}", req.method(), req.uri());
        let stream = UnixStream::connect(&self.socket)
            .await
            .map_err(|e| ApiError::Transport(format!("connecting to {}: {e}", self.socket.display())))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| ApiError::Transport(format!("{what}: {e}")))?;
        // The connection task drives the socket until the response body is read or dropped.
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| ApiError::Transport(format!("{what}: {e}")))?;
        let status = resp.status();
        let body = resp.into_body();
        if status.is_success() {
            return Ok(body);
        }
        let bytes = collect(body).await.unwrap_or_default();
        Err(ApiError::Status {
            status,
            message: error_message(&bytes).unwrap_or_else(|| format!("{what}: {status}")),
        })
    }
}

fn request(method: Method, path: &str) -> hyper::http::request::Builder {
    Request::builder()
        .method(method)
        .uri(format!("{API}{path}"))
        // HTTP/1.1 wants a Host; the service ignores it.
        .header(header::HOST, "podman")
}

async fn collect(mut body: Incoming) -> Result<Bytes, ApiError> {
    let mut buf = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiError::Transport(format!("reading response: {e}")))?;
        if let Some(data) = frame.data_ref() {
            if buf.len() + data.len() > MAX_RESPONSE {
                return Err(ApiError::Transport(format!(
                    "response larger than {MAX_RESPONSE} bytes"
                )));
            }
            buf.extend_from_slice(data);
        }
    }
    Ok(Bytes::from(buf))
}

/// The `message` of libpod's error body `{"cause", "message", "response"}`.
pub(crate) fn error_message(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        message: Option<String>,
        cause: Option<String>,
    }
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(e) => e.message.or(e.cause).filter(|m| !m.is_empty()),
        Err(_) if body.is_empty() => None,
        Err(_) => Some(snippet(body)),
    }
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

/// A request body read from a file in 256 KiB frames.
struct FileBody {
    file: tokio::fs::File,
    buf: Vec<u8>,
    remaining: u64,
}

impl FileBody {
    fn new(file: tokio::fs::File, len: u64) -> Self {
        FileBody {
            file,
            buf: vec![0; 256 << 10],
            remaining: len,
        }
    }
}

impl Body for FileBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        let mut rb = ReadBuf::new(&mut this.buf);
        match Pin::new(&mut this.file).poll_read(cx, &mut rb) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            Poll::Ready(Ok(())) => {
                let n = rb.filled().len();
                if n == 0 {
                    // The file shrank under us: the Content-Length we sent is now a lie.
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the file got shorter while it was being sent",
                    ))));
                }
                let n = n.min(usize::try_from(this.remaining).unwrap_or(usize::MAX));
                this.remaining -= n as u64;
                Poll::Ready(Some(Ok(Frame::data(Bytes::copy_from_slice(&rb.filled()[..n])))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpod_error_bodies_give_their_message() {
        let body = br#"{"cause":"no such container","message":"no container with name or ID \"x\" found: no such container","response":404}"#;
        assert_eq!(
            error_message(body).as_deref(),
            Some("no container with name or ID \"x\" found: no such container")
        );
        assert_eq!(error_message(b"").as_deref(), None);
        assert_eq!(error_message(b"plain text\n").as_deref(), Some("plain text"));
    }
}
