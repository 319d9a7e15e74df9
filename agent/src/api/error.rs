//! Errors every surface maps to its own form (gRPC status, HTTP status + JSON body).

use cortex_model::node::NodeRecord;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No or unknown credentials.
    #[error("{0}")]
    Unauthenticated(String),
    /// Valid credentials without the needed scope.
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    NotFound(String),
    /// Malformed input; names the field.
    #[error("invalid {field}: {message}")]
    InvalidArgument { field: String, message: String },
    /// The state machine refused the change (nothing changed).
    #[error("{0}")]
    Rejected(String),
    /// The cluster cannot take the request now (no leader, shutting down).
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        ApiError::InvalidArgument {
            field: field.to_string(),
            message: message.into(),
        }
    }

    /// "no node X" plus the closest known names, so a typo is easy to fix.
    pub fn node_not_found<'a>(key: &str, nodes: impl Iterator<Item = &'a NodeRecord>) -> Self {
        let mut candidates: Vec<(usize, String)> = nodes
            .flat_map(|n| [n.name.clone(), n.id.to_string()])
            .map(|c| (edit_distance(key, &c), c))
            .filter(|(d, c)| *d <= 3.max(c.len() / 3))
            .collect();
        candidates.sort();
        candidates.dedup();
        let hint = if candidates.is_empty() {
            "; `cortex node list` shows the known nodes".to_string()
        } else {
            let names: Vec<String> = candidates.into_iter().take(3).map(|(_, c)| c).collect();
            format!("; did you mean {}?", names.join(", "))
        };
        ApiError::NotFound(format!("no node with id or name {key:?}{hint}"))
    }

    /// A stable machine-readable code for JSON bodies.
    /// The HTTP status the JSON API and the status page answer this error with.
    pub fn http_status(&self) -> axum::http::StatusCode {
        use axum::http::StatusCode;
        match self {
            ApiError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            ApiError::PermissionDenied(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::InvalidArgument { .. } => StatusCode::BAD_REQUEST,
            ApiError::Rejected(_) => StatusCode::CONFLICT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthenticated(_) => "unauthenticated",
            ApiError::PermissionDenied(_) => "permission_denied",
            ApiError::NotFound(_) => "not_found",
            ApiError::InvalidArgument { .. } => "invalid_argument",
            ApiError::Rejected(_) => "rejected",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("alpha", "alpha"), 0);
        assert_eq!(edit_distance("alpah", "alpha"), 2);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}
