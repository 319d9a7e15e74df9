//! The Cortex cluster layer: openraft's type configuration, the durable redb store, the
//! outbound Raft network and the inbound Raft gRPC service.
//!
//! Invariants:
//! - every log append, vote and snapshot is durable (fsynced) before openraft is told so;
//! - the state machine is only changed by applying committed log entries, in order, through
//!   `cortex_model::state::ClusterState::apply` (pure: no clock, no IO);
//! - nothing here knows about HTTP, the CLI or the host; the agent wires those.

pub mod catch_up;
pub mod commit_linger;
pub mod h2_channel;
pub mod h2_server;
pub mod network;
pub mod pki;
pub mod raft_service;
pub mod store;
pub mod types;

pub use store::{open_store, LogStore, StateMachineStore, StoreError};
pub use types::{CortexRaft, TypeConfig};
