//! Cortex's wire protocol: generated gRPC clients and servers for `proto/cortex.proto`.
//!
//! Invariant: this crate holds only generated code and the protocol definition; conversions
//! between wire and model types live with the code that owns the model (the agent).

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod v1 {
    tonic::include_proto!("cortex.v1");
}
