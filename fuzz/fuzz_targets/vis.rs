#![no_main]
//! Any body sent to the vis connector: refused or accepted, never a panic.

use connectors::SourceSystem;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| interop_hub_fuzz::parse_record(SourceSystem::Vis, body));
