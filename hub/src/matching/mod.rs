//! Identity matching: how alike two identity records are — names, dates of birth, sex,
//! nationalities, travel documents and biometric templates — and the blocking keys that
//! pick the few records a new one is compared with.

mod biographic;
mod rules;

pub use biographic::{
    BlockingKeys, DateAgreement, DocumentAgreement, IdentityAgreement, IdentityComparison,
    compare_identity, given_names_key, surname_key,
};
pub use rules::{
    BiometricAgreement, BiometricScore, LinkColour, LinkDecision, LinkRule, compare_biometrics,
    decide,
};
