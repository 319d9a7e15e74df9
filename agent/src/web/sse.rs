//! `GET /ui/events`: the page's live feed as Server-Sent Events. A client first gets a full
//! `snapshot`, then each `diff` that applies on top of what it has; if it fell behind (a gap in
//! `base`, or the broadcast channel dropped frames for it) it gets a fresh snapshot instead.
//! Frames are the producer's shared bytes (`feed.rs`); this handler only forwards them.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use super::feed::{Feed, Frame};
use super::Web;

/// A comment line this often keeps proxies from closing an idle stream and finds dead clients.
const KEEPALIVE: Duration = Duration::from_secs(15);

struct Client {
    feed: Arc<Feed>,
    rx: tokio::sync::broadcast::Receiver<Arc<Frame>>,
    seq: u64,
    first: Option<Arc<Frame>>,
    shutdown: CancellationToken,
}

impl Client {
    async fn resync(&mut self) -> Bytes {
        let f = self.feed.full().await;
        self.seq = f.seq;
        f.bytes.clone()
    }

    /// The next bytes to send, or `None` when the stream should end.
    async fn next(&mut self) -> Option<Bytes> {
        if let Some(f) = self.first.take() {
            self.seq = f.seq;
            return Some(f.bytes.clone());
        }
        loop {
            let r = tokio::select! {
                () = self.shutdown.cancelled() => return None,
                r = tokio::time::timeout(KEEPALIVE, self.rx.recv()) => r,
            };
            match r {
                Err(_) => return Some(Bytes::from_static(b": keep-alive\n\n")),
                Ok(Ok(f)) if f.seq <= self.seq => continue,
                Ok(Ok(f)) if f.base == self.seq => {
                    self.seq = f.seq;
                    return Some(f.bytes.clone());
                }
                Ok(Ok(_)) | Ok(Err(RecvError::Lagged(_))) => return Some(self.resync().await),
                Ok(Err(RecvError::Closed)) => return None,
            }
        }
    }
}

pub async fn events(State(web): State<Arc<Web>>) -> Response {
    // Subscribe before taking the snapshot, so no diff after it can be missed.
    let rx = web.feed.subscribe();
    let first = web.feed.full().await;
    let client = Client {
        feed: web.feed.clone(),
        rx,
        seq: first.seq,
        first: Some(first),
        shutdown: web.shutdown.clone(),
    };
    let stream = futures::stream::unfold(client, |mut c| async move {
        c.next().await.map(|b| (Ok::<_, std::convert::Infallible>(b), c))
    });
    let mut r = Body::from_stream(stream).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store"),
    );
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    r
}
