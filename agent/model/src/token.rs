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
    #[error("token {id:?} has scope {have}, this needs {need}", have = have.as_str(), need = need.as_str())]
    InsufficientScope { id: String, have: Scope, need: Scope },
}
