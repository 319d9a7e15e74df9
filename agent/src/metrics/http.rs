//! The axum middleware that times every HTTP request (and, by route, MCP's).

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;

use super::{global, RequestLabel};

/// Observes the time until the response head, labelled by the matched route (never the raw
/// path, so ids in paths cannot blow up the label set).
pub async fn track_http(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = req.method().as_str().to_string();
    let start = Instant::now();
    let resp = next.run(req).await;
    let label = RequestLabel {
        method,
        status: resp.status().as_u16().to_string(),
        route,
    };
    let m = global();
    let family = if label.route.starts_with("/mcp") {
        &m.mcp
    } else {
        &m.http
    };
    family
        .get_or_create(&label)
        .observe(start.elapsed().as_secs_f64());
    resp
}
