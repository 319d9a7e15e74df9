//! Cortex's integration tests: one test binary, real `cortex` processes, real stores.
//!
//! Each test tells a user's story: start nodes the way a user would, act through the CLI or
//! the HTTP API, assert what the user would see. See docs/testing.md.

mod harness;

mod bad_input;
mod bench;
mod bench_net;
mod bench_placement;
mod bench_publish;
mod bench_rerun;
mod cli;
mod cluster;
mod config;
mod coordinators;
mod drain;
mod image;
mod image_machined;
mod image_pxe;
mod mcp;
mod metrics;
mod mtls;
mod netns;
mod pxe;
mod refusals;
mod restart;
mod status_page;
mod task_api;
mod tasks;
mod tasks_netns;
