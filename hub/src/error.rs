//! The hub's one error type, and its exhaustive mapping to RFC 9457 problem documents.
//! Details never carry record content: values may be personal data.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use connectors::{FieldError, Refusal};
use serde::Serialize;
use utoipa::ToSchema;

use crate::store::Fault;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// Every way a request to the hub can fail.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("unknown source system")]
    UnknownSystem,
    #[error("no such record")]
    RecordNotFound,
    #[error("no such resource")]
    RouteNotFound,
    #[error("method not allowed on this resource")]
    MethodNotAllowed,
    #[error("this system accepts {expected} only")]
    UnsupportedMediaType { expected: &'static str },
    #[error("request body larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("the request body could not be read")]
    UnreadableBody,
    #[error("the request body did not arrive in time")]
    BodyTimeout,
    #[error("the body is not a well-formed record: {detail}")]
    Malformed { detail: String },
    #[error("the record breaks {} field rule(s)", errors.len())]
    Invalid { errors: Vec<FieldError> },
    #[error("version {offered} is older than the stored version {stored}")]
    VersionConflict { stored: i64, offered: i64 },
    #[error("version {version} is stored with other content: a new version needs a new number")]
    VersionReused { version: i64 },
    #[error("a storage backend is not available")]
    Unavailable,
    /// Not ready to serve, and why (names a database or a file system, never data).
    #[error("{0}")]
    OutOfService(String),
    #[error("the biometric indexes are still being built from the store; retry shortly")]
    NotReady,
    #[error("no such link")]
    LinkNotFound,
    #[error("{0}")]
    InvalidDecision(&'static str),
    #[error("the link already has that colour")]
    AlreadyDecided,
    #[error("invalid query: {0}")]
    InvalidQuery(&'static str),
    #[error("invalid request body: {0}")]
    InvalidBody(&'static str),
    #[error("{0}")]
    Unauthenticated(&'static str),
    #[error("the access policy does not permit this")]
    Forbidden,
    #[error("the record is another member state's: only its own connector writes it")]
    NotOwner,
    #[error("too many requests: retry in {retry_after_seconds} s")]
    RateLimited { retry_after_seconds: u64 },
    #[error("that rule exists already")]
    RuleExists,
    #[error("no such policy rule")]
    RuleNotFound,
    #[error("no such access request")]
    AccessRequestNotFound,
    #[error("the access request has been decided already")]
    AccessRequestDecided,
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("storage failure")]
    Storage(sqlx::Error),
    #[error("internal error")]
    Internal(String),
}

impl From<sqlx::Error> for HubError {
    fn from(error: sqlx::Error) -> Self {
        match crate::store::fault_of(&error) {
            // The database is out of reach, not wrong: the client may retry.
            Some(Fault::Unreachable) => {
                tracing::warn!(error = %error, "database not available for now");
                Self::Unavailable
            }
            // Not the client's doing either; an operator must restore the database.
            Some(Fault::Damaged) => {
                tracing::error!(error = %error, "a database is damaged: restore it from a backup");
                Self::OutOfService("a database is damaged".to_owned())
            }
            None => Self::Storage(error),
        }
    }
}

impl From<Refusal> for HubError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Malformed { detail } => Self::Malformed { detail },
            Refusal::Invalid { errors } => Self::Invalid { errors },
        }
    }
}

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

