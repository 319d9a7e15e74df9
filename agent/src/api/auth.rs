//! Bearer tokens: generation, hashing, and the scope check.
//!
//! Only SHA-256 digests are stored (in the Raft state); the secret exists in the token file or
//! the user's hands. Tokens and their digests are never logged.

use cortex_cluster::StateMachineStore;
use cortex_model::token::{Scope, TokenRejection};
use cortex_model::UnixMillis;
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::ApiError;

/// Who is calling, after the bearer token was checked.
#[derive(Debug, Clone)]
pub struct Caller {
    pub token_id: String,
    pub scope: Scope,
}

impl Caller {
    pub fn require(&self, need: Scope) -> Result<(), ApiError> {
        if self.scope.allows(need) {
            Ok(())
        } else {
            Err(scope_error(&self.token_id, self.scope, need))
        }
    }
}

pub struct GeneratedToken {
    pub id: String,
    /// The bearer string. Shown once, never stored.
    pub secret: String,
    pub sha256: String,
}

/// A new random token: `cxt_<id>_<secret>` (the id is public, the secret 256 random bits).
pub fn generate_token() -> GeneratedToken {
    let mut rng = rand::rng();
    let mut id = [0u8; 4];
    let mut secret = [0u8; 32];
    rng.fill_bytes(&mut id);
    rng.fill_bytes(&mut secret);
    let id = hex::encode(id);
    let bearer = format!("cxt_{id}_{}", hex::encode(secret));
    let sha256 = sha256_hex(&bearer);
    GeneratedToken {
        id,
        secret: bearer,
        sha256,
    }
}

pub fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

pub(super) fn authorize(
    sm: &StateMachineStore,
    bearer: Option<&str>,
    need: Scope,
    now: UnixMillis,
) -> Result<Caller, ApiError> {
    let Some(bearer) = bearer.map(str::trim).filter(|b| !b.is_empty()) else {
        return Err(ApiError::Unauthenticated(
            "this needs a bearer token: pass --token, --token-file or CORTEX_TOKEN (the first one is in <data dir>/admin.token)"
                .into(),
        ));
    };
    let digest = sha256_hex(bearer);
    let state = sm.state();
    match state.authorize(&digest, need, now) {
        Ok(t) => Ok(Caller {
            token_id: t.id.clone(),
            scope: t.scope,
        }),
        Err(TokenRejection::InsufficientScope { id, have, need }) => Err(scope_error(&id, have, need)),
        Err(e @ TokenRejection::Unknown) => Err(ApiError::Unauthenticated(format!(
            "{e}: the token is not known to this cluster"
        ))),
        Err(e) => Err(ApiError::Unauthenticated(e.to_string())),
    }
}

fn scope_error(token_id: &str, have: Scope, need: Scope) -> ApiError {
    ApiError::PermissionDenied(format!(
        "token {token_id:?} has scope {}; this needs scope {} or higher",
        have.as_str(),
        need.as_str()
    ))
}
