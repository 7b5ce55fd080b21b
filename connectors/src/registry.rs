//! The biometric algorithm registry and quality thresholds the connectors validate against.

use serde::{Deserialize, Serialize};

use crate::record::Modality;

/// A vendor algorithm whose templates the hub accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Algorithm {
    pub id: String,
    pub modality: Modality,
    /// Number of float32 values in each template.
    pub dimension: usize,
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlgorithmRegistry {
    pub algorithms: Vec<Algorithm>,
    #[serde(default)]
    pub minimum_quality: MinimumQuality,
}

impl AlgorithmRegistry {
    pub fn get(&self, id: &str) -> Option<&Algorithm> {
        self.algorithms.iter().find(|a| a.id == id)
    }
}

impl Default for AlgorithmRegistry {
    fn default() -> Self {
        Self {
            algorithms: vec![
                Algorithm {
                    id: "acme-face-v3".into(),
                    modality: Modality::Face,
                    dimension: 512,
                },
                Algorithm {
                    id: "acme-finger-v2".into(),
                    modality: Modality::Finger,
                    dimension: 192,
                },
            ],
            minimum_quality: MinimumQuality::default(),
        }
    }
}
