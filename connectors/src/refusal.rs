//! Why a connector refused a record, and the non-blocking findings on records it accepted.
//! Messages describe the rule, never the offending value: values may be personal data.

use serde::Serialize;
use utoipa::ToSchema;

/// One offending field of a refused record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    /// JSON pointer (`/traveller/surname`) or XPath (`/VisaApplication/Applicant/Surname`).
    pub field: String,
    /// Stable machine-readable rule id, e.g. `required`, `unknown_enum_value`.
    pub rule: &'static str,
    /// What the rule expects, without echoing the value.
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, rule: &'static str, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            rule,
            message: message.into(),
        }
    }
}

/// The whole record is refused; nothing of it may be stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Not well-formed JSON or XML, or not the document the system sends.
    #[error("the body is not a well-formed record: {detail}")]
    Malformed { detail: String },
    /// Well-formed, but fields break the system's rules: every one is listed.
    #[error("the record breaks {} field rule(s)", errors.len())]
    Invalid { errors: Vec<FieldError> },
}

/// A non-blocking data-quality finding: the record is stored, the finding is reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
pub struct QualityFinding {
    /// Where in the native record the finding applies.
    pub field: String,
    /// Stable rule id, e.g. `template_below_minimum_quality`.
    pub rule: String,
    pub message: String,
}
