//! Pure adapters from each source system's native record format to the common identity
//! record: parse, validate, score quality, map. No IO happens here.

pub mod bounds;
mod ecris_tcn;
mod ees;
mod etias;
mod fields;
mod json;
pub mod names;
pub mod record;
pub mod refusal;
pub mod registry;
pub mod rule;
mod sis;
#[cfg(test)]
mod test_support;
pub mod vector_base64;
mod vis;
mod xml;

pub use bounds::{TextKind, text_problem};
pub use names::NameForms;
pub use record::*;
pub use refusal::{FieldError, QualityFinding, Refusal};
pub use registry::{Algorithm, AlgorithmRegistry, Metric, MinimumQuality};

/// A record the connector accepted, with the non-blocking data-quality findings it raised.
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    pub record: IdentityRecord,
    pub findings: Vec<QualityFinding>,
}

/// Why a template vector's values cannot be compared, if they cannot: NaN or infinities,
/// or all zeros (no direction). The connectors and the 1:N search refuse such vectors.
pub fn vector_values_problem(vector: &[f32]) -> Option<(&'static str, &'static str)> {
    if vector.iter().any(|x| !x.is_finite()) {
        Some((
            rule::NOT_FINITE,
            "expected finite float32 values (no NaN or infinity)",
        ))
    } else if vector.iter().all(|x| *x == 0.0) {
        Some((rule::ZERO_VECTOR, "expected a vector with a non-zero value"))
    } else {
        None
    }
}

/// Parses one native record of `system`. The caller has already checked that the body was
/// sent with the system's media type ([`SourceSystem::native_format`]).
pub fn parse(
    system: SourceSystem,
    body: &[u8],
    registry: &AlgorithmRegistry,
) -> Result<Accepted, Refusal> {
    match system {
        SourceSystem::Ees => ees::parse(body, registry),
        SourceSystem::Etias => etias::parse(body, registry),
        SourceSystem::Vis => vis::parse(body, registry),
        SourceSystem::Sis => sis::parse(body, registry),
        SourceSystem::EcrisTcn => ecris_tcn::parse(body, registry),
    }
}
