//! The HTTP listener: health, readiness, the read-only JSON API (v1) and MCP at `/mcp`
//! (`crate::mcp::http`). Handlers only adapt
//! `NodeApi` to HTTP; errors are `{"error": {"code", "message"}}` with a fitting status.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::api::{ApiError, NodeApi};

pub fn router(api: NodeApi) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/api/v1/cluster", get(cluster))
        .route("/api/v1/nodes", get(nodes))
        .route("/api/v1/nodes/{key}", get(node))
        .fallback(not_found)
        .with_state(api)
}

/// `mcp_hosts`: the configured `mcp.allowed_hosts`.
pub async fn serve(
    listener: TcpListener,
    api: NodeApi,
    mcp_hosts: Vec<String>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mcp = crate::mcp::http::router(api.clone(), mcp_hosts, &shutdown);
    axum::serve(listener, router(api).merge(mcp))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await?;
    Ok(())
}

struct HttpError(ApiError);

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let code = match &self.0 {
            ApiError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            ApiError::PermissionDenied(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::InvalidArgument { .. } => StatusCode::BAD_REQUEST,
            ApiError::Rejected(_) => StatusCode::CONFLICT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (
            code,
            Json(json!({ "error": { "code": self.0.code(), "message": self.0.to_string() } })),
        )
            .into_response()
    }
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

async fn cluster(State(api): State<NodeApi>) -> Response {
    Json(api.status().await).into_response()
}

async fn nodes(State(api): State<NodeApi>) -> Response {
    let nodes: Vec<serde_json::Value> = api.list_nodes().iter().map(|n| with_live(&api, n)).collect();
    Json(json!({ "nodes": nodes })).into_response()
}

/// The node record plus what this coordinator last heard from it (not replicated).
fn with_live(api: &NodeApi, n: &cortex_model::node::NodeRecord) -> serde_json::Value {
    let mut v = serde_json::to_value(n).unwrap_or_default();
    if let (Some(obj), Some(seen)) = (v.as_object_mut(), api.liveness().last_seen(n.id)) {
        obj.insert(
            "live".into(),
            json!({
                "heartbeat_age_ms": seen.at.elapsed().as_millis() as u64,
                "resources": seen.resources,
            }),
        );
    }
    v
}

async fn node(State(api): State<NodeApi>, Path(key): Path<String>) -> Response {
    match api.get_node(&key) {
        Ok(n) => Json(with_live(&api, &n)).into_response(),
        Err(e) => HttpError(e).into_response(),
    }
}

async fn not_found(uri: axum::http::Uri) -> Response {
    HttpError(ApiError::NotFound(format!("no such endpoint: {}", uri.path()))).into_response()
}
