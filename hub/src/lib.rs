//! interop-hub: links the identities held by separate border and law-enforcement systems.
//! The library holds everything; `main.rs` only parses the command line and calls in.

pub mod access;
pub mod audit;
pub mod bench;
pub mod biometrics;
pub mod cli;
pub mod clock;
pub mod config;
pub mod core;
pub mod error;
pub mod generate;
pub mod http;
pub mod import;
pub mod matching;
pub mod metrics;
pub mod mid;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod timing;
