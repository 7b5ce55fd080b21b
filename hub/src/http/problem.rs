//! RFC 9457 problem documents: every `HubError` mapped to its status and title, with the
//! headers a client needs to come back (`WWW-Authenticate`, `Retry-After`).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use connectors::FieldError;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::HubError;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem document.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the problem type; stable, one per `code`.
    #[serde(rename = "type")]
    pub problem_type: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable machine-readable code.
    pub code: String,
    /// Every offending field of a refused record.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// On a version conflict: the version the hub holds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stored_version: Option<i64>,
}

impl Problem {
    pub fn new(status: StatusCode, code: &str, title: &str, detail: impl Into<String>) -> Self {
        Self {
            problem_type: format!("urn:interop-hub:problem:{code}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            code: code.to_owned(),
            errors: Vec::new(),
            stored_version: None,
        }
    }

    /// A problem for a bare status with no more to say (the fallback for framework errors).
    pub fn for_status(status: StatusCode) -> Self {
        let reason = status.canonical_reason().unwrap_or("Error");
        let code = reason.to_ascii_lowercase().replace([' ', '-'], "_");
        Self::new(status, &code, reason, reason)
    }

    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status_code();
        let mut response = (status, axum::Json(self)).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        response
    }
}

impl From<&HubError> for Problem {
    fn from(error: &HubError) -> Self {
        use StatusCode as S;
        let (status, title) = match error {
            HubError::UnknownSystem => (S::NOT_FOUND, "Unknown source system"),
            HubError::RecordNotFound => (S::NOT_FOUND, "Record not found"),
            HubError::RouteNotFound => (S::NOT_FOUND, "Not found"),
            HubError::MethodNotAllowed => (S::METHOD_NOT_ALLOWED, "Method not allowed"),
            HubError::UnsupportedMediaType { .. } => {
                (S::UNSUPPORTED_MEDIA_TYPE, "Unsupported media type")
            }
            HubError::PayloadTooLarge { .. } => (S::PAYLOAD_TOO_LARGE, "Payload too large"),
            HubError::UnreadableBody => (S::BAD_REQUEST, "Unreadable body"),
            HubError::Malformed { .. } => (S::BAD_REQUEST, "Malformed record"),
            HubError::Invalid { .. } => (S::UNPROCESSABLE_ENTITY, "The record was refused"),
            HubError::VersionReused { .. } => (S::CONFLICT, "Version reused"),
            HubError::VersionConflict { .. } => (S::CONFLICT, "Older version refused"),
            HubError::NotReady => (S::SERVICE_UNAVAILABLE, "Not ready"),
            HubError::LinkNotFound => (S::NOT_FOUND, "Link not found"),
            HubError::InvalidDecision(_) => (S::UNPROCESSABLE_ENTITY, "Decision refused"),
            HubError::AlreadyDecided => (S::CONFLICT, "Already decided"),
            HubError::InvalidQuery(_) => (S::BAD_REQUEST, "Invalid query"),
            HubError::InvalidBody(_) => (S::BAD_REQUEST, "Invalid body"),
            HubError::Unavailable | HubError::OutOfService(_) => {
                (S::SERVICE_UNAVAILABLE, "Service unavailable")
            }
            HubError::Unauthenticated(_) => (S::UNAUTHORIZED, "Authentication required"),
            HubError::Forbidden => (S::FORBIDDEN, "Forbidden"),
            HubError::NotOwner => (S::FORBIDDEN, "Not the owner"),
            HubError::BodyTimeout => (S::REQUEST_TIMEOUT, "Request timeout"),
            HubError::RateLimited { .. } => (S::TOO_MANY_REQUESTS, "Too many requests"),
            HubError::RuleExists => (S::CONFLICT, "Rule exists"),
            HubError::RuleNotFound => (S::NOT_FOUND, "Rule not found"),
            HubError::AccessRequestNotFound => (S::NOT_FOUND, "Access request not found"),
            HubError::AccessRequestDecided => (S::CONFLICT, "Access request decided"),
            HubError::FourEyes(_) => (S::FORBIDDEN, "Four eyes"),
            HubError::ChangeNotFound => (S::NOT_FOUND, "Policy change not found"),
            HubError::ChangeDecided => (S::CONFLICT, "Policy change decided"),
            HubError::InvalidRequest(_) => (S::UNPROCESSABLE_ENTITY, "Request refused"),
            HubError::Storage(_) | HubError::Internal(_) => {
                (S::INTERNAL_SERVER_ERROR, "Internal error")
            }
        };
        let detail = match error {
            // The cause goes to the operator's log, not to the client.
            HubError::Storage(_) | HubError::Internal(_) => "internal error".to_owned(),
            other => other.to_string(),
        };
        let problem = Self::new(status, error.code(), title, detail);
        match error {
            HubError::Invalid { errors } => Self {
                errors: errors.clone(),
                ..problem
            },
            HubError::VersionReused { version: stored }
            | HubError::VersionConflict { stored, .. } => Self {
                stored_version: Some(*stored),
                ..problem
            },
            _ => problem,
        }
    }
}

impl IntoResponse for HubError {
    fn into_response(self) -> Response {
        match &self {
            // The cause goes to the operator's log, not to the client.
            Self::Storage(cause) => tracing::error!(error = %cause, "storage failure"),
            Self::Internal(cause) => tracing::error!(error = %cause, "internal failure"),
            _ => {}
        }
        let mut response = Problem::from(&self).into_response();
        if matches!(self, Self::Unauthenticated(_)) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Self::RateLimited {
            retry_after_seconds,
        } = &self
        {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_seconds));
        }
        if matches!(
            self,
            Self::NotReady | Self::Unavailable | Self::OutOfService(_)
        ) {
            // The indexes are being built from the store: connectors should come back soon.
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }
}
