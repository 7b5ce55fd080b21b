//! What every fuzz target checks besides "no panic": only what the connectors promise in
//! their documentation.

use std::sync::LazyLock;

use connectors::{AlgorithmRegistry, Refusal, SourceSystem};

static REGISTRY: LazyLock<AlgorithmRegistry> = LazyLock::new(AlgorithmRegistry::default);

/// Parses `body` as a native record of `system` with the hub's default algorithm registry
/// (the one the example records are made for) and checks the outcome:
/// - a refusal for invalid fields names at least one field ("every one is listed");
/// - an accepted record is of `system`, has a version ≥ 1, and its templates are of a
///   registered algorithm of their modality, of that algorithm's dimension, with finite,
///   not-all-zero values and a quality of 0–100.
pub fn parse_record(system: SourceSystem, body: &[u8]) {
    let registry = &*REGISTRY;
    match connectors::parse(system, body, registry) {
        Err(Refusal::Malformed { .. }) => {}
        Err(Refusal::Invalid { errors }) => {
            assert!(!errors.is_empty(), "an invalid record names no field");
        }
        Ok(accepted) => {
            let record = &accepted.record;
            assert_eq!(record.system, system);
            assert!(record.version >= 1, "version {}", record.version);
            for template in &record.templates {
                let algorithm = registry
                    .get(&template.algorithm)
                    .expect("a template of an unregistered algorithm was accepted");
                assert_eq!(algorithm.modality, template.modality);
                assert_eq!(algorithm.dimension, template.vector.len());
                assert_eq!(connectors::vector_values_problem(&template.vector), None);
                assert!(template.quality <= 100, "quality {}", template.quality);
            }
        }
    }
}
