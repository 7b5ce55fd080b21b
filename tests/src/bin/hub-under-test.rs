//! The hub's binary, built inside the test package so that tests can run it as a separate
//! process (and kill it) through `CARGO_BIN_EXE_hub-under-test`.

use clap::Parser as _;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    interop_hub_cli::cli::Cli::parse().run().await
}
