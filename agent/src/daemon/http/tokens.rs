//! `/api/v1/tokens…`: create (join: operate, api: admin), list and revoke (admin).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use cortex_model::token::{Scope, TokenKind, TokenRecord};
use serde::Deserialize;
use serde_json::{json, Value};

use super::support::{body, caller, created, ok, HttpResult};
use crate::api::{NewToken, NodeApi};

/// A token as listed: everything but its digest.
fn view(t: &TokenRecord) -> Value {
    let mut v = serde_json::to_value(t).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.remove("sha256");
    }
    v
}

pub async fn list(State(api): State<NodeApi>, h: HeaderMap) -> HttpResult {
    let c = caller(&api, &h, Scope::Admin)?;
    let tokens: Vec<Value> = api.list_tokens(&c)?.iter().map(view).collect();
    ok(&json!({ "tokens": tokens }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateInput {
    #[serde(default = "api_kind")]
    kind: TokenKind,
    #[serde(default = "read_scope")]
    scope: Scope,
    #[serde(default)]
    name: String,
    #[serde(default)]
    ttl_seconds: u64,
    #[serde(default)]
    uses: u32,
    #[serde(default)]
    auto_approve: bool,
    #[serde(default)]
    join_addrs: Vec<String>,
}

fn api_kind() -> TokenKind {
    TokenKind::Api
}

fn read_scope() -> Scope {
    Scope::Read
}

pub async fn create(State(api): State<NodeApi>, h: HeaderMap, b: Bytes) -> HttpResult {
    let c = caller(&api, &h, Scope::Operate)?;
    let i: CreateInput = body(&b)?;
    let new = NewToken {
        kind: i.kind,
        scope: i.scope,
        name: i.name,
        ttl_seconds: i.ttl_seconds,
        uses: i.uses,
        auto_approve: i.auto_approve,
        join_addrs: i.join_addrs,
    };
    let (token, secret) = api.create_token(&c, new).await?;
    created(&json!({ "token": view(&token), "secret": secret }))
}

pub async fn revoke(State(api): State<NodeApi>, Path(id): Path<String>, h: HeaderMap) -> HttpResult {
    let c = caller(&api, &h, Scope::Admin)?;
    ok(&view(&api.revoke_token(&c, &id).await?))
}
