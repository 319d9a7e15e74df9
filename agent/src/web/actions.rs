//! The page's requests other than the event stream: log in and out, the approve / reject /
//! drain / cancel buttons, a task's log and a node's CPU/memory history. Each one adapts a
//! `NodeApi` call; what is allowed is decided there.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use cortex_model::token::Scope;
use serde::Deserialize;
use serde_json::json;

use super::csrf::{self, Refusal};
use super::session::set_cookie;
use super::{view, Web};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    token: String,
}

/// `POST /ui/login {"token": "..."}` → the session cookie, and the CSRF token in the body.
pub async fn login(State(web): State<Arc<Web>>, headers: HeaderMap, body: Option<Json<Login>>) -> Response {
    if let Err(r) = csrf::same_site(&headers) {
        return r.into_response();
    }
    let Some(Json(body)) = body else {
        return Refusal(
            StatusCode::BAD_REQUEST,
            "invalid_argument",
            "token: send a JSON body {\"token\": \"<bearer token>\"}".into(),
        )
        .into_response();
    };
    if body.token.trim().is_empty() {
        return Refusal(
            StatusCode::BAD_REQUEST,
            "invalid_argument",
            "token: must not be empty".into(),
        )
        .into_response();
    }
    match web.sessions.login(&web.api, &body.token) {
        Ok((cookie, s)) => {
            tracing::info!(token_id = %s.token_id, "status page: logged in");
            let mut r = Json(json!({
                "token_id": s.token_id,
                "scope": s.scope.as_str(),
                "csrf": s.csrf,
            }))
            .into_response();
            r.headers_mut()
                .insert(header::SET_COOKIE, set_cookie(Some(&cookie)));
            r
        }
        Err(e) => Refusal::from(e).into_response(),
    }
}

/// `POST /ui/logout`: forgets the session and clears the cookie.
pub async fn logout(State(web): State<Arc<Web>>, headers: HeaderMap) -> Response {
    if let Err(r) = csrf::same_site(&headers) {
        return r.into_response();
    }
    web.sessions.logout(&headers);
    let mut r = Json(json!({ "logged_in": false })).into_response();
    r.headers_mut().insert(header::SET_COOKIE, set_cookie(None));
    r
}

/// `GET /ui/session`: who the cookie logs in as, with the CSRF token (a same-origin read: other
/// sites cannot read the answer).
pub async fn session(State(web): State<Arc<Web>>, headers: HeaderMap) -> Response {
    let live = web
        .sessions
        .get(&headers)
        .filter(|s| web.sessions.caller(&web.api, &headers, s, Scope::Read).is_ok());
    let mut r = match live {
        Some(s) => Json(json!({
            "logged_in": true,
            "token_id": s.token_id,
            "scope": s.scope.as_str(),
            "csrf": s.csrf,
        })),
        None => Json(json!({ "logged_in": false })),
    }
    .into_response();
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    r
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Reason {
    #[serde(default)]
    reason: String,
}

/// `POST /ui/nodes/{id}/{approve|reject|drain}`.
pub async fn node_action(
    State(web): State<Arc<Web>>,
    Path((key, action)): Path<(String, String)>,
    headers: HeaderMap,
    body: Option<Json<Reason>>,
) -> Response {
    let (caller, session) = match csrf::caller(&web, &headers, Scope::Operate) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    let reason = body.map(|Json(b)| b.reason).unwrap_or_default();
    let result = match action.as_str() {
        "approve" => web.api.approve_node(&caller, &key).await,
        "reject" => web.api.reject_node(&caller, &key, &reason).await,
        "drain" => web.api.drain_node(&caller, &key).await,
        "undrain" => web.api.undrain_node(&caller, &key).await,
        other => {
            return Refusal(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no node action {other:?}: use approve, reject, drain or undrain"),
            )
            .into_response()
        }
    };
    match result {
        Ok(n) => {
            tracing::info!(node = %n.name, action, token_id = %session.token_id, "status page: node action");
            Json(json!({ "node": view::node(&n, 0, &[], None) })).into_response()
        }
        Err(e) => Refusal::from(e).into_response(),
    }
}

/// `POST /ui/tasks/{id}/cancel`.
pub async fn cancel_task(
    State(web): State<Arc<Web>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (caller, session) = match csrf::caller(&web, &headers, Scope::Operate) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    let reason = format!("cancelled on the status page (token {})", session.token_id);
    match web.api.cancel_tasks(&caller, vec![id], &reason).await {
        Ok(ids) => Json(json!({ "cancelled": ids })).into_response(),
        Err(e) => Refusal::from(e).into_response(),
    }
}

#[derive(Deserialize)]
pub struct LogQuery {
    #[serde(default)]
    offset: u64,
}

/// Most log bytes one page request returns.
const LOG_PAGE: u64 = 64 * 1024;

/// `GET /ui/tasks/{id}/logs?offset=N`: the next slice of a task's log as text, and whether the
/// task has finished (the page polls while it has not).
pub async fn task_logs(
    State(web): State<Arc<Web>>,
    Path(id): Path<String>,
    q: Result<Query<LogQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = q else {
        return Refusal(
            StatusCode::BAD_REQUEST,
            "invalid_argument",
            "offset: must be a whole number of bytes".into(),
        )
        .into_response();
    };
    let task = match web.api.get_task(&id) {
        Ok(t) => t,
        Err(e) => return Refusal::from(e).into_response(),
    };
    match web.api.task_logs(&id, q.offset, LOG_PAGE) {
        Ok(slice) => {
            let chunks: Vec<_> = slice
                .chunks
                .iter()
                .map(|c| json!({ "stream": c.stream.as_str(), "text": String::from_utf8_lossy(&c.data) }))
                .collect();
            Json(json!({
                "task": view::task(&task, &Default::default()),
                "chunks": chunks,
                "next_offset": slice.next_offset,
                "size": slice.size,
                "evicted_below": slice.evicted_below,
                "done": task.state.is_terminal() && slice.next_offset >= slice.size,
            }))
            .into_response()
        }
        Err(e) => Refusal::from(e).into_response(),
    }
}

/// `GET /ui/nodes/{id}/history`: the node's CPU/memory samples over the last minutes.
pub async fn node_history(State(web): State<Arc<Web>>, Path(key): Path<String>) -> Response {
    match web.api.get_node(&key) {
        Ok(n) => {
            let points: Vec<_> = web
                .feed
                .node_history(n.id)
                .iter()
                .map(|(t, cpu, mem)| json!([t, cpu, mem]))
                .collect();
            Json(json!({ "id": n.id.to_string(), "name": n.name, "points": points })).into_response()
        }
        Err(e) => Refusal::from(e).into_response(),
    }
}
