//! `/mcp` on a coordinator's HTTP listener: rmcp's streamable HTTP service behind a guard that
//! checks, in order, the `Host` header (DNS rebinding), the `Origin` header (cross-site
//! browsers) and the bearer token. A request that passes carries its `Caller` to the tools.
//!
//! Host rule: an IP address (a rebinding attack always sends the attacker's own name, never an
//! address), `localhost`, this machine's host name, or a name in `mcp.allowed_hosts`. Origin rule: absent (not a browser), or
//! the very origin the request is addressed to (a page served by this coordinator).

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use cortex_model::token::Scope;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::CortexMcp;
use crate::api::{ApiError, NodeApi};

struct Guard {
    api: NodeApi,
    /// Lower-case host names this coordinator answers to, besides IP addresses.
    names: Vec<String>,
}

/// The `/mcp` route. Sessions end when `shutdown` fires, so open event streams do not hold
/// the listener's graceful shutdown.
pub fn router(api: NodeApi, allowed_hosts: Vec<String>, shutdown: &CancellationToken) -> Router {
    let mut names = own_names();
    names.extend(allowed_hosts.iter().map(|h| h.to_ascii_lowercase()));
    let guard = Arc::new(Guard {
        api: api.clone(),
        names,
    });
    // rmcp's own Host check allows only loopback names; the guard applies the rule above.
    let config = StreamableHttpServerConfig::default()
        .disable_allowed_hosts()
        .with_cancellation_token(shutdown.child_token());
    let service = StreamableHttpService::new(
        move || Ok(CortexMcp::local(api.clone())),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    Router::new()
        .route_service("/mcp", service)
        .layer(axum::middleware::from_fn_with_state(guard, check))
}

fn own_names() -> Vec<String> {
    let mut names = vec!["localhost".to_string()];
    if let Ok(h) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let h = h.trim().to_ascii_lowercase();
        if let Some((short, _)) = h.split_once('.') {
            names.push(short.to_string());
        }
        if !h.is_empty() {
            names.push(h);
        }
    }
    names
}

fn refuse(code: StatusCode, error: &str, message: String) -> Response {
    let mut r = (
        code,
        axum::Json(json!({ "error": { "code": error, "message": message } })),
    )
        .into_response();
    if code == StatusCode::UNAUTHORIZED {
        let challenge = if error == "invalid_token" {
            "Bearer realm=\"cortex\", error=\"invalid_token\""
        } else {
            "Bearer realm=\"cortex\""
        };
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static(challenge),
        );
    }
    r
}

/// `host[:port]` → (lower-case host without brackets, port).
pub(crate) fn split_authority(a: &str) -> Option<(String, Option<u16>)> {
    let auth: axum::http::uri::Authority = a.parse().ok()?;
    let host = auth.host().trim_start_matches('[').trim_end_matches(']');
    Some((host.to_ascii_lowercase(), auth.port_u16()))
}

impl Guard {
    fn host_allowed(&self, host: &str) -> bool {
        host.parse::<IpAddr>().is_ok() || self.names.iter().any(|n| n == host)
    }
}

/// The Origin's (host, port) must be the request's own, ports defaulted by scheme.
pub(crate) fn same_origin(origin: &str, host: &(String, Option<u16>)) -> bool {
    let Ok(uri) = origin.parse::<axum::http::Uri>() else {
        return false;
    };
    let default = match uri.scheme_str() {
        Some("http") => 80,
        Some("https") => 443,
        _ => return false,
    };
    let Some((oh, op)) = uri.authority().and_then(|a| split_authority(a.as_str())) else {
        return false;
    };
    oh == host.0 && op.unwrap_or(default) == host.1.unwrap_or(default)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

async fn check(State(g): State<Arc<Guard>>, mut req: Request, next: Next) -> Response {
    let headers = req.headers();
    let host_header = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .unwrap_or_default();
    let Some(host) = split_authority(&host_header) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "bad_host",
            format!("Host header {host_header:?} is not valid"),
        );
    };
    if !g.host_allowed(&host.0) {
        tracing::warn!(host = %host.0, "mcp: refused a request for a host name this coordinator does not have (DNS rebinding?)");
        return refuse(
            StatusCode::FORBIDDEN,
            "host_not_allowed",
            format!(
                "Host {:?} is not a name of this coordinator; use its IP address or one of: {} \
                 (more with the mcp.allowed_hosts setting)",
                host.0,
                g.names.join(", ")
            ),
        );
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        if !same_origin(origin, &host) {
            tracing::warn!(origin, "mcp: refused a cross-origin request");
            return refuse(
                StatusCode::FORBIDDEN,
                "origin_not_allowed",
                format!("Origin {origin:?} is not this coordinator's; MCP clients send no Origin header"),
            );
        }
    }
    let caller = match g.api.authorize(bearer(headers), Scope::Read) {
        Ok(c) => c,
        Err(e) => {
            let (code, error) = match &e {
                ApiError::Unauthenticated(_) if bearer(headers).is_none() => {
                    (StatusCode::UNAUTHORIZED, "unauthenticated")
                }
                ApiError::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, "invalid_token"),
                ApiError::PermissionDenied(_) => (StatusCode::FORBIDDEN, "permission_denied"),
                _ => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            };
            let message = if bearer(headers).is_none() {
                "MCP needs `Authorization: Bearer <token>` (any scope: read sees the read tools, operate \
                 and admin all of them); mint one with `cortex token create --kind api --scope operate`"
                    .to_string()
            } else {
                e.to_string()
            };
            return refuse(code, error, message);
        }
    };
    req.extensions_mut().insert(caller);
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_must_be_the_requests_own() {
        let host = |h: &str| split_authority(h).expect("authority");
        assert!(same_origin("http://10.0.0.5:7070", &host("10.0.0.5:7070")));
        assert!(same_origin("http://coord", &host("coord:80")));
        assert!(same_origin("https://[::1]:7070", &host("[::1]:7070")));
        assert!(!same_origin("http://evil.example", &host("10.0.0.5:7070")));
        assert!(!same_origin("http://10.0.0.5:8080", &host("10.0.0.5:7070")));
        assert!(!same_origin("null", &host("10.0.0.5:7070")));
    }

    #[test]
    fn authorities_split_into_host_and_port() {
        assert_eq!(split_authority("[::1]:7070"), Some(("::1".into(), Some(7070))));
        assert_eq!(split_authority("Coord"), Some(("coord".into(), None)));
        assert!("::1".parse::<IpAddr>().is_ok());
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "bearer  cxt_a_b".parse().expect("value"));
        assert_eq!(bearer(&h), Some("cxt_a_b"));
        h.insert(header::AUTHORIZATION, "Basic abc".parse().expect("value"));
        assert_eq!(bearer(&h), None);
    }
}
