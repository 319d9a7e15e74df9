//! Tool errors: what went wrong and what to do next, in words a model can act on. They become
//! `isError` tool results, never JSON-RPC errors (a client shows a model those; it hides
//! protocol errors).

use crate::api::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Unauthenticated,
    PermissionDenied,
    NotFound,
    Invalid,
    Rejected,
    Unavailable,
    Internal,
}

#[derive(Debug)]
pub struct ToolError {
    pub kind: Kind,
    pub message: String,
}

pub type ToolResult<T> = Result<T, ToolError>;

/// Task-spec paths in the API's messages, and the tool arguments that set them.
const ARGUMENT_NAMES: [(&str, &str); 13] = [
    ("resources.cpu_millis", "cpu"),
    ("resources.memory_bytes", "memory_mb"),
    ("resources.gpus", "gpus"),
    ("resources.pids", "pids"),
    ("constraints.labels", "labels"),
    ("constraints.node", "node"),
    ("constraints.min_gflops", "min_gflops"),
    ("constraints.min_mem_bw", "min_mem_bw"),
    ("constraints.fastest", "fastest"),
    ("retry.max_attempts", "retries"),
    ("retry.retry_exit_codes", "retry_exit_codes"),
    ("timeout_ms", "timeout_seconds"),
    ("fanout", "count"),
];

/// Names a field the way the tool's input schema does.
pub fn argument_names(text: &str) -> String {
    ARGUMENT_NAMES
        .iter()
        .fold(text.to_string(), |t, (path, arg)| t.replace(path, arg))
}

impl ToolError {
    pub fn new(kind: Kind, message: impl Into<String>) -> Self {
        ToolError {
            kind,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        ToolError::new(Kind::Invalid, message)
    }

    /// A gRPC status from the coordinator the stdio bridge talks to.
    pub fn from_status(s: &tonic::Status, server: &str) -> Self {
        use tonic::Code;
        let kind = match s.code() {
            Code::Unauthenticated => Kind::Unauthenticated,
            Code::PermissionDenied => Kind::PermissionDenied,
            Code::NotFound => Kind::NotFound,
            Code::InvalidArgument | Code::OutOfRange => Kind::Invalid,
            Code::FailedPrecondition | Code::AlreadyExists | Code::Aborted => Kind::Rejected,
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => Kind::Unavailable,
            _ => Kind::Internal,
        };
        let transport = s.message().is_empty() || s.message().contains("transport");
        let message = if kind == Kind::Unavailable && transport {
            format!("the coordinator at {server} is not answering ({})", s.message())
        } else {
            argument_names(s.message())
        };
        ToolError::new(kind, message)
    }

    /// The text of the `isError` result: the message, then what to do about it.
    pub fn text(&self) -> String {
        let advice = match self.kind {
            Kind::Unauthenticated => {
                "The MCP server needs a valid bearer token (HTTP: the Authorization header; \
                 `cortex mcp`: --token-file). Mint one with `cortex token create --kind api --scope operate`."
            }
            Kind::PermissionDenied => {
                "Read tools still work with this token. For this one, ask the cluster's operator for a \
                 token with the scope named above (`cortex token create --kind api --scope operate`)."
            }
            Kind::NotFound => "",
            Kind::Invalid => "Nothing was changed. Fix that argument and call the tool again.",
            Kind::Rejected => "Nothing was changed.",
            Kind::Unavailable => {
                "The cluster may be electing a leader, or the coordinator is unreachable: retry in a few \
                 seconds; cluster_status shows the leader."
            }
            Kind::Internal => "This is a bug in Cortex; the coordinator's log has details.",
        };
        if advice.is_empty() {
            self.message.clone()
        } else {
            format!("{}\n{advice}", self.message)
        }
    }
}

impl From<ApiError> for ToolError {
    fn from(e: ApiError) -> Self {
        let kind = match &e {
            ApiError::Unauthenticated(_) => Kind::Unauthenticated,
            ApiError::PermissionDenied(_) => Kind::PermissionDenied,
            ApiError::NotFound(_) => Kind::NotFound,
            ApiError::InvalidArgument { .. } => Kind::Invalid,
            ApiError::Rejected(_) => Kind::Rejected,
            ApiError::Unavailable(_) => Kind::Unavailable,
            ApiError::Internal(_) => Kind::Internal,
        };
        ToolError::new(kind, argument_names(&e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_paths_become_argument_names() {
        let e = ToolError::from(ApiError::invalid(
            "tasks[1].resources.memory_bytes",
            "must be at least 4 MiB",
        ));
        assert_eq!(e.kind, Kind::Invalid);
        assert_eq!(e.message, "invalid tasks[1].memory_mb: must be at least 4 MiB");
        assert!(e.text().contains("Fix that argument"), "{}", e.text());
    }

    #[test]
    fn a_dead_transport_names_the_server() {
        let e = ToolError::from_status(&tonic::Status::unavailable("transport error"), "10.0.0.1:7071");
        assert_eq!(e.kind, Kind::Unavailable);
        assert!(e.message.contains("10.0.0.1:7071"), "{}", e.message);
    }
}
