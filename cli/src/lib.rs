//! The `interop-hub` command line and the tools that run beside the service: `import` (push
//! native records to a running hub), `generate` (a synthetic population with known ground
//! truth), `bench` (the search and ingest benchmark), `replicas` (the same through several
//! hub processes behind haproxy) and `timing` (the timing benchmark).
//! The service itself is the `interop-hub` library; nothing here is linked into it.

pub mod bench;
pub mod cli;
pub mod generate;
pub mod import;
pub mod replicas;
pub mod timing;
