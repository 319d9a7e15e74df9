//! Cortex's shared vocabulary and its deterministic cluster state machine.
//!
//! Invariants (enforced by this crate's dependency list: serde, base64 and thiserror only):
//! - no IO of any kind: no files, no sockets, no clock reads, no randomness;
//! - [`state::ClusterState::apply`] is a pure function of the state and the command, so every
//!   replica that applies the same Raft log reaches the same state.

pub mod command;
pub mod inventory;
mod netbench;
pub mod node;
pub mod node_addr;
pub mod placement;
pub mod state;
pub mod task;
pub mod token;
pub mod view;

/// A node's identity inside the Raft group. Chosen at random when a data dir is created.
pub type NodeId = u64;

/// Milliseconds since the Unix epoch, always supplied by the proposer (never read in apply).
pub type UnixMillis = u64;
