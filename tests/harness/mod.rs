//! Test harness: start `cortex up` processes on port 0 in temporary data dirs, talk to them
//! over HTTP and through the CLI, and kill them the way a crash would.

#![allow(dead_code)]

pub mod agent;
pub mod http;
pub mod netns;
pub mod node;

pub use agent::Agent;
pub use node::{cortex, Node};

/// Polls `f` every 50 ms until it returns `Some`, or panics with `what` after `within`.
pub fn eventually<T>(within: std::time::Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// True when the run must not skip anything (CI sets CI=true).
pub fn strict() -> bool {
    std::env::var("CI")
        .map(|v| v == "true" || v == "1")
        .unwrap_or(false)
}
