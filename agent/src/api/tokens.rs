//! Creating, listing and revoking tokens, and the join-token format.
//!
//! A join token carries everything a new machine needs and nothing it must not have:
//! `cxj1_<sha256 of the CA cert, 64 hex>_<token id>_<secret, 64 hex>@<addr>[,<addr>…]`.
//! The node checks the CA against the hash before it sends anything; it sends only the
//! `cxt_<id>_<secret>` part, whose SHA-256 is what the cluster stores.

use cortex_model::command::Command;
use cortex_model::token::{Scope, TokenKind, TokenRecord};

use super::auth::generate_token;
use super::{now_ms, ApiError, Caller, NodeApi};

/// A parsed join token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinToken {
    pub ca_fingerprint: String,
    /// The bearer part sent to the coordinator: `cxt_<id>_<secret>`.
    pub secret: String,
    pub addrs: Vec<String>,
}

impl JoinToken {
    pub fn render(&self) -> String {
        let rest = self.secret.trim_start_matches("cxt_");
        format!("cxj1_{}_{}@{}", self.ca_fingerprint, rest, self.addrs.join(","))
    }

    /// Parses a join token; errors say which part is wrong and never echo the secret.
    pub fn parse(s: &str) -> Result<JoinToken, String> {
        let s = s.trim();
        let body = s
            .strip_prefix("cxj1_")
            .ok_or("the join token must start with cxj1_")?;
        let (head, addrs) = body
            .split_once('@')
            .ok_or("the join token has no coordinator address (…@IP:PORT)")?;
        let mut parts = head.split('_');
        let (Some(ca), Some(id), Some(secret), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("the join token is malformed (expected cxj1_<ca>_<id>_<secret>@<addrs>)".into());
        };
        let hex = |v: &str, n: usize| v.len() == n && v.chars().all(|c| c.is_ascii_hexdigit());
        if !hex(ca, 64) {
            return Err("the join token's CA hash is not 64 hex digits".into());
        }
        if !hex(id, 8) || !hex(secret, 64) {
            return Err("the join token's id or secret is malformed".into());
        }
        let addrs: Vec<String> = addrs
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(String::from)
            .collect();
        if addrs.is_empty() {
            return Err("the join token has no coordinator address".into());
        }
        for a in &addrs {
            let ok = a
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
            if !ok {
                return Err(format!(
                    "the join token's coordinator address {a:?} is not HOST:PORT"
                ));
            }
        }
        Ok(JoinToken {
            ca_fingerprint: ca.to_ascii_lowercase(),
            secret: format!("cxt_{id}_{secret}"),
            addrs,
        })
    }
}

/// What `create_token` asks for.
pub struct NewToken {
    pub kind: TokenKind,
    pub scope: Scope,
    pub name: String,
    pub ttl_seconds: u64,
    pub uses: u32,
    pub auto_approve: bool,
    pub join_addrs: Vec<String>,
}

impl NodeApi {
    /// Mints a token; returns its record and the whole secret string (shown once).
    pub async fn create_token(
        &self,
        caller: &Caller,
        t: NewToken,
    ) -> Result<(TokenRecord, String), ApiError> {
        match t.kind {
            TokenKind::Api => caller.require(Scope::Admin)?,
            TokenKind::Join => caller.require(Scope::Operate)?,
        }
        if t.name.len() > 64 || t.name.chars().any(char::is_control) {
            return Err(ApiError::invalid(
                "name",
                "must be at most 64 printable characters",
            ));
        }
        if t.kind == TokenKind::Api && (t.uses != 0 || t.auto_approve) {
            return Err(ApiError::invalid(
                "uses",
                "uses and auto_approve apply to join tokens only",
            ));
        }
        let generated = generate_token();
        let now = now_ms();
        let record = TokenRecord {
            id: generated.id.clone(),
            name: if t.name.is_empty() {
                format!("{}-{}", t.kind.as_str(), generated.id)
            } else {
                t.name
            },
            scope: if t.kind == TokenKind::Join {
                Scope::Read
            } else {
                t.scope
            },
            sha256: generated.sha256.clone(),
            created_at_ms: now,
            expires_at_ms: (t.ttl_seconds > 0)
                .then(|| now.saturating_add(t.ttl_seconds.saturating_mul(1000))),
            revoked: false,
            kind: t.kind,
            uses_left: (t.uses > 0).then_some(t.uses),
            auto_approve: t.auto_approve,
        };
        let secret = match t.kind {
            TokenKind::Api => generated.secret.clone(),
            TokenKind::Join => {
                let ca_fingerprint = self.status().await.ca_fingerprint;
                let addrs = if t.join_addrs.is_empty() {
                    self.coordinator_addrs()
                } else {
                    t.join_addrs
                };
                let token = JoinToken {
                    ca_fingerprint,
                    secret: generated.secret.clone(),
                    addrs,
                };
                let rendered = token.render();
                JoinToken::parse(&rendered).map_err(|e| ApiError::invalid("join_addrs", e))?;
                rendered
            }
        };
        self.write(Command::CreateToken {
            token: record.clone(),
        })
        .await?;
        Ok((record, secret))
    }

    pub fn list_tokens(&self, caller: &Caller) -> Result<Vec<TokenRecord>, ApiError> {
        caller.require(Scope::Admin)?;
        Ok(self.inner.sm.state().tokens.values().cloned().collect())
    }

    pub async fn revoke_token(&self, caller: &Caller, id: &str) -> Result<TokenRecord, ApiError> {
        caller.require(Scope::Admin)?;
        if !self.inner.sm.state().tokens.contains_key(id) {
            return Err(ApiError::NotFound(format!(
                "no token with id {id:?}; `cortex token list` shows them"
            )));
        }
        self.write(Command::RevokeToken {
            id: id.to_string(),
            at_ms: now_ms(),
        })
        .await?;
        self.inner
            .sm
            .state()
            .tokens
            .get(id)
            .cloned()
            .ok_or_else(|| ApiError::Internal("token vanished after revoke".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_tokens_round_trip_and_bad_ones_are_named() {
        let t = JoinToken {
            ca_fingerprint: "a".repeat(64),
            secret: format!("cxt_{}_{}", "0badcafe", "b".repeat(64)),
            addrs: vec!["10.231.0.1:7071".into(), "coord:7071".into()],
        };
        assert_eq!(JoinToken::parse(&t.render()), Ok(t.clone()));
        assert_eq!(
            JoinToken::parse("nope"),
            Err("the join token must start with cxj1_".into())
        );
        let no_addr = t.render().split('@').next().unwrap_or_default().to_string();
        assert!(JoinToken::parse(&no_addr)
            .unwrap_err()
            .contains("no coordinator address"));
        let bad_port = t.render().replace("coord:7071", "coord:http");
        assert!(JoinToken::parse(&bad_port)
            .unwrap_err()
            .contains("\"coord:http\" is not HOST:PORT"));
        let err = JoinToken::parse(&t.render().replace(&"b".repeat(64), "zz")).unwrap_err();
        assert!(!err.contains("zz"), "errors never echo the secret: {err}");
    }
}
