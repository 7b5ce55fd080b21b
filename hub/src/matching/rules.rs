//! Biometric comparison of two records and the link rules (docs/RULES.md#link-colours): which colour, if any, a
//! pair of records from different systems gets.

use connectors::{AlgorithmRegistry, BiometricTemplate, IdentityRecord, Modality};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::biographic::{DocumentAgreement, IdentityAgreement, IdentityComparison};

/// A link's colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LinkColour {
    /// Same person, legitimately: set automatically, or by a verifier.
    White,
    /// Suspected: waits for manual verification.
    Yellow,
    /// Verified: different persons.
    Green,
    /// Verified: the same person, unjustifiably — identity fraud.
    Red,
}

impl LinkColour {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::White => "white",
            Self::Yellow => "yellow",
            Self::Green => "green",
            Self::Red => "red",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::White, Self::Yellow, Self::Green, Self::Red]
            .into_iter()
            .find(|c| c.as_str() == text)
    }
}

/// Which link rule (docs/RULES.md#link-colours) made a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LinkRule {
    /// White: biometrics match and identity data are the same or similar.
    BiometricsAndIdentityMatch,
    /// White: identity data and travel document match; one side has no biometrics.
    IdentityAndDocumentMatchWithoutBiometrics,
    /// Yellow: biometrics match but the identities differ.
    BiometricsMatchIdentityDiffers,
    /// Yellow: the identities match but the biometrics differ.
    IdentityMatchesBiometricsDiffer,
    /// Yellow: identity data only similar (or the same without a shared document), and one
    /// side has no biometrics.
    IdentityMatchesWithoutBiometrics,
    /// Yellow: one travel document under two different identities.
    DocumentSharedIdentityDiffers,
}

impl LinkRule {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BiometricsAndIdentityMatch => "biometrics_and_identity_match",
            Self::IdentityAndDocumentMatchWithoutBiometrics => {
                "identity_and_document_match_without_biometrics"
            }
            Self::BiometricsMatchIdentityDiffers => "biometrics_match_identity_differs",
            Self::IdentityMatchesBiometricsDiffer => "identity_matches_biometrics_differ",
            Self::IdentityMatchesWithoutBiometrics => "identity_matches_without_biometrics",
            Self::DocumentSharedIdentityDiffers => "document_shared_identity_differs",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::BiometricsAndIdentityMatch,
            Self::IdentityAndDocumentMatchWithoutBiometrics,
            Self::BiometricsMatchIdentityDiffers,
            Self::IdentityMatchesBiometricsDiffer,
            Self::IdentityMatchesWithoutBiometrics,
            Self::DocumentSharedIdentityDiffers,
        ]
        .into_iter()
        .find(|r| r.as_str() == text)
    }
}

/// The best similarity between two records' templates of one algorithm.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BiometricScore {
    pub modality: Modality,
    pub algorithm: String,
    pub similarity: f32,
    pub threshold: f32,
    pub matched: bool,
}

/// The biometric verdict for a pair of records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BiometricAgreement {
    /// Some algorithm's templates reach its match threshold.
    Match,
    /// Comparable templates exist on both sides and none reaches its threshold.
    NoMatch,
    /// No algorithm has indexable templates on both sides.
    Absent,
}

/// Compares every pair of indexable templates of the same algorithm (fingers only with the
/// same finger, where both sides say which).
pub fn compare_biometrics(
    a: &IdentityRecord,
    b: &IdentityRecord,
    registry: &AlgorithmRegistry,
) -> (BiometricAgreement, Vec<BiometricScore>) {
    let mut scores: Vec<BiometricScore> = Vec::new();
    for algorithm in &registry.algorithms {
        let (ours, theirs) = (indexable(a, &algorithm.id), indexable(b, &algorithm.id));
        let best = ours
            .iter()
            .flat_map(|x| theirs.iter().map(move |y| (x, y)))
            .filter(|(x, y)| {
                x.position.is_none() || y.position.is_none() || x.position == y.position
            })
            .map(|(x, y)| cosine_similarity(&x.vector, &y.vector))
            .fold(None, |best: Option<f32>, s| {
                Some(best.map_or(s, |b| b.max(s)))
            });
        if let Some(similarity) = best {
            scores.push(BiometricScore {
                modality: algorithm.modality,
                algorithm: algorithm.id.clone(),
                similarity,
                threshold: algorithm.match_threshold,
                matched: similarity >= algorithm.match_threshold,
            });
        }
    }
    let agreement = if scores.is_empty() {
        BiometricAgreement::Absent
    } else if scores.iter().any(|s| s.matched) {
        BiometricAgreement::Match
    } else {
        BiometricAgreement::NoMatch
    };
    (agreement, scores)
}

