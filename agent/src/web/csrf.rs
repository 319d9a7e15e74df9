//! What a page mutation must carry before `NodeApi` sees it:
//!
//! 1. no cross-site signal: an `Origin` header, when present, is this coordinator's own origin
//!    (the `Host` the request was sent to), and `Sec-Fetch-Site`, when present, is not
//!    `cross-site`/`same-site` — 403 otherwise;
//! 2. a live session cookie — 401 otherwise ("log in");
//! 3. the session's CSRF token in the `X-Cortex-CSRF` header — 403 otherwise. A cross-site page
//!    can neither read the token nor set a custom header without a CORS preflight, which this
//!    listener never grants;
//! 4. the session's bearer token, checked again now with the scope the action needs.

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use cortex_model::token::Scope;
use serde_json::json;

use super::session::{same_secret, Session};
use super::Web;
use crate::api::{ApiError, Caller};
use crate::mcp::http::{same_origin, split_authority};

pub const HEADER: &str = "x-cortex-csrf";

/// A refusal as the page's JSON error: `{"error": {"code", "message"}}`.
pub struct Refusal(pub StatusCode, pub &'static str, pub String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (
            self.0,
            axum::Json(json!({ "error": { "code": self.1, "message": self.2 } })),
        )
            .into_response()
    }
}

impl From<ApiError> for Refusal {
    fn from(e: ApiError) -> Self {
        Refusal(e.http_status(), e.code(), e.to_string())
    }
}

/// Rule 1: refuses requests a browser marks as coming from another site.
pub fn same_site(headers: &HeaderMap) -> Result<(), Refusal> {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        if site != "same-origin" && site != "none" {
            return Err(Refusal(
                StatusCode::FORBIDDEN,
                "cross_site",
                format!("refused a {site} request: page actions come only from this coordinator's own page"),
            ));
        }
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or("");
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(split_authority);
    match host {
        Some(h) if same_origin(origin, &h) => Ok(()),
        _ => Err(Refusal(
            StatusCode::FORBIDDEN,
            "origin_not_allowed",
            format!("Origin {origin:?} is not this coordinator's; page actions come only from its own page"),
        )),
    }
}

/// Rules 1–4: the caller behind a page mutation that needs `need`.
pub fn caller(web: &Web, headers: &HeaderMap, need: Scope) -> Result<(Caller, Session), Refusal> {
    same_site(headers)?;
    let Some(session) = web.sessions.get(headers) else {
        return Err(Refusal(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "log in first: page actions need a session (log in with a token from `cortex token create --kind api --scope operate`)"
                .into(),
        ));
    };
    let sent = headers.get(HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !same_secret(sent, &session.csrf) {
        return Err(Refusal(
            StatusCode::FORBIDDEN,
            "csrf",
            format!("missing or wrong {HEADER} header: reload the page and try again"),
        ));
    }
    let c = web.sessions.caller(&web.api, headers, &session, need)?;
    Ok((c, session))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().expect("header value"));
        }
        h
    }

    #[test]
    fn cross_site_requests_are_refused() {
        assert!(same_site(&headers(&[("host", "10.0.0.1:7070")])).is_ok());
        assert!(same_site(&headers(&[
            ("host", "10.0.0.1:7070"),
            ("origin", "http://10.0.0.1:7070")
        ]))
        .is_ok());
        let r = same_site(&headers(&[
            ("host", "10.0.0.1:7070"),
            ("origin", "http://evil.example"),
        ]));
        assert!(matches!(
            r,
            Err(Refusal(StatusCode::FORBIDDEN, "origin_not_allowed", _))
        ));
        let r = same_site(&headers(&[
            ("host", "10.0.0.1:7070"),
            ("sec-fetch-site", "cross-site"),
        ]));
        assert!(matches!(r, Err(Refusal(StatusCode::FORBIDDEN, "cross_site", _))));
        let r = same_site(&headers(&[("origin", "http://10.0.0.1:7070")]));
        assert!(r.is_err(), "an Origin with no Host to compare with is refused");
    }
}
