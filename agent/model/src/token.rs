//! API tokens: only their SHA-256 digests are kept in the cluster state.

use serde::{Deserialize, Serialize};

use crate::UnixMillis;

/// What a bearer token allows. Ordered: a higher scope includes the lower ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Read-only: status, lists, logs.
    Read,
    /// Day-to-day writes: labels, tasks, approvals, drain.
    Operate,
    /// Everything, including tokens and removing nodes.
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Operate => "operate",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        match s {
            "read" => Some(Scope::Read),
            "operate" => Some(Scope::Operate),
            "admin" => Some(Scope::Admin),
            _ => None,
        }
    }

    pub fn allows(self, needed: Scope) -> bool {
        self >= needed
    }
}

/// What a token is for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    /// A bearer token for the API, MCP and the status page.
    #[default]
    Api,
    /// Lets a machine ask to join (it still needs an approval unless `auto_approve`).
    Join,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Api => "api",
            TokenKind::Join => "join",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Public identifier (shown in listings; not secret).
    pub id: String,
    pub name: String,
    pub scope: Scope,
    /// Lower-case hex SHA-256 of the whole bearer string.
    pub sha256: String,
    pub created_at_ms: UnixMillis,
    pub expires_at_ms: Option<UnixMillis>,
    pub revoked: bool,
    #[serde(default)]
    pub kind: TokenKind,
    /// Join tokens: joins left (`None` = unlimited).
    #[serde(default)]
    pub uses_left: Option<u32>,
    /// Join tokens: approve joiners without a person (explicit opt-in).
    #[serde(default)]
    pub auto_approve: bool,
}

/// Why a presented token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenRejection {
    #[error("unknown token")]
    Unknown,
    #[error("token {id:?} has expired")]
    Expired { id: String },
    #[error("token {id:?} has been revoked")]
    Revoked { id: String },
    #[error("token {id:?} is a {kind} token and cannot be used here", kind = kind.as_str())]
    WrongKind { id: String, kind: TokenKind },
    #[error("join token {id:?} has no uses left")]
    UsedUp { id: String },
    #[error("token {id:?} has scope {have}, this needs {need}", have = have.as_str(), need = need.as_str())]
    InsufficientScope { id: String, have: Scope, need: Scope },
}
