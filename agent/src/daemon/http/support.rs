//! What every JSON API handler shares: the error body, the bearer token, and JSON input whose
//! errors name the field.

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use cortex_model::token::Scope;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::json;

use crate::api::{ApiError, Caller, NodeApi};

pub struct HttpError(pub ApiError);

impl From<ApiError> for HttpError {
    fn from(e: ApiError) -> Self {
        HttpError(e)
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let code = self.0.http_status();
        let body = Json(json!({ "error": { "code": self.0.code(), "message": self.0.to_string() } }));
        if code == StatusCode::UNAUTHORIZED {
            let challenge = [(axum::http::header::WWW_AUTHENTICATE, "Bearer")];
            return (code, challenge, body).into_response();
        }
        (code, body).into_response()
    }
}

pub type HttpResult = Result<Response, HttpError>;

pub fn ok<T: Serialize>(v: &T) -> HttpResult {
    Ok(Json(v).into_response())
}

pub fn created<T: Serialize>(v: &T) -> HttpResult {
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

/// 202: the request was recorded and runs in the background.
pub fn accepted<T: Serialize>(v: &T) -> HttpResult {
    Ok((StatusCode::ACCEPTED, Json(v)).into_response())
}

/// The token of `Authorization: Bearer <token>`, if any.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer "))
}

/// Checks the bearer token for `need`. Every write calls this before it reads its body.
pub fn caller(api: &NodeApi, headers: &HeaderMap, need: Scope) -> Result<Caller, HttpError> {
    Ok(api.authorize(bearer(headers), need)?)
}

/// A JSON request body; an empty body is `{}`. Errors name the path inside the document
/// (`tasks[0].kind`), or `body` when the document itself is malformed.
pub fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, HttpError> {
    let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        bytes
    };
    let de = &mut serde_json::Deserializer::from_slice(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        // "?": serde_path_to_error knows no position (e.g. the document ends early).
        let field = if path.is_empty() || path == "." || path == "?" {
            "body".to_string()
        } else {
            path
        };
        HttpError(ApiError::invalid(&field, inner.to_string()))
    })
}

/// A query string rejected by axum becomes a 400 that names the parameter.
pub fn query_error(e: axum::extract::rejection::QueryRejection) -> HttpError {
    HttpError(ApiError::invalid("query", e.body_text()))
}
