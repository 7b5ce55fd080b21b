//! The multiple-identity detector's judgement on one pair of records: the link it makes,
//! the evidence behind it and the authority that must verify it.

use connectors::{AlgorithmRegistry, IdentityRecord, RecordRef, SourceSystem};
use serde::Serialize;
use time::{Duration, OffsetDateTime};
use utoipa::ToSchema;

use crate::matching::{
    BiometricAgreement, BiometricScore, IdentityComparison, LinkColour, LinkDecision, LinkRule,
    compare_biometrics, compare_identity, decide,
};

/// Everything the detector weighed for a pair: the identity confirmation file's evidence.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LinkEvidence {
    pub identity: IdentityComparison,
    pub biometrics: BiometricAgreement,
    /// The best score per algorithm both records have templates of.
    pub biometric_scores: Vec<BiometricScore>,
}

/// The authority that verifies a link (docs/RULES.md#who-verifies-a-link): a SIS alert's SIRENE bureau whenever an
/// alert is involved, otherwise the authority of the system whose record made the link.
pub fn responsible_authority(trigger: &IdentityRecord, other: &IdentityRecord) -> String {
    let sis = [trigger, other]
        .into_iter()
        .find(|r| r.system == SourceSystem::Sis);
    let record = sis.unwrap_or(trigger);
    let state = record.member_state.as_deref();
    let with_state = |authority: &str| match state {
        Some(state) => format!("{authority}:{state}"),
        None => authority.to_owned(),
    };
    match record.system {
        SourceSystem::Sis => with_state("sirene"),
        SourceSystem::Vis => with_state("visa_authority"),
        SourceSystem::Etias => "etias_unit".to_owned(),
        SourceSystem::Ees => with_state("border_authority"),
        SourceSystem::EcrisTcn => with_state("ecris_central_authority"),
    }
}

/// The detector's automatic outcome for one pair: the link to store, with what it weighed.
#[derive(Debug, Clone)]
pub struct DetectedLink {
    /// The record whose ingest made the link.
    pub a: RecordRef,
    pub b: RecordRef,
    pub colour: LinkColour,
    pub rule: LinkRule,
    pub evidence: LinkEvidence,
    pub authority: String,
    /// Yellow links only: when verification is due.
    pub deadline: Option<OffsetDateTime>,
}

/// The link a new (or updated) record makes with a record of another system, if any.
pub fn evaluate(
    trigger: &IdentityRecord,
    other: &IdentityRecord,
    registry: &AlgorithmRegistry,
    deadline_hours: u32,
    now: OffsetDateTime,
) -> Option<DetectedLink> {
    let identity = compare_identity(trigger, other);
    let (biometrics, biometric_scores) = compare_biometrics(trigger, other, registry);
    let LinkDecision { colour, rule } = decide(&identity, biometrics)?;
    let evidence = LinkEvidence {
        identity,
        biometrics,
        biometric_scores,
    };
    Some(DetectedLink {
        a: RecordRef::new(trigger.system, trigger.source_id.clone()),
        b: RecordRef::new(other.system, other.source_id.clone()),
        colour,
        rule,
        evidence,
        authority: responsible_authority(trigger, other),
        deadline: (colour == LinkColour::Yellow)
            .then(|| now + Duration::hours(i64::from(deadline_hours))),
    })
}
