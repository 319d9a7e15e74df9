//! The live status page at `/`: embedded assets (`assets.rs`), one shared SSE producer
//! (`feed.rs`, `sse.rs`), logins with a session cookie and CSRF token (`session.rs`,
//! `csrf.rs`), and the buttons' requests (`actions.rs`). Every handler adapts `NodeApi`; the
//! JSON the page renders is shaped in `view.rs`. User guide: docs/status-page.md.
//!
//! Routes (all under `/ui/` except the page itself):
//! `GET /`, `GET /ui/{asset}`, `GET /ui/snapshot`, `GET /ui/events` (SSE), `GET /ui/session`,
//! `POST /ui/login`, `POST /ui/logout`, `POST /ui/nodes/{id}/{approve|reject|drain}`,
//! `POST /ui/tasks/{id}/cancel`, `GET /ui/tasks/{id}/logs`, `GET /ui/nodes/{id}/history`.

mod actions;
mod assets;
mod csrf;
mod feed;
mod session;
mod sse;
mod view;

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio_util::sync::CancellationToken;

use crate::api::NodeApi;

/// What every page handler shares.
pub struct Web {
    api: NodeApi,
    sessions: session::Sessions,
    feed: Arc<feed::Feed>,
    /// Ends open event streams, so they do not hold the listener's graceful shutdown.
    shutdown: CancellationToken,
}

/// The page's routes, to merge into the HTTP listener's router. Starts the feed's producer
/// (it stops with `shutdown`).
pub fn router(api: NodeApi, shutdown: &CancellationToken) -> Router {
    let web = Arc::new(Web {
        feed: feed::Feed::start(api.clone(), shutdown),
        api,
        sessions: session::Sessions::default(),
        shutdown: shutdown.child_token(),
    });
    Router::new()
        .route("/", get(assets::index))
        .route("/ui/{asset}", get(assets::file))
        .route("/ui/snapshot", get(snapshot))
        .route("/ui/events", get(sse::events))
        .route("/ui/session", get(actions::session))
        .route("/ui/login", post(actions::login))
        .route("/ui/logout", post(actions::logout))
        .route("/ui/nodes/{id}/history", get(actions::node_history))
        .route("/ui/nodes/{id}/{action}", post(actions::node_action))
        .route("/ui/tasks/{id}/cancel", post(actions::cancel_task))
        .route("/ui/tasks/{id}/logs", get(actions::task_logs))
        .with_state(web)
}

/// `GET /ui/snapshot`: what the event stream's first frame holds, as plain JSON.
async fn snapshot(State(web): State<Arc<Web>>) -> Response {
    let mut r = web.feed.snapshot_json().await.into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}
