//! The services' one error type, each failure with a stable code; `http::problem` maps
//! it to RFC 9457 problem documents. Details never carry record content: values may be
//! personal data.

use connectors::{FieldError, Refusal};

use crate::store::Fault;

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
    #[error("{0}")]
    FourEyes(&'static str),
    #[error("no such policy change")]
    ChangeNotFound,
    #[error("the policy change has been decided already")]
    ChangeDecided,
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

impl HubError {
    /// The stable machine-readable code of the failure: the problem document's `code`, the
    /// audit log's refusal and the metrics' outcome label.
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownSystem => "unknown_system",
            Self::RecordNotFound => "record_not_found",
            Self::RouteNotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::UnsupportedMediaType { .. } => "unsupported_media_type",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::UnreadableBody => "unreadable_body",
            Self::Malformed { .. } => "malformed_record",
            Self::Invalid { .. } => "validation_failed",
            Self::VersionReused { .. } => "version_reused",
            Self::VersionConflict { .. } => "version_conflict",
            Self::NotReady => "not_ready",
            Self::LinkNotFound => "link_not_found",
            Self::InvalidDecision(_) => "invalid_decision",
            Self::AlreadyDecided => "already_decided",
            Self::InvalidQuery(_) => "invalid_query",
            Self::InvalidBody(_) => "invalid_body",
            Self::Unavailable | Self::OutOfService(_) => "unavailable",
            Self::Unauthenticated(_) => "unauthenticated",
            Self::Forbidden => "forbidden",
            Self::NotOwner => "not_owner",
            Self::BodyTimeout => "request_timeout",
            Self::RateLimited { .. } => "rate_limited",
            Self::RuleExists => "rule_exists",
            Self::RuleNotFound => "rule_not_found",
            Self::AccessRequestNotFound => "access_request_not_found",
            Self::AccessRequestDecided => "access_request_decided",
            Self::FourEyes(_) => "four_eyes",
            Self::ChangeNotFound => "change_not_found",
            Self::ChangeDecided => "change_decided",
            Self::InvalidRequest(_) => "invalid_request",
            Self::Storage(_) | Self::Internal(_) => "internal_error",
        }
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
