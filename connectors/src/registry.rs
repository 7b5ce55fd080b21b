//! The biometric algorithm registry and quality thresholds the connectors validate against.

use serde::{Deserialize, Serialize};

use crate::record::Modality;

/// A vendor algorithm whose templates the hub accepts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Algorithm {
    pub id: String,
    pub modality: Modality,
    /// Number of float32 values in each template.
    pub dimension: usize,
    /// How two templates of this algorithm are compared.
    #[serde(default)]
    pub metric: Metric,
    /// Similarity (1 − distance) at or above which two templates are taken to be the same
    /// trait. Vendors calibrate this per algorithm against their false-match rate.
    #[serde(default = "Algorithm::default_match_threshold")]
    pub match_threshold: f32,
    /// Overrides the modality's minimum quality for this algorithm's templates.
    #[serde(default)]
    pub minimum_quality: Option<u8>,
}

impl Algorithm {
    fn default_match_threshold() -> f32 {
        0.5
    }

    pub fn new(id: &str, modality: Modality, dimension: usize) -> Self {
        Self {
            id: id.to_owned(),
            modality,
            dimension,
            metric: Metric::default(),
            match_threshold: Self::default_match_threshold(),
            minimum_quality: None,
        }
    }
}

/// The distance two templates of one algorithm are compared by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// 1 − cosine similarity: vendors' templates are direction-coded embeddings.
    #[default]
    Cosine,
}

/// Per-modality minimum quality (0–100) for a template to enter the biometric index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MinimumQuality {
    pub face: u8,
    pub finger: u8,
    pub iris: u8,
}

impl MinimumQuality {
    pub fn for_modality(&self, modality: Modality) -> u8 {
        match modality {
            Modality::Face => self.face,
            Modality::Finger => self.finger,
            Modality::Iris => self.iris,
        }
    }
}

impl Default for MinimumQuality {
    fn default() -> Self {
        Self {
            face: 50,
            finger: 40,
            iris: 50,
        }
    }
}

/// The algorithms the hub accepts, loaded from configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlgorithmRegistry {
    pub algorithms: Vec<Algorithm>,
    #[serde(default)]
    pub minimum_quality: MinimumQuality,
}

impl AlgorithmRegistry {
    pub fn get(&self, id: &str) -> Option<&Algorithm> {
        self.algorithms.iter().find(|a| a.id == id)
    }

    /// The quality a template of `algorithm` needs to enter the biometric index.
    pub fn minimum_quality_for(&self, algorithm: &Algorithm) -> u8 {
        algorithm
            .minimum_quality
            .unwrap_or_else(|| self.minimum_quality.for_modality(algorithm.modality))
    }
}

impl Default for AlgorithmRegistry {
    fn default() -> Self {
        Self {
            algorithms: vec![
                Algorithm::new("acme-face-v3", Modality::Face, 512),
                Algorithm::new("acme-finger-v2", Modality::Finger, 192),
            ],
            minimum_quality: MinimumQuality::default(),
        }
    }
}
