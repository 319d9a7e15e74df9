//! Test harness: start `cortex up` processes on port 0 in temporary data dirs, talk to them
//! over HTTP and through the CLI, and kill them the way a crash would.

#![allow(dead_code)]

pub mod http;
pub mod node;

pub use node::{cortex, Node};

/// True when the run must not skip anything (CI sets CI=true).
pub fn strict() -> bool {
    std::env::var("CI")
        .map(|v| v == "true" || v == "1")
        .unwrap_or(false)
}
