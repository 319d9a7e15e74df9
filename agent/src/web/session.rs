//! Page logins: a bearer token (any scope) is exchanged for a session cookie
//! (`HttpOnly; SameSite=Strict`) and a per-session CSRF token the page sends back in a header
//! with every mutation.
//!
//! Sessions live in this coordinator's memory (they are not replicated: a restart or another
//! coordinator means logging in again). The bearer token is kept with the session, never
//! logged, and checked again through `NodeApi::authorize` on every mutation, so revoking or
//! expiring the token ends the session's powers at once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap, HeaderValue};
use cortex_model::token::Scope;
use rand::RngCore;

use crate::api::{sha256_hex, ApiError, Caller, NodeApi};

pub const COOKIE: &str = "cortex_session";
/// A session ends this long after login, or after this long unused.
pub const LIFETIME: Duration = Duration::from_secs(12 * 3600);
pub const IDLE: Duration = Duration::from_secs(2 * 3600);
/// At most this many sessions per coordinator; the least recently used goes first.
const MAX_SESSIONS: usize = 10_000;

#[derive(Clone)]
pub struct Session {
    bearer: String,
    pub csrf: String,
    pub token_id: String,
    pub scope: Scope,
    created: Instant,
    used: Instant,
}

impl Session {
    fn expired(&self) -> bool {
        self.created.elapsed() > LIFETIME || self.used.elapsed() > IDLE
    }
}

/// Sessions by the SHA-256 of their cookie value (a memory dump does not give cookies away).
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

fn random_hex() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// Equal strings, compared in time that does not depend on where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Sessions {
    /// Checks `bearer` and opens a session: returns the cookie value and the session.
    pub fn login(&self, api: &NodeApi, bearer: &str) -> Result<(String, Session), ApiError> {
        let caller = api.authorize(Some(bearer), Scope::Read)?;
        let cookie = random_hex();
        let now = Instant::now();
        let s = Session {
            bearer: bearer.trim().to_string(),
            csrf: random_hex(),
            token_id: caller.token_id,
            scope: caller.scope,
            created: now,
            used: now,
        };
        let mut map = self
            .map
            .lock()
            .map_err(|_| ApiError::Internal("session table poisoned".into()))?;
        map.retain(|_, s| !s.expired());
        if map.len() >= MAX_SESSIONS {
            if let Some(oldest) = map.iter().min_by_key(|(_, s)| s.used).map(|(k, _)| k.clone()) {
                map.remove(&oldest);
            }
        }
        map.insert(sha256_hex(&cookie), s.clone());
        Ok((cookie, s))
    }

    /// The live session the request's cookie names, if any (touching it).
    pub fn get(&self, headers: &HeaderMap) -> Option<Session> {
        let cookie = cookie_value(headers)?;
        let mut map = self.map.lock().ok()?;
        let key = sha256_hex(cookie);
        match map.get_mut(&key) {
            Some(s) if !s.expired() => {
                s.used = Instant::now();
                Some(s.clone())
            }
            Some(_) => {
                map.remove(&key);
                None
            }
            None => None,
        }
    }

    pub fn logout(&self, headers: &HeaderMap) {
        if let (Some(cookie), Ok(mut map)) = (cookie_value(headers), self.map.lock()) {
            map.remove(&sha256_hex(cookie));
        }
    }

    /// The session's token, checked again now (revoked, expired, or short of `need`: refused).
    pub fn caller(
        &self,
        api: &NodeApi,
        headers: &HeaderMap,
        s: &Session,
        need: Scope,
    ) -> Result<Caller, ApiError> {
        let r = api.authorize(Some(&s.bearer), need);
        if matches!(r, Err(ApiError::Unauthenticated(_))) {
            self.logout(headers);
        }
        r
    }
}

/// The session cookie's value from the `Cookie` header(s).
pub fn cookie_value(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// `Set-Cookie` for a new session, or (with `None`) one that deletes it.
pub fn set_cookie(value: Option<&str>) -> HeaderValue {
    let s = match value {
        Some(v) => format!(
            "{COOKIE}={v}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
            LIFETIME.as_secs()
        ),
        None => format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    };
    HeaderValue::from_str(&s).unwrap_or_else(|_| HeaderValue::from_static("cortex_session=; Max-Age=0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "a=1; cortex_session=abc ; b=2".parse().expect("header"),
        );
        assert_eq!(cookie_value(&h), Some("abc"));
        h.insert(header::COOKIE, "cortex_sessionx=1".parse().expect("header"));
        assert_eq!(cookie_value(&h), None);
        h.insert(header::COOKIE, "cortex_session=".parse().expect("header"));
        assert_eq!(cookie_value(&h), None);
    }

    #[test]
    fn the_cookie_is_http_only_and_strict() {
        let c = set_cookie(Some("v"));
        let c = c.to_str().expect("ascii");
        assert!(
            c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.starts_with("cortex_session=v;")
        );
        assert!(set_cookie(None).to_str().expect("ascii").contains("Max-Age=0"));
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
    }
}