impl HubError {
    pub fn to_problem(&self) -> Problem {
        use StatusCode as S;
        let detail = self.to_string();
        match self {
            Self::UnknownSystem => Problem::new(
                S::NOT_FOUND,
                "unknown_system",
                "Unknown source system",
                detail,
            ),
            Self::RecordNotFound => {
                Problem::new(S::NOT_FOUND, "record_not_found", "Record not found", detail)
            }
            Self::RouteNotFound => Problem::new(S::NOT_FOUND, "not_found", "Not found", detail),
            Self::MethodNotAllowed => Problem::new(
                S::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "Method not allowed",
                detail,
            ),
            Self::UnsupportedMediaType { .. } => Problem::new(
                S::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Unsupported media type",
                detail,
            ),
            Self::PayloadTooLarge { .. } => Problem::new(
                S::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "Payload too large",
                detail,
            ),
            Self::UnreadableBody => {
                Problem::new(S::BAD_REQUEST, "unreadable_body", "Unreadable body", detail)
            }
            Self::Malformed { .. } => Problem::new(
                S::BAD_REQUEST,
                "malformed_record",
                "Malformed record",
                detail,
            ),
            Self::Invalid { errors } => Problem {
                errors: errors.clone(),
                ..Problem::new(
                    S::UNPROCESSABLE_ENTITY,
                    "validation_failed",
                    "The record was refused",
                    detail,
                )
            },
            Self::VersionReused { version } => Problem {
                stored_version: Some(*version),
                ..Problem::new(S::CONFLICT, "version_reused", "Version reused", detail)
            },
            Self::VersionConflict { stored, .. } => Problem {
                stored_version: Some(*stored),
                ..Problem::new(
                    S::CONFLICT,
                    "version_conflict",
                    "Older version refused",
                    detail,
                )
            },
            Self::NotReady => {
                Problem::new(S::SERVICE_UNAVAILABLE, "not_ready", "Not ready", detail)
            }
            Self::LinkNotFound => {
                Problem::new(S::NOT_FOUND, "link_not_found", "Link not found", detail)
            }
            Self::InvalidDecision(_) => Problem::new(
                S::UNPROCESSABLE_ENTITY,
                "invalid_decision",
                "Decision refused",
                detail,
            ),
            Self::AlreadyDecided => {
                Problem::new(S::CONFLICT, "already_decided", "Already decided", detail)
            }
            Self::InvalidQuery(_) => {
                Problem::new(S::BAD_REQUEST, "invalid_query", "Invalid query", detail)
            }
            Self::InvalidBody(_) => {
                Problem::new(S::BAD_REQUEST, "invalid_body", "Invalid body", detail)
            }
            Self::Unavailable | Self::OutOfService(_) => Problem::new(
                S::SERVICE_UNAVAILABLE,
                "unavailable",
                "Service unavailable",
                detail,
            ),
            Self::Unauthenticated(_) => Problem::new(
                S::UNAUTHORIZED,
                "unauthenticated",
                "Authentication required",
                detail,
            ),
            Self::Forbidden => Problem::new(S::FORBIDDEN, "forbidden", "Forbidden", detail),
            Self::NotOwner => Problem::new(S::FORBIDDEN, "not_owner", "Not the owner", detail),
            Self::BodyTimeout => Problem::new(
                S::REQUEST_TIMEOUT,
                "request_timeout",
                "Request timeout",
                detail,
            ),
            Self::RateLimited { .. } => Problem::new(
                S::TOO_MANY_REQUESTS,
                "rate_limited",
                "Too many requests",
                detail,
            ),
            Self::RuleExists => Problem::new(S::CONFLICT, "rule_exists", "Rule exists", detail),
            Self::RuleNotFound => {
                Problem::new(S::NOT_FOUND, "rule_not_found", "Rule not found", detail)
            }
            Self::AccessRequestNotFound => Problem::new(
                S::NOT_FOUND,
                "access_request_not_found",
                "Access request not found",
                detail,
            ),
            Self::AccessRequestDecided => Problem::new(
                S::CONFLICT,
                "access_request_decided",
                "Access request decided",
                detail,
            ),
            Self::InvalidRequest(_) => Problem::new(
                S::UNPROCESSABLE_ENTITY,
                "invalid_request",
                "Request refused",
                detail,
            ),
            Self::Storage(_) | Self::Internal(_) => Problem::new(
                S::INTERNAL_SERVER_ERROR,
                "internal_error",
                "Internal error",
                "internal error",
            ),
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
        let mut response = self.to_problem().into_response();
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

#[cfg(test)]
mod tests {
    use sqlx::{Connection, Executor};

    use super::HubError;

    #[tokio::test]
    async fn a_locked_sqlite_database_is_unavailable_not_an_internal_error() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("t.sqlite").display()
        );
        let mut holder = sqlx::SqliteConnection::connect(&url)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        holder
            .execute("CREATE TABLE t (x INTEGER); BEGIN IMMEDIATE; INSERT INTO t VALUES (1);")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut other = sqlx::SqliteConnection::connect(&url)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        other
            .execute("PRAGMA busy_timeout = 0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let locked = other
            .execute("INSERT INTO t VALUES (2)")
            .await
            .expect_err("the write lock is held");
        assert!(matches!(locked, sqlx::Error::Database(_)), "{locked}");
        assert!(
            matches!(HubError::from(locked), HubError::Unavailable),
            "a locked database is a 503"
        );
        let wrong = other
            .execute("SELECT nothing FROM nowhere")
            .await
            .expect_err("no such table");
        assert!(matches!(HubError::from(wrong), HubError::Storage(_)));
    }

    #[tokio::test]
    async fn a_terminated_postgres_session_is_unavailable_not_an_internal_error() {
        let url = std::env::var("INTEROP_HUB_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        let mut session = sqlx::PgConnection::connect(&url)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL is needed for this test ({url}): {e}"));
        // What a fast restart does to every session: terminated by the administrator.
        let terminated = session
            .execute("SELECT pg_terminate_backend(pg_backend_pid())")
            .await
            .expect_err("the session is terminated");
        assert!(
            matches!(terminated, sqlx::Error::Database(_)),
            "the server says why: {terminated}"
        );
        assert!(
            matches!(HubError::from(terminated), HubError::Unavailable),
            "a terminated session is a 503"
        );
    }
}
