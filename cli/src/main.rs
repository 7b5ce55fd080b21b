//! The `interop-hub` binary: parse the command line, hand over to the library.

use clap::Parser as _;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    interop_hub_cli::cli::Cli::parse().run().await
}
