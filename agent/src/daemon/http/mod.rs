//! The HTTP listener: health, readiness, the JSON API (v1, `routes.rs` is its table),
//! Prometheus `/metrics`, MCP at `/mcp` (`crate::mcp::http`) and the status page
//! (`crate::web`). Handlers only adapt `NodeApi` to HTTP; errors are
//! `{"error": {"code", "message"}}` with a fitting status.

mod nodes;
mod routes;
mod support;
mod tasks;
mod tokens;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::api::{ApiError, NodeApi};

use support::HttpError;

pub fn router(api: NodeApi) -> Router {
    let mut r = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics));
    for route in routes::table() {
        r = r.route(route.info.path, (route.handler)());
    }
    r.fallback(not_found).with_state(api)
}

/// `mcp_hosts`: the configured `mcp.allowed_hosts`.
pub async fn serve(
    listener: TcpListener,
    api: NodeApi,
    mcp_hosts: Vec<String>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mcp = crate::mcp::http::router(api.clone(), mcp_hosts, &shutdown);
    let app = router(api.clone())
        .merge(mcp)
        .merge(crate::web::router(api, &shutdown))
        .layer(axum::middleware::from_fn(crate::metrics::track_http));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await?;
    Ok(())
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(api): State<NodeApi>) -> Response {
    let r = api.readiness().await;
    let code = if r.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(r)).into_response()
}

/// Prometheus text format. Open like the other reads: see docs/api.md ("/metrics").
async fn metrics(State(api): State<NodeApi>) -> Response {
    match crate::metrics::render(&api).await {
        Ok(body) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(e) => HttpError(ApiError::Internal(format!("cannot encode metrics: {e}"))).into_response(),
    }
}

async fn not_found(uri: axum::http::Uri) -> Response {
    HttpError(ApiError::NotFound(format!(
        "no such endpoint: {}; GET /api/v1 lists the routes",
        uri.path()
    )))
    .into_response()
}