fn indexable<'r>(record: &'r IdentityRecord, algorithm: &str) -> Vec<&'r BiometricTemplate> {
    record
        .templates
        .iter()
        .filter(|t| t.indexable && t.algorithm == algorithm)
        .collect()
}

/// Accumulated in f64: large finite f32 values would overflow an f32 sum of squares.
pub(super) fn cosine_similarity(a: &[f32], b: &[f32]) -> f32 {
    let (mut dot, mut norm_a, mut norm_b) = (0.0_f64, 0.0_f64, 0.0_f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (f64::from(*x), f64::from(*y));
        dot += x * y;
        norm_a += x * x;
        norm_b += y * y;
    }
    if norm_a == 0.0 || norm_b == 0.0 {
        0.0
    } else {
        // A cosine lies in [-1, 1]; the narrowing keeps all the precision a score needs.
        (dot / (norm_a.sqrt() * norm_b.sqrt())) as f32
    }
}

/// The automatic outcome for a pair: a white or yellow link, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkDecision {
    pub colour: LinkColour,
    pub rule: LinkRule,
}

/// The link rules of docs/RULES.md#link-colours. Green and red are never automatic: only a verifier sets them.
pub fn decide(
    identity: &IdentityComparison,
    biometrics: BiometricAgreement,
) -> Option<LinkDecision> {
    use BiometricAgreement as B;
    use IdentityAgreement as I;
    let (colour, rule) = match (biometrics, identity.identity, identity.document) {
        (B::Match, I::Same | I::Similar, _) => {
            (LinkColour::White, LinkRule::BiometricsAndIdentityMatch)
        }
        (B::Match, I::Different, _) => {
            (LinkColour::Yellow, LinkRule::BiometricsMatchIdentityDiffers)
        }
        (B::NoMatch, I::Same | I::Similar, _) => (
            LinkColour::Yellow,
            LinkRule::IdentityMatchesBiometricsDiffer,
        ),
        (B::Absent, I::Same | I::Similar, DocumentAgreement::Same) => (
            LinkColour::White,
            LinkRule::IdentityAndDocumentMatchWithoutBiometrics,
        ),
        (B::Absent, I::Same | I::Similar, _) => (
            LinkColour::Yellow,
            LinkRule::IdentityMatchesWithoutBiometrics,
        ),
        (B::NoMatch | B::Absent, I::Different, DocumentAgreement::Same) => {
            (LinkColour::Yellow, LinkRule::DocumentSharedIdentityDiffers)
        }
        (B::NoMatch | B::Absent, I::Different, _) => return None,
    };
    Some(LinkDecision { colour, rule })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matching::biographic::DateAgreement;

    fn identity(identity: IdentityAgreement, document: DocumentAgreement) -> IdentityComparison {
        IdentityComparison {
            name_score: 1.0,
            date_of_birth: DateAgreement::Same,
            sex_consistent: true,
            nationality_shared: true,
            document,
            identity,
        }
    }

    #[test]
    fn the_link_colour_rules() {
        use BiometricAgreement as B;
        use DocumentAgreement as D;
        use IdentityAgreement as I;
        let colour = |b, i, d| decide(&identity(i, d), b).map(|x| x.colour);
        assert_eq!(
            colour(B::Match, I::Same, D::Different),
            Some(LinkColour::White)
        );
        assert_eq!(
            colour(B::Match, I::Similar, D::Absent),
            Some(LinkColour::White)
        );
        assert_eq!(
            colour(B::Match, I::Different, D::Different),
            Some(LinkColour::Yellow),
            "identity fraud"
        );
        assert_eq!(
            colour(B::NoMatch, I::Same, D::Different),
            Some(LinkColour::Yellow),
            "look-alike"
        );
        assert_eq!(colour(B::Absent, I::Same, D::Same), Some(LinkColour::White));
        assert_eq!(
            colour(B::Absent, I::Similar, D::Same),
            Some(LinkColour::White)
        );
        assert_eq!(
            colour(B::Absent, I::Same, D::Different),
            Some(LinkColour::Yellow),
            "look-alike without biometrics"
        );
        assert_eq!(
            colour(B::Absent, I::Similar, D::Absent),
            Some(LinkColour::Yellow)
        );
        assert_eq!(
            colour(B::Absent, I::Different, D::Same),
            Some(LinkColour::Yellow)
        );
        assert_eq!(colour(B::NoMatch, I::Different, D::Different), None);
        assert_eq!(colour(B::Absent, I::Different, D::Absent), None);
    }

    #[test]
    fn cosine_similarity_is_scale_free() {
        assert!((cosine_similarity(&[1.0, 0.0], &[3.0, 0.0]) - 1.0).abs() < 1e-6);
        assert!(cosine_similarity(&[1.0, 0.0], &[0.0, 2.0]).abs() < 1e-6);
        assert_eq!(cosine_similarity(&[0.0, 0.0], &[1.0, 0.0]), 0.0);
    }
}
