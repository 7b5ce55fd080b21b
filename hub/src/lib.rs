//! interop-hub: links the identities held by separate border and law-enforcement systems.
//! The service as a library; the `interop-hub` binary and the tools beside it (import,
//! generate, bench) live in the `interop-hub-cli` crate.

pub mod access;
pub mod audit_checkpoints;
pub mod batch;
pub mod biometrics;
pub mod clock;
pub mod config;
pub mod core;
pub mod data_dir;
pub mod error;
pub mod http;
pub mod matching;
pub mod metrics;
pub mod mid;
pub mod startup;
pub mod store;
pub mod telemetry;
