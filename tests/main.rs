//! Cortex's integration tests: one test binary, real `cortex` processes, real stores.
//!
//! Each test tells a user's story: start nodes the way a user would, act through the CLI or
//! the HTTP API, assert what the user would see. See docs/testing.md.

mod harness;

mod bad_input;
mod bench;
mod bench_publish;
mod cli;
mod cluster;
mod config;
mod coordinators;
mod mcp;
mod mtls;
mod netns;
mod pxe;
mod restart;
mod task_api;
mod tasks;
mod tasks_netns;
