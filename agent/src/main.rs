//! `cortex`: one binary for the coordinator (`up`), the agent and the CLI.
//!
//! `main` only parses arguments, runs, and maps the error to an exit code
//! (see `exit.rs` and docs/ARCHITECTURE.md, "Exit codes").

mod agent;
mod api;
mod cli;
mod client;
mod config;
mod convert;
mod daemon;
mod discovery;
mod exit;
mod mcp;
mod metrics;
mod netbench;
mod notify;
mod selfbench;
mod web;
mod worker;

use std::process::ExitCode;

use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return ExitCode::from(exit::RUNTIME);
        }
    };
    match runtime.block_on(cli::run(args)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(exit::classify(&err))
        }
    }
}
